//! Hub client and weight store. Natively: validation, API parsing and the folder store (chunk
//! writer, resume, integrity, ranges, budget). In headless Chromium: the IndexedDB store against
//! `scripts/hub-server.mjs` on `HUGRT_TEST_HUB` (default http://127.0.0.1:8788), fault by fault.

use hugrt::hub::{Hub, HubError, RepoInfo, validate_path, validate_repo_id, validate_revision};
use hugrt::store::writer::{FileWriter, Start};
use hugrt::store::{CHUNK_BYTES, ChunkStore, MAX_CHUNK_BYTES, StoreError, file_key, read_range};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed).collect()
}

fn sha_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

gpu_test!(validation_rejects_hostile_ids_and_paths, async {
    for ok in ["owner/name", "gpt2", "a-b/c_d.e"] {
        assert_eq!(validate_repo_id(ok), Ok(()), "{ok}");
    }
    for bad in ["", "a/b/c", "../x", "a/..", "a/.b", "a b/c", "a/b?x", "https://x/y", "a/%2e%2e", "a\n/b"] {
        assert!(matches!(validate_repo_id(bad), Err(HubError::InvalidRepoId { .. })), "{bad:?}");
    }
    for ok in ["main", "v1.0", "refs/pr/1", COMMIT] {
        assert_eq!(validate_revision(ok), Ok(()), "{ok}");
    }
    for bad in ["", "..", "a/../b", "/main", "x?y", "x#y", "%2e%2e", "a\u{0}b"] {
        assert!(matches!(validate_revision(bad), Err(HubError::InvalidRevision { .. })), "{bad:?}");
    }
    for ok in ["model.safetensors", "onnx/model.onnx", "a.b/c-d_e.json"] {
        assert_eq!(validate_path(ok), Ok(()), "{ok}");
    }
    for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "http://evil/x", "a?b", "a#b", "%2e%2e/x", "a\\b", "a\u{7}b", "C:/x"] {
        assert!(matches!(validate_path(bad), Err(HubError::InvalidPath { .. })), "{bad:?}");
    }
    let hub = Hub::new("https://huggingface.co/", Some("tok".into())).unwrap();
    assert_eq!(hub.revision_url("o/n", "refs/pr/1").unwrap(), "https://huggingface.co/api/models/o/n/revision/refs%2Fpr%2F1?blobs=true");
    assert_eq!(hub.resolve_url("o/n", COMMIT, "a/b.bin").unwrap(), format!("https://huggingface.co/o/n/resolve/{COMMIT}/a/b.bin"));
    assert!(matches!(hub.resolve_url("o/n", "main", "a"), Err(HubError::InvalidRevision { .. })), "downloads are pinned to a commit");
    assert_eq!(hub.token_for("https://huggingface.co/o/n/resolve/x"), Some("tok"));
    assert_eq!(hub.token_for("https://cdn-lfs.huggingface.co/x"), None);
    assert_eq!(hub.token_for("https://huggingface.co.evil.com/x"), None);
    assert!(Hub::new("file:///x", None).is_err());
    assert_eq!(HubError::from_status(429, "u", Some("7")), HubError::RateLimited { url: "u".into(), retry_after_s: Some(7) });
    assert_eq!(HubError::from_status(401, "u", None).code(), "Unauthorized");
    assert_eq!(HubError::from_status(404, "u", None).code(), "NotFound");
});

gpu_test!(api_json_is_parsed_and_validated, async {
    let ok = format!(r#"{{"id":"o/n","sha":"{COMMIT}","siblings":[{{"rfilename":"config.json","size":5}},{{"rfilename":"m.bin","size":9,"lfs":{{"sha256":"{}","size":9}}}}]}}"#, "ab".repeat(32));
    let info = RepoInfo::parse(ok.as_bytes(), "u").unwrap();
    assert_eq!(info.file("m.bin").and_then(|s| s.sha256()), Some("ab".repeat(32).as_str()));
    assert_eq!(info.file("config.json").and_then(|s| s.byte_size()), Some(5));
    let bad_sha = ok.replace(COMMIT, "main");
    assert!(matches!(RepoInfo::parse(bad_sha.as_bytes(), "u"), Err(HubError::BadResponse { .. })));
    let bad_path = ok.replace("config.json", "../../etc/passwd");
    assert!(matches!(RepoInfo::parse(bad_path.as_bytes(), "u"), Err(HubError::InvalidPath { .. })));
    assert!(matches!(RepoInfo::parse(b"<!doctype html>", "u"), Err(HubError::BadResponse { .. })));
});

/// Writes `bytes` through a FileWriter in `piece`-sized pushes and finishes.
async fn write_all<S: ChunkStore>(store: &S, path: &str, bytes: &[u8], sha: Option<String>, piece: usize) -> Result<hugrt::store::FileManifest, StoreError> {
    let (mut w, start) = FileWriter::open(store, "t/r", COMMIT, path, bytes.len() as u64, sha).await?;
    let Start::At(at) = start else { return Ok(w.manifest().clone()) };
    for c in bytes[at as usize..].chunks(piece) {
        w.push(c).await?;
    }
    w.finish().await
}

/// The writer contract on any back end: chunks, resume, integrity, ranges.
async fn writer_contract<S: ChunkStore>(store: &S) {
    store.clear().await.unwrap();
    let cb = CHUNK_BYTES as usize;
    let bytes = data(2 * cb + 12345, 1);
    let sha = sha_hex(&bytes);

    // A partial write (stream cut at 1.5 chunks) leaves one chunk committed and resumable.
    {
        let (mut w, start) = FileWriter::open(store, "t/r", COMMIT, "a.bin", bytes.len() as u64, Some(sha.clone())).await.unwrap();
        assert_eq!(start, Start::At(0));
        w.push(&bytes[..cb + cb / 2]).await.unwrap();
        assert_eq!(w.committed(), CHUNK_BYTES);
    }
    let key = file_key("t/r", COMMIT, "a.bin");
    let m = store.manifest(&key).await.unwrap().unwrap();
    assert_eq!((m.chunks_done, m.complete), (1, false));
    assert!(matches!(read_range(store, &key, 0..10).await, Err(StoreError::NotFound { .. })), "partial files are not readable");
    let (_, start) = FileWriter::open(store, "t/r", COMMIT, "a.bin", bytes.len() as u64, Some(sha.clone())).await.unwrap();
    assert_eq!(start, Start::At(CHUNK_BYTES), "resumes after the stored chunk");
    let m = write_all(store, "a.bin", &bytes, Some(sha.clone()), 100_000).await.unwrap();
    assert!(m.complete && m.sha256.as_deref() == Some(sha.as_str()) && m.chunks_done == 3);

    // Ranges across chunk boundaries, and bounds.
    for r in [0..1u64, 0..bytes.len() as u64, CHUNK_BYTES - 5..CHUNK_BYTES + 5, 2 * CHUNK_BYTES..bytes.len() as u64, 7..7] {
        assert_eq!(read_range(store, &key, r.clone()).await.unwrap(), &bytes[r.start as usize..r.end as usize], "{r:?}");
    }
    assert!(matches!(read_range(store, &key, 0..bytes.len() as u64 + 1).await, Err(StoreError::OutOfRange { .. })));

    // A wrong hash: typed error, nothing left behind.
    let e = write_all(store, "bad.bin", &bytes[..1000], Some("00".repeat(32)), 64).await.unwrap_err();
    assert!(matches!(e, StoreError::Integrity { .. }) && e.code() == "IntegrityError", "{e}");
    assert_eq!(store.manifest(&file_key("t/r", COMMIT, "bad.bin")).await.unwrap(), None);
    // Small non-LFS files: the git-blob SHA-1 (blobId) is checked.
    let small = b"{\"a\": 1}\n";
    let blob = {
        use sha1::Digest as _;
        hex::encode(sha1::Sha1::new().chain_update(format!("blob {}\0", small.len())).chain_update(small).finalize())
    };
    for (id, ok) in [(blob.as_str(), true), ("ffffffffffffffffffffffffffffffffffffffff", false)] {
        let (mut w, _) = FileWriter::open(store, "t/r", COMMIT, "config.json", small.len() as u64, None).await.unwrap();
        w.expect_git_blob(id);
        w.push(small).await.unwrap();
        let r = w.finish().await;
        assert_eq!(r.is_ok(), ok, "{id}: {r:?}");
        assert_eq!(store.manifest(&file_key("t/r", COMMIT, "config.json")).await.unwrap().is_some(), ok);
        if let Some(m) = store.manifest(&file_key("t/r", COMMIT, "config.json")).await.unwrap() {
            store.delete_file(&m).await.unwrap();
        }
    }
    // Too many bytes: typed error, removed.
    let (mut w, _) = FileWriter::open(store, "t/r", COMMIT, "long.bin", 10, None).await.unwrap();
    assert!(matches!(w.push(&[0; 11]).await, Err(StoreError::SizeMismatch { .. })));
    assert_eq!(store.manifest(&file_key("t/r", COMMIT, "long.bin")).await.unwrap(), None);
    // Too few: not complete.
    let (mut w, _) = FileWriter::open(store, "t/r", COMMIT, "short.bin", 10, None).await.unwrap();
    w.push(&[0; 9]).await.unwrap();
    assert!(matches!(w.finish().await, Err(StoreError::SizeMismatch { .. })));
    assert!(!store.manifest(&file_key("t/r", COMMIT, "short.bin")).await.unwrap().is_some_and(|m| m.complete));

    // No stored value over the cap (IndexedDB's practical limit): our own code refuses it, and
    // nothing is written.
    let mut huge = m.clone();
    huge.path = "huge.bin".into();
    huge.size = MAX_CHUNK_BYTES + 1;
    huge.complete = false;
    let e = store.put_chunk(&huge, 0, &vec![0; MAX_CHUNK_BYTES as usize + 1]).await.unwrap_err();
    assert!(matches!(e, StoreError::ChunkTooLarge { bytes } if bytes == MAX_CHUNK_BYTES + 1), "{e}");
    assert_eq!(store.manifest(&huge.key()).await.unwrap(), None);

    // Cache API: list, LRU eviction by budget, delete, clear.
    let revs = hugrt::store::list_revisions(store).await.unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].complete_files, 1);
    let other = "fedcba9876543210fedcba9876543210fedcba98";
    let (mut w, _) = FileWriter::open(store, "t/other", other, "x.bin", 100, None).await.unwrap();
    w.push(&[1; 100]).await.unwrap();
    w.finish().await.unwrap();
    let e = hugrt::store::ensure_budget(store, 1000, 2000, ("t/new", COMMIT)).await.unwrap_err();
    assert_eq!(e, StoreError::QuotaInsufficient { needed: 2000, available: 1000 });
    let evicted = hugrt::store::ensure_budget(store, bytes.len() as u64 + 150, 100, ("t/other", other)).await.unwrap();
    assert_eq!(evicted.iter().map(|r| r.repo.as_str()).collect::<Vec<_>>(), ["t/r"], "the other revision is evicted whole");
    assert_eq!(hugrt::store::list_revisions(store).await.unwrap().len(), 1);
    assert_eq!(hugrt::store::delete_revision(store, "t/other", other).await.unwrap(), 100);
    assert!(store.manifests().await.unwrap().is_empty());
    store.clear().await.unwrap();
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn folder_store_writer_contract() {
    let dir = std::env::temp_dir().join(format!("hugrt-store-test-{}", std::process::id()));
    let store = hugrt::store::folder::FolderStore::open(&dir).unwrap();
    pollster::block_on(writer_contract(&store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn folder_store_complete_file_missing_a_chunk_is_downloaded_again() {
    use sha2::Digest as _;
    let dir = std::env::temp_dir().join(format!("hugrt-store-evict-{}", std::process::id()));
    let store = hugrt::store::folder::FolderStore::open(&dir).unwrap();
    pollster::block_on(async {
        let bytes = data(2 * CHUNK_BYTES as usize + 5, 9);
        let sha = sha_hex(&bytes);
        let key = write_all(&store, "e.bin", &bytes, Some(sha.clone()), 1 << 20).await.unwrap().key();
        std::fs::remove_file(dir.join(hex::encode(sha2::Sha256::digest(key.as_bytes()))).join("chunk-0000000001")).unwrap();
        let e = read_range(&store, &key, 0..bytes.len() as u64).await.unwrap_err();
        assert!(matches!(e, StoreError::MissingChunk { index: 1, .. }) && e.code() == "StoreCorrupt", "{e}");
        let (_, start) = FileWriter::open(&store, "t/r", COMMIT, "e.bin", bytes.len() as u64, Some(sha.clone())).await.unwrap();
        assert_eq!(start, Start::At(0), "not answered from the cache: downloaded again");
        assert_eq!(store.manifest(&key).await.unwrap(), None, "the damaged entry is gone");
        write_all(&store, "e.bin", &bytes, Some(sha), 1 << 20).await.unwrap();
        assert_eq!(read_range(&store, &key, 0..bytes.len() as u64).await.unwrap(), bytes);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A store that fails the `fail_at`-th chunk write with `QuotaExceeded`, as IndexedDB does.
struct FullAfter<S> {
    inner: S,
    writes: std::cell::Cell<u32>,
    fail_at: u32,
}

impl<S: ChunkStore> ChunkStore for FullAfter<S> {
    async fn manifest(&self, key: &str) -> Result<Option<hugrt::store::FileManifest>, StoreError> {
        self.inner.manifest(key).await
    }
    async fn manifests(&self) -> Result<Vec<hugrt::store::FileManifest>, StoreError> {
        self.inner.manifests().await
    }
    async fn put_manifest(&self, m: &hugrt::store::FileManifest) -> Result<(), StoreError> {
        self.inner.put_manifest(m).await
    }
    async fn put_chunk(&self, m: &hugrt::store::FileManifest, index: u64, data: &[u8]) -> Result<(), StoreError> {
        self.writes.set(self.writes.get() + 1);
        if self.writes.get() >= self.fail_at {
            return Err(StoreError::QuotaExceeded { path: m.path.clone(), message: "QuotaExceededError (injected)".into() });
        }
        self.inner.put_chunk(m, index, data).await
    }
    async fn chunk(&self, key: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.chunk(key, index).await
    }
    async fn delete_file(&self, m: &hugrt::store::FileManifest) -> Result<(), StoreError> {
        self.inner.delete_file(m).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
}

/// QuotaExceeded on the 1st, 2nd and last chunk write: a typed error, never a complete entry,
/// other files intact, and the download resumes once there is room.
async fn quota_mid_write<S: ChunkStore>(inner: S) {
    inner.clear().await.unwrap();
    write_all(&inner, "other.bin", &[7; 1000], None, 100).await.unwrap();
    let bytes = data(2 * CHUNK_BYTES as usize + 5, 3);
    let key = file_key("t/r", COMMIT, "q.bin");
    let mut store = FullAfter { inner, writes: Default::default(), fail_at: 0 };
    for fail_at in [1, 2, 3] {
        if let Some(m) = store.manifest(&key).await.unwrap() {
            store.delete_file(&m).await.unwrap(); // each case starts from byte 0
        }
        store.writes.set(0);
        store.fail_at = fail_at;
        let e = write_all(&store, "q.bin", &bytes, Some(sha_hex(&bytes)), 1 << 20).await.unwrap_err();
        assert!(matches!(e, StoreError::QuotaExceeded { .. }) && e.code() == "QuotaExceeded", "{e}");
        assert!(!store.manifest(&key).await.unwrap().is_some_and(|m| m.complete), "never marked complete");
        assert!(store.manifest(&file_key("t/r", COMMIT, "other.bin")).await.unwrap().is_some_and(|m| m.complete));
    }
    // Resumes (from the chunk committed before the failure) once there is room.
    assert_eq!(store.manifest(&key).await.unwrap().map(|m| m.chunks_done), Some(2));
    store.fail_at = u32::MAX;
    let m = write_all(&store, "q.bin", &bytes, Some(sha_hex(&bytes)), 1 << 20).await.unwrap();
    assert!(m.complete);
    assert_eq!(read_range(&store, &key, 0..bytes.len() as u64).await.unwrap(), bytes);
    store.clear().await.unwrap();
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn folder_store_quota_exceeded_mid_write() {
    let dir = std::env::temp_dir().join(format!("hugrt-store-quota-{}", std::process::id()));
    let store = hugrt::store::folder::FolderStore::open(&dir).unwrap();
    pollster::block_on(quota_mid_write(store));
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(target_arch = "wasm32")]
#[path = "store/browser.rs"]
mod browser;
