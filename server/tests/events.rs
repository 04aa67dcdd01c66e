//! The event pipeline with real parts: Postgres, Redis, and `server --worker`
//! processes killed with SIGKILL at the moments the guarantees are about.
//! What must hold: every committed event reaches every consumer, its effect
//! happens once, and one user's events take effect in commit order.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::ssr::events::consumers::Mail;
use app::ssr::events::types::{ProfileUpdated, UserRegistered};
use app::ssr::events::{apply_once, outbox, Applied, Consumer, Event, EventPayload, Workers};
use app::ssr::mail::DevMailbox;
use app::ssr::{Limit, RedisConnector};
use serde::{Deserialize, Serialize};
use sqlx::Connection;

use support::{
    metric_in, spawn_app_with, status_and_json, wait_for, Cookie, RedisProcess, PHONE, PLAIN,
    STRONG_PASSWORD,
};

/// Generous: the machine is shared, and a debug build is slow.
const DELIVERY: Duration = Duration::from_secs(60);

fn with_workers(settings: &mut server::config::Settings) {
    settings.event_workers = true;
    settings.service.events.lease = Duration::from_secs(2);
    settings.service.registrations_per_ip = Limit::new(10_000, 60);
    settings.service.login_failures_per_ip = Limit::new(10_000, 60);
}

fn without_workers(settings: &mut server::config::Settings) {
    with_workers(settings);
    settings.event_workers = false;
}

// --- the outbox --------------------------------------------------------------------

#[tokio::test]
async fn each_change_records_its_event_in_its_own_transaction() {
    let app = spawn_app_with(without_workers).await;
    let cookie = app.register("ada").await;
    let id = app.user_id("ada").await;

    // Sign-up: the account and its event.
    assert_eq!(
        app.events_of_type("user.registered").await,
        vec![serde_json::json!({"username": "ada"})]
    );
    // The browser that signed up is known: signing in there is no news.
    app.login_from("ada", "").await;
    assert!(app.events_of_type("session.created").await.is_empty());
    // Another browser is.
    app.login_from("ada", PHONE).await;
    let created = app.events_of_type("session.created").await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["origin"]["device"], "Chrome on Android");
    assert_eq!(created[0]["origin"]["ip"], "127.0.0.1");
    app.login_from("ada", PHONE).await;
    assert_eq!(app.events_of_type("session.created").await.len(), 1);

    // An edit commits its event; a refused one (stale version) has none.
    let (status, _) = app.update_profile(&cookie, &PLAIN, 1).await;
    assert_eq!(status, 200);
    let (status, _) = app.update_profile(&cookie, &PLAIN, 1).await;
    assert_eq!(status, 409);
    let updated = app.events_of_type("profile.updated").await;
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["version"], 2);
    assert_eq!(updated[0]["display_name"], "Someone");

    // Password change, then revocations.
    let response = app
        .call(
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", "a-much-newer-passphrase-77"),
            ],
            &cookie,
        )
        .await;
    assert_eq!(response.status(), 200);
    let cookie = Cookie(support::session_cookie_from(&response));
    assert_eq!(app.events_of_type("password.changed").await.len(), 1);
    let response = app.call("logout_everywhere", &[], &cookie).await;
    assert_eq!(response.status(), 200);
    let revoked = app.events_of_type("sessions.revoked").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["everywhere"], true);

    // One user's events are numbered 1, 2, 3… in commit order.
    let seqs: Vec<i64> =
        sqlx::query_scalar("SELECT aggregate_seq FROM outbox WHERE aggregate_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(app.state.db.primary())
            .await
            .unwrap();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(seqs.len(), 5);
    // Nothing was published by a request: no relay runs here.
    assert_eq!(app.stream_entries().await, 0);
}

#[tokio::test]
async fn a_change_that_rolls_back_leaves_no_event() {
    let app = spawn_app_with(without_workers).await;
    app.register("ada").await;
    let id = app.user_id("ada").await;
    let mut tx = app.state.db.begin().await.unwrap();
    outbox::record(
        &mut *tx,
        id,
        &UserRegistered {
            username: "ghost".into(),
        },
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(app.events_of_type("user.registered").await.len(), 1);
}

// --- the whole path, in one process ---------------------------------------------------

#[tokio::test]
async fn events_reach_every_consumer_and_the_account_page() {
    let app = spawn_app_with(with_workers).await;
    let cookie = app.register("ada").await;
    app.login_from("ada", PHONE).await;
    let (status, _) = app.update_profile(&cookie, &PLAIN, 1).await;
    assert_eq!(status, 200);

    // user.registered + profile.updated for search; session.created for activity.
    app.wait_applied("search", 2, DELIVERY).await;
    app.wait_applied("activity", 1, DELIVERY).await;
    let version: i32 = sqlx::query_scalar("SELECT version FROM search_documents")
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(version, 2);

    let (status, activity) = status_and_json(app.call("list_activity", &[], &cookie).await).await;
    assert_eq!(status, 200, "{activity}");
    assert_eq!(activity[0]["kind"], "NewSignIn");
    assert_eq!(activity[0]["device"], "Chrome on Android");
    assert_eq!(activity[0]["ip"], "127.0.0.1");
    let (status, _) =
        status_and_json(app.call("list_activity", &[], &Cookie::default()).await).await;
    assert_eq!(status, 401, "another person's history is nobody's");

    // The page shows it without JavaScript: server-rendered HTML.
    let page = app
        .client
        .get(app.url("/account"))
        .header(
            reqwest::header::COOKIE,
            format!("{}={}", support::SESSION_COOKIE, cookie.token().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("New sign-in from Chrome on Android"),
        "{page}"
    );

    // The gauges come back to rest; the histogram saw every effect.
    wait_for("outbox drained in the gauges", DELIVERY, || async {
        let text = app.metrics_text().await;
        text.contains("folio_outbox_pending 0")
            && metric_in(&text, "folio_events_published_total") >= 3.0
            && metric_in(&text, r#"folio_consumer_pending{group="search"}"#) == 0.0
            && metric_in(&text, r#"folio_consumer_lag{group="search"}"#) == 0.0
    })
    .await;
    let text = app.metrics_text().await;
    assert!(
        metric_in(
            &text,
            r#"folio_event_latency_seconds_count{group="search"}"#
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(app.stream_entries().await, 3);
}

// --- crashes ------------------------------------------------------------------------

/// The relay's UPDATE (marking sent) waits on row locks this test holds, so
/// the worker is killed exactly between XADD and marking sent.
#[tokio::test]
async fn a_relay_killed_between_publishing_and_marking_sent_publishes_again_and_effects_happen_once(
) {
    let app = spawn_app_with(without_workers).await;
    let users = 5;
    for i in 0..users {
        app.register(&format!("user{i}")).await;
        app.login_from(&format!("user{i}"), PHONE).await;
    }
    let events = 2 * users as usize;

    let mut lock = sqlx::PgConnection::connect(&app.settings.database_url)
        .await
        .unwrap();
    let mut held = lock.begin().await.unwrap();
    let locked: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM outbox WHERE sent_at IS NULL FOR UPDATE")
            .fetch_all(&mut *held)
            .await
            .unwrap();
    assert_eq!(locked.len(), events);

    let mut first = app.spawn_worker("first");
    wait_for("the batch in the streams", DELIVERY, || async {
        app.stream_entries().await == events
    })
    .await;
    assert_eq!(
        app.relay_leader().await.as_deref(),
        Some("folio relay first")
    );
    first.kill();
    // Postgres cancels the dead relay's waiting UPDATE (it checks the client
    // every second), so the rows stay unsent.
    wait_for("the dead relay's connection gone", DELIVERY, || async {
        app.relay_leader().await.is_none()
    })
    .await;
    held.rollback().await.unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await,
        events as i64
    );

    let second = app.spawn_worker("second");
    wait_for("every row sent", DELIVERY, || async {
        app.count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .await
            == 0
    })
    .await;
    app.wait_applied("search", users, DELIVERY).await;
    app.wait_applied("activity", users, DELIVERY).await;
    wait_for("nothing pending", DELIVERY, || async {
        app.pending_in_group("search").await == 0 && app.pending_in_group("activity").await == 0
    })
    .await;
    // Each event was published twice, and applied once.
    assert_eq!(app.stream_entries().await, 2 * events);
    assert_eq!(
        second.metric("folio_events_published_total").await,
        events as f64
    );
    assert_eq!(
        app.count("SELECT count(*) FROM search_documents").await,
        users
    );
    assert_eq!(
        app.count("SELECT count(*) FROM account_activity").await,
        users
    );
    assert_eq!(app.applied_by("search").await, users);
    assert_eq!(app.applied_by("activity").await, users);
}

#[tokio::test]
async fn two_relays_one_publishes_and_the_other_takes_over_when_it_dies() {
    let app = spawn_app_with(without_workers).await;
    let mut workers = [app.spawn_worker("one"), app.spawn_worker("two")];
    for w in &workers {
        w.ready().await;
    }
    for i in 0..10 {
        app.register(&format!("before{i}")).await;
    }
    app.wait_applied("search", 10, DELIVERY).await;
    let leader = app.relay_leader().await.expect("a relay leads");
    let (lead, other) = if leader == "folio relay one" {
        (0, 1)
    } else {
        (1, 0)
    };
    assert_eq!(
        workers[lead].metric("folio_events_published_total").await,
        10.0
    );
    assert_eq!(
        workers[other].metric("folio_events_published_total").await,
        0.0
    );
    assert_eq!(workers[lead].metric("folio_relay_leader").await, 1.0);
    assert_eq!(workers[other].metric("folio_relay_leader").await, 0.0);

    // The leader dies; events keep committing meanwhile.
    workers[lead].kill();
    let killed = Instant::now();
    for i in 0..10 {
        app.register(&format!("after{i}")).await;
    }
    app.wait_applied("search", 20, DELIVERY).await;
    let delivered = killed.elapsed();
    let new_leader = app.relay_leader().await.expect("a relay leads");
    assert_eq!(new_leader, format!("folio relay {}", workers[other].name));
    assert_eq!(
        workers[other].metric("folio_events_published_total").await,
        10.0
    );
    eprintln!("events delivered {delivered:?} after the leading relay was killed");
    // The bound: the lock is free when the process dies; the other relay
    // tries every second and then polls once (plus this machine's noise).
    assert!(delivered < Duration::from_secs(15), "{delivered:?}");
}

/// The activity table is locked by this test, so the first worker's
/// consumer holds entries it cannot apply when it is killed.
#[tokio::test]
async fn a_consumer_killed_before_acknowledging_leaves_its_entries_to_another_which_applies_them_once(
) {
    let app = spawn_app_with(without_workers).await;
    let users = 6;
    for i in 0..users {
        app.register(&format!("user{i}")).await;
        app.login_from(&format!("user{i}"), PHONE).await;
    }
    let mut lock = sqlx::PgConnection::connect(&app.settings.database_url)
        .await
        .unwrap();
    let mut held = lock.begin().await.unwrap();
    sqlx::query("LOCK TABLE account_activity IN SHARE MODE")
        .execute(&mut *held)
        .await
        .unwrap();

    let mut first = app.spawn_worker("first");
    wait_for(
        "activity entries delivered, unacknowledged",
        DELIVERY,
        || async { app.pending_in_group("activity").await > 0 },
    )
    .await;
    first.kill();
    held.rollback().await.unwrap();
    assert_eq!(app.applied_by("activity").await, 0);

    let second = app.spawn_worker("second");
    app.wait_applied("activity", users, DELIVERY).await;
    wait_for("nothing pending", DELIVERY, || async {
        app.pending_in_group("activity").await == 0
    })
    .await;
    assert!(
        second
            .metric(r#"folio_events_claimed_total{group="activity"}"#)
            .await
            >= 1.0,
        "the second worker claimed the dead one's entries"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM account_activity").await,
        users
    );
    assert_eq!(
        app.count("SELECT count(DISTINCT event_id) FROM account_activity")
            .await,
        users
    );
}

// --- Redis away ---------------------------------------------------------------------

/// The events have a Redis of their own here (`FOLIO_EVENTS_REDIS_URL`),
/// stopped for the length of the test's edits: sessions and rate limits
/// live in the main Redis, so the edits are plain HTTP requests.
#[tokio::test]
async fn redis_down_while_a_thousand_edits_commit_then_every_event_arrives_in_order() {
    let mut events_redis = RedisProcess::start();
    let url = events_redis.url();
    let app = spawn_app_with(|s| {
        with_workers(s);
        s.events_redis_url = url;
        s.service.profile_edits_per_user = Limit::new(10_000, 60);
        s.db_max_connections = 10;
    })
    .await;
    let users = 20;
    let edits_per_user = 50;
    let mut cookies = Vec::new();
    for i in 0..users {
        cookies.push(app.register(&format!("user{i}")).await);
    }
    app.wait_applied("search", users, DELIVERY).await;

    events_redis.stop();
    let down = Instant::now();
    let edits = cookies.iter().map(|cookie| {
        let app = &app;
        async move {
            for version in 1..=edits_per_user {
                let bio = format!("edit {version}");
                let edit = support::Edit { bio: &bio, ..PLAIN };
                let (status, body) = app.update_profile(cookie, &edit, version).await;
                assert_eq!(status, 200, "{body}");
            }
        }
    });
    futures::future::join_all(edits).await;
    let edited_in = down.elapsed();
    let unsent = app
        .count("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .await;
    assert_eq!(unsent, users * i64::from(edits_per_user));
    // Waiting events are not a failure: the instance stays ready.
    let (status, ready) = app.readyz().await;
    assert_eq!(status, 200, "{ready}");
    wait_for("the backlog in /metrics", DELIVERY, || async {
        let text = app.metrics_text().await;
        metric_in(&text, "folio_outbox_pending") >= 1000.0
            && metric_in(&text, "folio_outbox_oldest_age_seconds") > 0.0
    })
    .await;
    if let Some(rest) = Duration::from_secs(10).checked_sub(down.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    eprintln!("1000 edits committed in {edited_in:?} with the events Redis down");

    events_redis.restart();
    let took = app
        .wait_applied("search", users * (1 + i64::from(edits_per_user)), DELIVERY)
        .await;
    eprintln!("every event applied {took:?} after Redis came back");
    // Per user, effects were applied in commit order: sequence numbers 1..n.
    let rows: Vec<(i64, Vec<i64>)> = sqlx::query_as(
        "SELECT o.aggregate_id, array_agg(o.aggregate_seq ORDER BY p.applied_order)
         FROM processed_events p JOIN outbox o USING (event_id)
         WHERE p.consumer = 'search' GROUP BY o.aggregate_id",
    )
    .fetch_all(app.state.db.primary())
    .await
    .unwrap();
    assert_eq!(rows.len() as i64, users);
    for (user, seqs) in rows {
        let expected: Vec<i64> = (1..=1 + i64::from(edits_per_user)).collect();
        assert_eq!(seqs, expected, "user {user}");
    }
    let versions: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT version FROM search_documents")
        .fetch_all(app.state.db.primary())
        .await
        .unwrap();
    assert_eq!(versions, vec![1 + edits_per_user]);
}

// --- order without gaps ---------------------------------------------------------------

#[tokio::test]
async fn a_transaction_committing_after_a_later_numbered_one_is_still_delivered() {
    let app = spawn_app_with(with_workers).await;
    app.register("early").await;
    app.register("late").await;
    app.wait_applied("search", 2, DELIVERY).await;
    let (early, late) = (app.user_id("early").await, app.user_id("late").await);
    let edit = |username: &str| ProfileUpdated {
        username: username.to_owned(),
        version: 2,
        display_name: username.to_owned(),
        bio: String::new(),
        location: None,
        website: None,
        avatar_url: None,
    };

    // The lower id is taken first and committed last.
    let mut slow = app.state.db.begin().await.unwrap();
    outbox::record(&mut *slow, early, &edit("early"))
        .await
        .unwrap();
    let mut quick = app.state.db.begin().await.unwrap();
    outbox::record(&mut *quick, late, &edit("late"))
        .await
        .unwrap();
    quick.commit().await.unwrap();
    app.wait_applied("search", 3, DELIVERY).await;

    slow.commit().await.unwrap();
    app.wait_applied("search", 4, DELIVERY).await;
    let ids: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT o.aggregate_id, o.id FROM processed_events p JOIN outbox o USING (event_id)
         WHERE o.event_type = 'profile.updated' ORDER BY p.applied_order",
    )
    .fetch_all(app.state.db.primary())
    .await
    .unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0].0, late);
    assert_eq!(ids[1].0, early);
    assert!(ids[1].1 < ids[0].1, "the early event has the lower id");
    assert_eq!(
        app.count("SELECT count(*) FROM search_documents WHERE version = 2")
            .await,
        2
    );
}

// --- poison -------------------------------------------------------------------------

/// What a buggy producer might write: a `password.changed` without an origin.
#[derive(Serialize, Deserialize)]
struct BrokenPasswordChanged {
    nonsense: bool,
}

impl EventPayload for BrokenPasswordChanged {
    const TYPE: &'static str = "password.changed";
    const VERSION: i16 = 1;
}

#[tokio::test]
async fn a_poison_event_goes_to_the_dead_letters_after_k_tries_and_its_partition_moves_on() {
    let app = spawn_app_with(|s| {
        with_workers(s);
        s.service.events.max_deliveries = 3;
    })
    .await;
    app.register("ada").await;
    let id = app.user_id("ada").await;
    outbox::record(
        app.state.db.primary(),
        id,
        &BrokenPasswordChanged { nonsense: true },
    )
    .await
    .unwrap();
    // Behind it in the same partition (same user): a sign-in from a phone.
    app.login_from("ada", PHONE).await;

    wait_for(
        "the sign-in applied behind the poison",
        DELIVERY,
        || async {
            app.count("SELECT count(*) FROM account_activity WHERE kind = 'new_sign_in'")
                .await
                == 1
        },
    )
    .await;
    let partition = id % i64::from(app.settings.service.events.partitions);
    let dead_key = app.key(&format!("events:{{p{partition}}}:dead:activity"));
    let mut redis = app.events_redis().await;
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&dead_key)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(dead.ids.len(), 1);
    let letter = &dead.ids[0];
    assert_eq!(
        letter.get::<String>("type").as_deref(),
        Some("password.changed")
    );
    assert_eq!(
        letter.get::<String>("dead.deliveries").as_deref(),
        Some("3")
    );
    assert!(letter
        .get::<String>("dead.error")
        .is_some_and(|e| e.contains("payload")));
    assert_eq!(app.pending_in_group("activity").await, 0);
    let text = app.metrics_text().await;
    assert_eq!(
        metric_in(&text, r#"folio_dead_letters_total{group="activity"}"#),
        1.0
    );
    // No other group cared for it; none dead-lettered it.
    assert_eq!(
        metric_in(&text, r#"folio_dead_letters_total{group="search"}"#),
        0.0
    );
}

// --- mail ---------------------------------------------------------------------------

#[tokio::test]
async fn the_mail_consumer_sends_through_the_mailer_it_is_given_once_per_event() {
    let app = spawn_app_with(without_workers).await;
    // The development mailbox: a real mailer that keeps what it is given
    // (SMTP itself is tested in api/lifecycle.rs, against a real server).
    let mailbox = Arc::new(DevMailbox::new("Folio <no-reply@localhost>"));
    let mail = Arc::new(Mail::new(
        mailbox.clone(),
        &app.state.config.public_url,
        &app.state.metrics,
        app.state.db.primary(),
    ));
    let connector = RedisConnector::open(&app.settings.events_redis_url).unwrap();
    let workers = Workers::start(
        &app.state,
        connector,
        vec![mail.clone() as Arc<dyn Consumer>],
    );

    let cookie = app.register("ada").await;
    let response = app
        .call(
            "change_password",
            &[
                ("current_password", STRONG_PASSWORD),
                ("new_password", "a-much-newer-passphrase-77"),
            ],
            &cookie,
        )
        .await;
    assert_eq!(response.status(), 200);
    // The sign-up's verification link, then the notice.
    app.wait_applied("mail", 2, DELIVERY).await;
    {
        let sent = mailbox.messages();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].message.to, "ada@example.com");
        assert_eq!(sent[0].message.subject, "Your Folio password was changed");
        assert!(sent[0].message.text.contains("127.0.0.1"));
        assert_eq!(sent[1].message.subject, "Confirm your Folio email address");
    }

    // Delivered again (a relay that died before marking it sent): no mail.
    let (id, seq, version, payload, at): (uuid::Uuid, i64, i16, String, time::OffsetDateTime) =
        sqlx::query_as(
            "SELECT event_id, aggregate_seq, schema_version, payload::text, created_at
             FROM outbox WHERE event_type = 'password.changed'",
        )
        .fetch_one(app.state.db.primary())
        .await
        .unwrap();
    let event = Event {
        id,
        event_type: "password.changed".into(),
        schema_version: version,
        user_id: app.user_id("ada").await,
        seq,
        occurred_at: at,
        payload,
    };
    assert_eq!(
        apply_once(&app.state, mail.as_ref(), &event).await.unwrap(),
        Applied::Before
    );
    assert_eq!(mailbox.messages().len(), 2);
    workers.stop().await;
}
