//! The native back end: a folder. Each file is `<hash-of-key>/` holding `manifest.json` and
//! `chunk-NNNNNNNNNN`; writes go to a temporary name and are renamed into place, the chunk first
//! and the manifest last, so a crash never leaves a manifest that claims a chunk it lacks.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ChunkStore, FileManifest, MAX_CHUNK_BYTES, StoreError};

pub struct FolderStore {
    root: PathBuf,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Backend { message: e.to_string() }
}

impl FolderStore {
    pub fn open(root: impl AsRef<Path>) -> Result<FolderStore, StoreError> {
        fs::create_dir_all(root.as_ref()).map_err(io)?;
        Ok(FolderStore { root: root.as_ref().to_path_buf() })
    }

    /// Keys contain `/` and `@`; the folder name is their SHA-256 so no key can escape the root.
    fn dir(&self, key: &str) -> PathBuf {
        self.root.join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, data).map_err(io)?;
        fs::rename(&tmp, path).map_err(io)
    }
}

impl ChunkStore for FolderStore {
    async fn manifest(&self, key: &str) -> Result<Option<FileManifest>, StoreError> {
        match fs::read(self.dir(key).join("manifest.json")) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| StoreError::Backend { message: format!("bad manifest for {key}: {e}") }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn manifests(&self) -> Result<Vec<FileManifest>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io)? {
            let p = entry.map_err(io)?.path().join("manifest.json");
            // A folder without a readable manifest is a crash leftover: not listed.
            if let Ok(b) = fs::read(&p)
                && let Ok(m) = serde_json::from_slice(&b)
            {
                out.push(m);
            }
        }
        Ok(out)
    }

    async fn put_manifest(&self, m: &FileManifest) -> Result<(), StoreError> {
        let dir = self.dir(&m.key());
        fs::create_dir_all(&dir).map_err(io)?;
        let json = serde_json::to_vec(m).map_err(|e| StoreError::Backend { message: e.to_string() })?;
        Self::write_atomic(&dir.join("manifest.json"), &json)
    }

    async fn put_chunk(&self, m: &FileManifest, index: u64, data: &[u8]) -> Result<(), StoreError> {
        if data.len() as u64 > MAX_CHUNK_BYTES {
            return Err(StoreError::ChunkTooLarge { bytes: data.len() as u64 });
        }
        let dir = self.dir(&m.key());
        fs::create_dir_all(&dir).map_err(io)?;
        Self::write_atomic(&dir.join(format!("chunk-{index:010}")), data)?;
        self.put_manifest(m).await
    }

    async fn chunk(&self, key: &str, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.dir(key).join(format!("chunk-{index:010}"))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn chunks_present(&self, m: &FileManifest) -> Result<u64, StoreError> {
        let dir = self.dir(&m.key());
        Ok((0..m.chunk_count()).filter(|i| dir.join(format!("chunk-{i:010}")).is_file()).count() as u64)
    }

    async fn delete_file(&self, m: &FileManifest) -> Result<(), StoreError> {
        match fs::remove_dir_all(self.dir(&m.key())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    async fn clear(&self) -> Result<(), StoreError> {
        for entry in fs::read_dir(&self.root).map_err(io)? {
            fs::remove_dir_all(entry.map_err(io)?.path()).map_err(io)?;
        }
        Ok(())
    }
}
