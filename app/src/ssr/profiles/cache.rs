//! The read path of a public profile: an in-process cache (L1), then Redis,
//! then Postgres (a replica when one is fresh enough, else the primary),
//! with stampede protection, and a rule that makes a stale fill impossible.
//!
//! **Versions only go forward.** Every cached value carries the profile's
//! version (an absent profile is version 0). A write leaves a *floor*, the
//! newest version it committed, in Redis (`profile_floor`, for the lag
//! budget) and in every instance's memory (through the invalidation
//! message, `invalidation.rs`, and through the writer's own next request,
//! `accounts::recent_writes`). A fill is one Lua script that refuses any
//! version below the floor Redis knows, and an L1 entry below this
//! instance's floor is a miss. A database answer below a floor is never
//! returned either: a refused fill, or an answer below this instance's
//! floor, is read again from the primary, which has every committed
//! version. So a read that started before an edit, or that a lagging
//! replica answered, can never put the old version back for the cache's
//! lifetime. "No such user" is never kept in-process, and in Redis it is
//! version 0, below a new account's floor of 1: it cannot hide a user who
//! just registered.
//!
//! Read path for a username:
//! 1. The L1 (`moka`): answers without I/O while this instance is subscribed
//!    to invalidations; otherwise its entries expire at once, and it serves
//!    only as the single flight below.
//! 2. On a miss, `try_get_with`: however many requests of this instance miss
//!    the same name together, one load runs and the others await it. A load
//!    whose caller went away (client gone, timeout) is abandoned and the
//!    next caller starts a new one: nothing is left behind to be served.
//! 3. The load reads Redis; on a miss it takes a short Redis lock
//!    (`SET NX PX`), so that of N instances missing together one queries
//!    Postgres; the others poll the cache for a bounded time, then query
//!    anyway (a lost lock holder must not stall reads).
//! 4. The result is written back with a jittered TTL (keys filled together
//!    do not expire together); unknown names are cached as absent, briefly.
//!
//! Redis failing never fails a read: it is logged and counted, and the read
//! goes to Postgres (still through the single flight), where only this
//! instance's floors can be checked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use rand::{Rng, RngCore};
use redis::{AsyncCommands, Script};

use super::store;
use crate::domain::Username;
use crate::dto::Profile;
use crate::error::AppError;
use crate::ssr::infra::db::Freshness;
use crate::ssr::infra::redis::Redis;
use crate::ssr::infra::retry::{with_retry, Backoff};
use crate::ssr::{AppState, Error, Result, ServiceConfig};

const LOCK_TTL: Duration = Duration::from_secs(3);
const LOCK_WAIT: Duration = Duration::from_millis(1500);
const LOCK_POLL: Duration = Duration::from_millis(15);

/// A profile as cached: its version, and the profile (`None`: no such user,
/// version 0).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub version: i32,
    pub profile: Option<Profile>,
}

impl Versioned {
    fn of(profile: Option<Profile>) -> Self {
        Self {
            version: profile.as_ref().map_or(0, |p| p.version),
            profile,
        }
    }

    fn answer(&self) -> Result<Profile> {
        self.profile.clone().ok_or(Error::App(AppError::NotFound))
    }

    /// Redis holds `"<version>:<json>"`: the Lua scripts read the version
    /// without decoding JSON.
    fn encode(&self) -> Option<String> {
        let json = serde_json::to_string(&self.profile).ok()?;
        Some(format!("{}:{json}", self.version))
    }

    fn decode(raw: &str) -> Option<Self> {
        let (version, json) = raw.split_once(':')?;
        Some(Self {
            version: version.parse().ok()?,
            profile: serde_json::from_str(json).ok()?,
        })
    }
}

/// An L1 entry, and how long it may live there.
struct L1Entry {
    value: Versioned,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Arc<L1Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _name: &String,
        entry: &Arc<L1Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// This instance's caches of profiles.
pub struct ProfileCache {
    l1: moka::future::Cache<String, Arc<L1Entry>>,
    /// The newest version of each recently edited profile this instance has
    /// heard of; kept for the lag budget.
    floors: moka::sync::Cache<String, i32>,
    /// Subscribed to the invalidation channel: only then does the L1 keep
    /// what it loads.
    live: AtomicBool,
    l1_ttl: Duration,
}

impl ProfileCache {
    pub fn new(config: &ServiceConfig) -> Self {
        Self {
            l1: moka::future::Cache::builder()
                .max_capacity(config.profile_l1_capacity.max(1) as u64)
                .expire_after(PerEntryTtl)
                .build(),
            floors: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(config.lag_budget)
                .build(),
            live: AtomicBool::new(false),
            l1_ttl: config.profile_l1_ttl,
        }
    }

    /// Whether the L1 is in use (subscribed to invalidations).
    pub fn l1_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub(super) fn set_live(&self, live: bool) {
        // Cleared either way: messages may have been missed while off.
        self.l1.invalidate_all();
        self.live.store(live, Ordering::Release);
    }

    /// The oldest version this instance may still serve for `name`.
    pub fn floor(&self, name: &str) -> i32 {
        self.floors.get(name).unwrap_or(0)
    }

    /// Records that `name` is at `version` or newer, and drops an L1 entry
    /// older than that. A floor already as high changes nothing (the
    /// writer's own requests repeat theirs for the lag budget).
    pub(super) async fn raise_floor(&self, name: &str, version: i32) {
        if self.floor(name) >= version {
            return;
        }
        // Atomic per name: of two raises at once, the higher one stays.
        self.floors
            .entry_by_ref(name)
            .and_upsert_with(|current| current.map_or(version, |c| (*c.value()).max(version)));
        self.l1.invalidate(name).await;
    }

    /// The version of `name` the in-process cache holds, if any (for
    /// diagnostics and tests: a read does not count as one).
    pub async fn cached_version(&self, name: &str) -> Option<i32> {
        self.l1.get(name).await.map(|entry| entry.value.version)
    }

    pub(super) async fn forget_all(&self) {
        self.l1.invalidate_all();
    }

    fn entry(&self, value: Versioned) -> Arc<L1Entry> {
        // "No such user" is not kept in-process: an instance that has not
        // yet heard of a registration would answer 404 from it. Redis keeps
        // it (version 0), and a registration's floor removes it there.
        let keep = self.l1_live() && value.profile.is_some();
        Arc::new(L1Entry {
            value,
            ttl: if keep { self.l1_ttl } else { Duration::ZERO },
        })
    }
}

pub(super) fn entry_key(state: &AppState, name: &str) -> String {
    // One hash tag per profile: the entry, its floor and its lock live in
    // one Redis Cluster slot, so the scripts may touch them together.
    state.key(&format!("profile:{{{name}}}"))
}

pub(super) fn floor_key(state: &AppState, name: &str) -> String {
    state.key(&format!("profile_floor:{{{name}}}"))
}

fn lock_key(state: &AppState, name: &str) -> String {
    state.key(&format!("profile_lock:{{{name}}}"))
}

/// KEYS: entry, floor. ARGV: version, encoded value, TTL (ms).
/// Stores the value unless Redis knows a newer version (a floor above it,
/// or a newer entry). 1: stored, 0: refused.
static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local version = tonumber(ARGV[1])
local floor = tonumber(redis.call('GET', KEYS[2]) or '0')
if version < floor then return 0 end
local current = redis.call('GET', KEYS[1])
if current then
  local current_version = tonumber(string.match(current, '^(%d+):'))
  if current_version and current_version > version then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#,
    )
});

static RELEASE_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"#,
    )
});

fn cache_error(state: &AppState, error: &redis::RedisError, what: &str) {
    state.metrics.profile_cache_errors.increment(1);
    tracing::warn!(error = %error, what, "profile cache unavailable; using postgres");
}

/// A public profile, through the caches, for a reader whose reads must be
/// `freshness` fresh (`Freshness::Any` for anonymous readers; see
/// `infra::db`).
pub async fn get(state: &AppState, freshness: Freshness, username: &Username) -> Result<Profile> {
    let name = username.as_str();
    if !state.config.profile_cache_enabled {
        let floor = state.profiles.floor(name);
        return query(state, name, freshness, floor).await?.answer();
    }
    let cache = &state.profiles;
    let floor = cache.floor(name);
    if cache.l1_live() {
        if let Some(entry) = cache.l1.get(name).await {
            if entry.value.version >= floor {
                state.metrics.profile_cache_hits.increment(1);
                state.metrics.profile_l1_hits.increment(1);
                return entry.value.answer();
            }
            cache.l1.invalidate(name).await;
        }
    }
    // A load that was already running when the floor rose may return the
    // version below it: then load once more, which starts after the rise.
    for _ in 0..2 {
        let entry = cache
            .l1
            .try_get_with(
                name.to_owned(),
                load(state.clone(), name.to_owned(), freshness),
            )
            .await
            .map_err(|error| Error::App((*error).clone()))?;
        if entry.value.version >= cache.floor(name) {
            return entry.value.answer();
        }
        cache.l1.invalidate(name).await;
    }
    query(state, name, Freshness::Primary, cache.floor(name))
        .await?
        .answer()
}

/// One load for this instance. Errors are logged and counted here, once,
/// however many callers share them.
async fn load(
    state: AppState,
    name: String,
    freshness: Freshness,
) -> Result<Arc<L1Entry>, AppError> {
    let floor = state.profiles.floor(&name);
    match load_versioned(&state, &name, floor, freshness).await {
        Ok(value) => Ok(state.profiles.entry(value)),
        Err(error) => Err(error.into_app_error(&state.metrics)),
    }
}

async fn load_versioned(
    state: &AppState,
    name: &str,
    floor: i32,
    freshness: Freshness,
) -> Result<Versioned> {
    let mut redis = state.redis.clone();
    let key = entry_key(state, name);
    match read_cached(&mut redis, &key).await {
        Ok(Some(cached)) if cached.version >= floor => {
            state.metrics.profile_cache_hits.increment(1);
            return Ok(cached);
        }
        Ok(_) => {}
        Err(error) => cache_error(state, &error, "get"),
    }
    state.metrics.profile_cache_misses.increment(1);
    fill(state, name, floor, freshness).await
}

/// One instance's miss: take the cross-instance lock, or wait for its holder.
async fn fill(state: &AppState, name: &str, floor: i32, freshness: Freshness) -> Result<Versioned> {
    let key = entry_key(state, name);
    let lock = lock_key(state, name);
    let mut owner = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut owner);
    let owner = hex::encode(owner);
    let mut redis = state.redis.clone();

    let acquired: Result<Option<String>, _> = redis::cmd("SET")
        .arg(&lock)
        .arg(&owner)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL.as_millis() as u64)
        .query_async(&mut redis)
        .await;
    match acquired {
        Err(error) => {
            // Redis is away: only this instance's floor can be checked.
            cache_error(state, &error, "lock");
            return query(state, name, freshness, floor).await;
        }
        Ok(None) => {
            // Someone else is filling: poll the cache until it appears, for
            // a bounded time.
            let deadline = tokio::time::Instant::now() + LOCK_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(LOCK_POLL).await;
                match read_cached(&mut redis, &key).await {
                    Ok(Some(cached)) if cached.version >= floor => return Ok(cached),
                    Ok(_) => {}
                    Err(error) => {
                        cache_error(state, &error, "poll");
                        return query(state, name, freshness, floor).await;
                    }
                }
            }
            return read_and_store(state, &mut redis, name, floor, freshness).await;
        }
        Ok(Some(_)) => {}
    }

    // The previous holder may have filled the cache between our miss and our
    // lock: look once more before going to Postgres.
    if let Ok(Some(cached)) = read_cached(&mut redis, &key).await {
        if cached.version >= floor {
            release_lock(state, &mut redis, &lock, &owner).await;
            return Ok(cached);
        }
    }
    let result = read_and_store(state, &mut redis, name, floor, freshness).await;
    release_lock(state, &mut redis, &lock, &owner).await;
    result
}

/// Reads the profile from Postgres and writes it back to Redis. An answer
/// Redis refuses (it knows a newer version: a lagging replica answered, or
/// an edit committed since the read began) is not returned: the primary is
/// asked again, and its answer is stored and returned.
async fn read_and_store(
    state: &AppState,
    redis: &mut Redis,
    name: &str,
    floor: i32,
    freshness: Freshness,
) -> Result<Versioned> {
    let found = query(state, name, freshness, floor).await?;
    if store_if_newest(state, redis, name, &found).await != Fill::Refused {
        return Ok(found);
    }
    state.metrics.profile_stale_reads.increment(1);
    let fresh = query(state, name, Freshness::Primary, floor).await?;
    store_if_newest(state, redis, name, &fresh).await;
    Ok(fresh)
}

#[derive(Debug, PartialEq, Eq)]
enum Fill {
    Stored,
    /// Redis knows a newer version than the one offered.
    Refused,
    /// Redis did not answer (logged and counted).
    Failed,
}

/// Writes a read back to Redis, unless Redis knows a newer version.
async fn store_if_newest(
    state: &AppState,
    redis: &mut Redis,
    name: &str,
    found: &Versioned,
) -> Fill {
    let ttl = match found.profile {
        Some(_) => {
            let factor = rand::thread_rng().gen_range(0.9..=1.1);
            state.config.profile_cache_ttl.mul_f64(factor)
        }
        None => state.config.profile_absent_ttl,
    };
    let Some(body) = found.encode() else {
        return Fill::Failed;
    };
    let stored: Result<i64, _> = FILL
        .key(entry_key(state, name))
        .key(floor_key(state, name))
        .arg(found.version)
        .arg(body)
        .arg(ttl.as_millis() as u64)
        .invoke_async(redis)
        .await;
    match stored {
        Ok(1) => Fill::Stored,
        Ok(_) => Fill::Refused,
        Err(error) => {
            cache_error(state, &error, "set");
            Fill::Failed
        }
    }
}

/// A cached entry, or `None` for a miss (or an unreadable entry, which the
/// fill overwrites).
async fn read_cached(redis: &mut Redis, key: &str) -> Result<Option<Versioned>, redis::RedisError> {
    let raw: Option<String> = redis.get(key).await?;
    Ok(raw.as_deref().and_then(Versioned::decode))
}

/// Deletes the lock only if it is still ours (it may have expired and been
/// taken by another instance meanwhile).
async fn release_lock(state: &AppState, redis: &mut Redis, lock: &str, owner: &str) {
    let released: Result<i64, _> = RELEASE_LOCK.key(lock).arg(owner).invoke_async(redis).await;
    if let Err(error) = released {
        cache_error(state, &error, "unlock");
    }
}

/// The one Postgres read of a public profile, on a database `freshness`
/// allows; an answer below `floor` (a replica behind an edit this instance
/// has heard of) is read again from the primary. Idempotent, so retried
/// with backoff on transient failures.
async fn query(
    state: &AppState,
    name: &str,
    freshness: Freshness,
    floor: i32,
) -> Result<Versioned> {
    let found = read_once(state, name, freshness).await?;
    if found.version >= floor || freshness == Freshness::Primary {
        return Ok(found);
    }
    state.metrics.profile_stale_reads.increment(1);
    read_once(state, name, Freshness::Primary).await
}

async fn read_once(state: &AppState, name: &str, freshness: Freshness) -> Result<Versioned> {
    with_retry(Backoff::READ, || async {
        state.metrics.profile_db_queries.increment(1);
        state
            .db
            .read(freshness, |db| async move {
                Ok(Versioned::of(store::by_username(&db, name).await?))
            })
            .await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_values_round_trip_with_their_version() {
        let absent = Versioned::of(None);
        let raw = absent.encode().unwrap();
        assert_eq!(raw, "0:null");
        assert!(Versioned::decode(&raw).unwrap().profile.is_none());
        let profile = Profile {
            username: "ada".into(),
            display_name: "Ada: the first".into(),
            bio: String::new(),
            avatar_url: None,
            location: None,
            website: None,
            version: 12,
            avatar: None,
        };
        let raw = Versioned::of(Some(profile.clone())).encode().unwrap();
        assert!(raw.starts_with("12:{"), "{raw}");
        let back = Versioned::decode(&raw).unwrap();
        assert_eq!((back.version, back.profile), (12, Some(profile)));
        assert!(Versioned::decode("garbage").is_none());
    }
}
