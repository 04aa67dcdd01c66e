//! How every instance learns that a profile changed.
//!
//! A write (an edit, a registration) calls [`invalidate`] after its commit:
//! one Lua script raises the profile's floor in Redis and deletes an older
//! cached entry; this instance raises its own floor at once (its next read
//! must see the write, not wait for its own message), then publishes
//! `"<version>:<username>"` on `{prefix}profile_invalidations`. Every
//! instance raises its floor on the message.
//!
//! When the subscription is lost, the L1 is cleared and bypassed until it is
//! back (resubscribing with backoff), so the L1 never serves longer than
//! Redis would have without a signal.
//!
//! On a Redis Cluster the same channel is a sharded one (SPUBLISH and
//! SSUBSCRIBE): classic PUBLISH would be copied to every node of the
//! cluster, a sharded message goes only to the replicas of the shard that
//! owns the channel's slot. The cluster client follows the channel to a
//! promoted replica after a failover and subscribes again by itself; every
//! disconnection it reports turns the L1 off until a new subscription is
//! confirmed. None of this can fail a write: a
//! failure is logged and counted, and the floors in Redis and the short L1
//! TTL bound what a reader can miss.

use std::sync::LazyLock;
use std::time::Duration;

use futures::StreamExt;
use redis::{PushKind, Script};

use super::cache::{entry_key, floor_key};
use crate::domain::Username;
use crate::ssr::state::WeakAppState;
use crate::ssr::{AppState, RedisTarget};

/// The channel (under the Redis prefix) of invalidation messages.
pub const INVALIDATION_CHANNEL: &str = "profile_invalidations";

/// KEYS: entry, floor. ARGV: new version, floor TTL (ms).
static RAISE_FLOOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local version = tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
if version > floor then floor = version end
redis.call('SET', KEYS[2], floor, 'PX', ARGV[2])
local current = redis.call('GET', KEYS[1])
if current then
  local current_version = tonumber(string.match(current, '^(%d+):'))
  if (not current_version) or current_version < floor then redis.call('DEL', KEYS[1]) end
end
return floor
"#,
    )
});

fn invalidation_failed(state: &AppState, error: &redis::RedisError, what: &str) {
    state.metrics.profile_cache_errors.increment(1);
    tracing::warn!(error = %error, what, "profile invalidation incomplete");
}

/// Announces that `username`'s profile is now at `version` (see the module
/// comment). `i32::MAX` says "gone": no cached version may be served.
pub async fn invalidate(state: &AppState, username: &Username, version: i32) {
    let name = username.as_str();
    let mut redis = state.redis.clone();
    let raised: Result<i64, _> = RAISE_FLOOR
        .key(entry_key(state, name))
        .key(floor_key(state, name))
        .arg(version)
        .arg(state.config.lag_budget.as_millis() as u64)
        .invoke_async(&mut redis)
        .await;
    if let Err(error) = raised {
        // Readers of Redis may see the old entry until its TTL.
        invalidation_failed(state, &error, "floor");
    }
    state.profiles.raise_floor(name, version).await;
    let publish = if redis.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let published: Result<i64, _> = redis::cmd(publish)
        .arg(state.key(INVALIDATION_CHANNEL))
        .arg(format!("{version}:{name}"))
        .query_async(&mut redis)
        .await;
    if let Err(error) = published {
        // Other instances keep their copy until its L1 TTL (seconds).
        invalidation_failed(state, &error, "publish");
    }
}

const RESUBSCRIBE_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(5);
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "subscribe timed out",
            )))
        })
}

/// Subscribes this instance to profile invalidations (the first attempt
/// before returning, so the L1 is live from the first request when Redis
/// answers), then keeps the subscription up in a background task for as long
/// as `state` lives, on a dedicated connection to `target`.
pub async fn listen_for_invalidations(state: &AppState, target: RedisTarget) {
    match target {
        RedisTarget::Standalone(url) => match redis::Client::open(url.as_str()) {
            Ok(client) => listen_on_server(state, client).await,
            Err(error) => tracing::warn!(error = %error, "profile invalidations: bad Redis URL"),
        },
        RedisTarget::Cluster(nodes) => listen_on_cluster(state, nodes).await,
    }
}

/// A sharded subscription through a cluster connection of its own (RESP3:
/// messages and the client's disconnection notices arrive as pushes).
async fn listen_on_cluster(state: &AppState, nodes: Vec<String>) {
    let channel = state.key(INVALIDATION_CHANNEL);
    let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
    let client = redis::cluster::ClusterClientBuilder::new(nodes)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .push_sender(pushes)
        .connection_timeout(SUBSCRIBE_TIMEOUT)
        .response_timeout(SUBSCRIBE_TIMEOUT)
        .max_connection_attempts(crate::ssr::infra::redis::NODE_CONNECTION_ATTEMPTS)
        .build();
    let connect = async {
        let mut connection = client?.get_async_connection().await?;
        connection.ssubscribe(&channel).await?;
        Ok::<_, redis::RedisError>(connection)
    };
    let mut connection = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "cannot subscribe to profile invalidations on the cluster; in-process cache off");
            return;
        }
        Err(_) => {
            tracing::warn!("subscribing to profile invalidations on the cluster timed out; in-process cache off");
            return;
        }
    };
    let weak = state.downgrade();
    tokio::spawn(async move {
        while let Some(push) = received.recv().await {
            let Some(state) = weak.upgrade() else { return };
            match push.kind {
                PushKind::SSubscribe => {
                    state.profiles.set_live(true);
                    tracing::info!("subscribed to profile invalidations (sharded)");
                }
                PushKind::SMessage => {
                    // [channel, payload]
                    let payload = push
                        .data
                        .get(1)
                        .and_then(|value| redis::from_redis_value_ref::<String>(value).ok());
                    match payload.as_deref().and_then(parse_message) {
                        Some((version, name)) => state.profiles.raise_floor(name, version).await,
                        None => state.profiles.forget_all().await,
                    }
                }
                PushKind::Disconnection | PushKind::SUnsubscribe => {
                    // Perhaps the channel's node: off until a subscription
                    // is confirmed again. The client resubscribes by itself
                    // when it reconnects; asking again covers a lost node
                    // that was not the channel's (no confirmation would
                    // come), and is answered once the cluster can.
                    state.profiles.set_live(false);
                    drop(state);
                    tracing::warn!(kind = ?push.kind, "profile invalidations interrupted; in-process cache off until resubscribed");
                    let mut backoff = RESUBSCRIBE_MIN;
                    loop {
                        match tokio::time::timeout(
                            SUBSCRIBE_TIMEOUT,
                            connection.ssubscribe(&channel),
                        )
                        .await
                        {
                            Ok(Ok(())) => break,
                            _ if !weak.is_alive() => return,
                            _ => {
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    });
}

/// A classic subscription on a server of its own.
async fn listen_on_server(state: &AppState, client: redis::Client) {
    let channel = state.key(INVALIDATION_CHANNEL);
    let first = match subscribe(&client, &channel).await {
        Ok(pubsub) => {
            state.profiles.set_live(true);
            Some(pubsub)
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot subscribe to profile invalidations; in-process cache off until then");
            None
        }
    };
    tokio::spawn(keep_listening(state.downgrade(), client, channel, first));
}

async fn keep_listening(
    state: WeakAppState,
    client: redis::Client,
    channel: String,
    mut first: Option<redis::aio::PubSub>,
) {
    let mut backoff = RESUBSCRIBE_MIN;
    loop {
        let pubsub = match first.take() {
            Some(pubsub) => pubsub,
            None => {
                if !state.is_alive() {
                    return;
                }
                match subscribe(&client, &channel).await {
                    Ok(pubsub) => {
                        let Some(state) = state.upgrade() else { return };
                        state.profiles.set_live(true);
                        tracing::info!(
                            "resubscribed to profile invalidations; in-process cache on"
                        );
                        pubsub
                    }
                    Err(error) => {
                        tracing::debug!(error = %error, ?backoff, "resubscribing to profile invalidations failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RESUBSCRIBE_MAX);
                        continue;
                    }
                }
            }
        };
        backoff = RESUBSCRIBE_MIN;
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Some(state) = state.upgrade() else { return };
            let payload = message.get_payload::<String>().ok();
            match payload.as_deref().and_then(parse_message) {
                Some((version, name)) => state.profiles.raise_floor(name, version).await,
                None => state.profiles.forget_all().await,
            }
        }
        let Some(state) = state.upgrade() else { return };
        state.profiles.set_live(false);
        tracing::warn!(
            "profile invalidation subscription lost; in-process cache off until it is back"
        );
    }
}

/// `"<version>:<username>"`.
fn parse_message(payload: &str) -> Option<(i32, &str)> {
    let (version, name) = payload.split_once(':')?;
    Some((version.parse().ok()?, name))
}

#[cfg(test)]
mod tests {
    use super::parse_message;

    #[test]
    fn messages_name_the_version_and_the_profile() {
        assert_eq!(parse_message("7:ada"), Some((7, "ada")));
        assert_eq!(parse_message("ada"), None);
        assert_eq!(parse_message("x:ada"), None);
    }
}
