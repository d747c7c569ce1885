//! Bytes in, verified chunks out. The SHA-256 state lives in the writer; on resume it is rebuilt
//! by re-hashing the chunks already stored (cheaper to reason about than persisting hasher state,
//! and it also catches chunks damaged at rest).

use sha2::{Digest, Sha256};

use super::{CHUNK_BYTES, ChunkStore, FileManifest, MAX_CHUNK_BYTES, StoreError, file_key, now_ms};

pub struct FileWriter<'a, S: ChunkStore> {
    store: &'a S,
    manifest: FileManifest,
    hasher: Sha256,
    buf: Vec<u8>,
    /// Expected git-blob SHA-1 and its hasher, for small non-LFS files (single chunk only).
    blob: Option<(String, sha1::Sha1)>,
}

/// A git-blob hasher: SHA-1 over `blob {size}\0` and the content.
fn blob_hasher(size: u64) -> sha1::Sha1 {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {size}\0").as_bytes());
    h
}

/// Where a writer starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// The file is already complete in the store.
    Complete,
    /// Continue at this byte (0: from the beginning).
    At(u64),
}

impl<'a, S: ChunkStore> FileWriter<'a, S> {
    /// Opens (or resumes) the file. A stored partial file whose size or expected hash differs is
    /// discarded, and so is a complete one that lost chunks (evicted storage).
    pub async fn open(store: &'a S, repo: &str, commit: &str, path: &str, size: u64, sha256: Option<String>) -> Result<(FileWriter<'a, S>, Start), StoreError> {
        let key = file_key(repo, commit, path);
        let fresh = FileManifest {
            repo: repo.to_string(),
            commit: commit.to_string(),
            path: path.to_string(),
            size,
            sha256: sha256.clone(),
            chunk_bytes: CHUNK_BYTES,
            chunks_done: 0,
            complete: false,
            resolved: Default::default(),
            last_used: now_ms(),
        };
        let mut w = FileWriter { store, manifest: fresh.clone(), hasher: Sha256::new(), buf: Vec::new(), blob: None };
        if let Some(old) = store.manifest(&key).await? {
            let same = old.size == size && (sha256.is_none() || old.sha256 == sha256) && old.chunk_bytes == CHUNK_BYTES;
            if same && old.complete {
                // Storage evicted or cleared under the manifest: download the file again.
                if store.chunks_present(&old).await? == old.chunk_count() {
                    w.manifest = old;
                    return Ok((w, Start::Complete));
                }
            } else if same && old.chunks_done <= old.chunk_count() {
                w.manifest = old;
                // Re-hash what is stored; a missing or short chunk restarts from there.
                let mut good = 0;
                for i in 0..w.manifest.chunks_done {
                    match store.chunk(&key, i).await? {
                        Some(c) if c.len() as u64 == CHUNK_BYTES => {
                            w.hasher.update(&c);
                            good = i + 1;
                        }
                        _ => break,
                    }
                }
                if good != w.manifest.chunks_done {
                    w.manifest.chunks_done = good;
                    store.put_manifest(&w.manifest).await?;
                }
                return Ok((w, Start::At(good * CHUNK_BYTES)));
            }
            store.delete_file(&old).await?;
        }
        Ok((w, Start::At(0)))
    }

    /// Also checks the git-blob SHA-1 `blob_id` (40 hex) when the file is complete. Only for files
    /// that fit in one chunk and have nothing stored yet (small non-LFS files such as configs,
    /// whose hub metadata carries no SHA-256); ignored otherwise (size is still checked).
    pub fn expect_git_blob(&mut self, blob_id: &str) {
        let valid = blob_id.len() == 40 && blob_id.bytes().all(|b| b.is_ascii_hexdigit());
        if valid && self.manifest.size <= self.manifest.chunk_bytes && self.manifest.chunks_done == 0 && self.buf.is_empty() {
            self.blob = Some((blob_id.to_ascii_lowercase(), blob_hasher(self.manifest.size)));
        }
    }

    fn reset_blob(&mut self) {
        let size = self.manifest.size;
        if let Some((_, h)) = &mut self.blob {
            *h = blob_hasher(size);
        }
    }

    pub fn manifest(&self) -> &FileManifest {
        &self.manifest
    }

    /// The byte the next `push` continues at.
    pub fn offset(&self) -> u64 {
        self.manifest.chunks_done * self.manifest.chunk_bytes + self.buf.len() as u64
    }

    /// The byte a resumed request should start at (buffered bytes are lost on a failure).
    pub fn committed(&self) -> u64 {
        self.manifest.chunks_done * self.manifest.chunk_bytes
    }

    /// Rebuilds the hasher from the stored chunks dropping buffered bytes (after a failed request, before resuming at `committed()`).
    pub async fn resync(&mut self) -> Result<(), StoreError> {
        self.buf.clear();
        self.hasher = Sha256::new();
        self.reset_blob(); // blob-checked files have no stored chunks
        let key = self.manifest.key();
        for i in 0..self.manifest.chunks_done {
            let c = self.store.chunk(&key, i).await?.ok_or(StoreError::MissingChunk { key: key.clone(), index: i })?;
            self.hasher.update(&c);
        }
        Ok(())
    }

    /// Starts over from byte 0 (the stored bytes are past the server's end of the file).
    pub async fn restart(&mut self) -> Result<(), StoreError> {
        self.buf.clear();
        self.hasher = Sha256::new();
        self.reset_blob();
        self.manifest.chunks_done = 0;
        self.store.put_manifest(&self.manifest).await
    }

    pub async fn push(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        let room = self.manifest.size.saturating_sub(self.offset());
        if bytes.len() as u64 > room {
            let actual = self.offset().saturating_add(bytes.len() as u64);
            self.discard().await?;
            return Err(StoreError::SizeMismatch { path: self.manifest.path.clone(), expected: self.manifest.size, actual });
        }
        self.hasher.update(bytes);
        if let Some((_, h)) = &mut self.blob {
            h.update(bytes);
        }
        let cb = self.manifest.chunk_bytes;
        if cb > MAX_CHUNK_BYTES {
            return Err(StoreError::ChunkTooLarge { bytes: cb });
        }
        while !bytes.is_empty() {
            let want = (cb as usize).saturating_sub(self.buf.len());
            let take = want.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let is_last = self.offset() == self.manifest.size;
            if self.buf.len() as u64 == cb && !is_last {
                let mut next = self.manifest.clone();
                next.chunks_done += 1;
                self.store.put_chunk(&next, self.manifest.chunks_done, &self.buf).await?;
                self.manifest = next;
                self.buf.clear();
            }
        }
        Ok(())
    }

    /// Checks size and hash; writes the last chunk and the complete manifest in one write. On a
    /// mismatch the file is removed from the store.
    pub async fn finish(mut self) -> Result<FileManifest, StoreError> {
        let got = self.offset();
        if got != self.manifest.size {
            // Ended early: keep the committed chunks for a resume.
            return Err(StoreError::SizeMismatch { path: self.manifest.path.clone(), expected: self.manifest.size, actual: got });
        }
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = &self.manifest.sha256
            && !expected.eq_ignore_ascii_case(&actual)
        {
            let e = StoreError::Integrity { path: self.manifest.path.clone(), expected: expected.clone(), actual };
            self.discard().await?;
            return Err(e);
        }
        if let Some((expected, h)) = self.blob.take() {
            let actual = hex::encode(h.finalize());
            if actual != expected {
                let e = StoreError::Integrity { path: self.manifest.path.clone(), expected: format!("git blob {expected}"), actual: format!("git blob {actual}") };
                self.discard().await?;
                return Err(e);
            }
        }
        let mut done = self.manifest.clone();
        done.sha256 = Some(actual);
        done.complete = true;
        done.last_used = now_ms();
        if self.buf.is_empty() {
            self.store.put_manifest(&done).await?;
        } else {
            done.chunks_done += 1;
            self.store.put_chunk(&done, self.manifest.chunks_done, &self.buf).await?;
        }
        Ok(done)
    }

    /// Removes the partial file from the store.
    pub async fn discard(&mut self) -> Result<(), StoreError> {
        self.buf.clear();
        self.store.delete_file(&self.manifest).await
    }
}
