//! Settings, read once at start from the environment. The only place in
//! Folio that reads environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | `postgres://postgres@127.0.0.1:5432/folio` | Postgres (the primary); the database is created if missing |
//! | `DATABASE_REPLICA_URLS` | (none) | comma-separated streaming replicas of it for public reads; none: every read goes to the primary |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` | Redis: one server (`redis://`, `rediss://` for TLS), or a Redis Cluster through its seed nodes, `redis+cluster://host:port,host:port,…` (`rediss+cluster://` for TLS; `user:password@` before the hosts applies to every node) |
//! | `LEPTOS_SITE_ADDR` | `127.0.0.1:3000` | address to listen on (cargo-leptos sets it) |
//! | `FOLIO_PUBLIC_URL` | `http://` + `LEPTOS_SITE_ADDR` | the address people reach Folio at (`https://folio.example`): canonical links, link previews of profiles and the links in mail, never taken from a request's `Host`; a release build refuses to start unless it is `https://` or a loopback address, and warns at start when it is not `https://` |
//! | `LEPTOS_ENV` | `PROD` in a release build, `DEV` in a debug one | `DEV` allows `cargo leptos watch`'s reload websocket in the CSP |
//! | `FOLIO_LOG` / `RUST_LOG` | `info` | tracing filter |
//! | `FOLIO_LOG_FORMAT` | `text` | `json` for one JSON object per line |
//! | `FOLIO_REDIS_PREFIX` | `folio:` | namespace of every Redis key |
//! | `FOLIO_SESSION_IDLE_SECS` | `86400` | idle timeout of a session (sliding) |
//! | `FOLIO_SESSION_ABSOLUTE_SECS` | `604800` | absolute lifetime of a session |
//! | `FOLIO_LOGIN_LIMIT_ACCOUNT` | `5/900` | failed sign-ins per account per window (s), from browsers without a device cookie for it |
//! | `FOLIO_LOGIN_LIMIT_DEVICE` | `5/900` | failed sign-ins per window from one browser holding a device cookie for the account (only that browser is then locked) |
//! | `FOLIO_LOGIN_LIMIT_IP` | `30/900` | failed sign-ins per client address |
//! | `FOLIO_REGISTER_LIMIT_IP` | `10/3600` | sign-ups per client address |
//! | `FOLIO_PROFILE_EDIT_LIMIT` | `30/60` | profile saves per user |
//! | `FOLIO_TRUSTED_PROXIES` | (none) | comma-separated peers whose `X-Forwarded-For` is believed |
//! | `FOLIO_PROFILE_CACHE` | `on` | `off` reads every profile from Postgres (benchmarks) |
//! | `FOLIO_PAGE_CACHE_PAGES` | `1000` | rendered anonymous profile pages kept per instance (`0`: render every request) |
//! | `FOLIO_DB_MAX_CONNECTIONS` | `10` | Postgres pool size |
//! | `FOLIO_INSTANCE` | host name | sent as `x-folio-instance` on every response (which instance answered) |
//! | `FOLIO_METRICS_TOKEN` | (none) | when set, `/metrics` requires `Authorization: Bearer <token>` |
//! | `FOLIO_METRICS_OPEN` | `off` in a release build | `on`: `/metrics` without a token (a release build without a token otherwise answers 404: the metrics name routes and load) |
//! | `FOLIO_HSTS_MAX_AGE` | (none) | seconds: every response carries `Strict-Transport-Security: max-age=<n>; includeSubDomains` (only behind TLS) |
//! | `FOLIO_BENCH_ENDPOINTS` | `off` | `on` mounts the benchmark's ceiling endpoints under `/bench/` |
//! | `FOLIO_EVENTS_REDIS_URL` | `REDIS_URL` | the Redis of the event streams; one with persistence (AOF) and `noeviction`, which a cache Redis may not have |
//! | `FOLIO_EVENT_WORKERS` | `on` | `off`: this server does not run the relay and consumers (run `server --worker` elsewhere) |
//! | `FOLIO_EVENT_PARTITIONS` | `8` | streams the events are spread over, by user; fixed for a deployment's life (see `events/streams.rs`) |
//! | `FOLIO_EVENT_LEASE_SECS` | `10` | how long a dead consumer's partition waits before another consumer takes it |
//! | `FOLIO_EVENT_MAX_DELIVERIES` | `5` | failed deliveries before an event goes to the dead letters |
//! | `FOLIO_AVATAR_DIR` | `target/media` | the directory of uploaded avatars (when `AVATAR_STORE_URL` is not set); created if missing |
//! | `AVATAR_STORE_URL` | (none) | `s3://bucket[/prefix]`: avatars in that S3 bucket instead |
//! | `AVATAR_S3_ENDPOINT` | (none: AWS) | an S3-compatible service's URL (`http://127.0.0.1:9000`) |
//! | `AVATAR_S3_REGION` | `us-east-1` | the bucket's region |
//! | `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` | (none) | the bucket's credentials |
//! | `FOLIO_AVATAR_UPLOAD_LIMIT` | `20/3600` | avatar uploads and removals per user |
//! | `FOLIO_AVATAR_MEMORY_MIB` | `256` | memory all avatar decodes of the process may hold together (at least 256: one picture's limit) |
//! | `FOLIO_SEARCH_LIMIT_IP` | `300/60` | people searches per client network |
//! | `FOLIO_SEARCH_CONCURRENCY` | `0` | searches one instance runs at once (past it: "busy", 503); 0 is half of `FOLIO_DB_MAX_CONNECTIONS` |
//! | `SMTP_URL` | (none) | where mail goes: `smtps://user:pass@host:465` (TLS), `smtp://user:pass@host:587?tls=required` (STARTTLS), or `smtp://host:port` (no TLS: a relay on the same machine, a test sink); unset: a debug build keeps mail in memory at `/dev/mailbox`, a release build sends none |
//! | `FOLIO_MAIL_FROM` | `Folio <no-reply@HOST>` (`HOST` from `FOLIO_PUBLIC_URL`, `localhost` for an address) | the sender of Folio's mail: an address the SMTP server may send as |
//! | `FOLIO_RESET_LIMIT_IP` | `20/3600` | "forgot password" requests per client address |
//! | `FOLIO_RESET_LIMIT_ADDRESS` | `3/3600` | "forgot password" requests per email address asked for |
//! | `FOLIO_RESET_REDEEM_LIMIT_IP` | `20/3600` | new passwords set with a reset link, per client address |
//! | `FOLIO_VERIFY_RESEND_LIMIT` | `3/3600` | verification mails asked for again, per user |
//! | `FOLIO_EXPORT_LIMIT` | `10/3600` | downloads of one's data (`/account/export`), per user |
//!
//! One argument: `server --worker` runs the relay and the consumers and
//! serves only `/healthz`, `/readyz` and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use app::ssr::media::MediaStoreConfig;
use app::ssr::{Limit, ServiceConfig};

/// `Debug` shows every URL redacted and no token or key (see the impl).
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    /// Read replicas of `database_url` (streaming standbys), for public reads.
    pub database_replica_urls: Vec<String>,
    pub redis_url: String,
    pub addr: SocketAddr,
    /// Development mode (live reload allowed by the CSP). A release binary
    /// started without `LEPTOS_ENV` is production: Leptos alone would say
    /// development, and every page would allow a websocket to port 3001.
    pub dev_mode: bool,
    pub log_filter: String,
    pub log_json: bool,
    pub db_max_connections: u32,
    /// At most this many rendered profile pages in memory (a few KiB each).
    pub page_cache_pages: usize,
    pub bench_endpoints: bool,
    /// Mounts routes that panic on purpose (`crate::panics::routes`). Tests
    /// only: no environment variable turns it on.
    pub panic_routes: bool,
    pub instance: String,
    pub metrics_access: MetricsAccess,
    /// `Strict-Transport-Security`'s max-age, for deployments behind TLS.
    pub hsts_max_age: Option<u64>,
    pub events_redis_url: String,
    /// Run the outbox relay and the event consumers in this process.
    pub event_workers: bool,
    /// `server --worker`: the workers and the health and metrics endpoints
    /// only, no pages or server functions.
    pub worker_only: bool,
    /// How mail leaves (`SMTP_URL`).
    pub mail: MailTransport,
    /// `FOLIO_MAIL_FROM`: the sender of every message.
    pub mail_from: String,
    /// Said at start (a release build's `FOLIO_PUBLIC_URL` that is not
    /// https; see [`public_url_warning`]).
    pub public_url_warning: Option<String>,
    pub service: ServiceConfig,
}

/// Written out rather than derived: a derived `Debug` printed the database
/// and Redis passwords, the SMTP password and the metrics token to any log
/// line or panic that showed the settings.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let replicas: Vec<String> = self
            .database_replica_urls
            .iter()
            .map(|url| redact(url))
            .collect();
        f.debug_struct("Settings")
            .field("database_url", &redact(&self.database_url))
            .field("database_replica_urls", &replicas)
            .field("redis_url", &redact(&self.redis_url))
            .field("events_redis_url", &redact(&self.events_redis_url))
            .field("addr", &self.addr)
            .field("dev_mode", &self.dev_mode)
            .field("log_filter", &self.log_filter)
            .field("log_json", &self.log_json)
            .field("db_max_connections", &self.db_max_connections)
            .field("page_cache_pages", &self.page_cache_pages)
            .field("bench_endpoints", &self.bench_endpoints)
            .field("panic_routes", &self.panic_routes)
            .field("instance", &self.instance)
            .field("metrics_access", &self.metrics_access)
            .field("hsts_max_age", &self.hsts_max_age)
            .field("event_workers", &self.event_workers)
            .field("worker_only", &self.worker_only)
            .field("mail", &self.mail)
            .field("mail_from", &self.mail_from)
            .field("public_url_warning", &self.public_url_warning)
            // Its store's `Debug` hides the S3 secret key.
            .field("service", &self.service)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    reason: String,
}

/// `on`/`off` (also `true`/`false`, `1`/`0`).
fn switch(name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "on" | "true" | "1") => Ok(true),
        Some(v) if matches!(v.as_str(), "off" | "false" | "0") => Ok(false),
        Some(value) => Err(ConfigError {
            variable: name,
            value,
            reason: "expected on or off".to_owned(),
        }),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError {
            variable: name,
            value,
            reason: e.to_string(),
        }),
    }
}

/// `"5/900"`: 5 events per 900 seconds.
fn limit(name: &'static str, default: Limit) -> Result<Limit, ConfigError> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    let invalid = |reason: &str| ConfigError {
        variable: name,
        value: value.clone(),
        reason: reason.to_owned(),
    };
    let (max, window) = value
        .split_once('/')
        .ok_or_else(|| invalid("expected MAX/WINDOW_SECS"))?;
    let max = max
        .trim()
        .parse()
        .map_err(|_| invalid("MAX is not a number"))?;
    let window = window
        .trim()
        .parse()
        .map_err(|_| invalid("WINDOW_SECS is not a number"))?;
    Ok(Limit::new(max, window))
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = ServiceConfig::default();
        let trusted_proxies = match var("FOLIO_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|ip| {
                    ip.trim().parse::<IpAddr>().map_err(|e| ConfigError {
                        variable: "FOLIO_TRUSTED_PROXIES",
                        value: list.clone(),
                        reason: e.to_string(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let cache = var("FOLIO_PROFILE_CACHE").unwrap_or_else(|| "on".to_owned());
        let instance = var("FOLIO_INSTANCE")
            .or_else(|| var("HOSTNAME"))
            .unwrap_or_else(|| "folio".to_owned());
        let events = app::ssr::events::EventsConfig {
            instance: instance.clone(),
            partitions: parse("FOLIO_EVENT_PARTITIONS", defaults.events.partitions)?,
            lease: Duration::from_secs(parse(
                "FOLIO_EVENT_LEASE_SECS",
                defaults.events.lease.as_secs(),
            )?),
            max_deliveries: parse("FOLIO_EVENT_MAX_DELIVERIES", defaults.events.max_deliveries)?,
            ..defaults.events.clone()
        };
        if events.partitions == 0 || events.lease.is_zero() {
            return Err(ConfigError {
                variable: "FOLIO_EVENT_PARTITIONS / FOLIO_EVENT_LEASE_SECS",
                value: format!("{} / {}", events.partitions, events.lease.as_secs()),
                reason: "must be at least 1".to_owned(),
            });
        }
        let service = ServiceConfig {
            redis_prefix: var("FOLIO_REDIS_PREFIX").unwrap_or(defaults.redis_prefix),
            session_idle: Duration::from_secs(parse(
                "FOLIO_SESSION_IDLE_SECS",
                defaults.session_idle.as_secs(),
            )?),
            session_absolute: Duration::from_secs(parse(
                "FOLIO_SESSION_ABSOLUTE_SECS",
                defaults.session_absolute.as_secs(),
            )?),
            login_failures_per_account: limit(
                "FOLIO_LOGIN_LIMIT_ACCOUNT",
                defaults.login_failures_per_account,
            )?,
            login_failures_per_device: limit(
                "FOLIO_LOGIN_LIMIT_DEVICE",
                defaults.login_failures_per_device,
            )?,
            login_failures_per_ip: limit("FOLIO_LOGIN_LIMIT_IP", defaults.login_failures_per_ip)?,
            registrations_per_ip: limit("FOLIO_REGISTER_LIMIT_IP", defaults.registrations_per_ip)?,
            reset_requests_per_ip: limit("FOLIO_RESET_LIMIT_IP", defaults.reset_requests_per_ip)?,
            reset_requests_per_address: limit(
                "FOLIO_RESET_LIMIT_ADDRESS",
                defaults.reset_requests_per_address,
            )?,
            reset_redemptions_per_ip: limit(
                "FOLIO_RESET_REDEEM_LIMIT_IP",
                defaults.reset_redemptions_per_ip,
            )?,
            verification_resends_per_user: limit(
                "FOLIO_VERIFY_RESEND_LIMIT",
                defaults.verification_resends_per_user,
            )?,
            email_changes_per_user: limit(
                "FOLIO_EMAIL_CHANGE_LIMIT_USER",
                defaults.email_changes_per_user,
            )?,
            email_changes_per_address: limit(
                "FOLIO_EMAIL_CHANGE_LIMIT_ADDRESS",
                defaults.email_changes_per_address,
            )?,
            exports_per_user: limit("FOLIO_EXPORT_LIMIT", defaults.exports_per_user)?,
            profile_edits_per_user: limit(
                "FOLIO_PROFILE_EDIT_LIMIT",
                defaults.profile_edits_per_user,
            )?,
            avatar_uploads_per_user: limit(
                "FOLIO_AVATAR_UPLOAD_LIMIT",
                defaults.avatar_uploads_per_user,
            )?,
            searches_per_ip: limit("FOLIO_SEARCH_LIMIT_IP", defaults.searches_per_ip)?,
            search_concurrency: parse("FOLIO_SEARCH_CONCURRENCY", defaults.search_concurrency)?,
            media: media_store()?,
            trusted_proxies,
            profile_cache_enabled: match cache.as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                _ => {
                    return Err(ConfigError {
                        variable: "FOLIO_PROFILE_CACHE",
                        value: cache,
                        reason: "expected on or off".to_owned(),
                    })
                }
            },
            events,
            ..defaults
        };
        let redis_url = var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        let addr = parse("LEPTOS_SITE_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        let service = ServiceConfig {
            public_url: public_url(var("FOLIO_PUBLIC_URL"), addr)?,
            ..service
        };
        let mail_from =
            var("FOLIO_MAIL_FROM").unwrap_or_else(|| default_mail_from(&service.public_url));
        let release = !cfg!(debug_assertions);
        let public_url_warning = public_url_warning(
            &service.public_url,
            var("FOLIO_PUBLIC_URL").is_some(),
            release,
        )?;
        let service = ServiceConfig {
            avatar_memory_bytes: parse::<u64>(
                "FOLIO_AVATAR_MEMORY_MIB",
                service.avatar_memory_bytes / (1024 * 1024),
            )?
            .saturating_mul(1024 * 1024),
            ..service
        };
        Ok(Self {
            mail: MailTransport::decide(var("SMTP_URL"), cfg!(debug_assertions)),
            mail_from,
            public_url_warning,
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/folio".to_owned()),
            database_replica_urls: var("DATABASE_REPLICA_URLS")
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|url| !url.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            events_redis_url: var("FOLIO_EVENTS_REDIS_URL").unwrap_or_else(|| redis_url.clone()),
            redis_url,
            event_workers: switch("FOLIO_EVENT_WORKERS", true)?,
            worker_only: false,
            addr,
            dev_mode: match var("LEPTOS_ENV").map(|v| v.to_ascii_lowercase()) {
                Some(env) => matches!(env.as_str(), "dev" | "development"),
                None => cfg!(debug_assertions),
            },
            log_filter: var("FOLIO_LOG")
                .or_else(|| var("RUST_LOG"))
                .unwrap_or_else(|| "info".to_owned()),
            log_json: var("FOLIO_LOG_FORMAT").is_some_and(|f| f == "json"),
            db_max_connections: parse("FOLIO_DB_MAX_CONNECTIONS", 10)?,
            page_cache_pages: parse("FOLIO_PAGE_CACHE_PAGES", 1000)?,
            instance,
            metrics_access: MetricsAccess::decide(
                var("FOLIO_METRICS_TOKEN"),
                switch("FOLIO_METRICS_OPEN", false)?,
                cfg!(debug_assertions),
            ),
            hsts_max_age: match var("FOLIO_HSTS_MAX_AGE") {
                None => None,
                Some(_) => Some(parse("FOLIO_HSTS_MAX_AGE", 0u64)?).filter(|&age| age > 0),
            },
            bench_endpoints: var("FOLIO_BENCH_ENDPOINTS").is_some_and(|v| v == "on"),
            panic_routes: false,
            service,
        })
    }

    /// Applies the command line: nothing, or `--worker`.
    pub fn with_args(
        mut self,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Self, ConfigError> {
        for arg in args {
            match arg.as_str() {
                "--worker" => self.worker_only = true,
                _ => {
                    return Err(ConfigError {
                        variable: "argument",
                        value: arg,
                        reason: "the only argument is --worker".to_owned(),
                    })
                }
            }
        }
        Ok(self)
    }
}

/// Who may read `/metrics`. The page names every route, the load and the
/// dependencies' health: useful to an attacker planning a flood, so a
/// release build shows it only with a token, or when the deployment says it
/// is on a private listener (`FOLIO_METRICS_OPEN=on`). A debug build is open.
#[derive(Clone, PartialEq, Eq)]
pub enum MetricsAccess {
    Open,
    /// `Authorization: Bearer <token>`, compared in constant time.
    Token(String),
    /// `/metrics` answers 404.
    Closed,
}

/// Never the token.
impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Token(_) => f.write_str("Token(***)"),
            Self::Closed => f.write_str("Closed"),
        }
    }
}

impl MetricsAccess {
    pub fn decide(token: Option<String>, open: bool, debug_build: bool) -> Self {
        match token {
            Some(token) => Self::Token(token),
            None if open || debug_build => Self::Open,
            None => Self::Closed,
        }
    }
}

/// How Folio's mail leaves. `Debug` shows the SMTP URL without its
/// password.
#[derive(Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// `SMTP_URL`, as lettre reads it (`app::ssr::mail::SmtpMailer`).
    Smtp(String),
    /// Kept in memory and shown at `/dev/mailbox`: a debug build without
    /// `SMTP_URL`, so that following a reset link needs no mail server.
    DevMailbox,
    /// A release build without `SMTP_URL`: nothing is sent (said at start).
    Off,
}

impl std::fmt::Debug for MailTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(url) => f.debug_tuple("Smtp").field(&redact(url)).finish(),
            Self::DevMailbox => f.write_str("DevMailbox"),
            Self::Off => f.write_str("Off"),
        }
    }
}

impl MailTransport {
    /// The mailbox shows every message (reset links included) to whoever
    /// opens the page, so a release build never has one.
    pub fn decide(smtp_url: Option<String>, debug_build: bool) -> Self {
        match smtp_url {
            Some(url) => Self::Smtp(url),
            None if debug_build => Self::DevMailbox,
            None => Self::Off,
        }
    }
}

/// `Folio <no-reply@host>`, the host of the public address; `localhost`
/// when that is an IP address (no mailbox has one for a domain).
fn default_mail_from(public_url: &str) -> String {
    let host = public_url
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(public_url)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    let is_name = (host.contains('.') && host.parse::<IpAddr>().is_err()) || host == "localhost";
    let host = if is_name { host } else { "localhost" };
    format!("Folio <no-reply@{host}>")
}

/// `FOLIO_PUBLIC_URL`, an http(s) origin with an optional path prefix and
/// no trailing slash; by default the address Folio listens on, which is
/// right for development only (behind a proxy, set it).
fn public_url(value: Option<String>, addr: SocketAddr) -> Result<String, ConfigError> {
    let Some(value) = value else {
        let host = if addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        return Ok(format!("http://{host}"));
    };
    let url = value.trim().trim_end_matches('/');
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("");
    if host.is_empty()
        || url.contains(['?', '#', '"', '<', '>', ' '])
        || url.chars().any(|c| c.is_control())
    {
        return Err(ConfigError {
            variable: "FOLIO_PUBLIC_URL",
            value,
            reason: "expected an http:// or https:// address such as https://folio.example"
                .to_owned(),
        });
    }
    Ok(url.to_owned())
}

/// What a build says of its public address at start, or why it does not
/// start. Links in mail carry reset and email-change tokens: over `http://`
/// anyone on the path reads them. A release build therefore refuses an
/// `http://` address unless it is a loopback one (tests, `make dev`, a
/// benchmark on one machine), and warns about that one; a debug build
/// takes any (development on a LAN) and says nothing.
fn public_url_warning(url: &str, set: bool, release: bool) -> Result<Option<String>, ConfigError> {
    if !release || url.starts_with("https://") {
        return Ok(None);
    }
    let loopback = match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let origin = if set {
        format!("FOLIO_PUBLIC_URL={url}")
    } else {
        format!("FOLIO_PUBLIC_URL is not set, so the listen address {url}")
    };
    if !loopback {
        return Err(ConfigError {
            variable: "FOLIO_PUBLIC_URL",
            value: url.to_owned(),
            reason: "a release build needs the https:// address people reach Folio at \
                     (mailed links carry sign-in tokens); only a loopback address may be http://"
                .to_owned(),
        });
    }
    Ok(Some(format!(
        "{origin} is not https: links in mail and link previews point at this machine \
         and travel unencrypted. Set FOLIO_PUBLIC_URL to the https:// address people use."
    )))
}

/// `AVATAR_STORE_URL=s3://bucket[/prefix]` (with `AVATAR_S3_*` and the
/// AWS credentials), else the directory `FOLIO_AVATAR_DIR`.
fn media_store() -> Result<MediaStoreConfig, ConfigError> {
    let Some(url) = var("AVATAR_STORE_URL") else {
        return Ok(match var("FOLIO_AVATAR_DIR") {
            Some(dir) => MediaStoreConfig::Local { dir: dir.into() },
            None => MediaStoreConfig::default(),
        });
    };
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(ConfigError {
            variable: "AVATAR_STORE_URL",
            value: url,
            reason: "expected s3://bucket or s3://bucket/prefix".to_owned(),
        });
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(ConfigError {
            variable: "AVATAR_STORE_URL",
            value: url.clone(),
            reason: "no bucket name".to_owned(),
        });
    }
    Ok(MediaStoreConfig::S3 {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint: var("AVATAR_S3_ENDPOINT"),
        region: var("AVATAR_S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
        access_key_id: var("AWS_ACCESS_KEY_ID"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
    })
}

/// A URL for messages and `{:?}`: its password, and any secret in its
/// query (`?password=`), replaced (`app::ssr::infra::redact`).
pub use app::ssr::infra::redact::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_build_keeps_metrics_closed_unless_told_otherwise() {
        assert_eq!(
            MetricsAccess::decide(None, false, false),
            MetricsAccess::Closed
        );
        assert_eq!(
            MetricsAccess::decide(None, true, false),
            MetricsAccess::Open
        );
        assert_eq!(
            MetricsAccess::decide(None, false, true),
            MetricsAccess::Open
        );
        assert_eq!(
            MetricsAccess::decide(Some("t".into()), true, true),
            MetricsAccess::Token("t".into())
        );
    }

    #[test]
    fn the_public_url_is_an_http_origin_without_a_trailing_slash() {
        let addr: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert_eq!(public_url(None, addr).unwrap(), "http://127.0.0.1:3000");
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(public_url(None, addr).unwrap(), "http://127.0.0.1:8080");
        let set = |v: &str| public_url(Some(v.to_owned()), addr);
        assert_eq!(
            set("https://folio.example/").unwrap(),
            "https://folio.example"
        );
        assert_eq!(
            set("https://example.org/folio").unwrap(),
            "https://example.org/folio"
        );
        for bad in [
            "folio.example",
            "ftp://folio.example",
            "https://",
            "https://a.example/?x",
            "https://a\"b",
        ] {
            assert!(set(bad).is_err(), "{bad}");
        }
    }

    /// Issue 23, item 13.
    #[test]
    fn a_release_build_mails_links_over_https_or_a_loopback_address_only() {
        let release = |url: &str, set: bool| public_url_warning(url, set, true);
        assert_eq!(release("https://folio.example", true).unwrap(), None);
        assert_eq!(release("https://127.0.0.1:3000", true).unwrap(), None);
        for loopback in [
            "http://127.0.0.1:3000",
            "http://localhost:8080/folio",
            "http://[::1]:3000",
        ] {
            let warning = release(loopback, true).unwrap().expect(loopback);
            assert!(warning.contains("not https"), "{warning}");
            assert!(release(loopback, false).unwrap().is_some(), "{loopback}");
        }
        for public in [
            "http://folio.example",
            "http://10.0.0.5:3000",
            "http://[2001:db8::1]",
            "http://localhost.folio.example",
        ] {
            let error = release(public, true).unwrap_err().to_string();
            assert!(error.contains("FOLIO_PUBLIC_URL"), "{error}");
            assert!(error.contains("https://"), "{error}");
        }
        // A debug build (tests, `make dev`) takes any address, silently.
        assert_eq!(
            public_url_warning("http://10.0.0.5:3000", true, false).unwrap(),
            None
        );
    }

    #[test]
    fn a_release_build_never_keeps_a_mailbox() {
        assert_eq!(MailTransport::decide(None, false), MailTransport::Off);
        assert_eq!(MailTransport::decide(None, true), MailTransport::DevMailbox);
        let url = "smtp://127.0.0.1:2525".to_owned();
        assert_eq!(
            MailTransport::decide(Some(url.clone()), false),
            MailTransport::Smtp(url.clone())
        );
        assert_eq!(
            MailTransport::decide(Some(url.clone()), true),
            MailTransport::Smtp(url)
        );
    }

    #[test]
    fn the_default_sender_is_at_the_public_host() {
        assert_eq!(
            default_mail_from("https://folio.example/app"),
            "Folio <no-reply@folio.example>"
        );
        assert_eq!(
            default_mail_from("http://127.0.0.1:3000"),
            "Folio <no-reply@localhost>"
        );
        assert_eq!(
            default_mail_from("http://localhost:3000"),
            "Folio <no-reply@localhost>"
        );
    }

    /// Issue 23, item 11: a password in the query (libpq's `?password=`)
    /// and every secret field of the settings stay out of messages and
    /// `{:?}`.
    #[test]
    fn no_password_survives_redaction_wherever_the_url_carries_it() {
        for url in [
            "postgres://h/db?password=hunter2",
            "postgres://u@h:5432/db?sslmode=require&password=hunter2&application_name=x",
            "postgres://h/db?PASSWORD=hunter2",
            "postgres://u:hunter2@h/db",
            "redis://:hunter2@h:6379",
            "rediss+cluster://u:hunter2@a:1,b:2",
            "smtp://u:hunter2@h:587?tls=required",
            "postgres://u:hunter2@h/db?password=hunter2",
        ] {
            let redacted = redact(url);
            assert!(!redacted.contains("hunter2"), "{url} -> {redacted}");
        }
        assert_eq!(
            redact("postgres://h/db?sslmode=require&password=x"),
            "postgres://h/db?sslmode=require&password=***"
        );
    }

    #[test]
    fn the_debug_of_settings_and_transports_shows_no_secret() {
        let mut settings = Settings::from_env().unwrap();
        settings.database_url = "postgres://u:SECRET-db@h/db".into();
        settings.database_replica_urls = vec!["postgres://h/db?password=SECRET-replica".into()];
        settings.redis_url = "redis://:SECRET-redis@h:6379".into();
        settings.events_redis_url = "rediss+cluster://u:SECRET-events@a:1,b:2".into();
        settings.mail = MailTransport::Smtp("smtps://u:SECRET-smtp@h:465".into());
        settings.metrics_access = MetricsAccess::Token("SECRET-metrics".into());
        settings.service.media = MediaStoreConfig::S3 {
            bucket: "b".into(),
            prefix: String::new(),
            endpoint: None,
            region: "r".into(),
            access_key_id: Some("id".into()),
            secret_access_key: Some("SECRET-s3".into()),
        };
        for text in [
            format!("{settings:?}"),
            format!("{settings:#?}"),
            format!("{:?}", settings.mail),
            format!("{:?}", settings.metrics_access),
        ] {
            assert!(!text.contains("SECRET"), "{text}");
        }
        for url in [
            "redis://:SECRET@h:6379",
            "rediss://user:SECRET@h:6380/0",
            "redis+cluster://user:SECRET@a:1,b:2",
        ] {
            let target = app::ssr::RedisTarget::parse(url).unwrap();
            let text = format!("{target:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
        // Still useful: where things are.
        assert!(format!("{settings:?}").contains("postgres://u:***@h/db"));
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
    }
}
