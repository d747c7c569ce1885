//! The weight store: files kept as fixed-size chunks plus one manifest per file, resumable and
//! verified. Two back ends implement [`ChunkStore`]: IndexedDB in the browser (`idb.rs`) and a
//! folder natively (`folder.rs`). [`writer::FileWriter`] turns a byte stream into chunks, hashing
//! as it goes, and marks a file complete only after its size and SHA-256 match, in the same
//! write as its last chunk. `download.rs` (browser) drives it from `fetch` with `Range`/`If-Range`.

#![allow(async_fn_in_trait)] // single-threaded (wasm) futures: no Send bound wanted

#[cfg(target_arch = "wasm32")]
pub mod download;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
#[cfg(target_arch = "wasm32")]
pub mod idb;
#[cfg(target_arch = "wasm32")]
pub mod js;
pub mod writer;

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hub::HubError;

/// Bytes per stored chunk: well under IndexedDB's practical per-value limits (Chromium's 64 MiB
/// cap is checked by our own code via [`MAX_CHUNK_BYTES`]) and large enough that a 4 GB model is
/// 256 records.
pub const CHUNK_BYTES: u64 = 16 << 20;
/// No single stored value may exceed this.
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum StoreError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("not enough storage: {needed} bytes needed, {available} available")]
    QuotaInsufficient { needed: u64, available: u64 },
    #[error("storage quota exceeded while writing {path}: {message}")]
    QuotaExceeded { path: String, message: String },
    #[error("{path}: SHA-256 {actual} does not match the expected {expected}; the partial file was removed")]
    Integrity { path: String, expected: String, actual: String },
    #[error("{path}: got {actual} bytes, expected {expected}; the partial file was removed")]
    SizeMismatch { path: String, expected: u64, actual: u64 },
    #[error("{path}: the server answered 206 from byte {got}, we asked for {asked}; nothing appended")]
    RangeMismatch { path: String, asked: u64, got: u64 },
    #[error("aborted")]
    Aborted,
    #[error("network error on {path} at byte {offset}: {message}")]
    Network { path: String, offset: u64, message: String },
    #[error("{key} is not in the store (or not complete)")]
    NotFound { key: String },
    #[error("{key}: chunk {index} is missing from the store")]
    MissingChunk { key: String, index: u64 },
    #[error("{key}: range {start}..{end} is outside the file's {size} bytes")]
    OutOfRange { key: String, start: u64, end: u64, size: u64 },
    #[error("chunk of {bytes} bytes is over the {MAX_CHUNK_BYTES}-byte cap")]
    ChunkTooLarge { bytes: u64 },
    #[error("storage error: {message}")]
    Backend { message: String },
    /// The connection was closed because another page upgraded or deleted the database.
    #[error("the weight store's connection closed: {reason}")]
    Closed { reason: String },
    /// Opening at a newer schema version waited `waited_ms` for another page to close an older
    /// connection; that page never did.
    #[error("opening {name:?} at schema version {version} was blocked for {waited_ms} ms by another page holding an older version open; close or reload the other tabs")]
    Blocked { name: String, version: u32, waited_ms: u32 },
}

impl StoreError {
    /// Stable code for JS callers.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Hub(e) => e.code(),
            StoreError::QuotaInsufficient { .. } | StoreError::QuotaExceeded { .. } => "QuotaExceeded",
            StoreError::Integrity { .. } | StoreError::SizeMismatch { .. } => "IntegrityError",
            StoreError::RangeMismatch { .. } | StoreError::Network { .. } => "NetworkError",
            StoreError::Aborted => "Aborted",
            StoreError::NotFound { .. } => "NotFound",
            StoreError::MissingChunk { .. } | StoreError::OutOfRange { .. } => "StoreCorrupt",
            StoreError::ChunkTooLarge { .. } | StoreError::Backend { .. } => "StorageError",
            StoreError::Closed { .. } | StoreError::Blocked { .. } => "StoreClosed",
        }
    }
}

/// One file's record: where its bytes come from, how far the download got, whether it is whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileManifest {
    pub repo: String,
    pub commit: String,
    pub path: String,
    pub size: u64,
    /// Expected SHA-256 (hex) when known (LFS files); otherwise the computed one once complete.
    pub sha256: Option<String>,
    pub chunk_bytes: u64,
    /// Chunks `0..chunks_done` are stored (each `chunk_bytes` long).
    pub chunks_done: u64,
    /// Set only together with the last chunk, after size and hash matched.
    pub complete: bool,
    /// The branches and tags (`main`, `v1.0`) that resolved to this commit, with when they last
    /// did (milliseconds since the epoch): offline, a branch loads the commit it last resolved to.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub resolved: BTreeMap<String, f64>,
    /// Milliseconds since the epoch.
    pub last_used: f64,
}

impl FileManifest {
    pub fn key(&self) -> String {
        file_key(&self.repo, &self.commit, &self.path)
    }
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(self.chunk_bytes.max(1))
    }
    /// Bytes held by the stored chunks.
    pub fn stored_bytes(&self) -> u64 {
        if self.complete { self.size } else { self.chunks_done.saturating_mul(self.chunk_bytes).min(self.size) }
    }
}

pub fn file_key(repo: &str, commit: &str, path: &str) -> String {
    format!("{repo}@{commit}/{path}")
}

pub fn chunk_key(file_key: &str, index: u64) -> String {
    format!("{file_key}#{index:010}")
}

/// What a back end stores: manifests and chunks.
pub trait ChunkStore {
    async fn manifest(&self, key: &str) -> Result<Option<FileManifest>, StoreError>;
    async fn manifests(&self) -> Result<Vec<FileManifest>, StoreError>;
    /// Writes `manifest` alone, atomically.
    async fn put_manifest(&self, manifest: &FileManifest) -> Result<(), StoreError>;
    /// Writes chunk `index` and `manifest` together, atomically (one transaction / rename).
    async fn put_chunk(&self, manifest: &FileManifest, index: u64, data: &[u8]) -> Result<(), StoreError>;
    async fn chunk(&self, key: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// How many of the file's chunks are present (evicted or cleared storage loses some under a
    /// complete manifest). The default reads them; the back ends count.
    async fn chunks_present(&self, manifest: &FileManifest) -> Result<u64, StoreError> {
        let key = manifest.key();
        let mut n = 0;
        for i in 0..manifest.chunk_count() {
            n += u64::from(self.chunk(&key, i).await?.is_some());
        }
        Ok(n)
    }
    /// Removes a file's manifest and all its chunks.
    async fn delete_file(&self, manifest: &FileManifest) -> Result<(), StoreError>;
    async fn clear(&self) -> Result<(), StoreError>;
}

/// Reads `range` of a complete file, assembled from its chunks.
pub async fn read_range<S: ChunkStore>(store: &S, key: &str, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
    StoredFile::open(store, key).await?.read(range).await
}

/// A complete stored file, read by byte ranges. It keeps the last chunk it read: the model
/// loaders read tensors in file order, so each chunk comes out of the store once.
pub struct StoredFile<'a, S> {
    store: &'a S,
    manifest: FileManifest,
    last: Option<(u64, Vec<u8>)>,
}

impl<'a, S: ChunkStore> StoredFile<'a, S> {
    pub async fn open(store: &'a S, key: &str) -> Result<Self, StoreError> {
        let manifest = store.manifest(key).await?.filter(|m| m.complete).ok_or_else(|| StoreError::NotFound { key: key.to_string() })?;
        Ok(Self { store, manifest, last: None })
    }

    pub fn size(&self) -> u64 {
        self.manifest.size
    }

    pub async fn read(&mut self, range: Range<u64>) -> Result<Vec<u8>, StoreError> {
        let m = &self.manifest;
        let key = m.key();
        let out_of_range = || StoreError::OutOfRange { key: key.clone(), start: range.start, end: range.end, size: m.size };
        if range.start > range.end || range.end > m.size {
            return Err(out_of_range());
        }
        let len = usize::try_from(range.end - range.start).map_err(|_| out_of_range())?;
        let mut out = Vec::with_capacity(len);
        let cb = m.chunk_bytes.max(1);
        let mut pos = range.start;
        while pos < range.end {
            let index = pos / cb;
            if self.last.as_ref().is_none_or(|(i, _)| *i != index) {
                let chunk = self.store.chunk(&key, index).await?.ok_or_else(|| StoreError::MissingChunk { key: key.clone(), index })?;
                self.last = Some((index, chunk));
            }
            let chunk = self.last.as_ref().map(|(_, c)| c.as_slice()).unwrap_or_default();
            let chunk_start = index * cb;
            let from = pos - chunk_start;
            let to = (range.end - chunk_start).min(chunk.len() as u64);
            if from >= to {
                return Err(StoreError::MissingChunk { key: key.clone(), index });
            }
            // from < to <= chunk.len(): both fit in usize.
            out.extend_from_slice(&chunk[from as usize..to as usize]);
            pos = chunk_start + to;
        }
        Ok(out)
    }
}


/// One cached model revision, for the cache API.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    pub repo: String,
    pub commit: String,
    pub files: Vec<String>,
    /// Bytes stored (complete files plus partial chunks).
    pub bytes: u64,
    pub complete_files: usize,
    pub last_used: f64,
}

pub async fn list_revisions<S: ChunkStore>(store: &S) -> Result<Vec<RevisionInfo>, StoreError> {
    let mut by_rev: BTreeMap<(String, String), RevisionInfo> = BTreeMap::new();
    for m in store.manifests().await? {
        let r = by_rev.entry((m.repo.clone(), m.commit.clone())).or_insert_with(|| RevisionInfo {
            repo: m.repo.clone(),
            commit: m.commit.clone(),
            files: Vec::new(),
            bytes: 0,
            complete_files: 0,
            last_used: 0.0,
        });
        r.files.push(m.path.clone());
        r.bytes = r.bytes.saturating_add(m.stored_bytes());
        r.complete_files += usize::from(m.complete);
        r.last_used = r.last_used.max(m.last_used);
    }
    Ok(by_rev.into_values().collect())
}

/// Bytes held by the whole store.
pub async fn used_bytes<S: ChunkStore>(store: &S) -> Result<u64, StoreError> {
    Ok(store.manifests().await?.iter().map(|m| m.stored_bytes()).fold(0u64, u64::saturating_add))
}

pub async fn delete_revision<S: ChunkStore>(store: &S, repo: &str, commit: &str) -> Result<u64, StoreError> {
    let mut freed = 0u64;
    for m in store.manifests().await? {
        if m.repo == repo && m.commit == commit {
            freed = freed.saturating_add(m.stored_bytes());
            store.delete_file(&m).await?;
        }
    }
    Ok(freed)
}

/// Makes room for `needed` more bytes under `budget` by deleting whole revisions, least recently
/// used first, never `keep` (the revision being loaded). Fails with `QuotaInsufficient` (before
/// anything is downloaded) if even that is not enough.
pub async fn ensure_budget<S: ChunkStore>(store: &S, budget: u64, needed: u64, keep: (&str, &str)) -> Result<Vec<RevisionInfo>, StoreError> {
    let mut revs = list_revisions(store).await?;
    let used: u64 = revs.iter().map(|r| r.bytes).fold(0, u64::saturating_add);
    let kept: u64 = revs.iter().filter(|r| r.repo == keep.0 && r.commit == keep.1).map(|r| r.bytes).sum();
    if kept.saturating_add(needed) > budget {
        return Err(StoreError::QuotaInsufficient { needed, available: budget.saturating_sub(kept) });
    }
    revs.retain(|r| !(r.repo == keep.0 && r.commit == keep.1));
    revs.sort_by(|a, b| a.last_used.total_cmp(&b.last_used));
    let mut used = used;
    let mut evicted = Vec::new();
    for r in revs {
        if used.saturating_add(needed) <= budget {
            break;
        }
        delete_revision(store, &r.repo, &r.commit).await?;
        used = used.saturating_sub(r.bytes);
        evicted.push(r);
    }
    Ok(evicted)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    }
}
