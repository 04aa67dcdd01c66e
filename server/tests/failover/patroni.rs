//! The primary database dies, on the cluster Folio ships for production
//! (`deploy/postgres-ha`: three Patroni nodes in synchronous mode, etcd,
//! HAProxy), while signed-in people edit and anonymous people read.
//!
//! What Folio promises (README, "Failure behaviour"): reads never fail;
//! writes are refused at once with the typed "saving is paused" 503 while
//! no leader takes them; every edit it acknowledged survives; edits work
//! again within seconds of the new leader, with no restart; every committed
//! edit's event takes effect once. A planned switchover is the same, shorter.
//!
//! The numbers each run measures are printed (`cargo test … -- --nocapture`)
//! and are the failover rows of bench/results.md.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::ssr::Limit;
use serde_json::Value;

use crate::support::{spawn_app_with, Cookie, Edit, PatroniCluster, TestApp};

const WRITERS: usize = 4;
const READERS: usize = 4;
/// How long the promise gives Folio after the new leader takes writes.
const RECOVERY: Duration = Duration::from_secs(5);
/// The longest a refused write may take to be refused.
const FAST_REFUSAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Outcome {
    at: Instant,
    took: Duration,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Log {
    edits: Vec<(usize, String, Outcome)>,
    reads: Vec<Outcome>,
}

/// One person editing their own profile again and again, each edit from
/// the version they last saw, as the editor does; after an answer that
/// says nothing about their edit (paused, conflict), they reload.
async fn writer(
    app: Arc<TestApp>,
    who: usize,
    cookie: Cookie,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
) {
    let name = format!("writer{who}");
    let mut version = current_version(&app, &name).await;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let bio = format!("edit {n} of {name}");
        let started = Instant::now();
        let edit = Edit {
            display_name: "Writer",
            bio: &bio,
            avatar_url: "",
            location: "",
            website: "",
        };
        let (status, body) = app.update_profile(&cookie, &edit, version).await;
        let outcome = Outcome {
            at: started,
            took: started.elapsed(),
            status,
            body: body.clone(),
        };
        log.lock().unwrap().edits.push((who, bio, outcome));
        match status {
            200 => version = body["version"].as_i64().unwrap() as i32,
            // A refused edit may still have committed (its answer was lost
            // with the leader): reload the version, as a person would.
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(v) = try_version(&app, &name).await {
                    version = v;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn try_version(app: &TestApp, name: &str) -> Option<i32> {
    let (status, body) = app.get_profile_as(name, &Cookie::default()).await;
    (status == 200).then(|| body["version"].as_i64().unwrap() as i32)
}

async fn current_version(app: &TestApp, name: &str) -> i32 {
    try_version(app, name).await.expect("profile readable")
}

/// An anonymous reader of the writers' profiles (server function and page).
async fn reader(app: Arc<TestApp>, who: usize, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    let mut n = who;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("writer{}", n % WRITERS);
        let started = Instant::now();
        let (status, body) = if n.is_multiple_of(2) {
            app.get_profile(&name).await
        } else {
            let (status, _) = app.page(&format!("/u/{name}"), &Cookie::default()).await;
            (status, Value::Null)
        };
        log.lock().unwrap().reads.push(Outcome {
            at: started,
            took: started.elapsed(),
            status,
            body,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Log>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(app: &Arc<TestApp>, cookies: &[Cookie]) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tasks = Vec::new();
    for (who, cookie) in cookies.iter().enumerate() {
        tasks.push(tokio::spawn(writer(
            app.clone(),
            who,
            cookie.clone(),
            stop.clone(),
            log.clone(),
        )));
    }
    for who in 0..READERS {
        tasks.push(tokio::spawn(reader(
            app.clone(),
            who,
            stop.clone(),
            log.clone(),
        )));
    }
    Load { stop, log, tasks }
}

impl Load {
    async fn finish(self) -> Log {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        Arc::try_unwrap(self.log)
            .ok()
            .expect("no other owner")
            .into_inner()
            .unwrap()
    }
}

/// Waits until some node other than `old` is a primary; returns when.
async fn wait_for_new_leader(cluster: &PatroniCluster, old: u8) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if cluster.primaries().await.iter().any(|&n| n != old) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "no new leader after 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until an edit after `since` was acknowledged; returns when.
async fn wait_for_an_edit_after(log: &Mutex<Log>, since: Instant) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let first = log
            .lock()
            .unwrap()
            .edits
            .iter()
            .filter(|(_, _, o)| o.status == 200 && o.at > since)
            .map(|(_, _, o)| o.at + o.took)
            .min();
        if let Some(at) = first {
            return at;
        }
        assert!(Instant::now() < deadline, "no edit acknowledged for 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What every refused edit and failed read was, and that it was the typed,
/// fast refusal; returns (edits acknowledged, edits refused).
fn check_answers(log: &Log, what: &str) -> (usize, usize) {
    let failed_reads: Vec<_> = log.reads.iter().filter(|o| o.status != 200).collect();
    assert!(
        failed_reads.is_empty(),
        "{what}: {} of {} reads failed, first: {:?}",
        failed_reads.len(),
        log.reads.len(),
        failed_reads.first()
    );
    let mut acknowledged = 0;
    let mut refused = 0;
    for (_, _, outcome) in &log.edits {
        match outcome.status {
            200 => acknowledged += 1,
            // An edit whose predecessor committed although its answer was
            // lost: the person reloads (counted, not a failure of Folio).
            409 => {}
            503 => {
                refused += 1;
                assert!(
                    outcome.body.get("WritesPaused").is_some(),
                    "{what}: a refused edit was not the typed pause: {:?}",
                    outcome.body
                );
                assert!(
                    outcome.took <= FAST_REFUSAL,
                    "{what}: a refusal took {:?}",
                    outcome.took
                );
            }
            other => panic!("{what}: an edit answered {other}: {:?}", outcome.body),
        }
    }
    (acknowledged, refused)
}

/// Every acknowledged edit is in the database: each writer's profile holds
/// its last acknowledged edit, or a later one.
async fn check_nothing_acknowledged_was_lost(app: &TestApp, log: &Log) -> usize {
    let mut lost = 0;
    for who in 0..WRITERS {
        let Some((_, bio, outcome)) = log
            .edits
            .iter()
            .filter(|(w, _, o)| *w == who && o.status == 200)
            .max_by_key(|(_, _, o)| o.body["version"].as_i64())
        else {
            continue;
        };
        let acknowledged = outcome.body["version"].as_i64().unwrap();
        let (stored_version, stored_bio): (i32, String) = sqlx::query_as(
            "SELECT p.version, p.bio FROM profiles p JOIN users u ON u.id = p.user_id
              WHERE u.username = $1",
        )
        .bind(format!("writer{who}"))
        .fetch_one(app.state.db.primary())
        .await
        .expect("profile row");
        if (stored_version as i64) < acknowledged
            || (stored_version as i64 == acknowledged && &stored_bio != bio)
        {
            lost += 1;
        }
    }
    lost
}

/// Every committed profile edit's event took effect in the search index,
/// once (`processed_events` has one row per consumer and event).
async fn check_events_took_effect(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox o
              WHERE o.event_type IN ('profile.updated', 'user.registered')
                AND NOT EXISTS (SELECT 1 FROM processed_events p
                                 WHERE p.consumer = 'search' AND p.event_id = o.event_id)",
        )
        .fetch_one(app.state.db.primary())
        .await
        .expect("outbox readable");
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM profiles p JOIN search_documents d ON d.user_id = p.user_id
              WHERE d.version <> p.version",
        )
        .fetch_one(app.state.db.primary())
        .await
        .expect("search documents readable");
        if missing == 0 && behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "events not applied a minute after the failover: {missing} missing, {behind} documents behind"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_leader_pauses_writes_for_seconds_and_loses_nothing() {
    let cluster = PatroniCluster::start();
    let app = spawn_app_with(|s| {
        s.database_url = cluster.primary_url("folio");
        s.database_replica_urls = vec![cluster.replica_url("folio")];
        s.event_workers = true;
        s.service.registrations_per_ip = Limit::new(1000, 3600);
        s.service.profile_edits_per_user = Limit::new(100_000, 60);
    })
    .await;
    app.wait_for_replicas().await;
    let app = Arc::new(app);
    let mut cookies = Vec::new();
    for who in 0..WRITERS {
        cookies.push(app.register(&format!("writer{who}")).await);
    }

    // --- a dead host: the leader's Patroni and Postgres, SIGKILLed ----------
    let load = start_load(&app, &cookies);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let old = cluster.leader();
    let killed_at = Instant::now();
    cluster.kill(old);
    let promoted_at = wait_for_new_leader(&cluster, old).await;
    let first_edit_at = wait_for_an_edit_after(&load.log, promoted_at).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = load.finish().await;

    let (acknowledged, refused) = check_answers(&log, "failover");
    let lost = check_nothing_acknowledged_was_lost(&app, &log).await;
    let to_edit = first_edit_at.saturating_duration_since(promoted_at);
    println!(
        "failover: leader node{old} killed; promoted after {:.1} s; first acknowledged edit {:.2} s after that; \
         {acknowledged} edits acknowledged, {refused} refused (typed 503), {} reads, 0 failed; {lost} acknowledged edits lost",
        promoted_at.duration_since(killed_at).as_secs_f64(),
        to_edit.as_secs_f64(),
        log.reads.len(),
    );
    assert_eq!(lost, 0, "acknowledged edits lost");
    assert!(
        to_edit <= RECOVERY,
        "edits worked again {to_edit:?} after the promotion"
    );
    check_events_took_effect(&app).await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, 200, "{body}");

    // --- a planned switchover under the same load ----------------------------
    // The survivor must follow the new leader first: with the killed node
    // still down, it is the only candidate.
    cluster.wait_for_sync_standby().await;
    let load = start_load(&app, &cookies);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cluster.leader();
    let switched_at = Instant::now();
    cluster.switchover();
    let promoted_at = wait_for_new_leader(&cluster, before).await;
    wait_for_an_edit_after(&load.log, promoted_at).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = load.finish().await;
    let (acknowledged, refused) = check_answers(&log, "switchover");
    let lost = check_nothing_acknowledged_was_lost(&app, &log).await;
    // A switchover stops the old leader (a fast shutdown): the edits in
    // flight at that moment, and those sent before HAProxy sees the new
    // leader (its checks run every second), are refused with the typed
    // pause. No read fails and nothing acknowledged is lost.
    println!(
        "switchover: node{before} to another in {:.1} s; {acknowledged} edits acknowledged, {refused} refused (typed 503), \
         {} reads, 0 failed; {lost} acknowledged edits lost",
        promoted_at.duration_since(switched_at).as_secs_f64(),
        log.reads.len(),
    );
    assert_eq!(lost, 0, "acknowledged edits lost in the switchover");
    check_events_took_effect(&app).await;
    let (status, body) = app.readyz().await;
    assert_eq!(status, 200, "{body}");
}
