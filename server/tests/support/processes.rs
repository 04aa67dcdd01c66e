//! Dependencies of our own, on spare ports, stopped however a test ends:
//! the machine's Postgres and Redis are never stopped by a test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A throwaway cluster (initdb) in a temp dir, run as the `postgres` user when
/// we are root (Postgres refuses to run as root). Stopped and deleted on drop.
pub struct PostgresProcess {
    bin: PathBuf,
    pub data: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
}

pub fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgres installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect("a postgres bin dir")
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PostgresProcess {
    /// A fresh cluster (initdb), started.
    pub fn start() -> Self {
        let process = Self::unstarted();
        let initdb = process
            .command("initdb")
            .arg("-D")
            .arg(&process.data)
            .args(["-A", "trust", "-U", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(initdb.success(), "initdb failed");
        process.pg_ctl_start();
        process
    }

    /// A hot standby of `primary`, streaming from it: a base backup
    /// (`pg_basebackup -R -X stream` writes `standby.signal` and the
    /// connection to the primary), plus `settings` in its
    /// `postgresql.auto.conf` (kept across restarts), started.
    pub fn start_replica_of(primary: &PostgresProcess, settings: &[(&str, String)]) -> Self {
        let process = Self::unstarted();
        let backup = process
            .command("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
            .args(["-U", "postgres", "-R", "-X", "stream", "-D"])
            .arg(&process.data)
            .stdout(Stdio::null())
            .status()
            .expect("pg_basebackup runs");
        assert!(backup.success(), "pg_basebackup failed");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(process.data.join("postgresql.auto.conf"))
            .expect("the base backup has a postgresql.auto.conf");
        for (name, value) in settings {
            use std::io::Write;
            writeln!(conf, "{name} = '{value}'").unwrap();
        }
        process.pg_ctl_start();
        process
    }

    /// A temp dir (owned by `postgres` when we are root) and a spare port.
    fn unstarted() -> Self {
        let dir = std::env::temp_dir().join(format!("folio-pg-{}", uuid::Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown {dir:?}");
        }
        Self {
            bin: pg_bin(),
            data,
            dir,
            port: free_port(),
        }
    }

    pub fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn pg_ctl_start(&self) {
        let status = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {}",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        assert!(status.success(), "pg_ctl start failed");
    }

    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for PostgresProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary and a streaming replica of it, each a `PostgresProcess` of our
/// own (the machine's Postgres allows no replication connections). The
/// replica applies each commit `apply_delay` after the primary made it
/// (`recovery_min_apply_delay`): the lag every replica has, made long
/// enough to act within. Stop and restart either one as a test needs.
pub struct PostgresPair {
    pub primary: PostgresProcess,
    pub replica: PostgresProcess,
}

impl PostgresPair {
    pub fn start(apply_delay: Duration) -> Self {
        Self::start_with(apply_delay, &[])
    }

    /// With more settings for the replica (`max_standby_streaming_delay`…).
    pub fn start_with(apply_delay: Duration, replica_settings: &[(&str, String)]) -> Self {
        let primary = PostgresProcess::start();
        let mut settings = vec![(
            "recovery_min_apply_delay",
            format!("{}ms", apply_delay.as_millis()),
        )];
        settings.extend_from_slice(replica_settings);
        let replica = PostgresProcess::start_replica_of(&primary, &settings);
        Self { primary, replica }
    }

    /// `DATABASE_URL` and `DATABASE_REPLICA_URLS` for database `db`.
    pub fn urls(&self, db: &str) -> (String, Vec<String>) {
        (self.primary.url(db), vec![self.replica.url(db)])
    }

    /// Waits until the replica has replayed everything the primary has
    /// written so far (at least `apply_delay`).
    pub async fn catch_up(&self) {
        use sqlx::Connection;
        let mut primary = sqlx::PgConnection::connect(&self.primary.url("postgres"))
            .await
            .expect("primary answers");
        let position: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut primary)
            .await
            .unwrap();
        let mut replica = sqlx::PgConnection::connect(&self.replica.url("postgres"))
            .await
            .expect("replica answers");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replayed: bool =
                sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn")
                    .bind(&position)
                    .fetch_one(&mut replica)
                    .await
                    .unwrap();
            if replayed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica never replayed {position}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
