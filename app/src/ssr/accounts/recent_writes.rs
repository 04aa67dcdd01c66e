//! What each user wrote within the lag budget, so that the writer's own
//! reads show it at once, on every instance (read-your-writes).
//!
//! After a write commits, [`remember`] keeps in Redis, under the user
//! (`recent_writes:{user:<id>}`, a hash living for the lag budget):
//! - `lsn`: the primary's WAL position after the commit (with replicas
//!   only). The user's public reads go to a replica only once it has
//!   replayed that far (`infra::db`), as GitLab's load balancer does.
//! - `profile:<username>`: the profile version the write made. The next
//!   request of the user, on whatever instance, raises that instance's
//!   floor for the profile before reading, so its in-process cache cannot
//!   answer with the version before, even when the invalidation message has
//!   not arrived there yet.
//!
//! What a reader pays ([`freshness`]): anonymous, nothing; signed in, one
//! HGETALL of a key that is usually missing. The session → user mapping is
//! remembered per instance (it never changes), so the session itself is not
//! loaded again for this after its first request on an instance. When Redis
//! fails the reader's writes are unknown, and the primary answers.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands, Script};

use super::sessions;
use crate::ssr::infra::db::{Freshness, Lsn};
use crate::ssr::{profiles, AppState, Result, ServiceConfig};

/// This instance's memory of which user each session belongs to.
pub struct RecentWrites {
    owners: moka::sync::Cache<String, i64>,
}

impl RecentWrites {
    pub fn new(config: &ServiceConfig) -> Self {
        Self {
            owners: moka::sync::Cache::builder()
                .max_capacity(100_000)
                // A session outlives this only while in use.
                .time_to_idle(config.session_idle.min(Duration::from_secs(3600)))
                .build(),
        }
    }

    /// Called wherever a session is created or loaded: `session_id` belongs
    /// to `user_id` for as long as it lives.
    pub(super) fn learn_owner(&self, session_id: &str, user_id: i64) {
        if !self.owners.contains_key(session_id) {
            self.owners.insert(session_id.to_owned(), user_id);
        }
    }
}

fn key(state: &AppState, user_id: i64) -> String {
    state.key(&format!("recent_writes:{{user:{user_id}}}"))
}

/// KEYS: the user's hash. ARGV: TTL (ms), then field / value pairs. Each
/// field keeps the larger of its value and the stored one (two tabs saving
/// at once may finish in either order), and the hash lives for the TTL from
/// now. Values compare as Lua numbers: exact up to 2^53, i.e. 8 PiB of WAL.
static REMEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for i = 2, #ARGV, 2 do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > current then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#,
    )
});

/// Records a committed write of `user_id`: the primary's position now (when
/// there are replicas) and, if the write changed a public profile, its
/// name and new version. Called after the commit (and after
/// `profiles::invalidate`), before answering. Never fails the write: a
/// failure is logged and counted.
pub async fn remember(state: &AppState, user_id: i64, profile: Option<(&str, i32)>) {
    let mut fields: Vec<(String, String)> = Vec::with_capacity(2);
    if state.db.has_replicas() {
        let lsn = state.db.current_lsn().await.unwrap_or_else(|error| {
            // Not knowing how far the write went: the primary, for the budget.
            tracing::warn!(error = %error, "cannot read the primary's WAL position after a write");
            Lsn::MAX
        });
        fields.push(("lsn".to_owned(), lsn.0.to_string()));
    }
    if let Some((name, version)) = profile {
        fields.push((format!("profile:{name}"), version.to_string()));
    }
    if fields.is_empty() {
        return;
    }
    let mut invocation = REMEMBER.key(key(state, user_id));
    invocation.arg(state.config.lag_budget.as_millis() as u64);
    for (field, value) in &fields {
        invocation.arg(field).arg(value);
    }
    let mut redis = state.redis.clone();
    let stored: Result<i64, _> = invocation.invoke_async(&mut redis).await;
    if let Err(error) = stored {
        // The writer may be shown the version before for up to the lag
        // budget on an instance that has not heard of the write.
        state.metrics.redis_errors.increment(1);
        tracing::warn!(error = %error, "cannot remember a write for read-your-writes");
    }
}

/// How fresh the public reads of the holder of session `token` must be; on
/// the way, raises this instance's floors for the profiles they wrote.
pub async fn freshness(state: &AppState, token: &str) -> Freshness {
    match recent(state, token).await {
        Ok(Some(writes)) => {
            let mut lsn = None;
            for (field, value) in &writes {
                if field == "lsn" {
                    lsn = value.parse().ok().map(Lsn);
                } else if let (Some(name), Ok(version)) =
                    (field.strip_prefix("profile:"), value.parse())
                {
                    profiles::learn_floor(state, name, version).await;
                }
            }
            lsn.map_or(Freshness::Any, Freshness::Since)
        }
        Ok(None) => Freshness::Any,
        Err(error) => {
            tracing::warn!(error = %error, "reader's recent writes unknown; reading from the primary");
            Freshness::Primary
        }
    }
}

/// The fields of the session owner's recent writes (`None`: no live session).
async fn recent(state: &AppState, token: &str) -> Result<Option<HashMap<String, String>>> {
    let id = sessions::session_id(token);
    let user_id = match state.recent_writes.owners.get(&id) {
        Some(user_id) => user_id,
        None => match sessions::load(state, token).await? {
            Some(session) => session.user_id,
            None => return Ok(None),
        },
    };
    let mut redis = state.redis.clone();
    let fields: HashMap<String, String> = redis.hgetall(key(state, user_id)).await?;
    Ok(Some(fields))
}
