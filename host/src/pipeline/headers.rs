//! Headers the bridge itself adds: provenance, the hop count, and dead-letter context.

use crate::plugin::{AmqpOrigin, AmqpProperties, KafkaOrigin, Message, Origin};

/// Counts how many bridges a message has crossed.
pub const HOPS: &str = "x-bridge-hops";

/// Adds the seed replicators' provenance headers: `kafka_topic`, `kafka_partition`,
/// `kafka_offset`, `kafka_key` from Kafka; `rabbitmq_queue`, `rabbitmq_exchange`,
/// `rabbitmq_routing_key` from RabbitMQ.
pub fn add_provenance(msg: &mut Message) {
    let provenance: [(&str, Option<Vec<u8>>); 4] = match &msg.origin {
        Origin::Kafka(k) => [
            ("kafka_topic", Some(k.topic.as_bytes().to_vec())),
            (
                "kafka_partition",
                Some(k.partition.to_string().into_bytes()),
            ),
            ("kafka_offset", Some(k.offset.to_string().into_bytes())),
            ("kafka_key", msg.key.clone()),
        ],
        Origin::Amqp(a) => [
            ("rabbitmq_queue", Some(a.queue.as_bytes().to_vec())),
            ("rabbitmq_exchange", Some(a.exchange.as_bytes().to_vec())),
            (
                "rabbitmq_routing_key",
                Some(a.routing_key.as_bytes().to_vec()),
            ),
            ("", None),
        ],
        Origin::None => return,
    };
    // One pass drops what the message already carried under these names.
    msg.headers
        .retain(|(n, _)| !provenance.iter().any(|(p, v)| v.is_some() && n == p));
    for (name, value) in provenance {
        if let Some(value) = value {
            msg.headers.push((name.to_string(), value));
        }
    }
}

/// The hop count carried by a message (0 when absent or unreadable).
pub fn hops(msg: &Message) -> u32 {
    msg.header(HOPS)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Sets the hop count.
pub fn set_hops(msg: &mut Message, hops: u32) {
    msg.headers.retain(|(n, _)| n != HOPS);
    msg.headers
        .push((HOPS.to_string(), hops.to_string().into_bytes()));
}

/// Makes `msg` carry exactly one hop count, `hops`: the host owns it, whatever a plugin did to
/// it. Whether it had to put it back.
pub fn keep_hops(msg: &mut Message, hops: u32) -> bool {
    let mut found = msg.headers.iter().filter(|(n, _)| n == HOPS);
    let intact = matches!(
        (found.next(), found.next()),
        (Some((_, v)), None) if is_count(v, hops)
    );
    if !intact {
        set_hops(msg, hops);
    }
    !intact
}

/// Whether `value` is `count` in decimal, as [`set_hops`] writes it.
fn is_count(value: &[u8], count: u32) -> bool {
    let mut rest = count;
    let mut digits = value.iter().rev();
    loop {
        if digits.next() != Some(&(b'0' + (rest % 10) as u8)) {
            return false;
        }
        rest /= 10;
        if rest == 0 {
            return digits.next().is_none();
        }
    }
}

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
    fn provenance_from_kafka() {
        let mut m = Message::new(Some(b"x".to_vec()));
        m.key = Some(b"k".to_vec());
        m.origin = Origin::Kafka(KafkaOrigin {
            cluster: "c".into(),
            topic: "t".into(),
            partition: 2,
            offset: 9,
        });
        add_provenance(&mut m);
        let h: Vec<_> = m
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        assert_eq!(
            h,
            vec![
                ("kafka_topic", "t".into()),
                ("kafka_partition", "2".into()),
                ("kafka_offset", "9".into()),
                ("kafka_key", "k".into())
            ]
        );
        assert_eq!(source_coordinates(&m), "kafka:c/t/2/9");
    }

    #[test]
    fn hop_count_round_trips() {
        let mut m = Message::new(None);
        assert_eq!(hops(&m), 0);
        set_hops(&mut m, 3);
        assert_eq!(hops(&m), 3);
        assert!(!keep_hops(&mut m, 3), "an intact count stays");
        assert!(keep_hops(&mut m, 12), "another count is put back");
        assert_eq!(hops(&m), 12);
        for (value, count, equal) in [
            (&b"0"[..], 0, true),
            (b"10", 10, true),
            (b"4294967295", u32::MAX, true),
            (b"010", 10, false),
            (b"1", 10, false),
            (b"", 0, false),
            (b" 1", 1, false),
        ] {
            assert_eq!(is_count(value, count), equal, "{value:?} {count}");
        }
    }

    #[test]
    fn provenance_replaces_what_the_message_carried() {
        let mut m = Message::new(None);
        m.headers = vec![
            ("kafka_offset".into(), b"old".to_vec()),
            ("kafka_key".into(), b"kept: no key".to_vec()),
            ("region".into(), b"eu".to_vec()),
        ];
        m.origin = Origin::Kafka(KafkaOrigin {
            cluster: "c".into(),
            topic: "t".into(),
            partition: 0,
            offset: 1,
        });
        add_provenance(&mut m);
        let names: Vec<_> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "kafka_key",
                "region",
                "kafka_topic",
                "kafka_partition",
                "kafka_offset"
            ]
        );
    }

    #[test]
    fn coordinates_read_back_into_the_origin() {
        let mut m = Message::new(None);
        m.origin = Origin::Kafka(KafkaOrigin {
            cluster: "main".into(),
            topic: "orders.v2".into(),
            partition: 3,
            offset: 42,
        });
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
