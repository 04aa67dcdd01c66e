//! The edge: what every request passes through first, in one middleware.
//!
//! It names the request (`x-request-id`, kept when the caller sent a sane
//! one), opens its tracing span, refuses targets that are not a UTF-8 path
//! (`crate::target`) and cross-site writes (`crate::csrf`), answers from a
//! stored profile page when it can (`crate::page_cache`), records its
//! metrics, and on the way out adds the security headers and the cache
//! policy (`crate::hygiene`) and says which instance answered. An HTML page
//! without its own Content-Security-Policy (with a nonce) is never sent: the
//! fallback policy would block the page's styles and scripts, so it is
//! logged, counted (`folio_pages_without_policy_total`) and answered 500. A page
//! request carrying a form error this server did not seal is sent back
//! without it, and an answer to a post redirects only within this site with
//! its error sealed (`crate::form_errors`). A handler's
//! panic reaches it as a 500 already (`crate::panics`, the layer inside it).
//!
//! These were nine tower layers (request id, trace, propagate, four header
//! layers, three `from_fn` middlewares). Each layer is another future
//! wrapped around the request, moved and boxed, and under load that cost
//! more than the handlers: `/healthz` served less than half the requests
//! per second of a bare endpoint of the same server (bench/NOTES.md). One
//! function doing the same steps in order keeps every behaviour and pays
//! for one future.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use app::ssr::AppState;

use crate::csrf;
use crate::form_errors::FormErrorSeal;
use crate::hygiene::{self, CachePolicy};
use crate::metrics::{self, HttpMetrics};
use crate::page_cache::{self, PageCache};
use crate::panics::{self, PanicCaught};
use crate::target;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const INSTANCE: HeaderName = HeaderName::from_static("x-folio-instance");

/// A caller's request id longer than this, or with other than visible
/// ASCII, is replaced: it is written into every log line of the request.
const MAX_REQUEST_ID_LEN: usize = 128;

pub struct Edge {
    app: AppState,
    pages: Arc<PageCache>,
    instance: HeaderValue,
    ids: RequestIds,
    http_metrics: HttpMetrics,
    form_errors: FormErrorSeal,
    /// `Strict-Transport-Security`, when the deployment is behind TLS.
    hsts: Option<HeaderValue>,
    /// HTML pages refused for want of their policy (see the module comment).
    pages_without_policy: ::metrics::Counter,
}

impl Edge {
    pub fn new(
        app: AppState,
        pages: Arc<PageCache>,
        instance: &str,
        form_errors: FormErrorSeal,
        hsts_max_age: Option<u64>,
    ) -> Arc<Self> {
        app.metrics.describe_counter(
            "folio_pages_without_policy_total",
            "HTML pages answered 500 because they came without their own \
             Content-Security-Policy (a bug: they would not have loaded).",
        );
        let pages_without_policy = app.metrics.counter("folio_pages_without_policy_total", &[]);
        Arc::new(Self {
            http_metrics: HttpMetrics::new(&app.metrics),
            app,
            pages,
            instance: HeaderValue::from_str(instance).unwrap_or(HeaderValue::from_static("folio")),
            ids: RequestIds::new(),
            form_errors,
            hsts: hsts_max_age.and_then(|age| {
                HeaderValue::from_str(&format!("max-age={age}; includeSubDomains")).ok()
            }),
            pages_without_policy,
        })
    }
}

struct RequestIds {
    /// Random per process, so ids from different instances (and restarts)
    /// never collide; the counter makes them unique within the process.
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: format!("{:016x}", uuid::Uuid::new_v4().as_u64_pair().0),
            next: AtomicU64::new(1),
        }
    }

    /// The caller's id when it is usable, else a new one. A counter and not
    /// a random UUID: a UUID cost a `getrandom` system call per request.
    fn for_request(&self, request: &Request) -> HeaderValue {
        if let Some(given) = request.headers().get(&REQUEST_ID) {
            let bytes = given.as_bytes();
            if !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID_LEN
                && bytes.iter().all(|b| b.is_ascii_graphic())
            {
                return given.clone();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .unwrap_or(HeaderValue::from_static("-"))
    }
}

pub async fn around_every_request(
    State(edge): State<Arc<Edge>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = edge.ids.for_request(&request);
    // Path only: query strings may carry what does not belong in logs.
    // The client's network (ASVS V16: a security event says from where):
    // every line of the request, a refusal included, carries it.
    let client = app::ssr::request::network_of(app::ssr::request::client_ip_of(
        request.headers(),
        request.extensions(),
        &edge.app.config.trusted_proxies,
    ));
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = request_id.to_str().unwrap_or("-"),
        client = %client,
    );
    let route = metrics::route_of(&request);
    let method = request.method().clone();
    let policy = CachePolicy::of(&request);
    let is_post = !matches!(
        method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );

    let response = async {
        if let Some(reason) = target::malformed(&request) {
            // Debug only: anyone can send these, as fast as they like.
            tracing::debug!(reason, "malformed request refused");
            edge.app
                .metrics
                .counter(
                    "folio_bad_requests_total",
                    &[("route", route.as_str().to_owned())],
                )
                .increment(1);
            return target::refuse(route.as_str());
        }
        if csrf::is_cross_site(&request) {
            let token = csrf::session_token(&request);
            let user_id = csrf::signed_in_user(&edge.app, token).await;
            return csrf::refuse(&request, user_id);
        }
        if let Some(redirect) = edge.form_errors.refuse_unsealed(&request) {
            return redirect;
        }
        let mut response = page_cache::serve(&edge.app, &edge.pages, request, next).await;
        if is_post {
            edge.form_errors.seal_redirect(&mut response);
        }
        if response.extensions().get::<PanicCaught>().is_some() {
            // The panic hook has logged it, in this span.
            return panics::answer_for_route(response, route.as_str());
        }
        // A page without its own policy is logged and counted, and goes
        // out with the fallback policy of `hygiene::add_security_headers`.
        // Refusing it with a 500 (tried this round) broke a page that lost
        // its policy on the way (the used-reset-link page without
        // JavaScript, end2end/tests/lifecycle.spec.ts): the cause is issue
        // 24 item 2, still open, and the counter shows where it happens.
        if hygiene::is_page_without_policy(&response) {
            tracing::error!(
                status = response.status().as_u16(),
                "a page without its Content-Security-Policy"
            );
            edge.pages_without_policy.increment(1);
        }
        if response.status().is_server_error() {
            tracing::error!(status = response.status().as_u16(), "request failed");
        }
        response
    }
    .instrument(span)
    .await;

    edge.http_metrics
        .record(&route, &method, response.status(), started.elapsed());
    let mut response = policy.apply(response);
    let headers = response.headers_mut();
    hygiene::add_security_headers(headers);
    headers.insert(REQUEST_ID, request_id);
    headers.insert(INSTANCE, edge.instance.clone());
    if let Some(hsts) = &edge.hsts {
        headers.insert(axum::http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with_id(id: Option<&str>) -> Request {
        let mut builder = Request::builder().uri("/healthz");
        if let Some(id) = id {
            builder = builder.header("x-request-id", id);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_unique_otherwise() {
        let ids = RequestIds::new();

        assert_eq!(
            ids.for_request(&request_with_id(Some("abc-123"))),
            "abc-123"
        );
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        let replaced = ids.for_request(&request_with_id(Some(&long)));
        assert_ne!(replaced, long.as_str());
        let first = ids.for_request(&request_with_id(None));
        let second = ids.for_request(&request_with_id(None));
        assert_ne!(first, second);
        assert!(first.to_str().unwrap().starts_with(&ids.prefix));
    }
}
