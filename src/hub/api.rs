//! The JSON of `GET /api/models/{repo}/revision/{rev}?blobs=true`, parsed and validated.

use serde::{Deserialize, Serialize};

use super::{HubError, is_commit, validate_path};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lfs {
    pub sha256: String,
    pub size: u64,
}

/// One file of a repo at a commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default, rename = "blobId")]
    pub blob_id: Option<String>,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

impl Sibling {
    /// The file's size: the LFS size if any, else `size`.
    pub fn byte_size(&self) -> Option<u64> {
        self.lfs.as_ref().map(|l| l.size).or(self.size)
    }
    /// The expected SHA-256 (LFS files only; small git files have a git-blob SHA-1 instead).
    pub fn sha256(&self) -> Option<&str> {
        self.lfs.as_ref().map(|l| l.sha256.as_str())
    }
}

/// A repo pinned at a commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RepoInfo {
    pub id: String,
    /// The resolved 40-hex commit.
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

impl RepoInfo {
    /// Parses and validates the API response (`url` is only for error messages).
    pub fn parse(json: &[u8], url: &str) -> Result<RepoInfo, HubError> {
        let bad = |message: String| HubError::BadResponse { url: url.to_string(), message };
        let info: RepoInfo = serde_json::from_slice(json).map_err(|e| bad(format!("not the hub's JSON: {e}")))?;
        if !is_commit(&info.sha) {
            return Err(bad(format!("commit {:?} is not a 40-hex sha", info.sha)));
        }
        for s in &info.siblings {
            validate_path(&s.rfilename)?;
            if let Some(lfs) = &s.lfs
                && (lfs.sha256.len() != 64 || !lfs.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(bad(format!("{}: lfs.sha256 is not 64 hex digits", s.rfilename)));
            }
        }
        Ok(info)
    }

    pub fn file(&self, path: &str) -> Option<&Sibling> {
        self.siblings.iter().find(|s| s.rfilename == path)
    }
}
