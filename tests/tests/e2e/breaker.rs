//! The circuit breaker against the real brokers: repeated plugin failures trip a mapping's
//! breaker; by policy it dead-letters without calling the plugin, or pauses with its messages
//! unacknowledged; a plugin reload or the cool-down resumes it. Nothing is lost either way.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bridge_tests::artifacts;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Raw, Running, Scenario};
use serde_json::Value;

/// How long a test waits for the bridge to get somewhere.
const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    dir: tempfile::TempDir,
    topic: String,
    queue: String,
    dead_letters: String,
}

/// A Kafka→RabbitMQ mapping through the hostile plugin in `trap` mode (it traps on every
/// message without header `x-behave`), with `breaker` and a RabbitMQ dead-letter queue; the
/// bridge started on it, ready.
async fn setup(breaker: &str) -> (Setup, Running) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(artifacts::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    let topic = unique("breaker-in");
    brokers::create_topic(&topic, 1).await;
    let (exchange, queue) = (unique("breaker-ex"), unique("breaker-q"));
    let (dl_exchange, dead_letters) = (unique("breaker-dlx"), unique("breaker-dlq"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::declare_bound_queue(&conn, &dl_exchange, &dead_letters, "dl").await;
    let bridge = Scenario::new()
        .health()
        .plugin("hostile", "hostile.wasm", r#"mode = "trap""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("guarded", &[&topic], &unique("breaker"), &exchange)
                .routing_key("rk")
                .dead_letter_rabbitmq(&dl_exchange, "dl")
                .plugins(&["hostile"])
                .set("breaker", Raw(breaker)),
        )
        .start_at(&dir.path().join("bridge.toml"));
    bridge.ready().await;
    let s = Setup {
        dir,
        topic,
        queue,
        dead_letters,
    };
    (s, bridge)
}

fn records(prefix: &str, n: usize, behave: bool) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: None,
            payload: Some(format!("{prefix}-{i}").into_bytes()),
            headers: if behave {
                vec![("x-behave".into(), b"1".to_vec())]
            } else {
                vec![]
            },
            partition: 0,
            timestamp: None,
        })
        .collect()
}

fn breaker(bridge: &Running) -> Value {
    bridge.status()["mappings"]["guarded"]["counters"]["breaker"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_breaker_dead_letters_without_calling_the_plugin_until_a_reload() {
    let (s, mut bridge) = setup(
        r#"{ failures = 3, window_secs = 60, cool_down_secs = 600, action = "dead-letter" }"#,
    )
    .await;
    brokers::produce(&s.topic, &records("bad", 3, false), None).await;
    bridge
        .wait_for("the breaker to open", WAIT, || breaker(&bridge) == "open")
        .await;
    // Well-behaved messages now: the open breaker dead-letters them, the plugin is not called.
    brokers::produce(&s.topic, &records("held", 4, true), None).await;
    let conn = brokers::amqp().await;
    let letters = brokers::consume_queue(&conn, &s.dead_letters, 7, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 7);
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| l.header("x-bridge-reason").unwrap_or_default())
        .collect();
    assert!(
        reasons[..3].iter().all(|r| r.contains("plugin-trap")),
        "{reasons:?}"
    );
    assert!(
        reasons[3..]
            .iter()
            .all(|r| r.contains("circuit breaker is open")),
        "{reasons:?}"
    );
    let metrics = bridge.metrics();
    assert!(
        metrics
            .contains("bridge_plugin_call_seconds_count{mapping=\"guarded\",tenant=\"default\",plugin=\"hostile\"} 3"),
        "only the three failing calls reached the plugin"
    );
    assert!(metrics.contains("bridge_breaker_state{mapping=\"guarded\",tenant=\"default\"} 1"));

    // A new plugin version closes the breaker; well-behaved messages flow again.
    let mut v2 = std::fs::read(artifacts::HOSTILE).unwrap();
    v2.extend_from_slice(&[0, 4, 3, b'v', b'e', b'r']);
    std::fs::write(s.dir.path().join("hostile.wasm.new"), &v2).unwrap();
    std::fs::rename(
        s.dir.path().join("hostile.wasm.new"),
        s.dir.path().join("hostile.wasm"),
    )
    .unwrap();
    bridge
        .wait_for("the reload", WAIT, || {
            bridge.status()["reloads"]["applied"] == 1
        })
        .await;
    brokers::produce(&s.topic, &records("good", 5, true), None).await;
    let delivered = brokers::consume_queue(&conn, &s.queue, 5, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 5, "the mapping resumed after the reload");
    assert_eq!(breaker(&bridge), "closed");
    let log = bridge.log_text();
    bridge.stop_clean();
    assert!(log.contains("Circuit breaker open"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_breaker_holds_messages_unacknowledged_then_resumes() {
    let (s, mut bridge) =
        setup(r#"{ failures = 2, window_secs = 60, cool_down_secs = 10, action = "pause" }"#).await;
    brokers::produce(&s.topic, &records("bad", 2, false), None).await;
    bridge
        .wait_for("the breaker to open", WAIT, || breaker(&bridge) == "open")
        .await;
    brokers::produce(&s.topic, &records("good", 10, true), None).await;
    // While open, the good messages wait: consumed, in flight, not delivered.
    bridge
        .wait_for("the held messages", WAIT, || {
            bridge.status()["mappings"]["guarded"]["counters"]["in_flight"] == 10
        })
        .await;
    let st = bridge.status();
    assert_eq!(
        st["mappings"]["guarded"]["counters"]["breaker"], "open",
        "{st}"
    );
    assert_eq!(
        st["mappings"]["guarded"]["counters"]["delivered"], 0,
        "{st}"
    );
    // After the cool-down a message tries, succeeds, and the breaker closes: all delivered.
    let conn = brokers::amqp().await;
    let delivered = brokers::consume_queue(&conn, &s.queue, 10, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 10);
    let letters = brokers::consume_queue(&conn, &s.dead_letters, 2, Duration::from_secs(10)).await;
    assert_eq!(letters.len(), 2, "the two failures were dead-lettered");
    bridge
        .wait_for("the breaker to close", WAIT, || {
            breaker(&bridge) == "closed"
        })
        .await;
    bridge.stop_clean();
}
