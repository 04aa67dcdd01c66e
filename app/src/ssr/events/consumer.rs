//! Consumers: what a consumer is ([`Consumer`]), and the loop that feeds
//! it, one task per (group, partition).
//!
//! **One reader per partition and group.** Redis consumer groups hand each
//! new entry to whichever consumer asks first; two consumers of one group on
//! one stream would apply a user's events in parallel, out of order. So, as
//! Kafka assigns a partition to one member of a group, a consumer reads a
//! partition only while it holds that (group, partition)'s lease: a Redis
//! key with a TTL (`lease`, 10 s), renewed on every pass of the loop. Every
//! instance runs a task for every (group, partition); the others wait for
//! the lease. A killed consumer's lease expires and another takes over
//! within `lease` + one retry.
//!
//! **Taking over.** A consumer that gets a lease first claims every entry
//! still pending in the group on that partition (XAUTOCLAIM, idle time 0:
//! the lease says the previous owner is gone) and applies them in stream
//! order, then reads new entries (XREADGROUP `>`, blocking up to `block` on
//! a connection of its own: a blocking read would stall every other command
//! sharing a multiplexed connection).
//!
//! **Effects once.** [`apply_once`] runs the consumer's effect in one
//! Postgres transaction with the insert of `(group, event id)` into
//! `processed_events`; a redelivered event finds its row and is only
//! acknowledged. XACK comes after the commit: a consumer that dies between
//! the two leaves the entry pending, and whoever claims it finds it done.
//!
//! **Poison.** An entry whose effect fails (not because Postgres is down:
//! that is retried for as long as it lasts, and nothing behind it could
//! succeed either) is retried with backoff up to `max_deliveries` times,
//! counting deliveries to consumers that died on it, then written to the
//! partition's dead-letter stream for the group and acknowledged in one
//! MULTI, so the partition moves on.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::future::BoxFuture;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{RedisError, Script, Value};
use sqlx::PgConnection;

use super::streams::{dead_letter_key, event_of, lease_key, stream_key};
use super::types::Event;
use super::Stop;
use crate::ssr::infra::redis::{Redis, RedisConnector};
use crate::ssr::{AppState, Error, Result};

/// Something that acts on events: a consumer group of its own, with its own
/// position in every partition, its own retries and dead letters.
pub trait Consumer: Send + Sync + 'static {
    /// The Redis consumer group, and the name its processed events are
    /// recorded under: lower case, never renamed (a new name starts over).
    fn group(&self) -> &'static str;

    /// Whether it acts on events of this type; the others are acknowledged
    /// without a transaction.
    fn wants(&self, event_type: &str) -> bool;

    /// The effect of `event`, on the transaction that also records it as
    /// processed: both commit, or neither. An `Err` is retried (see the
    /// module comment); a payload it cannot read is an `Err` too.
    fn apply<'a>(&'a self, tx: &'a mut PgConnection, event: &'a Event)
        -> BoxFuture<'a, Result<()>>;
}

/// What [`apply_once`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Applied {
    /// The effect committed now, this many seconds after the event did
    /// (both read on Postgres's clock).
    Now { latency_secs: f64 },
    /// An earlier delivery already applied it.
    Before,
}

/// Applies `event` for `consumer` unless it already was (see the module
/// comment). Two deliveries racing each other: the second waits on the
/// first's `processed_events` row, then finds it.
pub async fn apply_once(
    state: &AppState,
    consumer: &dyn Consumer,
    event: &Event,
) -> Result<Applied> {
    let mut tx = state.db.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(consumer.group())
    .bind(event.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !fresh {
        tx.rollback().await?;
        return Ok(Applied::Before);
    }
    consumer.apply(&mut tx, event).await?;
    let latency_secs: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM clock_timestamp() - $1)::float8")
            .bind(event.occurred_at)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Applied::Now { latency_secs })
}

/// KEYS: lease. ARGV: holder, TTL (ms). 2: taken now, 1: renewed, 0: held
/// by another.
static HOLD_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"#,
    )
});

/// KEYS: lease. ARGV: holder. Deletes the lease only if still ours.
static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

/// How long one effect may take before it counts as a failed attempt (the
/// lease is renewed meanwhile).
const EFFECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Entries read or claimed per round trip.
const BATCH: usize = 100;
/// Consumers of a group with nothing pending, unseen this long, are removed
/// from it (each process run has a consumer name of its own).
const FORGET_CONSUMERS_AFTER_MS: usize = 3_600_000;

/// Runs `consumer` on `partition` until `stop` (see the module comment).
pub async fn run(
    state: AppState,
    connector: RedisConnector,
    consumer: Arc<dyn Consumer>,
    partition: u16,
    name: String,
    mut stop: Stop,
) {
    let config = state.config.events.clone();
    // The group's series exist from the start, at zero: an alert on a
    // series that appears only with the first dead letter cannot tell
    // "none yet" from "not exported", and `increase()` misses that first one.
    let group = [("group", consumer.group().into())];
    let _ = state.metrics.counter("folio_dead_letters_total", &group);
    let _ = state
        .metrics
        .histogram("folio_event_latency_seconds", &group);
    let mut reader = Reader {
        stream: stream_key(&state, partition),
        lease: lease_key(&state, partition, consumer.group()),
        dead_letters: dead_letter_key(&state, partition, consumer.group()),
        group: consumer.group(),
        consumer,
        name,
        connector,
        state,
        redis: None,
    };
    // Set whenever entries of ours may be pending unread: on taking the
    // lease, and after anything went wrong mid-batch.
    let mut claim_first = true;
    let mut failures = 0u32;
    while !stop.is_stopped() {
        let pass = reader.pass(&mut claim_first, &mut stop).await;
        match pass {
            Ok(Pass::Worked) => failures = 0,
            Ok(Pass::NotOurs) => {
                failures = 0;
                if stop.sleep(config.lease_retry()).await {
                    break;
                }
            }
            Err(error) => {
                claim_first = true;
                failures += 1;
                if failures == 1 {
                    tracing::warn!(group = reader.group, partition, error = %error, "consumer paused; retrying");
                }
                reader.redis = None;
                let pause = Duration::from_millis(200 * u64::from(failures.min(10)));
                if stop.sleep(pause).await {
                    break;
                }
            }
        }
    }
    reader.release().await;
}

enum Pass {
    /// Held the lease and read (maybe nothing).
    Worked,
    /// Another consumer holds the lease.
    NotOurs,
}

/// How one try of an effect ended.
enum Attempt {
    Finished(Result<Applied>),
    TimedOut,
    LeaseLost,
}

/// How one entry ended.
enum Outcome {
    Done,
    /// The lease was lost or the worker is stopping: leave the rest pending.
    Abandoned,
}

struct Reader {
    state: AppState,
    consumer: Arc<dyn Consumer>,
    group: &'static str,
    name: String,
    connector: RedisConnector,
    stream: String,
    lease: String,
    dead_letters: String,
    /// Opened on first use and after a failure: this task's own connection.
    redis: Option<Redis>,
}

fn is_code(error: &RedisError, code: &str) -> bool {
    error.code() == Some(code)
}

impl Reader {
    fn config(&self) -> &super::EventsConfig {
        &self.state.config.events
    }

    async fn redis(&mut self) -> Result<&mut Redis> {
        if self.redis.is_none() {
            // Longer than the blocking read, which must not time out.
            let timeout = self.config().block + Duration::from_secs(3);
            self.redis = Some(self.connector.connect(timeout).await?);
        }
        Ok(self.redis.as_mut().expect("just opened"))
    }

    /// Takes or renews the lease: `Some(true)` when it was just taken.
    async fn hold_lease(&mut self) -> Result<Option<bool>> {
        let ttl = self.config().lease.as_millis() as u64;
        let (lease, name) = (self.lease.clone(), self.name.clone());
        let held: i64 = HOLD_LEASE
            .key(lease)
            .arg(name)
            .arg(ttl)
            .invoke_async(self.redis().await?)
            .await?;
        Ok(match held {
            2 => Some(true),
            1 => Some(false),
            _ => None,
        })
    }

    async fn release(&mut self) {
        let (lease, name) = (self.lease.clone(), self.name.clone());
        if let Ok(redis) = self.redis().await {
            let _: std::result::Result<i64, _> =
                RELEASE_LEASE.key(lease).arg(name).invoke_async(redis).await;
        }
    }

    async fn pass(&mut self, claim_first: &mut bool, stop: &mut Stop) -> Result<Pass> {
        match self.hold_lease().await? {
            None => return Ok(Pass::NotOurs),
            Some(just_taken) => *claim_first |= just_taken,
        }
        if *claim_first {
            self.create_group().await?;
            if let Outcome::Abandoned = self.claim_pending(stop).await? {
                return Ok(Pass::Worked);
            }
            *claim_first = false;
            self.forget_departed_consumers().await;
        }
        let entries = match self.read_new().await {
            Err(Error::Redis(e)) if is_code(&e, "NOGROUP") => {
                // Redis lost the stream (restarted without persistence):
                // start the group again on the new one.
                *claim_first = true;
                return Ok(Pass::Worked);
            }
            other => other?,
        };
        for entry in &entries {
            if let Outcome::Abandoned = self.process(entry, 0, stop).await? {
                *claim_first = true;
                break;
            }
        }
        Ok(Pass::Worked)
    }

    async fn create_group(&mut self) -> Result<()> {
        let (stream, group) = (self.stream.clone(), self.group);
        // From the start of the stream: a new group sees what is retained.
        let created: std::result::Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(self.redis().await?)
            .await;
        match created {
            Err(e) if !is_code(&e, "BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Claims and applies, in stream order, every entry pending in the group
    /// on this partition (a previous owner's, or our own after a failure).
    async fn claim_pending(&mut self, stop: &mut Stop) -> Result<Outcome> {
        let mut start = "0-0".to_owned();
        loop {
            let (stream, group, name) = (self.stream.clone(), self.group, self.name.clone());
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(group)
                .arg(&name)
                .arg(0)
                .arg(&start)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(self.redis().await?)
                .await?;
            if let (Some(first), Some(last)) = (reply.claimed.first(), reply.claimed.last()) {
                self.state
                    .metrics
                    .counter(
                        "folio_events_claimed_total",
                        &[("group", self.group.into())],
                    )
                    .increment(reply.claimed.len() as u64);
                // Deliveries so far, including to consumers that died on an
                // entry: they count towards `max_deliveries`.
                let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                    .arg(&stream)
                    .arg(group)
                    .arg(&first.id)
                    .arg(&last.id)
                    .arg(BATCH)
                    .arg(&name)
                    .query_async(self.redis().await?)
                    .await?;
                let delivered: HashMap<&str, usize> = pending
                    .ids
                    .iter()
                    .map(|p| (p.id.as_str(), p.times_delivered))
                    .collect();
                for entry in &reply.claimed {
                    // This claim was a delivery too; the ones before it
                    // were attempts that never acknowledged.
                    let earlier = delivered.get(entry.id.as_str()).copied().unwrap_or(1);
                    let earlier = earlier.saturating_sub(1) as u32;
                    if let Outcome::Abandoned = self.process(entry, earlier, stop).await? {
                        return Ok(Outcome::Abandoned);
                    }
                }
            }
            if reply.next_stream_id == "0-0"
                || reply.claimed.is_empty() && reply.deleted_ids.is_empty()
            {
                return Ok(Outcome::Done);
            }
            start = reply.next_stream_id;
        }
    }

    /// Each process run has a consumer name of its own; the names of runs
    /// that ended (nothing pending, long idle) are removed from the group.
    async fn forget_departed_consumers(&mut self) {
        let (stream, group, name) = (self.stream.clone(), self.group, self.name.clone());
        let Ok(redis) = self.redis().await else {
            return;
        };
        let Ok(reply) = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(group)
            .query_async::<redis::streams::StreamInfoConsumersReply>(redis)
            .await
        else {
            return;
        };
        for departed in reply
            .consumers
            .iter()
            .filter(|c| c.name != name && c.pending == 0 && c.idle > FORGET_CONSUMERS_AFTER_MS)
        {
            let _: std::result::Result<i64, _> = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(&stream)
                .arg(group)
                .arg(&departed.name)
                .query_async(redis)
                .await;
        }
    }

    async fn read_new(&mut self) -> Result<Vec<StreamId>> {
        let block_ms = self.config().block.as_millis() as u64;
        let (stream, group, name) = (self.stream.clone(), self.group, self.name.clone());
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(name)
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query_async(self.redis().await?)
            .await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// Applies one entry, with retries; acknowledges it (or dead-letters
    /// it). `earlier` failed deliveries count towards `max_deliveries`.
    async fn process(
        &mut self,
        entry: &StreamId,
        earlier: u32,
        stop: &mut Stop,
    ) -> Result<Outcome> {
        let event = match event_of(entry) {
            Ok(event) => event,
            // Not an event at all: no retry can change that.
            Err(error) => {
                self.dead_letter(entry, &error.to_string(), earlier + 1)
                    .await?;
                return Ok(Outcome::Done);
            }
        };
        if !self.consumer.wants(&event.event_type) {
            self.ack(entry).await?;
            return Ok(Outcome::Done);
        }
        let max = self.config().max_deliveries;
        let mut failed = earlier;
        let mut waits = 0u32;
        let mut last_error = String::from("delivered to consumers that never acknowledged it");
        loop {
            if failed >= max {
                tracing::warn!(group = self.group, event = %event.id, event_type = %event.event_type,
                    error = %last_error, "event dead-lettered after {failed} failed deliveries");
                self.dead_letter(entry, &last_error, failed).await?;
                return Ok(Outcome::Done);
            }
            let attempt = self.apply_holding_lease(&event).await?;
            match attempt {
                Attempt::LeaseLost => return Ok(Outcome::Abandoned),
                Attempt::Finished(Ok(applied)) => {
                    self.ack(entry).await?;
                    if let Applied::Now { latency_secs } = applied {
                        self.state
                            .metrics
                            .histogram(
                                "folio_event_latency_seconds",
                                &[("group", self.group.into())],
                            )
                            .record(latency_secs);
                    }
                    return Ok(Outcome::Done);
                }
                Attempt::Finished(Err(error)) if error.is_transient() => {
                    // Postgres is away: retry for as long as it takes
                    // (nothing later in the partition could succeed either).
                    waits += 1;
                    if waits == 1 {
                        tracing::warn!(group = self.group, error = %error, "consumer waiting for Postgres");
                    }
                }
                Attempt::Finished(Err(error)) => {
                    failed += 1;
                    last_error = error.to_string();
                    tracing::info!(group = self.group, event = %event.id, attempt = failed,
                        error = %last_error, "event failed; will retry");
                }
                Attempt::TimedOut => {
                    failed += 1;
                    last_error = format!("effect took longer than {EFFECT_TIMEOUT:?}");
                }
            }
            let pause = Duration::from_millis(100 << (failed + waits).min(5));
            if stop.sleep(pause).await {
                return Ok(Outcome::Abandoned);
            }
            // The lease must still be ours, uninterrupted, to try again.
            if self.hold_lease().await? != Some(false) {
                return Ok(Outcome::Abandoned);
            }
        }
    }

    /// Runs the effect, renewing the lease meanwhile (an effect may outlast
    /// it). A lost lease abandons the effect (its transaction rolls back).
    async fn apply_holding_lease(&mut self, event: &Event) -> Result<Attempt> {
        let mut renewer = self.redis().await?.clone();
        let effect = apply_once(&self.state, self.consumer.as_ref(), event);
        tokio::pin!(effect);
        let deadline = tokio::time::sleep(EFFECT_TIMEOUT);
        tokio::pin!(deadline);
        let every = self.config().lease / 3;
        loop {
            tokio::select! {
                result = &mut effect => return Ok(Attempt::Finished(result)),
                _ = &mut deadline => return Ok(Attempt::TimedOut),
                _ = tokio::time::sleep(every) => {
                    let held: i64 = HOLD_LEASE
                        .key(&self.lease)
                        .arg(&self.name)
                        .arg(self.config().lease.as_millis() as u64)
                        .invoke_async(&mut renewer)
                        .await?;
                    if held != 1 {
                        return Ok(Attempt::LeaseLost);
                    }
                }
            }
        }
    }

    async fn ack(&mut self, entry: &StreamId) -> Result<()> {
        let (stream, group) = (self.stream.clone(), self.group);
        let _: i64 = redis::cmd("XACK")
            .arg(stream)
            .arg(group)
            .arg(&entry.id)
            .query_async(self.redis().await?)
            .await?;
        Ok(())
    }

    /// Copies the entry, with why it failed, to the dead-letter stream and
    /// acknowledges it, atomically (both keys in the partition's slot).
    async fn dead_letter(&mut self, entry: &StreamId, error: &str, deliveries: u32) -> Result<()> {
        let mut fields: Vec<(String, Vec<u8>)> = entry
            .map
            .iter()
            .filter_map(|(field, value)| match value {
                Value::BulkString(bytes) => Some((field.clone(), bytes.clone())),
                Value::SimpleString(s) => Some((field.clone(), s.clone().into_bytes())),
                _ => None,
            })
            .collect();
        fields.sort();
        fields.push(("dead.source".into(), entry.id.clone().into_bytes()));
        fields.push(("dead.group".into(), self.group.as_bytes().to_vec()));
        fields.push((
            "dead.error".into(),
            error.chars().take(500).collect::<String>().into_bytes(),
        ));
        fields.push((
            "dead.deliveries".into(),
            deliveries.to_string().into_bytes(),
        ));
        let (stream, dead, group) = (self.stream.clone(), self.dead_letters.clone(), self.group);
        redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(dead)
            .arg("MAXLEN")
            .arg("~")
            .arg(10_000)
            .arg("*")
            .arg(&fields[..])
            .ignore()
            .cmd("XACK")
            .arg(stream)
            .arg(group)
            .arg(&entry.id)
            .ignore()
            .query_async::<()>(self.redis().await?)
            .await?;
        self.state
            .metrics
            .counter("folio_dead_letters_total", &[("group", self.group.into())])
            .increment(1);
        Ok(())
    }
}
