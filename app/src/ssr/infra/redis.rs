//! The Redis connection every service uses: one standalone server, or a
//! Redis Cluster. Both speak `ConnectionLike`, so `redis::cmd`, pipelines,
//! scripts and `AsyncCommands` work on either.
//!
//! What a cluster demands of the callers: every key that one command, one
//! script or one `MULTI` touches together must hash to one slot, so such
//! keys share a hash tag (`{…}`: `profile:{ada}` and `profile_floor:{ada}`).
//! Keys used alone need none.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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

/// Opens connections of their own, for what must not share the services'
/// multiplexed handle: a blocking read (XREADGROUP BLOCK) would hold up
/// every command queued behind it, and its wait is longer than the shared
/// handle's 2 s response timeout.
#[derive(Clone)]
pub struct RedisConnector {
    client: redis::Client,
}

impl RedisConnector {
    pub fn new(client: redis::Client) -> Self {
        Self { client }
    }

    /// A new connection (reconnecting by itself, like the shared one) whose
    /// commands may take up to `response_timeout`.
    pub async fn connect(
        &self,
        response_timeout: std::time::Duration,
    ) -> redis::RedisResult<Redis> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(1);
        Ok(Redis::Standalone(
            ConnectionManager::new_with_config(self.client.clone(), config).await?,
        ))
    }
}
