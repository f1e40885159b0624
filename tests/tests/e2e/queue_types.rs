//! Queue types and arguments in `declare`: a mapping creates quorum and stream queues with the
//! arguments it names, and a quorum queue works as a source and as a target.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bridge_tests::brokers::{self, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::BasicProperties;

/// `rabbitmqctl list_queues name type arguments` as JSON text.
fn queues() -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "name",
            "type",
            "arguments",
            "--formatter",
            "json",
        ])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `list_queues` line of `queue`.
fn queue_line(all: &str, queue: &str) -> String {
    all.lines()
        .find(|l| l.contains(&format!("\"name\":\"{queue}\"")))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn quorum_and_stream_queues_are_declared_and_quorum_queues_bridge_both_ways() {
    const N: usize = 20;
    let (topic_in, topic_out) = (unique("qt-in"), unique("qt-out"));
    brokers::create_topics(&[&topic_in, &topic_out], 1).await;
    let (exchange, target_queue, stream_queue) =
        (unique("qt-ex"), unique("qt-target"), unique("qt-stream"));
    let source_queue = unique("qt-source");
    let mut bridge = Scenario::new()
        .health()
        .mapping(
            Mapping::kafka_to_rabbitmq("to-quorum", &[&topic_in], &unique("g"), &exchange)
                .routing_key("rk")
                .extra(&format!(
                    r#"declare = {{ queue = "{target_queue}", queue_type = "quorum", arguments = {{ "x-delivery-limit" = 5, "x-max-length" = 100000 }} }}"#
                )),
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("to-stream", &[&topic_in], &unique("g"), &exchange)
                .routing_key("rs")
                .extra(&format!(
                    r#"declare = {{ queue = "{stream_queue}", queue_type = "stream", arguments = {{ "x-max-age" = "1D" }} }}"#
                )),
        )
        .mapping(
            Mapping::rabbitmq_to_kafka("from-quorum", &source_queue, &topic_out)
                .extra(r#"declare = { queue_type = "quorum" }"#),
        )
        .start();
    bridge.ready().await;
    let all = queues();
    let (target, stream, source) = (
        queue_line(&all, &target_queue),
        queue_line(&all, &stream_queue),
        queue_line(&all, &source_queue),
    );
    assert!(
        target.contains(r#""type":"quorum""#) && target.contains("x-delivery-limit"),
        "{target}"
    );
    assert!(
        stream.contains(r#""type":"stream""#) && stream.contains("x-max-age"),
        "{stream}"
    );
    assert!(source.contains(r#""type":"quorum""#), "{source}");
    // Both ways through quorum queues.
    brokers::produce(
        &topic_in,
        &brokers::numbered_records("to-quorum", N, 64),
        None,
    )
    .await;
    let conn = brokers::amqp().await;
    let messages: Vec<(Vec<u8>, BasicProperties)> = (0..N)
        .map(|i| {
            (
                format!("from-quorum-{i}").into_bytes(),
                BasicProperties::default(),
            )
        })
        .collect();
    brokers::publish_to_queue(&conn, &source_queue, &messages).await;
    // Read on until nothing more comes: a duplicate would show.
    let arrived = brokers::consume_queue(&conn, &target_queue, 2 * N, Duration::from_secs(5)).await;
    let out = brokers::read_topic(&topic_out, 2 * N, Duration::from_secs(5)).await;
    bridge.stop_clean();
    let log = bridge.log_report();
    let distinct = |payloads: Vec<Vec<u8>>| {
        payloads
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let (arrived_n, out_n) = (arrived.len(), out.len());
    let arrived_distinct = distinct(arrived.into_iter().map(|r| r.payload).collect());
    let out_distinct = distinct(out.into_iter().filter_map(|r| r.payload).collect());
    assert_eq!(
        (arrived_n, arrived_distinct),
        (N, N),
        "Kafka → quorum queue: each message once; {log}"
    );
    assert_eq!(
        (out_n, out_distinct),
        (N, N),
        "quorum queue → Kafka: each message once; {log}"
    );
}
