//! Read replicas, and what makes their lag invisible to the person who
//! wrote: every test starts its own primary and streaming replica
//! (`PostgresPair`), usually with the replica applying commits 2 s late, so
//! that what a lagging replica could break is tried inside the lag window.
//! Also here: the writer's own session tells an instance about the edit
//! before its invalidation message does.

mod support;

// The primary itself failing over, on a Patroni cluster: in this binary
// rather than a new one (every test binary links the whole server).
#[path = "failover/patroni.rs"]
mod failover;

use std::time::{Duration, Instant};

use app::ssr::infra::db::Freshness;
use app::ssr::Limit;
use serde_json::Value;

use support::{
    eventually, spawn_app, spawn_app_with, Cookie, Edit, PostgresPair, PubSubHold, TestApp, PLAIN,
};

/// How far behind the primary the replica applies commits.
const LAG: Duration = Duration::from_secs(2);

/// An instance on the pair's primary, reading from its replica.
async fn spawn_on(
    pair: &PostgresPair,
    configure: impl FnOnce(&mut server::config::Settings),
) -> TestApp {
    let (primary, replicas) = pair.urls("folio");
    let app = spawn_app_with(|s| {
        s.database_url = primary;
        s.database_replica_urls = replicas;
        s.service.registrations_per_ip = Limit::new(1000, 3600);
        s.service.profile_edits_per_user = Limit::new(1000, 60);
        configure(s);
    })
    .await;
    pair.catch_up().await;
    app.wait_for_replicas().await;
    app
}

fn version(profile: &Value) -> i64 {
    profile["version"]
        .as_i64()
        .unwrap_or_else(|| panic!("no version in {profile}"))
}

// --- the writer, the caches, the lagging replica ----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_lag_the_writer_sees_the_edit_and_no_cache_goes_back() {
    let pair = PostgresPair::start(LAG);
    let a = spawn_on(&pair, |_| {}).await;
    // Short in-process TTLs: B and C refill from Redis (and Redis from the
    // replica) again and again during the lag window. C's invalidation
    // messages are held for the whole window, and only anonymous readers
    // visit it: it knows of the edit only what Redis tells it.
    let hold = PubSubHold::start(&a.settings.redis_url).await;
    let short_l1 =
        |s: &mut server::config::Settings| s.service.profile_l1_ttl = Duration::from_millis(100);
    let b = a.spawn_peer_with(short_l1).await;
    let c = a
        .spawn_peer_with(|s| {
            short_l1(s);
            s.redis_url = hold.url();
        })
        .await;
    let instances = [&a, &b, &c];
    for app in instances {
        app.wait_for_replicas().await;
    }
    let ada = a.register("ada").await;
    pair.catch_up().await;
    // Every cache holds version 1: Redis, the in-process caches, the
    // instances' stored pages.
    for app in instances {
        assert_eq!(version(&app.get_profile("ada").await.1), 1);
        for _ in 0..2 {
            assert_eq!(app.page("/u/ada", &Cookie::default()).await.0, 200);
        }
        assert_eq!(app.pages.stored_version("/u/ada"), Some(1));
    }

    hold.hold();
    let edit = Edit {
        display_name: "Ada Edited",
        ..PLAIN
    };
    let (status, saved) = a.update_profile(&ada, &edit, 1).await;
    assert_eq!(status, 200, "{saved}");
    let edited_at = Instant::now();
    let replica_reads_before = c.db_reads().await.0;

    // C has not heard of the edit, and the replica still has version 1.
    // Once C's in-process entry has expired, its fill reads the replica's
    // version 1; Redis refuses it, and the primary's version 2 is stored
    // and answered instead.
    tokio::time::sleep(Duration::from_millis(150)).await;
    delete_redis_key(&a, "profile:{ada}").await;
    assert_eq!(version(&c.get_profile("ada").await.1), 2);
    let entry = a.redis_get("profile:{ada}").await.unwrap_or_default();
    assert!(entry.starts_with("2:"), "Redis holds {entry}");
    assert!(edited_at.elapsed() < LAG, "too slow to be inside the lag");

    // The writer reloads through B for the whole lag window: version 2
    // every time, as data and as the page.
    let writer = async {
        let mut reloads = 0;
        while edited_at.elapsed() < LAG {
            let (status, profile) = b.get_profile_as("ada", &ada).await;
            assert_eq!((status, version(&profile)), (200, 2), "{profile}");
            let (status, page) = b.page("/u/ada", &ada).await;
            assert_eq!(status, 200);
            assert!(page.contains("Ada Edited"), "the writer saw the old page");
            reloads += 1;
        }
        reloads
    };
    // Meanwhile 200 anonymous reads, data and pages, on the three
    // instances, in waves; before each wave the Redis entry is deleted (as
    // its expiry would), so fills run while the replica still has version 1.
    let anonymous = async {
        let mut answers = Vec::new();
        let mut first_wave_took = Duration::ZERO;
        for wave in 0..4 {
            delete_redis_key(&a, "profile:{ada}").await;
            let reads = (0..50).map(|i| {
                let app = instances[(wave + i) % 3];
                async move {
                    if i % 2 == 0 {
                        let (status, profile) = app.get_profile("ada").await;
                        (status, version(&profile))
                    } else {
                        let (status, page) = app.page("/u/ada", &Cookie::default()).await;
                        let shown = if page.contains("Ada Edited") { 2 } else { 1 };
                        (status, shown)
                    }
                }
            });
            answers.extend(futures::future::join_all(reads).await);
            if wave == 0 {
                first_wave_took = edited_at.elapsed();
            }
            tokio::time::sleep(LAG / 20).await;
        }
        (answers, first_wave_took, edited_at.elapsed())
    };
    let (reloads, (answers, first_wave_took, all_took)) = tokio::join!(writer, anonymous);
    eprintln!(
        "anonymous reads: first wave done {first_wave_took:?}, all {all_took:?} after the edit"
    );
    assert!(reloads > 0);
    assert_eq!(answers.len(), 200);
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert!(
        first_wave_took < LAG,
        "the first wave took {first_wave_took:?}: no read happened in the lag window"
    );

    // Once the lag has passed (and with C still deaf to invalidations),
    // nothing anywhere holds version 1.
    pair.catch_up().await;
    let entry = a.redis_get("profile:{ada}").await;
    if let Some(entry) = &entry {
        let stored: i64 = entry.split(':').next().unwrap().parse().unwrap();
        assert!(stored >= 2, "Redis holds {entry}");
    }
    let floor = a.redis_get("profile_floor:{ada}").await;
    assert_eq!(floor.as_deref(), Some("2"));
    for app in instances {
        if let Some(cached) = app.state.profiles.cached_version("ada").await {
            assert!(cached >= 2, "an in-process cache holds version {cached}");
        }
        if let Some(stored) = app.pages.stored_version("/u/ada") {
            assert!(stored >= 2, "a stored page shows version {stored}");
        }
        assert_eq!(version(&app.get_profile("ada").await.1), 2);
        let (_, page) = app.page("/u/ada", &Cookie::default()).await;
        assert!(page.contains("Ada Edited"));
    }

    // The hazard was real: C read the replica, which answered version 1,
    // and those answers were refused and read again from the primary.
    assert!(
        c.db_reads().await.0 > replica_reads_before,
        "C never read the replica"
    );
    let stale = c.metric("folio_profile_stale_reads_total").await;
    assert!(stale > 0, "no replica answer was ever behind the edit");

    hold.release();
    eprintln!("{reloads} reloads by the writer; {stale} stale replica answers refused on C");
}

async fn delete_redis_key(app: &TestApp, suffix: &str) {
    let mut connection = app.state.redis.clone();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}{suffix}", app.settings.service.redis_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_writers_session_tells_an_instance_before_the_invalidation_does() {
    let a = spawn_app().await;
    // B's invalidation messages pass through a relay that can hold them;
    // its in-process entries would live for ten minutes.
    let hold = PubSubHold::start(&a.settings.redis_url).await;
    let b = a
        .spawn_peer_with(|s| {
            s.redis_url = hold.url();
            s.service.profile_l1_ttl = Duration::from_secs(600);
        })
        .await;
    let ada = a.register("ada").await;
    assert_eq!(version(&b.get_profile("ada").await.1), 1);
    assert_eq!(b.state.profiles.cached_version("ada").await, Some(1));

    hold.hold();
    let (status, saved) = a.update_profile(&ada, &PLAIN, 1).await;
    assert_eq!(status, 200, "{saved}");

    // B has not heard of the edit: an anonymous reader still gets version 1
    // from its in-process cache (a lag anonymous readers may see)…
    assert_eq!(version(&b.get_profile("ada").await.1), 1);
    // …but the writer does not: their session carries the version they wrote.
    let (status, mine) = b.get_profile_as("ada", &ada).await;
    assert_eq!((status, version(&mine)), (200, 2), "{mine}");
    // And B has learnt it from them, for everyone.
    assert_eq!(version(&b.get_profile("ada").await.1), 2);
    hold.release();
}

#[tokio::test]
async fn a_registration_is_found_at_once_on_another_instance() {
    let pair = PostgresPair::start(LAG);
    let a = spawn_on(&pair, |_| {}).await;
    // B has not heard of the registration when it is asked (its
    // invalidation messages are held): Redis is all it can go by.
    let hold = PubSubHold::start(&a.settings.redis_url).await;
    let b = a.spawn_peer_with(|s| s.redis_url = hold.url()).await;
    b.wait_for_replicas().await;
    // "No such user", remembered by B and by Redis.
    assert_eq!(b.get_profile("newbie").await.0, 404);
    assert_eq!(b.page("/u/newbie", &Cookie::default()).await.0, 404);
    assert!(b.redis_get("profile:{newbie}").await.is_some());

    hold.hold();
    let cookie = a.register("newbie").await;
    let registered_at = Instant::now();

    // The replica does not have the account for another 2 s.
    assert_eq!(b.get_profile("newbie").await.0, 200);
    assert_eq!(b.page("/u/newbie", &Cookie::default()).await.0, 200);
    assert_eq!(b.page("/u/newbie", &cookie).await.0, 200);
    assert_eq!(b.get_profile_as("newbie", &cookie).await.0, 200);
    assert!(
        registered_at.elapsed() < LAG,
        "too slow to be inside the lag"
    );
    // B's replica answered "no such user", Redis refused it, the primary
    // answered: once; the rest were cache hits.
    assert_eq!(b.metric("folio_profile_stale_reads_total").await, 1);
    hold.release();
}

// --- routing ------------------------------------------------------------------------

#[tokio::test]
async fn a_writers_reads_go_to_the_primary_until_the_replica_has_their_write() {
    let pair = PostgresPair::start(LAG);
    // Cache off: every read is a database read, so its route shows.
    let app = spawn_on(&pair, |s| s.service.profile_cache_enabled = false).await;
    let ada = app.register("ada").await;
    app.register("bob").await;
    pair.catch_up().await;

    // Nobody wrote lately: both read from the replica.
    let (replica, primary) = app.db_reads().await;
    assert_eq!(app.get_profile("bob").await.0, 200);
    assert_eq!(app.get_profile_as("bob", &ada).await.0, 200);
    assert_eq!(app.db_reads().await, (replica + 2, primary));

    // Ada saves: until the replica has replayed her save, her reads (of
    // anyone's profile) go to the primary; anonymous reads stay on the replica.
    let (status, _) = app.update_profile(&ada, &PLAIN, 1).await;
    assert_eq!(status, 200);
    let saved_at = Instant::now();
    let lagging = app.replica_fallbacks("lagging").await;
    let (replica, primary) = app.db_reads().await;
    assert_eq!(app.get_profile_as("bob", &ada).await.0, 200);
    let (status, mine) = app.get_profile_as("ada", &ada).await;
    assert_eq!((status, version(&mine)), (200, 2));
    assert_eq!(app.get_profile("bob").await.0, 200);
    assert!(saved_at.elapsed() < LAG, "too slow to be inside the lag");
    assert_eq!(app.db_reads().await, (replica + 1, primary + 2));
    assert_eq!(app.replica_fallbacks("lagging").await, lagging + 2);

    // A probe during the lag reports it: about the 2 s of the apply delay
    // (a probe's interval more at most), not 0 and not the unknown +Inf.
    let mut reported = 0.0;
    while saved_at.elapsed() < LAG && reported == 0.0 {
        reported = app.replica_lag().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reported > 0.0 && reported < (LAG * 2).as_secs_f64(),
        "lag reported during the window: {reported}"
    );

    // Once the replica has replayed the save, her reads return to it.
    pair.catch_up().await;
    let (replica, primary) = app.db_reads().await;
    assert_eq!(app.get_profile_as("bob", &ada).await.0, 200);
    assert_eq!(app.db_reads().await, (replica + 1, primary));
    eventually("the lag reported back to 0", || async {
        app.replica_lag().await == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_stopped_replica_sends_reads_to_the_primary_until_it_is_back() {
    let pair = PostgresPair::start(Duration::ZERO);
    let app = spawn_on(&pair, |s| s.service.profile_cache_enabled = false).await;
    app.register("frank").await;
    pair.catch_up().await;
    let up = format!(
        r#"folio_replica_up{{replica="127.0.0.1:{}/folio"}}"#,
        pair.replica.port
    );
    let (replica, _) = app.db_reads().await;
    assert_eq!(app.get_profile("frank").await.0, 200);
    assert_eq!(app.db_reads().await.0, replica + 1);
    let (status, ready) = app.readyz().await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ok")),
        "{ready}"
    );

    pair.replica.stop();

    // Every read answers, from the primary; the instance is degraded, ready.
    let (replica, primary) = app.db_reads().await;
    for _ in 0..5 {
        let (status, profile) = app.get_profile("frank").await;
        assert_eq!(status, 200, "{profile}");
    }
    let (replica_after, primary_after) = app.db_reads().await;
    assert_eq!(replica_after, replica);
    assert_eq!(primary_after, primary + 5);
    assert!(app.replica_fallbacks("error").await + app.replica_fallbacks("timeout").await >= 1);
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded");
    eventually("the replica reported down", || async {
        app.metric(&up).await == 0
    })
    .await;

    // Back: reads return to it, without a restart of Folio.
    pair.replica.pg_ctl_start();
    let took = eventually("reads served by the replica again", || async {
        let (before, _) = app.db_reads().await;
        assert_eq!(app.get_profile("frank").await.0, 200);
        app.db_reads().await.0 > before
    })
    .await;
    eprintln!("the replica served reads again {took:?} after it restarted");
    assert_eq!(app.metric(&up).await, 1);
    let (status, ready) = app.readyz().await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (200, Some("ok")),
        "{ready}"
    );
}

#[tokio::test]
async fn a_recovery_conflict_on_the_replica_is_retried_on_the_primary() {
    // The replica cancels a query in its way after 100 ms, not 30 s.
    let pair = PostgresPair::start_with(
        Duration::ZERO,
        &[("max_standby_streaming_delay", "100ms".to_owned())],
    );
    let app = spawn_on(&pair, |s| {
        s.service.replica_timeout = Duration::from_secs(10)
    })
    .await;
    let primary_url = pair.primary.url("folio");
    let mut primary = <sqlx::PgConnection as sqlx::Connection>::connect(&primary_url)
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE conflict_probe (x int); INSERT INTO conflict_probe VALUES (1)")
        .execute(&mut primary)
        .await
        .unwrap();
    pair.catch_up().await;

    // A slow read holding the table on the replica…
    let state = app.state.clone();
    let read = tokio::spawn(async move {
        state
            .db
            .read(Freshness::Any, |db| async move {
                Ok(sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM conflict_probe CROSS JOIN pg_sleep(1.5)",
                )
                .fetch_one(&db)
                .await?)
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …while the primary takes the table exclusively: replaying that lock
    // on the replica cancels the read (SQLSTATE 40001).
    sqlx::raw_sql("BEGIN; LOCK TABLE conflict_probe IN ACCESS EXCLUSIVE MODE; COMMIT")
        .execute(&mut primary)
        .await
        .unwrap();

    let answer = read.await.unwrap();
    assert!(matches!(answer, Ok(1)), "{answer:?}");
    assert_eq!(app.replica_fallbacks("conflict").await, 1);
    assert_eq!(app.db_reads().await.1, 1, "the primary answered the retry");
}
