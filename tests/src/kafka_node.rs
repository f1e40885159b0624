//! Private Apache Kafka brokers on free loopback ports, for tests that need a second cluster,
//! must restart or kill a broker, or need replication: a single node ([`KafkaNode`]) or a
//! cluster of KRaft nodes, each broker and controller ([`KafkaCluster`]). Started with
//! `scripts/kafka.sh` (the same launcher as the shared broker), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bridge::free_port;

/// `scripts/kafka.sh` of this checkout.
fn launcher() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh")
}

/// One broker process of a cluster.
struct Node {
    id: u32,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    pid: Option<u32>,
}

/// A running private Kafka cluster (one node or several).
pub struct KafkaCluster {
    /// `127.0.0.1:PORT,…` of every node.
    pub bootstrap: String,
    nodes: Vec<Node>,
    voters: String,
    extra: Vec<String>,
    format: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A single-node cluster.
pub type KafkaNode = KafkaCluster;

impl KafkaCluster {
    /// A single node on a fresh log directory.
    pub fn start() -> Self {
        Self::start_with(1, &[])
    }

    /// `n` nodes, each broker and controller (a static quorum). With three nodes and more,
    /// internal topics and new topics default to replication factor 3 and
    /// `min.insync.replicas = 2`. `extra` are further `server.properties` lines, in which
    /// `{port}` and `{controller_port}` stand for the node's own ports.
    pub fn start_with(n: u32, extra: &[&str]) -> Self {
        Self::start_formatted(n, extra, &[])
    }

    /// [`KafkaCluster::start_with`], passing `format` to the storage format as well (for
    /// example `--add-scram` to create SASL/SCRAM users).
    pub fn start_formatted(n: u32, extra: &[&str], format: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<Node> = (1..=n)
            .map(|id| Node {
                id,
                port: free_port(),
                controller_port: free_port(),
                dir: dir.path().join(format!("node-{id}")),
                pid: None,
            })
            .collect();
        let voters = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut props: Vec<String> = Vec::new();
        if n >= 3 {
            for p in [
                "default.replication.factor=3",
                "min.insync.replicas=2",
                "offsets.topic.replication.factor=3",
                "transaction.state.log.replication.factor=3",
                "transaction.state.log.min.isr=2",
                "share.coordinator.state.topic.replication.factor=3",
                "share.coordinator.state.topic.min.isr=2",
            ] {
                props.push(p.to_string());
            }
        }
        props.extend(extra.iter().map(|s| s.to_string()));
        let bootstrap = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",");
        let cluster_id = uuid_for_cluster();
        let mut cluster = KafkaCluster {
            bootstrap,
            nodes,
            voters,
            extra: props,
            format: format.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        };
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i, &cluster_id);
        }
        cluster.wait_ready(cluster.nodes.len());
        cluster
    }

    fn spawn(&mut self, i: usize, cluster_id: &str) {
        let heap = if self.nodes.len() > 1 { "384m" } else { "512m" };
        let node = &self.nodes[i];
        let extra: Vec<String> = self
            .extra
            .iter()
            .map(|line| {
                line.replace("{port}", &node.port.to_string())
                    .replace("{controller_port}", &node.controller_port.to_string())
            })
            .collect();
        let out = Command::new("bash")
            .arg(launcher())
            .arg("start")
            .arg(&node.dir)
            .args([
                node.id.to_string(),
                node.port.to_string(),
                node.controller_port.to_string(),
                self.voters.clone(),
            ])
            .args(&extra)
            .env("KAFKA_CLUSTER_ID", cluster_id)
            .env("KAFKA_FORMAT_ARGS", self.format.join(" "))
            .env("KAFKA_HEAP", heap)
            .output()
            .expect("scripts/kafka.sh runs");
        assert!(
            out.status.success(),
            "starting Kafka node {} failed: {}",
            node.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("scripts/kafka.sh prints the PID");
        self.nodes[i].pid = Some(pid);
    }

    /// Waits until a node answers metadata listing `brokers` brokers.
    fn wait_ready(&self, brokers: usize) {
        let port = self
            .nodes
            .iter()
            .find(|n| n.pid.is_some())
            .expect("a running node")
            .port;
        let status = Command::new("bash")
            .arg(launcher())
            .args(["wait", &port.to_string(), &brokers.to_string(), "120"])
            .status()
            .expect("scripts/kafka.sh runs");
        assert!(
            status.success(),
            "Kafka cluster {} did not become ready; logs in {}",
            self.bootstrap,
            self.nodes[0].dir.display()
        );
    }

    /// Bootstrap address of node `id` (1-based) alone.
    pub fn node_bootstrap(&self, id: u32) -> String {
        format!("127.0.0.1:{}", self.node(id).port)
    }

    fn node(&self, id: u32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    /// `kill -9` of node `id` (1-based), as a crash would.
    pub fn kill(&mut self, id: u32) {
        let node = &mut self.nodes[(id - 1) as usize];
        if let Some(pid) = node.pid.take() {
            signal(pid, libc::SIGKILL);
        }
    }

    /// Starts node `id` again on its log directory and waits until the cluster lists it.
    pub fn revive(&mut self, id: u32) {
        self.spawn((id - 1) as usize, "");
        let running = self.nodes.iter().filter(|n| n.pid.is_some()).count();
        self.wait_ready(running);
    }

    /// Kills every node (as a crash would), waits `down`, and starts them again on the same
    /// ports and log directories.
    pub fn restart(&mut self, down: Duration) {
        for id in 1..=self.nodes.len() as u32 {
            self.kill(id);
        }
        std::thread::sleep(down);
        for i in 0..self.nodes.len() {
            self.spawn(i, "");
        }
        self.wait_ready(self.nodes.len());
    }
}

fn signal(pid: u32, sig: i32) {
    crate::bridge::send_signal(pid, sig);
    // Reap: wait until the process is gone so ports are free again.
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh KRaft cluster id (22 characters of URL-safe base64 of 16 random bytes; the
/// launcher passes it as `--cluster-id=ID`, so a leading `-` is fine).
fn uuid_for_cluster() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import base64,os;print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip('='))",
        ])
        .output()
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as u32 {
            self.kill(id);
        }
    }
}
