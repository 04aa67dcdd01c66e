//! Postgres: the primary, and the read replicas streaming from it. Owns the
//! pools and decides which database answers a read; knows nothing of users
//! or profiles, and never sends a write anywhere but the primary.
//!
//! **Writes** and every read a write depends on (the reads inside its
//! transaction, a sign-in's password check, the editor's own profile) use
//! the primary: `state.db.primary()` as the executor, or `state.db.begin()`
//! (`Db` dereferences to the primary's pool, so the default is the safe one).
//!
//! **Public reads** go through [`Db::read`] and say how fresh they must be:
//! - [`Freshness::Any`]: an anonymous reader. Any replica within the lag
//!   bound will do; what it answers may be a few seconds old.
//! - [`Freshness::Since`]: a reader who wrote recently. The primary's WAL
//!   position after that write was remembered with the user
//!   (`accounts::recent_writes`); a replica answers only once it has
//!   replayed that far (`pg_last_wal_replay_lsn()`), otherwise the primary.
//! - [`Freshness::Primary`]: the reader's recent writes are unknown (Redis
//!   failed), so nothing older than the primary may answer.
//!
//! A replica that errors or is slower than `replica_timeout` is skipped for
//! `replica_cooldown` and its reads go to the primary; a standby cancelling
//! a query for a recovery conflict (SQLSTATE 40001) has it retried on the
//! primary. Every read is counted by where it went, every fallback by why.
//!
//! A background task ([`watch_replicas`]) probes every replica each
//! `replica_probe_interval`: up or down, how far it has replayed, how far
//! behind it is. A replica more than a third of the lag budget behind (or
//! whose lag is unknown) answers nobody: the floors that keep an old version
//! out of the caches live for the lag budget, so no database older than
//! that may ever answer a read.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use sqlx::PgPool;

use super::metrics::Metrics;
use crate::ssr::error::is_primary_outage;
use crate::ssr::state::WeakAppState;
use crate::ssr::{AppState, Error, Result, ServiceConfig};

/// A position in the primary's write-ahead log (`pg_lsn` as a number).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Past every real position: "only the primary has it".
    pub const MAX: Lsn = Lsn(u64::MAX);
}

/// How fresh a read must be (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Any,
    Since(Lsn),
    Primary,
}

/// A replica's pool and its name in metrics and logs (`host:port/database`).
pub struct ReplicaPool {
    pub label: String,
    pub pool: PgPool,
}

/// The pools Folio was configured with: a primary, and zero or more replicas.
pub struct Pools {
    pub primary: PgPool,
    pub replicas: Vec<ReplicaPool>,
}

impl From<PgPool> for Pools {
    fn from(primary: PgPool) -> Self {
        Self {
            primary,
            replicas: Vec::new(),
        }
    }
}

/// Why a read meant for a replica went to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    Error = 0,
    Timeout = 1,
    Lagging = 2,
    Conflict = 3,
}

impl Fallback {
    const ALL: [Fallback; 4] = [
        Fallback::Error,
        Fallback::Timeout,
        Fallback::Lagging,
        Fallback::Conflict,
    ];

    fn label(self) -> &'static str {
        match self {
            Fallback::Error => "error",
            Fallback::Timeout => "timeout",
            Fallback::Lagging => "lagging",
            Fallback::Conflict => "conflict",
        }
    }
}

/// What this instance knows of one replica.
#[derive(Debug, Default)]
struct Health {
    /// Skipped until then, and why.
    cooling: Option<(Instant, Fallback)>,
    /// How far behind the primary it was at the last probe (`None`: unknown).
    lag: Option<Duration>,
    probed_at: Option<Instant>,
    /// How far it had replayed, and when that was asked (probe or check).
    replayed: Lsn,
    replayed_at: Option<Instant>,
    /// Answered its last probe (or has not been probed yet); for logging
    /// the changes only.
    down: bool,
}

struct Replica {
    label: String,
    pool: PgPool,
    health: Mutex<Health>,
    /// One replay-position query at a time: concurrent readers that need a
    /// newer position wait for it and share its answer.
    checking: tokio::sync::Mutex<()>,
    up: Gauge,
    lag: Gauge,
}

impl Replica {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cool_down(&self, why: Fallback, cooldown: Duration) {
        let mut health = self.health();
        health.cooling = Some((Instant::now() + cooldown, why));
        // It may come back from a restart having replayed less than we saw.
        health.replayed = Lsn(0);
        health.replayed_at = None;
        let was_down = std::mem::replace(&mut health.down, true);
        drop(health);
        self.up.set(0.0);
        if !was_down {
            tracing::warn!(replica = %self.label, reason = why.label(), ?cooldown, "replica skipped; its reads go to the primary");
        }
    }
}

/// The knobs of replica routing, from `ServiceConfig`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    timeout: Duration,
    cooldown: Duration,
    probe_interval: Duration,
    max_lag: Duration,
    lsn_cache: Duration,
}

/// The primary and the replicas, and the routing of reads between them.
pub struct Db {
    primary: PgPool,
    replicas: Vec<Replica>,
    /// The primary's WAL position at each recent probe, oldest first.
    primary_positions: Mutex<VecDeque<(Instant, Lsn)>>,
    next: AtomicUsize,
    limits: Limits,
    reads_replica: Counter,
    reads_primary: Counter,
    fallbacks: [Counter; 4],
    lsn_checks: Counter,
    /// Reads meant for the primary that a replica answered while there was
    /// no primary (a failover).
    reads_without_primary: Counter,
    /// Since when the primary has not answered a probe (`None`: it did).
    primary_down_since: Mutex<Option<Instant>>,
}

impl std::ops::Deref for Db {
    type Target = PgPool;

    /// The primary: writes, transactions, and reads that must see them.
    fn deref(&self) -> &PgPool {
        &self.primary
    }
}

impl Db {
    pub fn new(pools: Pools, metrics: &Metrics, config: &ServiceConfig) -> Self {
        metrics.describe_counter(
            "folio_db_reads_total",
            "Public reads, by the database that answered (replica or primary).",
        );
        metrics.describe_counter(
            "folio_replica_fallbacks_total",
            "Public reads meant for a replica that the primary answered, by why (error, timeout, lagging, conflict).",
        );
        metrics.describe_gauge(
            "folio_replica_lag_seconds",
            "How far each replica was behind the primary at its last probe (+Inf: unknown).",
        );
        metrics.describe_gauge(
            "folio_replica_up",
            "Whether each replica answered its last probe (1) or not (0).",
        );
        metrics.describe_counter(
            "folio_replica_lsn_checks_total",
            "Queries of a replica's replay position made for a reader who wrote recently.",
        );
        let replicas = pools
            .replicas
            .into_iter()
            .map(|replica| {
                let labels = [("replica", replica.label.clone())];
                let up = metrics.gauge("folio_replica_up", &labels);
                let lag = metrics.gauge("folio_replica_lag_seconds", &labels);
                lag.set(f64::INFINITY);
                Replica {
                    label: replica.label,
                    pool: replica.pool,
                    health: Mutex::default(),
                    checking: tokio::sync::Mutex::new(()),
                    up,
                    lag,
                }
            })
            .collect();
        let reads = |target: &str| {
            metrics.counter("folio_db_reads_total", &[("target", target.to_owned())])
        };
        Self {
            primary: pools.primary,
            replicas,
            primary_positions: Mutex::default(),
            next: AtomicUsize::new(0),
            limits: Limits {
                timeout: config.replica_timeout,
                cooldown: config.replica_cooldown,
                probe_interval: config.replica_probe_interval,
                max_lag: config.lag_budget / 3,
                lsn_cache: config.replica_lsn_cache,
            },
            reads_replica: reads("replica"),
            reads_primary: reads("primary"),
            fallbacks: Fallback::ALL.map(|why| {
                metrics.counter(
                    "folio_replica_fallbacks_total",
                    &[("reason", why.label().to_owned())],
                )
            }),
            lsn_checks: metrics.counter("folio_replica_lsn_checks_total", &[]),
            reads_without_primary: reads("replica_without_primary"),
            primary_down_since: Mutex::default(),
        }
    }

    /// The primary: the executor for writes and for reads that must see them.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// Runs the read `query` on a replica fresh enough for `freshness`, or on
    /// the primary (see the module comment). `query` gets the pool to use; it
    /// may be run twice (a replica failed, then the primary), so it must
    /// only read.
    pub async fn read<T, F, Fut>(&self, freshness: Freshness, query: F) -> Result<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if let Some(replica) = self.choose(freshness).await {
            match tokio::time::timeout(self.limits.timeout, query(replica.pool.clone())).await {
                Ok(Ok(value)) => {
                    self.reads_replica.increment(1);
                    return Ok(value);
                }
                Ok(Err(Error::Postgres(error))) => {
                    let why = if is_recovery_conflict(&error) {
                        Fallback::Conflict
                    } else {
                        replica.cool_down(Fallback::Error, self.limits.cooldown);
                        Fallback::Error
                    };
                    tracing::warn!(replica = %replica.label, error = %error, reason = why.label(), "replica read failed; the primary answers");
                    self.fallback(why);
                }
                // An answer (not found, …), not a failure of the replica.
                Ok(Err(other)) => return Err(other),
                Err(_) => {
                    replica.cool_down(Fallback::Timeout, self.limits.cooldown);
                    tracing::warn!(replica = %replica.label, timeout = ?self.limits.timeout, "replica read timed out; the primary answers");
                    self.fallback(Fallback::Timeout);
                }
            }
        }
        self.reads_primary.increment(1);
        match query(self.primary.clone()).await {
            Err(Error::Postgres(error)) if is_primary_outage(&error) && self.has_replicas() => {
                // No primary (a failover under way): a reader who wrote
                // recently gets a replica's answer, which may miss their
                // last seconds, rather than an error page. Nothing read
                // this way goes into a cache: the caches refuse a version
                // below the floor the write left.
                let Some(replica) = self.choose(Freshness::Any).await else {
                    return Err(Error::Postgres(error));
                };
                tracing::warn!(replica = %replica.label, error = %error, "no primary; a replica answers a read that wanted it");
                self.reads_without_primary.increment(1);
                match tokio::time::timeout(self.limits.timeout, query(replica.pool.clone())).await {
                    Ok(answer) => answer,
                    Err(_) => Err(Error::Postgres(error)),
                }
            }
            answer => answer,
        }
    }

    fn fallback(&self, why: Fallback) {
        self.fallbacks[why as usize].increment(1);
    }

    /// A replica that may answer a read of `freshness`, round robin; `None`
    /// (counted, with the reason of the first one skipped) when none may.
    async fn choose(&self, freshness: Freshness) -> Option<&Replica> {
        let wanted = match freshness {
            _ if self.replicas.is_empty() => return None,
            Freshness::Primary => return None,
            Freshness::Any => None,
            Freshness::Since(lsn) => Some(lsn),
        };
        let count = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut skipped = None;
        for i in 0..count {
            let replica = &self.replicas[(start + i) % count];
            let verdict = match self.usable(replica) {
                Ok(()) => match wanted {
                    Some(lsn) => self.has_replayed(replica, lsn).await,
                    None => Ok(()),
                },
                Err(why) => Err(why),
            };
            match verdict {
                Ok(()) => return Some(replica),
                Err(why) => {
                    skipped.get_or_insert(why);
                }
            }
        }
        if let Some(why) = skipped {
            self.fallback(why);
        }
        None
    }

    /// Not cooling down, and known to be within the lag bound by a recent probe.
    fn usable(&self, replica: &Replica) -> Result<(), Fallback> {
        let now = Instant::now();
        let health = replica.health();
        if let Some((until, why)) = health.cooling {
            if now < until {
                return Err(why);
            }
        }
        // Three probes missed: what we know of its lag is too old to trust.
        let recent = health
            .probed_at
            .is_some_and(|at| now.duration_since(at) <= self.limits.probe_interval * 3);
        match health.lag {
            Some(lag) if recent && lag <= self.limits.max_lag => Ok(()),
            _ => Err(Fallback::Lagging),
        }
    }

    /// Whether `replica` has replayed `lsn`. The last known position answers
    /// when it suffices (positions only grow); otherwise the replica is asked,
    /// at most once per `replica_lsn_cache`, one query at a time.
    async fn has_replayed(&self, replica: &Replica, lsn: Lsn) -> Result<(), Fallback> {
        let known = |replica: &Replica| {
            let health = replica.health();
            let fresh = health
                .replayed_at
                .is_some_and(|at| at.elapsed() < self.limits.lsn_cache);
            (health.replayed >= lsn, fresh)
        };
        match known(replica) {
            (true, _) => return Ok(()),
            (false, true) => return Err(Fallback::Lagging),
            (false, false) => {}
        }
        let _one_at_a_time = replica.checking.lock().await;
        // The check this one waited for may have found the replica failing.
        self.usable(replica)?;
        match known(replica) {
            (true, _) => return Ok(()),
            (false, true) => return Err(Fallback::Lagging),
            (false, false) => {}
        }
        self.lsn_checks.increment(1);
        let asked = tokio::time::timeout(
            self.limits.timeout,
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint",
            )
            .fetch_one(&replica.pool),
        )
        .await;
        let replayed = match asked {
            // Not a standby (a replica URL naming a primary): nothing to wait for.
            Ok(Ok(None)) => Lsn::MAX,
            Ok(Ok(Some(position))) => Lsn(position as u64),
            Ok(Err(error)) => {
                tracing::warn!(replica = %replica.label, error = %error, "replica replay position unavailable");
                replica.cool_down(Fallback::Error, self.limits.cooldown);
                return Err(Fallback::Error);
            }
            Err(_) => {
                replica.cool_down(Fallback::Timeout, self.limits.cooldown);
                return Err(Fallback::Timeout);
            }
        };
        let mut health = replica.health();
        health.replayed = health.replayed.max(replayed);
        health.replayed_at = Some(Instant::now());
        if health.replayed >= lsn {
            Ok(())
        } else {
            Err(Fallback::Lagging)
        }
    }

    /// The primary's WAL position now: after a commit, a replica that has
    /// replayed this far shows the commit. (Asked after the commit: inside
    /// the transaction the position is before the commit record.)
    pub async fn current_lsn(&self) -> Result<Lsn> {
        let position: i64 =
            sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint")
                .fetch_one(&self.primary)
                .await?;
        Ok(Lsn(position as u64))
    }

    /// Probes every replica once (see [`watch_replicas`]).
    pub async fn probe(&self) {
        if self.replicas.is_empty() {
            return;
        }
        let primary = tokio::time::timeout(
            self.limits.timeout,
            sqlx::query_scalar::<_, i64>("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
                .fetch_one(&self.primary),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|position| Lsn(position as u64));
        if let Some(position) = primary {
            let mut positions = self.primary_positions();
            positions.push_back((Instant::now(), position));
            // Older than the lag bound: a replica behind it is unusable anyway.
            while positions.len() > 1
                && positions[0].0.elapsed() > self.limits.max_lag + self.limits.probe_interval
            {
                positions.pop_front();
            }
        }
        futures::future::join_all(
            self.replicas
                .iter()
                .map(|replica| self.probe_replica(replica)),
        )
        .await;
    }

    fn primary_positions(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Lsn)>> {
        self.primary_positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// How far behind a replica that has replayed `replayed` is, at most:
    /// it has everything the primary had at the newest probe whose position
    /// it has passed (taken before asking the replica, so a replica that
    /// is caught up shows 0).
    fn behind_by_positions(&self, replayed: Lsn) -> Option<Duration> {
        let positions = self.primary_positions();
        let mut newest_first = positions.iter().rev();
        match newest_first.next() {
            // Caught up with this very probe.
            Some((_, position)) if *position <= replayed => Some(Duration::ZERO),
            _ => newest_first
                .find(|(_, position)| *position <= replayed)
                .map(|(at, _)| at.elapsed()),
        }
    }

    async fn probe_replica(&self, replica: &Replica) {
        type Row = (bool, Option<i64>, Option<f64>);
        let probed = tokio::time::timeout(
            self.limits.timeout,
            sqlx::query_as::<_, Row>(
                "SELECT pg_is_in_recovery(),
                        (pg_last_wal_replay_lsn() - '0/0')::bigint,
                        extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8",
            )
            .fetch_one(&replica.pool),
        )
        .await;
        let (in_recovery, replayed, since_last_replay) = match probed {
            Ok(Ok(row)) => row,
            Ok(Err(error)) => {
                tracing::debug!(replica = %replica.label, error = %error, "replica probe failed");
                replica.cool_down(Fallback::Error, self.limits.cooldown);
                return;
            }
            Err(_) => {
                replica.cool_down(Fallback::Timeout, self.limits.cooldown);
                return;
            }
        };
        let (replayed, lag) = if !in_recovery {
            // Not a standby (a replica URL naming a primary): never behind.
            (Lsn::MAX, Some(Duration::ZERO))
        } else {
            let replayed = Lsn(replayed.unwrap_or(0) as u64);
            // Two upper bounds of how old its data may be; the smaller one
            // holds. By positions: it has what the primary had at a probe.
            // By time: it shows every transaction up to the newest one it
            // replayed (too high after the primary was idle, hence both).
            let by_time = since_last_replay.map(|s| Duration::from_secs_f64(s.max(0.0)));
            let lag = match (self.behind_by_positions(replayed), by_time) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            (replayed, lag)
        };
        let now = Instant::now();
        let mut health = replica.health();
        if std::mem::replace(&mut health.down, false) {
            tracing::info!(replica = %replica.label, "replica answering; reads go to it again");
        }
        health.cooling = None;
        health.lag = lag;
        health.probed_at = Some(now);
        health.replayed = health.replayed.max(replayed);
        health.replayed_at = Some(now);
        drop(health);
        replica.up.set(1.0);
        replica
            .lag
            .set(lag.map_or(f64::INFINITY, |lag| lag.as_secs_f64()));
    }

    /// Records whether the primary answered a probe just now, and returns
    /// for how long it has not (zero when it did). A failover shows as a
    /// few seconds of this; `/readyz` gives it `primary_grace` before
    /// calling the instance unready.
    pub fn primary_answered(&self, answered: bool) -> Duration {
        let mut since = self
            .primary_down_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if answered {
            if let Some(down_since) = since.take() {
                tracing::info!(down_for = ?down_since.elapsed(), "the primary answers again");
            }
            return Duration::ZERO;
        }
        since.get_or_insert_with(Instant::now).elapsed()
    }

    /// Each replica's name and whether it answers now (for `/readyz`).
    pub async fn replicas_answering(&self, timeout: Duration) -> Vec<(String, bool)> {
        futures::future::join_all(self.replicas.iter().map(|replica| async move {
            let answers =
                tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&replica.pool))
                    .await
                    .is_ok_and(|r| r.is_ok());
            (replica.label.clone(), answers)
        }))
        .await
    }

    /// Closes every pool (at shutdown).
    pub async fn close(&self) {
        self.primary.close().await;
        for replica in &self.replicas {
            replica.pool.close().await;
        }
    }
}

/// A standby cancelling a query because replaying the primary's changes
/// needed what the query held (SQLSTATE 40001, "conflict with recovery").
fn is_recovery_conflict(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// Probes the replicas (when there are any) once before returning, so reads
/// can use them from the first request, then every `replica_probe_interval`
/// for as long as `state` lives.
pub async fn watch_replicas(state: &AppState) {
    if !state.db.has_replicas() {
        return;
    }
    state.db.probe().await;
    let state: WeakAppState = state.downgrade();
    let every = match state.upgrade() {
        Some(state) => state.db.limits.probe_interval,
        None => return,
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(state) = state.upgrade() else { return };
            state.db.probe().await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_labels_are_the_metric_contract() {
        let labels: Vec<_> = Fallback::ALL.iter().map(|f| f.label()).collect();
        assert_eq!(labels, ["error", "timeout", "lagging", "conflict"]);
        for (i, why) in Fallback::ALL.iter().enumerate() {
            assert_eq!(*why as usize, i);
        }
    }

    #[test]
    fn positions_compare_as_numbers() {
        assert!(Lsn(0x1_0000_0000) > Lsn(0xFFFF_FFFF));
        assert!(Lsn::MAX > Lsn(u64::MAX - 1));
    }
}
