//! Byte ranges of a URL with HTTP `Range` requests: how models load in the browser until they
//! load from the weight store. Never the whole file in wasm memory.

use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::formats::TensorTable;
use crate::models::{ModelError, ReadError};
use crate::models::{RangeReader, read_table_ranged};

/// Reads byte ranges of one URL with `Range` requests.
pub(crate) struct HttpRanges {
    url: String,
    len: Option<u64>,
}

impl HttpRanges {
    pub(crate) fn new(url: &str) -> Self {
        Self { url: url.to_owned(), len: None }
    }

    /// Fetches the file's header in growing ranges until the tensor table parses.
    pub(crate) async fn read_table(&mut self) -> Result<TensorTable, ModelError> {
        let prefix = self.fetch(0..1 << 20).await.map_err(ModelError::Read)?;
        let file_len = self.len.ok_or_else(|| ModelError::Read(ReadError::new("NetworkError", format!("{}: no file length in Content-Range", self.url))))?;
        let url = self.url.clone();
        read_table_ranged(self, prefix, file_len, &url).await
    }

    /// The bytes of `range` (a 206 that starts where asked, of the right length).
    pub(crate) async fn fetch(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        self.fetch_bytes(range).await.map_err(|m| ReadError::new("NetworkError", m))
    }

    async fn fetch_bytes(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
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
                .and_then(|f| f.dyn_into::<js_sys::Function>())
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
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        self.fetch(range).await
    }
}

