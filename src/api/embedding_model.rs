//! A sentence-embedding model in the browser: a BERT checkpoint folder served over HTTP
//! (`config.json` and `tokenizer.json` fetched whole, `model.safetensors` tensor by tensor with
//! Range requests, so never whole in wasm memory), run on WebGPU. The JS
//! `pipeline('feature-extraction', …)` wraps it.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::http::HttpRanges;
use super::{js_error, stored_bytes, stored_table, to_js};
use crate::formats::TensorTable;
use crate::models::RangeReader;
use crate::store::idb::IdbStore;
use crate::gpu::GpuContext;
use crate::hub::fetch::{fetch, js_message};
use crate::models::bert::Bert;
use crate::models::llama::ModelError;
use crate::tokenizer::Tokenizer;

struct Inner {
    ctx: GpuContext,
    model: Bert,
    tokenizer: Tokenizer,
}

/// A BERT encoder (all-MiniLM-L6-v2, BERT-base-like) on WebGPU: mean-pooled, L2-normalised
/// sentence embeddings.
#[wasm_bindgen]
pub struct EmbeddingModel {
    inner: Rc<RefCell<Option<Inner>>>,
}

fn model_error(e: ModelError) -> JsValue {
    match e {
        ModelError::Gpu(g) => g.into(),
        ModelError::Read(m) => js_error("NetworkError", &m),
        ModelError::Input(m) => js_error("Usage", &m),
        other => js_error("BadModelFile", &other.to_string()),
    }
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

impl EmbeddingModel {
    async fn build(config: &[u8], tokenizer: Tokenizer, sentence_config: Option<&[u8]>, table: &TensorTable, read: &mut impl RangeReader) -> Result<EmbeddingModel, JsValue> {
        let ctx = GpuContext::new().await?;
        let mut model = Bert::load(&ctx, config, table, read).await.map_err(model_error)?;
        if let Some(json) = sentence_config {
            model.apply_sentence_bert_config(json).map_err(model_error)?;
        }
        Ok(EmbeddingModel { inner: Rc::new(RefCell::new(Some(Inner { ctx, model, tokenizer }))) })
    }
}

#[wasm_bindgen]
impl EmbeddingModel {
    /// Loads the checkpoint folder at `base_url` (`{base}/config.json`, `{base}/tokenizer.json`,
    /// `{base}/model.safetensors`, and `{base}/sentence_bert_config.json` when there, whose
    /// `max_seq_length` caps the tokens per text). Rejects with `NetworkError`, `BadModelFile`,
    /// `WebGpuUnavailable`, …
    pub async fn load(base_url: String) -> Result<EmbeddingModel, JsValue> {
        let base = base_url.trim_end_matches('/');
        let required = async |name: &str| {
            let url = format!("{base}/{name}");
            fetch_bytes(&url).await?.ok_or_else(|| js_error("NetworkError", &format!("{url}: HTTP 404")))
        };
        let config = required("config.json").await?;
        let tokenizer = Tokenizer::from_json(&required("tokenizer.json").await?).map_err(|e| js_error("BadModelFile", &format!("{base}/tokenizer.json: {e}")))?;
        let sentence_config = fetch_bytes(&format!("{base}/sentence_bert_config.json")).await?;
        let mut http = HttpRanges::new(&format!("{base}/model.safetensors"));
        let table = http.read_table().await.map_err(model_error)?;
        Self::build(&config, tokenizer, sentence_config.as_deref(), &table, &mut http).await
    }

    /// Loads `repo@commit` from the weight store (IndexedDB database `db`, default "hugrt"),
    /// where `WeightStore.download` put `config.json`, `tokenizer.json`, `model.safetensors`
    /// (and `sentence_bert_config.json` when the repo has it).
    #[wasm_bindgen(js_name = fromStore)]
    pub async fn from_store(db: Option<String>, repo: String, commit: String) -> Result<EmbeddingModel, JsValue> {
        let store = IdbStore::open(db.as_deref().unwrap_or("hugrt")).await.map_err(|e| js_error(e.code(), &e.to_string()))?;
        let config = stored_bytes(&store, &repo, &commit, "config.json").await?;
        let tokenizer = Tokenizer::from_json(&stored_bytes(&store, &repo, &commit, "tokenizer.json").await?).map_err(|e| js_error("BadModelFile", &format!("{repo}/tokenizer.json: {e}")))?;
        let sentence_config = stored_bytes(&store, &repo, &commit, "sentence_bert_config.json").await.ok();
        let (table, mut weights) = stored_table(&store, &repo, &commit, "model.safetensors").await?;
        Self::build(&config, tokenizer, sentence_config.as_deref(), &table, &mut weights).await
    }

    /// `{ architecture, layers, hidden, dims, adapter, device }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let inner = self.inner.borrow();
        let s = inner.as_ref().ok_or_else(|| js_error("Busy", "the model is embedding or disposed"))?;
        let c = &s.model.config;
        let adapter = s.ctx.report.label();
        to_js(&serde_json::json!({ "architecture": "bert", "layers": c.layers, "hidden": c.hidden, "dims": c.hidden, "adapter": adapter, "device": "webgpu" }))
    }

    /// Embeds `texts` (one pass per group of similar lengths): resolves to
    /// `{ data: Float32Array (n·d values, row-major), dims: [n, d] }`.
    pub fn embed(&self, texts: Vec<String>) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = inner.borrow_mut().take();
            let mut s = taken.ok_or_else(|| js_error("Busy", "the model is embedding or disposed"))?;
            let result = s.model.embed_texts(&s.ctx, &s.tokenizer, &texts).await.map_err(model_error);
            let d = s.model.config.hidden;
            *inner.borrow_mut() = Some(s);
            let embeddings = result?;
            let flat: Vec<f32> = embeddings.concat();
            let out = js_sys::Object::new();
            let dims = js_sys::Array::of2(&JsValue::from(embeddings.len() as u32), &JsValue::from(d));
            js_sys::Reflect::set(&out, &"data".into(), &js_sys::Float32Array::from(&flat[..]))?;
            js_sys::Reflect::set(&out, &"dims".into(), &dims)?;
            Ok(out.into())
        })
    }

    /// Embedding size (`hidden_size`); 0 once disposed.
    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> u32 {
        self.inner.borrow().as_ref().map_or(0, |s| s.model.config.hidden)
    }

    /// Frees the GPU buffers.
    pub fn dispose(&self) {
        self.inner.borrow_mut().take();
    }
}
