//! The shipped example configurations are valid.

use std::path::Path;

use bridge_host::config::{BridgeConfig, Source, Target};

fn load(path: &str) -> BridgeConfig {
    let env = |name: &str| {
        Some(match name {
            "RABBITMQ_URL" => "amqp://guest:guest@rabbitmq.example:5672/%2f".to_string(),
            other => format!("{}.example:9092", other.to_lowercase()),
        })
    };
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    let text = std::fs::read_to_string(&full).expect("example exists");
    BridgeConfig::parse(&full, &text, &env).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kafka_rabbitmq_seed_topology() {
    let c = load("examples/kafka-rabbitmq/bridge.toml");
    let routes: Vec<_> = c
        .mapping
        .iter()
        .map(|m| match (&m.source, &m.target) {
            (Source::Kafka(k), Target::Amqp(a)) => format!(
                "{} -> {}/{}",
                k.topics[0],
                a.exchange,
                a.routing_key.clone().unwrap()
            ),
            (Source::Amqp(q), Target::Kafka(k)) => {
                format!("{} -> {}", q.queue, k.topic.clone().unwrap())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        routes,
        [
            "events-order-damage -> events/order.damage",
            "events-sensor -> events/sensor.data",
            "warehouse-events -> warehouse-events",
            "notifications -> notifications",
        ]
    );
    assert!(
        c.mapping
            .iter()
            .all(|m| m.provenance_headers && m.dead_letter.is_some())
    );
}

#[test]
fn kafka_kafka_seed_topology() {
    let c = load("examples/kafka-kafka/bridge.toml");
    let routes: Vec<_> = c
        .mapping
        .iter()
        .map(|m| match (&m.source, &m.target) {
            (Source::Kafka(s), Target::Kafka(t)) => {
                format!("{}:{} -> {}", s.cluster, s.topics[0], t.cluster)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        routes,
        [
            "primary:damage -> secondary",
            "primary:events-sensor -> secondary",
            "secondary:warehouse-events -> primary"
        ]
    );
}
