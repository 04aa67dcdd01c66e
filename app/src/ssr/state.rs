use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::accounts::passwords::PasswordHasher;
use super::accounts::recent_writes::RecentWrites;
use super::events::EventsConfig;
use super::infra::db::{Db, Pools};
use super::infra::metrics::Metrics;
use super::infra::redis::Redis;
use super::media::{default_slots, Media, MediaStore, MediaStoreConfig, Processor};
use super::profiles::ProfileCache;

/// "At most `max` events per `window`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Self {
            max,
            window: Duration::from_secs(window_secs),
        }
    }
}

/// Behaviour knobs of the service. Built by the `server` crate from its
/// settings (only `server` reads the environment); plain data here.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Prepended to every Redis key, so that tests (and several deployments)
    /// can share one Redis without seeing each other's keys.
    pub redis_prefix: String,
    /// Where people reach Folio (`https://folio.example`, no trailing
    /// slash): the canonical address and link previews of public pages.
    pub public_url: String,
    /// A session unused this long is gone. 24 h: long enough
    /// that a daily user is not asked to sign in again, short enough that a
    /// forgotten shared computer is signed out by tomorrow.
    pub session_idle: Duration,
    /// A session older than this is gone however active it is (ASVS 3.3.2):
    /// 7 days bounds the damage of a stolen cookie.
    pub session_absolute: Duration,
    pub login_failures_per_account: Limit,
    /// Wrong passwords typed from one browser that has signed in to the
    /// account before (its device cookie): only that browser is locked.
    pub login_failures_per_device: Limit,
    pub login_failures_per_ip: Limit,
    pub registrations_per_ip: Limit,
    /// "Forgot password" requests per client address, and per address
    /// asked for (nobody fills another's mailbox with reset mails).
    pub reset_requests_per_ip: Limit,
    pub reset_requests_per_address: Limit,
    /// New passwords set with a reset link, per client address: each costs
    /// a strength check and an argon2 hash.
    pub reset_redemptions_per_ip: Limit,
    /// Verification mails asked for again, per user.
    pub verification_resends_per_user: Limit,
    /// Address changes asked for, per user and per address asked for:
    /// each mails a link (or a warning) in Folio's name.
    pub email_changes_per_user: Limit,
    pub email_changes_per_address: Limit,
    /// Downloads of one's data (`/account/export`), per user.
    pub exports_per_user: Limit,
    pub profile_edits_per_user: Limit,
    /// Avatar uploads and removals per user: each upload costs a decode of
    /// up to 8 MB (tens to hundreds of ms of a core).
    pub avatar_uploads_per_user: Limit,
    /// People searches per client network (`search`): typing with a 200 ms
    /// pause between searches is 5 a second at most.
    pub searches_per_ip: Limit,
    /// Searches one instance runs at once; past it, "busy" at once. 0: half
    /// the primary pool, so that sign-ins and writes always find a
    /// connection.
    pub search_concurrency: usize,
    /// Where uploaded avatars are stored.
    pub media: MediaStoreConfig,
    /// Memory all avatar decodes of this process may hold at once (the
    /// processing queue is bounded by bytes as well as by cores): 256 MiB
    /// keeps a 1 GiB instance clear of the OOM killer.
    pub avatar_memory_bytes: u64,
    /// Peers whose `X-Forwarded-For` we believe (the load balancer).
    pub trusted_proxies: Vec<IpAddr>,
    pub profile_cache_ttl: Duration,
    pub profile_absent_ttl: Duration,
    /// Off only for benchmarks that measure Postgres itself.
    pub profile_cache_enabled: bool,
    /// How long a profile stays in the in-process cache. Pub/sub invalidation
    /// makes edits visible at once; this bounds staleness when a message is
    /// lost. 2 s: a hot profile costs one Redis read per 2 s per instance.
    pub profile_l1_ttl: Duration,
    /// At most this many profiles in the in-process cache (~0.5 KiB each).
    pub profile_l1_capacity: usize,
    /// How long after a write a reader may still be shown the version before
    /// it (a cache filled from a lagging read, an instance that has not yet
    /// heard of the edit): the "newest version" markers of edited profiles
    /// live this long, and refuse any older fill meanwhile.
    pub lag_budget: Duration,
    /// The outbox relay and the event consumers (`ssr::events`).
    pub events: EventsConfig,
    /// A replica read slower than this is abandoned and the primary answers
    /// (and the replica is skipped for `replica_cooldown`). 1 s: far above a
    /// healthy replica's milliseconds, short enough that a hung one costs a
    /// reader little.
    pub replica_timeout: Duration,
    /// How long a replica that failed is skipped. 5 s: a restart or a
    /// network blip is over by then, and a replica still down costs one
    /// failed read (or probe) per 5 s, not one per request.
    pub replica_cooldown: Duration,
    /// How often each instance asks every replica how far behind it is.
    pub replica_probe_interval: Duration,
    /// How long a replica's replay position, once asked for a reader who
    /// wrote recently, answers for the next such readers: a few ms turns a
    /// query per sticky read into a query per few ms per replica.
    pub replica_lsn_cache: Duration,
    /// How long the primary may fail to answer before `/readyz` calls this
    /// instance unready. 30 s: longer than a Patroni failover (10–20 s with
    /// deploy/postgres-ha), during which the instance still serves reads
    /// from its caches and the replicas and answers writes "paused" at once;
    /// a load balancer pulling every instance out then would turn a few
    /// seconds of paused writes into a full outage.
    pub primary_grace: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            redis_prefix: "folio:".to_owned(),
            public_url: "http://127.0.0.1:3000".to_owned(),
            session_idle: Duration::from_secs(24 * 3600),
            session_absolute: Duration::from_secs(7 * 24 * 3600),
            login_failures_per_account: Limit::new(5, 15 * 60),
            login_failures_per_device: Limit::new(5, 15 * 60),
            login_failures_per_ip: Limit::new(30, 15 * 60),
            registrations_per_ip: Limit::new(10, 3600),
            reset_requests_per_ip: Limit::new(20, 3600),
            reset_requests_per_address: Limit::new(3, 3600),
            reset_redemptions_per_ip: Limit::new(20, 3600),
            verification_resends_per_user: Limit::new(3, 3600),
            email_changes_per_user: Limit::new(5, 3600),
            email_changes_per_address: Limit::new(3, 3600),
            exports_per_user: Limit::new(10, 3600),
            profile_edits_per_user: Limit::new(30, 60),
            avatar_uploads_per_user: Limit::new(20, 3600),
            searches_per_ip: Limit::new(300, 60),
            search_concurrency: 0,
            media: MediaStoreConfig::default(),
            avatar_memory_bytes: super::media::MAX_DECODE_BYTES,
            trusted_proxies: Vec::new(),
            profile_cache_ttl: Duration::from_secs(3600),
            profile_absent_ttl: Duration::from_secs(60),
            profile_cache_enabled: true,
            profile_l1_ttl: Duration::from_secs(2),
            profile_l1_capacity: 50_000,
            lag_budget: Duration::from_secs(30),
            events: EventsConfig::default(),
            replica_timeout: Duration::from_secs(1),
            replica_cooldown: Duration::from_secs(5),
            replica_probe_interval: Duration::from_secs(1),
            replica_lsn_cache: Duration::from_millis(5),
            primary_grace: Duration::from_secs(30),
        }
    }
}

/// Everything a request handler needs. Cloned several times per request
/// (router state, Leptos context), so a clone is one reference count: the
/// handles behind it are a dozen, and on a loaded 2-core box their counters
/// bouncing between cores showed up as ~9% of a `get_profile` profile.
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

/// The handles, reached through `AppState`'s `Deref` (`state.db`, …).
pub struct Handles {
    /// The primary (`state.db.primary()`, or through `Deref`) and the read
    /// replicas (`state.db.read(freshness, …)`).
    pub db: Db,
    pub redis: Redis,
    pub config: Arc<ServiceConfig>,
    pub passwords: PasswordHasher,
    pub profiles: ProfileCache,
    pub metrics: Metrics,
    pub recent_writes: RecentWrites,
    pub media: Media,
    /// The key device cookies are signed with, read from Postgres on first
    /// use (`accounts::device_cookies`).
    pub device_key: tokio::sync::OnceCell<[u8; 32]>,
    /// People search's cursor key and concurrency cap (`search`).
    pub search: super::search::SearchGuard,
}

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

impl AppState {
    /// `media` is opened by the caller from `config.media` (opening can
    /// fail, which is a start-up error).
    pub async fn new(
        db: impl Into<Pools>,
        redis: impl Into<Redis>,
        config: ServiceConfig,
        media: MediaStore,
    ) -> Self {
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let db = Db::new(db.into(), &metrics, &config);
        let search = super::search::SearchGuard::new(
            &config,
            db.primary().options().get_max_connections() as usize,
        );
        Self(Arc::new(Handles {
            passwords: PasswordHasher::new().await,
            profiles: ProfileCache::new(&config),
            db,
            search,
            recent_writes: RecentWrites::new(&config),
            media: Media {
                store: media,
                processor: Processor::new(default_slots(), config.avatar_memory_bytes),
            },
            metrics,
            redis: redis.into(),
            config,
            device_key: tokio::sync::OnceCell::new(),
        }))
    }

    /// A handle that does not keep the state alive, for background tasks
    /// that must end with it.
    pub fn downgrade(&self) -> WeakAppState {
        WeakAppState(Arc::downgrade(&self.0))
    }

    /// A Redis key in this deployment's namespace.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.config.redis_prefix, suffix)
    }
}

/// See [`AppState::downgrade`].
#[derive(Clone)]
pub struct WeakAppState(Weak<Handles>);

impl WeakAppState {
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }

    pub fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}
