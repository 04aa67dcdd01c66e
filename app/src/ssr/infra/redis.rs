//! The Redis connection every service uses: one standalone server, or a
//! Redis Cluster. Both speak `ConnectionLike`, so `redis::cmd`, pipelines,
//! scripts and `AsyncCommands` work on either.
//!
//! What a cluster demands of the callers: every key that one command, one
//! script or one `MULTI` touches together must hash to one slot, so such
//! keys share a hash tag (`{…}`: `profile:{ada}` and `profile_floor:{ada}`).
//! Keys used alone need none. Where two keys must change together but
//! cannot share a tag (a session and its user's list of sessions: the
//! cookie names the session, not the user), they are written one after the
//! other in the order whose interruption is harmless (see `sessions.rs`).
//!
//! Which one is named by the URL ([`RedisTarget::parse`]): `redis://…` or
//! `rediss://…` is one server; `redis+cluster://host:port,host:port,…` (or
//! `rediss+cluster://…`) is a cluster, reached through any of the seed
//! nodes listed (the client learns the rest, and every change of slots,
//! from them).

use std::num::NonZeroUsize;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::redact::redact;

/// Where Redis is: one server, or the seed nodes of a cluster. Its `Debug`
/// shows the URLs without their passwords.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A `redis://` (or `rediss://`) URL, as the redis crate reads it.
    Standalone(String),
    /// One `redis://host:port` URL per seed node, credentials repeated.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Reads `REDIS_URL`'s forms (see the module comment).
    pub fn parse(url: &str) -> Result<Self, String> {
        let cluster = [
            ("redis+cluster://", "redis://"),
            ("rediss+cluster://", "rediss://"),
        ]
        .into_iter()
        .find_map(|(scheme, node_scheme)| url.strip_prefix(scheme).map(|rest| (rest, node_scheme)));
        let Some((rest, node_scheme)) = cluster else {
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                return Ok(Self::Standalone(url.to_owned()));
            }
            return Err(
                "expected redis://host:port, rediss://…, or redis+cluster://host:port,host:port"
                    .to_owned(),
            );
        };
        let (credentials, hosts) = match rest.rsplit_once('@') {
            Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|host| !host.is_empty())
            .map(|host| format!("{node_scheme}{credentials}{host}"))
            .collect();
        if nodes.is_empty() || hosts.contains('/') {
            return Err("a cluster URL lists host:port pairs, comma-separated, and no path".into());
        }
        Ok(Self::Cluster(nodes))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standalone(url) => f.debug_tuple("Standalone").field(&redact(url)).finish(),
            Self::Cluster(nodes) => f
                .debug_tuple("Cluster")
                .field(&nodes.iter().map(|n| redact(n)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// How long to wait for a connection and for each answer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// The services' handle: 2 s to connect or answer, one retry.
pub const SERVICE_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(2),
    response: Duration::from_secs(2),
};

/// Every cluster client gives up on a node that stays unreachable (a dead
/// master, once its replica is promoted) after this many attempts, about
/// 6 s of reconnecting. Without a limit, a connection that never sends to
/// that node's old slots (an event consumer reading one partition, the
/// invalidations subscriber) learns nothing of the new layout and retries
/// it, logging a warning, every second for as long as the process lives.
/// A node given up is connected again as soon as the slots name it.
pub const NODE_CONNECTION_ATTEMPTS: NonZeroUsize = match NonZeroUsize::new(10) {
    Some(attempts) => attempts,
    None => panic!("not zero"),
};

fn cluster_client(nodes: &[String], timeouts: Timeouts) -> redis::RedisResult<ClusterClient> {
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(timeouts.connect)
        .response_timeout(timeouts.response)
        // A request that meets a failover (MOVED, a connection refused while
        // a replica is promoted) is retried with backoff, up to about 3 s.
        .retries(6)
        .min_retry_wait(50)
        .max_retry_wait(1_000)
        .max_connection_attempts(NODE_CONNECTION_ATTEMPTS)
        .build()
}

/// Opens a handle on `target`: a reconnecting connection manager, or a
/// cluster connection (which follows slot moves and failovers by itself).
pub async fn connect(target: &RedisTarget, timeouts: Timeouts) -> redis::RedisResult<Redis> {
    match target {
        RedisTarget::Standalone(url) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeouts.connect))
                .set_response_timeout(Some(timeouts.response))
                .set_number_of_retries(1);
            let client = redis::Client::open(url.as_str())?;
            Ok(Redis::Standalone(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster(nodes) => Ok(Redis::Cluster(
            cluster_client(nodes, timeouts)?
                .get_async_connection()
                .await?,
        )),
    }
}

/// A cheap handle (cloning shares the underlying connection), which
/// reconnects by itself after Redis comes back.
#[derive(Clone)]
pub enum Redis {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for Redis {
    fn from(manager: ConnectionManager) -> Self {
        Redis::Standalone(manager)
    }
}

impl From<ClusterConnection> for Redis {
    fn from(cluster: ClusterConnection) -> Self {
        Redis::Cluster(cluster)
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Standalone(c) => c.req_packed_command(cmd),
            Redis::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Redis::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Redis::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Standalone(c) => c.get_db(),
            Redis::Cluster(c) => c.get_db(),
        }
    }
}

impl Redis {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }

    /// `CLUSTER INFO` as one node (any) sees it; `None` on a standalone
    /// server, which has no cluster state.
    pub async fn cluster_health(&self) -> redis::RedisResult<Option<ClusterHealth>> {
        let Redis::Cluster(cluster) = self else {
            return Ok(None);
        };
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut cluster.clone())
            .await?;
        Ok(Some(ClusterHealth::parse(&info)))
    }
}

/// The two lines of `CLUSTER INFO` the alerts read (deploy/monitoring:
/// `FolioRedisClusterDegraded`, `FolioRedisClusterFailover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterHealth {
    /// `cluster_state:ok`: every slot has a master that answers.
    pub ok: bool,
    /// `cluster_current_epoch`: goes up with every failover (and slot move).
    pub current_epoch: u64,
}

impl ClusterHealth {
    fn parse(info: &str) -> Self {
        let field = |name: &str| {
            info.lines()
                .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
        };
        Self {
            ok: field("cluster_state") == Some("ok"),
            current_epoch: field("cluster_current_epoch")
                .and_then(|epoch| epoch.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// Opens connections of their own, for what must not share the services'
/// multiplexed handle: a blocking read (XREADGROUP BLOCK) would hold up
/// every command queued behind it, and its wait is longer than the shared
/// handle's 2 s response timeout.
#[derive(Clone)]
pub struct RedisConnector {
    target: RedisTarget,
}

impl RedisConnector {
    pub fn new(target: RedisTarget) -> Self {
        Self { target }
    }

    /// A connector for `url` (see [`RedisTarget::parse`]).
    pub fn open(url: &str) -> Result<Self, String> {
        RedisTarget::parse(url).map(Self::new)
    }

    /// A new connection (reconnecting by itself, like the shared one) whose
    /// commands may take up to `response_timeout`.
    pub async fn connect(&self, response_timeout: Duration) -> redis::RedisResult<Redis> {
        connect(
            &self.target,
            Timeouts {
                connect: Duration::from_secs(2),
                response: response_timeout,
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_server_or_a_cluster() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379"),
            Ok(RedisTarget::Standalone("redis://127.0.0.1:6379".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://10.0.0.1:7000, 10.0.0.2:7000/"),
            Ok(RedisTarget::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ]))
        );
        assert_eq!(
            RedisTarget::parse("rediss+cluster://folio:s%40cret@a:6380,b:6380"),
            Ok(RedisTarget::Cluster(vec![
                "rediss://folio:s%40cret@a:6380".into(),
                "rediss://folio:s%40cret@b:6380".into()
            ]))
        );
        for bad in ["", "http://x", "redis+cluster://", "redis+cluster://a:1/0"] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_info_gives_the_state_and_the_epoch() {
        let info = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n\
                    cluster_current_epoch:7\r\ncluster_my_epoch:2\r\n";
        assert_eq!(
            ClusterHealth::parse(info),
            ClusterHealth {
                ok: true,
                current_epoch: 7
            }
        );
        let failed = ClusterHealth::parse("cluster_state:fail\r\ncluster_current_epoch:8\r\n");
        assert!(!failed.ok);
        assert_eq!(failed.current_epoch, 8);
    }
}
