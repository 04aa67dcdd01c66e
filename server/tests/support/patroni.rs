//! Folio's production database, for real: three Patroni nodes, etcd and
//! HAProxy on loopback, started by `scripts/pg-ha.sh` from the same files a
//! deployment uses (`deploy/postgres-ha/`). Stopped however the test ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PatroniCluster {
    dir: PathBuf,
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-ha.sh")
}

fn run(args: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("scripts/pg-ha.sh runs");
    assert!(
        output.status.success(),
        "scripts/pg-ha.sh {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

impl PatroniCluster {
    /// Starts the cluster and returns once a leader takes writes and two
    /// replicas stream from it.
    pub fn start() -> Self {
        // Under /tmp (world-readable), never under a 0700 home: Patroni
        // runs Postgres as the postgres user.
        let dir = std::env::temp_dir().join(format!("folio-ha-{}", uuid::Uuid::new_v4().simple()));
        // Made before starting, so that a start that fails halfway is
        // stopped by `Drop` too.
        let mut cluster = Self {
            dir: dir.clone(),
            env: HashMap::new(),
        };
        run(&["start", dir.to_str().unwrap()]);
        cluster.env = std::fs::read_to_string(dir.join("env"))
            .expect("pg-ha.sh wrote its env file")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        cluster
    }

    fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the cluster's env file"))
    }

    /// `DATABASE_URL` for database `db`: HAProxy's port to the leader.
    pub fn primary_url(&self, db: &str) -> String {
        format!("{}/{db}", self.var("PG_HA_PRIMARY_URL"))
    }

    /// `DATABASE_REPLICA_URLS` for database `db`: HAProxy's port to the replicas.
    pub fn replica_url(&self, db: &str) -> String {
        format!("{}/{db}", self.var("PG_HA_REPLICA_URL"))
    }

    /// A node's own Postgres, bypassing HAProxy (to ask it its role).
    pub fn node_url(&self, node: u8, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}",
            self.var(&format!("PG_HA_NODE{node}_PG_PORT"))
        )
    }

    /// The leader's node number (1, 2 or 3), as Patroni's API says.
    pub fn leader(&self) -> u8 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let name = run(&["leader", self.dir.to_str().unwrap()]);
            if let Some(n) = name.strip_prefix("node").and_then(|n| n.parse().ok()) {
                return n;
            }
            assert!(Instant::now() < deadline, "the cluster has no leader");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A dead host: node `node`'s Patroni and Postgres killed with SIGKILL.
    pub fn kill(&self, node: u8) {
        run(&["kill", self.dir.to_str().unwrap(), &node.to_string()]);
    }

    /// A planned switchover (`patronictl switchover`) to a replica.
    pub fn switchover(&self) {
        run(&["switchover", self.dir.to_str().unwrap()]);
    }

    /// Waits until the leader has a synchronous standby streaming from it:
    /// after a failover the survivor must follow the new leader before a
    /// switchover has a candidate (Patroni refuses one otherwise).
    pub async fn wait_for_sync_standby(&self) {
        let url = self.primary_url("postgres");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let url = url.clone();
            let synced = tokio::time::timeout(Duration::from_secs(1), async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM pg_stat_replication
                      WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')",
                )
                .fetch_one(&mut conn)
                .await
                .ok()
            })
            .await;
            if let Ok(Some(n)) = synced {
                if n > 0 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no synchronous standby after 90 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node numbers of the nodes that are primaries now (asked directly).
    pub async fn primaries(&self) -> Vec<u8> {
        let mut found = Vec::new();
        for node in 1..=3 {
            let url = self.node_url(node, "postgres");
            let asked = tokio::time::timeout(Duration::from_millis(500), async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await.ok()?;
                sqlx::query_scalar::<_, bool>("SELECT NOT pg_is_in_recovery()")
                    .fetch_one(&mut conn)
                    .await
                    .ok()
            })
            .await;
            if let Ok(Some(true)) = asked {
                found.push(node);
            }
        }
        found
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
