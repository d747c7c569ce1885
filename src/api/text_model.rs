//! A text-generation model in the browser: a Llama-family model (GGUF or the hub's safetensors) or
//! GPT-2, read tensor by tensor (from the weight store in IndexedDB, or with HTTP Range requests),
//! run on WebGPU or the CPU fallback; generation with sampling, stop strings, streamed text,
//! cancellation and the model's chat template.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::http::HttpRanges;
use super::{js_error, stored_bytes, stored_table, to_js};
use crate::formats::{Metadata, TensorTable};
use crate::generate::chat::{ChatTemplate, Message};
use crate::generate::{GenerateError, GenerateOptions, Generation, LanguageModel, Pick};
use crate::cpu::backend::Cpu;
use crate::gpu::Precision;
use crate::gpu::backend::Gpu;
use crate::models::{Decoder, ModelError, RangeReader};
use crate::store::idb::IdbStore;
use crate::tokenizer::Tokenizer;

#[allow(clippy::large_enum_variant)] // one per model, moved only between generations
enum Engine {
    Gpu(Decoder<Gpu>),
    Cpu(Decoder<Cpu>),
}

/// A text decoder on WebGPU or the CPU fallback: a GGUF Llama-family model, or a Llama-family or
/// GPT-2 checkpoint in the hub's format.
#[wasm_bindgen]
pub struct TextModel {
    /// Taken out while a generation runs (one at a time).
    engine: Rc<RefCell<Option<Engine>>>,
    /// Set by `dispose`; a generation running then drops the engine when it ends.
    disposed: Rc<std::cell::Cell<bool>>,
    tokenizer: Rc<Tokenizer>,
    template: Option<Rc<ChatTemplate>>,
    info: serde_json::Value,
}

fn generate_error(e: GenerateError) -> JsValue {
    js_error(e.code(), &e.to_string())
}

fn model_error(e: ModelError) -> JsValue {
    generate_error(e.into())
}

/// What a model's files give before it goes to the GPU.
struct Parts {
    table: TensorTable,
    /// config.json, for checkpoints in the hub's format (GGUF carries its own metadata).
    config: Option<Vec<u8>>,
    tokenizer: Tokenizer,
}

impl TextModel {
    /// `device`: "webgpu", "cpu" (the CPU fallback; Llama family and GPT-2) or "auto" (WebGPU
    /// when an adapter and device can be had, else the CPU, saying why in `info.fallbackReason`).
    async fn build(parts: Parts, context: Option<u32>, read: &mut impl RangeReader, device: &str) -> Result<TextModel, JsValue> {
        let Parts { table, config, tokenizer } = parts;
        let name = |id: Option<u32>| id.and_then(|i| tokenizer.id_to_token(i)).unwrap_or_default();
        let template = match tokenizer.chat_template.as_deref() {
            Some(source) => Some(Rc::new(ChatTemplate::new(source, &name(tokenizer.bos_id), &name(tokenizer.eos_id)).map_err(|e| js_error("BadModelFile", &e.to_string()))?)),
            None => None,
        };
        let (gpu, mut fallback_reason) = super::choose_device(device).await?;
        let mut gpu = gpu.map(Rc::new);
        // A GPU that computes garbage without an error is caught before the model goes there: the
        // first layer on a fixed probe, GPU against CPU. 'auto' then runs on the CPU; 'webgpu'
        // refuses.
        let mut self_check = serde_json::Value::Null;
        let probe_bytes = crate::models::decoder::self_check_cpu_bytes(&table);
        if gpu.is_some() && probe_bytes > crate::models::decoder::SELF_CHECK_MAX_CPU_BYTES {
            self_check = serde_json::json!({ "skipped": format!("the CPU probe would hold {probe_bytes} bytes (at most {})", crate::models::decoder::SELF_CHECK_MAX_CPU_BYTES) });
        } else if let Some(ctx) = &gpu {
            // A probe that cannot run (a configuration the cut model does not take) says nothing
            // about the GPU: it is reported, and the model loads as asked.
            let failure = match crate::models::decoder::gpu_self_check(ctx.clone(), config.as_deref(), &table, read).await {
                Ok(c) => {
                    self_check = serde_json::to_value(&c).unwrap_or_default();
                    (!c.passed).then(|| format!("the GPU failed its self-check: its logits on a fixed probe differ from the CPU's by {:.3} (relative RMS; at most {} allowed)", c.relative_error, c.bound))
                }
                Err(e) => {
                    self_check = serde_json::json!({ "error": e.to_string() });
                    None
                }
            };
            if let Some(reason) = failure {
                if device != "auto" {
                    return Err(js_error("GpuError", &reason));
                }
                gpu = None;
                fallback_reason = Some(reason);
            }
        }
        let (engine, mut info) = match gpu {
            Some(ctx) => {
                let precision = to_json(ctx.precision());
                let model = Decoder::load(Gpu::new(ctx), config.as_deref(), &table, context, read).await.map_err(model_error)?;
                let mut info = model.info();
                info["precision"] = precision;
                (Engine::Gpu(model), info)
            }
            None => {
                let model = Decoder::load(Cpu, config.as_deref(), &table, context, read).await.map_err(model_error)?;
                let info = model.info();
                (Engine::Cpu(model), info)
            }
        };
        info["fallbackReason"] = fallback_reason.into();
        info["selfCheck"] = self_check;
        info["hasChatTemplate"] = template.is_some().into();
        info["generationDefaults"] = tokenizer.generation_defaults.to_json();
        Ok(TextModel { engine: Rc::new(RefCell::new(Some(engine))), disposed: Rc::default(), tokenizer: Rc::new(tokenizer), template, info })
    }
}

fn to_json(precision: Precision) -> serde_json::Value {
    serde_json::to_value(precision).unwrap_or_default()
}

fn gguf_tokenizer(table: &TensorTable) -> Result<Tokenizer, JsValue> {
    let Metadata::Gguf { metadata, .. } = &table.metadata else {
        return Err(js_error("Unsupported", "a GGUF file was expected"));
    };
    Tokenizer::from_gguf(metadata).map_err(|e| js_error("BadModelFile", &e.to_string()))
}

#[wasm_bindgen]
impl TextModel {
    /// Loads the GGUF at `url` with HTTP Range requests, tensor by tensor, onto the GPU.
    pub async fn load(url: String, context: Option<u32>, device: Option<String>) -> Result<TextModel, JsValue> {
        let mut http = HttpRanges::new(&url);
        let table = http.read_table().await.map_err(model_error)?;
        let tokenizer = gguf_tokenizer(&table)?;
        Self::build(Parts { table, config: None, tokenizer }, context, &mut http, device.as_deref().unwrap_or("webgpu")).await
    }

    /// Loads `repo@commit` from the weight store (IndexedDB database `db`, default "hugrt"),
    /// where `WeightStore.download` put it: the GGUF file `file`, or, without `file`, a
    /// checkpoint in the hub's format (`config.json`, `tokenizer.json`, `model.safetensors`, and
    /// `tokenizer_config.json` when the repository has one; Llama family and GPT-2).
    #[wasm_bindgen(js_name = fromStore)]
    pub async fn from_store(db: Option<String>, repo: String, commit: String, file: Option<String>, context: Option<u32>, device: Option<String>) -> Result<TextModel, JsValue> {
        let device = device.unwrap_or_else(|| "auto".into());
        let store = IdbStore::open(db.as_deref().unwrap_or("hugrt")).await.map_err(|e| js_error(e.code(), &e.to_string()))?;
        match file {
            Some(path) => {
                let (table, mut weights) = stored_table(&store, &repo, &commit, &path).await?;
                let tokenizer = gguf_tokenizer(&table)?;
                Self::build(Parts { table, config: None, tokenizer }, context, &mut weights, &device).await
            }
            None => {
                let config = stored_bytes(&store, &repo, &commit, "config.json").await?;
                let model_type = crate::models::model_type(&config).map_err(model_error)?;
                let known = crate::models::decoder::HUB_MODEL_TYPES;
                if !known.contains(&model_type.as_str()) {
                    return Err(js_error("Unsupported", &format!("{repo}: model_type {model_type:?} is not supported ({})", known.join(", "))));
                }
                let bad = |e: crate::tokenizer::TokenizerError| js_error("BadModelFile", &e.to_string());
                let mut tokenizer = Tokenizer::from_json(&stored_bytes(&store, &repo, &commit, "tokenizer.json").await?).map_err(bad)?;
                // Optional: the chat template and BOS/EOS live there (GPT-2 has none).
                let optional = |name| super::stored_small_file(&store, &repo, &commit, name);
                let read_error = |e: crate::models::ReadError| js_error(e.code, &e.message);
                if let Some(tokenizer_config) = optional("tokenizer_config.json").await.map_err(read_error)? {
                    tokenizer = tokenizer.with_config(&tokenizer_config).map_err(bad)?;
                }
                // Optional: the ids that end generation (one or a list) and BOS.
                if let Some(generation_config) = optional("generation_config.json").await.map_err(read_error)? {
                    tokenizer = tokenizer.with_generation_config(&generation_config).map_err(bad)?;
                }
                let (table, mut weights) = super::stored_weights(&store, &repo, &commit).await?;
                Self::build(Parts { table, config: Some(config), tokenizer }, context, &mut weights, &device).await
            }
        }
    }

    /// `{ architecture, layers, hidden, heads, kvHeads, vocab, context, weightBytes,
    /// dispatchesPerToken, adapter, device, precision, hasChatTemplate }` (`precision`: "f16" or
    /// "f32", how the GPU's matrix products multiply; absent on the CPU).
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let mut info = self.info.clone();
        if let Some(Engine::Gpu(model)) = self.engine.borrow().as_ref() {
            info["precision"] = to_json(model.backend.ctx.precision());
            info["dispatchesPerToken"] = model.backend.last_pass_dispatches.into();
        }
        to_js(&info)
    }

    /// How the GPU's matrix products multiply from the next generation on: "f32" (reference-grade;
    /// opts out of f16), "f16" (`Unsupported` without shader-f16) or "auto" (f16 where the device
    /// has shader-f16, the default). Nothing to do on the CPU; `Busy` during a generation.
    #[wasm_bindgen(js_name = setPrecision)]
    pub fn set_precision(&self, precision: &str) -> Result<(), JsValue> {
        let engine = self.engine.borrow();
        let Some(engine) = engine.as_ref() else {
            return Err(js_error("Busy", "a generation is running (or the model was disposed)"));
        };
        if let Engine::Gpu(model) = engine {
            let ctx = &model.backend.ctx;
            let p = match precision {
                "auto" => ctx.preferred_precision(),
                other => Precision::from_name(other).ok_or_else(|| js_error("Usage", &format!("precision {other:?} (auto, f32 or f16)")))?,
            };
            ctx.set_precision(p)?;
        }
        Ok(())
    }

    /// The prompt for `messages` (`[{ role, content, tool_calls?, tool_call_id? }]`) by the
    /// model's chat template, with OpenAI's `tools` where given (`Unsupported` if the template
    /// renders none).
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(&self, messages: JsValue, add_generation_prompt: Option<bool>, tools: JsValue) -> Result<String, JsValue> {
        let template = self.template.as_ref().ok_or_else(|| js_error("Unsupported", "the model has no chat template"))?;
        let messages: Vec<Message> = serde_wasm_bindgen::from_value(messages).map_err(|e| js_error("Usage", &format!("messages: {e}")))?;
        let tools: Option<Vec<serde_json::Value>> = if tools.is_undefined() || tools.is_null() {
            None
        } else {
            Some(serde_wasm_bindgen::from_value(tools).map_err(|e| js_error("Usage", &format!("tools: {e}")))?)
        };
        if tools.is_some() && !template.supports_tools() {
            return Err(js_error("Unsupported", "the model's chat template renders no tools"));
        }
        template.render_with_tools(&messages, tools.as_deref(), add_generation_prompt.unwrap_or(true)).map_err(|e| js_error("ChatTemplate", &e.to_string()))
    }

    /// Token ids of `text` (`special`: add the special tokens a plain prompt gets).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, JsValue> {
        self.tokenizer.encode(text, special).map_err(|e| js_error("Tokenizer", &e.to_string()))
    }

    /// Generates a continuation of `prompt` (`templated`: it was rendered by the chat template
    /// and holds its special tokens). `options`: `{ maxTokens, temperature, topK, topP, minP,
    /// repetitionPenalty, frequencyPenalty, presencePenalty, logprobs, topLogprobs,
    /// responseFormat, tools, toolChoice, parallelToolCalls, seed, stop }` (with `tools` the result
    /// has `toolCalls`: `[{ name, arguments }]`, or null when the answer is text). `onText(piece)` gets the text as it is generated;
    /// `signal` aborts between tokens (rejecting with an `Aborted` error). Resolves to
    /// `{ text, ids, promptIds, finishReason, usage: { promptTokens, cachedTokens,
    /// completionTokens, prefillMs, decodeMs } }`. The KV cache keeps the sequence, so a next
    /// prompt that extends it (a chat's next turn) computes only the new tokens.
    pub fn generate(&self, prompt: String, options: JsValue, templated: bool, on_text: Option<js_sys::Function>, signal: Option<web_sys::AbortSignal>) -> js_sys::Promise {
        let (engine, tokenizer, disposed) = (self.engine.clone(), self.tokenizer.clone(), self.disposed.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            // Options left out take the checkpoint's defaults (generation_config.json, GGUF).
            let given: serde_json::Value = if options.is_undefined() || options.is_null() {
                serde_json::Value::Null
            } else {
                serde_wasm_bindgen::from_value(options).map_err(|e| js_error("Usage", &format!("options: {e}")))?
            };
            let options: GenerateOptions = tokenizer.generation_defaults.options(given).map_err(generate_error)?;
            let prompt_ids = tokenizer.encode(&prompt, !templated).map_err(|e| js_error("Tokenizer", &e.to_string()))?;
            let logprobs = options.logprobs;
            let calls_tools = !options.tools.is_empty() && options.tool_choice != Some(crate::generate::tools::ToolChoice::Mode("none".into()));
            let mut generation = Generation::with_tokenizer(prompt_ids.clone(), options, &tokenizer).map_err(generate_error)?;
            let taken = engine.borrow_mut().take();
            let mut e = taken.ok_or_else(|| js_error("Busy", "the model is generating, or was disposed"))?;
            let result = async {
                let mut text = String::new();
                let mut reported = 0;
                loop {
                    if signal.as_ref().is_some_and(|s| s.aborted()) {
                        return Err(js_error("Aborted", "generation was aborted"));
                    }
                    let step = match &mut e {
                        Engine::Gpu(model) => generation.step(model, &tokenizer).await,
                        Engine::Cpu(model) => generation.step(model, &tokenizer).await,
                    };
                    let Some(piece) = step.map_err(generate_error)? else { break };
                    if let (Some(f), false) = (&on_text, piece.is_empty()) {
                        // A throwing callback stops generation with its error. With logprobs,
                        // the entries of the tokens since the last piece come with it.
                        if logprobs {
                            f.call2(&JsValue::NULL, &JsValue::from_str(&piece), &to_js(&generation.logprobs()[reported..])?)?;
                            reported = generation.logprobs().len();
                        } else {
                            f.call1(&JsValue::NULL, &JsValue::from_str(&piece))?;
                        }
                    }
                    text.push_str(&piece);
                }
                let mut result = serde_json::json!({
                    "text": text, "ids": generation.tokens(), "promptIds": prompt_ids,
                    "finishReason": generation.finish_reason(), "usage": generation.usage,
                });
                result["maskMs"] = generation.mask_summary();
                if calls_tools {
                    result["toolCalls"] = serde_json::to_value(crate::generate::tools::parse_calls(&text)).unwrap_or_default();
                }
                if logprobs {
                    result["logprobs"] = serde_json::to_value(generation.logprobs()).unwrap_or_default();
                }
                to_js(&result)
            }
            .await;
            if !disposed.get() {
                *engine.borrow_mut() = Some(e);
            }
            result
        })
    }

    /// Compiles the GPU pipelines of a decode step by running one token (id 0) through the
    /// model, then forgets it, so the first real token does not pay for compilation. Nothing
    /// to do on the CPU. Resolves to the milliseconds it took.
    pub fn warmup(&self) -> js_sys::Promise {
        let engine = self.engine.clone();
        let disposed = self.disposed.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = engine.borrow_mut().take();
            let mut e = taken.ok_or_else(|| js_error("Busy", "the model is generating, or was disposed"))?;
            let t0 = crate::clock::now_ms();
            let result = match &mut e {
                Engine::Gpu(lm) => {
                    let r = lm.forward(&[0], Pick::Greedy).await.map(|_| ());
                    lm.truncate(0);
                    r.map_err(model_error)
                }
                Engine::Cpu(_) => Ok(()),
            };
            if !disposed.get() {
                *engine.borrow_mut() = Some(e);
            }
            result.map(|()| JsValue::from_f64(crate::clock::now_ms() - t0))
        })
    }

    /// Frees the GPU buffers (a running generation frees them when it ends).
    pub fn dispose(&self) {
        self.disposed.set(true);
        self.engine.borrow_mut().take();
    }
}
