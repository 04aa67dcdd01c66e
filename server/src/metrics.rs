//! Prometheus text exposition of the counters the app keeps.

use std::sync::atomic::Ordering;

use app::ssr::AppState;
use axum::extract::State;

pub async fn render(State(state): State<AppState>) -> String {
    let stats = &state.profiles.stats;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    counter(
        "folio_profile_cache_hits_total",
        "Profile reads answered by a cache (in-process or Redis).",
        "counter",
        stats.hits.load(Ordering::Relaxed),
    );
    counter(
        "folio_profile_l1_hits_total",
        "Of the cache hits, those answered in-process (no Redis).",
        "counter",
        stats.l1_hits.load(Ordering::Relaxed),
    );
    counter(
        "folio_profile_cache_misses_total",
        "Profile reads that missed the cache.",
        "counter",
        stats.misses.load(Ordering::Relaxed),
    );
    counter(
        "folio_profile_cache_errors_total",
        "Redis failures on the profile path.",
        "counter",
        stats.errors.load(Ordering::Relaxed),
    );
    counter(
        "folio_profile_db_queries_total",
        "Profile reads that queried Postgres.",
        "counter",
        stats.db_queries.load(Ordering::Relaxed),
    );
    counter(
        "folio_password_queue_depth",
        "Requests waiting for a hashing permit.",
        "gauge",
        state.passwords.queue_depth() as u64,
    );
    out
}
