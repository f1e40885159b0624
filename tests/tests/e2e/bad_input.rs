//! Awkward messages get defined behaviour: tombstones, binary keys, bare AMQP messages, and
//! messages too large for the target (dead-lettered, not lost).

use std::time::Duration;

use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::BasicProperties;

#[tokio::test(flavor = "multi_thread")]
async fn tombstones_and_binary_keys_cross_to_rabbitmq_and_back() {
    let topic = unique("tomb-in");
    let back = unique("tomb-back");
    let exchange = unique("tomb-ex");
    let queue = unique("tomb-q");
    brokers::create_topic(&topic, 1).await;
    brokers::create_topic(&back, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let sent = vec![
        Record {
            key: Some(vec![0xff, 0x00, 0xfe]),
            payload: None,
            headers: vec![],
            partition: 0,
            timestamp: None,
        },
        Record {
            key: None,
            payload: Some(Vec::new()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        },
    ];
    brokers::produce(&topic, &sent, None).await;
    let mut bridge = Scenario::new()
        .mapping(
            Mapping::kafka_to_rabbitmq("out", &[&topic], &unique("bridge"), &exchange)
                .routing_key("rk"),
        )
        .mapping(Mapping::rabbitmq_to_kafka("back", &queue, &back).set("hop_limit", 3))
        .start();
    let b = back.clone();
    let got =
        tokio::task::spawn_blocking(move || brokers::consume_topic(&b, 2, Duration::from_secs(30)))
            .await
            .unwrap();
    bridge.stop_clean();
    assert!(
        got.len() == 2,
        "{:?}, expected {:?}; {}",
        got.len(),
        2,
        bridge.log_report()
    );
    assert_eq!(
        got[0].payload, None,
        "a tombstone stays a tombstone through RabbitMQ"
    );
    assert_eq!(
        got[0].key,
        Some(vec![0xff, 0x00, 0xfe]),
        "binary key bytes kept via `kafka_key`"
    );
    assert_eq!(
        got[1].payload,
        Some(Vec::new()),
        "an empty payload stays empty, not a tombstone"
    );
    assert_eq!(got[1].header("x-bridge-hops").as_deref(), Some("2"));
    assert_eq!(got[1].header("kafka_tombstone"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn bare_and_oversized_amqp_messages() {
    let queue = unique("bare-in");
    let topic = unique("bare-out");
    let dl_exchange = unique("dl-ex");
    let dl_queue = unique("dl-q");
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &queue).await;
    brokers::declare_bound_queue(&conn, &dl_exchange, &dl_queue, "too-big").await;
    let big = vec![b'x'; 2 * 1024 * 1024];
    let messages = vec![
        (b"bare".to_vec(), BasicProperties::default()),
        (big.clone(), BasicProperties::default()),
        (b"after".to_vec(), BasicProperties::default()),
    ];
    brokers::publish_to_queue(&conn, &queue, &messages).await;
    let mut bridge = Scenario::new()
        .mapping(
            Mapping::rabbitmq_to_kafka("bare", &queue, &topic)
                .dead_letter_rabbitmq(&dl_exchange, "too-big"),
        )
        .start();
    let dead = brokers::consume_queue(&conn, &dl_queue, 1, Duration::from_secs(60)).await;
    let t = topic.clone();
    let got =
        tokio::task::spawn_blocking(move || brokers::consume_topic(&t, 2, Duration::from_secs(20)))
            .await
            .unwrap();
    bridge.stop_clean();

    let payloads: Vec<_> = got.iter().map(|r| r.payload.clone().unwrap()).collect();
    assert_eq!(
        payloads,
        vec![b"bare".to_vec(), b"after".to_vec()],
        "log:\n{}",
        bridge.log_text()
    );
    assert_eq!(got[0].key, None);
    assert_eq!(
        got[0].header("rabbitmq_queue").as_deref(),
        Some(queue.as_str())
    );
    assert_eq!(
        dead.len(),
        1,
        "the oversized message is dead-lettered; log:\n{}",
        bridge.log_text()
    );
    assert_eq!(dead[0].payload, big, "with its original payload");
    assert_eq!(
        dead[0].header("x-bridge-failure-kind").as_deref(),
        Some("target-rejected")
    );
    assert!(
        dead[0]
            .header("x-bridge-reason")
            .unwrap()
            .contains("too large"),
        "{:?}",
        dead[0].header("x-bridge-reason")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_by_message_id_drops_repeats() {
    let queue = unique("dedup-in");
    let topic = unique("dedup-out");
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &queue).await;
    let with_id = |body: &str, id: &str| {
        (
            body.as_bytes().to_vec(),
            BasicProperties::default().with_message_id(id.into()),
        )
    };
    let messages = vec![
        with_id("first", "m1"),
        with_id("again", "m1"),
        with_id("second", "m2"),
        (b"no-id".to_vec(), BasicProperties::default()),
    ];
    brokers::publish_to_queue(&conn, &queue, &messages).await;
    let mut bridge = Scenario::new()
        .mapping(Mapping::rabbitmq_to_kafka("dedup", &queue, &topic).dedup("message-id", 60))
        .start();
    let t = topic.clone();
    let got =
        tokio::task::spawn_blocking(move || brokers::consume_topic(&t, 4, Duration::from_secs(5)))
            .await
            .unwrap();
    bridge.stop_clean();
    let payloads: Vec<_> = got
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        payloads,
        vec!["first", "second", "no-id"],
        "log:\n{}",
        bridge.log_text()
    );
    assert!(
        brokers::consume_queue(&conn, &queue, 1, Duration::from_secs(1))
            .await
            .is_empty(),
        "the duplicate was acked"
    );
}
