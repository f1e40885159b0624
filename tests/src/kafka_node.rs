//! A private Kafka-compatible broker (`tansu`, SQLite storage) on a free loopback port, for
//! tests that need a second cluster or must restart the broker. Stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bridge::free_port;

/// A running private broker.
pub struct KafkaNode {
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn spawn(dir: &Path, port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tansu.log"))
        .expect("log");
    let child = Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("tansu starts (scripts/setup.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

impl KafkaNode {
    /// Starts a broker on a fresh database.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        KafkaNode {
            bootstrap: format!("127.0.0.1:{port}"),
            port,
            child: spawn(dir.path(), port),
            dir,
        }
    }

    /// Kills the broker (as a crash would), waits `down`, and starts it again on the same
    /// port and database.
    pub fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.child = spawn(self.dir.path(), self.port);
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        self.stop();
    }
}
