//! A sentence-embedding model in the browser: a BERT checkpoint folder served over HTTP
//! (`config.json` and `tokenizer.json` fetched whole, `model.safetensors` tensor by tensor with
//! Range requests, so never whole in wasm memory), run on WebGPU or on the CPU fallback (candle,
//! wasm SIMD). With `device: "auto"` the CPU is used when there is no WebGPU adapter or device,
//! or when the device is lost while loading (the weights are then read again, onto the CPU). A
//! device lost later is a `DeviceLost` error; the JS `pipeline('feature-extraction', …)` that
//! wraps this model then loads it again (js/index.js, `Pipeline`).

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::http::HttpRanges;
use super::{js_error, model_error, stored_bytes, to_js};
use crate::formats::TensorTable;
use crate::models::RangeReader;
use crate::store::idb::IdbStore;
use crate::gpu::GpuContext;
use crate::hub::fetch::{fetch, js_message};
use crate::models::bert::BertConfig;
use crate::models::sentence::{Folder, SentenceModules};
use crate::models::tasks::Engine;
use crate::models::{ModelError, ReadError};
use crate::tokenizer::Tokenizer;

struct Inner {
    engine: Engine,
    tokenizer: Tokenizer,
    modules: Rc<SentenceModules>,
}

/// Where the model's files came from, to read the weights again onto the CPU after a device loss
/// while loading.
enum Source {
    Http(String),
    Store { db: String, repo: String, commit: String },
}

/// A BERT encoder (all-MiniLM-L6-v2, BERT-base-like) on WebGPU or the CPU: sentence embeddings
/// as its sentence-transformers modules define them (mean-pooled and L2-normalised without them).
#[wasm_bindgen]
pub struct EmbeddingModel {
    inner: Rc<RefCell<Option<Inner>>>,
    info: serde_json::Value,
    /// Set by `dispose`; an embedding running then drops the engine when it ends.
    disposed: Rc<std::cell::Cell<bool>>,
}

/// The body of `url`: `Ok(None)` on a 404, `NetworkError` on any other failure.
async fn fetch_bytes(url: &str) -> Result<Option<Vec<u8>>, JsValue> {
    let network = |m: String| js_error("NetworkError", &format!("{url}: {m}"));
    let headers = web_sys::Headers::new().map_err(|e| network(js_message(&e)))?;
    let response = fetch(url, &headers, None).await.map_err(|e| network(js_message(&e)))?;
    match response.status() {
        200 => {}
        404 => return Ok(None),
        status => return Err(network(format!("HTTP {status}"))),
    }
    let body = response.array_buffer().map_err(|e| network(js_message(&e)))?;
    let buffer = wasm_bindgen_futures::JsFuture::from(body).await.map_err(|e| network(js_message(&e)))?;
    Ok(Some(js_sys::Uint8Array::new(&buffer).to_vec()))
}

/// The files of a checkpoint folder, fetched whole (the weights are read by range), and the
/// sentence-transformers modules they describe.
struct Files {
    config: Vec<u8>,
    tokenizer: Tokenizer,
    modules: SentenceModules,
}

/// A checkpoint folder over HTTP: a 404 is a file the repo does not have.
struct HttpFolder<'a>(&'a str);

impl Folder for HttpFolder<'_> {
    async fn file(&mut self, name: &str) -> Result<Option<Vec<u8>>, ModelError> {
        let url = format!("{}/{name}", self.0);
        fetch_bytes(&url).await.map_err(|e| ModelError::Read(ReadError::new("NetworkError", format!("{url}: {}", js_message(&e)))))
    }
}

/// A repo's files in the weight store: one not downloaded is one the repo does not have (the
/// JS package downloads every sentence-transformers file the repo lists).
struct StoreFolder<'a> {
    store: &'a IdbStore,
    repo: &'a str,
    commit: &'a str,
}

impl Folder for StoreFolder<'_> {
    async fn file(&mut self, name: &str) -> Result<Option<Vec<u8>>, ModelError> {
        super::stored_small_file(self.store, self.repo, self.commit, name).await.map_err(ModelError::Read)
    }
}

/// The hidden size `config.json` gives an encoder (what the pooling config is checked against).
fn hidden_of(config: &[u8]) -> Result<u32, JsValue> {
    BertConfig::from_json(config).map(|c| c.hidden).map_err(model_error)
}

impl Source {
    async fn files(&self) -> Result<Files, JsValue> {
        match self {
            Source::Http(base) => {
                let required = async |name: &str| {
                    let url = format!("{base}/{name}");
                    fetch_bytes(&url).await?.ok_or_else(|| js_error("NetworkError", &format!("{url}: HTTP 404")))
                };
                let config = required("config.json").await?;
                let tokenizer = Tokenizer::from_json(&required("tokenizer.json").await?).map_err(|e| js_error("BadModelFile", &format!("{base}/tokenizer.json: {e}")))?;
                let modules = SentenceModules::load(&mut HttpFolder(base), hidden_of(&config)?).await.map_err(model_error)?;
                Ok(Files { config, tokenizer, modules })
            }
            Source::Store { db, repo, commit } => {
                let store = open_store(db).await?;
                let config = stored_bytes(&store, repo, commit, "config.json").await?;
                let tokenizer = Tokenizer::from_json(&stored_bytes(&store, repo, commit, "tokenizer.json").await?).map_err(|e| js_error("BadModelFile", &format!("{repo}/tokenizer.json: {e}")))?;
                let mut folder = StoreFolder { store: &store, repo, commit };
                let modules = SentenceModules::load(&mut folder, hidden_of(&config)?).await.map_err(model_error)?;
                Ok(Files { config, tokenizer, modules })
            }
        }
    }

    /// The files, and the model loaded onto `gpu` (or the CPU without one).
    async fn load(&self, gpu: Option<GpuContext>) -> Result<(Files, Result<Engine, ModelError>), JsValue> {
        let files = self.files().await?;
        let engine = match self {
            Source::Http(base) => {
                let mut http = HttpRanges::new(&format!("{base}/model.safetensors"));
                let table = http.read_table().await.map_err(model_error)?;
                load_engine(gpu, &files, &table, &mut http).await
            }
            Source::Store { db, repo, commit } => {
                let store = open_store(db).await?;
                let (table, mut weights) = super::stored_weights(&store, repo, commit).await?;
                load_engine(gpu, &files, &table, &mut weights).await
            }
        };
        Ok((files, engine))
    }
}

async fn open_store(db: &str) -> Result<IdbStore, JsValue> {
    IdbStore::open(db).await.map_err(|e| js_error(e.code(), &e.to_string()))
}

/// The encoder on `gpu`, or on the CPU without one.
async fn load_engine(gpu: Option<GpuContext>, files: &Files, table: &TensorTable, read: &mut impl RangeReader) -> Result<Engine, ModelError> {
    let mut engine = Engine::load_bert(gpu, &files.config, table, read).await?;
    engine.use_sentence_modules(&files.modules)?;
    Ok(engine)
}

fn is_device_lost(e: &ModelError) -> bool {
    matches!(e, ModelError::Gpu(g) if g.code() == "DeviceLost")
}

/// `{ architecture, layers, hidden, dims, pooling, normalized, prompts, defaultPromptName,
/// maxSeqLength, adapter, device }` of an engine and its modules.
fn engine_info(engine: &Engine, modules: &SentenceModules) -> serde_json::Value {
    let (adapter, device) = (engine.adapter(), engine.device());
    let (layers, hidden, positions) = engine.bert_config().map_or((0, 0, 0), |c| (c.layers, c.hidden, c.max_positions));
    let pooling: Vec<&str> = modules.pooling.modes.iter().map(|m| m.name()).collect();
    serde_json::json!({ "architecture": engine.architecture(), "layers": layers, "hidden": hidden, "dims": modules.dims, "pooling": pooling,
        "normalized": modules.normalized(), "prompts": modules.prompts, "defaultPromptName": modules.default_prompt_name,
        "maxSeqLength": modules.max_seq_length.unwrap_or(positions).min(positions), "adapter": adapter, "device": device })
}

impl EmbeddingModel {
    /// `device`: "webgpu", "cpu" or "auto" (WebGPU when an adapter and device can be had and the
    /// device holds, else the CPU, saying why in `info.fallbackReason`).
    async fn build(source: Source, device: &str) -> Result<EmbeddingModel, JsValue> {
        let (gpu, mut fallback_reason) = super::choose_device(device).await?;
        let auto = device == "auto";
        let (files, engine) = source.load(gpu).await?;
        let engine = match engine {
            Ok(engine) => engine,
            Err(e) if auto && is_device_lost(&e) => {
                fallback_reason = Some(format!("the WebGPU device was lost while loading: {e}"));
                source.load(None).await?.1.map_err(model_error)?
            }
            Err(e) => return Err(model_error(e)),
        };
        let mut info = engine_info(&engine, &files.modules);
        info["fallbackReason"] = fallback_reason.into();
        Ok(EmbeddingModel { inner: Rc::new(RefCell::new(Some(Inner { engine, tokenizer: files.tokenizer, modules: Rc::new(files.modules) }))), info, disposed: Rc::default() })
    }
}

#[wasm_bindgen]
impl EmbeddingModel {
    /// Loads the checkpoint folder at `base_url` (`{base}/config.json`, `{base}/tokenizer.json`,
    /// `{base}/model.safetensors`, and the sentence-transformers files when there: `modules.json`
    /// and the modules it names, `sentence_bert_config.json`, `config_sentence_transformers.json`,
    /// `tokenizer_config.json`) onto `device`: "auto" (default), "webgpu" or "cpu". Rejects with
    /// `NetworkError`, `BadModelFile`, `WebGpuUnavailable`, …
    pub async fn load(base_url: String, device: Option<String>) -> Result<EmbeddingModel, JsValue> {
        let base = base_url.trim_end_matches('/').to_string();
        Self::build(Source::Http(base), device.as_deref().unwrap_or("auto")).await
    }

    /// Loads `repo@commit` from the weight store (IndexedDB database `db`, default "hugrt"),
    /// where `WeightStore.download` put `config.json`, `tokenizer.json`, `model.safetensors`
    /// (and the sentence-transformers files the repo has), onto `device` ("auto" by default).
    #[wasm_bindgen(js_name = fromStore)]
    pub async fn from_store(db: Option<String>, repo: String, commit: String, device: Option<String>) -> Result<EmbeddingModel, JsValue> {
        let source = Source::Store { db: db.unwrap_or_else(|| "hugrt".into()), repo, commit };
        Self::build(source, device.as_deref().unwrap_or("auto")).await
    }

    /// `{ architecture, layers, hidden, dims, adapter, device, fallbackReason }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        if self.disposed.get() {
            return Err(js_error("Busy", "the model was disposed"));
        }
        to_js(&self.info)
    }

    /// Embeds `texts` (one pass per group of similar lengths) as the model's sentence-transformers
    /// modules say, each after the prompt `prompt` (a text) or `prompt_name` (one of
    /// `info().prompts`; the default prompt applies without either): resolves to
    /// `{ data: Float32Array (n·d values, row-major), dims: [n, d] }`.
    pub fn embed(&self, texts: Vec<String>, prompt_name: Option<String>, prompt: Option<String>) -> js_sys::Promise {
        let (inner, disposed) = (self.inner.clone(), self.disposed.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = inner.borrow_mut().take();
            let mut s = taken.ok_or_else(|| js_error("Busy", "the model is embedding or disposed"))?;
            let modules = s.modules.clone();
            let prompt = match modules.prompt(prompt_name.as_deref(), prompt.as_deref()) {
                Ok(p) => p.to_string(),
                Err(e) => {
                    if !disposed.get() {
                        *inner.borrow_mut() = Some(s);
                    }
                    return Err(model_error(e));
                }
            };
            let result = s.engine.embed_sentences(&s.tokenizer, &texts, &modules, &prompt).await;
            let d = modules.dims;
            if !disposed.get() {
                *inner.borrow_mut() = Some(s);
            }
            let embeddings = result.map_err(model_error)?;
            let flat: Vec<f32> = embeddings.concat();
            let out = js_sys::Object::new();
            let dims = js_sys::Array::of2(&JsValue::from(embeddings.len() as u32), &JsValue::from(d));
            js_sys::Reflect::set(&out, &"data".into(), &js_sys::Float32Array::from(&flat[..]))?;
            js_sys::Reflect::set(&out, &"dims".into(), &dims)?;
            Ok(out.into())
        })
    }

    /// Embedding size (after the Pooling and Dense modules); 0 once disposed.
    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> u32 {
        self.inner.borrow().as_ref().map_or(0, |s| s.modules.dims)
    }

    /// Frees the GPU buffers (or the CPU weights).
    pub fn dispose(&self) {
        self.disposed.set(true);
        self.inner.borrow_mut().take();
    }
}
