//! A text-generation model in the browser: a GGUF Llama fetched tensor by tensor with HTTP Range
//! requests (never the whole file in wasm memory), run on WebGPU, greedy decoding.
//! A first cut before the weight store (IndexedDB) and the `pipeline()` API take over.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::http::HttpRanges;
use super::{js_error, to_js};
use crate::formats::Metadata;
use crate::gpu::GpuContext;
use crate::models::llama::{Llama, ModelError};
use crate::tokenizer::Tokenizer;

struct Inner {
    ctx: GpuContext,
    model: Llama,
    tokenizer: Tokenizer,
}

/// A GGUF Llama-family model on WebGPU.
#[wasm_bindgen]
pub struct TextModel {
    inner: Rc<RefCell<Option<Inner>>>,
}

fn model_error(e: ModelError) -> JsValue {
    match e {
        ModelError::Gpu(g) => g.into(),
        ModelError::Read(m) => js_error("NetworkError", &m),
        other => js_error("BadModelFile", &other.to_string()),
    }
}

#[wasm_bindgen]
impl TextModel {
    /// Fetches the header of the GGUF at `url`, then each tensor in turn, onto the GPU.
    pub async fn load(url: String, context: Option<u32>) -> Result<TextModel, JsValue> {
        let mut http = HttpRanges::new(&url);
        let table = http.read_table().await?;
        let Metadata::Gguf { metadata, .. } = &table.metadata else {
            return Err(js_error("Unsupported", "only GGUF models generate yet"));
        };
        let tokenizer = Tokenizer::from_gguf(metadata).map_err(|e| js_error("BadModelFile", &e.to_string()))?;
        let ctx = GpuContext::new().await?;
        let model = Llama::load(&ctx, &table, context, &mut http).await.map_err(model_error)?;
        Ok(TextModel { inner: Rc::new(RefCell::new(Some(Inner { ctx, model, tokenizer }))) })
    }

    /// Greedy continuation of `prompt` (no chat template yet): resolves to
    /// `{ promptIds, ids, text, prefillMs, decodeTokPerS }`.
    pub fn generate(&self, prompt: String, max_tokens: u32) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = inner.borrow_mut().take();
            let mut s = taken.ok_or_else(|| js_error("Busy", "the model is generating or disposed"))?;
            let result = async {
                let now = || js_sys::Date::now();
                let prompt_ids = s.tokenizer.encode(&prompt, true).map_err(|e| js_error("Tokenizer", &e.to_string()))?;
                if prompt_ids.is_empty() {
                    return Err(js_error("Usage", "the prompt encodes to no tokens"));
                }
                s.model.reset();
                let t0 = now();
                let mut next = s.model.next_token(&s.ctx, &prompt_ids).await.map_err(model_error)?;
                let prefill_ms = now() - t0;
                let mut ids = Vec::new();
                let t1 = now();
                while (ids.len() as u32) < max_tokens && Some(next) != s.tokenizer.eos_id {
                    ids.push(next);
                    if ids.len() as u32 == max_tokens {
                        break;
                    }
                    next = s.model.next_token(&s.ctx, &[next]).await.map_err(model_error)?;
                }
                let decode_s = (now() - t1) / 1e3;
                let text = s.tokenizer.decode(&ids, true).map_err(|e| js_error("Tokenizer", &e.to_string()))?;
                to_js(&serde_json::json!({
                    "promptIds": prompt_ids, "ids": ids, "text": text, "prefillMs": prefill_ms,
                    "decodeTokPerS": ids.len().saturating_sub(1) as f64 / decode_s.max(1e-9),
                }))
            }
            .await;
            *inner.borrow_mut() = Some(s);
            result
        })
    }

    /// Frees the GPU buffers.
    pub fn dispose(&self) {
        self.inner.borrow_mut().take();
    }
}
