//! The pipeline's gauges, refreshed every few seconds in every process
//! (web or worker), so any instance's `/metrics` shows them:
//! `folio_outbox_pending` and `folio_outbox_oldest_age_seconds` from
//! Postgres, `folio_consumer_pending{group}` and `folio_consumer_lag{group}`
//! summed over the partitions from XINFO GROUPS. Events waiting are not a
//! failure: `/readyz` ignores all of this.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::streams::StreamInfoGroupsReply;

use super::outbox;
use super::streams::stream_key;
use crate::ssr::infra::redis::{Redis, RedisConnector};
use crate::ssr::state::WeakAppState;
use crate::ssr::AppState;

const EVERY: Duration = Duration::from_secs(5);

/// Refreshes the gauges for as long as the application lives.
pub fn observe(state: &AppState, connector: RedisConnector) {
    describe(state);
    let state: WeakAppState = state.downgrade();
    tokio::spawn(async move {
        let mut redis: Option<Redis> = None;
        let mut every = tokio::time::interval(EVERY);
        loop {
            every.tick().await;
            let Some(state) = state.upgrade() else { return };
            if let Ok((pending, age)) = outbox::backlog(state.db.primary()).await {
                state
                    .metrics
                    .gauge("folio_outbox_pending", &[])
                    .set(pending as f64);
                state
                    .metrics
                    .gauge("folio_outbox_oldest_age_seconds", &[])
                    .set(age);
            }
            if redis.is_none() {
                redis = connector.connect(Duration::from_secs(2)).await.ok();
            }
            if let Some(connection) = redis.as_mut() {
                if groups(&state, connection).await.is_err() {
                    redis = None;
                }
            }
        }
    });
}

async fn groups(state: &AppState, redis: &mut Redis) -> redis::RedisResult<()> {
    let mut totals: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for partition in 0..state.config.events.partitions {
        let reply: redis::RedisResult<StreamInfoGroupsReply> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream_key(state, partition))
            .query_async(redis)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            // No stream yet: nothing published to this partition.
            Err(e) if e.code() == Some("ERR") => continue,
            Err(e) => return Err(e),
        };
        for group in reply.groups {
            let total = totals.entry(group.name).or_default();
            total.0 += group.pending;
            total.1 += group.lag.unwrap_or(0);
        }
    }
    for (group, (pending, lag)) in totals {
        let label = [("group", group)];
        state
            .metrics
            .gauge("folio_consumer_pending", &label)
            .set(pending as f64);
        state
            .metrics
            .gauge("folio_consumer_lag", &label)
            .set(lag as f64);
    }
    Ok(())
}

fn describe(state: &AppState) {
    let m = &state.metrics;
    m.describe_gauge(
        "folio_outbox_pending",
        "Outbox rows not yet published to Redis.",
    );
    m.describe_gauge(
        "folio_outbox_oldest_age_seconds",
        "Age of the oldest unpublished outbox row (0 when none): the relay's lag.",
    );
    m.describe_counter(
        "folio_events_published_total",
        "Events this process's relay added to the streams (a republished event counts again).",
    );
    m.describe_gauge(
        "folio_consumer_pending",
        "Entries delivered to a consumer group and not yet acknowledged, over all partitions.",
    );
    m.describe_gauge(
        "folio_consumer_lag",
        "Entries not yet delivered to a consumer group, over all partitions.",
    );
    m.describe_counter(
        "folio_dead_letters_total",
        "Entries a consumer group gave up on and wrote to its dead-letter stream.",
    );
    m.describe_histogram(
        "folio_event_latency_seconds",
        "From an event's commit to its effect's commit, per consumer group.",
    );
    m.describe_counter(
        "folio_events_claimed_total",
        "Pending entries a consumer took over (from a consumer that died, or its own after a failure).",
    );
    m.describe_gauge(
        "folio_relay_leader",
        "1 while this process's relay holds the relay lock and publishes.",
    );
    let _ = m.counter("folio_events_published_total", &[]);
}
