//! The shipped Kafka ⇄ RabbitMQ example runs as is on the test brokers: it declares its own
//! topology and moves messages both ways with the seed replicator's header names. Every
//! topic, queue, exchange and group name gets a unique suffix so runs do not meet.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::bridge::BridgeProcess;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::kafka_node::KafkaNode;

/// Gives every quoted name in `names` a unique suffix.
fn rename(mut text: String, names: &[&str], suffix: &str) -> String {
    for name in names {
        text = text.replace(&format!("\"{name}\""), &format!("\"{name}-{suffix}\""));
    }
    text
}

const NAMES: &[&str] = &[
    "events-order-damage",
    "events-sensor",
    "events",
    "order-damage-queue",
    "sensor-queue",
    "warehouse-events",
    "notifications",
    "bridge-dead-letters",
    "kafka-rabbitmq-bridge",
];

fn example(suffix: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/kafka-rabbitmq/bridge.toml"
    );
    let text = rename(std::fs::read_to_string(path).unwrap(), NAMES, suffix);
    text.replace("${KAFKA_BOOTSTRAP_SERVERS}", &brokers::kafka_bootstrap())
        .replace("${RABBITMQ_URL}", &brokers::amqp_url())
        .replace("0.0.0.0:8080", "127.0.0.1:0")
}

/// Whether every queue exists (a passive declare fails, and closes its channel, if not).
async fn queues_exist(conn: &lapin::Connection, queues: &[String]) -> bool {
    for q in queues {
        let Ok(ch) = conn.create_channel().await else {
            return false;
        };
        let passive = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if ch
            .queue_declare(
                q.as_str().into(),
                passive,
                lapin::types::FieldTable::default(),
            )
            .await
            .is_err()
        {
            return false;
        }
        let _ = ch.close(200, "checked".into()).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_rabbitmq_example_declares_its_topology_and_bridges_both_ways() {
    let suffix = unique("ex");
    let name = |n: &str| format!("{n}-{suffix}");
    let mut bridge = BridgeProcess::start(&example(&suffix));
    let conn = brokers::amqp().await;

    // The bridge declared the queues (and the rest) before it started its mappings.
    let queues: Vec<String> = [
        "order-damage-queue",
        "sensor-queue",
        "warehouse-events",
        "notifications",
    ]
    .iter()
    .map(|q| name(q))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !queues_exist(&conn, &queues).await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        queues_exist(&conn, &queues).await,
        "topology declared; log:\n{}",
        bridge.log_text()
    );

    // Kafka → RabbitMQ, both seed routes.
    for (topic, i) in [("events-order-damage", 0), ("events-sensor", 1)] {
        let record = Record {
            key: Some(format!("key-{i}").into_bytes()),
            payload: Some(format!("from {topic}").into_bytes()),
            headers: vec![("trace".into(), b"t-1".to_vec())],
            partition: 0,
            timestamp: None,
        };
        brokers::produce(&name(topic), &[record], None).await;
    }
    for (queue, topic, key) in [
        ("order-damage-queue", "events-order-damage", "key-0"),
        ("sensor-queue", "events-sensor", "key-1"),
    ] {
        let got = brokers::consume_queue(&conn, &name(queue), 1, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 1, "{queue}; log:\n{}", bridge.log_text());
        let m = &got[0];
        assert_eq!(m.payload, format!("from {topic}").into_bytes());
        assert_eq!(
            m.header("kafka_topic").as_deref(),
            Some(name(topic).as_str())
        );
        assert_eq!(m.header("kafka_partition").as_deref(), Some("0"));
        assert_eq!(m.header("kafka_offset").as_deref(), Some("0"));
        assert_eq!(m.header("kafka_key").as_deref(), Some(key));
        assert_eq!(m.header("trace").as_deref(), Some("t-1"));
        assert_eq!(m.properties.delivery_mode(), &Some(2), "persistent");
    }

    // RabbitMQ → Kafka, both seed routes.
    for queue in ["warehouse-events", "notifications"] {
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        brokers::publish_to_queue(
            &conn,
            &name(queue),
            &[(format!("from {queue}").into_bytes(), props)],
        )
        .await;
    }
    for topic in ["warehouse-events", "notifications"] {
        let t = name(topic);
        let got = tokio::task::spawn_blocking(move || {
            brokers::consume_topic(&t, 1, Duration::from_secs(30))
        })
        .await
        .unwrap();
        assert_eq!(got.len(), 1, "{topic}; log:\n{}", bridge.log_text());
        assert_eq!(
            got[0].payload.as_deref(),
            Some(format!("from {topic}").as_bytes())
        );
        assert_eq!(
            got[0].header("rabbitmq_queue").as_deref(),
            Some(name(topic).as_str())
        );
        assert_eq!(got[0].header("rabbitmq_exchange").as_deref(), Some(""));
        assert_eq!(
            got[0].header("rabbitmq_routing_key").as_deref(),
            Some(name(topic).as_str())
        );
    }
    bridge.stop_clean();
}

/// The Kafka → Kafka example between two brokers: `damage` and `events-sensor` one way,
/// `warehouse-events` the other, with keys, headers, timestamps and partitions kept.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_kafka_example_replicates_both_ways_keeping_records() {
    let secondary = tokio::task::spawn_blocking(KafkaNode::start).await.unwrap();
    let primary = brokers::kafka_bootstrap();
    let suffix = unique("kk");
    let name = |n: &str| format!("{n}-{suffix}");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/kafka-kafka/bridge.toml"
    );
    let config = rename(
        std::fs::read_to_string(path).unwrap(),
        &[
            "damage",
            "events-sensor",
            "warehouse-events",
            "bridge-dead-letters",
            "kafka-kafka-bridge",
        ],
        &suffix,
    )
    .replace("${PRIMARY_BOOTSTRAP_SERVERS}", &primary)
    .replace("${SECONDARY_BOOTSTRAP_SERVERS}", &secondary.bootstrap);
    let routes = [
        ("damage", &primary, &secondary.bootstrap),
        ("events-sensor", &primary, &secondary.bootstrap),
        ("warehouse-events", &secondary.bootstrap, &primary),
    ];
    for (topic, from, to) in routes {
        brokers::create_topic_on(from, &name(topic), 2).await;
        brokers::create_topic_on(to, &name(topic), 2).await;
    }
    brokers::create_topic_on(&primary, &name("bridge-dead-letters"), 1).await;
    brokers::create_topic_on(&secondary.bootstrap, &name("bridge-dead-letters"), 1).await;
    let mut bridge = BridgeProcess::start(&config);

    for (topic, from, to) in routes {
        let sent = Record {
            key: Some(format!("key-{topic}").into_bytes()),
            payload: Some(format!("from {topic}").into_bytes()),
            headers: vec![("trace".into(), b"t-9".to_vec())],
            partition: 1,
            timestamp: Some(brokers::recent_timestamp(60_000)),
        };
        brokers::produce_to(from, &name(topic), std::slice::from_ref(&sent), Some(1)).await;
        let (t, to) = (name(topic), to.clone());
        let got = tokio::task::spawn_blocking(move || {
            brokers::consume_topic_from(&to, &t, 1, Duration::from_secs(30))
        })
        .await
        .unwrap();
        assert_eq!(got.len(), 1, "{topic}; log:\n{}", bridge.log_text());
        let r = &got[0];
        assert_eq!((&r.key, &r.payload), (&sent.key, &sent.payload), "{topic}");
        assert_eq!((r.partition, r.timestamp), (1, sent.timestamp), "{topic}");
        assert_eq!(r.header("trace").as_deref(), Some("t-9"), "{topic}");
        assert_eq!(r.header("x-bridge-hops").as_deref(), Some("1"), "{topic}");
        assert_eq!(r.header("kafka_topic"), None, "provenance_headers = false");
    }
    bridge.stop_clean();
    drop(secondary);
}
