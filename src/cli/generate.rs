//! `hugrt generate --model FILE.gguf|DIR --prompt TEXT [--chat] [sampling options] [--json]`:
//! text generation on the native GPU or the CPU (a GGUF Llama-family model, or a checkpoint folder), streamed to
//! stdout (or one JSON object).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::CliError;
use crate::formats::Metadata;
use crate::generate::chat::{ChatTemplate, Message};
use crate::generate::{GenerateError, GenerateOptions, Generation};
use crate::backend::Backend;
use crate::formats::TensorTable;
use crate::models::{Decoder, ModelError};
use crate::tokenizer::Tokenizer;

/// A model on disk: a GGUF file, or a folder with config.json, model.safetensors and tokenizer.json.
pub(super) struct Checkpoint {
    pub table: TensorTable,
    weights: crate::models::Shards<std::fs::File>,
    /// config.json, for folders.
    config: Option<Vec<u8>>,
}

impl Checkpoint {
    /// The checkpoint and its tokenizer.
    pub fn open(path: &std::path::Path) -> Result<(Self, Tokenizer), (&'static str, String)> {
        let io = |e: std::io::Error| ("NotFound", e.to_string());
        let config = if path.is_dir() { Some(std::fs::read(path.join("config.json")).map_err(io)?) } else { None };
        let (table, weights) = super::open_weights(path).map_err(|e| (e.code, e.message))?;
        let tokenizer = match &table.metadata {
            Metadata::Gguf { metadata, .. } => Tokenizer::from_gguf(metadata),
            _ => Tokenizer::from_json(&std::fs::read(path.join("tokenizer.json")).map_err(io)?)
                .and_then(|t| match std::fs::read(path.join("tokenizer_config.json")) {
                    Ok(config) => t.with_config(&config),
                    Err(_) => Ok(t),
                })
                .and_then(|t| match std::fs::read(path.join("generation_config.json")) {
                    Ok(config) => t.with_generation_config(&config),
                    Err(_) => Ok(t),
                }),
        }
        .map_err(|e| ("BadModelFile", e.to_string()))?;
        Ok((Self { table, weights, config }, tokenizer))
    }

    /// The model on `backend` (the GPU or the CPU).
    pub async fn load<B: Backend>(mut self, backend: B, context: Option<u32>) -> Result<Decoder<B>, ModelError> {
        Decoder::load(backend, self.config.as_deref(), &self.table, context, &mut self.weights).await
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF Llama-family model (Llama, Qwen2, SmolLM, TinyLlama, Mistral), or a checkpoint
    /// folder in the hub's format (config.json, model.safetensors, tokenizer.json and
    /// tokenizer_config.json; Llama family and GPT-2).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt: used as is, or as the user's message with `--chat`.
    #[arg(long)]
    pub prompt: String,
    /// Render the prompt as a user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// With `--chat`: a system message (else the template's default, if any).
    #[arg(long)]
    pub system: Option<String>,
    /// Options left out take the checkpoint's defaults (`generation_config.json`, GGUF
    /// `general.sampling.*`), else greedy decoding of 32 tokens.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// 0: greedy decoding.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// 0: off.
    #[arg(long)]
    pub top_k: Option<u32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub min_p: Option<f32>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// OpenAI's frequency penalty, in [-2, 2].
    #[arg(long)]
    pub frequency_penalty: Option<f32>,
    /// OpenAI's presence penalty, in [-2, 2].
    #[arg(long)]
    pub presence_penalty: Option<f32>,
    /// The output follows this JSON schema (a file, or the schema itself).
    #[arg(long, conflicts_with_all = ["json_object", "regex", "grammar"])]
    pub json_schema: Option<String>,
    /// The output is a JSON object.
    #[arg(long, conflicts_with_all = ["regex", "grammar"])]
    pub json_object: bool,
    /// The output matches this regular expression.
    #[arg(long, conflicts_with = "grammar")]
    pub regex: Option<String>,
    /// The output follows this Lark grammar (a file).
    #[arg(long)]
    pub grammar: Option<PathBuf>,
    /// Report each output token's log-probability (and this many alternatives; with --json).
    #[arg(long)]
    pub top_logprobs: Option<u32>,
    /// KV-cache capacity in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u32>,
    /// "gpu" (wgpu) or "cpu" (the candle fallback; Llama-family models and GPT-2).
    #[arg(long, default_value = "gpu")]
    pub device: String,
    /// How the GPU's matrix products multiply: "auto" (f16 block products where the device has
    /// shader-f16, else f32), "f32" (reference-grade) or "f16".
    #[arg(long, default_value = "auto")]
    pub precision: String,
    /// Print JSON: {prompt, promptIds, ids, text, finishReason, usage, options, adapter, precision,
    /// timings (maskMs: median and worst of the grammar's masks), logprobs?}.
    #[arg(long)]
    pub json: bool,
}

/// `--json-schema`, `--json-object`, `--regex` or `--grammar` as a `responseFormat`.
fn response_format(args: &Args) -> Result<Option<serde_json::Value>, CliError> {
    let read = |path: &std::path::Path| std::fs::read_to_string(path).map_err(|e| CliError { code: "NotFound", message: format!("{}: {e}", path.display()) });
    Ok(if let Some(schema) = &args.json_schema {
        let text = if std::path::Path::new(schema).is_file() { read(std::path::Path::new(schema))? } else { schema.clone() };
        let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| CliError { code: "Usage", message: format!("--json-schema: {e}") })?;
        Some(json!({ "type": "json_schema", "json_schema": { "schema": schema, "strict": true } }))
    } else if args.json_object {
        Some(json!({ "type": "json_object" }))
    } else if let Some(pattern) = &args.regex {
        Some(json!({ "type": "regex", "pattern": pattern }))
    } else if let Some(path) = &args.grammar {
        Some(json!({ "type": "grammar", "grammar": read(path)? }))
    } else {
        None
    })
}

/// The prompt as the model sees it: as given, or rendered by the model's chat template.
pub fn prompt_text(tok: &Tokenizer, prompt: &str, chat: bool, system: Option<&str>) -> Result<String, CliError> {
    if !chat {
        return Ok(prompt.to_owned());
    }
    let usage = |m: String| CliError { code: "ChatTemplate", message: m };
    let source = tok.chat_template.as_deref().ok_or_else(|| usage("the model has no chat template".into()))?;
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i)).unwrap_or_default();
    let template = ChatTemplate::new(source, &name(tok.bos_id), &name(tok.eos_id)).map_err(|e| usage(e.to_string()))?;
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(Message::new("system", s));
    }
    messages.push(Message::new("user", prompt));
    template.render(&messages, true).map_err(|e| usage(e.to_string()))
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let name = args.model.display().to_string();
    let bad = |code: &'static str| {
        let name = name.clone();
        move |e: String| CliError { code, message: format!("{name}: {e}") }
    };
    let t0 = Instant::now();
    let (checkpoint, tokenizer) = Checkpoint::open(&args.model).map_err(|(code, m)| bad(code)(m))?;
    let tok = &tokenizer;
    let prompt = prompt_text(tok, &args.prompt, args.chat, args.system.as_deref())?;
    // A rendered template already holds its special tokens.
    let prompt_ids = tok.encode(&prompt, !args.chat).map_err(|e| bad("Tokenizer")(e.to_string()))?;
    let failed = |e: GenerateError| CliError { code: e.code(), message: e.to_string() };
    let mut given = json!({ "seed": args.seed, "stop": args.stop });
    let flags = [("maxTokens", args.max_tokens.map(f64::from)), ("temperature", args.temperature.map(f64::from)), ("topK", args.top_k.map(f64::from)),
        ("topP", args.top_p.map(f64::from)), ("minP", args.min_p.map(f64::from)), ("repetitionPenalty", args.repetition_penalty.map(f64::from))];
    for (key, value) in flags {
        if let Some(v) = value {
            given[key] = if key == "maxTokens" || key == "topK" { json!(v as u64) } else { json!(v) };
        }
    }
    for (key, value) in [("frequencyPenalty", args.frequency_penalty), ("presencePenalty", args.presence_penalty)] {
        if let Some(v) = value {
            given[key] = json!(v);
        }
    }
    if let Some(n) = args.top_logprobs {
        given["logprobs"] = json!(true);
        given["topLogprobs"] = json!(n);
    }
    if let Some(format) = response_format(args)? {
        given["responseFormat"] = format;
    }
    if args.max_tokens.is_none() && tok.generation_defaults.to_json().get("maxTokens").is_none() {
        given["maxTokens"] = json!(32);
    }
    let options: GenerateOptions = tok.generation_defaults.options(given).map_err(failed)?;
    let used = serde_json::to_value(&options).unwrap_or_default();
    let mut generation = Generation::with_tokenizer(prompt_ids.clone(), options, tok).map_err(failed)?;
    pollster::block_on(async {
        let mut text = String::new();
        let mut out = std::io::stdout();
        if !args.json && !args.chat {
            let _ = write!(out, "{}", args.prompt);
        }
        let mut show = |piece: String| {
            if !args.json {
                let _ = write!(out, "{piece}");
                let _ = out.flush();
            }
            text.push_str(&piece);
        };
        // The GPU's matrix products' precision (none on the CPU).
        let mut precision = None;
        let (adapter, load_ms) = match args.device.as_str() {
            "gpu" => {
                let ctx = super::gpu_context(&args.precision).await?;
                precision = Some(ctx.precision());
                let adapter = ctx.report.name.clone();
                let backend = crate::gpu::backend::Gpu::new(std::rc::Rc::new(ctx));
                let mut lm = checkpoint.load(backend, args.context).await.map_err(|e| failed(e.into()))?;
                let load_ms = t0.elapsed().as_secs_f64() * 1e3;
                while let Some(piece) = generation.step(&mut lm, tok).await.map_err(failed)? {
                    show(piece);
                }
                (adapter, load_ms)
            }
            "cpu" => {
                let mut lm = checkpoint.load(crate::cpu::backend::Cpu, args.context).await.map_err(|e| failed(e.into()))?;
                let load_ms = t0.elapsed().as_secs_f64() * 1e3;
                while let Some(piece) = generation.step(&mut lm, tok).await.map_err(failed)? {
                    show(piece);
                }
                ("cpu".to_owned(), load_ms)
            }
            other => return Err(CliError { code: "Usage", message: format!("unknown device {other:?} (gpu or cpu)") }),
        };
        let u = &generation.usage;
        let prefill_tps = (u.prompt_tokens - u.cached_tokens) as f64 / (u.prefill_ms / 1e3).max(1e-9);
        // The first generated token comes from the prefill pass.
        let decode_tps = u.completion_tokens.saturating_sub(1) as f64 / (u.decode_ms / 1e3).max(1e-9);
        if args.json {
            return Ok(format!(
                "{}\n",
                json!({ "prompt": prompt, "promptIds": prompt_ids, "ids": generation.tokens(), "text": text,
                        "finishReason": generation.finish_reason(), "usage": u, "options": used, "adapter": adapter, "device": args.device, "precision": precision,
                        "timings": { "loadMs": load_ms, "prefillTokPerS": prefill_tps, "decodeTokPerS": decode_tps, "maskMs": generation.mask_summary() },
                        "logprobs": args.top_logprobs.map(|_| generation.logprobs()) })
            ));
        }
        Ok(format!(
            "\n-- {} prompt tokens, {} generated on {}{} ({:?}); load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s\n",
            u.prompt_tokens, u.completion_tokens, adapter, precision.map(|p| format!(", {p:?} products")).unwrap_or_default(),
            generation.finish_reason(), load_ms, prefill_tps, decode_tps
        ))
    })
}
