//! The relay: copies committed outbox rows to the partition streams, then
//! marks them sent. Exactly one relay publishes at a time, across every
//! instance and worker.
//!
//! **One at a time.** A relay publishes only while it holds a Postgres
//! advisory lock on a connection of its own (not a pooled one: a pooled
//! connection goes back to the pool, and the lock with it, to whoever
//! borrows it next). Every query of the leader runs on that connection, so a
//! relay whose connection died cannot go on publishing: its next query
//! fails and it starts over, waiting for the lock. The others try for the
//! lock every `lock_retry` (1 s). When the leader's process dies, its socket
//! closes and Postgres frees the lock at once: another relay publishes
//! within `lock_retry` + one poll. When its host vanishes without closing
//! the socket, Postgres notices through TCP keepalives (set on this
//! connection: 10 s idle, then 3 probes 5 s apart): within about 25 s more.
//!
//! **Never skipping a row.** A relay that remembered "published up to id N"
//! would skip a row whose transaction took its id before N but committed
//! after the relay read past N (the classic outbox bug, which a filter on
//! `pg_snapshot_xmin` fixes for cursor-based relays). This relay keeps no
//! cursor: each poll reads whatever is still unsent, in id order, through a
//! partial index that holds only unsent rows. A row that commits late is
//! simply read by the next poll.
//!
//! **Order.** Rows are published in id order, and on any failure the batch
//! stops there (the rest is retried, in order, from the same place). Within
//! one user, id order is commit order: `outbox::record` takes the user's
//! next sequence number under a row lock, so a user's later event gets its
//! id only after the earlier one committed (and any snapshot that sees the
//! later one sees the earlier). Across users there is no order to keep.
//!
//! **Polling.** An idle relay looks for unsent rows every `relay_poll`
//! (20 ms): one probe of an index that holds only unsent rows. A busy one
//! reads the next batch as soon as the last is marked. (No LISTEN/NOTIFY:
//! NOTIFY would serialise every committing transaction; see the migration.)
//!
//! **At least once.** XADD then mark: a relay that dies in between
//! publishes the batch again. Consumers deduplicate by event id; the first
//! copy of each event comes before the first copy of the next, so the
//! effects still happen once each, in order.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::outbox::{self, Unsent};
use super::streams::{fields, partition_of, stream_key, trim_by_age};
use super::Stop;
use crate::ssr::infra::redis::{Redis, RedisConnector};
use crate::ssr::{AppState, Error, Result};

/// The advisory lock's key: "Folio relay", as a number no one else uses.
pub const RELAY_LOCK: i64 = 0x466f_6c69_6f52_6c79;
/// How often the leader deletes what the retention period let go.
const CLEAN_UP_EVERY: Duration = Duration::from_secs(60);

/// Runs until `stop`: waits for the lock, then publishes while holding it.
pub async fn run(state: AppState, connector: RedisConnector, mut stop: Stop) {
    let mut redis = Publisher {
        connector,
        redis: None,
    };
    let mut failures = 0u32;
    while !stop.is_stopped() {
        match lead(&state, &mut redis, &mut stop, &mut failures).await {
            Ok(()) => return,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %error, "relay lost its Postgres connection; retrying");
                }
                let pause = Duration::from_millis(200 * u64::from(failures.min(10)));
                if stop.sleep(pause).await {
                    return;
                }
            }
        }
    }
}

/// A connection of its own, named in `pg_stat_activity` so an operator (and
/// the tests) can see which process leads.
async fn dedicated_connection(state: &AppState) -> Result<PgConnection> {
    let options = (*state.db.connect_options())
        .clone()
        .application_name(&format!("folio relay {}", state.config.events.instance))
        .options([
            // A relay killed mid-statement must not mark rows after its
            // death: Postgres checks the client is still there every second
            // of a running statement (a lock wait included) and cancels it.
            ("client_connection_check_interval", "1000"),
            ("tcp_keepalives_idle", "10"),
            ("tcp_keepalives_interval", "5"),
            ("tcp_keepalives_count", "3"),
        ]);
    Ok(PgConnection::connect_with(&options).await?)
}

/// Waits for the lock, then publishes until `stop` (`Ok`) or until the
/// connection fails (`Err`: the lock is gone with it).
async fn lead(
    state: &AppState,
    redis: &mut Publisher,
    stop: &mut Stop,
    failures: &mut u32,
) -> Result<()> {
    let config = &state.config.events;
    let mut conn = dedicated_connection(state).await?;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut conn)
            .await?;
        *failures = 0; // Postgres answers: the next failure is news again
        if locked {
            break;
        }
        if stop.sleep(config.lock_retry).await {
            return Ok(());
        }
    }
    tracing::info!("relay: holding the lock; publishing events");
    state.metrics.gauge("folio_relay_leader", &[]).set(1.0);
    let result = publish_while_leading(state, redis, stop, &mut conn).await;
    state.metrics.gauge("folio_relay_leader", &[]).set(0.0);
    // Closing the connection frees the lock for the next relay at once.
    let _ = conn.close().await;
    result
}

async fn publish_while_leading(
    state: &AppState,
    redis: &mut Publisher,
    stop: &mut Stop,
    conn: &mut PgConnection,
) -> Result<()> {
    let config = &state.config.events;
    let mut last_clean_up = Instant::now() - CLEAN_UP_EVERY;
    let mut redis_failures = 0u32;
    loop {
        if stop.is_stopped() {
            return Ok(());
        }
        let batch = outbox::unsent(conn, config.relay_batch).await?;
        if !batch.is_empty() {
            match redis.publish(state, &batch).await {
                Ok(()) => {
                    if redis_failures > 0 {
                        tracing::info!("relay: Redis answers again; publishing");
                        redis_failures = 0;
                    }
                    let ids: Vec<i64> = batch.iter().map(|row| row.id).collect();
                    outbox::mark_sent(conn, &ids).await?;
                    state
                        .metrics
                        .counter("folio_events_published_total", &[])
                        .increment(batch.len() as u64);
                    if batch.len() as i64 == config.relay_batch {
                        continue; // more are waiting: no pause
                    }
                }
                Err(error) => {
                    // Redis is down or refusing: the rows stay unsent and
                    // are published, in order, when it answers again.
                    redis_failures += 1;
                    if redis_failures == 1 {
                        tracing::warn!(error = %error, "relay cannot publish; events wait in the outbox");
                    }
                    let pause = Duration::from_millis(100 * u64::from(redis_failures.min(20)));
                    if stop.sleep(pause).await {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if last_clean_up.elapsed() >= CLEAN_UP_EVERY {
            last_clean_up = Instant::now();
            // In chunks, so that no statement runs long: up to ten a
            // minute, 100 000 rows of each table, far above a minute's worth.
            for _ in 0..10 {
                if !outbox::clean_up(conn, config.retention.as_secs() as i64, 10_000).await? {
                    break;
                }
            }
            // The streams' copies of those events go with them, by age (the
            // `MAXLEN` of each XADD only bounds Redis's memory).
            if redis.redis.is_none() {
                redis.redis = redis.connector.connect(Duration::from_secs(2)).await.ok();
            }
            if let Some(events) = redis.redis.as_mut() {
                match trim_by_age(state, events, config.retention).await {
                    Ok(0) => {}
                    Ok(trimmed) => tracing::info!(trimmed, "stream entries past retention deleted"),
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot trim the streams by age; next minute");
                    }
                }
            }
        }
        if batch.is_empty() && stop.sleep(config.relay_poll).await {
            return Ok(());
        }
    }
}

/// The relay's Redis connection, opened when first needed (Redis may be
/// down when the relay starts: the outbox waits meanwhile).
struct Publisher {
    connector: RedisConnector,
    redis: Option<Redis>,
}

impl Publisher {
    /// XADDs the batch in id order, one pipeline per partition, the
    /// partitions at once: a Redis Cluster refuses a pipeline whose keys lie
    /// in several slots, and each partition's stream is one slot (`{pN}`).
    /// Not atomic: after an error some entries may be in Redis already, and
    /// the whole batch is published again (at least once).
    async fn publish(&mut self, state: &AppState, batch: &[Unsent]) -> Result<()> {
        let config = &state.config.events;
        let mut pipes: std::collections::BTreeMap<u16, redis::Pipeline> = Default::default();
        for row in batch {
            let partition = partition_of(row.aggregate_id, config.partitions);
            pipes
                .entry(partition)
                .or_insert_with(redis::pipe)
                .cmd("XADD")
                .arg(stream_key(state, partition))
                .arg("MAXLEN")
                .arg("~")
                .arg(config.stream_max_len)
                .arg("*")
                .arg(&fields(row)[..])
                .ignore();
        }
        if self.redis.is_none() {
            self.redis = Some(self.connector.connect(Duration::from_secs(2)).await?);
        }
        let redis = self.redis.as_ref().expect("just connected");
        let sent = pipes.values().map(|pipe| {
            let mut redis = redis.clone();
            async move { pipe.query_async::<()>(&mut redis).await }
        });
        for result in futures::future::join_all(sent).await {
            result.map_err(Error::from)?;
        }
        Ok(())
    }
}
