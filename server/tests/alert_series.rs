//! Every series the alerts and recording rules of deploy/monitoring/rules.yml
//! read is in a real `/metrics` scrape of a running Folio, in the
//! configuration where the rule applies: the cluster rules on a Redis
//! Cluster, the others on a server with event workers, mail and a read
//! replica. A rule on a series nothing exports can never fire, and its
//! promtool test (on made-up series) passes all the same.
//!
//! Series that appear only once something happened are registered at zero
//! when the app starts (the panics, each consumer group's dead letters and
//! latency), so that `increase()` sees the first one; the rate limiter's
//! refusals are labelled by limiter and are driven here instead.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use app::ssr::Limit;
use support::{spawn_app_mailing, spawn_app_with, Cookie, RedisCluster, TestApp, PLAIN};

const RULES: &str = include_str!("../../deploy/monitoring/rules.yml");

/// The `folio_…` series named in the rules' expressions (recording-rule
/// outputs, `level:name:operation`, excluded).
fn rule_series() -> BTreeSet<String> {
    let mut expressions = String::new();
    let mut block: Option<usize> = None;
    for line in RULES.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if let Some(expr_indent) = block {
            if text.is_empty() || indent > expr_indent {
                expressions.push_str(text);
                expressions.push('\n');
                continue;
            }
            block = None;
        }
        if let Some(rest) = text.strip_prefix("expr:") {
            let rest = rest.trim();
            if rest == "|" || rest == ">" {
                block = Some(indent);
            } else {
                expressions.push_str(rest);
                expressions.push('\n');
            }
        }
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for (start, _) in expressions.match_indices("folio_") {
        let before = expressions[..start].chars().next_back();
        let rest = &expressions[start..];
        let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
        let name = &rest[..end];
        if before.is_some_and(is_name) || name.contains(':') {
            continue;
        }
        names.insert(name.to_owned());
    }
    names
}

/// The rules that only apply on a Redis Cluster.
fn needs_cluster(name: &str) -> bool {
    name.starts_with("folio_redis_cluster_")
}

/// The names of the series in a scrape.
fn scraped(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Waits (at most 15 s: the events observer refreshes its gauges every few
/// seconds) until every name in `wanted` is in a scrape.
async fn wait_for_series(app: &TestApp, wanted: &BTreeSet<String>) {
    let began = Instant::now();
    loop {
        let text = app.metrics_text().await;
        let have = scraped(&text);
        let missing: Vec<&String> = wanted.difference(&have).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "rules read series that /metrics does not export: {missing:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_rules_are_read_for_their_series() {
    let names = rule_series();
    for expected in [
        "folio_http_requests_total",
        "folio_http_request_duration_seconds_bucket",
        "folio_dead_letters_total",
        "folio_redis_cluster_ok",
        "folio_redis_cluster_epoch",
    ] {
        assert!(names.contains(expected), "{expected} not in {names:?}");
    }
    assert!(
        names.iter().all(|name| !name.contains(':')),
        "recording rules counted: {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_a_rule_reads_is_exported() {
    let (app, _mail) = spawn_app_mailing(|settings| {
        // A read replica (the primary itself: the replica series exist
        // whatever its probe finds).
        settings.database_replica_urls = vec![settings.database_url.clone()];
        settings.service.login_failures_per_ip = Limit::new(1, 900);
    })
    .await;

    // A little of everything: an account, an edit, a profile read, the page
    // twice (stored, then served from the page cache), refused sign-ins.
    let cookie = app.register("watched").await;
    let (status, _) = app.update_profile(&cookie, &PLAIN, 1).await;
    assert_eq!(status, 200);
    assert_eq!(app.get_profile("watched").await.0, 200);
    for _ in 0..2 {
        assert_eq!(app.page("/u/watched", &Cookie::default()).await.0, 200);
    }
    for _ in 0..3 {
        let _ = app.login("watched", "not the password").await;
    }

    let wanted: BTreeSet<String> = rule_series()
        .into_iter()
        .filter(|name| !needs_cluster(name))
        .collect();
    wait_for_series(&app, &wanted).await;
    // The cluster's series are not made up on a standalone server.
    let have = scraped(&app.metrics_text().await);
    assert!(have.iter().all(|name| !needs_cluster(name)), "{have:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_rules_series_are_exported_on_a_cluster() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let app = spawn_app_with(move |settings| {
        settings.redis_url = url.clone();
        settings.events_redis_url = url;
    })
    .await;
    let wanted: BTreeSet<String> = rule_series()
        .into_iter()
        .filter(|name| needs_cluster(name))
        .collect();
    assert!(!wanted.is_empty());
    wait_for_series(&app, &wanted).await;
    let text = app.metrics_text().await;
    assert!(text.contains("\nfolio_redis_cluster_ok 1\n"), "{text}");
    // `redis-cli --cluster create` bumps the epoch once per master.
    let epoch: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("folio_redis_cluster_epoch "))
        .and_then(|value| value.trim().parse().ok())
        .expect("an epoch");
    assert!(epoch >= 1.0, "{text}");
}
