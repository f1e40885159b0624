//! MirrorMaker 2, the peer a user would pick for Kafka → Kafka, run by the benchmark beside the
//! bridge and the plain relay on the same broker: the `connect-mirror` jars of the broker's
//! Apache Kafka version (`scripts/kafka.sh fetch-mirror`) in dedicated mode
//! (`org.apache.kafka.connect.mirror.MirrorMaker`), with the JVM options of Kafka's own
//! `connect-mirror-maker.sh`.
//!
//! Both of its clusters are the benchmark's broker, under the aliases `src` and `dst`; it
//! replicates one topic from `src` to `dst`, which by its default replication policy writes to
//! `src.TOPIC`. Tuned only where its documentation says to: one task per partition
//! (`tasks.max`), and replication factor 1 for its internal topics on a one-node cluster.
//! Everything else is its default, as a user would run it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bridge::{exit_within, send_signal};
use crate::brokers;

/// A running MirrorMaker 2 process and its working directory (configuration and log).
pub struct MirrorMaker {
    child: Child,
    dir: tempfile::TempDir,
}

/// The directory of MirrorMaker 2's jars: `BENCH_MIRROR_MAKER_LIBS` (scripts/bench.sh sets it
/// from `scripts/kafka.sh fetch-mirror`), or `None` when it is not set.
pub fn libs() -> Option<PathBuf> {
    std::env::var_os("BENCH_MIRROR_MAKER_LIBS")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
}

/// The topic MirrorMaker 2 writes `topic` to.
pub fn target_topic(topic: &str) -> String {
    format!("src.{topic}")
}

impl MirrorMaker {
    /// Starts MirrorMaker 2 from the jars in `libs`, replicating `topic` (of `tasks`
    /// partitions, one task each) from the benchmark's broker to itself.
    pub fn start(libs: &Path, topic: &str, tasks: i32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bootstrap = brokers::kafka_bootstrap();
        let config = format!(
            "clusters = src, dst
src.bootstrap.servers = {bootstrap}
dst.bootstrap.servers = {bootstrap}
src->dst.enabled = true
src->dst.topics = {topic}
dst->src.enabled = false
tasks.max = {tasks}
replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset-syncs.topic.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1
config.storage.replication.factor = 1
"
        );
        let properties = dir.path().join("mm2.properties");
        std::fs::write(&properties, config).expect("mm2.properties");
        let log4j = dir.path().join("log4j2.properties");
        std::fs::write(
            &log4j,
            format!(
                "appender.file.type = File
appender.file.name = file
appender.file.fileName = {}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
",
                dir.path().join("mm2.log").display()
            ),
        )
        .expect("log4j2.properties");
        // As bin/connect-mirror-maker.sh and bin/kafka-run-class.sh start it.
        let child = Command::new("java")
            .args([
                "-Xms256M",
                "-Xmx2G",
                "-server",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
            ])
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .arg("org.apache.kafka.connect.mirror.MirrorMaker")
            .arg(&properties)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).expect("stderr.log"),
            ))
            .spawn()
            .expect("java (MirrorMaker 2)");
        MirrorMaker { child, dir }
    }

    /// The Java process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, up to 30 s to exit, then SIGKILL; its log and standard error.
    pub fn stop(mut self) -> String {
        self.terminate();
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("mm2.log"), read("stderr.log"))
    }

    /// SIGTERM, up to 30 s to exit, then SIGKILL, unless it is gone already.
    fn terminate(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        send_signal(self.child.id(), libc::SIGTERM);
        exit_within(&mut self.child, Duration::from_secs(30));
    }
}

/// A run that ends early (a panic) does not leave the JVM running.
impl Drop for MirrorMaker {
    fn drop(&mut self) {
        self.terminate();
    }
}
