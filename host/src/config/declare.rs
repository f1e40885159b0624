//! `declare` of a mapping: which missing topics, queues and exchanges the bridge creates.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// How missing objects are created.
///
/// ```toml
/// declare = true
/// declare = { partitions = 3, replication_factor = 3, exchange_type = "topic", queue = "order-damage-queue" }
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
}

impl Default for Declare {
    fn default() -> Self {
        Declare {
            partitions: 1,
            replication_factor: 1,
            exchange_type: ExchangeType::default(),
            durable: true,
            queue: None,
        }
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
