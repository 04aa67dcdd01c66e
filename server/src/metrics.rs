//! Prometheus metrics at `/metrics`: request counts and latency per route
//! (each server function is its own route, `/api/<name>`), plus the counters
//! the app keeps (cache, rate limits, sessions, infrastructure errors,
//! hashing queue). Guarded by a bearer token when `FOLIO_METRICS_TOKEN` is set.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use app::ssr::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::page_cache::PageCache;
use crate::startup::MetricsToken;

const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide recorder (a process has one; tests start several apps).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("folio_http_request_duration_seconds".to_owned()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples pile up in memory until they are folded into
        // their buckets: by a scrape, or by this. Without it a server nobody
        // scrapes grows by 8 bytes per request. A thread, not a task: tests
        // run many short-lived runtimes in one process.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
        handle
    })
}

/// Installs the recorder before the first request.
pub fn init() {
    let _ = handle();
}

/// The route label of a request: the axum route it matched (each server
/// function is its own, `/api/<name>`), so that labels stay few.
pub struct RouteLabel {
    matched: Option<MatchedPath>,
    otherwise: &'static str,
}

impl RouteLabel {
    fn as_str(&self) -> &str {
        self.matched
            .as_ref()
            .map_or(self.otherwise, MatchedPath::as_str)
    }
}

pub fn route_of(request: &Request) -> RouteLabel {
    RouteLabel {
        // An `Arc` inside: no copy of the path per request.
        matched: request.extensions().get::<MatchedPath>().cloned(),
        otherwise: if request.uri().path().starts_with("/pkg/") {
            "/pkg/*"
        } else {
            "fallback"
        },
    }
}

/// Methods outside this list are counted as `OTHER`: a client chooses the
/// method, and every new label value would be a new time series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

type Series = (metrics::Counter, metrics::Histogram);
type SeriesByRoute = HashMap<String, HashMap<(&'static str, u16), Series>>;

/// The registered series, looked up by borrowed route name: building the
/// labelled keys allocated and hashed four strings per request.
fn series() -> &'static RwLock<SeriesByRoute> {
    static SERIES: OnceLock<RwLock<SeriesByRoute>> = OnceLock::new();
    SERIES.get_or_init(RwLock::default)
}

pub fn record(route: &RouteLabel, method: &Method, status: StatusCode, elapsed: Duration) {
    let key = (method_label(method), status.as_u16());
    let seconds = elapsed.as_secs_f64();
    {
        let known = series().read().unwrap_or_else(|e| e.into_inner());
        if let Some((requests, duration)) = known.get(route.as_str()).and_then(|m| m.get(&key)) {
            requests.increment(1);
            duration.record(seconds);
            return;
        }
    }
    let route = route.as_str().to_owned();
    let requests = metrics::counter!("folio_http_requests_total",
        "route" => route.clone(), "method" => key.0, "status" => key.1.to_string());
    let duration =
        metrics::histogram!("folio_http_request_duration_seconds", "route" => route.clone());
    requests.increment(1);
    duration.record(seconds);
    series()
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(route)
        .or_default()
        .insert(key, (requests, duration));
}

pub async fn render(
    State(state): State<AppState>,
    State(pages): State<Arc<PageCache>>,
    State(token): State<MetricsToken>,
    headers: HeaderMap,
) -> Response {
    if let Some(expected) = token.0.as_deref() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(expected) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let stats = &state.profiles.stats;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    // The app's own counters, kept as atomics per AppState (one per app, so
    // tests running several apps in one process each see their own).
    let app_metrics: [(&str, &str, &str, u64); 8] = [
        (
            "folio_profile_cache_hits_total",
            "Profile reads answered by a cache (in-process or Redis).",
            "counter",
            load(&stats.hits),
        ),
        (
            "folio_profile_l1_hits_total",
            "Of the cache hits, those answered in-process (no Redis).",
            "counter",
            load(&stats.l1_hits),
        ),
        (
            "folio_profile_cache_misses_total",
            "Profile reads that missed the cache.",
            "counter",
            load(&stats.misses),
        ),
        (
            "folio_profile_cache_errors_total",
            "Redis failures on the profile path.",
            "counter",
            load(&stats.errors),
        ),
        (
            "folio_profile_db_queries_total",
            "Profile reads that queried Postgres.",
            "counter",
            load(&stats.db_queries),
        ),
        (
            "folio_page_cache_hits_total",
            "Anonymous profile pages answered with a stored render.",
            "counter",
            load(&pages.hits),
        ),
        (
            "folio_page_cache_misses_total",
            "Anonymous profile pages rendered (and stored when they qualify).",
            "counter",
            load(&pages.misses),
        ),
        (
            "folio_password_queue_depth",
            "Requests waiting for a hashing permit.",
            "gauge",
            state.passwords.queue_depth() as u64,
        ),
    ];
    let mut out = handle().render();
    for (name, help, kind, value) in app_metrics {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
