//! Graceful shutdown of the real binary: on SIGTERM the server stops
//! accepting connections, lets the request in flight finish, and exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};

mod support;

use support::{free_port, server_url};

/// The server process and its database, both gone however the test ends.
struct Server {
    child: Child,
    port: u16,
    db_name: String,
    log: std::path::PathBuf,
}

impl Server {
    fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let db_name = format!("folio_test_shutdown_{id}");
        let port = free_port();
        let log = std::env::temp_dir().join(format!("folio-shutdown-{id}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env("DATABASE_URL", format!("{}/{db_name}", server_url()))
            .env(
                "REDIS_URL",
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            )
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("FOLIO_REDIS_PREFIX", format!("test:{id}:"))
            .env("FOLIO_LOG", "info")
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("server binary starts");
        Self {
            child,
            port,
            db_name,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(500),
        )
    }

    /// One request on a fresh connection: the status line's code.
    fn get_status(&self, path: &str) -> Option<u16> {
        let mut stream = self.connect().ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split(' ').nth(1)?.parse().ok()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get_status("/readyz") != Some(200) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server never ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server still running {within:?} after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let url = format!("{}/postgres", server_url());
        let db_name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&url).await {
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

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_zero() {
    let mut server = Server::start();
    server.wait_ready();

    // A request whose body is still on its way when the signal arrives.
    let body = "_=1";
    let mut stream = server.connect().expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /api/count_users HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n\r\n",
        server.port,
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500)); // the server has the headers

    server.sigterm();
    let signalled = Instant::now();

    // No new connections once the signal is handled.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.connect().is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections 5 s after SIGTERM:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // …while the request in flight keeps the process alive.
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight:\n{}",
        server.log()
    );

    stream.write_all(body.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("the response arrives complete");
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200 "),
        "{response}\n{}",
        server.log()
    );
    let (head, payload) = response.split_once("\r\n\r\n").expect("headers end");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    assert_eq!(payload.len(), length, "{response}");
    assert_eq!(payload, "0", "count_users of a fresh database");

    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit {status}:\n{}", server.log());
    eprintln!("exited 0 {:?} after SIGTERM", signalled.elapsed());
    assert!(server.connect().is_err());
}
