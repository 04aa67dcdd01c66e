//! Rendered public profile pages, served again while the profile is unchanged.
//!
//! An anonymous visitor's `/u/{username}` page depends on nothing but the
//! profile and the build: the header is the signed-out one, and the page
//! already names its identity in its ETag (`W/"{username}-{version}"`). So
//! the page is rendered once per profile version and kept here; a later
//! anonymous request reads the profile through the usual cache-aside path
//! (an in-process hit, usually) and, when the version still matches, gets
//! the stored bytes instead of a new server render (~0.5 ms of CPU each).
//! Freshness is therefore exactly that of `get_profile`: an edit, on this
//! instance or another, shows on the next request.
//!
//! Each response still gets its own CSP nonce: the stored page's nonce (128
//! random bits, generated during its render, after the profile was read, so
//! no profile text can contain it) is replaced in the body and in the header.
//! Signed-in visitors (their header differs), requests with a query string,
//! and anything but a 200 with a nonce and an ETag and without a cookie are
//! never stored or served from here. The render of a page to be stored
//! cannot see the request's cookies at all: they are removed before it, so
//! whatever cookie parsing the renderer does, it renders the anonymous page.
//! A page older than the newest version this instance has heard of is
//! never stored (and could not be served: the read gives the newer tag).

use std::sync::Arc;

use app::domain::Username;
use app::ssr::infra::db::Freshness;
use app::ssr::AppState;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leptos::nonce::Nonce;
use metrics::Counter;

use crate::hygiene::signed_in;

/// A rendered page is a few KiB; a page this large is not worth keeping.
const MAX_PAGE_BYTES: usize = 256 * 1024;

pub struct PageCache {
    capacity: usize,
    pages: moka::sync::Cache<String, Arc<StoredPage>>,
    hits: Counter,
    misses: Counter,
}

struct StoredPage {
    /// The page's own ETag: which profile version it shows.
    tag: HeaderValue,
    nonce: String,
    headers: HeaderMap,
    body: String,
}

impl PageCache {
    /// Keeps at most `capacity` pages (0 turns the cache off).
    pub fn new(capacity: usize, state: &AppState) -> Arc<Self> {
        let metrics = &state.metrics;
        metrics.describe_counter(
            "folio_page_cache_hits_total",
            "Anonymous profile pages answered with a stored render.",
        );
        metrics.describe_counter(
            "folio_page_cache_misses_total",
            "Anonymous profile pages rendered (and stored when they qualify).",
        );
        Arc::new(Self {
            capacity,
            pages: moka::sync::Cache::new(capacity as u64),
            hits: metrics.counter("folio_page_cache_hits_total", &[]),
            misses: metrics.counter("folio_page_cache_misses_total", &[]),
        })
    }

    fn get(&self, path: &str, tag: &HeaderValue) -> Option<Arc<StoredPage>> {
        self.pages.get(path).filter(|page| page.tag == tag)
    }

    /// The profile version of the page stored for `path`, if any (for
    /// diagnostics and tests).
    pub fn stored_version(&self, path: &str) -> Option<i32> {
        self.pages.get(path).and_then(|page| version_of(&page.tag))
    }

    fn put(&self, path: &str, page: StoredPage) {
        self.pages.insert(path.to_owned(), Arc::new(page));
    }
}

/// The username of an anonymous, cacheable page request.
fn cacheable_request(request: &Request, cache: &PageCache) -> Option<Username> {
    if cache.capacity == 0
        || request.method() != Method::GET
        || request.uri().query().is_some()
        || signed_in(request.headers())
    {
        return None;
    }
    let name = request.uri().path().strip_prefix("/u/")?;
    Username::parse(name).ok().filter(|u| u.as_str() == name)
}

/// Answers an anonymous profile page request with the stored page when it
/// is still current; otherwise runs `next` and keeps what it renders. Every
/// other request goes straight to `next`. Called by `crate::edge`.
pub async fn serve(state: &AppState, cache: &PageCache, request: Request, next: Next) -> Response {
    let Some(username) = cacheable_request(&request, cache) else {
        return next.run(request).await;
    };
    // Unknown users and outages render as usual (404, 503): nothing to keep.
    let Ok(profile) = app::ssr::profiles::get(state, Freshness::Any, &username).await else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    if let Some(page) = HeaderValue::from_str(&profile.page_tag())
        .ok()
        .and_then(|tag| cache.get(&path, &tag))
    {
        cache.hits.increment(1);
        return page.with_fresh_nonce();
    }
    cache.misses.increment(1);
    let mut request = request;
    request.headers_mut().remove(header::COOKIE);
    let response = next.run(request).await;
    let floor = state.profiles.floor(username.as_str());
    store(cache, &path, floor, response).await
}

/// The profile version a page's tag (`W/"{username}-{version}"`) names.
fn version_of(tag: &HeaderValue) -> Option<i32> {
    let tag = tag
        .to_str()
        .ok()?
        .trim_start_matches("W/")
        .trim_matches('"');
    tag.rsplit_once('-')?.1.parse().ok()
}

/// Keeps a copy of a rendered page when it qualifies, and answers with it.
async fn store(cache: &PageCache, path: &str, floor: i32, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let tag = parts.headers.get(header::ETAG).cloned();
    let nonce = parts
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .and_then(nonce_of);
    // A response that sets a cookie belongs to one visitor only.
    let personal = parts.headers.contains_key(header::SET_COOKIE);
    // An edit this instance has heard of since the render read the profile.
    let outdated = tag.as_ref().and_then(version_of).is_none_or(|v| v < floor);
    let (Some(tag), Some(nonce), StatusCode::OK, false) =
        (tag, nonce, parts.status, personal || outdated)
    else {
        return Response::from_parts(parts, body);
    };
    let bytes = match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(bytes) => bytes,
        // Too large to keep, or the render failed mid-stream: what was sent
        // so far is gone, so answer as a failed render would.
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if let Ok(html) = std::str::from_utf8(&bytes) {
        let mut headers = parts.headers.clone();
        headers.remove(header::TRANSFER_ENCODING);
        headers.remove(header::CONTENT_LENGTH);
        cache.put(
            path,
            StoredPage {
                tag,
                nonce: nonce.to_owned(),
                headers,
                body: html.to_owned(),
            },
        );
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// `… 'nonce-XYZ' …` → `XYZ`.
fn nonce_of(policy: &str) -> Option<&str> {
    let start = policy.find("'nonce-")? + "'nonce-".len();
    let len = policy[start..].find('\'')?;
    Some(&policy[start..start + len]).filter(|n| !n.is_empty())
}

impl StoredPage {
    fn with_fresh_nonce(&self) -> Response {
        let fresh = Nonce::new();
        let nonce: &str = &fresh;
        let mut headers = self.headers.clone();
        if let Some(policy) = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .and_then(|p| HeaderValue::from_str(&p.replace(&self.nonce, nonce)).ok())
        {
            headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        }
        let body = Bytes::from(self.body.replace(&self.nonce, nonce));
        let mut response = Response::new(Body::from(body));
        *response.headers_mut() = headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::{nonce_of, version_of, HeaderValue};

    #[test]
    fn the_version_is_read_from_the_page_tag() {
        let tag = HeaderValue::from_static("W/\"ada_l-12\"");
        assert_eq!(version_of(&tag), Some(12));
        assert_eq!(version_of(&HeaderValue::from_static("W/\"x\"")), None);
    }

    #[test]
    fn the_nonce_is_read_from_the_policy() {
        assert_eq!(
            nonce_of("default-src 'self'; script-src 'self' 'nonce-AbC_1-x' 'wasm-unsafe-eval'"),
            Some("AbC_1-x")
        );
        assert_eq!(nonce_of("default-src 'self'"), None);
        assert_eq!(nonce_of("script-src 'nonce-'"), None);
    }
}
