//! The store's wasm-bindgen surface: `WeightStore` (download, read ranges, cache API). Errors
//! cross as JS `Error`s whose `name` and `code` are the stable codes of `StoreError::code`.

use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::download::{DownloadOptions, Progress, download_model};
use super::idb::IdbStore;
use super::{ChunkStore, StoreError, delete_revision, file_key, list_revisions, read_range};
use crate::hub::Hub;

fn js_error(e: &StoreError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(e.code());
    let set = |k: &str, v: JsValue| js_sys::Reflect::set(&err, &JsValue::from_str(k), &v);
    let _ = set("code", JsValue::from_str(e.code()));
    if let StoreError::Hub(h) = e
        && let Some(code) = h.hub_code()
    {
        let _ = set("hubCode", JsValue::from_str(code));
    }
    if let StoreError::QuotaInsufficient { needed, available } = e {
        let _ = set("needed", JsValue::from_f64(*needed as f64));
        let _ = set("available", JsValue::from_f64(*available as f64));
    }
    err.into()
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsValue::from_str(&e.to_string()))
}

fn get(opts: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(opts, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// The hub of `options.endpoint` (default huggingface.co) with `options.token`.
fn hub_of(options: &JsValue) -> Result<Hub, crate::hub::HubError> {
    let endpoint = get(options, "endpoint").and_then(|v| v.as_string()).unwrap_or_else(|| crate::hub::DEFAULT_ENDPOINT.to_string());
    Hub::new(&endpoint, get(options, "token").and_then(|v| v.as_string()))
}

/// Weights kept in IndexedDB.
#[wasm_bindgen]
pub struct WeightStore {
    store: IdbStore,
}

#[wasm_bindgen]
impl WeightStore {
    /// Opens (or creates) the store in the IndexedDB database `name` (default `"hugrt"`).
    pub async fn open(name: Option<String>) -> Result<WeightStore, JsValue> {
        let store = IdbStore::open(name.as_deref().unwrap_or("hugrt")).await.map_err(|e| js_error(&e))?;
        Ok(WeightStore { store })
    }

    /// Resolves `repo@revision` and downloads `files` (all when empty) into the store.
    /// `options`: `{ endpoint, token, concurrency, retries, budget, signal, onProgress }`;
    /// `onProgress` gets `{ status, file, fileLoaded, fileTotal, loaded, total }`.
    /// Resolves to `{ repo, commit, files: [{ path, size, transferred, resumedAt, restarts,
    /// resolvedAgain, fromCache }], bytes, persisted }`. A hub refusal carries the hub's own code
    /// as `hubCode` (`GatedRepo`, `RepoNotFound`, ...).
    pub async fn download(&self, repo: String, revision: Option<String>, files: Option<Vec<String>>, options: JsValue) -> Result<JsValue, JsValue> {
        self.store.reconnect().await.map_err(|e| js_error(&e))?;
        let hub = hub_of(&options).map_err(|e| js_error(&e.into()))?;
        let mut opts = DownloadOptions::default();
        if let Some(c) = get(&options, "concurrency").and_then(|v| v.as_f64()) {
            opts.concurrency = (c as usize).clamp(1, 16);
        }
        if let Some(r) = get(&options, "retries").and_then(|v| v.as_f64()) {
            opts.retries = (r as u32).min(20);
        }
        opts.budget = get(&options, "budget").and_then(|v| v.as_f64()).map(|b| b as u64);
        opts.signal = get(&options, "signal").and_then(|v| v.dyn_into().ok());
        if let Some(f) = get(&options, "onProgress").and_then(|v| v.dyn_into::<js_sys::Function>().ok()) {
            opts.on_progress = Some(Rc::new(move |p: &Progress| {
                if let Ok(v) = to_js(p) {
                    let _ = f.call1(&JsValue::NULL, &v);
                }
            }));
        }
        let files = files.unwrap_or_default();
        let paths: Vec<&str> = files.iter().map(String::as_str).collect();
        let report = download_model(&self.store, &hub, &repo, revision.as_deref().unwrap_or("main"), &paths, &opts).await.map_err(|e| js_error(&e))?;
        to_js(&report)
    }

    /// The commit and file names of `repo@revision` (default `main`): `{ commit, files }`, offline
    /// first. A commit stored whole answers from the store without any request; otherwise the
    /// hub's revision API (with the token, typed errors with the hub's `hubCode`), and when the
    /// hub cannot be reached, the revision `download` would load offline.
    /// `options`: `{ endpoint, token, signal }`.
    #[wasm_bindgen(js_name = listFiles)]
    pub async fn list_files(&self, repo: String, revision: Option<String>, options: JsValue) -> Result<JsValue, JsValue> {
        self.store.reconnect().await.map_err(|e| js_error(&e))?;
        let revision = revision.unwrap_or_else(|| "main".into());
        let hub = hub_of(&options).map_err(|e| js_error(&e.into()))?;
        let signal: Option<web_sys::AbortSignal> = get(&options, "signal").and_then(|v| v.dyn_into().ok());
        let stored = if crate::hub::is_commit(&revision) { super::download::cached_info(&self.store, &repo, &revision, &[]).await.map_err(|e| js_error(&e))? } else { None };
        let info = match stored {
            Some(info) => info,
            None => super::download::revision_info(&self.store, &hub, &repo, &revision, &[], signal.as_ref()).await.map_err(|e| js_error(&e))?,
        };
        to_js(&serde_json::json!({ "commit": info.sha, "files": info.siblings.iter().map(|s| &s.rfilename).collect::<Vec<_>>() }))
    }

    /// Bytes `start..end` of a complete file.
    #[wasm_bindgen(js_name = readRange)]
    pub async fn read_range(&self, repo: String, commit: String, path: String, start: f64, end: f64) -> Result<js_sys::Uint8Array, JsValue> {
        self.store.reconnect().await.map_err(|e| js_error(&e))?;
        let bytes = read_range(&self.store, &file_key(&repo, &commit, &path), start as u64..end as u64).await.map_err(|e| js_error(&e))?;
        Ok(js_sys::Uint8Array::from(bytes.as_slice()))
    }

    /// `[{ repo, commit, files, bytes, completeFiles, lastUsed }]`.
    pub async fn list(&self) -> Result<JsValue, JsValue> {
        self.store.reconnect().await.map_err(|e| js_error(&e))?;
        let revs = list_revisions(&self.store).await.map_err(|e| js_error(&e))?;
        to_js(&revs)
    }

    /// Deletes a revision; resolves to the bytes freed.
    #[wasm_bindgen(js_name = deleteRevision)]
    pub async fn delete_revision(&self, repo: String, commit: String) -> Result<f64, JsValue> {
        self.store.reconnect().await.map_err(|e| js_error(&e))?;
        delete_revision(&self.store, &repo, &commit).await.map(|b| b as f64).map_err(|e| js_error(&e))
    }

    /// Closes the IndexedDB connection (another page may then upgrade or delete the database
    /// without waiting for this one); a later call reopens it.
    pub fn close(&self) {
        self.store.close();
    }

    pub async fn clear(&self) -> Result<(), JsValue> {
        self.store.reconnect().await.map_err(|e| js_error(&e))?;
        self.store.clear().await.map_err(|e| js_error(&e))
    }
}
