//! Hub client: a repo id + revision → a pinned commit and its file list (sizes, LFS SHA-256),
//! through `GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true`, and the download URL
//! `{endpoint}/{repo}/resolve/{commit}/{path}` that is always pinned to the commit.
//!
//! Everything that comes from a caller or a server (repo ids, revisions, file paths, commit
//! shas) is validated here with typed errors before it is put into a URL.

pub mod api;
#[cfg(target_arch = "wasm32")]
pub mod fetch;

use thiserror::Error;

pub use api::{RepoInfo, Sibling};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Why the hub refused a request, from its `X-Error-Code` and `X-Error-Message` headers
/// (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct HubReason {
    pub code: String,
    pub message: String,
}

/// `" (Code: message)"`, or nothing.
fn reason_suffix(reason: &Option<HubReason>) -> String {
    reason.as_ref().map(|r| format!(" ({}: {})", r.code, r.message)).unwrap_or_default()
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum HubError {
    #[error("invalid repo id {repo:?}: {reason}")]
    InvalidRepoId { repo: String, reason: &'static str },
    #[error("invalid revision {revision:?}: {reason}")]
    InvalidRevision { revision: String, reason: &'static str },
    #[error("invalid file path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: &'static str },
    #[error("not found: {url}{}", reason_suffix(.reason))]
    NotFound { url: String, reason: Option<HubReason> },
    #[error("unauthorized (HTTP {status}) for {url}{}", .reason.as_ref().map(|r| format!(": {}: {}", r.code, r.message)).unwrap_or_else(|| ": the repo may be gated or private; pass a token".into()))]
    Unauthorized { status: u16, url: String, reason: Option<HubReason> },
    #[error("rate limited (HTTP 429) for {url}; retry after {retry_after_s:?} s")]
    RateLimited { url: String, retry_after_s: Option<u64> },
    #[error("server error HTTP {status} for {url}")]
    Server { status: u16, url: String },
    /// A download URL on another origin than the hub (the CDN's signed URL after a redirect)
    /// refused the request: its signature expired, or it was never valid. Resolving the file
    /// through the hub again hands out a fresh one.
    #[error("the signed download URL was refused (HTTP {status}, expired?): {url}")]
    SignedUrlRefused { status: u16, url: String },
    #[error("network error for {url}: {message}")]
    Network { url: String, message: String },
    #[error("unexpected response from {url}: {message}")]
    BadResponse { url: String, message: String },
}

impl HubError {
    /// Stable code for JS callers.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::InvalidRepoId { .. }
            | HubError::InvalidRevision { .. }
            | HubError::InvalidPath { .. }
            | HubError::InvalidEndpoint { .. } => "InvalidArgument",
            HubError::NotFound { .. } => "NotFound",
            HubError::Unauthorized { .. } => "Unauthorized",
            HubError::RateLimited { .. } => "RateLimited",
            HubError::Server { .. } | HubError::Network { .. } | HubError::SignedUrlRefused { .. } => "NetworkError",
            HubError::BadResponse { .. } => "BadResponse",
        }
    }

    /// The hub's own error code (`X-Error-Code`), where it sent one.
    pub fn hub_code(&self) -> Option<&str> {
        match self {
            HubError::NotFound { reason, .. } | HubError::Unauthorized { reason, .. } => reason.as_ref().map(|r| r.code.as_str()),
            _ => None,
        }
    }

    /// Maps a non-success HTTP status to its error.
    pub fn from_status(status: u16, url: &str, retry_after: Option<&str>) -> HubError {
        HubError::from_response(status, url, retry_after, None)
    }

    /// Maps a non-success answer to its error: the hub's `X-Error-Code` first (a `RepoNotFound` is
    /// a 401 without a token, yet not found), then the status.
    pub fn from_response(status: u16, url: &str, retry_after: Option<&str>, reason: Option<HubReason>) -> HubError {
        let url = url.to_string();
        match reason.as_ref().map(|r| r.code.as_str()) {
            Some("RepoNotFound" | "RevisionNotFound" | "EntryNotFound") => return HubError::NotFound { url, reason },
            Some("GatedRepo") => return HubError::Unauthorized { status, url, reason },
            _ => {}
        }
        match status {
            401 | 403 => HubError::Unauthorized { status, url, reason },
            404 | 410 => HubError::NotFound { url, reason },
            429 => HubError::RateLimited { url, retry_after_s: retry_after.and_then(|v| v.trim().parse().ok()) },
            500..=599 => HubError::Server { status, url },
            _ => HubError::BadResponse { url, message: format!("HTTP {status}") },
        }
    }
}

fn bad_char(c: char) -> bool {
    c.is_control() || matches!(c, '?' | '#' | '%' | '\\' | ':' | ' ' | '"' | '<' | '>' | '|' | '*')
}

/// `owner/name` (or a bare `name`): ASCII letters, digits, `-`, `_`, `.`; no `..`, at most 96
/// characters per part.
pub fn validate_repo_id(repo: &str) -> Result<(), HubError> {
    let err = |reason| Err(HubError::InvalidRepoId { repo: repo.to_string(), reason });
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.is_empty() || parts.len() > 2 {
        return err("expected owner/name");
    }
    for p in parts {
        if p.is_empty() || p.len() > 96 {
            return err("empty or too long part");
        }
        if p.contains("..") || p.starts_with('.') || p.starts_with('-') || p.ends_with('.') {
            return err("'..' or a leading/trailing '.'/'-'");
        }
        if !p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            return err("only ASCII letters, digits, '-', '_' and '.' are allowed");
        }
    }
    Ok(())
}

/// A branch, tag or commit. Slashes are allowed (branches like `refs/pr/1`) and encoded as `%2F`
/// in the API URL.
pub fn validate_revision(revision: &str) -> Result<(), HubError> {
    let err = |reason| Err(HubError::InvalidRevision { revision: revision.to_string(), reason });
    if revision.is_empty() || revision.len() > 255 {
        return err("empty or too long");
    }
    if revision.contains("..") || revision.starts_with('/') || revision.ends_with('/') || revision.contains("//") {
        return err("'..' or misplaced '/'");
    }
    if revision.chars().any(bad_char) {
        return err("control character or one of ?#%\\: <>|*\"");
    }
    Ok(())
}

/// A relative file path inside a repo: no absolute paths, URLs, `..`/`.` segments, `?`, `#`,
/// percent-escapes (so no `%2e%2e`), backslashes or control characters.
pub fn validate_path(path: &str) -> Result<(), HubError> {
    let err = |reason| Err(HubError::InvalidPath { path: path.to_string(), reason });
    if path.is_empty() || path.len() > 1024 {
        return err("empty or too long");
    }
    if path.starts_with('/') {
        return err("absolute path");
    }
    if path.contains("://") {
        return err("a URL");
    }
    if path.chars().any(|c| c.is_control() || matches!(c, '?' | '#' | '%' | '\\' | ':')) {
        return err("control character or one of ?#%\\:");
    }
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return err("empty, '.' or '..' segment");
    }
    Ok(())
}

/// A full 40-hex-digit commit sha.
pub fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where the hub lives and how to authenticate.
#[derive(Clone, Debug)]
pub struct Hub {
    /// Without a trailing slash; may carry a path prefix (a mirror under a sub-path).
    endpoint: String,
    /// Bearer token, sent only to `endpoint`'s origin.
    token: Option<String>,
}

impl Hub {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Hub, HubError> {
        let e = endpoint.trim_end_matches('/');
        let ok_scheme = e.starts_with("https://") || e.starts_with("http://");
        if !ok_scheme || e.chars().any(|c| c.is_control() || c == '?' || c == '#' || c == ' ') {
            return Err(HubError::InvalidEndpoint { endpoint: endpoint.to_string(), reason: "expected an http(s) URL without query or fragment" });
        }
        Ok(Hub { endpoint: e.to_string(), token })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `scheme://host[:port]` part of the endpoint.
    pub fn origin(&self) -> &str {
        let after = self.endpoint.find("://").map(|i| i + 3).unwrap_or(0);
        match self.endpoint[after..].find('/') {
            Some(i) => &self.endpoint[..after + i],
            None => &self.endpoint,
        }
    }

    /// Whether `url` is on the endpoint's origin (not a CDN it redirected to).
    pub fn is_own(&self, url: &str) -> bool {
        let origin = self.origin();
        url.starts_with(origin) && matches!(url.as_bytes().get(origin.len()), None | Some(b'/' | b'?'))
    }

    /// The token, if `url` is on the endpoint's origin (never sent elsewhere).
    pub fn token_for(&self, url: &str) -> Option<&str> {
        if self.is_own(url) { self.token.as_deref() } else { None }
    }

    pub fn revision_url(&self, repo: &str, revision: &str) -> Result<String, HubError> {
        validate_repo_id(repo)?;
        validate_revision(revision)?;
        Ok(format!("{}/api/models/{}/revision/{}?blobs=true", self.endpoint, repo, revision.replace('/', "%2F")))
    }

    /// The download URL, pinned to `commit` (a 40-hex sha).
    pub fn resolve_url(&self, repo: &str, commit: &str, path: &str) -> Result<String, HubError> {
        validate_repo_id(repo)?;
        if !is_commit(commit) {
            return Err(HubError::InvalidRevision { revision: commit.to_string(), reason: "downloads are pinned to a 40-hex commit sha" });
        }
        validate_path(path)?;
        Ok(format!("{}/{}/resolve/{}/{}", self.endpoint, repo, commit, path))
    }
}
