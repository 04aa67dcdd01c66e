//! Public profiles: cache-aside over Postgres, with stampede protection.
//!
//! Read path for `profile:v1:{username}`:
//! 0. The in-process L1: a short-lived copy (`profile_l1_ttl`, bounded to
//!    `profile_l1_capacity` entries) answers without any I/O. It is used only
//!    while this instance is subscribed to the invalidation channel
//!    (`{prefix}profile_invalidations`): `update` deletes the Redis entry, drops
//!    its own L1 entry synchronously, then publishes the username, and every
//!    instance drops its copy on the message. When the subscription is lost the
//!    L1 is cleared and bypassed until it is back (reconnect with backoff), so
//!    the L1 can never serve longer than Redis would have without a signal.
//!    Every invalidation bumps an epoch; a read that started before one does
//!    not store what it read, so a slow read cannot resurrect an old value.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use rand::{Rng, RngCore};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};

use super::retry::{with_retry, Backoff};
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
    /// Reads answered by a cache, the L1 or Redis.
    pub hits: AtomicU64,
    /// Of `hits`, those answered by the in-process L1.
    pub l1_hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub db_queries: AtomicU64,
}

/// The channel (under the Redis prefix) on which `update` publishes the
/// username whose profile changed.
pub const INVALIDATION_CHANNEL: &str = "profile_invalidations";

struct L1Entry {
    expires: Instant,
    value: Option<Profile>,
}

/// The in-process cache in front of Redis.
struct L1 {
    ttl: Duration,
    capacity: usize,
    /// Subscribed to the invalidation channel: only then is the L1 used.
    live: AtomicBool,
    /// Bumped by every invalidation (see the module comment).
    epoch: AtomicU64,
    entries: Mutex<HashMap<String, L1Entry>>,
}

impl L1 {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, L1Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every operation is one call on it): keep using it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(Some(profile))`, `Some(None)` for a cached absence, `None` for a
    /// miss.
    fn get(&self, name: &str) -> Option<Option<Profile>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries();
        let entry = entries.get(name)?;
        (entry.expires > Instant::now()).then(|| entry.value.clone())
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores what a read found, unless an invalidation happened since the
    /// read began (`epoch` was taken before it).
    fn put(&self, name: &str, value: Option<Profile>, epoch: u64) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries();
        // Under the lock: invalidations bump the epoch under it too.
        if self.epoch() != epoch {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(name) {
            entries.retain(|_, entry| entry.expires > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            name.to_owned(),
            L1Entry {
                expires: now + self.ttl,
                value,
            },
        );
    }

    fn invalidate(&self, name: &str) {
        let mut entries = self.entries();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.remove(name);
    }

    fn clear(&self) {
        let mut entries = self.entries();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[derive(Clone)]
pub struct ProfileCache {
    config: Arc<ServiceConfig>,
    inflight: Arc<Mutex<HashMap<String, Load>>>,
    l1: Arc<L1>,
    pub stats: Arc<CacheStats>,
}

impl ProfileCache {
    pub fn new(config: Arc<ServiceConfig>) -> Self {
        let l1 = Arc::new(L1 {
            ttl: config.profile_l1_ttl,
            capacity: config.profile_l1_capacity.max(1),
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            entries: Mutex::default(),
        });
        Self {
            config,
            inflight: Arc::default(),
            l1,
            stats: Arc::default(),
        }
    }

    /// Whether the L1 is in use (subscribed to invalidations).
    pub fn l1_live(&self) -> bool {
        self.l1.live.load(Ordering::Acquire)
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
    if !state.config.profile_cache_enabled {
        return single_flight(state, name).await?.ok_or(AppError::NotFound);
    }
    let stats = &state.profiles.stats;
    let l1 = &state.profiles.l1;
    if let Some(cached) = l1.get(name) {
        stats.hits.fetch_add(1, Ordering::Relaxed);
        stats.l1_hits.fetch_add(1, Ordering::Relaxed);
        return cached.ok_or(AppError::NotFound);
    }
    let epoch = l1.epoch();
    let mut redis = state.redis.clone();
    match read_cached(&mut redis, &cache_key(state, name)).await {
        Ok(Some(cached)) => {
            stats.hits.fetch_add(1, Ordering::Relaxed);
            l1.put(name, cached.clone(), epoch);
            return cached.ok_or(AppError::NotFound);
        }
        Ok(None) => {}
        Err(error) => redis_failed(state, &error, "get"),
    }
    stats.misses.fetch_add(1, Ordering::Relaxed);
    let found = single_flight(state, name).await?;
    l1.put(name, found.clone(), epoch);
    found.ok_or(AppError::NotFound)
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

/// The one Postgres read of a public profile; idempotent, so retried with
/// backoff on transient failures.
async fn query(state: &AppState, name: &str) -> Result<Option<Profile>, AppError> {
    with_retry(Backoff::READ, || async {
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
    })
    .await
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
    // This instance's next read must see the edit: drop our copy now, not
    // when our own message comes back.
    state.profiles.l1.invalidate(&session.username);
    let published: Result<i64, _> = redis
        .publish(state.key(INVALIDATION_CHANNEL), &session.username)
        .await;
    if let Err(error) = published {
        // Other instances keep their copy until its L1 TTL (seconds).
        redis_failed(state, &error, "publish");
    }
    own(state, session).await
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
                redis::ErrorKind::IoError,
                "subscribe timed out",
            )))
        })
}

/// Subscribes this instance to profile invalidations (the first attempt
/// before returning, so the L1 is live from the first request when Redis
/// answers), then keeps the subscription up in a background task for as long
/// as `state` lives. `client` opens the dedicated pub/sub connection.
pub async fn listen_for_invalidations(state: &AppState, client: redis::Client) {
    let channel = state.key(INVALIDATION_CHANNEL);
    let first = match subscribe(&client, &channel).await {
        Ok(pubsub) => Some(pubsub),
        Err(error) => {
            tracing::warn!(error = %error, "cannot subscribe to profile invalidations; in-process cache off until then");
            None
        }
    };
    if first.is_some() {
        state.profiles.l1.clear();
        state.profiles.l1.live.store(true, Ordering::Release);
    }
    let l1 = Arc::downgrade(&state.profiles.l1);
    tokio::spawn(keep_listening(l1, client, channel, first));
}

async fn keep_listening(
    l1: Weak<L1>,
    client: redis::Client,
    channel: String,
    mut first: Option<redis::aio::PubSub>,
) {
    let mut backoff = RESUBSCRIBE_MIN;
    loop {
        let pubsub = match first.take() {
            Some(pubsub) => pubsub,
            None => {
                if l1.strong_count() == 0 {
                    return;
                }
                match subscribe(&client, &channel).await {
                    Ok(pubsub) => {
                        let Some(cache) = l1.upgrade() else { return };
                        // Messages were missed while we were away.
                        cache.clear();
                        cache.live.store(true, Ordering::Release);
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
            let Some(cache) = l1.upgrade() else { return };
            match message.get_payload::<String>() {
                Ok(name) => cache.invalidate(&name),
                Err(_) => cache.clear(),
            }
        }
        let Some(cache) = l1.upgrade() else { return };
        cache.live.store(false, Ordering::Release);
        cache.clear();
        tracing::warn!(
            "profile invalidation subscription lost; in-process cache off until it is back"
        );
    }
}
