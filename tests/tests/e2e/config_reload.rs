//! Configuration reload against the real brokers: a new file adds one mapping and removes
//! another while a third keeps flowing untouched (no restart, no rebalance, nothing lost or
//! duplicated); an invalid file is rejected whole, naming the file, line and key, and the
//! running configuration stays.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use bridge_tests::bridge::http_post;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use serde_json::Value;

const TOKEN: &str = "config-reload-token";
/// How long a test waits for the bridge to get somewhere.
const WAIT: Duration = Duration::from_secs(60);

/// The brokers, a health listener and the admin token: what every version of the file has.
fn base() -> Scenario {
    Scenario::new().health().bridge("admin_token", TOKEN)
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Route {
    topic: String,
    exchange: String,
    queue: String,
    group: String,
}

impl Route {
    /// Mapping `name` from the route's topic to its exchange, with routing key `rk`.
    fn mapping(&self, name: &str) -> Mapping {
        Mapping::kafka_to_rabbitmq(name, &[&self.topic], &self.group, &self.exchange)
            .routing_key("rk")
    }
}

async fn route(prefix: &str, partitions: i32) -> Route {
    let topic = unique(&format!("{prefix}-in"));
    brokers::create_topic(&topic, partitions).await;
    let exchange = unique(&format!("{prefix}-ex"));
    let queue = unique(&format!("{prefix}-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    Route {
        topic,
        exchange,
        queue,
        group: unique(prefix),
    }
}

fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            payload: Some(format!("{prefix}-{i:06}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_adds_and_removes_mappings_and_leaves_the_third_untouched() {
    const KEEP: usize = 6_000;
    let keep = route("keep", 2).await;
    let old = route("old", 1).await;
    let new = route("new", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let first = base().mapping(keep.mapping("keep"));
    let second = first.clone().mapping(new.mapping("new"));
    let mut bridge = first.mapping(old.mapping("old")).start_at(&path);
    bridge.ready().await;
    let (seen, reader) = brokers::collect_queue(&keep.queue).await;
    let feed = brokers::feed_partitions(&brokers::kafka_bootstrap(), &keep.topic, "keep", KEEP, 2);
    brokers::produce(&old.topic, &records("old", 100), None).await;
    brokers::produce(&new.topic, &records("new", 100), None).await;
    let conn = brokers::amqp().await;
    assert_eq!(
        brokers::consume_queue(&conn, &old.queue, 100, Duration::from_secs(30))
            .await
            .len(),
        100
    );
    bridge
        .wait_for("the keep mapping to flow", WAIT, || {
            seen.lock().unwrap().len() > 1_000
        })
        .await;
    let before = bridge.status();
    assert_eq!(before["mappings"]["keep"]["counters"]["partitions"], 2);

    // Remove `old`, add `new`; the file watch applies it.
    write(&path, &second.to_toml());
    bridge
        .wait_for("the configuration reload", WAIT, || {
            bridge.status()["reloads"]["config"]["applied"] == 1
        })
        .await;
    let reloaded_at = Instant::now();
    assert_eq!(
        brokers::consume_queue(&conn, &new.queue, 100, Duration::from_secs(30))
            .await
            .len(),
        100,
        "the added mapping bridges"
    );
    // What reaches `old`'s topic now stays in Kafka.
    brokers::produce(&old.topic, &records("late", 10), None).await;
    feed.await.unwrap();
    brokers::wait_distinct(&seen, KEEP, Duration::from_secs(60)).await;
    let after = bridge.status();
    let revoked = bridge.metric(
        "bridge_rebalanced_partitions_total{mapping=\"keep\",tenant=\"default\",change=\"revoked\"}",
    );
    bridge.stop_clean();
    reader.abort();

    let (lost, duplicates) = brokers::arrivals_loss_and_duplicates(KEEP, &seen);
    assert_eq!((lost, duplicates), (0, 0), "keep: lost, duplicated");
    let changes = &after["reloads"]["config"]["last_changes"];
    assert_eq!(changes["added"], serde_json::json!(["new"]));
    assert_eq!(changes["removed"], serde_json::json!(["old"]));
    assert_eq!(changes["restarted"], serde_json::json!([]));
    assert!(after["mappings"].get("old").is_none(), "{after}");
    // `keep` was not touched: same partitions, no restart, no rebalance.
    let keep_after = &after["mappings"]["keep"]["counters"];
    assert_eq!(keep_after["partitions"], 2);
    assert_eq!(keep_after["restarts"], 0);
    assert_eq!(revoked.unwrap_or(0.0), 0.0, "keep lost no partition");
    assert_eq!(
        brokers::consume_queue(&conn, &old.queue, 1, Duration::from_secs(2))
            .await
            .len(),
        0,
        "the removed mapping no longer bridges"
    );
    // Throughput of `keep` around the reload (a figure, not an assertion).
    let arrivals = seen.lock().unwrap();
    let rate = |from: Instant, to: Instant| {
        let n = arrivals
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count();
        n as f64 / (to - from).as_secs_f64()
    };
    let window = Duration::from_secs(2);
    eprintln!(
        "keep: {:.0} msg/s in the 2 s before the reload, {:.0} msg/s in the 2 s after",
        rate(reloaded_at - window, reloaded_at),
        rate(reloaded_at, reloaded_at + window)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_configuration_is_rejected_whole() {
    let keep = route("inv", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let good = base().mapping(keep.mapping("keep"));
    // A typo in one key, and a second mapping that would otherwise be added.
    let bad = good.clone().mapping(
        Mapping::kafka_to_rabbitmq("extra", &[&keep.topic], "g", &keep.exchange)
            .target("routing_kee", "rk"),
    );
    let mut bridge = good.start_at(&path);
    bridge.ready().await;
    write(&path, &bad.to_toml());
    let (code, body) = http_post(bridge.health_port(), "/admin/reload", Some(TOKEN)).unwrap();
    assert_eq!(code, 422, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["config"], "rejected");
    let error = report["config_error"].as_str().unwrap();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("routing_kee"), "{error}");
    assert!(error.contains("line"), "{error}");

    brokers::produce(&keep.topic, &records("after", 50), None).await;
    let conn = brokers::amqp().await;
    let got = brokers::consume_queue(&conn, &keep.queue, 50, Duration::from_secs(30)).await;
    let st = bridge.status();
    let log = bridge.log_text();
    bridge.stop_clean();
    assert_eq!(got.len(), 50, "the running configuration keeps bridging");
    assert!(st["mappings"].get("extra").is_none());
    assert!(st["reloads"]["config"]["rejected"].as_u64().unwrap() >= 1);
    assert!(log.contains("Configuration reload rejected; the running configuration stays."));
}

/// A reload rejected for a cause outside the file (a plugin file not there yet) is retried in
/// full by the next `POST /admin/reload` or SIGHUP, though the file's text has not changed
/// since.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_reload_is_retried_once_the_cause_outside_the_file_is_fixed() {
    let keep = route("retry", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let plugin = dir.path().join("later.wasm");
    let good = base().mapping(keep.mapping("keep"));
    let with_plugin = good
        .clone()
        .plugin("later", &plugin, r#"mode = "echo""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("extra", &[&keep.topic], &unique("g2"), &keep.exchange)
                .routing_key("rk")
                .plugins(&["later"]),
        );
    let mut bridge = good.start_at(&path);
    bridge.ready().await;
    write(&path, &with_plugin.to_toml());
    let (code, body) = http_post(bridge.health_port(), "/admin/reload", Some(TOKEN)).unwrap();
    assert_eq!(code, 422, "the plugin file is missing: {body}");
    assert!(body.contains("later.wasm"), "{body}");
    std::fs::copy(bridge_tests::artifacts::HOSTILE, &plugin).unwrap();
    let (code, body) = http_post(bridge.health_port(), "/admin/reload", Some(TOKEN)).unwrap();
    assert_eq!(code, 200, "retried in full: {body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["config"], "applied", "{body}");
    assert!(bridge.status()["mappings"].get("extra").is_some());

    // The same through SIGHUP: rejected while the second plugin file is missing, applied by
    // the next signal once it is there.
    let second = dir.path().join("later2.wasm");
    let with_second = with_plugin
        .plugin("later2", &second, r#"mode = "echo""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("extra2", &[&keep.topic], &unique("g3"), &keep.exchange)
                .routing_key("rk")
                .plugins(&["later2"]),
        );
    write(&path, &with_second.to_toml());
    bridge_tests::bridge::send_signal(bridge.pid(), libc::SIGHUP);
    bridge
        .wait_for("the rejection of later2.wasm", WAIT, || {
            bridge.status().to_string().contains("later2.wasm")
        })
        .await;
    std::fs::copy(bridge_tests::artifacts::HOSTILE, &second).unwrap();
    bridge_tests::bridge::send_signal(bridge.pid(), libc::SIGHUP);
    bridge
        .wait_for("mapping extra2 after the second SIGHUP", WAIT, || {
            bridge.status()["mappings"].get("extra2").is_some()
        })
        .await;
    bridge.stop_clean();
}
