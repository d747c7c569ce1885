//! Browser downloads into the store: `fetch` streamed through a `ReadableStream` reader into a
//! [`FileWriter`] (never the whole file in memory: at most one chunk is buffered), resumed with a
//! single `Range` (no preflight) at the signed URL that answered, one Web Lock per file so that
//! two tabs download it once, bounded concurrency across files, byte progress per file and in
//! total, and an `AbortSignal`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use futures_channel::oneshot;
use serde::Serialize;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, ReadableStreamDefaultReader, Response};

use super::idb::IdbStore;
use super::writer::{FileWriter, Start};
use super::{ChunkStore, FileManifest, StoreError, ensure_budget};
use crate::hub::fetch::{fetch, is_abort, js_message};
use crate::hub::{Hub, HubError, RepoInfo, Sibling};

/// Phases reported to `on_progress`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Resolve,
    Download,
    Verify,
    CacheHit,
    Done,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub status: Phase,
    pub file: String,
    pub file_loaded: u64,
    pub file_total: u64,
    pub loaded: u64,
    pub total: u64,
}

pub type OnProgress = Rc<dyn Fn(&Progress)>;

#[derive(Clone)]
pub struct DownloadOptions {
    /// Files downloaded at once.
    pub concurrency: usize,
    /// Automatic resumes after a network error, per file.
    pub retries: u32,
    pub signal: Option<AbortSignal>,
    /// Cache budget in bytes: whole least-recently-used revisions are evicted to fit, and a model
    /// larger than the budget fails before downloading.
    pub budget: Option<u64>,
    pub on_progress: Option<OnProgress>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions { concurrency: 3, retries: 3, signal: None, budget: None, on_progress: None }
    }
}

/// What one file's download did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileReport {
    pub path: String,
    pub size: u64,
    /// Body bytes received over the network for this file (all attempts).
    pub transferred: u64,
    /// Offsets that requests started at after the first (resumes).
    pub resumed_at: Vec<u64>,
    /// Times the file started over from byte 0 (Range ignored or unsatisfiable).
    pub restarts: u32,
    /// Times a signed download URL was refused (expired) and the file resolved through the hub
    /// again.
    pub resolved_again: u32,
    pub from_cache: bool,
}

fn net(path: &str, offset: u64, e: &JsValue) -> StoreError {
    if is_abort(e) { StoreError::Aborted } else { StoreError::Network { path: path.to_string(), offset, message: js_message(e) } }
}

fn aborted(signal: Option<&AbortSignal>) -> bool {
    signal.is_some_and(|s| s.aborted())
}

/// `setTimeout` as a future.
pub async fn sleep_ms(ms: i32) {
    sleep_unless_aborted(ms, None).await;
}

/// `setTimeout` as a future, cut short when `signal` aborts (a retry's wait is up to a minute).
pub async fn sleep_unless_aborted(ms: i32, signal: Option<&AbortSignal>) {
    let resolver: RefCell<Option<js_sys::Function>> = RefCell::new(None);
    let p = js_sys::Promise::new(&mut |resolve, _| {
        let g = js_sys::global();
        let set = js_sys::Reflect::get(&g, &JsValue::from_str("setTimeout")).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set {
            Some(f) => {
                let _ = f.call2(&g, &resolve, &JsValue::from(ms));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
        *resolver.borrow_mut() = Some(resolve);
    });
    let listening = match (signal, resolver.borrow().as_ref()) {
        (Some(s), Some(resolve)) => s.add_event_listener_with_callback("abort", resolve).is_ok(),
        _ => false,
    };
    let _ = JsFuture::from(p).await;
    if let (true, Some(s), Some(resolve)) = (listening, signal, resolver.borrow().as_ref()) {
        let _ = s.remove_event_listener_with_callback("abort", resolve);
    }
}

/// Runs `f` holding the Web Lock `name` (exclusive, across tabs of this origin). Where Web Locks
/// are missing it just runs `f`.
pub async fn with_lock<T>(name: &str, f: impl std::future::Future<Output = T>) -> T {
    let nav = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).unwrap_or(JsValue::UNDEFINED);
    let locks = js_sys::Reflect::get(&nav, &JsValue::from_str("locks")).unwrap_or(JsValue::UNDEFINED);
    let request = js_sys::Reflect::get(&locks, &JsValue::from_str("request")).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    let Some(request) = request else { return f.await };
    // The lock is held until `release` resolves.
    let resolver: Rc<RefCell<Option<js_sys::Function>>> = Rc::new(RefCell::new(None));
    let r2 = resolver.clone();
    let release = js_sys::Promise::new(&mut |resolve, _| *r2.borrow_mut() = Some(resolve));
    let (tx, rx) = oneshot::channel::<()>();
    let tx = RefCell::new(Some(tx));
    let cb = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |_lock| {
        if let Some(tx) = tx.borrow_mut().take() {
            let _ = tx.send(());
        }
        release.clone().into()
    });
    let held = request.call2(&locks, &JsValue::from_str(name), cb.as_ref().unchecked_ref()).is_ok();
    if held {
        let _ = rx.await;
    }
    let out = f.await;
    if let Some(resolve) = resolver.borrow_mut().take() {
        let _ = resolve.call0(&JsValue::NULL);
    }
    drop(cb);
    out
}

/// `navigator.storage.estimate()` → (usage, quota), if available.
pub async fn estimate() -> Option<(u64, u64)> {
    let nav = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")).ok()?;
    let storage = js_sys::Reflect::get(&nav, &JsValue::from_str("storage")).ok()?;
    let f: js_sys::Function = js_sys::Reflect::get(&storage, &JsValue::from_str("estimate")).ok()?.dyn_into().ok()?;
    let p: js_sys::Promise = f.call0(&storage).ok()?.dyn_into().ok()?;
    let est = JsFuture::from(p).await.ok()?;
    let get = |k: &str| js_sys::Reflect::get(&est, &JsValue::from_str(k)).ok().and_then(|v| v.as_f64()).map(|v| v as u64);
    Some((get("usage")?, get("quota")?))
}

/// `navigator.storage.persist()`; `false` when denied or unavailable (the store still works,
/// best effort).
pub async fn request_persist() -> bool {
    let Ok(nav) = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator")) else { return false };
    let Ok(storage) = js_sys::Reflect::get(&nav, &JsValue::from_str("storage")) else { return false };
    let Some(f) = js_sys::Reflect::get(&storage, &JsValue::from_str("persist")).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()) else { return false };
    let Some(p) = f.call0(&storage).ok().and_then(|p| p.dyn_into::<js_sys::Promise>().ok()) else { return false };
    JsFuture::from(p).await.ok().and_then(|v| v.as_bool()).unwrap_or(false)
}

/// Whether a failed request is worth another try, and after how long: network errors, 5xx and
/// 429 (after its `Retry-After`, at most a minute; at least a second when the hub's CORS hides
/// it), a refused signed URL, with exponential backoff from 400 ms.
fn retry_delay_ms(e: &StoreError, attempt: u32) -> Option<i32> {
    let backoff = 200 << attempt.min(7);
    match e {
        StoreError::Network { .. } | StoreError::Hub(HubError::Server { .. } | HubError::Network { .. } | HubError::SignedUrlRefused { .. }) => Some(backoff),
        StoreError::Hub(HubError::RateLimited { retry_after_s, .. }) => Some(retry_after_s.map_or(backoff.max(1000), |s| (s.min(60) * 1000) as i32)),
        _ => None,
    }
}

/// Parses `bytes START-END/TOTAL` → START.
fn content_range_start(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Downloads one file of `repo@commit` into `store` (or finds it there), holding the file's Web
/// Lock. `tick(delta)` is called with each body piece's length.
pub async fn download_file(store: &IdbStore, hub: &Hub, repo: &str, commit: &str, file: &Sibling, opts: &DownloadOptions, tick: &dyn Fn(&FileReport, u64, Phase)) -> Result<(FileManifest, FileReport), StoreError> {
    let url = hub.resolve_url(repo, commit, &file.rfilename)?;
    let size = file.byte_size().ok_or_else(|| HubError::BadResponse { url: url.clone(), message: format!("{}: no size in the API answer", file.rfilename) })?;
    let lock = format!("hugrt:{}", super::file_key(repo, commit, &file.rfilename));
    with_lock(&lock, async {
        let sha = file.sha256().map(str::to_ascii_lowercase);
        let (mut w, start) = FileWriter::open(store, repo, commit, &file.rfilename, size, sha).await?;
        if file.sha256().is_none()
            && let Some(blob) = &file.blob_id
        {
            w.expect_git_blob(blob);
        }
        let mut report = FileReport { path: file.rfilename.clone(), size, ..FileReport::default() };
        if start == Start::Complete {
            report.from_cache = true;
            let mut m = w.manifest().clone();
            m.last_used = super::now_ms();
            store.put_manifest(&m).await?;
            tick(&report, 0, Phase::CacheHit);
            return Ok((m, report));
        }
        let mut attempts = 0u32;
        let mut direct = None;
        loop {
            match fetch_into(&mut w, hub, &url, &mut direct, opts.signal.as_ref(), &mut report, tick).await {
                Ok(()) => break,
                Err(e) if attempts < opts.retries && !aborted(opts.signal.as_ref()) && retry_delay_ms(&e, attempts + 1).is_some() => {
                    attempts += 1;
                    let ms = retry_delay_ms(&e, attempts).unwrap_or(0);
                    web_sys::console::warn_1(&JsValue::from_str(&format!("hugrt: {e}; retrying in {ms} ms (attempt {attempts} of {})", opts.retries)));
                    sleep_unless_aborted(ms, opts.signal.as_ref()).await;
                    if aborted(opts.signal.as_ref()) {
                        return Err(StoreError::Aborted);
                    }
                    w.resync().await?;
                }
                Err(e) => {
                    // Drop the bytes buffered since the last stored chunk; the stored state stays
                    // resumable (or was removed for integrity errors).
                    return Err(e);
                }
            }
        }
        tick(&report, 0, Phase::Verify);
        let m = w.finish().await?;
        tick(&report, 0, Phase::Done);
        Ok((m, report))
    })
    .await
}

/// One request from `w.committed()` to the end of the body. The first goes to the hub's resolve
/// URL (the browser follows its redirect to the CDN); a resume goes straight to the signed URL
/// that answered (`direct`), and through the hub again when that one is refused (expired).
///
/// No request needs a CORS preflight: a single `Range` is safelisted, and there is no `If-Range`
/// (the CDN's preflight would refuse it). A resolve URL pinned to a commit is immutable, so a
/// resumed file is checked by its SHA-256 (or git blob id) at the end instead.
async fn fetch_into(w: &mut FileWriter<'_, IdbStore>, hub: &Hub, url: &str, direct: &mut Option<String>, signal: Option<&AbortSignal>, report: &mut FileReport, tick: &dyn Fn(&FileReport, u64, Phase)) -> Result<(), StoreError> {
    let path = w.manifest().path.clone();
    for _ in 0..3 {
        let offset = w.committed();
        let target = direct.clone().unwrap_or_else(|| url.to_string());
        let headers = hub.headers_for(&target)?;
        if offset > 0 {
            headers.set("Range", &format!("bytes={offset}-")).map_err(|e| net(&path, offset, &e))?;
            report.resumed_at.push(offset);
        }
        let resp: Response = match fetch(&target, &headers, signal).await {
            Ok(resp) => resp,
            // The browser refuses some answers to a ranged request outright (a CDN compressing on
            // the fly: ERR_CONTENT_DECODING_FAILED); the whole file, its stored prefix skipped,
            // keeps what is stored. A real outage fails this one too.
            Err(e) if offset > 0 && !is_abort(&e) => fetch(&target, &hub.headers_for(&target)?, signal).await.map_err(|e| net(&path, offset, &e))?,
            Err(e) => return Err(net(&path, offset, &e)),
        };
        let status = resp.status();
        let h = resp.headers();
        let ctype = h.get("Content-Type").ok().flatten().unwrap_or_default();
        let mut skip = 0;
        match status {
            200 => {
                if offset > 0 {
                    // Range ignored: the whole file again; the stored part is skipped, not
                    // rewritten (the hash at the end still checks every byte).
                    report.restarts += 1;
                    skip = offset;
                }
            }
            206 => {
                // Unreadable when a CDN does not expose it: the hash at the end still decides.
                let got = h.get("Content-Range").ok().flatten().map(|v| content_range_start(&v).unwrap_or(u64::MAX));
                if let Some(got) = got.filter(|&g| g != offset) {
                    cancel(&resp).await;
                    return Err(StoreError::RangeMismatch { path, asked: offset, got });
                }
            }
            416 => {
                cancel(&resp).await;
                report.restarts += 1;
                w.restart().await?;
                continue;
            }
            _ => {
                cancel(&resp).await;
                match hub.error_of(&resp, url) {
                    HubError::SignedUrlRefused { .. } if direct.is_some() => {
                        *direct = None;
                        report.resolved_again += 1;
                        continue;
                    }
                    e => return Err(e.into()),
                }
            }
        }
        if ctype.starts_with("text/html") {
            cancel(&resp).await;
            return Err(HubError::BadResponse { url: url.to_string(), message: "an HTML page instead of the file (login wall or error page?)".into() }.into());
        }
        let landed = resp.url();
        if resp.redirected() && !landed.is_empty() && !hub.is_own(&landed) {
            *direct = Some(landed);
        }
        return stream_body(w, &resp, skip, signal, report, tick).await;
    }
    Err(StoreError::Network { path, offset: w.committed(), message: "too many restarts".into() })
}

async fn cancel(resp: &Response) {
    if let Some(body) = resp.body() {
        let _ = JsFuture::from(body.cancel()).await;
    }
}

/// Streams the body into `w`, its first `skip` bytes dropped (already stored).
async fn stream_body(w: &mut FileWriter<'_, IdbStore>, resp: &Response, mut skip: u64, signal: Option<&AbortSignal>, report: &mut FileReport, tick: &dyn Fn(&FileReport, u64, Phase)) -> Result<(), StoreError> {
    let path = w.manifest().path.clone();
    let Some(body) = resp.body() else { return Ok(()) };
    let reader: ReadableStreamDefaultReader = body.get_reader().dyn_into().map_err(|e| net(&path, 0, &e))?;
    let mut scratch = vec![0u8; 1 << 20];
    loop {
        if aborted(signal) {
            let _ = JsFuture::from(reader.cancel()).await;
            return Err(StoreError::Aborted);
        }
        let next = JsFuture::from(reader.read()).await.map_err(|e| net(&path, w.committed(), &e))?;
        let done = js_sys::Reflect::get(&next, &JsValue::from_str("done")).ok().and_then(|d| d.as_bool()).unwrap_or(true);
        if done {
            return Ok(());
        }
        let value = js_sys::Reflect::get(&next, &JsValue::from_str("value")).map_err(|e| net(&path, w.committed(), &e))?;
        let piece: js_sys::Uint8Array = value.dyn_into().map_err(|e| net(&path, w.committed(), &e))?;
        // Copied into wasm memory a slice at a time, however large a piece the browser hands
        // over: wasm memory only grows, so one large piece would stay its high-water mark.
        let len = piece.length();
        let dropped = skip.min(u64::from(len)) as u32;
        skip -= u64::from(dropped);
        report.transferred = report.transferred.saturating_add(u64::from(dropped));
        let mut at = dropped;
        while at < len {
            let n = (len - at).min(scratch.len() as u32);
            piece.subarray(at, at + n).copy_to(&mut scratch[..n as usize]);
            at += n;
            report.transferred = report.transferred.saturating_add(u64::from(n));
            if let Err(e) = w.push(&scratch[..n as usize]).await {
                let _ = JsFuture::from(reader.cancel()).await;
                return Err(e);
            }
            tick(report, u64::from(n), Phase::Download);
        }
    }
}

/// What `download_model` did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelReport {
    pub repo: String,
    pub commit: String,
    pub files: Vec<FileReport>,
    pub bytes: u64,
    pub persisted: bool,
}

/// Resolves `repo@revision`, checks space (browser quota and the cache budget) for what is not
/// stored yet, then downloads `paths` (all files when empty) with bounded concurrency.
pub async fn download_model(store: &IdbStore, hub: &Hub, repo: &str, revision: &str, paths: &[&str], opts: &DownloadOptions) -> Result<ModelReport, StoreError> {
    store.reconnect().await?;
    let info = revision_info(store, hub, repo, revision, paths, opts.signal.as_ref()).await?;
    let files: Vec<Sibling> = if paths.is_empty() {
        info.siblings.clone()
    } else {
        paths.iter().map(|p| info.file(p).cloned().ok_or_else(|| StoreError::Hub(HubError::NotFound { url: hub.resolve_url(repo, &info.sha, p).unwrap_or_default(), reason: None }))).collect::<Result<_, _>>()?
    };
    let total: u64 = files.iter().filter_map(|f| f.byte_size()).fold(0, u64::saturating_add);
    let mut needed = 0u64;
    for f in &files {
        let have = store.manifest(&super::file_key(repo, &info.sha, &f.rfilename)).await?.map(|m| m.stored_bytes()).unwrap_or(0);
        needed = needed.saturating_add(f.byte_size().unwrap_or(0).saturating_sub(have));
    }
    if let Some(budget) = opts.budget {
        ensure_budget(store, budget, needed, (repo, &info.sha)).await?;
    }
    if let Some((usage, quota)) = estimate().await {
        let available = quota.saturating_sub(usage);
        if needed > available {
            return Err(StoreError::QuotaInsufficient { needed, available });
        }
    }
    let persisted = if needed > 0 { request_persist().await } else { false };

    let queue = Rc::new(RefCell::new(files.into_iter().collect::<VecDeque<_>>()));
    let loaded = Rc::new(Cell::new(0u64));
    let results: Rc<RefCell<Vec<Result<FileReport, StoreError>>>> = Rc::new(RefCell::new(Vec::new()));
    let workers = opts.concurrency.max(1);
    let mut done = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = oneshot::channel::<()>();
        done.push(rx);
        let (queue, loaded, results, store, hub, opts) = (queue.clone(), loaded.clone(), results.clone(), store.clone(), hub.clone(), opts.clone());
        let (repo, commit) = (repo.to_string(), info.sha.clone());
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let next = queue.borrow_mut().pop_front();
                let Some(file) = next else { break };
                let file_loaded = Cell::new(0u64);
                let tick = |r: &FileReport, delta: u64, phase: Phase| {
                    file_loaded.set(file_loaded.get().saturating_add(delta));
                    loaded.set(loaded.get().saturating_add(delta));
                    if let Some(cb) = &opts.on_progress {
                        cb(&Progress { status: phase, file: r.path.clone(), file_loaded: file_loaded.get(), file_total: r.size, loaded: loaded.get(), total });
                    }
                };
                let r = download_file(&store, &hub, &repo, &commit, &file, &opts, &tick).await.map(|(_, rep)| rep);
                let failed = r.is_err();
                results.borrow_mut().push(r);
                if failed {
                    queue.borrow_mut().clear(); // stop the others picking up more work
                }
            }
            let _ = tx.send(());
        });
    }
    for rx in done {
        let _ = rx.await;
    }
    let results: Vec<_> = results.borrow_mut().drain(..).collect();
    let mut reports = Vec::new();
    for r in results {
        match r {
            Ok(rep) => reports.push(rep),
            // The browser's figures, for the user deciding what to delete.
            Err(StoreError::QuotaExceeded { path, message }) => {
                let message = match estimate().await {
                    Some((usage, quota)) => format!("{message} (navigator.storage.estimate(): {usage} of {quota} bytes used)"),
                    None => message,
                };
                return Err(StoreError::QuotaExceeded { path, message });
            }
            Err(e) => return Err(e),
        }
    }
    if !crate::hub::is_commit(revision) {
        record_ref(store, repo, &info.sha, reports.iter().map(|r| r.path.as_str()), revision).await?;
    }
    Ok(ModelReport { repo: repo.to_string(), commit: info.sha, files: reports, bytes: total, persisted })
}

/// Notes in the manifests of `paths` that the branch or tag `reference` resolved to `commit` now.
async fn record_ref(store: &IdbStore, repo: &str, commit: &str, paths: impl Iterator<Item = &str>, reference: &str) -> Result<(), StoreError> {
    for path in paths {
        if let Some(mut m) = store.manifest(&super::file_key(repo, commit, path)).await? {
            m.resolved.insert(reference.to_string(), super::now_ms());
            store.put_manifest(&m).await?;
        }
    }
    Ok(())
}

/// The commit and files of `repo@revision`, offline first: a commit whose files `paths` are
/// stored whole is answered from the store without any request (a commit is immutable; with no
/// `paths`, the hub is asked for the full list); a branch or tag is resolved by the hub, and when
/// the hub cannot be reached, the stored commit it last resolved to ([`cached_info`]) answers.
pub async fn revision_info(store: &IdbStore, hub: &Hub, repo: &str, revision: &str, paths: &[&str], signal: Option<&AbortSignal>) -> Result<RepoInfo, StoreError> {
    if crate::hub::is_commit(revision)
        && !paths.is_empty()
        && let Some(info) = cached_info(store, repo, revision, paths).await?
    {
        return Ok(info);
    }
    match hub.resolve(repo, revision, signal).await {
        Ok(info) => Ok(info),
        Err(e @ HubError::Network { .. }) => Ok(cached_info(store, repo, revision, paths).await?.ok_or(e)?),
        Err(e) => Err(e.into()),
    }
}

/// The cached revision of `repo` that `revision` names, in which every file of `paths` (every
/// stored file when empty) is complete: the commit itself; for a branch or tag, the commit it last
/// resolved to here (or, where none was recorded, the most recently used revision).
pub async fn cached_info(store: &IdbStore, repo: &str, revision: &str, paths: &[&str]) -> Result<Option<RepoInfo>, StoreError> {
    let revs = super::list_revisions(store).await?;
    let manifests = store.manifests().await?;
    let is_commit = crate::hub::is_commit(revision);
    // Ranked by (when `revision` last resolved to it, when it was last used).
    let mut best: Option<((f64, f64), RepoInfo)> = None;
    for r in revs.iter().filter(|r| r.repo == repo && (!is_commit || r.commit.eq_ignore_ascii_case(revision))) {
        let files: Vec<&FileManifest> = manifests.iter().filter(|m| m.repo == r.repo && m.commit == r.commit && m.complete).collect();
        if !paths.iter().all(|p| files.iter().any(|m| m.path == *p)) || files.is_empty() {
            continue;
        }
        let resolved = files.iter().filter_map(|m| m.resolved.get(revision).copied()).fold(f64::NEG_INFINITY, f64::max);
        let rank = (resolved, r.last_used);
        let siblings = files
            .iter()
            .map(|m| Sibling { rfilename: m.path.clone(), size: Some(m.size), blob_id: None, lfs: m.sha256.clone().map(|sha256| crate::hub::api::Lfs { sha256, size: m.size }) })
            .collect();
        if best.as_ref().is_none_or(|(t, _)| rank > *t) {
            best = Some((rank, RepoInfo { id: repo.to_string(), sha: r.commit.clone(), siblings }));
        }
    }
    Ok(best.map(|(_, info)| info))
}
