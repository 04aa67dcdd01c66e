//! Sessions live in Redis, so any app instance can serve any request.
//!
//! The browser holds a 256-bit random token. Redis holds the session under the
//! SHA-256 of that token: a dump of Redis (a backup, a replica, a `MONITOR`)
//! reveals no token that could be replayed. The same digest is the session's
//! public id (for "sign out that device"). A per-user set indexes a user's
//! sessions so that "sign out everywhere" and a password change can end them.
//!
//! Two clocks end a session: idle (sliding, refreshed on use, enforced by the
//! key's TTL) and absolute (from creation, checked on every load).
//!
//! The session and the user's set are two keys that a Redis Cluster puts in
//! different slots (the cookie names the session, not its user, so they
//! cannot share a hash tag), so they are not changed in one `MULTI`: each
//! change is two commands, in the order whose interruption is harmless. A
//! session is listed in the set before it exists, and removed from the set
//! only after it is gone: an interrupted change leaves at worst a listed id
//! without a session (pruned by [`list`]), never a live session that "sign
//! out everywhere" would not find.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dto::SignedInUser;
use crate::ssr::request::RequestMeta;
use crate::ssr::{AppState, Error, Result};

const TOKEN_BYTES: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Hex SHA-256 of the token; not secret.
    #[serde(skip)]
    pub id: String,
    pub user_id: i64,
    pub username: String,
    pub created_at_ms: u64,
    pub last_seen_ms: u64,
    pub user_agent: String,
    pub ip: String,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 256 bits from the OS CSPRNG, hex-encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn session_id(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn session_key(state: &AppState, id: &str) -> String {
    state.key(&format!("session:{id}"))
}

fn user_index_key(state: &AppState, user_id: i64) -> String {
    state.key(&format!("user_sessions:{user_id}"))
}

/// How long the key may live: until idle expiry, but never past the
/// absolute deadline.
fn ttl_ms(state: &AppState, session: &Session, now: u64) -> u64 {
    let idle = state.config.session_idle.as_millis() as u64;
    let absolute_end = session.created_at_ms + state.config.session_absolute.as_millis() as u64;
    idle.min(absolute_end.saturating_sub(now)).max(1)
}

/// A session just started: the browser gets `token` in its cookie, for
/// `max_age`.
pub struct NewSession {
    pub user: SignedInUser,
    pub token: String,
    pub max_age: Duration,
    /// A new device cookie for the browser (`device_cookies`): set after a
    /// sign-up or a sign-in with the right password.
    pub device_cookie: Option<String>,
}

fn serialize(session: &Session) -> Result<String> {
    serde_json::to_string(session).map_err(|e| Error::Internal(format!("session to JSON: {e}")))
}

/// Creates a session for the user, from the device and address of `meta`.
pub async fn create(
    state: &AppState,
    user_id: i64,
    username: &str,
    meta: &RequestMeta,
) -> Result<NewSession> {
    let token = new_token();
    let now = now_ms();
    let session = Session {
        id: session_id(&token),
        user_id,
        username: username.to_owned(),
        created_at_ms: now,
        last_seen_ms: now,
        user_agent: meta.user_agent.clone(),
        ip: meta.client_ip.to_string(),
    };
    let body = serialize(&session)?;
    let index = user_index_key(state, user_id);
    let mut redis = state.redis.clone();
    // Listed first (see the module comment); one key, one slot.
    redis::pipe()
        .sadd(&index, &session.id)
        .ignore()
        // The index outlives no session it lists.
        .pexpire(&index, state.config.session_absolute.as_millis() as i64)
        .ignore()
        .query_async::<()>(&mut redis)
        .await?;
    redis::cmd("SET")
        .arg(session_key(state, &session.id))
        .arg(body)
        .arg("PX")
        .arg(ttl_ms(state, &session, now))
        .query_async::<()>(&mut redis)
        .await?;
    state.metrics.sessions_created.increment(1);
    state.recent_writes.learn_owner(&session.id, user_id);
    Ok(NewSession {
        device_cookie: None,
        user: SignedInUser {
            username: username.to_owned(),
        },
        token,
        max_age: state.config.session_absolute,
    })
}

/// The session `token` names, read only (no refresh, no clean-up): for the
/// log line of a refused request, which must not keep a session alive.
pub async fn peek(state: &AppState, token: &str) -> Result<Option<Session>> {
    if !is_well_formed(token) {
        return Ok(None);
    }
    fetch(state, &session_id(token)).await
}

async fn fetch(state: &AppState, id: &str) -> Result<Option<Session>> {
    let mut redis = state.redis.clone();
    let raw: Option<String> = redis.get(session_key(state, id)).await?;
    Ok(raw
        .and_then(|raw| serde_json::from_str::<Session>(&raw).ok())
        .map(|mut session| {
            session.id = id.to_owned();
            session
        }))
}

/// Loads the session named by `token` and slides its idle deadline.
pub async fn load(state: &AppState, token: &str) -> Result<Option<Session>> {
    let id = session_id(token);
    let Some(mut session) = fetch(state, &id).await? else {
        return Ok(None);
    };
    let now = now_ms();
    let absolute = state.config.session_absolute.as_millis() as u64;
    let idle = state.config.session_idle.as_millis() as u64;
    if now >= session.created_at_ms + absolute || now >= session.last_seen_ms + idle {
        destroy(state, &session).await?;
        return Ok(None);
    }
    // Refreshing costs a write per request; once a second is precise enough,
    // but always well within the idle timeout, or a session in steady use
    // would still reach it between two refreshes.
    let refresh_after = (idle / 4).min(1000);
    if now.saturating_sub(session.last_seen_ms) >= refresh_after {
        session.last_seen_ms = now;
        let body = serialize(&session)?;
        let mut redis = state.redis.clone();
        // XX: never resurrect a session that was deleted meanwhile (logout
        // racing with a request).
        redis::cmd("SET")
            .arg(session_key(state, &id))
            .arg(body)
            .arg("PX")
            .arg(ttl_ms(state, &session, now))
            .arg("XX")
            .query_async::<()>(&mut redis)
            .await?;
    }
    state.recent_writes.learn_owner(&id, session.user_id);
    Ok(Some(session))
}

pub async fn destroy(state: &AppState, session: &Session) -> Result<()> {
    destroy_by_id(state, session.user_id, &session.id).await
}

pub async fn destroy_by_id(state: &AppState, user_id: i64, id: &str) -> Result<()> {
    let mut redis = state.redis.clone();
    // Gone first, unlisted after (see the module comment).
    let _: () = redis.del(session_key(state, id)).await?;
    let _: () = redis.srem(user_index_key(state, user_id), id).await?;
    state.metrics.sessions_ended.increment(1);
    Ok(())
}

/// The user's live sessions, oldest first; index entries of expired sessions
/// are pruned on the way.
pub async fn list(state: &AppState, user_id: i64) -> Result<Vec<Session>> {
    let mut redis = state.redis.clone();
    let index = user_index_key(state, user_id);
    let ids: Vec<String> = redis.smembers(&index).await?;
    let mut live = Vec::with_capacity(ids.len());
    for id in ids {
        match fetch(state, &id).await? {
            Some(session) => live.push(session),
            None => {
                let _: () = redis.srem(&index, &id).await?;
            }
        }
    }
    live.sort_by_key(|s| s.created_at_ms);
    Ok(live)
}

/// Ends every session of the user except `keep` (the caller's own, when a
/// password change should not sign out the device that made it).
pub async fn destroy_all(state: &AppState, user_id: i64, keep: Option<&str>) -> Result<u64> {
    let mut redis = state.redis.clone();
    let index = user_index_key(state, user_id);
    let ids: Vec<String> = redis.smembers(&index).await?;
    let mut ended = 0;
    for id in ids.iter().filter(|id| Some(id.as_str()) != keep) {
        destroy_by_id(state, user_id, id).await?;
        ended += 1;
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_differ() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert!(is_well_formed(&a));
        assert_ne!(a, b);
        assert_ne!(session_id(&a), a, "the stored id must not be the token");
    }

    #[test]
    fn malformed_tokens_are_refused_before_redis() {
        assert!(!is_well_formed("abc"));
        assert!(!is_well_formed(&"g".repeat(64)));
        assert!(!is_well_formed(&"a".repeat(65)));
    }
}
