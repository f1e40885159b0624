//! Dead letters: the original message with the `x-bridge-*` context headers, and the
//! `x-bridge-source` coordinates that say where it came from.

use crate::plugin::{AmqpOrigin, AmqpProperties, KafkaOrigin, Message, Origin};

/// Where a message came from, for the `x-bridge-source` header:
/// `kafka:CLUSTER/TOPIC/PARTITION/OFFSET` or `rabbitmq:CONNECTION/QUEUE`.
pub fn source_coordinates(msg: &Message) -> String {
    match &msg.origin {
        Origin::Kafka(k) => format!(
            "kafka:{}/{}/{}/{}",
            k.cluster, k.topic, k.partition, k.offset
        ),
        Origin::Amqp(a) => format!("rabbitmq:{}/{}", a.connection, a.queue),
        Origin::None => "none".to_string(),
    }
}

/// Parses `x-bridge-source` coordinates back into an origin: the inverse of
/// [`source_coordinates`] (an AMQP origin gets the queue as its routing key and no exchange).
pub fn origin_from_coordinates(coordinates: &str) -> Option<Origin> {
    if let Some(rest) = coordinates.strip_prefix("kafka:") {
        let (rest, offset) = rest.rsplit_once('/')?;
        let (rest, partition) = rest.rsplit_once('/')?;
        let (cluster, topic) = rest.rsplit_once('/')?;
        return Some(Origin::Kafka(KafkaOrigin {
            cluster: cluster.to_string(),
            topic: topic.to_string(),
            partition: partition.parse().ok()?,
            offset: offset.parse().ok()?,
        }));
    }
    let (connection, queue) = coordinates.strip_prefix("rabbitmq:")?.split_once('/')?;
    Some(Origin::Amqp(AmqpOrigin {
        connection: connection.to_string(),
        queue: queue.to_string(),
        exchange: String::new(),
        routing_key: queue.to_string(),
        redelivered: false,
        properties: AmqpProperties::default(),
    }))
}

/// The `x-bridge-*` headers a dead letter carries besides the original message's.
pub const DEAD_LETTER_CONTEXT: [&str; 7] = [
    "x-bridge-mapping",
    "x-bridge-reason",
    "x-bridge-failure-kind",
    "x-bridge-plugin",
    "x-bridge-attempts",
    "x-bridge-source",
    "x-bridge-time",
];

/// Context of a dead letter.
pub struct DeadLetterContext<'a> {
    /// The mapping name.
    pub mapping: &'a str,
    /// The policy's reason.
    pub reason: &'a str,
    /// The failure kind.
    pub kind: &'a str,
    /// Plugin name and version (`name@sha256:…`), if a plugin was involved.
    pub plugin: Option<String>,
    /// Attempts made.
    pub attempts: u32,
}

/// The dead letter: the original message with `x-bridge-*` context headers.
pub fn dead_letter(original: &Message, ctx: &DeadLetterContext<'_>) -> Message {
    let mut msg = original.clone();
    msg.kafka_target = Default::default();
    msg.amqp_target = Default::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut add = |n: &str, v: String| msg.headers.push((n.to_string(), v.into_bytes()));
    // The names are those of `DEAD_LETTER_CONTEXT`.
    add("x-bridge-mapping", ctx.mapping.to_string());
    add("x-bridge-reason", ctx.reason.to_string());
    add("x-bridge-failure-kind", ctx.kind.to_string());
    if let Some(p) = &ctx.plugin {
        add("x-bridge-plugin", p.clone());
    }
    add("x-bridge-attempts", ctx.attempts.to_string());
    add("x-bridge-source", source_coordinates(original));
    add("x-bridge-time", now.to_string());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_read_back_into_the_origin() {
        let mut m = Message::new(None);
        m.origin = Origin::Kafka(KafkaOrigin {
            cluster: "main".into(),
            topic: "orders.v2".into(),
            partition: 3,
            offset: 42,
        });
        assert_eq!(source_coordinates(&m), "kafka:main/orders.v2/3/42");
        let Some(Origin::Kafka(k)) = origin_from_coordinates(&source_coordinates(&m)) else {
            panic!("a Kafka origin");
        };
        assert_eq!(
            (k.cluster.as_str(), k.topic.as_str(), k.partition, k.offset),
            ("main", "orders.v2", 3, 42)
        );
        let Some(Origin::Amqp(a)) = origin_from_coordinates("rabbitmq:local/a/b") else {
            panic!("an AMQP origin");
        };
        assert_eq!((a.connection.as_str(), a.queue.as_str()), ("local", "a/b"));
        for bad in [
            "none",
            "kafka:main/t/x/1",
            "kafka:t/0",
            "rabbitmq:local",
            "s3:x/y",
        ] {
            assert!(origin_from_coordinates(bad).is_none(), "{bad}");
        }
    }
}
