//! A sliding-window limiter, exact under concurrency.
//!
//! One Lua script runs atomically in Redis: drop entries older than the
//! window, count, and either record this attempt or refuse with the time until
//! the oldest entry leaves the window. Members are unique (a random id, not the
//! timestamp, which two concurrent attempts can share), and the clock is
//! Redis's own, so instances with skewed clocks agree.
//!
//! Counting attempts up front, rather than checking then recording failures,
//! is what makes "N concurrent attempts never exceed the limit" true: a check
//! followed by a later write would let a burst all pass the check. A caller
//! that succeeds can `release` its slot, so only failures accumulate.

use std::sync::LazyLock;
use std::time::Duration;

use rand::RngCore;
use redis::Script;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::ssr::{AppState, Limit, Result};

static SLIDING_WINDOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local key = KEYS[1]
local window_ms = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local member = ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window_ms)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window_ms)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local retry_ms = window_ms
if oldest[2] then retry_ms = tonumber(oldest[2]) + window_ms - now end
return {0, 0, retry_ms}
"#,
    )
});

#[derive(Debug)]
pub struct Slot {
    key: String,
    member: String,
}

pub enum Decision {
    Allowed(Slot),
    Refused { retry_after: Duration },
}

/// Records one attempt under `name` (already namespaced by purpose, e.g.
/// `login:ip:1.2.3.4`) if the window has room.
pub async fn acquire(state: &AppState, name: &str, limit: Limit) -> Result<Decision> {
    let key = state.key(&format!("ratelimit:{name}"));
    let mut id = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut id);
    let member = hex::encode(id);
    let mut redis = state.redis.clone();
    let (allowed, _remaining, retry_ms): (i64, i64, i64) = SLIDING_WINDOW
        .key(&key)
        .arg(limit.window.as_millis() as u64)
        .arg(limit.max)
        .arg(&member)
        .invoke_async(&mut redis)
        .await?;
    if allowed == 1 {
        Ok(Decision::Allowed(Slot { key, member }))
    } else {
        // "login:ip", "register:ip", …: the kind of limit, not who hit it
        // (the metric's label must stay a small set).
        let limiter = name.split(':').take(2).collect::<Vec<_>>().join(":");
        // The log says who (ASVS V16; the client is the request span's).
        let subject = loggable(name.splitn(3, ':').nth(2).unwrap_or(""));
        tracing::info!(limiter, subject, "rate limit refused");
        state
            .metrics
            .counter("folio_rate_limit_rejections_total", &[("limiter", limiter)])
            .increment(1);
        Ok(Decision::Refused {
            retry_after: Duration::from_millis(retry_ms.max(1000) as u64),
        })
    }
}

/// Who a limit's name says hit it, as a log may hold it: an id, a network
/// or an already hashed identifier as it is (`user:42`, `203.0.113.7`,
/// `typed:9f86d081884c7d65`); anything else (an address someone typed) as
/// the first 16 hex digits of its SHA-256.
fn loggable(subject: &str) -> String {
    let plain = subject
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b));
    let names_a_person = subject.split(':').any(|part| {
        !part.is_empty()
            && part.bytes().any(|b| b.is_ascii_alphabetic())
            && !part.bytes().all(|b| b.is_ascii_hexdigit())
            && !["user", "typed", "device", "ip", "address"].contains(&part)
    });
    if plain && !names_a_person {
        subject.to_owned()
    } else {
        let digest = Sha256::digest(subject.as_bytes());
        format!("sha256:{}", hex::encode(&digest[..8]))
    }
}

/// Gives an attempt back (a successful login does not count against anyone).
pub async fn release(state: &AppState, slot: Slot) -> Result<()> {
    let mut redis = state.redis.clone();
    redis::cmd("ZREM")
        .arg(&slot.key)
        .arg(&slot.member)
        .query_async::<()>(&mut redis)
        .await?;
    Ok(())
}

/// `acquire`, with refusal turned into the typed error the UI shows.
pub async fn require(state: &AppState, name: &str, limit: Limit) -> Result<Slot> {
    match acquire(state, name, limit).await? {
        Decision::Allowed(slot) => Ok(slot),
        Decision::Refused { retry_after } => Err(AppError::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn subjects_that_name_a_person_are_hashed() {
        for plain in [
            "user:42",
            "203.0.113.7",
            "2001:db8:1:2::/64",
            "typed:9f86d081884c7d65",
        ] {
            assert_eq!(loggable(plain), plain);
        }
        for typed in ["ada@example.com", "alice", "address:ada@example.com"] {
            let logged = loggable(typed);
            assert!(logged.starts_with("sha256:"), "{typed}: {logged}");
            assert!(!logged.contains("ada") && !logged.contains("alice"));
        }
    }
}
