//! What the event tests share: `server --worker` processes of the same
//! deployment as a `TestApp`, and `TestApp` methods that look into the
//! outbox, the streams and the consumers' tables.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use app::ssr::{Redis, RedisConnector};

use super::{free_port, Cookie, TestApp};

/// A `server --worker` process (the real binary) on this app's database,
/// Redis and key prefix. Killed (SIGKILL) on drop.
pub struct WorkerProcess {
    child: Option<Child>,
    pub name: String,
    pub port: u16,
}

impl WorkerProcess {
    /// Kills the process at once, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// This worker's `/metrics` page.
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// One series of this worker's metrics (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_in(&self.metrics_text().await, series)
    }

    /// Waits until the worker answers `/readyz`.
    pub async fn ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        wait_for(
            &format!("worker {} ready", self.name),
            Duration::from_secs(30),
            || async { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) },
        )
        .await;
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of `series` (name and labels, as printed) in a metrics page.
pub fn metric_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` every 100 ms until it is true; panics after `limit`.
/// Returns how long it took.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TestApp {
    /// Starts `server --worker` against this app's deployment, named
    /// `name` (its relay's `application_name` is `folio relay <name>`).
    pub fn spawn_worker(&self, name: &str) -> WorkerProcess {
        let port = free_port();
        let s = &self.settings;
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("--worker")
            .env("DATABASE_URL", &s.database_url)
            .env("REDIS_URL", &s.redis_url)
            .env("FOLIO_EVENTS_REDIS_URL", &s.events_redis_url)
            .env("FOLIO_REDIS_PREFIX", &s.service.redis_prefix)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("FOLIO_INSTANCE", name)
            .env(
                "FOLIO_EVENT_PARTITIONS",
                s.service.events.partitions.to_string(),
            )
            .env(
                "FOLIO_EVENT_LEASE_SECS",
                s.service.events.lease.as_secs().to_string(),
            )
            .env("FOLIO_DB_MAX_CONNECTIONS", "4")
            .env("FOLIO_LOG", "warn")
            .env("LEPTOS_OUTPUT_NAME", "folio")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        WorkerProcess {
            child: Some(child),
            name: name.to_owned(),
            port,
        }
    }

    /// A connection to the events Redis (a server or a cluster), for
    /// looking at the streams.
    pub async fn events_redis(&self) -> Redis {
        RedisConnector::open(&self.settings.events_redis_url)
            .unwrap()
            .connect(Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// A Redis key of this app's deployment.
    pub fn key(&self, suffix: &str) -> String {
        self.state.key(suffix)
    }

    /// Entries in all partition streams (copies included).
    pub async fn stream_entries(&self) -> usize {
        let mut redis = self.events_redis().await;
        let mut total = 0;
        for p in 0..self.settings.service.events.partitions {
            let len: usize = redis::cmd("XLEN")
                .arg(self.key(&format!("events:{{p{p}}}")))
                .query_async(&mut redis)
                .await
                .unwrap();
            total += len;
        }
        total
    }

    /// Entries delivered to `group` and not acknowledged, all partitions.
    pub async fn pending_in_group(&self, group: &str) -> usize {
        let mut redis = self.events_redis().await;
        let mut total = 0;
        for p in 0..self.settings.service.events.partitions {
            let pending: redis::RedisResult<redis::streams::StreamPendingReply> =
                redis::cmd("XPENDING")
                    .arg(self.key(&format!("events:{{p{p}}}")))
                    .arg(group)
                    .query_async(&mut redis)
                    .await;
            total += pending.map(|p| p.count()).unwrap_or(0);
        }
        total
    }

    /// Rows of `sql` (a `SELECT count(*) …`).
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(self.state.db.primary())
            .await
            .unwrap()
    }

    /// Events `group` has applied.
    pub async fn applied_by(&self, group: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = $1")
            .bind(group)
            .fetch_one(self.state.db.primary())
            .await
            .unwrap()
    }

    /// Waits until `group` has applied `n` events.
    pub async fn wait_applied(&self, group: &str, n: i64, limit: Duration) -> Duration {
        let what = format!("{n} events applied by {group}");
        wait_for(&what, limit, || async { self.applied_by(group).await >= n }).await
    }

    /// The outbox rows of `event_type`.
    pub async fn events_of_type(&self, event_type: &str) -> Vec<serde_json::Value> {
        sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id")
            .bind(event_type)
            .fetch_all(self.state.db.primary())
            .await
            .unwrap()
    }

    /// The user's id.
    pub async fn user_id(&self, username: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_one(self.state.db.primary())
            .await
            .unwrap()
    }

    /// Signs in from a browser with `user_agent`; returns its cookie.
    pub async fn login_from(&self, identifier: &str, user_agent: &str) -> Cookie {
        let response = self
            .client
            .post(self.url("/api/login"))
            .header(reqwest::header::USER_AGENT, user_agent)
            .form(&[
                ("identifier", identifier),
                ("password", super::STRONG_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "login {identifier}");
        Cookie(super::session_cookie_from(&response))
    }

    /// Which relay holds the relay lock, by its `application_name`.
    pub async fn relay_leader(&self) -> Option<String> {
        sqlx::query_scalar(
            "SELECT a.application_name FROM pg_locks l
             JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.objid = ($1::bigint & 4294967295)::oid
               AND a.datname = current_database()",
        )
        .bind(app::ssr::events::relay::RELAY_LOCK)
        .fetch_optional(self.state.db.primary())
        .await
        .unwrap()
    }
}

/// Browsers of the tests, by their user agents.
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
pub const PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Mobile Safari/537.36";
