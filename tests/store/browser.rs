//! IndexedDB store + fetch downloads against the test hub (`scripts/hub-server.mjs`).

use std::cell::RefCell;
use std::rc::Rc;

use hugrt::hub::Hub;
use hugrt::store::download::{DownloadOptions, ModelReport, Progress, download_model};
use hugrt::store::idb::IdbStore;
use hugrt::store::{CHUNK_BYTES, ChunkStore, StoreError, file_key, list_revisions, read_range};
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

const HUB: &str = match option_env!("HUGRT_TEST_HUB") {
    Some(h) => h,
    None => "http://127.0.0.1:8788",
};
const MEDIUM: u64 = 40 * 1024 * 1024 + 777;

fn hub(faults: &str) -> Hub {
    let e = if faults.is_empty() { HUB.to_string() } else { format!("{HUB}/f/{faults}") };
    Hub::new(&e, None).unwrap()
}

/// A fault id never used before on this server (the server outlives test runs).
fn once() -> String {
    format!("once={}", (js_sys::Date::now() * 1000.0 + js_sys::Math::random() * 1000.0) as u64)
}

async fn fresh_store(name: &str) -> IdbStore {
    let s = IdbStore::open(&format!("hugrt-test-{name}")).await.unwrap();
    s.clear().await.unwrap();
    s
}

fn opts(retries: u32) -> DownloadOptions {
    DownloadOptions { retries, ..DownloadOptions::default() }
}

async fn get(store: &IdbStore, hub: &Hub, repo: &str, files: &[&str], o: &DownloadOptions) -> Result<ModelReport, StoreError> {
    download_model(store, hub, repo, "main", files, o).await
}

async fn manifest(store: &IdbStore, repo: &str, path: &str) -> Option<hugrt::store::FileManifest> {
    let info = hub("").resolve(repo, "main", None).await.unwrap();
    store.manifest(&file_key(repo, &info.sha, path)).await.unwrap()
}

/// Downloads medium.bin with a drop at 60% and no retries: one 16 MiB chunk is left committed.
async fn partial(store: &IdbStore, repo: &str) {
    let e = get(store, &hub(&format!("drop=0.6,{}", once())), repo, &["medium.bin"], &opts(0)).await.unwrap_err();
    assert_eq!(e.code(), "NetworkError", "{e}");
    let m = manifest(store, repo, "medium.bin").await.unwrap();
    assert_eq!((m.chunks_done, m.complete), (1, false), "one chunk committed before the drop");
}

fn now() -> f64 {
    js_sys::global().dyn_into::<web_sys::Window>().ok().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_else(js_sys::Date::now)
}

#[wasm_bindgen_test]
async fn large_file_cold_download_then_warm_read_and_offline() {
    let store = fresh_store("large").await;
    let events: Rc<RefCell<Vec<Progress>>> = Rc::default();
    let ev = events.clone();
    let o = DownloadOptions { on_progress: Some(Rc::new(move |p: &Progress| ev.borrow_mut().push(p.clone()))), ..DownloadOptions::default() };
    let t0 = now();
    let r = get(&store, &hub(""), "test/large", &["big.bin", "config.json"], &o).await.unwrap();
    let secs = (now() - t0) / 1000.0;
    let size = r.files.iter().find(|f| f.path == "big.bin").unwrap().size;
    console_log!("cold download: {size} B in {secs:.2} s = {:.1} MB/s (debug build of the test)", size as f64 / 1e6 / secs);
    let ev = events.borrow().clone();
    assert!(ev.windows(2).all(|w| w[1].loaded >= w[0].loaded), "total progress is monotonic");
    assert!(ev.iter().filter(|p| p.file == "big.bin").collect::<Vec<_>>().windows(2).all(|w| w[1].file_loaded >= w[0].file_loaded));
    assert_eq!(ev.last().unwrap().loaded, r.bytes, "progress reaches the total");
    let info = hub("").resolve("test/large", "main", None).await.unwrap();
    let m = store.manifest(&file_key("test/large", &info.sha, "big.bin")).await.unwrap().unwrap();
    assert!(m.complete);
    assert_eq!(m.sha256.as_deref(), info.file("big.bin").unwrap().sha256(), "verified against lfs.sha256");

    // Warm read of the whole file, chunk-sized ranges.
    // (Reads timed alone: hashing the bytes back is not part of a read.)
    let key = m.key();
    let mut read_ms = 0.0;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut at = 0;
    while at < m.size {
        let end = (at + CHUNK_BYTES).min(m.size);
        let t0 = now();
        let bytes = read_range(&store, &key, at..end).await.unwrap();
        read_ms += now() - t0;
        sha2::Digest::update(&mut hasher, bytes);
        at = end;
    }
    let secs = read_ms / 1000.0;
    console_log!("warm read from IndexedDB: {} B in {secs:.2} s = {:.1} MB/s (debug build of the test)", m.size, m.size as f64 / 1e6 / secs);
    assert_eq!(Some(hex::encode(sha2::Digest::finalize(hasher))), m.sha256, "read back byte-exact");

    // Offline: the hub is unreachable, the cached revision still loads.
    let offline = Hub::new("http://127.0.0.1:9", None).unwrap();
    let r = get(&store, &offline, "test/large", &["big.bin", "config.json"], &opts(0)).await.unwrap();
    assert!(r.files.iter().all(|f| f.from_cache && f.transferred == 0), "{r:?}");
    assert_eq!(r.commit, info.sha);
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn offline_a_branch_loads_the_commit_it_last_resolved_to() {
    // `main` and the tag `v1` resolve to two commits; `v1` is used last. Offline, `main` still
    // loads its own commit (not merely the last one used), and `v1` its own.
    let store = fresh_store("refs").await;
    let main = get(&store, &hub(""), "test/refs", &["config.json"], &opts(0)).await.unwrap();
    let tag = download_model(&store, &hub(""), "test/refs", "v1", &["config.json"], &opts(0)).await.unwrap();
    assert_ne!(main.commit, tag.commit);
    let offline = Hub::new("http://127.0.0.1:9", None).unwrap();
    for (rev, want) in [("main", &main.commit), ("v1", &tag.commit), ("main", &main.commit)] {
        let r = download_model(&store, &offline, "test/refs", rev, &["config.json"], &opts(0)).await.unwrap();
        assert_eq!(&r.commit, want, "{rev} offline");
        assert!(r.files[0].from_cache);
    }
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn drop_at_60_percent_then_resume_transfers_only_the_rest() {
    let store = fresh_store("drop").await;
    partial(&store, "test/drop").await;
    let r = get(&store, &hub(""), "test/drop", &["medium.bin"], &opts(0)).await.unwrap();
    let f = &r.files[0];
    console_log!("resume: {f:?}");
    assert_eq!(f.resumed_at, vec![CHUNK_BYTES]);
    assert_eq!(f.restarts, 0);
    let missing = MEDIUM - (MEDIUM as f64 * 0.6) as u64;
    assert!(f.transferred <= missing + CHUNK_BYTES, "{} > {missing} + chunk", f.transferred);
    assert!(manifest(&store, "test/drop", "medium.bin").await.unwrap().complete);

    // The same with automatic retries: one call succeeds.
    let store2 = fresh_store("drop2").await;
    let r = get(&store2, &hub(&format!("drop=0.6,{}", once())), "test/drop2", &["medium.bin"], &opts(2)).await.unwrap();
    assert_eq!(r.files[0].resumed_at, vec![CHUNK_BYTES], "{r:?}");
    assert!(r.files[0].transferred <= MEDIUM + CHUNK_BYTES);
}

/// What the test hub served for requests carrying `once=ID`: (requests, body bytes).
async fn served(id: &str) -> (u64, u64) {
    let window: web_sys::Window = js_sys::global().unchecked_into();
    let resp: web_sys::Response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(&format!("{HUB}/__stats"))).await.unwrap().unchecked_into();
    let json = wasm_bindgen_futures::JsFuture::from(resp.json().unwrap()).await.unwrap();
    let st = js_sys::Reflect::get(&json, &id.into()).unwrap();
    let get = |k: &str| js_sys::Reflect::get(&st, &k.into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u64;
    (get("requests"), get("bodyBytes"))
}

#[wasm_bindgen_test]
async fn drops_inside_the_prefix_the_header_and_near_the_end_resume_byte_exact() {
    let store = fresh_store("drops").await;
    // Byte 4 (inside safetensors' 8-byte length prefix), byte 8388 (inside a header), 99%.
    for (i, at) in [(0, 1e-7), (1, 2e-4), (2, 0.99)] {
        let repo = format!("test/drops{i}");
        let id = once();
        let r = get(&store, &hub(&format!("drop={at},{id}")), &repo, &["medium.bin"], &opts(2)).await.unwrap();
        let f = &r.files[0];
        console_log!("drop at {at}: {f:?}");
        assert_eq!(served(id.trim_start_matches("once=")).await.0, 2, "{at}: the connection dropped once, then one more request");
        if at < 0.1 {
            assert!(f.resumed_at.is_empty(), "{at}: nothing committed, so from byte 0 again: {f:?}");
        } else {
            // Where the stream broke depends on what the browser had buffered when the socket
            // died; the resume starts at a committed chunk boundary.
            assert!(!f.resumed_at.is_empty() && f.resumed_at.iter().all(|&o| o > 0 && o % CHUNK_BYTES == 0), "{at}: {f:?}");
        }
        assert!(f.transferred <= MEDIUM + CHUNK_BYTES, "{at}: {f:?}");
        let m = manifest(&store, &repo, "medium.bin").await.unwrap();
        let info = hub("").resolve(&repo, "main", None).await.unwrap();
        assert!(m.complete && m.sha256.as_deref() == info.file("medium.bin").unwrap().sha256(), "{at}: verified");
    }
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn range_not_satisfiable_restarts_and_a_clean_early_end_is_never_complete() {
    let store = fresh_store("r416").await;
    partial(&store, "test/r416").await;
    let r = get(&store, &hub("r416"), "test/r416", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!((r.files[0].restarts, r.files[0].transferred), (1, MEDIUM), "{r:?}");
    assert!(manifest(&store, "test/r416", "medium.bin").await.unwrap().complete);

    // The body ends at 60% without any error (chunked, no Content-Length): caught by the size.
    let store = fresh_store("short").await;
    let e = get(&store, &hub("short=0.6"), "test/short", &["medium.bin"], &opts(2)).await.unwrap_err();
    let at = (MEDIUM as f64 * 0.6) as u64;
    assert!(matches!(e, StoreError::SizeMismatch { expected: MEDIUM, actual, .. } if actual == at), "{e}");
    assert_eq!(e.code(), "IntegrityError");
    let m = manifest(&store, "test/short", "medium.bin").await.unwrap();
    assert_eq!((m.chunks_done, m.complete), (1, false), "never complete; the committed chunk stays for a resume");
    let r = get(&store, &hub(""), "test/short", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!(r.files[0].resumed_at, vec![CHUNK_BYTES], "{r:?}");
    assert!(manifest(&store, "test/short", "medium.bin").await.unwrap().complete);
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn ignored_range_restarts_cleanly() {
    let store = fresh_store("norange").await;
    partial(&store, "test/norange").await;
    let r = get(&store, &hub("norange"), "test/norange", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!(r.files[0].restarts, 1, "{r:?}");
    assert_eq!(r.files[0].transferred, MEDIUM);
    assert!(manifest(&store, "test/norange", "medium.bin").await.unwrap().complete);
}

#[wasm_bindgen_test]
async fn misaligned_206_is_rejected_not_appended() {
    let store = fresh_store("misalign").await;
    partial(&store, "test/misalign").await;
    let e = get(&store, &hub("misalign"), "test/misalign", &["medium.bin"], &opts(0)).await.unwrap_err();
    assert!(matches!(e, StoreError::RangeMismatch { asked, got, .. } if asked == CHUNK_BYTES && got == CHUNK_BYTES - 4096), "{e}");
    let m = manifest(&store, "test/misalign", "medium.bin").await.unwrap();
    assert_eq!((m.chunks_done, m.complete), (1, false), "nothing appended");
    let r = get(&store, &hub(""), "test/misalign", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!(r.files[0].resumed_at, vec![CHUNK_BYTES], "then resumes normally");
}

#[wasm_bindgen_test]
async fn a_resume_trusts_the_pinned_url_and_the_hash_not_the_etag() {
    // Same bytes under another ETag (another CDN, say): no If-Range (it would need a preflight
    // the CDN refuses), the resume goes on and the SHA-256 decides.
    let store = fresh_store("etag").await;
    partial(&store, "test/etag").await;
    let r = get(&store, &hub("etag=other"), "test/etag", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!((r.files[0].restarts, r.files[0].resumed_at.clone()), (0, vec![CHUNK_BYTES]), "{r:?}");
    assert!(manifest(&store, "test/etag", "medium.bin").await.unwrap().complete);
    // New bytes (and a new sha256 from the API) under the same commit: the partial is dropped.
    let store = fresh_store("v2").await;
    partial(&store, "test/v2").await;
    let r = get(&store, &hub("v2"), "test/v2", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!(r.files[0].transferred, MEDIUM, "{r:?}");
    let v2 = hub("v2").resolve("test/v2", "main", None).await.unwrap();
    let m = store.manifest(&file_key("test/v2", &v2.sha, "medium.bin")).await.unwrap().unwrap();
    assert_eq!(m.sha256.as_deref(), v2.file("medium.bin").unwrap().sha256());
}

/// The emulator's counters (`/__stats`): `hub` and `cdn` requests, preflights, requests carrying
/// `Authorization`, expired signatures.
async fn counters() -> serde_json::Value {
    let window: web_sys::Window = js_sys::global().unchecked_into();
    let resp: web_sys::Response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(&format!("{HUB}/__stats"))).await.unwrap().unchecked_into();
    let text = wasm_bindgen_futures::JsFuture::from(resp.text().unwrap()).await.unwrap().as_string().unwrap();
    serde_json::from_str(&text).unwrap()
}

/// How much `side.key` grew between two `counters()`.
fn grew(before: &serde_json::Value, after: &serde_json::Value, side: &str, key: &str) -> i64 {
    after[side][key].as_i64().unwrap_or(0) - before[side][key].as_i64().unwrap_or(0)
}

#[wasm_bindgen_test]
async fn lfs_files_come_from_the_cdn_after_a_redirect_with_no_preflight_anywhere() {
    let store = fresh_store("cdn").await;
    let before = counters().await;
    let r = get(&store, &hub(""), "test/cdn", &["medium.bin", "config.json"], &opts(0)).await.unwrap();
    let after = counters().await;
    assert!(r.files.iter().all(|f| f.transferred == f.size && f.resumed_at.is_empty()), "{r:?}");
    assert_eq!(grew(&before, &after, "cdn", "requests"), 1, "medium.bin from the CDN (config.json from the hub's resolve cache)");
    assert_eq!((grew(&before, &after, "hub", "preflights"), grew(&before, &after, "cdn", "preflights")), (0, 0), "no request needed a preflight");
    for f in ["medium.bin", "config.json"] {
        assert!(manifest(&store, "test/cdn", f).await.unwrap().complete, "{f} verified");
    }
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn an_expired_signed_url_is_resolved_again_and_the_file_resumes() {
    // The signed URL lives 1 s; the connection stalls 1.5 s at 60% and drops. The resume goes to
    // the signed URL that answered (403: expired), then through the hub again for a fresh one,
    // and continues from the committed chunk.
    let store = fresh_store("expired").await;
    let before = counters().await;
    let r = get(&store, &hub(&format!("drop=0.6,stall=1500,expire=1,{}", once())), "test/expired", &["medium.bin"], &opts(2)).await.unwrap();
    let after = counters().await;
    let f = &r.files[0];
    console_log!("expired: {f:?}");
    assert_eq!(f.resolved_again, 1, "{f:?}");
    assert_eq!(f.restarts, 0, "{f:?}");
    assert!(f.resumed_at.iter().all(|&o| o == CHUNK_BYTES) && f.resumed_at.len() == 2, "the refused and the good resume: {f:?}");
    assert!(f.transferred <= MEDIUM + CHUNK_BYTES, "{f:?}");
    assert_eq!(grew(&before, &after, "cdn", "expired"), 1);
    let info = hub("").resolve("test/expired", "main", None).await.unwrap();
    let m = manifest(&store, "test/expired", "medium.bin").await.unwrap();
    assert!(m.complete && m.sha256.as_deref() == info.file("medium.bin").unwrap().sha256());
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_cdn_that_gzips_and_ignores_range_restarts_with_nothing_corrupted() {
    let store = fresh_store("gzip").await;
    partial(&store, "test/gzip").await;
    let r = get(&store, &hub("gzip"), "test/gzip", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!((r.files[0].restarts, r.files[0].transferred), (1, MEDIUM), "{r:?}");
    let info = hub("").resolve("test/gzip", "main", None).await.unwrap();
    let m = manifest(&store, "test/gzip", "medium.bin").await.unwrap();
    assert!(m.complete && m.sha256.as_deref() == info.file("medium.bin").unwrap().sha256());
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn gated_repos_load_with_a_token_that_never_reaches_the_cdn() {
    let store = fresh_store("gated").await;
    // The CDN refuses every preflight: a request to it carrying Authorization or If-Range fails.
    let with_token = |faults: &str| Hub::new(&format!("{HUB}/f/{faults}"), Some("hf_granted".into())).unwrap();
    let before = counters().await;
    partial_with(&store, &with_token(&format!("nopreflight,drop=0.6,{}", once())), "gated/model").await;
    let r = download_model(&store, &with_token("nopreflight"), "gated/model", "main", &["medium.bin", "config.json"], &opts(0)).await.unwrap();
    let after = counters().await;
    assert_eq!(r.files.iter().find(|f| f.path == "medium.bin").unwrap().resumed_at, vec![CHUNK_BYTES], "{r:?}");
    assert!(grew(&before, &after, "hub", "authorization") >= 3, "the API and the resolves carried the token");
    assert_eq!(grew(&before, &after, "cdn", "authorization"), 0, "never sent to the CDN");
    assert_eq!(grew(&before, &after, "cdn", "preflights"), 0);
    assert!(grew(&before, &after, "cdn", "requests") >= 2);
    let info = with_token("nopreflight").resolve("gated/model", "main", None).await.unwrap();
    for f in ["medium.bin", "config.json"] {
        let m = store.manifest(&file_key("gated/model", &info.sha, f)).await.unwrap().unwrap();
        assert!(m.complete, "{f}");
    }
    store.clear().await.unwrap();
}

/// `partial` for any hub and repo: a drop at 60% (once) leaves one chunk committed.
async fn partial_with(store: &IdbStore, hub: &Hub, repo: &str) {
    let e = download_model(store, hub, repo, "main", &["medium.bin"], &opts(0)).await.unwrap_err();
    assert_eq!(e.code(), "NetworkError", "{e}");
}

#[wasm_bindgen_test]
async fn the_hubs_refusals_are_typed_with_its_code_and_message() {
    use hugrt::hub::HubError;
    let store = fresh_store("refusals").await;
    let token = |t: &str| Hub::new(HUB, Some(t.into())).unwrap();
    let cases: [(Hub, &str, &str, &str, &str); 5] = [
        (hub(""), "gated/model", "main", "Unauthorized", "GatedRepo"),
        (token("hf_other"), "gated/model", "main", "Unauthorized", "GatedRepo"),
        (hub(""), "test/missing-model", "main", "NotFound", "RepoNotFound"),
        (token("hf_granted"), "test/missing-model", "main", "NotFound", "RepoNotFound"),
        (hub(""), "test/refusals", "no-such-branch", "NotFound", "RevisionNotFound"),
    ];
    for (h, repo, rev, code, hub_code) in cases {
        let e = download_model(&store, &h, repo, rev, &["config.json"], &opts(0)).await.unwrap_err();
        assert_eq!(e.code(), code, "{repo}@{rev}: {e}");
        let StoreError::Hub(he) = &e else { panic!("{e}") };
        assert_eq!(he.hub_code(), Some(hub_code), "{repo}@{rev}: {e}");
        if hub_code == "GatedRepo" {
            assert!(e.to_string().contains("restricted"), "the hub's message: {e}");
        }
        assert!(matches!(he, HubError::NotFound { .. } | HubError::Unauthorized { .. }));
    }
    assert!(store.manifests().await.unwrap().is_empty(), "nothing stored");
}

#[wasm_bindgen_test]
async fn wrong_hash_is_an_integrity_error_with_nothing_complete() {
    let store = fresh_store("flip").await;
    for (faults, file) in [("flip", "medium.bin"), ("badsha", "medium.bin"), ("badblob", "config.json")] {
        let e = get(&store, &hub(faults), "test/flip", &[file], &opts(0)).await.unwrap_err();
        assert!(matches!(e, StoreError::Integrity { .. }) && e.code() == "IntegrityError", "{faults}: {e}");
        assert_eq!(manifest(&store, "test/flip", file).await, None, "{faults}: chunks purged");
    }
    // The true blobId passes.
    get(&store, &hub(""), "test/flip", &["config.json"], &opts(0)).await.unwrap();
}

#[wasm_bindgen_test]
async fn budget_smaller_than_the_model_fails_before_downloading_and_evicts_lru() {
    let store = fresh_store("quota").await;
    let o = DownloadOptions { budget: Some(MEDIUM - 1), ..opts(0) };
    let e = get(&store, &hub(""), "test/quota", &["medium.bin"], &o).await.unwrap_err();
    assert_eq!(e, StoreError::QuotaInsufficient { needed: MEDIUM, available: MEDIUM - 1 });
    assert_eq!(e.code(), "QuotaExceeded");
    assert!(store.manifests().await.unwrap().is_empty(), "nothing downloaded");
    // Two revisions do not fit in 1.5× one: the older is evicted whole.
    let o = DownloadOptions { budget: Some(MEDIUM * 3 / 2), ..opts(0) };
    get(&store, &hub(""), "test/quota-a", &["medium.bin"], &o).await.unwrap();
    get(&store, &hub(""), "test/quota-b", &["medium.bin"], &o).await.unwrap();
    let revs = list_revisions(&store).await.unwrap();
    assert_eq!(revs.iter().map(|r| r.repo.as_str()).collect::<Vec<_>>(), ["test/quota-b"]);
    assert_eq!(revs[0].bytes, MEDIUM);
}

#[wasm_bindgen_test]
async fn abort_stops_the_transfer() {
    let store = fresh_store("abort").await;
    let ctl = web_sys::AbortController::new().unwrap();
    let signal = ctl.signal();
    let c2 = ctl.clone();
    let cb = wasm_bindgen::closure::Closure::once_into_js(move || c2.abort());
    let window: web_sys::Window = js_sys::global().unchecked_into();
    window.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 500).unwrap();
    let o = DownloadOptions { signal: Some(signal), ..opts(3) };
    let t0 = now();
    let e = get(&store, &hub("slow=65536"), "test/abort", &["medium.bin"], &o).await.unwrap_err();
    let ms = now() - t0;
    assert_eq!(e, StoreError::Aborted);
    assert!(ms < 5000.0, "stopped promptly ({ms} ms)");
    assert!(!manifest(&store, "test/abort", "medium.bin").await.is_some_and(|m| m.complete));
}

#[wasm_bindgen_test]
async fn abort_cuts_a_retry_wait_short() {
    // A 429 asks for 30 s; the signal fires after 300 ms: the download ends then, aborted.
    let store = fresh_store("abort-wait").await;
    let ctl = web_sys::AbortController::new().unwrap();
    let c2 = ctl.clone();
    let cb = wasm_bindgen::closure::Closure::once_into_js(move || c2.abort());
    let window: web_sys::Window = js_sys::global().unchecked_into();
    window.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 300).unwrap();
    let o = DownloadOptions { signal: Some(ctl.signal()), ..opts(3) };
    let t0 = now();
    let e = get(&store, &hub("fail=429,wait=30"), "test/abort-wait", &["config.json"], &o).await.unwrap_err();
    let ms = now() - t0;
    assert_eq!(e, StoreError::Aborted);
    assert!(ms < 5000.0, "stopped during the 30 s wait ({ms} ms)");
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn http_errors_are_typed() {
    let store = fresh_store("http").await;
    for (faults, code) in [("status=404", "NotFound"), ("status=401", "Unauthorized"), ("status=403", "Unauthorized"), ("status=429", "RateLimited"), ("status=500", "NetworkError")] {
        let e = get(&store, &hub(faults), "test/http", &["config.json"], &opts(0)).await.unwrap_err();
        assert_eq!(e.code(), code, "{faults}: {e}");
    }
    // The hub's CORS does not expose Retry-After: a page cannot read it (the wait is a backoff).
    let e = get(&store, &hub("status=429"), "test/http", &[], &opts(0)).await.unwrap_err();
    assert!(matches!(e, StoreError::Hub(hugrt::hub::HubError::RateLimited { retry_after_s: None, .. })), "{e}");
    let e = get(&store, &hub("html"), "test/http", &["medium.bin"], &opts(0)).await.unwrap_err();
    assert_eq!(e.code(), "BadResponse", "{e}");
    assert_eq!(manifest(&store, "test/http", "medium.bin").await.and_then(|m| m.complete.then_some(())), None);
    let e = get(&store, &hub(""), "test/http", &["nope.bin"], &opts(0)).await.unwrap_err();
    assert_eq!(e.code(), "NotFound");
}

#[wasm_bindgen_test]
async fn a_5xx_or_429_is_retried_with_backoff_then_loads() {
    let store = fresh_store("backoff").await;
    for (status, min_ms) in [(503, 400.0), (500, 400.0), (429, 1000.0)] {
        let repo = format!("test/backoff{status}");
        let id = once();
        let t0 = now();
        let r = get(&store, &hub(&format!("fail={status},{id}")), &repo, &["config.json"], &opts(2)).await.unwrap();
        let ms = now() - t0;
        assert_eq!(served(id.trim_start_matches("once=")).await.0, 2, "{status}: one failure, one retry");
        assert!(ms >= min_ms, "{status}: waited {ms} ms (429: at least a second, Retry-After being hidden by CORS)");
        assert!(manifest(&store, &repo, "config.json").await.unwrap().complete, "{status}: {r:?}");
    }
    // Without retries the error stays typed.
    let e = get(&store, &hub(&format!("fail=503,{}", once())), "test/backoff-none", &["config.json"], &opts(0)).await.unwrap_err();
    assert_eq!(e.code(), "NetworkError", "{e}");
    store.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn two_loaders_download_once_and_delete_and_clear_free_space() {
    let store = fresh_store("locks").await;
    let (tx, rx) = futures_channel::oneshot::channel();
    let s2 = store.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = tx.send(get(&s2, &hub(""), "test/locks", &["medium.bin"], &opts(0)).await);
    });
    let a = get(&store, &hub(""), "test/locks", &["medium.bin"], &opts(0)).await.unwrap();
    let b = rx.await.unwrap().unwrap();
    let transferred = a.files[0].transferred + b.files[0].transferred;
    assert_eq!(transferred, MEDIUM, "downloaded once: {a:?} {b:?}");
    assert!(a.files[0].from_cache ^ b.files[0].from_cache);

    get(&store, &hub(""), "test/locks-2", &["config.json"], &opts(0)).await.unwrap();
    let revs = list_revisions(&store).await.unwrap();
    assert_eq!(revs.len(), 2);
    let freed = hugrt::store::delete_revision(&store, "test/locks", &revs[0].commit).await.unwrap();
    assert_eq!(freed, MEDIUM);
    assert_eq!(list_revisions(&store).await.unwrap().len(), 1);
    store.clear().await.unwrap();
    assert!(store.manifests().await.unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn idb_writer_contract() {
    let store = fresh_store("contract").await;
    super::writer_contract(&store).await;
}

#[wasm_bindgen_test]
async fn js_surface_downloads_reads_lists_and_names_errors() {
    use hugrt::store::js::WeightStore;
    use wasm_bindgen::JsValue;
    let set = |o: &js_sys::Object, k: &str, v: JsValue| js_sys::Reflect::set(o, &JsValue::from_str(k), &v).unwrap();
    let ws = WeightStore::open(Some("hugrt-test-js".into())).await.unwrap();
    ws.clear().await.unwrap();
    let calls = js_sys::Array::new();
    let on_progress = js_sys::Function::new_with_args("p", "this.push(p.status)").bind0(&calls);
    let o = js_sys::Object::new();
    set(&o, "endpoint", JsValue::from_str(HUB));
    set(&o, "onProgress", on_progress.into());
    let r = ws.download("test/js".into(), None, Some(vec!["config.json".into()]), o.clone().into()).await.unwrap();
    let commit = js_sys::Reflect::get(&r, &JsValue::from_str("commit")).unwrap().as_string().unwrap();
    assert!(calls.length() > 0, "progress events reached JS");
    let bytes = ws.read_range("test/js".into(), commit.clone(), "config.json".into(), 0.0, 1.0).await.unwrap();
    assert_eq!(bytes.to_vec(), b"{");
    let list = ws.list().await.unwrap();
    assert_eq!(js_sys::Array::from(&list).length(), 1);
    let err = ws.download("test/js".into(), None, Some(vec!["missing.bin".into()]), o.into()).await.unwrap_err();
    assert_eq!(js_sys::Reflect::get(&err, &JsValue::from_str("code")).unwrap().as_string().as_deref(), Some("NotFound"));
    let err = ws.download("../x".into(), None, None, js_sys::Object::new().into()).await.unwrap_err();
    assert_eq!(js_sys::Reflect::get(&err, &JsValue::from_str("code")).unwrap().as_string().as_deref(), Some("InvalidArgument"));
    // The listing: the hub's with a token, typed refusals with the hub's code, offline the store's.
    let files = |v: &JsValue| js_sys::Array::from(&js_sys::Reflect::get(v, &JsValue::from_str("files")).unwrap()).iter().map(|f| f.as_string().unwrap()).collect::<Vec<_>>();
    let gated = js_sys::Object::new();
    set(&gated, "endpoint", JsValue::from_str(HUB));
    let err = ws.list_files("gated/js".into(), None, gated.clone().into()).await.unwrap_err();
    let field = |k: &str| js_sys::Reflect::get(&err, &JsValue::from_str(k)).unwrap().as_string();
    assert_eq!((field("code").as_deref(), field("hubCode").as_deref()), (Some("Unauthorized"), Some("GatedRepo")));
    set(&gated, "token", JsValue::from_str("hf_granted"));
    assert_eq!(files(&ws.list_files("gated/js".into(), None, gated.into()).await.unwrap()), ["config.json", "medium.bin", "big.bin"]);
    let offline = js_sys::Object::new();
    set(&offline, "endpoint", JsValue::from_str("http://127.0.0.1:9"));
    let listed = ws.list_files("test/js".into(), Some("main".into()), offline.into()).await.unwrap();
    assert_eq!(files(&listed), ["config.json"], "offline: what the store holds of the last revision used");
    assert!(ws.delete_revision("test/js".into(), commit).await.unwrap() > 0.0);
    ws.clear().await.unwrap();
}

#[wasm_bindgen_test]
async fn idb_quota_exceeded_mid_write() {
    super::quota_mid_write(fresh_store("quota-mid").await).await;
    // The DOM error itself maps to the typed one.
    let dom = web_sys::DomException::new_with_message_and_name("full", "QuotaExceededError").unwrap();
    let e = hugrt::store::idb::idb_error(&dom.into(), "x.bin");
    assert_eq!(e.code(), "QuotaExceeded", "{e}");
}

/// `indexedDB` of this page.
fn idb_factory() -> web_sys::IdbFactory {
    js_sys::global().unchecked_into::<web_sys::Window>().indexed_db().unwrap().unwrap()
}

/// Awaits a request's `success` (or `error`), as a `Result`.
async fn idb_request(req: &web_sys::IdbRequest) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    let r = req.clone();
    let p = js_sys::Promise::new(&mut |resolve, reject| {
        let r2 = r.clone();
        let ok = wasm_bindgen::closure::Closure::once_into_js(move || {
            let _ = resolve.call1(&wasm_bindgen::JsValue::NULL, &r2.result().unwrap_or_default());
        });
        let err = wasm_bindgen::closure::Closure::once_into_js(move || {
            let _ = reject.call0(&wasm_bindgen::JsValue::NULL);
        });
        r.set_onsuccess(Some(ok.unchecked_ref()));
        r.set_onerror(Some(err.unchecked_ref()));
    });
    wasm_bindgen_futures::JsFuture::from(p).await
}

#[wasm_bindgen_test]
async fn versionchange_closes_old_connections_and_a_persistent_block_is_a_typed_error() {
    use hugrt::store::idb::IdbStore;
    let name = format!("hugrt-test-upgrade-{}", once());
    let old = IdbStore::open(&name).await.unwrap();
    assert!(old.manifests().await.unwrap().is_empty());
    // A newer schema version opens at once: the old connection closed itself on `versionchange`.
    let t0 = now();
    let newer = IdbStore::open_version(&name, 2, 5000).await.unwrap();
    assert!(now() - t0 < 2000.0, "not blocked ({} ms)", now() - t0);
    newer.manifests().await.unwrap();
    // The old connection's next operation fails at once with a typed error, and so does reopening
    // it at its older version.
    let e = old.manifests().await.unwrap_err();
    assert!(matches!(&e, StoreError::Closed { reason } if reason.contains("schema version 2")), "{e}");
    assert_eq!(e.code(), "StoreClosed");
    let e = old.reconnect().await.unwrap_err();
    assert!(matches!(&e, StoreError::Closed { reason } if reason.contains("reload")), "{e}");
    // As does a fresh open by this (older) code, as the model loaders do.
    let e = IdbStore::open(&name).await.err().expect("newer schema");
    assert!(matches!(&e, StoreError::Closed { reason } if reason.contains("newer schema version")), "{e}");
    // A deletion closes the connection too; the next call reopens a fresh database.
    idb_request(&idb_factory().delete_database(&name).unwrap()).await.unwrap();
    let e = newer.manifests().await.unwrap_err();
    assert!(matches!(&e, StoreError::Closed { reason } if reason.contains("deleted")), "{e}");
    newer.reconnect().await.unwrap();
    assert!(newer.manifests().await.unwrap().is_empty());
    newer.close();
    idb_request(&idb_factory().delete_database(&name).unwrap()).await.unwrap();

    // A connection that ignores `versionchange` (not hugrt's) blocks an upgrade: after the wait,
    // a typed `Blocked` error instead of an endless wait; once it closes, the upgrade goes through.
    let name = format!("hugrt-test-blocked-{}", once());
    let raw: web_sys::IdbDatabase = idb_request(&idb_factory().open_with_u32(&name, 1).unwrap()).await.unwrap().unchecked_into();
    let t0 = now();
    let e = IdbStore::open_version(&name, 2, 300).await.err().expect("blocked");
    assert!(matches!(e, StoreError::Blocked { version: 2, waited_ms: 300, .. }) && e.code() == "StoreClosed", "{e}");
    assert!(now() - t0 < 3000.0);
    raw.close();
    let s = IdbStore::open_version(&name, 2, 300).await.unwrap();
    assert!(s.manifests().await.unwrap().is_empty());
    s.close();
    idb_request(&idb_factory().delete_database(&name).unwrap()).await.unwrap();
}

#[wasm_bindgen_test]
async fn evicted_chunks_under_a_complete_manifest_are_detected_and_downloaded_again() {
    let store = fresh_store("evict").await;
    get(&store, &hub(""), "test/evict", &["medium.bin"], &opts(0)).await.unwrap();
    let m = manifest(&store, "test/evict", "medium.bin").await.unwrap();
    assert!(m.complete);
    // Chunk 1 disappears behind the store's back (partial eviction, a cleaner, another tool).
    let db: web_sys::IdbDatabase = idb_request(&idb_factory().open_with_u32("hugrt-test-evict", 1).unwrap()).await.unwrap().unchecked_into();
    let t = db.transaction_with_str_and_mode("chunks", web_sys::IdbTransactionMode::Readwrite).unwrap();
    idb_request(&t.object_store("chunks").unwrap().delete(&hugrt::store::chunk_key(&m.key(), 1).into()).unwrap()).await.unwrap();
    db.close();
    let e = read_range(&store, &m.key(), 0..MEDIUM).await.unwrap_err();
    assert!(matches!(e, StoreError::MissingChunk { index: 1, .. }) && e.code() == "StoreCorrupt", "{e}");
    // The next load sees it and downloads the file again instead of answering from the cache.
    let r = get(&store, &hub(""), "test/evict", &["medium.bin"], &opts(0)).await.unwrap();
    assert_eq!((r.files[0].from_cache, r.files[0].transferred), (false, MEDIUM), "{r:?}");
    assert_eq!(read_range(&store, &m.key(), 0..MEDIUM).await.unwrap().len() as u64, MEDIUM);
    store.clear().await.unwrap();
}
