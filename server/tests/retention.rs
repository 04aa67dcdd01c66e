//! What Folio keeps, and for how long: sent outbox rows, processed-event
//! records and the streams' entries (dead letters too) go after the
//! retention period (7 days), by age, and what is younger stays. The relay's
//! leader does it as it takes the lead and every minute after; these tests
//! start a relay (no consumers) on data made old by hand.

mod support;

use std::time::Duration;

use app::ssr::events::streams::{dead_letter_key, stream_key};
use app::ssr::events::Workers;
use app::ssr::RedisConnector;
use uuid::Uuid;

use support::{spawn_app, wait_for};

const DAY_MS: u64 = 24 * 3600 * 1000;

#[tokio::test]
async fn the_relay_deletes_what_is_past_retention_and_keeps_the_rest() {
    let app = spawn_app().await;
    let db = app.state.db.primary();
    let retention = app.state.config.events.retention;
    assert_eq!(retention, Duration::from_secs(7 * 24 * 3600));

    // Outbox rows sent 8 days and 1 day ago; the events' processed records
    // of the same ages.
    for (seq, sent_days_ago) in [(1, 8), (2, 1)] {
        sqlx::query(
            "INSERT INTO outbox (aggregate_id, aggregate_seq, event_type, schema_version, payload, created_at, sent_at)
             VALUES (77, $1, 'profile.updated', 1, '{\"bio\": \"old words\"}',
                     now() - make_interval(days => $2), now() - make_interval(days => $2))",
        )
        .bind(seq)
        .bind(sent_days_ago)
        .execute(db)
        .await
        .unwrap();
    }
    let (old_event, young_event) = (Uuid::new_v4(), Uuid::new_v4());
    for (event, days_ago) in [(old_event, 8), (young_event, 1)] {
        sqlx::query(
            "INSERT INTO processed_events (consumer, event_id, processed_at)
             VALUES ('search', $1, now() - make_interval(days => $2))",
        )
        .bind(event)
        .bind(days_ago)
        .execute(db)
        .await
        .unwrap();
    }

    // Stream entries 8 days and 1 day old (their ids are their times), in a
    // partition's stream and in a group's dead letters.
    let connector = RedisConnector::open(&app.settings.events_redis_url).unwrap();
    let mut redis = connector.connect(Duration::from_secs(2)).await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await.unwrap();
    let now_ms = secs * 1000 + micros / 1000;
    let (old_id, young_id) = (
        format!("{}-0", now_ms - 8 * DAY_MS),
        format!("{}-0", now_ms - DAY_MS),
    );
    let stream = stream_key(&app.state, 0);
    let dead = dead_letter_key(&app.state, 0, "archive");
    for key in [&stream, &dead] {
        for id in [&old_id, &young_id] {
            let _: String = redis::cmd("XADD")
                .arg(key)
                .arg(id)
                .arg("payload")
                .arg("{\"old_email\": \"someone@example.com\"}")
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    }
    // A group whose dead letters those are ("$": it reads nothing old).
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("archive")
        .arg("$")
        .query_async(&mut redis)
        .await
        .unwrap();

    let workers = Workers::start(&app.state, connector, Vec::new());

    let ids = async |key: &str| -> Vec<String> {
        let mut redis = redis.clone();
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query_async(&mut redis)
            .await
            .unwrap();
        entries.ids.into_iter().map(|entry| entry.id).collect()
    };
    wait_for(
        "the streams are trimmed by age",
        Duration::from_secs(30),
        || async {
            ids(&stream).await == [young_id.clone()] && ids(&dead).await == [young_id.clone()]
        },
    )
    .await;
    let outbox: Vec<i64> =
        sqlx::query_scalar("SELECT aggregate_seq FROM outbox WHERE aggregate_id = 77 ORDER BY 1")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(
        outbox,
        [2],
        "the row sent 8 days ago is gone, the other kept"
    );
    let processed: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM processed_events")
        .fetch_all(db)
        .await
        .unwrap();
    assert_eq!(processed, [young_event]);
    workers.stop().await;
}
