//! `spawn_app()`: the one way tests reach Folio.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use app::ssr::AppState;
use server::config::Settings;
use server::startup::Application;
use sqlx::{Connection, Executor, PgConnection};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub settings: Settings,
    db_name: String,
    admin_url: String,
    /// Only the first instance of a database drops it (see `spawn_peer_with`).
    owns_database: bool,
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
        let response = self
            .call(
                "register",
                &[
                    ("username", username),
                    ("email", &format!("{username}@example.com")),
                    ("password", STRONG_PASSWORD),
                ],
                &Cookie::default(),
            )
            .await;
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

    /// Reads one Prometheus counter from `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }
}

pub const STRONG_PASSWORD: &str = "violet-kettle-harbour-93";

impl Drop for TestApp {
    /// Drops the test database (FORCE ends the app's open connections).
    fn drop(&mut self) {
        if !self.owns_database {
            return;
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
                        .execute(
                            format!(r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#).as_str(),
                        )
                        .await;
                }
            });
        })
        .join();
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

/// A port nobody listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server of our own on a spare port, stopped however the test ends.
pub struct RedisProcess {
    child: Option<Child>,
    pub port: u16,
}

impl RedisProcess {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let process = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !process.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server on {port} never answered PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port (empty: nothing was persisted).
    #[allow(dead_code)] // used by the degraded-mode tests, not by every binary
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::start_on(self.port);
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
