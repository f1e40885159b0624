//! `declare` of a mapping: which missing topics, queues and exchanges the bridge creates.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// How missing objects are created.
///
/// ```toml
/// declare = true
/// declare = { partitions = 3, replication_factor = 3, exchange_type = "topic", queue = "order-damage-queue" }
/// declare = { queue_type = "quorum", arguments = { "x-delivery-limit" = 5 } }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declare {
    /// Partitions of a created Kafka topic.
    #[serde(default = "one")]
    pub partitions: i32,
    /// Replication factor of a created Kafka topic.
    #[serde(default = "one")]
    pub replication_factor: i32,
    /// Type of a created RabbitMQ exchange.
    #[serde(default)]
    pub exchange_type: ExchangeType,
    /// Created queues and exchanges survive a broker restart.
    #[serde(default = "yes")]
    pub durable: bool,
    /// RabbitMQ target only: a queue to create and bind to the target exchange with the
    /// mapping's routing key (or, without one, with each source topic's name).
    #[serde(default)]
    pub queue: Option<String>,
    /// Type of a created RabbitMQ queue.
    #[serde(default)]
    pub queue_type: QueueType,
    /// Arguments of a created RabbitMQ queue (`x-max-length`, `x-message-ttl`, …).
    #[serde(default)]
    pub arguments: BTreeMap<String, QueueArgument>,
}

impl Default for Declare {
    fn default() -> Self {
        Declare {
            partitions: 1,
            replication_factor: 1,
            exchange_type: ExchangeType::default(),
            durable: true,
            queue: None,
            queue_type: QueueType::default(),
            arguments: BTreeMap::new(),
        }
    }
}

/// A RabbitMQ queue type (`x-queue-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// A classic queue.
    #[default]
    Classic,
    /// A replicated quorum queue.
    Quorum,
    /// An append-only stream.
    Stream,
}

impl QueueType {
    /// The name RabbitMQ uses.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }
}

/// The value of a queue argument.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum QueueArgument {
    /// A number (`x-max-length = 1000`).
    Integer(i64),
    /// A string (`x-overflow = "reject-publish"`).
    Text(String),
    /// A flag (`x-single-active-consumer = true`).
    Flag(bool),
}

/// The arguments RabbitMQ defines, with the kind of value each takes and the queue types it
/// applies to.
const KNOWN_ARGUMENTS: &[(&str, ArgumentKind, &[QueueType])] = {
    use ArgumentKind::{Flag, Integer, Text};
    use QueueType::{Classic, Quorum, Stream};
    &[
        ("x-message-ttl", Integer, &[Classic, Quorum]),
        ("x-expires", Integer, &[Classic, Quorum]),
        ("x-max-length", Integer, &[Classic, Quorum]),
        ("x-max-length-bytes", Integer, &[Classic, Quorum, Stream]),
        ("x-overflow", Text, &[Classic, Quorum]),
        ("x-dead-letter-exchange", Text, &[Classic, Quorum]),
        ("x-dead-letter-routing-key", Text, &[Classic, Quorum]),
        ("x-dead-letter-strategy", Text, &[Quorum]),
        ("x-single-active-consumer", Flag, &[Classic, Quorum, Stream]),
        ("x-max-priority", Integer, &[Classic]),
        ("x-queue-mode", Text, &[Classic]),
        ("x-queue-version", Integer, &[Classic]),
        ("x-delivery-limit", Integer, &[Quorum]),
        ("x-quorum-initial-group-size", Integer, &[Quorum]),
        ("x-max-in-memory-length", Integer, &[Quorum]),
        ("x-max-in-memory-bytes", Integer, &[Quorum]),
        ("x-max-age", Text, &[Stream]),
        ("x-stream-max-segment-size-bytes", Integer, &[Stream]),
        ("x-initial-cluster-size", Integer, &[Stream]),
        ("x-queue-leader-locator", Text, &[Quorum, Stream]),
    ]
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgumentKind {
    Integer,
    Text,
    Flag,
}

impl Declare {
    /// What is wrong with the queue settings, one line each, with `at` naming the table.
    pub fn queue_problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let queue_type = self.queue_type;
        if queue_type != QueueType::Classic && !self.durable {
            problems.push(format!(
                "{at}.durable: a {} queue is always durable; remove `durable = false`",
                queue_type.as_str()
            ));
        }
        for (name, value) in &self.arguments {
            let here = format!("{at}.arguments.\"{name}\"");
            if name == "x-queue-type" {
                problems.push(format!("{here}: set `queue_type` instead"));
                continue;
            }
            let Some((_, kind, types)) = KNOWN_ARGUMENTS.iter().find(|(n, ..)| n == name) else {
                if !name.starts_with("x-") {
                    problems.push(format!(
                        "{here}: unknown queue argument (RabbitMQ's start with `x-`)"
                    ));
                }
                continue;
            };
            let fits = matches!(
                (kind, value),
                (ArgumentKind::Integer, QueueArgument::Integer(_))
                    | (ArgumentKind::Text, QueueArgument::Text(_))
                    | (ArgumentKind::Flag, QueueArgument::Flag(_))
            );
            if !fits {
                let wanted = match kind {
                    ArgumentKind::Integer => "a number",
                    ArgumentKind::Text => "a string",
                    ArgumentKind::Flag => "`true` or `false`",
                };
                problems.push(format!("{here}: must be {wanted}"));
            }
            if !types.contains(&queue_type) {
                problems.push(format!(
                    "{here}: does not apply to a {} queue",
                    queue_type.as_str()
                ));
            }
        }
        problems
    }
}

/// A RabbitMQ exchange type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// Routes by exact routing key.
    #[default]
    Direct,
    /// Routes by routing-key pattern.
    Topic,
    /// Routes to every bound queue.
    Fanout,
    /// Routes by header values.
    Headers,
}

impl ExchangeType {
    /// The name RabbitMQ uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Topic => "topic",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Headers => "headers",
        }
    }
}

fn one() -> i32 {
    1
}

fn yes() -> bool {
    true
}

/// `declare = true | false | { … }`.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Declare>, D::Error> {
    struct BoolOrTable;
    impl<'de> Visitor<'de> for BoolOrTable {
        type Value = Option<Declare>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true`, `false` or a table such as `{ partitions = 3 }`")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(v.then(Declare::default))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Declare::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(BoolOrTable)
}
