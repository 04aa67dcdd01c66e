//! HTTP hygiene around every response: security headers, caching of static
//! assets and public pages, compression, time and size limits.

use std::time::Duration;

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// A request that takes longer is answered 503 ("try again"), never left
/// hanging: Postgres statements (5 s) and pool waits (3 s) end before this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Forms are small; nothing Folio accepts comes near this.
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Public profile pages may be cached briefly by browsers and shared caches:
/// an edit shows within this many seconds, while a burst of visits to a
/// popular page is absorbed before it reaches us.
const PROFILE_PAGE_MAX_AGE: u32 = 30;

pub fn apply<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(axum::middleware::from_fn(cache_headers))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("strict-origin-when-cross-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // Responses without a page policy (JSON, files) still refuse framing.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(CompressionLayer::new().br(true).gzip(true))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
}

/// Cache policy by path: versioned assets forever, public profile pages
/// briefly and publicly, everything else (personal pages, API) never.
async fn cache_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let signed_in = request
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("__Host-folio_session="));
    let mut response = next.run(request).await;
    if path.starts_with("/u/") {
        if let Some(not_modified) = revalidate(&mut response, signed_in, if_none_match) {
            return not_modified;
        }
    }
    if response.headers().contains_key(header::CACHE_CONTROL) || method != Method::GET {
        return response;
    }
    let policy = if path.starts_with("/pkg/") && is_hashed_asset(&path) {
        "public, max-age=31536000, immutable".to_owned()
    } else if path.starts_with("/pkg/") || path == "/favicon.svg" {
        // Unversioned names: reuse only after revalidating (ETag / Last-Modified).
        "public, no-cache".to_owned()
    } else if path.starts_with("/u/") && response.status() == StatusCode::OK && !signed_in {
        // The page differs for a signed-in visitor (the header), so only
        // anonymous responses are shareable.
        format!("public, max-age={PROFILE_PAGE_MAX_AGE}")
    } else {
        "no-store".to_owned()
    };
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    if path.starts_with("/u/") {
        response.headers_mut().insert(
            header::VARY,
            HeaderValue::from_static("Cookie, Accept-Encoding"),
        );
    }
    response
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
        HeaderValue::from_str(&format!("public, max-age={PROFILE_PAGE_MAX_AGE}")).ok()?,
    );
    not_modified.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Cookie, Accept-Encoding"),
    );
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
}
