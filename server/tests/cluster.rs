//! Folio on a real Redis Cluster (three masters, three replicas, started by
//! the test): a master killed under a sign-in and profile-read load, its
//! replica promoted, and Folio recovering without a restart.
//!
//! The rest of what Redis does for Folio (sessions, rate limits, the
//! profile cache and its sharded invalidations, the event streams) is
//! tested on a cluster by running the API, events and search suites with
//! `REDIS_URL` naming one (`scripts/test.sh`, "API tests on a Redis
//! Cluster").

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::ssr::profiles::INVALIDATION_CHANNEL;
use app::ssr::Limit;

use support::{
    session_cookie_from, spawn_app_with, Cookie, RedisCluster, TestApp, STRONG_PASSWORD,
};

/// One request of the load: when it started, how long it took, whether it
/// failed, and what it was.
#[derive(Debug, Clone)]
struct Outcome {
    at: Duration,
    took: Duration,
    failed: bool,
    kind: &'static str,
}

fn on_cluster(url: String) -> impl FnOnce(&mut server::config::Settings) {
    move |settings| {
        settings.redis_url = url.clone();
        settings.events_redis_url = url;
        settings.service.registrations_per_ip = Limit::new(10_000, 3600);
        settings.service.login_failures_per_ip = Limit::new(10_000, 900);
        settings.service.login_failures_per_account = Limit::new(10_000, 900);
    }
}

/// Sign-ins, `current_user` with every session, and profile reads, by
/// `workers` loops until `stop`.
async fn load(
    app: Arc<TestApp>,
    users: Arc<Vec<(String, Cookie)>>,
    started: Instant,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    worker: usize,
) {
    let mut i = worker;
    while !stop.load(Ordering::Relaxed) {
        let (name, cookie) = &users[i % users.len()];
        let at = started.elapsed();
        let begun = Instant::now();
        let (kind, failed) = match i % 10 {
            // A sign-in: a rate-limit window and a new session, written.
            0 => {
                let response = app.login(name, STRONG_PASSWORD).await;
                ("login", response.status() != 200)
            }
            // A signed-in request: the session read (and refreshed).
            1..=4 => {
                let response = app.call("current_user", &[], cookie).await;
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                (
                    "session",
                    body.get("username").and_then(|u| u.as_str()) != Some(name),
                )
            }
            // A profile read: the cache (L1, then Redis, then Postgres).
            _ => {
                let (status, _) = app.get_profile(name).await;
                ("profile", status != 200)
            }
        };
        outcomes.lock().unwrap().push(Outcome {
            at,
            took: begun.elapsed(),
            failed,
            kind,
        });
        i += 7;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_dies_under_load_its_replica_takes_over_and_nobody_is_signed_out() {
    let mut cluster = RedisCluster::start();
    let app = Arc::new(spawn_app_with(on_cluster(cluster.url())).await);
    assert!(app.state.redis.is_cluster());

    // Sessions in every slot range (each session key hashes on its own).
    let mut users = Vec::new();
    for n in 0..40 {
        let name = format!("user{n}");
        let cookie = app.register(&name).await;
        users.push((name, cookie));
    }
    let users = Arc::new(users);
    // Replication is asynchronous: what a master acknowledged in the last
    // moments before it dies may not have reached its replica. Sessions
    // older than a second must survive.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app.state.profiles.l1_live() {
        assert!(
            Instant::now() < deadline,
            "never subscribed to invalidations"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            tokio::spawn(load(
                app.clone(),
                users.clone(),
                started,
                stop.clone(),
                outcomes.clone(),
                worker,
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    // The master that holds the invalidation channel: its subscription has
    // to move to the promoted replica too.
    let channel = app.state.key(INVALIDATION_CHANNEL);
    let victim = cluster.master_of(&channel);
    let killed_at = started.elapsed();
    cluster.kill(victim);
    let promotion = cluster.wait_for_failover(victim, Duration::from_secs(30));
    eprintln!("killed master {victim} at {killed_at:?}; replica promoted after {promotion:?}");
    // The load goes on after the cluster is whole again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let recovered_at = started.elapsed();

    let outcomes = outcomes.lock().unwrap().clone();
    // Finished before the kill: nothing may have failed yet.
    let before: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.at + o.took < killed_at)
        .collect();
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failed).collect();
    let window = match (failures.first(), failures.last()) {
        (Some(first), Some(last)) => (last.at + last.took).saturating_sub(first.at),
        _ => Duration::ZERO,
    };
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
    let mut by_kind = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for outcome in &outcomes {
        let entry = by_kind.entry(outcome.kind).or_default();
        entry.0 += 1;
        entry.1 += usize::from(outcome.failed);
    }
    eprintln!(
        "failover: replica promoted {promotion:?} after the kill; {} requests ({} before it), \
         {} failed (requests, failed per kind: {by_kind:?}), failures spanning {window:?}, \
         slowest request {slowest:?}; failures: {failures:?}",
        outcomes.len(),
        before.len(),
        failures.len(),
    );

    let early: Vec<&&Outcome> = before.iter().filter(|o| o.failed).collect();
    assert!(early.is_empty(), "failures before the kill: {early:?}");
    // Requests fail only around the failover: none in the last 3 s.
    let tail = recovered_at.saturating_sub(Duration::from_secs(3));
    let late: Vec<&&Outcome> = failures.iter().filter(|o| o.at > tail).collect();
    assert!(late.is_empty(), "failures after recovery: {late:?}");
    assert!(
        window <= promotion + Duration::from_secs(5),
        "failures spanned {window:?}, the failover {promotion:?}"
    );

    // Nobody signed out: every session written before the failure still
    // opens, on the same Folio process.
    for (name, cookie) in users.iter() {
        assert_eq!(app.whoami(cookie).await.as_deref(), Some(name.as_str()));
    }
    // Writes go on: a new account, its session, an edit seen at once.
    let cookie = app.register("after_failover").await;
    assert_eq!(app.whoami(&cookie).await.as_deref(), Some("after_failover"));
    // The invalidations are subscribed again (on the promoted replica).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.state.profiles.l1_live() {
        assert!(
            Instant::now() < deadline,
            "invalidations not resubscribed after the failover"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = app.readyz().await;
    assert_eq!(status, 200);
    let response = app.login("user1", STRONG_PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert!(session_cookie_from(&response).is_some());
}
