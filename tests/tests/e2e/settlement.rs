//! Settlement per partition: a message the target keeps refusing (unroutable, and no
//! dead-letter target, so it is kept and retried) holds back only its own partition; the
//! others keep flowing. SIGTERM still stops the bridge at once, the message is not committed,
//! and once the target can take it, a restarted bridge delivers it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::artifacts;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;

/// How long a test waits for the bridge to get somewhere.
const WAIT: Duration = Duration::from_secs(30);
/// How soon after SIGTERM the bridge must have stopped, retries under way or not.
const PROMPT: Duration = Duration::from_secs(15);

fn record(kind: &str, i: usize) -> Record {
    Record::kind(kind, i, 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_message_holds_back_only_its_partition_and_never_blocks_shutdown() {
    let topic = unique("settle");
    brokers::create_topic(&topic, 2).await;
    let exchange = unique("settle-ex");
    let queue = unique("settle-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "order.ok").await;
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    let scenario = Scenario::new()
        .plugin(
            "route",
            artifacts::ROUTING_KEY,
            r#"routing_key = "order.{json:kind}""#,
        )
        .bridge("shutdown_timeout_secs", 20)
        .mapping(
            Mapping::kafka_to_rabbitmq("settle", &[&topic], &unique("settle"), &exchange)
                .plugins(&["route"]),
        );
    // Partition 0: a message no queue is bound for.
    brokers::produce(&topic, &[record("lost", 0)], Some(0)).await;
    let mut bridge = scenario.start();
    bridge
        .wait_for("the refused message to be retried", WAIT, || {
            bridge.log_text().contains("retrying")
        })
        .await;
    // Partition 1 flows while partition 0 waits on its retry.
    let flowing: Vec<Record> = (1..=200).map(|i| record("ok", i)).collect();
    brokers::produce(&topic, &flowing, Some(1)).await;
    bridge
        .wait_for("partition 1's 200 messages", WAIT, || {
            arrived.lock().unwrap().len() >= 200
        })
        .await;
    assert_eq!(
        arrived.lock().unwrap().len(),
        200,
        "partition 1 is not held back; log:\n{}",
        bridge.log_text()
    );

    // SIGTERM with the message still under retry: a prompt, clean stop.
    let stopping = Instant::now();
    bridge.stop_clean_within(PROMPT);
    println!(
        "stopped {:?} after SIGTERM with a message under retry",
        stopping.elapsed()
    );

    // The message was not committed: once it can be routed, the next run delivers it.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "order.lost".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    bridge.spawn();
    let deadline = Instant::now() + WAIT;
    while arrived.lock().unwrap().len() < 201 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bridge.stop_clean_within(PROMPT);
    collector.abort();
    let got = arrived.lock().unwrap();
    let lost = got
        .iter()
        .filter(|(_, p)| p.starts_with(br#"{"kind":"lost""#))
        .count();
    assert_eq!(
        lost,
        1,
        "the held message arrives once; log:\n{}",
        bridge.log_text()
    );
    assert_eq!(got.len(), 201, "nothing else is redelivered");
}

/// The same for a message a plugin fails on (it traps): the policy's retries re-run the chain
/// for that message only, its partition waits, the other flows; after SIGTERM and a restart
/// with a dead-letter target, it is dead-lettered, not lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_a_plugin_fails_on_holds_back_only_its_partition() {
    let topic = unique("settle-chain");
    brokers::create_topic(&topic, 2).await;
    let dlq = unique("settle-dlq");
    brokers::create_topic(&dlq, 1).await;
    let exchange = unique("settle-chain-ex");
    let queue = unique("settle-chain-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    let behave = |mut r: Record| {
        r.headers.push(("x-behave".to_string(), b"1".to_vec()));
        r
    };
    let base = Scenario::new().plugin("hostile", artifacts::HOSTILE, r#"mode = "trap""#);
    let mapping = Mapping::kafka_to_rabbitmq(
        "settle-chain",
        &[&topic],
        &unique("settle-chain"),
        &exchange,
    )
    .routing_key("rk")
    .plugins(&["hostile"]);
    brokers::produce(&topic, &[record("poison", 0)], Some(0)).await;
    let mut bridge = base.clone().mapping(mapping.clone()).start();
    let deadline = Instant::now() + WAIT;
    while !bridge.log_text().contains("Processing failed; retrying") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flowing: Vec<Record> = (1..=200).map(|i| behave(record("ok", i))).collect();
    brokers::produce(&topic, &flowing, Some(1)).await;
    bridge
        .wait_for("partition 1's 200 messages", WAIT, || {
            arrived.lock().unwrap().len() >= 200
        })
        .await;
    assert_eq!(
        arrived.lock().unwrap().len(),
        200,
        "partition 1 is not held back; log:\n{}",
        bridge.log_text()
    );
    bridge.stop_clean_within(PROMPT);
    let mut bridge = base.mapping(mapping.dead_letter_kafka(&dlq)).start();
    let d = dlq.clone();
    let dead =
        tokio::task::spawn_blocking(move || brokers::consume_topic(&d, 1, Duration::from_secs(30)))
            .await
            .unwrap();
    bridge.stop_clean_within(PROMPT);
    collector.abort();
    assert!(
        dead.len() == 1,
        "{:?}, expected {:?}; {}",
        dead.len(),
        1,
        bridge.log_report()
    );
    assert_eq!(
        dead[0].header("x-bridge-failure-kind").as_deref(),
        Some("plugin-trap")
    );
    assert_eq!(
        arrived.lock().unwrap().len(),
        200,
        "nothing redelivered twice"
    );
}
