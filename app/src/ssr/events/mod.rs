//! Events: the transactional outbox, the relay that publishes it to Redis
//! Streams, and the consumers that act on it. Owns the `outbox`,
//! `processed_events` and every `events:*` key; never publishes from a
//! request (a request only inserts outbox rows, in its own transaction).
//!
//! The path of an event (ARCHITECTURE.md draws it):
//! 1. a service calls [`outbox::record`] on the transaction of its change;
//! 2. the [`relay`] (one at a time, across instances) XADDs committed rows
//!    to the user's partition stream, `events:{pN}`, then marks them sent;
//! 3. each [`Consumer`] reads every partition through its consumer group
//!    (one reader per partition at a time) and applies each event once, in
//!    the transaction that records it in `processed_events`, then XACKs.
//!
//! Guarantees: every committed event is delivered to every consumer at
//! least once, and its effect happens once; one user's events take effect
//! in the order their transactions committed.
//!
//! ## Adding an event type
//! 1. In `types.rs`, a payload struct and `event!(Payload, "noun.verb", version 1)`.
//! 2. In the service that makes the change, on its transaction:
//!    `outbox::record(&mut *tx, user_id, &Payload { … }).await?`.
//! 3. In each consumer that cares: its type in `wants`, an arm in `apply`
//!    that calls `event.decode::<Payload>()?`.
//!
//! ## Adding a consumer
//! 1. A file in `consumers/` with a unit struct implementing [`Consumer`]:
//!    a new `group()` name, `wants`, and `apply` (the effect, on the given
//!    transaction; `consumers/search.rs` is the shortest example).
//! 2. One line in [`consumers::all`].
//!
//! A new group starts at the beginning of each partition's retained history
//! (up to `stream_max_len` entries); a consumer with outside effects (mail)
//! skips events older than it cares for. Nothing else to register: the
//! group, its dead-letter streams and its metrics appear on first use.

pub mod consumer;
pub mod consumers;
mod observer;
pub mod outbox;
pub mod relay;
pub mod streams;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use consumer::{apply_once, Applied, Consumer};
pub use observer::observe;
pub use types::{Event, EventPayload};

use crate::ssr::infra::redis::RedisConnector;
use crate::ssr::AppState;

/// The pipeline's knobs (`ServiceConfig::events`).
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// This process's name in Postgres (`application_name` of the relay)
    /// and in the consumer groups.
    pub instance: String,
    /// Streams events are spread over, by user (see `streams.rs`): how many
    /// readers per group can work at once. 8: a handful of instances each
    /// get work, and a stuck partition holds up an eighth of the users.
    pub partitions: u16,
    /// Rows per relay round trip. 500: one pipelined XADD batch and one
    /// UPDATE cover a burst of edits without a long transaction.
    pub relay_batch: i64,
    /// How often an idle relay looks for new rows: the pipeline's latency
    /// floor at rest. 20 ms costs the leader 50 probes a second of an index
    /// that is empty when idle.
    pub relay_poll: Duration,
    /// How often a relay without the lock tries for it: bounds the takeover.
    pub lock_retry: Duration,
    /// `XADD … MAXLEN ~`: entries kept per partition at most, whatever their
    /// age (`retention` trims by age). 100 000 × 8 entries of ~300 bytes is
    /// ~250 MB of Redis at most. A group more than this far behind loses the
    /// trimmed entries (its lag gauge says so first).
    pub stream_max_len: usize,
    /// Sent outbox rows, processed-event records and stream entries (dead
    /// letters included) are kept this long (7 days: a replay window after
    /// an incident, and well past any redelivery); the relay's leader
    /// deletes what is older every minute.
    pub retention: Duration,
    /// Failed deliveries before an entry goes to the dead letters.
    pub max_deliveries: u32,
    /// A consumer's hold on a partition: how long a dead consumer's
    /// partition waits before another takes it over.
    pub lease: Duration,
    /// How long a read waits for new entries before renewing the lease.
    pub block: Duration,
}

impl EventsConfig {
    /// How often a consumer without a lease asks for it.
    pub fn lease_retry(&self) -> Duration {
        (self.lease / 4).min(Duration::from_secs(1))
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            instance: "folio".to_owned(),
            partitions: 8,
            relay_batch: 500,
            relay_poll: Duration::from_millis(20),
            lock_retry: Duration::from_secs(1),
            stream_max_len: 100_000,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_deliveries: 5,
            lease: Duration::from_secs(10),
            block: Duration::from_secs(2),
        }
    }
}

/// Tells background tasks to finish: sent by [`Workers::stop`], or by
/// dropping the `Workers`.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration`, or less when stopped; true when stopped.
    pub async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => self.is_stopped(),
            _ = self.stopped() => true,
        }
    }
}

/// The relay and the consumers of this process.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts the relay and, for each consumer, one reader per partition.
    /// `connector` opens the events Redis connections (each reader blocks on
    /// one of its own).
    pub fn start(
        state: &AppState,
        connector: RedisConnector,
        consumers: Vec<Arc<dyn Consumer>>,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let stopped = Stop(stopped);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(relay::run(
            state.clone(),
            connector.clone(),
            stopped.clone(),
        )));
        // One name per process run: a restarted process is a new consumer,
        // and claims what its previous run left pending.
        let name = format!(
            "{}-{}-{:08x}",
            state.config.events.instance,
            std::process::id(),
            rand::random::<u32>()
        );
        for consumer in consumers {
            for partition in 0..state.config.events.partitions {
                tasks.push(tokio::spawn(consumer::run(
                    state.clone(),
                    connector.clone(),
                    consumer.clone(),
                    partition,
                    name.clone(),
                    stopped.clone(),
                )));
            }
        }
        tracing::info!(consumer = %name, tasks = tasks.len(), "event workers started");
        Self { stop, tasks }
    }

    /// Stops every task and waits (at most 5 s) for them to let go of the
    /// relay lock and their leases, so another process takes over at once.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    }
}
