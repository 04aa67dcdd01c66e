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
    let signed_in = request
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("__Host-folio_session="));
    let mut response = next.run(request).await;
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
