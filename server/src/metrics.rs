//! Prometheus metrics at `/metrics` (the series themselves are registered in
//! `app::ssr::infra::metrics`): request counts and latency per route
//! (each server function is its own route, `/api/<name>`), plus the counters
//! the app keeps (cache, rate limits, sessions, infrastructure errors,
//! hashing queue, whether Postgres and Redis answer). Guarded by a bearer
//! token when `FOLIO_METRICS_TOKEN` is set.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use app::ssr::{AppState, Metrics};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::MetricsAccess;
use crate::health;

const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds histogram samples into their buckets every few seconds, for as
/// long as the application runs (see `Metrics::run_upkeep`).
pub fn keep_up(state: &AppState) {
    let state = state.downgrade();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            let Some(state) = state.upgrade() else { return };
            state.metrics.run_upkeep();
        }
    });
}

/// The route label of a request: the axum route it matched (each server
/// function is its own, `/api/<name>`), so that labels stay few.
pub struct RouteLabel {
    matched: Option<MatchedPath>,
    otherwise: &'static str,
}

impl RouteLabel {
    pub fn as_str(&self) -> &str {
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

/// The per-route request series of one application, looked up by borrowed
/// route name: building the labelled keys allocated and hashed four strings
/// per request.
pub struct HttpMetrics {
    metrics: Metrics,
    series: RwLock<SeriesByRoute>,
}

impl HttpMetrics {
    pub fn new(metrics: &Metrics) -> Self {
        metrics.describe_counter(
            "folio_http_requests_total",
            "Requests answered, by route, method and status.",
        );
        metrics.describe_histogram(
            "folio_http_request_duration_seconds",
            "Time to answer a request, by route.",
        );
        Self {
            metrics: metrics.clone(),
            series: RwLock::default(),
        }
    }

    pub fn record(
        &self,
        route: &RouteLabel,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let key = (method_label(method), status.as_u16());
        let seconds = elapsed.as_secs_f64();
        {
            let known = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some((requests, duration)) = known.get(route.as_str()).and_then(|m| m.get(&key))
            {
                requests.increment(1);
                duration.record(seconds);
                return;
            }
        }
        let route = route.as_str().to_owned();
        let requests = self.metrics.counter(
            "folio_http_requests_total",
            &[
                ("route", route.clone()),
                ("method", key.0.to_owned()),
                ("status", key.1.to_string()),
            ],
        );
        let duration = self.metrics.histogram(
            "folio_http_request_duration_seconds",
            &[("route", route.clone())],
        );
        requests.increment(1);
        duration.record(seconds);
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route)
            .or_default()
            .insert(key, (requests, duration));
    }
}

pub async fn render(
    State(state): State<AppState>,
    State(access): State<MetricsAccess>,
    headers: HeaderMap,
) -> Response {
    match &access {
        MetricsAccess::Open => {}
        MetricsAccess::Closed => return StatusCode::NOT_FOUND.into_response(),
        MetricsAccess::Token(expected) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            // Constant time: the answer's timing must not say how much of a
            // guess was right. (The length is not secret.)
            let matches: bool =
                subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into();
            if !matches {
                return StatusCode::UNAUTHORIZED.into_response();
            }
        }
    }
    // Gauges of live values are read when scraped. The dependency probe
    // costs a `SELECT 1` and a `PING` per scrape (at most a second each,
    // concurrently), and is as fresh as the scrape: no background task
    // probing whether or not anyone looks.
    state
        .metrics
        .password_queue_depth
        .set(state.passwords.queue_depth() as f64);
    let (dependencies, ()) = tokio::join!(health::probe(&state), probe_cluster(&state));
    let up = |answered: bool| if answered { 1.0 } else { 0.0 };
    state.metrics.postgres_up.set(up(dependencies.postgres));
    if let Some(timeline) = dependencies.primary_timeline {
        state.metrics.postgres_timeline.set(timeline as f64);
    }
    state.metrics.redis_up.set(up(dependencies.redis));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// On a Redis Cluster, what the cluster says of itself, for the cluster
/// alerts: `folio_redis_cluster_ok` (`cluster_state:ok`, 0 also when no
/// node answers) and `folio_redis_cluster_epoch` (`cluster_current_epoch`,
/// which every failover raises). Not exported on a standalone server.
async fn probe_cluster(state: &AppState) {
    if !state.redis.is_cluster() {
        return;
    }
    let metrics = &state.metrics;
    metrics.describe_gauge(
        "folio_redis_cluster_ok",
        "1 when a Redis Cluster node reported cluster_state:ok at the last scrape, else 0.",
    );
    metrics.describe_gauge(
        "folio_redis_cluster_epoch",
        "Redis Cluster's current epoch at the last scrape: it goes up with every failover.",
    );
    let ok = metrics.gauge("folio_redis_cluster_ok", &[]);
    match tokio::time::timeout(health::PROBE_TIMEOUT, state.redis.cluster_health()).await {
        Ok(Ok(Some(cluster))) => {
            ok.set(if cluster.ok { 1.0 } else { 0.0 });
            metrics
                .gauge("folio_redis_cluster_epoch", &[])
                .set(cluster.current_epoch as f64);
        }
        // The epoch keeps its last value: unknown is not a failover.
        _ => ok.set(0.0),
    }
}
