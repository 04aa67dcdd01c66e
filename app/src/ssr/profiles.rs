//! Public profiles: cache-aside over Postgres, with stampede protection.
//!
//! Read path for `profile:v1:{username}`:
//! 1. Redis `GET`: a hit (present or "absent") answers at once.
//! 2. On a miss, an in-process single flight: however many requests of this
//!    instance miss the same key together, one of them goes on; the rest await
//!    its result.
//! 3. That one takes a short Redis lock (`SET NX PX`), so that of N instances
//!    missing together, one queries Postgres. The others poll the cache for a
//!    bounded time, then query anyway: a lost lock holder must not stall reads.
//! 4. The result is written back with a jittered TTL (so keys filled together
//!    do not expire together); unknown names are cached as absent, briefly.
//!
//! Redis failing never fails a read: it is logged and counted, and the read
//! goes to Postgres (still through the single flight).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use rand::{Rng, RngCore};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use super::sessions::Session;
use super::{rate_limit, AppState, ServiceConfig};
use crate::api::Profile;
use crate::domain::{ProfileUpdate, Username};
use crate::error::AppError;

const LOCK_TTL: Duration = Duration::from_secs(3);
const LOCK_WAIT: Duration = Duration::from_millis(1500);
const LOCK_POLL: Duration = Duration::from_millis(15);

static RELEASE_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"#,
    )
});

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cached {
    Present(Profile),
    Absent,
}

type Load = Shared<BoxFuture<'static, Result<Option<Profile>, AppError>>>;

/// Counters read by `/metrics` and by the stampede test.
#[derive(Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub db_queries: AtomicU64,
}

#[derive(Clone)]
pub struct ProfileCache {
    config: Arc<ServiceConfig>,
    inflight: Arc<Mutex<HashMap<String, Load>>>,
    pub stats: Arc<CacheStats>,
}

impl ProfileCache {
    pub fn new(config: Arc<ServiceConfig>) -> Self {
        Self {
            config,
            inflight: Arc::default(),
            stats: Arc::default(),
        }
    }

    fn jittered_ttl(&self) -> Duration {
        let factor = rand::thread_rng().gen_range(0.9..=1.1);
        self.config.profile_cache_ttl.mul_f64(factor)
    }
}

fn cache_key(state: &AppState, username: &str) -> String {
    state.key(&format!("profile:v1:{username}"))
}

fn redis_failed(state: &AppState, error: &redis::RedisError, what: &str) {
    state.profiles.stats.errors.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(error = %error, what, "profile cache unavailable; using postgres");
}

pub async fn get(state: &AppState, username: &Username) -> Result<Profile, AppError> {
    let name = username.as_str();
    if state.config.profile_cache_enabled {
        let mut redis = state.redis.clone();
        match read_cached(&mut redis, &cache_key(state, name)).await {
            Ok(Some(cached)) => {
                state.profiles.stats.hits.fetch_add(1, Ordering::Relaxed);
                return cached.ok_or(AppError::NotFound);
            }
            Ok(None) => {}
            Err(error) => redis_failed(state, &error, "get"),
        }
        state.profiles.stats.misses.fetch_add(1, Ordering::Relaxed);
    }
    single_flight(state, name).await?.ok_or(AppError::NotFound)
}

async fn single_flight(state: &AppState, name: &str) -> Result<Option<Profile>, AppError> {
    let (load, leader) = {
        let mut inflight = state
            .profiles
            .inflight
            .lock()
            .expect("inflight map poisoned");
        match inflight.get(name) {
            Some(load) => (load.clone(), false),
            None => {
                let load = fill(state.clone(), name.to_owned()).boxed().shared();
                inflight.insert(name.to_owned(), load.clone());
                (load, true)
            }
        }
    };
    let result = load.await;
    if leader {
        state
            .profiles
            .inflight
            .lock()
            .expect("inflight map poisoned")
            .remove(name);
    }
    result
}

/// One instance's miss: take the cross-instance lock, or wait for its holder.
async fn fill(state: AppState, name: String) -> Result<Option<Profile>, AppError> {
    if !state.config.profile_cache_enabled {
        return query(&state, &name).await;
    }
    let key = cache_key(&state, &name);
    let lock_key = state.key(&format!("lock:profile:v1:{name}"));
    let mut owner = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut owner);
    let owner = hex::encode(owner);
    let mut redis = state.redis.clone();

    let acquired: Result<Option<String>, _> = redis::cmd("SET")
        .arg(&lock_key)
        .arg(&owner)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL.as_millis() as u64)
        .query_async(&mut redis)
        .await;
    match acquired {
        Err(error) => {
            redis_failed(&state, &error, "lock");
            return query(&state, &name).await;
        }
        Ok(None) => {
            // Someone else is filling: poll the cache until it appears, for a
            // bounded time.
            let deadline = tokio::time::Instant::now() + LOCK_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(LOCK_POLL).await;
                match read_cached(&mut redis, &key).await {
                    Ok(Some(cached)) => return Ok(cached),
                    Ok(None) => {}
                    Err(error) => {
                        redis_failed(&state, &error, "poll");
                        break;
                    }
                }
            }
            return query(&state, &name).await;
        }
        Ok(Some(_)) => {}
    }

    // The previous holder may have filled the cache between our miss and our
    // lock: look once more before going to Postgres.
    if let Ok(Some(cached)) = read_cached(&mut redis, &key).await {
        release_lock(&state, &mut redis, &lock_key, &owner).await;
        return Ok(cached);
    }
    let result = query(&state, &name).await;
    if let Ok(found) = &result {
        let (value, ttl) = match found {
            Some(profile) => (
                Cached::Present(profile.clone()),
                state.profiles.jittered_ttl(),
            ),
            None => (Cached::Absent, state.config.profile_absent_ttl),
        };
        if let Ok(body) = serde_json::to_string(&value) {
            let written: Result<(), _> = redis.pset_ex(&key, body, ttl.as_millis() as u64).await;
            if let Err(error) = written {
                redis_failed(&state, &error, "set");
            }
        }
    }
    release_lock(&state, &mut redis, &lock_key, &owner).await;
    result
}

/// A cached entry: `Some(Some(profile))`, `Some(None)` for a cached absence,
/// `None` for a miss (or an unreadable entry, which the fill overwrites).
async fn read_cached(
    redis: &mut ConnectionManager,
    key: &str,
) -> Result<Option<Option<Profile>>, redis::RedisError> {
    let raw: Option<String> = redis.get(key).await?;
    Ok(raw
        .and_then(|raw| serde_json::from_str::<Cached>(&raw).ok())
        .map(|cached| match cached {
            Cached::Present(profile) => Some(profile),
            Cached::Absent => None,
        }))
}

/// Deletes the lock only if it is still ours (it may have expired and been
/// taken by another instance meanwhile).
async fn release_lock(
    state: &AppState,
    redis: &mut ConnectionManager,
    lock_key: &str,
    owner: &str,
) {
    let released: Result<i64, _> = RELEASE_LOCK
        .key(lock_key)
        .arg(owner)
        .invoke_async(redis)
        .await;
    if let Err(error) = released {
        redis_failed(state, &error, "unlock");
    }
}

const SELECT_PROFILE: &str =
    "SELECT u.username, u.display_name, p.bio, p.avatar_url, p.location, p.website, p.version
     FROM users u JOIN profiles p ON p.user_id = u.id";

type ProfileRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i32,
);

fn from_row(row: ProfileRow) -> Profile {
    let (username, display_name, bio, avatar_url, location, website, version) = row;
    Profile {
        username,
        display_name,
        bio,
        avatar_url,
        location,
        website,
        version,
    }
}

async fn query(state: &AppState, name: &str) -> Result<Option<Profile>, AppError> {
    state
        .profiles
        .stats
        .db_queries
        .fetch_add(1, Ordering::Relaxed);
    let row: Option<ProfileRow> =
        sqlx::query_as(&format!("{SELECT_PROFILE} WHERE u.username = $1"))
            .bind(name)
            .fetch_optional(&state.db)
            .await?;
    Ok(row.map(from_row))
}

/// The signed-in user's own profile, from Postgres: the edit form must start
/// from the current version, not a cached one.
pub async fn own(state: &AppState, session: &Session) -> Result<Profile, AppError> {
    let row: Option<ProfileRow> = sqlx::query_as(&format!("{SELECT_PROFILE} WHERE u.id = $1"))
        .bind(session.user_id)
        .fetch_optional(&state.db)
        .await?;
    row.map(from_row).ok_or(AppError::NotFound)
}

/// Commits the edit if nobody saved since `expected_version`, then deletes
/// the cache entry (the next read repopulates it from the committed row).
pub async fn update(
    state: &AppState,
    session: &Session,
    update: ProfileUpdate,
    expected_version: i32,
) -> Result<Profile, AppError> {
    rate_limit::require(
        state,
        &format!("profile_edit:user:{}", session.user_id),
        state.config.profile_edits_per_user,
    )
    .await?;

    let mut tx = state.db.begin().await?;
    let bumped: Option<i32> = sqlx::query_scalar(
        "UPDATE profiles SET bio = $1, avatar_url = $2, location = $3, website = $4, version = version + 1
         WHERE user_id = $5 AND version = $6 RETURNING version",
    )
    .bind(update.bio.as_str())
    .bind(update.avatar_url.as_ref().map(|v| v.as_str()))
    .bind(update.location.as_ref().map(|v| v.as_str()))
    .bind(update.website.as_ref().map(|v| v.as_str()))
    .bind(session.user_id)
    .bind(expected_version)
    .fetch_optional(&mut *tx)
    .await?;
    if bumped.is_none() {
        tx.rollback().await?;
        let current_version: i32 =
            sqlx::query_scalar("SELECT version FROM profiles WHERE user_id = $1")
                .bind(session.user_id)
                .fetch_one(&state.db)
                .await?;
        return Err(AppError::Conflict { current_version });
    }
    sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
        .bind(update.display_name.as_str())
        .bind(session.user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;

    let mut redis = state.redis.clone();
    let deleted: Result<(), _> = redis.del(cache_key(state, &session.username)).await;
    if let Err(error) = deleted {
        // The entry will expire on its TTL; until then readers may see the
        // old profile. Counted so that it is visible.
        redis_failed(state, &error, "invalidate");
    }
    own(state, session).await
}
