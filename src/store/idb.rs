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
    name: Rc<str>,
    version: u32,
    conn: Rc<RefCell<Conn>>,
}

/// Maps a JS/DOM error; `QuotaExceededError` becomes `StoreError::QuotaExceeded`.
pub fn idb_error(e: &JsValue, what: &str) -> StoreError {
    let name = js_sys::Reflect::get(e, &JsValue::from_str("name")).ok().and_then(|n| n.as_string()).unwrap_or_default();
    let message = js_sys::Reflect::get(e, &JsValue::from_str("message")).ok().and_then(|n| n.as_string()).unwrap_or_else(|| format!("{e:?}"));
    let message = if message.trim().is_empty() { name.clone() } else { message };
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

/// How long `open` waits while another connection blocks an upgrade before it gives up with
/// [`StoreError::Blocked`] (hugrt's own connections close themselves at once on `versionchange`;
/// a blocker is a page that does not).
pub const BLOCKED_TIMEOUT_MS: i32 = 10_000;

/// The connection, or why it was closed.
enum Conn {
    Open(IdbDatabase),
    /// Closed on `versionchange`: another page deleted the database (`None`) or opened it at a
    /// newer schema version.
    Closed(Option<f64>),
}

impl IdbStore {
    /// Opens (creating or upgrading) the database `name`. An open connection closes itself on
    /// `versionchange` so that a newer tab's upgrade (or a deletion) is never blocked by this one;
    /// its next operation then fails with [`StoreError::Closed`], and [`IdbStore::reconnect`]
    /// opens it again. Where another page has put a newer schema in place, opening fails with
    /// [`StoreError::Closed`] too (reload the page).
    pub async fn open(name: &str) -> Result<IdbStore, StoreError> {
        Self::open_version(name, DB_VERSION, BLOCKED_TIMEOUT_MS).await
    }

    /// [`IdbStore::open`] at another schema version (tests of upgrades), giving up after
    /// `blocked_ms` of `blocked`.
    #[doc(hidden)]
    pub async fn open_version(name: &str, version: u32, blocked_ms: i32) -> Result<IdbStore, StoreError> {
        let db = open_db(name, version, blocked_ms).await?;
        let store = IdbStore { name: Rc::from(name), version, conn: Rc::new(RefCell::new(Conn::Open(db.clone()))) };
        store.watch(&db);
        Ok(store)
    }

    /// Closes this connection (for all clones) when another page upgrades or deletes the database.
    fn watch(&self, db: &IdbDatabase) {
        let (d2, conn) = (db.clone(), Rc::downgrade(&self.conn));
        let on_change = Closure::<dyn FnMut(web_sys::IdbVersionChangeEvent)>::new(move |e: web_sys::IdbVersionChangeEvent| {
            d2.close();
            if let Some(conn) = conn.upgrade() {
                *conn.borrow_mut() = Conn::Closed(e.new_version());
            }
            web_sys::console::warn_1(&JsValue::from_str("hugrt store: another page upgraded or deleted the database; this connection closed"));
        });
        db.set_onversionchange(Some(on_change.as_ref().unchecked_ref()));
        on_change.forget(); // lives as long as the connection (a few bytes per open)
    }

    /// Opens the database again after another page deleted or upgraded it; a no-op while the
    /// connection is open. Never called in the middle of a download (a database deleted under a
    /// writer must not be refilled from the middle of a file): the entry points call it first.
    pub async fn reconnect(&self) -> Result<(), StoreError> {
        if matches!(*self.conn.borrow(), Conn::Open(_)) {
            return Ok(());
        }
        let db = open_db(&self.name, self.version, BLOCKED_TIMEOUT_MS).await?;
        *self.conn.borrow_mut() = Conn::Open(db.clone());
        self.watch(&db);
        Ok(())
    }

    /// Closes the connection.
    pub fn close(&self) {
        if let Conn::Open(db) = &*self.conn.borrow() {
            db.close();
        }
        *self.conn.borrow_mut() = Conn::Closed(Some(0.0));
    }

    fn db(&self) -> Result<IdbDatabase, StoreError> {
        match &*self.conn.borrow() {
            Conn::Open(db) => Ok(db.clone()),
            Conn::Closed(None) => Err(StoreError::Closed { reason: format!("another page deleted the database {:?}; the next call reopens it", self.name) }),
            Conn::Closed(Some(v)) if *v > f64::from(self.version) => Err(StoreError::Closed { reason: format!("another page upgraded the database {:?} to schema version {v} (this page has {}); reload this page", self.name, self.version) }),
            Conn::Closed(Some(_)) => Err(StoreError::Closed { reason: format!("the connection to {:?} was closed", self.name) }),
        }
    }

    fn tx(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction, StoreError> {
        let names = js_sys::Array::new();
        for s in stores {
            names.push(&JsValue::from_str(s));
        }
        self.db()?.transaction_with_str_sequence_and_mode(&names, mode).map_err(js("transaction"))
    }
}

/// `indexedDB.open(name, version)`, creating missing object stores on upgrade. While another
/// connection blocks the upgrade it waits `blocked_ms`, then fails with [`StoreError::Blocked`]
/// (a connection that opens later is closed at once).
async fn open_db(name: &str, version: u32, blocked_ms: i32) -> Result<IdbDatabase, StoreError> {
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
    let req: IdbOpenDbRequest = factory.open_with_u32(name, version).map_err(js("open"))?;
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
    // The request runs in its own task so that `open` can give up on a persistent `blocked`.
    let (tx, rx) = oneshot::channel::<Option<Result<JsValue, StoreError>>>();
    let slot: Slot<_> = Rc::new(RefCell::new(Some(tx)));
    let s2 = slot.clone();
    let blocked = Closure::<dyn FnMut(Event)>::new(move |_| {
        web_sys::console::warn_1(&JsValue::from_str("hugrt store: upgrade blocked by another page holding an older version open; waiting"));
        let s3 = s2.clone();
        wasm_bindgen_futures::spawn_local(async move {
            super::download::sleep_ms(blocked_ms).await;
            send(&s3, None);
        });
    });
    req.set_onblocked(Some(blocked.as_ref().unchecked_ref()));
    let r3 = req.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let r = request(&r3, "open").await;
        r3.set_onupgradeneeded(None);
        r3.set_onblocked(None);
        drop((upgrade, blocked));
        if slot.borrow().is_some() {
            send(&slot, Some(r));
        } else if let Ok(db) = r.and_then(|d| d.dyn_into::<IdbDatabase>().map_err(js("open"))) {
            db.close(); // opened after `open` gave up
        }
    });
    let db = match rx.await {
        Ok(Some(r)) => r.map_err(|e| match e {
            // Another page runs a newer hugrt (a newer schema); this page's code cannot use it.
            StoreError::Backend { message } if message.contains("VersionError") => StoreError::Closed { reason: format!("another page upgraded the database {name:?} to a newer schema version than this page's ({version}); reload this page") },
            e => e,
        })?,
        Ok(None) => return Err(StoreError::Blocked { name: name.to_string(), version, waited_ms: blocked_ms.max(0) as u32 }),
        Err(_) => return Err(StoreError::Backend { message: "IndexedDB open: request dropped".into() }),
    };
    db.dyn_into().map_err(js("open"))
}

/// All chunk keys of a file: `{key}#{index:010}`; '$' sorts right after '#'.
fn chunk_range(key: &str) -> Result<IdbKeyRange, StoreError> {
    IdbKeyRange::bound_with_lower_open_and_upper_open(&JsValue::from_str(&format!("{key}#")), &JsValue::from_str(&format!("{key}$")), false, true).map_err(js("key range"))
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

    async fn chunks_present(&self, m: &FileManifest) -> Result<u64, StoreError> {
        let t = self.tx(&[CHUNKS], IdbTransactionMode::Readonly)?;
        let req = t.object_store(CHUNKS).map_err(js("chunks"))?.count_with_key(&chunk_range(&m.key())?.into()).map_err(js("count"))?;
        Ok(request(&req, "count chunks").await?.as_f64().unwrap_or(0.0) as u64)
    }

    async fn delete_file(&self, m: &FileManifest) -> Result<(), StoreError> {
        let key = m.key();
        let t = self.tx(&[FILES, CHUNKS], IdbTransactionMode::Readwrite)?;
        let range = chunk_range(&key)?;
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
