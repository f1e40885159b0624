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
    let arrived = brokers::consume_queue(&conn, &target_queue, N, Duration::from_secs(30)).await;
    let out = brokers::read_topic(&topic_out, N, Duration::from_secs(30)).await;
    bridge.stop_clean();
    let log = bridge.log_text();
    assert_eq!(arrived.len(), N, "Kafka → quorum queue; log:\n{log}");
    assert_eq!(out.len(), N, "quorum queue → Kafka; log:\n{log}");
}
