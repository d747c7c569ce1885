//! Browser side of the hub client: `fetch` with an optional bearer token (only to the endpoint's
//! origin; on a cross-origin redirect the browser's fetch drops `Authorization` itself), an
//! optional `AbortSignal`, and the revision lookup.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Headers, RequestInit, Response};

use super::{Hub, HubError, HubReason, RepoInfo};

/// `fetch(url, {headers, signal})` on the window or worker global. A rejection is `Err(js error)`.
pub async fn fetch(url: &str, headers: &Headers, signal: Option<&AbortSignal>) -> Result<Response, JsValue> {
    let init = RequestInit::new();
    init.set_method("GET");
    init.set_headers(headers);
    if let Some(s) = signal {
        init.set_signal(Some(s));
    }
    let global = js_sys::global();
    let promise = if let Some(w) = global.dyn_ref::<web_sys::Window>() {
        w.fetch_with_str_and_init(url, &init)
    } else if let Some(w) = global.dyn_ref::<web_sys::WorkerGlobalScope>() {
        w.fetch_with_str_and_init(url, &init)
    } else {
        return Err(JsValue::from_str("no fetch on this global"));
    };
    JsFuture::from(promise).await?.dyn_into::<Response>()
}

/// True if `e` is a DOMException/Error named `AbortError`.
pub fn is_abort(e: &JsValue) -> bool {
    js_sys::Reflect::get(e, &JsValue::from_str("name")).ok().and_then(|n| n.as_string()).is_some_and(|n| n == "AbortError")
}

pub fn js_message(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

impl Hub {
    /// Headers for `url`: the token only if `url` is on the endpoint's origin.
    pub fn headers_for(&self, url: &str) -> Result<Headers, HubError> {
        let h = Headers::new().map_err(|e| HubError::Network { url: url.to_string(), message: js_message(&e) })?;
        if let Some(t) = self.token_for(url) {
            h.set("Authorization", &format!("Bearer {t}")).map_err(|e| HubError::Network { url: url.to_string(), message: js_message(&e) })?;
        }
        Ok(h)
    }

    /// The typed error for a failed answer to a request for `url`: the hub's `X-Error-Code` and
    /// `X-Error-Message` where it sent them; a 401/403 from another origin (the CDN that `url`
    /// redirected to) is a refused signed URL, worth resolving again.
    pub fn error_of(&self, resp: &Response, url: &str) -> HubError {
        let status = resp.status();
        let final_url = resp.url();
        if matches!(status, 401 | 403) && !final_url.is_empty() && !self.is_own(&final_url) {
            return HubError::SignedUrlRefused { status, url: final_url };
        }
        let h = resp.headers();
        let get = |k: &str| h.get(k).ok().flatten().filter(|v| !v.is_empty());
        let reason = get("X-Error-Code").map(|code| HubReason { code, message: get("X-Error-Message").unwrap_or_default() });
        HubError::from_response(status, url, get("Retry-After").as_deref(), reason)
    }

    /// Resolves `revision` (branch, tag or commit) to a commit and its files.
    pub async fn resolve(&self, repo: &str, revision: &str, signal: Option<&AbortSignal>) -> Result<RepoInfo, HubError> {
        let url = self.revision_url(repo, revision)?;
        let net = |e: JsValue| HubError::Network { url: url.clone(), message: js_message(&e) };
        let resp = fetch(&url, &self.headers_for(&url)?, signal).await.map_err(net)?;
        if !resp.ok() {
            return Err(self.error_of(&resp, &url));
        }
        let buf = JsFuture::from(resp.array_buffer().map_err(net)?).await.map_err(net)?;
        let bytes = js_sys::Uint8Array::new(&buf).to_vec();
        let info = RepoInfo::parse(&bytes, &url)?;
        if super::is_commit(revision) && !info.sha.eq_ignore_ascii_case(revision) {
            return Err(HubError::BadResponse { url, message: format!("asked for commit {revision}, got {}", info.sha) });
        }
        Ok(info)
    }
}
