//! `spawn_app()`: the one way tests reach Folio, and the `TestApp` methods
//! every test file shares. Included by each test binary (`mod support;`, or
//! `#[path]` from `api/`); each uses a part of it.
#![allow(dead_code)]

mod cluster;
mod events;
mod media;
mod patroni;
pub mod pictures;
mod processes;
mod pubsub_hold;
mod smtp;

#[allow(unused_imports)]
pub use cluster::RedisCluster;
#[allow(unused_imports)]
pub use events::{metric_in, wait_for, WorkerProcess, FIREFOX, PHONE};
#[allow(unused_imports)]
pub use media::*;
#[allow(unused_imports)]
pub use patroni::PatroniCluster;
#[allow(unused_imports)]
pub use processes::{free_port, is_root, pg_bin, PostgresPair, PostgresProcess, RedisProcess};
#[allow(unused_imports)]
pub use pubsub_hold::PubSubHold;
#[allow(unused_imports)]
pub use smtp::{spawn_app_mailing, Delivered, SmtpSink};

use std::sync::Arc;
use std::time::{Duration, Instant};

use app::ssr::AppState;
use server::config::Settings;
use server::page_cache::PageCache;
use server::startup::Application;
use sqlx::{Connection, Executor, PgConnection};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    /// This instance's stored profile pages.
    pub pages: Arc<PageCache>,
    pub settings: Settings,
    db_name: String,
    admin_url: String,
    /// Only the first instance of a database drops it (see `spawn_peer_with`).
    owns_database: bool,
}

/// The server part of `DATABASE_URL`, without a database name.
pub fn server_url() -> String {
    admin_url()
        .rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .unwrap_or_default()
}

/// The server part of `DATABASE_URL` (the test database name is ours).
fn admin_url() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match url.rsplit_once('/') {
        Some((server, _db)) if server.contains("://") && server.len() > "postgres://".len() => {
            format!("{server}/postgres")
        }
        _ => url,
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app with settings adjusted by `configure` (shorter session
/// timeouts, tighter limits, another Redis…).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let admin_url = admin_url();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("folio_test_{id}");
    let mut settings = Settings::from_env().expect("test settings");
    settings.database_url = format!("{}/{db_name}", admin_url.rsplit_once('/').unwrap().0);
    settings.addr = "127.0.0.1:0".parse().unwrap();
    settings.service.redis_prefix = format!("test:{id}:");
    settings.db_max_connections = 5;
    // The event workers are started by the tests about events (see
    // `with_event_workers`); the others need not pay for 3 × 4 readers.
    settings.event_workers = false;
    settings.service.events.partitions = 4;
    settings.service.media = app::ssr::media::MediaStoreConfig::Local { dir: media_dir() };
    configure(&mut settings);
    start(settings, db_name, admin_url, true).await
}

async fn start(
    settings: Settings,
    db_name: String,
    admin_url: String,
    owns_database: bool,
) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let pages = app.pages().clone();
    tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        state,
        pages,
        settings,
        db_name,
        admin_url,
        owns_database,
    }
}

/// A signed-in (or not) browser as far as the API can tell: the session
/// cookie, carried by hand because `Secure` cookies are not kept by a
/// client over plain http.
#[derive(Clone, Debug, Default)]
pub struct Cookie(pub Option<String>);

impl Cookie {
    pub fn token(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

pub const SESSION_COOKIE: &str = "__Host-folio_session";

/// The session cookie a response sets: `Some("")` when it clears it.
pub fn session_cookie_from(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{SESSION_COOKIE}=")))
        .map(|v| {
            v[SESSION_COOKIE.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned()
        })
}

pub fn set_cookie_header(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{SESSION_COOKIE}=")))
        .map(str::to_owned)
}

impl TestApp {
    /// A second instance of the same deployment: same database, same Redis
    /// and key prefix, its own port and in-process state. `configure` adjusts
    /// its settings. The first instance drops the database; drop this one
    /// first.
    pub async fn spawn_peer_with(&self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        settings.addr = "127.0.0.1:0".parse().unwrap();
        configure(&mut settings);
        start(
            settings,
            self.db_name.clone(),
            self.admin_url.clone(),
            false,
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Calls a server function as the Leptos client does (url-encoded form
    /// in, JSON out), carrying `cookie` when given.
    pub async fn call(
        &self,
        function: &str,
        form: &[(&str, &str)],
        cookie: &Cookie,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/{function}")))
            .form(form);
        if let Some(token) = cookie.token() {
            request = request.header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={token}"));
        }
        request.send().await.expect("request sent")
    }

    /// Registers `username` with a strong password and returns its cookie.
    pub async fn register(&self, username: &str) -> Cookie {
        let response = self.try_register(username).await;
        assert_eq!(
            response.status(),
            200,
            "register {username}: {}",
            response.text().await.unwrap()
        );
        Cookie(session_cookie_from(&response))
    }

    pub async fn login(&self, identifier: &str, password: &str) -> reqwest::Response {
        self.call(
            "login",
            &[("identifier", identifier), ("password", password)],
            &Cookie::default(),
        )
        .await
    }

    /// `current_user` as seen with `cookie`: the username, or None.
    pub async fn whoami(&self, cookie: &Cookie) -> Option<String> {
        let response = self.call("current_user", &[], cookie).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body.get("username")
            .and_then(|u| u.as_str())
            .map(str::to_owned)
    }

    /// `get_profile` as an anonymous caller: status and JSON body.
    pub async fn get_profile(&self, username: &str) -> (u16, serde_json::Value) {
        self.get_profile_as(username, &Cookie::default()).await
    }

    /// `get_profile` as the holder of `cookie`.
    pub async fn get_profile_as(
        &self,
        username: &str,
        cookie: &Cookie,
    ) -> (u16, serde_json::Value) {
        status_and_json(
            self.call("get_profile", &[("username", username)], cookie)
                .await,
        )
        .await
    }

    /// A page load (GET `path`) as the holder of `cookie`: status and body.
    pub async fn page(&self, path: &str, cookie: &Cookie) -> (u16, String) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = cookie.token() {
            request = request.header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={token}"));
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// Saves `edit` as the owner of `cookie`, from `expected_version`.
    pub async fn update_profile(
        &self,
        cookie: &Cookie,
        edit: &Edit<'_>,
        expected_version: i32,
    ) -> (u16, serde_json::Value) {
        let version = expected_version.to_string();
        let form = [
            ("display_name", edit.display_name),
            ("bio", edit.bio),
            ("avatar_url", edit.avatar_url),
            ("location", edit.location),
            ("website", edit.website),
            ("expected_version", version.as_str()),
        ];
        status_and_json(self.call("update_profile", &form, cookie).await).await
    }

    /// `register` with a strong password, whatever the answer.
    pub async fn try_register(&self, username: &str) -> reqwest::Response {
        self.call(
            "register",
            &[
                ("username", username),
                ("email", &format!("{username}@example.com")),
                ("password", STRONG_PASSWORD),
            ],
            &Cookie::default(),
        )
        .await
    }

    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        status_and_json(self.client.get(self.url("/readyz")).send().await.unwrap()).await
    }

    /// The whole `/metrics` page (no token).
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Reads one Prometheus counter from `/metrics`: `name` is the whole
    /// series, labels included (`folio_db_reads_total{target="replica"}`).
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }

    /// `folio_dependency_up{dependency="…"}`: 1 when it answered this scrape.
    pub async fn dependency_up(&self, dependency: &str) -> u64 {
        self.metric(&format!(
            r#"folio_dependency_up{{dependency="{dependency}"}}"#
        ))
        .await
    }

    /// One series of a labelled counter (`name{labels}`, labels as
    /// Prometheus prints them), 0 while it has not been counted.
    pub async fn labelled_metric(&self, name: &str, labels: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}{{{labels}}} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sends `request`, bytes as they are, on a connection of its own, and
    /// returns the status of the answer: for what an HTTP client library
    /// would not send (`CONNECT host:443`, bytes that are not UTF-8 in the
    /// path). None when the server closed the connection without one.
    pub async fn raw_status(&self, request: &[u8]) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        let read = async {
            while !answer.windows(2).any(|w| w == b"\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                }
            }
        };
        // Longer than the server's own timeouts: it answers first.
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .ok()?;
        let status_line = String::from_utf8_lossy(&answer);
        status_line.split(' ').nth(1)?.parse().ok()
    }

    /// Everything stored about `usernames` (account and profile rows, as
    /// JSON text, password hash and timestamps included), for comparing
    /// before and after.
    pub async fn stored_accounts(&self, usernames: &[&str]) -> Vec<String> {
        let names: Vec<String> = usernames.iter().map(|u| u.to_string()).collect();
        sqlx::query_scalar(
            "SELECT json_build_array(row_to_json(u), row_to_json(p))::text
             FROM users u JOIN profiles p ON p.user_id = u.id
             WHERE u.username = ANY($1) ORDER BY u.id",
        )
        .bind(&names)
        .fetch_all(self.state.db.primary())
        .await
        .expect("accounts read")
    }

    /// Reads of `get_profile` and the like answered by a replica and by the
    /// primary so far: `(replica, primary)`.
    pub async fn db_reads(&self) -> (u64, u64) {
        (
            self.metric(r#"folio_db_reads_total{target="replica"}"#)
                .await,
            self.metric(r#"folio_db_reads_total{target="primary"}"#)
                .await,
        )
    }

    /// Reads meant for a replica that the primary answered, for `reason`.
    pub async fn replica_fallbacks(&self, reason: &str) -> u64 {
        self.metric(&format!(
            r#"folio_replica_fallbacks_total{{reason="{reason}"}}"#
        ))
        .await
    }

    /// `folio_replica_lag_seconds` of the (one) replica, as last probed.
    pub async fn replica_lag(&self) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find(|line| line.starts_with("folio_replica_lag_seconds{"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no replica lag in:\n{text}"))
    }

    /// Waits until this instance's probes find every replica up and within
    /// the lag bound (at start the replica may not have the database yet).
    pub async fn wait_for_replicas(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.metrics_text().await;
            let up: Vec<&str> = text
                .lines()
                .filter(|line| line.starts_with("folio_replica_up{"))
                .collect();
            let lag_known = text
                .lines()
                .filter(|line| line.starts_with("folio_replica_lag_seconds{"))
                .all(|line| !line.ends_with("+Inf"));
            if !up.is_empty() && up.iter().all(|line| line.ends_with(" 1")) && lag_known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas not up after 30 s: {up:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A value in this deployment's Redis, read directly (`suffix` is the
    /// key without the deployment's prefix).
    pub async fn redis_get(&self, suffix: &str) -> Option<String> {
        let mut connection = self.state.redis.clone();
        redis::cmd("GET")
            .arg(format!("{}{suffix}", self.settings.service.redis_prefix))
            .query_async(&mut connection)
            .await
            .unwrap()
    }
}

/// Everything the process logs, into one buffer: for a test binary of its
/// own (it installs the process-wide subscriber).
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// At the most verbose level.
    pub fn install() -> Self {
        Self::install_at(tracing::Level::TRACE)
    }

    pub fn install_at(level: tracing::Level) -> Self {
        let capture = Self::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        capture
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Folio's panic hook (which logs through tracing, `server::panics`),
/// wrapped so that every panic of the process is also counted here and
/// printed as the default hook would: a test's own failed assertion stays
/// readable, and a panic nothing answered for (a streamed body, a task) is
/// still seen.
pub fn count_panics() -> &'static std::sync::atomic::AtomicUsize {
    use std::sync::atomic::AtomicUsize;
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    WRAPPED.call_once(|| {
        let default = std::panic::take_hook();
        server::panics::install_hook();
        let folio = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            folio(info);
            default(info);
        }));
    });
    &PANICS
}

pub const STRONG_PASSWORD: &str = "violet-kettle-harbour-93";

/// A profile edit, field by field (the form's raw strings).
#[derive(Clone, Copy)]
pub struct Edit<'a> {
    pub display_name: &'a str,
    pub bio: &'a str,
    pub avatar_url: &'a str,
    pub location: &'a str,
    pub website: &'a str,
}

/// An edit that sets only a display name.
pub const PLAIN: Edit<'static> = Edit {
    display_name: "Someone",
    bio: "",
    avatar_url: "",
    location: "",
    website: "",
};

impl Drop for TestApp {
    /// Drops the test database (FORCE ends the app's open connections).
    fn drop(&mut self) {
        if !self.owns_database {
            return;
        }
        if let app::ssr::media::MediaStoreConfig::Local { dir } = &self.settings.service.media {
            if dir.starts_with(std::env::temp_dir()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        let admin_url = self.admin_url.clone();
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#
                        )))
                        .await;
                }
            });
        })
        .join();
    }
}

/// How long a dependency that came back may take to be used again.
pub const RECOVERY: Duration = Duration::from_secs(15);

/// Polls `attempt` until it answers true, for at most `RECOVERY`; returns
/// how long that took.
pub async fn eventually<F, Fut>(what: &str, mut attempt: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if attempt().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < RECOVERY,
            "{what}: not recovered after {RECOVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The status and the JSON body of an answer.
pub async fn status_and_json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// The field names of a `Validation` error body, sorted.
pub fn error_fields(body: &serde_json::Value) -> Vec<String> {
    body.get("Validation")
        .and_then(|v| v.as_object())
        .unwrap_or_else(|| panic!("not a Validation error: {body}"))
        .keys()
        .cloned()
        .collect()
}

/// Lower-case hex SHA-256, computed independently of the app.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}
