//! AMQP properties across Kafka: RabbitMQ → Kafka carries every basic property as an `amqp_*`
//! header, and Kafka → RabbitMQ turns them back into properties, so a message that goes
//! RabbitMQ → Kafka → RabbitMQ through two mappings keeps them all.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// The messages' AMQP timestamp, in seconds: a minute ago. It becomes the Kafka record's
/// timestamp, and Kafka's retention (7 days here) deletes a record stamped older at its next
/// check, before a reader may see it.
static SENT_AT: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| brokers::recent_timestamp(60_000) as u64 / 1000);

/// A header of every AMQP type, with a string one.
fn typed_headers() -> Vec<(&'static str, AMQPValue)> {
    let mut nested = FieldTable::default();
    nested.insert("id".into(), AMQPValue::LongLongInt(7));
    nested.insert("who".into(), AMQPValue::LongString("me".into()));
    vec![
        ("region", AMQPValue::LongString("eu".into())),
        ("retries", AMQPValue::LongInt(3)),
        ("big", AMQPValue::LongLongInt(-9_000_000_000)),
        ("small", AMQPValue::ShortShortUInt(200)),
        ("short", AMQPValue::ShortInt(-300)),
        ("flag", AMQPValue::Boolean(true)),
        ("ratio", AMQPValue::Double(0.25)),
        ("single", AMQPValue::Float(1.5)),
        (
            "amount",
            AMQPValue::DecimalValue(lapin::types::DecimalValue {
                scale: 2,
                value: 1999,
            }),
        ),
        ("sent", AMQPValue::Timestamp(1_700_000_123)),
        ("raw", AMQPValue::ByteArray(vec![0, 1, 254].into())),
        ("nothing", AMQPValue::Void),
        ("meta", AMQPValue::FieldTable(nested)),
        (
            "list",
            AMQPValue::FieldArray(
                vec![AMQPValue::LongLongInt(1), AMQPValue::Boolean(false)].into(),
            ),
        ),
    ]
}

fn properties() -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in typed_headers() {
        headers.insert(name.into(), value);
    }
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_message_id("m-1".into())
        .with_correlation_id("c-1".into())
        .with_reply_to("replies".into())
        .with_expiration("60000".into())
        .with_priority(7)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("shop".into())
        .with_delivery_mode(1)
        .with_timestamp(*SENT_AT)
        .with_headers(headers)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_property_survives_rabbitmq_to_kafka_to_rabbitmq() {
    let (queue_in, topic) = (unique("props-in"), unique("props-topic"));
    let (exchange, queue_out) = (unique("props-ex"), unique("props-out"));
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &queue_in).await;
    brokers::declare_bound_queue(&conn, &exchange, &queue_out, "rk").await;
    let mut bridge = Scenario::new()
        .health()
        .mapping(Mapping::rabbitmq_to_kafka("in", &queue_in, &topic))
        .mapping(
            Mapping::kafka_to_rabbitmq("out", &[&topic], &unique("g"), &exchange).routing_key("rk"),
        )
        .start();
    bridge.ready().await;
    brokers::publish_to_queue(&conn, &queue_in, &[(b"{}".to_vec(), properties())]).await;
    let across = brokers::read_topic(&topic, 1, Duration::from_secs(60)).await;
    let back = brokers::consume_queue(&conn, &queue_out, 1, Duration::from_secs(60)).await;
    bridge.stop_clean();
    let (across_n, back_n) = (across.len(), back.len());
    assert!(
        (across_n, back_n) == (1, 1),
        "{across_n} record(s) on Kafka, {back_n} message(s) back on RabbitMQ; log:\n{}",
        bridge.log_text()
    );
    // On Kafka: one header per property.
    let kafka = &across[0];
    let sent_at = SENT_AT.to_string();
    for (name, value) in [
        ("amqp_content_type", "application/json"),
        ("amqp_content_encoding", "gzip"),
        ("amqp_message_id", "m-1"),
        ("amqp_correlation_id", "c-1"),
        ("amqp_reply_to", "replies"),
        ("amqp_expiration", "60000"),
        ("amqp_priority", "7"),
        ("amqp_type", "order.created"),
        ("amqp_user_id", "guest"),
        ("amqp_app_id", "shop"),
        ("amqp_delivery_mode", "1"),
        ("amqp_timestamp", sent_at.as_str()),
        ("region", "eu"),
    ] {
        assert_eq!(kafka.header(name).as_deref(), Some(value), "{name}");
    }
    // Back on RabbitMQ: the same properties, and no `amqp_*` header left.
    let p = &back[0].properties;
    let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.to_string());
    let want = properties();
    assert_eq!(text(p.content_type()), text(want.content_type()));
    assert_eq!(text(p.content_encoding()), text(want.content_encoding()));
    assert_eq!(text(p.message_id()), text(want.message_id()));
    assert_eq!(text(p.correlation_id()), text(want.correlation_id()));
    assert_eq!(text(p.reply_to()), text(want.reply_to()));
    assert_eq!(text(p.expiration()), text(want.expiration()));
    assert_eq!(text(p.kind()), text(want.kind()));
    assert_eq!(text(p.user_id()), text(want.user_id()));
    assert_eq!(text(p.app_id()), text(want.app_id()));
    assert_eq!(p.priority(), want.priority());
    assert_eq!(p.delivery_mode(), want.delivery_mode());
    assert_eq!(p.timestamp(), want.timestamp());
    let headers = p.headers().clone().unwrap_or_default();
    assert!(
        !headers
            .inner()
            .keys()
            .any(|k| k.as_str().starts_with("amqp_")),
        "{headers:?}"
    );
    // Every header comes back with its value and its AMQP type.
    for (name, value) in typed_headers() {
        assert_eq!(headers.inner().get(name), Some(&value), "{name}");
    }
    assert!(!headers.inner().contains_key("x-bridge-header-types"));
    // On Kafka the typed ones are text, with their types in `x-bridge-header-types`.
    assert_eq!(kafka.header("retries").as_deref(), Some("3"));
    assert_eq!(kafka.header("flag").as_deref(), Some("true"));
    let types: serde_json::Value =
        serde_json::from_str(&kafka.header("x-bridge-header-types").unwrap()).unwrap();
    assert_eq!(types["retries"], "i32");
    assert_eq!(types["meta"], "table");
    assert!(types.get("region").is_none(), "strings need no type");
}

/// `amqp_properties = false` (what `migrate` writes for the Python replicators, which carried
/// none): RabbitMQ → Kafka adds no `amqp_*` header, and Kafka → RabbitMQ leaves an `amqp_*`
/// header a header instead of making it a property.
#[tokio::test(flavor = "multi_thread")]
async fn with_amqp_properties_off_neither_direction_carries_them() {
    let (queue_in, topic_in) = (unique("noprops-in"), unique("noprops-topic"));
    let (topic_out, exchange, queue_out) = (
        unique("noprops-kt"),
        unique("noprops-ex"),
        unique("noprops-out"),
    );
    brokers::create_topic(&topic_in, 1).await;
    brokers::create_topic(&topic_out, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &queue_in).await;
    brokers::declare_bound_queue(&conn, &exchange, &queue_out, "rk").await;
    let mut bridge = Scenario::new()
        .health()
        .mapping(
            Mapping::rabbitmq_to_kafka("in", &queue_in, &topic_in).set("amqp_properties", false),
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("out", &[&topic_out], &unique("g"), &exchange)
                .routing_key("rk")
                .set("amqp_properties", false),
        )
        .start();
    bridge.ready().await;
    brokers::publish_to_queue(&conn, &queue_in, &[(b"{}".to_vec(), properties())]).await;
    brokers::produce(
        &topic_out,
        &[Record::with_header("{}", "amqp_content_type", "text/plain")],
        None,
    )
    .await;
    let across = brokers::read_topic(&topic_in, 1, Duration::from_secs(60)).await;
    let back = brokers::consume_queue(&conn, &queue_out, 1, Duration::from_secs(60)).await;
    bridge.stop_clean();
    let (across_n, back_n) = (across.len(), back.len());
    assert!(
        (across_n, back_n) == (1, 1),
        "{across_n} record(s) on Kafka, {back_n} message(s) on RabbitMQ; log:\n{}",
        bridge.log_text()
    );
    let names: Vec<&str> = across[0].headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("amqp_")),
        "no property is carried: {names:?}"
    );
    assert_eq!(
        across[0].header("region").as_deref(),
        Some("eu"),
        "{names:?}"
    );
    let p = &back[0].properties;
    assert_eq!(
        p.content_type(),
        &None,
        "the header does not become a property"
    );
    let headers = p.headers().clone().unwrap_or_default();
    assert_eq!(
        headers.inner().get("amqp_content_type"),
        Some(&AMQPValue::LongString("text/plain".into())),
        "{headers:?}"
    );
}
