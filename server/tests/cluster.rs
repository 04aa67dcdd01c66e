//! Folio on a real Redis Cluster (three masters, three replicas, started by
//! the test): a master killed under a sign-in and profile-read load, its
//! replica promoted, and Folio recovering without a restart; and each master
//! killed in turn while Folio is idle (no request in flight to tell the
//! client that the node died).
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
    session_cookie_from, spawn_app_with, Cookie, Edit, LogCapture, RedisCluster, TestApp,
    STRONG_PASSWORD,
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

/// The Redis key of the session behind `cookie`.
fn session_key(app: &TestApp, cookie: &Cookie) -> String {
    let token = cookie.token().expect("a session cookie");
    app.state.key(&format!(
        "session:{}",
        app::ssr::accounts::sessions::session_id(token)
    ))
}

/// `current_user` with `cookie` answers `name` (not a 503, not signed out).
async fn signed_in_as(app: &TestApp, cookie: &Cookie, name: &str) -> Result<(), String> {
    let response = app.call("current_user", &[], cookie).await;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body.get("username").and_then(|u| u.as_str()) {
        Some(seen) if status == 200 && seen == name => Ok(()),
        _ => Err(format!("current_user of {name}: {status} {body}")),
    }
}

/// A cluster-wide gauge from `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_master_dies_while_folio_is_idle_and_nobody_is_locked_out() {
    // Warnings only: the client's "Failed to connect to node" among them.
    let logs = LogCapture::install_at(tracing::Level::WARN);
    let mut cluster = RedisCluster::start();
    // As deployed: the event workers on (each with connections of its own).
    let url = cluster.url();
    let app = spawn_app_with(move |settings| {
        on_cluster(url)(settings);
        settings.event_workers = true;
    })
    .await;
    let originals = cluster.masters();
    assert_eq!(originals.len(), 3);

    // People until every master holds somebody's session.
    let mut people: Vec<(String, Cookie, i64)> = Vec::new();
    while !originals.iter().all(|&master| {
        people
            .iter()
            .any(|(_, cookie, _)| cluster.master_of(&session_key(&app, cookie)) == master)
    }) {
        assert!(people.len() < 100, "sessions never spread over the masters");
        let name = format!("idle{}", people.len());
        let cookie = app.register(&name).await;
        people.push((name, cookie, 1));
    }
    // Replication is asynchronous: give the replicas the sessions.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut epoch = gauge(&app, "folio_redis_cluster_epoch")
        .await
        .expect("the cluster's epoch is exported");
    assert_eq!(gauge(&app, "folio_redis_cluster_ok").await, Some(1.0));

    let killed_ports = originals.clone();
    for (round, victim) in originals.into_iter().enumerate() {
        let holders: Vec<String> = people
            .iter()
            .filter(|(_, cookie, _)| cluster.master_of(&session_key(&app, cookie)) == victim)
            .map(|(name, _, _)| name.clone())
            .collect();
        // Idle: no request for a while, so no connection of Folio's is in
        // use when the master dies, and nothing in flight fails on it.
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster.kill(victim);
        let killed = Instant::now();

        // People come back at once, during the failover: errors are
        // allowed until the replica is promoted and a few seconds more,
        // then everybody is signed in as before and can edit.
        let mut promoted: Option<Duration> = None;
        let mut last_error = String::new();
        let mut recovered = vec![false; people.len()];
        while promoted.is_none() || recovered.iter().any(|done| !done) {
            if promoted.is_none() {
                let masters = cluster.masters();
                if masters.len() == 3 && !masters.contains(&victim) {
                    promoted = Some(killed.elapsed());
                }
            }
            let limit = promoted.map_or(Duration::from_secs(30), |at| at + Duration::from_secs(5));
            assert!(
                killed.elapsed() < limit,
                "round {round}: master {victim} (sessions of {holders:?}) killed, replica \
                 promoted after {promoted:?}; still failing {:?} after the kill: {last_error}",
                killed.elapsed()
            );
            for (i, (name, cookie, version)) in people.iter_mut().enumerate() {
                if recovered[i] {
                    continue;
                }
                if let Err(error) = signed_in_as(&app, cookie, name).await {
                    last_error = error;
                    continue;
                }
                let display_name = format!("{name} {round}");
                let edit = Edit {
                    display_name: &display_name,
                    bio: "",
                    avatar_url: "",
                    location: "",
                    website: "",
                };
                let (status, saved) = app.update_profile(cookie, &edit, *version as i32).await;
                if status != 200 {
                    last_error = format!("edit by {name}: {status} {saved}");
                    continue;
                }
                *version = saved["version"].as_i64().expect("a version");
                recovered[i] = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.wait_until_ok(Duration::from_secs(30));
        eprintln!(
            "round {round}: master {victim} (sessions of {holders:?}) killed; replica promoted \
             {promoted:?} after the kill; everybody signed in and editing {:?} after the kill",
            killed.elapsed()
        );
        // Nobody was signed out, and the sessions stay usable.
        for (name, cookie, _) in &people {
            signed_in_as(&app, cookie, name).await.unwrap();
        }
        // The failover shows in the exported epoch (FolioRedisClusterFailover).
        let now = gauge(&app, "folio_redis_cluster_epoch").await.unwrap();
        assert!(now > epoch, "epoch {now} after a failover, {epoch} before");
        epoch = now;
        assert_eq!(gauge(&app, "folio_redis_cluster_ok").await, Some(1.0));
    }
    let (status, _) = app.readyz().await;
    assert_eq!(status, 200);

    // No connection of Folio's (the shared one, each event worker's) goes
    // on trying the dead masters: within seconds the log is quiet of them.
    let dead: Vec<String> = killed_ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let attempts = |text: &str| {
        text.lines()
            .filter(|line| line.contains("Failed to connect to node"))
            .filter(|line| dead.iter().any(|address| line.contains(address.as_str())))
            .count()
    };
    let began = Instant::now();
    loop {
        let before = attempts(&logs.text());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = attempts(&logs.text()) - before;
        if during == 0 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "still {during} attempts to connect to a dead master in 2 s, {:?} after the last \
             kill; the last: {:?}",
            began.elapsed(),
            logs.text()
                .lines()
                .rev()
                .find(|line| line.contains("Failed to connect to node"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_a_script_never_run_before_loads_and_runs() {
    let mut cluster = RedisCluster::start();
    let app = spawn_app_with(on_cluster(cluster.url())).await;
    // A key on a master that survives: nothing routed to the dead one's
    // slots tells the client that it died.
    let key = app.state.key("after_failover");
    let survivor = cluster.master_of(&key);
    let victim = cluster
        .masters()
        .into_iter()
        .find(|&master| master != survivor)
        .expect("another master");
    let mut redis = app.state.redis.clone();
    let _: String = redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .query_async(&mut redis)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(victim);
    let promotion = cluster.wait_for_failover(victim, Duration::from_secs(30));

    // A script this cluster never ran (a new release's, say): the client
    // loads it on every node (SCRIPT LOAD goes to all of them) on first use.
    let script = redis::Script::new(&format!("return '{}'", uuid::Uuid::new_v4()));
    let began = Instant::now();
    let mut failures = Vec::new();
    loop {
        match script
            .key(&key)
            .invoke_async::<String>(&mut app.state.redis.clone())
            .await
        {
            Ok(_) => break,
            Err(error) => failures.push(error.to_string()),
        }
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "a new script still fails {:?} after the failover (promoted after {promotion:?}): \
             {} failures, the last: {:?}",
            began.elapsed(),
            failures.len(),
            failures.last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "a new script ran {:?} after the promotion, after {} failures: {failures:?}",
        began.elapsed(),
        failures.len()
    );
}
