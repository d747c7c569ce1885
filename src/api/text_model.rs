//! A text-generation model in the browser: a GGUF Llama fetched tensor by tensor with HTTP Range
//! requests (never the whole file in wasm memory), run on WebGPU, greedy decoding.
//! A first cut before the weight store (IndexedDB) and the `pipeline()` API take over.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{js_error, to_js};
use crate::formats::{FormatError, Metadata, grow_prefix, read_table};
use crate::gpu::GpuContext;
use crate::models::llama::{Llama, ModelError, RangeReader};
use crate::tokenizer::Tokenizer;

/// Reads byte ranges of one URL with `Range` requests.
struct HttpRanges {
    url: String,
    len: Option<u64>,
}

impl HttpRanges {
    async fn fetch(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let headers = Object::new();
        let _ = Reflect::set(&headers, &"Range".into(), &format!("bytes={}-{}", range.start, range.end - 1).into());
        let init = Object::new();
        let _ = Reflect::set(&init, &"headers".into(), &headers);
        let fetch = Reflect::get(&js_sys::global(), &"fetch".into()).map_err(|_| String::from("no fetch"))?;
        let fetch: js_sys::Function = fetch.dyn_into().map_err(|_| String::from("no fetch"))?;
        let promise = fetch.call2(&JsValue::NULL, &self.url.clone().into(), &init).map_err(|e| format!("fetch failed: {e:?}"))?;
        let response = JsFuture::from(js_sys::Promise::from(promise)).await.map_err(|e| format!("{}: network error {e:?}", self.url))?;
        let status = Reflect::get(&response, &"status".into()).ok().and_then(|s| s.as_f64()).unwrap_or(0.0) as u32;
        if status != 206 {
            return Err(format!("{}: HTTP {status} for a range request (206 expected)", self.url));
        }
        let headers = Reflect::get(&response, &"headers".into()).map_err(|_| String::from("no headers"))?;
        let get: js_sys::Function = Reflect::get(&headers, &"get".into()).map_err(|_| String::from("no headers"))?.dyn_into().map_err(|_| String::from("no headers"))?;
        let content_range = get.call1(&headers, &"Content-Range".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        // "bytes a-b/total": the answer must start where we asked.
        let (span, total) = content_range.trim_start_matches("bytes ").split_once('/').ok_or_else(|| format!("bad Content-Range {content_range:?}"))?;
        if span.split('-').next().and_then(|a| a.parse::<u64>().ok()) != Some(range.start) {
            return Err(format!("{}: Content-Range {content_range:?} does not start at {}", self.url, range.start));
        }
        self.len = total.parse().ok();
        let buffer = JsFuture::from(
            Reflect::get(&response, &"arrayBuffer".into())
                .and_then(|f| f.dyn_into::<js_sys::Function>().map_err(JsValue::from))
                .and_then(|f| f.call0(&response))
                .map(js_sys::Promise::from)
                .map_err(|_| String::from("no body"))?,
        )
        .await
        .map_err(|e| format!("{}: body {e:?}", self.url))?;
        let bytes = Uint8Array::new(&buffer).to_vec();
        if bytes.len() as u64 != range.end - range.start {
            return Err(format!("{}: got {} bytes for {range:?}", self.url, bytes.len()));
        }
        Ok(bytes)
    }
}

impl RangeReader for HttpRanges {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        self.fetch(range).await
    }
}

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
        let mut http = HttpRanges { url: url.clone(), len: None };
        let mut prefix = http.fetch(0..1 << 20).await.map_err(|m| js_error("NetworkError", &m))?;
        let file_len = http.len.ok_or_else(|| js_error("NetworkError", "no file length in Content-Range"))?;
        let table = loop {
            match read_table(&prefix, file_len, &url) {
                Err(FormatError::NeedMoreBytes { needed }) => {
                    let have = prefix.len() as u64;
                    let want = grow_prefix(have, needed, file_len).map_err(|e| js_error("BadModelFile", &format!("{url}: {e}")))?;
                    let more = http.fetch(have..want).await.map_err(|m| js_error("NetworkError", &m))?;
                    prefix.extend(more);
                }
                Err(e) => return Err(js_error("BadModelFile", &format!("{url}: {e}"))),
                Ok(t) => break t,
            }
        };
        drop(prefix);
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
