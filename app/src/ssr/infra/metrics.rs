//! Every Prometheus series Folio exports, through one mechanism: the
//! `metrics` crate's handles, recorded by a Prometheus recorder that belongs
//! to this application (not a process-wide one), so that the tests, which run
//! several applications in one process, each read their own numbers.
//!
//! Hot counters are registered once, here, and incremented through their
//! handles (an atomic add); series with a label chosen at run time (a rate
//! limiter's name, a route) are registered on first use by `counter`.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Latency buckets, seconds: from a stored page (~0.3 ms) to a timed-out
/// request (15 s). One set for every histogram, so every latency can be
/// aggregated and alerted on in the same way.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
];

#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub postgres_errors: Counter,
    /// Requests refused with `WritesPaused`: the primary was not there to
    /// take a write (a failover or switchover under way).
    pub writes_paused: Counter,
    pub redis_errors: Counter,
    pub sessions_created: Counter,
    pub sessions_ended: Counter,
    pub profile_cache_hits: Counter,
    pub profile_l1_hits: Counter,
    pub profile_cache_misses: Counter,
    pub profile_cache_errors: Counter,
    pub profile_db_queries: Counter,
    pub profile_stale_reads: Counter,
    /// Requests whose handler panicked (answered 500 by the server's
    /// panic layer).
    pub panics: Counter,
    pub password_queue_depth: Gauge,
    /// Set when `/metrics` is scraped: Prometheus cannot call `/readyz`
    /// (it reads series, not statuses), so readiness is a series too.
    pub postgres_up: Gauge,
    pub redis_up: Gauge,
    /// The primary's timeline at the last scrape: it moves at every
    /// promotion, so its changes count leader changes.
    pub postgres_timeline: Gauge,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

static METADATA: Metadata<'static> = Metadata::new("folio", Level::INFO, Some("folio"));

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect();
    Key::from_parts(name, labels)
}

fn dependency_up(recorder: &PrometheusRecorder, dependency: &'static str) -> Gauge {
    let name = "folio_dependency_up";
    recorder.describe_gauge(
        KeyName::from(name),
        None,
        "1 when the dependency answered a trivial request at the last scrape, else 0.".into(),
    );
    recorder.register_gauge(&key(name, &[("dependency", dependency.into())]), &METADATA)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("the buckets are a valid constant")
            .build_recorder();
        let handle = recorder.handle();
        let counter = |name: &'static str, help: &'static str| {
            recorder.describe_counter(KeyName::from(name), None, help.into());
            recorder.register_counter(&Key::from_name(name), &METADATA)
        };
        recorder.describe_counter(
            KeyName::from("folio_bad_requests_total"),
            None,
            "Requests refused as malformed (undecodable arguments, a body that is not a form, \
             a path or query that is not UTF-8), by route."
                .into(),
        );
        let inner = Inner {
            postgres_errors: counter(
                "folio_postgres_errors_total",
                "Postgres failures seen by requests and background tasks.",
            ),
            writes_paused: counter(
                "folio_writes_paused_total",
                "Requests answered \"saving is paused\" (503) because no primary took writes \
                 (a database failover or switchover).",
            ),
            redis_errors: counter(
                "folio_redis_errors_total",
                "Redis failures on paths that need Redis (sessions, limits).",
            ),
            sessions_created: counter("folio_sessions_created_total", "Sessions started."),
            sessions_ended: counter("folio_sessions_ended_total", "Sessions ended."),
            profile_cache_hits: counter(
                "folio_profile_cache_hits_total",
                "Profile reads answered by a cache (in-process or Redis).",
            ),
            profile_l1_hits: counter(
                "folio_profile_l1_hits_total",
                "Of the cache hits, those answered in-process (no Redis).",
            ),
            profile_cache_misses: counter(
                "folio_profile_cache_misses_total",
                "Profile reads that missed the cache.",
            ),
            profile_cache_errors: counter(
                "folio_profile_cache_errors_total",
                "Redis failures on the profile path (the read went to Postgres).",
            ),
            profile_db_queries: counter(
                "folio_profile_db_queries_total",
                "Profile reads that queried Postgres.",
            ),
            profile_stale_reads: counter(
                "folio_profile_stale_reads_total",
                "Profile reads from Postgres older than a version already known (a lagging replica, an edit during the read): not cached, read again from the primary.",
            ),
            panics: counter(
                "folio_panics_total",
                "Requests whose handler panicked (each answered 500; the process serves on).",
            ),
            password_queue_depth: {
                let name = "folio_password_queue_depth";
                recorder.describe_gauge(
                    KeyName::from(name),
                    None,
                    "Requests waiting for a password-hashing permit.".into(),
                );
                recorder.register_gauge(&Key::from_name(name), &METADATA)
            },
            postgres_up: dependency_up(&recorder, "postgres"),
            redis_up: dependency_up(&recorder, "redis"),
            postgres_timeline: {
                let name = "folio_postgres_timeline";
                recorder.describe_gauge(
                    KeyName::from(name),
                    None,
                    "The primary's timeline at the last scrape: Postgres starts a new one at \
                     each promotion (failover or switchover)."
                        .into(),
                );
                recorder.register_gauge(&Key::from_name(name), &METADATA)
            },
            recorder,
            handle,
        };
        Self(Arc::new(inner))
    }

    /// A counter with labels, registered on first use (a lookup afterwards).
    /// Label values must come from a small set: each one is a new series.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, String)]) -> Counter {
        self.recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, String)]) -> Gauge {
        self.recorder.register_gauge(&key(name, labels), &METADATA)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, String)]) -> Histogram {
        self.recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// The `# HELP` line of a series registered elsewhere.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_counter(KeyName::from(name), None, help.into());
    }

    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_gauge(KeyName::from(name), None, help.into());
    }

    pub fn describe_histogram(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_histogram(KeyName::from(name), None, help.into());
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. Without it, a
    /// server nobody scrapes grows by 8 bytes per request; the server calls
    /// it every few seconds.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_application_renders_its_own_series() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.postgres_errors.increment(3);
        a.counter(
            "folio_rate_limit_rejections_total",
            &[("limiter", "login:ip".into())],
        )
        .increment(1);
        let text = a.render();
        assert!(text.contains("folio_postgres_errors_total 3"), "{text}");
        assert!(
            text.contains(r#"folio_rate_limit_rejections_total{limiter="login:ip"} 1"#),
            "{text}"
        );
        assert!(b.render().contains("folio_postgres_errors_total 0"));
    }
}
