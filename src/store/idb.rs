//! The browser back end: IndexedDB, two object stores — `files` (manifest JSON by file key) and
//! `chunks` (`Uint8Array` by `{file key}#{index}`). Every write is one transaction that is awaited
//! to `complete`; nothing but IndexedDB requests is awaited while a transaction is open (each
//! read is its own transaction), so there is no `TransactionInactiveError` path. A chunk and the
//! manifest that counts it are written in the same transaction.

use std::cell::RefCell;
use std::rc::Rc;

use futures_channel::oneshot;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Event, IdbDatabase, IdbKeyRange, IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode};

use super::{ChunkStore, FileManifest, MAX_CHUNK_BYTES, StoreError, chunk_key};

/// Bump when the object stores change; `onupgradeneeded` creates what is missing.
const DB_VERSION: u32 = 1;
const FILES: &str = "files";
const CHUNKS: &str = "chunks";

#[derive(Clone)]
pub struct IdbStore {
    db: IdbDatabase,
}

/// Maps a JS/DOM error; `QuotaExceededError` becomes `StoreError::QuotaExceeded`.
pub fn idb_error(e: &JsValue, what: &str) -> StoreError {
    let name = js_sys::Reflect::get(e, &JsValue::from_str("name")).ok().and_then(|n| n.as_string()).unwrap_or_default();
    let message = js_sys::Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|n| n.as_string()).unwrap_or_else(|| format!("{e:?}"));
    if name == "QuotaExceededError" {
        StoreError::QuotaExceeded { path: what.to_string(), message }
    } else {
        StoreError::Backend { message: format!("IndexedDB {what}: {name}: {message}") }
    }
}

type Slot<T> = Rc<RefCell<Option<oneshot::Sender<T>>>>;

fn send<T>(slot: &Slot<T>, v: T) {
    if let Some(tx) = slot.borrow_mut().take() {
        let _ = tx.send(v);
    }
}

/// Awaits one request's `success`/`error`.
async fn request(req: &IdbRequest, what: &str) -> Result<JsValue, StoreError> {
    let (tx, rx) = oneshot::channel::<Result<JsValue, JsValue>>();
    let slot: Slot<_> = Rc::new(RefCell::new(Some(tx)));
    let (s1, r1) = (slot.clone(), req.clone());
    let ok = Closure::<dyn FnMut(Event)>::new(move |_| send(&s1, r1.result()));
    let (s2, r2) = (slot, req.clone());
    let err = Closure::<dyn FnMut(Event)>::new(move |_| {
        let e = r2.error().ok().flatten().map(JsValue::from).unwrap_or(JsValue::NULL);
        send(&s2, Err(e))
    });
    req.set_onsuccess(Some(ok.as_ref().unchecked_ref()));
    req.set_onerror(Some(err.as_ref().unchecked_ref()));
    let r = rx.await;
    req.set_onsuccess(None);
    req.set_onerror(None);
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(idb_error(&e, what)),
        Err(_) => Err(StoreError::Backend { message: format!("IndexedDB {what}: request dropped") }),
    }
}

/// Awaits a transaction's `complete` (or its `error`/`abort`).
async fn finished(t: &IdbTransaction, what: &str) -> Result<(), StoreError> {
    let (tx, rx) = oneshot::channel::<Result<(), JsValue>>();
    let slot: Slot<_> = Rc::new(RefCell::new(Some(tx)));
    let s1 = slot.clone();
    let ok = Closure::<dyn FnMut(Event)>::new(move |_| send(&s1, Ok(())));
    let (s2, t2) = (slot, t.clone());
    let fail = Closure::<dyn FnMut(Event)>::new(move |_| {
        let e = t2.error().map(JsValue::from).unwrap_or_else(|| JsValue::from_str("transaction aborted"));
        send(&s2, Err(e))
    });
    t.set_oncomplete(Some(ok.as_ref().unchecked_ref()));
    t.set_onerror(Some(fail.as_ref().unchecked_ref()));
    t.set_onabort(Some(fail.as_ref().unchecked_ref()));
    let r = rx.await;
    t.set_oncomplete(None);
    t.set_onerror(None);
    t.set_onabort(None);
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(idb_error(&e, what)),
        Err(_) => Err(StoreError::Backend { message: format!("IndexedDB {what}: transaction dropped") }),
    }
}

fn js(what: &'static str) -> impl Fn(JsValue) -> StoreError {
    move |e| idb_error(&e, what)
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`. An open connection closes itself on
    /// `versionchange` so that a newer tab's upgrade is not blocked by this one.
    pub async fn open(name: &str) -> Result<IdbStore, StoreError> {
        let global = js_sys::global();
        let factory = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
            w.indexed_db()
        } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
            w.indexed_db()
        } else {
            Ok(None)
        }
        .map_err(js("open"))?
        .ok_or_else(|| StoreError::Backend { message: "IndexedDB is unavailable (private mode or an old browser)".into() })?;
        let req: IdbOpenDbRequest = factory.open_with_u32(name, DB_VERSION).map_err(js("open"))?;
        let r2 = req.clone();
        let upgrade = Closure::<dyn FnMut(Event)>::new(move |_| {
            if let Ok(db) = r2.result().and_then(|d| d.dyn_into::<IdbDatabase>()) {
                let names = db.object_store_names();
                for s in [FILES, CHUNKS] {
                    if !names.contains(s) {
                        let _ = db.create_object_store(s);
                    }
                }
            }
        });
        req.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let blocked = Closure::<dyn FnMut(Event)>::new(move |_| {
            web_sys::console::warn_1(&JsValue::from_str("hugrt store: upgrade blocked by another tab holding an older version; waiting"));
        });
        req.set_onblocked(Some(blocked.as_ref().unchecked_ref()));
        let db = request(&req, "open").await?;
        req.set_onupgradeneeded(None);
        req.set_onblocked(None);
        let db: IdbDatabase = db.dyn_into().map_err(js("open"))?;
        let d2 = db.clone();
        let on_change = Closure::<dyn FnMut(Event)>::new(move |_| d2.close());
        db.set_onversionchange(Some(on_change.as_ref().unchecked_ref()));
        on_change.forget(); // lives as long as the connection
        Ok(IdbStore { db })
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.db.close();
    }

    fn tx(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction, StoreError> {
        let names = js_sys::Array::new();
        for s in stores {
            names.push(&JsValue::from_str(s));
        }
        self.db.transaction_with_str_sequence_and_mode(&names, mode).map_err(js("transaction"))
    }
}

fn parse(v: &JsValue) -> Result<FileManifest, StoreError> {
    let s = v.as_string().ok_or_else(|| StoreError::Backend { message: "manifest is not a string".into() })?;
    serde_json::from_str(&s).map_err(|e| StoreError::Backend { message: format!("bad manifest: {e}") })
}

fn to_json(m: &FileManifest) -> Result<JsValue, StoreError> {
    serde_json::to_string(m).map(|s| JsValue::from_str(&s)).map_err(|e| StoreError::Backend { message: e.to_string() })
}

impl ChunkStore for IdbStore {
    async fn manifest(&self, key: &str) -> Result<Option<FileManifest>, StoreError> {
        let t = self.tx(&[FILES], IdbTransactionMode::Readonly)?;
        let req = t.object_store(FILES).map_err(js("files"))?.get(&JsValue::from_str(key)).map_err(js("get"))?;
        let v = request(&req, "get manifest").await?;
        if v.is_undefined() || v.is_null() { Ok(None) } else { parse(&v).map(Some) }
    }

    async fn manifests(&self) -> Result<Vec<FileManifest>, StoreError> {
        let t = self.tx(&[FILES], IdbTransactionMode::Readonly)?;
        let req = t.object_store(FILES).map_err(js("files"))?.get_all().map_err(js("getAll"))?;
        let v = request(&req, "list manifests").await?;
        let arr: js_sys::Array = v.dyn_into().map_err(js("getAll"))?;
        arr.iter().map(|v| parse(&v)).collect()
    }

    async fn put_manifest(&self, m: &FileManifest) -> Result<(), StoreError> {
        let t = self.tx(&[FILES], IdbTransactionMode::Readwrite)?;
        t.object_store(FILES).map_err(js("files"))?.put_with_key(&to_json(m)?, &JsValue::from_str(&m.key())).map_err(js("put manifest"))?;
        finished(&t, &m.path).await
    }

    async fn put_chunk(&self, m: &FileManifest, index: u64, data: &[u8]) -> Result<(), StoreError> {
        if data.len() as u64 > MAX_CHUNK_BYTES {
            return Err(StoreError::ChunkTooLarge { bytes: data.len() as u64 });
        }
        let key = m.key();
        let t = self.tx(&[FILES, CHUNKS], IdbTransactionMode::Readwrite)?;
        let value = js_sys::Uint8Array::from(data);
        t.object_store(CHUNKS).map_err(js("chunks"))?.put_with_key(&value, &JsValue::from_str(&chunk_key(&key, index))).map_err(|e| idb_error(&e, &m.path))?;
        t.object_store(FILES).map_err(js("files"))?.put_with_key(&to_json(m)?, &JsValue::from_str(&key)).map_err(|e| idb_error(&e, &m.path))?;
        finished(&t, &m.path).await
    }

    async fn chunk(&self, key: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.tx(&[CHUNKS], IdbTransactionMode::Readonly)?;
        let req = t.object_store(CHUNKS).map_err(js("chunks"))?.get(&JsValue::from_str(&chunk_key(key, index))).map_err(js("get"))?;
        let v = request(&req, "get chunk").await?;
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        let a: js_sys::Uint8Array = v.dyn_into().map_err(js("chunk"))?;
        Ok(Some(a.to_vec()))
    }

    async fn delete_file(&self, m: &FileManifest) -> Result<(), StoreError> {
        let key = m.key();
        let t = self.tx(&[FILES, CHUNKS], IdbTransactionMode::Readwrite)?;
        // Chunk keys are `{key}#{index:010}`; '$' sorts right after '#'.
        let range = IdbKeyRange::bound_with_lower_open_and_upper_open(&JsValue::from_str(&format!("{key}#")), &JsValue::from_str(&format!("{key}$")), false, true).map_err(js("key range"))?;
        t.object_store(CHUNKS).map_err(js("chunks"))?.delete(&range).map_err(js("delete chunks"))?;
        t.object_store(FILES).map_err(js("files"))?.delete(&JsValue::from_str(&key)).map_err(js("delete manifest"))?;
        finished(&t, &m.path).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let t = self.tx(&[FILES, CHUNKS], IdbTransactionMode::Readwrite)?;
        t.object_store(CHUNKS).map_err(js("chunks"))?.clear().map_err(js("clear"))?;
        t.object_store(FILES).map_err(js("files"))?.clear().map_err(js("clear"))?;
        finished(&t, "clear").await
    }
}
