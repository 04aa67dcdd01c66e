//! HTTP hygiene around every response: security headers, caching of static
//! assets and public pages (both applied by `crate::edge`), compression,
//! time and size limits.

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

/// A request that takes longer is answered 503 ("try again"), never left
/// hanging: Postgres statements (5 s) and pool waits (3 s) end before this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// An avatar upload may take longer: 8 MB from a phone on a slow uplink
/// (1 Mbit/s) is over a minute. A client that stops sending is still cut
/// off after `BODY_TIMEOUT`.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Forms are small; nothing Folio accepts comes near this (the avatar
/// upload has a limit of its own, `crate::media`).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
/// A client that stops sending the body it announced is answered after this
/// long without a byte of it (400: the request could not be read), rather
/// than holding the request until `REQUEST_TIMEOUT` answers 503 as if Folio
/// had failed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Public profile pages may be cached briefly by browsers and shared caches:
/// an edit shows within 30 s, while a burst of visits to a popular page is
/// absorbed before it reaches us.
const PROFILE_PAGE_CACHE_CONTROL: &str = "public, max-age=30";
/// A profile page differs for a signed-in visitor, and by encoding.
const PROFILE_PAGE_VARY: &str = "Cookie, Accept-Encoding";

/// The limits between the edge (`crate::edge`) and the handlers: time and
/// body size. `uploads` (the avatar upload) keeps the larger body limit of
/// its own route instead of the 64 KiB of the rest.
pub fn limits<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    uploads: Router<S>,
) -> Router<S> {
    router
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .merge(uploads.layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            UPLOAD_TIMEOUT,
        )))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
}

/// Brotli or gzip, as the client accepts, for responses worth compressing.
pub fn compression() -> CompressionLayer {
    CompressionLayer::new().br(true).gzip(true)
}

/// Headers every response carries unless its handler chose otherwise.
/// Responses without a page policy (JSON, files) still refuse framing.
pub fn add_security_headers(headers: &mut HeaderMap) {
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    for (name, value) in defaults {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
}

/// An HTML page (rendered, or stored and replayed) that comes without the
/// policy its handler sets: every page sets exactly one (a rendered page the
/// one with the nonce of its inline scripts, see `app::ui::shell`). Without
/// it the fallback of [`add_security_headers`] would apply, and the browser
/// would block the page's stylesheet, scripts and WASM.
pub fn is_page_without_policy(response: &Response) -> bool {
    let headers = response.headers();
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    html && headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .count()
        != 1
}

/// Whether the request carries a session cookie (valid or not): such a
/// visitor's pages show who is signed in, so they are never shared. The same
/// parser as the renderer's (`app::ssr::request`), so that no request is
/// anonymous to one and signed in to the other.
pub fn signed_in(headers: &HeaderMap) -> bool {
    app::ssr::request::has_session_cookie(headers)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PathKind {
    HashedAsset,
    UnversionedAsset,
    ProfilePage,
    Other,
}

/// What the cache policy of a response depends on, taken from the request
/// before it is handed on (so that no path is copied per request).
pub struct CachePolicy {
    kind: PathKind,
    get: bool,
    signed_in: bool,
    if_none_match: Option<HeaderValue>,
}

impl CachePolicy {
    pub fn of(request: &Request) -> Self {
        let path = request.uri().path();
        let kind = if path.starts_with("/pkg/") && is_hashed_asset(path) {
            PathKind::HashedAsset
        } else if path.starts_with("/pkg/") || path == "/favicon.svg" {
            PathKind::UnversionedAsset
        } else if path.starts_with("/u/") {
            PathKind::ProfilePage
        } else {
            PathKind::Other
        };
        Self {
            kind,
            get: request.method() == Method::GET,
            signed_in: signed_in(request.headers()),
            if_none_match: (kind == PathKind::ProfilePage)
                .then(|| request.headers().get(header::IF_NONE_MATCH).cloned())
                .flatten(),
        }
    }

    /// Cache policy by path: versioned assets forever, public profile pages
    /// briefly and publicly (with revalidation), everything else (personal
    /// pages, API) never.
    pub fn apply(self, mut response: Response) -> Response {
        if self.kind == PathKind::ProfilePage {
            if let Some(not_modified) =
                revalidate(&mut response, self.signed_in, self.if_none_match)
            {
                return not_modified;
            }
        }
        if response.headers().contains_key(header::CACHE_CONTROL) || !self.get {
            return response;
        }
        let policy = match self.kind {
            PathKind::HashedAsset => {
                HeaderValue::from_static("public, max-age=31536000, immutable")
            }
            // Unversioned names: reuse only after revalidating (ETag / Last-Modified).
            PathKind::UnversionedAsset => HeaderValue::from_static("public, no-cache"),
            // The page differs for a signed-in visitor (the header), so only
            // anonymous responses are shareable.
            PathKind::ProfilePage if response.status() == StatusCode::OK && !self.signed_in => {
                HeaderValue::from_static(PROFILE_PAGE_CACHE_CONTROL)
            }
            _ => HeaderValue::from_static("no-store"),
        };
        response.headers_mut().insert(header::CACHE_CONTROL, policy);
        if self.kind == PathKind::ProfilePage {
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static(PROFILE_PAGE_VARY));
        }
        response
    }
}

/// Qualifies a profile page's ETag (set by the page from the profile's
/// version) with the build, and answers 304 when the browser has it already.
/// Signed-in pages differ (the header) and are never revalidated.
fn revalidate(
    response: &mut Response,
    signed_in: bool,
    if_none_match: Option<HeaderValue>,
) -> Option<Response> {
    let page_tag = response.headers_mut().remove(header::ETAG)?;
    if signed_in || response.status() != StatusCode::OK {
        return None;
    }
    let page_tag = page_tag
        .to_str()
        .ok()?
        .trim_start_matches("W/")
        .trim_matches('"');
    let etag = HeaderValue::from_str(&format!("W/\"{}-{page_tag}\"", build_id())).ok()?;
    let matches = if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| {
            list.split(',')
                .any(|tag| tag.trim() == etag.to_str().unwrap_or_default())
        });
    response.headers_mut().insert(header::ETAG, etag.clone());
    if !matches {
        return None;
    }
    let mut not_modified = Response::new(axum::body::Body::empty());
    *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
    not_modified.headers_mut().insert(header::ETAG, etag);
    not_modified.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(PROFILE_PAGE_CACHE_CONTROL),
    );
    not_modified
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static(PROFILE_PAGE_VARY));
    Some(not_modified)
}

/// Identifies the running build: every instance started from the same binary
/// agrees, and a new deploy (new asset names, new markup) changes every ETag.
fn build_id() -> &'static str {
    static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILD.get_or_init(|| {
        let stamp = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                format!("{:x}{:x}", m.len(), modified)
            })
            .unwrap_or_default();
        format!("{}.{stamp}", env!("CARGO_PKG_VERSION"))
    })
}

/// cargo-leptos with `hash-files` names assets `folio.<base64url hash>.js`: a new build
/// gets new names, so an old name may be cached forever.
fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let mut parts = name.split('.');
    let _stem = parts.next();
    matches!(parts.next(), Some(hash) if hash.len() >= 16
        && hash.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        && parts.next().is_some()
}

#[cfg(test)]
mod tests {
    use super::is_hashed_asset;

    #[test]
    fn only_hashed_asset_names_are_immutable() {
        assert!(is_hashed_asset("/pkg/folio.W7FB2CVXEKidw5GoK0iIXg.js"));
        assert!(is_hashed_asset("/pkg/folio.fr7sOD83bW9T-phh70zRSg.wasm"));
        assert!(!is_hashed_asset("/pkg/folio.js"));
        assert!(!is_hashed_asset("/pkg/folio_bg.wasm"));
    }

    #[test]
    fn an_html_answer_needs_exactly_one_policy_of_its_own() {
        use super::{header, HeaderValue, Response};
        let page = |policies: &[&'static str]| {
            let mut response = Response::new(axum::body::Body::empty());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            for policy in policies {
                headers.append(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(policy),
                );
            }
            response
        };
        assert!(super::is_page_without_policy(&page(&[])));
        assert!(super::is_page_without_policy(&page(&[
            "default-src 'self'",
            "default-src 'none'"
        ])));
        assert!(!super::is_page_without_policy(&page(&[
            "script-src 'nonce-abc'"
        ])));
        // Not a page: JSON, files and empty answers get the fallback.
        assert!(!super::is_page_without_policy(&Response::new(
            axum::body::Body::empty()
        )));
    }
}
