//! A Redis Cluster of our own: three masters and three replicas, each a
//! redis-server on spare loopback ports (its cluster bus on port + 10 000),
//! joined by `redis-cli --cluster create`. Stopped and deleted on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::processes::free_port;

/// How long a master may be silent before its replica takes over. Short,
/// so that a failover test measures seconds, not the 15 s default.
pub const NODE_TIMEOUT_MS: u64 = 1_000;

pub struct RedisCluster {
    dir: PathBuf,
    nodes: Vec<ClusterNode>,
}

pub struct ClusterNode {
    pub port: u16,
    child: Option<Child>,
}

/// A port whose cluster bus port (+ 10 000) is free too, and neither of
/// which is a port or bus port already taken by this cluster.
fn cluster_port(taken: &mut Vec<u16>) -> u16 {
    loop {
        let port = free_port();
        let bus = port.wrapping_add(10_000);
        if port < 55_000
            && !taken.contains(&port)
            && !taken.contains(&bus)
            && std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok()
        {
            taken.extend([port, bus]);
            return port;
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("folio-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        let mut taken = Vec::new();
        for _ in 0..6 {
            let port = cluster_port(&mut taken);
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            nodes.push(ClusterNode {
                port,
                child: Some(child),
            });
        }
        let cluster = Self { dir, nodes };
        for node in &cluster.nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while redis_cli(node.port, &["PING"]).trim() != "PONG" {
                assert!(
                    Instant::now() < deadline,
                    "node {} never answered",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster.wait_for_replication(Duration::from_secs(30));
        cluster
    }

    /// Waits until every replica has synchronised with its master: a
    /// replica that never had its master's data refuses to take over
    /// from it (no failover at all for a cluster killed just after start).
    pub fn wait_for_replication(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for node in self.running() {
            loop {
                let info = redis_cli(node.port, &["INFO", "replication"]);
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {} not in sync after {limit:?}: {info}",
                    node.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `REDIS_URL` for Folio: every node a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// Waits until every running node reports `cluster_state:ok` and sees
    /// three masters that serve slots.
    pub fn wait_until_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.running().all(|node| {
                redis_cli(node.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            }) && self.masters().len() == 3;
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "cluster not ok after {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `victim` no longer serves slots (its replica was
    /// promoted in its place) and the cluster is whole again; returns how
    /// long that took.
    pub fn wait_for_failover(&self, victim: u16, limit: Duration) -> Duration {
        let began = Instant::now();
        loop {
            let masters = self.masters();
            if masters.len() == 3 && !masters.contains(&victim) {
                break;
            }
            assert!(
                began.elapsed() < limit,
                "no failover after {limit:?}: masters {masters:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_until_ok(limit);
        began.elapsed()
    }

    fn running(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Ports of the masters that serve slots, as a running node sees them.
    pub fn masters(&self) -> Vec<u16> {
        let Some(node) = self.running().next() else {
            return Vec::new();
        };
        redis_cli(node.port, &["CLUSTER", "NODES"])
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 8 && fields[2].contains("master") && !fields[2].contains("fail")
            })
            .filter_map(|line| {
                let address = line.split_whitespace().nth(1)?;
                address.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect()
    }

    /// The master that holds `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let node = self.running().next().expect("a running node");
        let slot: u16 = redis_cli(node.port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("a slot");
        self.masters()
            .into_iter()
            .find(|&port| {
                redis_cli(port, &["CLUSTER", "NODES"])
                    .lines()
                    .find(|l| l.contains("myself"))
                    .is_some_and(|l| owns(l, slot))
            })
            .expect("a master owns the slot")
    }

    /// Kills the node on `port` at once (SIGKILL: no goodbye to the cluster).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a `CLUSTER NODES` line's slot ranges include `slot`.
fn owns(line: &str, slot: u16) -> bool {
    line.split_whitespace().skip(8).any(|range| {
        let mut bounds = range.split('-');
        match (
            bounds.next().and_then(|b| b.parse::<u16>().ok()),
            bounds.next(),
        ) {
            (Some(start), Some(end)) => end
                .parse::<u16>()
                .is_ok_and(|end| (start..=end).contains(&slot)),
            (Some(single), None) => single == slot,
            _ => false,
        }
    })
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
