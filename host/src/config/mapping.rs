//! `[[mapping]]`: one flow from a source through a plugin chain to a target.

use serde::Deserialize;

/// A mapping.
///
/// ```toml
/// [[mapping]]
/// name = "order-damage"
/// source = { kafka = "main", topics = ["events-order-damage"], group = "bridge" }
/// target = { rabbitmq = "local", exchange = "events", routing_key = "order.damage" }
/// plugins = ["headers"]
/// dead_letter = { rabbitmq = "local", exchange = "dead-letters", routing_key = "order-damage" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// `name = "order-damage"`: unique; used in logs, metrics and dead-letter headers.
    pub name: String,
    /// Where messages come from.
    pub source: Source,
    /// Where they go.
    pub target: Target,
    /// Transform plugins, in order: `plugins = ["headers", "route"]`.
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Where dead letters go: a Kafka topic or a RabbitMQ exchange. Without it, a message the
    /// policy dead-letters is retried instead of lost.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterTarget>,
    /// A dead-letter policy plugin: `dead_letter_policy = "policy"`. Default: retry
    /// `plugin-timeout` and `target-rejected` 5 times with exponential backoff, dead-letter the rest.
    #[serde(default)]
    pub dead_letter_policy: Option<String>,
    /// Messages in flight (sent, not yet confirmed) per mapping: `max_in_flight = 1000`.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Adds `kafka_topic`, `kafka_partition`, `kafka_offset`, `kafka_key` towards RabbitMQ and
    /// `rabbitmq_queue`, `rabbitmq_exchange`, `rabbitmq_routing_key` towards Kafka:
    /// `provenance_headers = true`.
    #[serde(default = "yes")]
    pub provenance_headers: bool,
    /// Carries AMQP properties across Kafka as `amqp_*` headers (RabbitMQ → Kafka) and turns
    /// those headers back into properties (Kafka → RabbitMQ): `amqp_properties = true`.
    #[serde(default = "yes")]
    pub amqp_properties: bool,
    /// A message that already crossed this many bridges is treated as a loop:
    /// `hop_limit = 5`.
    #[serde(default = "default_hops")]
    pub hop_limit: u32,
    /// Drop messages already bridged within a window:
    /// `dedup = { by = "message-id", window_secs = 300 }` (or `by = "coordinates"`).
    #[serde(default)]
    pub dedup: Option<DedupConfig>,
    /// Create the topics, queues and exchanges this mapping uses when they are missing:
    /// `declare = true`, or with settings:
    /// `declare = { partitions = 3, exchange_type = "topic", queue = "order-damage-queue" }`.
    /// Without it, a missing one stops the bridge at startup.
    #[serde(default, deserialize_with = "super::declare::deserialize")]
    pub declare: Option<super::declare::Declare>,
    /// Tag every output message with the plugin versions that made it
    /// (`x-bridge-plugin-versions: name@sha256:…,…`): `plugin_versions_header = true`.
    #[serde(default)]
    pub plugin_versions_header: bool,
    /// The tenant it belongs to: `tenant = "payments"` (default: `default`).
    #[serde(default)]
    pub tenant: Option<String>,
    /// `delivery = "exactly-once"`: Kafka transactions for a Kafka→Kafka mapping on one
    /// cluster (default `"at-least-once"`).
    #[serde(default)]
    pub delivery: Delivery,
    /// A circuit breaker over the mapping's plugin failures:
    /// `breaker = { failures = 10, window_secs = 60, cool_down_secs = 30, action = "pause" }`.
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
}

impl Mapping {
    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        self.tenant.as_deref().unwrap_or(super::DEFAULT_TENANT)
    }

    /// Every plugin it calls, with the kind it calls it as.
    pub fn plugin_uses(&self) -> impl Iterator<Item = (&str, crate::plugin::Kind)> {
        let transforms = self
            .plugins
            .iter()
            .map(|p| (p.as_str(), crate::plugin::Kind::Transform));
        let policy = self
            .dead_letter_policy
            .iter()
            .map(|p| (p.as_str(), crate::plugin::Kind::DeadLetterPolicy));
        transforms.chain(policy)
    }
}

/// A mapping's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Plugin failures within the window that trip the breaker.
    pub failures: u32,
    /// The window, in seconds.
    #[serde(default = "default_breaker_window")]
    pub window_secs: u64,
    /// How long the breaker stays open before one message may try again, in seconds.
    #[serde(default = "default_cool_down")]
    pub cool_down_secs: u64,
    /// What an open breaker does with messages.
    #[serde(default)]
    pub action: BreakerAction,
}

/// The delivery guarantee a mapping asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Nothing lost; a crash may deliver a message again.
    #[default]
    AtLeastOnce,
    /// Nothing lost and nothing twice, through Kafka transactions: the output and the consumed
    /// offsets commit together (Kafka→Kafka on one cluster only).
    ExactlyOnce,
}

/// What an open breaker does with a mapping's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerAction {
    /// Stop taking messages: they wait unacknowledged and uncommitted until it closes.
    #[default]
    Pause,
    /// Dead-letter them without calling the plugins.
    DeadLetter,
}

fn default_breaker_window() -> u64 {
    60
}

fn default_cool_down() -> u64 {
    30
}

/// Deduplication settings of a mapping.
#[derive(Debug, Clone, PartialEq, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// What identifies a message.
    pub by: DedupBy,
    /// How long a key is remembered, in seconds.
    #[serde(default = "default_dedup_window")]
    pub window_secs: u64,
}

/// What identifies a message for deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DedupBy {
    /// The AMQP `message-id` property (or a `message_id` header).
    MessageId,
    /// Kafka cluster, topic, partition and offset (AMQP sources: the message-id).
    Coordinates,
}

fn default_dedup_window() -> u64 {
    300
}

fn default_in_flight() -> usize {
    1000
}

fn yes() -> bool {
    true
}

fn default_hops() -> u32 {
    5
}

/// A Kafka or RabbitMQ source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSource")]
pub enum Source {
    /// `source = { kafka = "main", topics = ["a", "b"], group = "bridge" }`.
    Kafka(KafkaSource),
    /// `source = { rabbitmq = "local", queue = "warehouse-events", prefetch = 500 }`.
    Amqp(AmqpSource),
    /// `source = { rabbitmq = "local", stream = "events", offset = "first" }`: a RabbitMQ
    /// stream, read over the stream protocol.
    Stream(StreamSource),
}

/// A RabbitMQ stream source.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSource {
    /// The connection name.
    pub connection: String,
    /// The stream.
    pub stream: String,
    /// The consumer name the broker stores the offset under; `None`: `bridge-host.MAPPING`.
    pub consumer: Option<String>,
    /// Where a consumer name without a stored offset starts.
    pub offset: StreamOffset,
}

/// Where a new stream consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    /// The first message the stream still has.
    First,
    /// The last chunk of messages.
    Last,
    /// The next message written.
    Next,
    /// The first message written at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

impl std::str::FromStr for StreamOffset {
    type Err = EndError;

    fn from_str(text: &str) -> Result<Self, EndError> {
        Ok(match text {
            "first" => StreamOffset::First,
            "last" => StreamOffset::Last,
            "next" => StreamOffset::Next,
            other => {
                let at = time::OffsetDateTime::parse(
                    other,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| EndError::StreamOffset(other.to_string()))?;
                let millis = at.unix_timestamp_nanos() / 1_000_000;
                StreamOffset::Timestamp(
                    i64::try_from(millis).map_err(|_| EndError::StreamOffset(other.to_string()))?,
                )
            }
        })
    }
}

/// A Kafka source.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSource {
    /// The cluster name.
    pub cluster: String,
    /// Topics, or a regex starting with `^`.
    pub topics: Vec<String>,
    /// Consumer group; processes with the same group share partitions.
    pub group: String,
    /// `earliest` (default) or `latest`.
    pub auto_offset_reset: String,
}

/// A RabbitMQ source.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpSource {
    /// The connection name.
    pub connection: String,
    /// The queue.
    pub queue: String,
    /// Unacknowledged deliveries at once.
    pub prefetch: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kafka: Option<String>,
    #[serde(default)]
    topics: Vec<String>,
    topic_regex: Option<String>,
    group: Option<String>,
    auto_offset_reset: Option<String>,
    rabbitmq: Option<String>,
    queue: Option<String>,
    prefetch: Option<u16>,
    stream: Option<String>,
    consumer: Option<String>,
    offset: Option<String>,
}

/// A source or target table whose keys do not make one broker's end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndError {
    /// Keys of both brokers.
    #[error("a {end} is either `kafka = …` or `rabbitmq = …`, not both")]
    Both {
        /// `source` or `target`.
        end: &'static str,
    },
    /// Neither broker named.
    #[error("a {end} needs `kafka = \"CLUSTER\"` or `rabbitmq = \"CONNECTION\"`")]
    Neither {
        /// `source` or `target`.
        end: &'static str,
    },
    /// A key of the other broker.
    #[error("a {what} takes {takes}, not {not}")]
    OtherBroker {
        /// `Kafka source`, `RabbitMQ target`, ….
        what: &'static str,
        /// The keys it takes.
        takes: &'static str,
        /// What it does not take.
        not: &'static str,
    },
    /// A required key is missing.
    #[error("a {what} needs {key}")]
    Missing {
        /// `Kafka source`, `RabbitMQ target`, ….
        what: &'static str,
        /// The key, as the user writes it.
        key: &'static str,
    },
    /// `auto_offset_reset` is neither `earliest` nor `latest`.
    #[error("`auto_offset_reset` is {0:?}; expected \"earliest\" or \"latest\"")]
    OffsetReset(String),
    /// A stream source's `offset` is none of its forms.
    #[error(
        "`offset` is {0:?}; expected \"first\", \"last\", \"next\" or an RFC 3339 time such as \"2026-12-01T00:00:00Z\""
    )]
    StreamOffset(String),
}

impl TryFrom<RawSource> for Source {
    type Error = EndError;

    fn try_from(raw: RawSource) -> Result<Self, EndError> {
        match (raw.kafka, raw.rabbitmq) {
            (Some(cluster), None) => {
                if raw.queue.is_some()
                    || raw.prefetch.is_some()
                    || raw.stream.is_some()
                    || raw.consumer.is_some()
                    || raw.offset.is_some()
                {
                    return Err(EndError::OtherBroker {
                        what: "Kafka source",
                        takes: "`topics` or `topic_regex`",
                        not: "`queue`, `prefetch`, `stream`, `consumer` or `offset`",
                    });
                }
                let mut topics = raw.topics;
                if let Some(regex) = raw.topic_regex {
                    let regex = if regex.starts_with('^') {
                        regex
                    } else {
                        format!("^{regex}")
                    };
                    topics.push(regex);
                }
                if topics.is_empty() {
                    return Err(EndError::Missing {
                        what: "Kafka source",
                        key: "`topics = [...]` or `topic_regex`",
                    });
                }
                let auto_offset_reset = raw.auto_offset_reset.unwrap_or_else(|| "earliest".into());
                if !matches!(auto_offset_reset.as_str(), "earliest" | "latest") {
                    return Err(EndError::OffsetReset(auto_offset_reset));
                }
                Ok(Source::Kafka(KafkaSource {
                    cluster,
                    topics,
                    group: raw.group.unwrap_or_else(|| "bridge-host".into()),
                    auto_offset_reset,
                }))
            }
            (None, Some(connection)) => {
                if !raw.topics.is_empty()
                    || raw.topic_regex.is_some()
                    || raw.group.is_some()
                    || raw.auto_offset_reset.is_some()
                {
                    return Err(EndError::OtherBroker {
                        what: "RabbitMQ source",
                        takes: "`queue` and `prefetch`, or `stream`, `consumer` and `offset`",
                        not: "Kafka settings",
                    });
                }
                if let Some(stream) = raw.stream {
                    if raw.queue.is_some() || raw.prefetch.is_some() {
                        return Err(EndError::OtherBroker {
                            what: "RabbitMQ stream source",
                            takes: "`stream`, `consumer` and `offset`",
                            not: "`queue` or `prefetch`",
                        });
                    }
                    return Ok(Source::Stream(StreamSource {
                        connection,
                        stream,
                        consumer: raw.consumer,
                        offset: raw.offset.as_deref().unwrap_or("first").parse()?,
                    }));
                }
                if raw.consumer.is_some() || raw.offset.is_some() {
                    return Err(EndError::OtherBroker {
                        what: "RabbitMQ queue source",
                        takes: "`queue` and `prefetch`",
                        not: "`consumer` or `offset` (a stream source's: `stream = \"…\"`)",
                    });
                }
                let queue = raw.queue.ok_or(EndError::Missing {
                    what: "RabbitMQ source",
                    key: "`queue`",
                })?;
                Ok(Source::Amqp(AmqpSource {
                    connection,
                    queue,
                    prefetch: raw.prefetch.unwrap_or(500),
                }))
            }
            (Some(_), Some(_)) => Err(EndError::Both { end: "source" }),
            (None, None) => Err(EndError::Neither { end: "source" }),
        }
    }
}

/// A Kafka or RabbitMQ target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawTarget")]
pub enum Target {
    /// `target = { kafka = "main", topic = "warehouse-events" }`.
    Kafka(KafkaTarget),
    /// `target = { rabbitmq = "local", exchange = "events", routing_key = "order.damage" }`.
    Amqp(AmqpTarget),
    /// `target = { rabbitmq = "local", stream = "events" }`: a RabbitMQ stream, written over
    /// the stream protocol.
    Stream(StreamTarget),
}

/// A RabbitMQ stream target.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTarget {
    /// The connection name (its host, credentials and vhost; the stream protocol's port).
    pub connection: String,
    /// The stream.
    pub stream: String,
}

/// A Kafka target.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaTarget {
    /// The cluster name.
    pub cluster: String,
    /// The topic; `None` keeps the source topic's name (Kafka→Kafka).
    pub topic: Option<String>,
    /// Keep the source partition number (Kafka→Kafka).
    pub same_partition: bool,
}

/// A RabbitMQ target.
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpTarget {
    /// The connection name.
    pub connection: String,
    /// The exchange (`""` is the default exchange).
    pub exchange: String,
    /// The routing key; `None` uses the source topic name.
    pub routing_key: Option<String>,
    /// Publish persistent messages (delivery mode 2).
    pub persistent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    kafka: Option<String>,
    topic: Option<String>,
    same_partition: Option<bool>,
    rabbitmq: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
    persistent: Option<bool>,
    stream: Option<String>,
}

impl TryFrom<RawTarget> for Target {
    type Error = EndError;

    fn try_from(raw: RawTarget) -> Result<Self, EndError> {
        match (raw.kafka, raw.rabbitmq) {
            (Some(cluster), None) => {
                if raw.exchange.is_some()
                    || raw.routing_key.is_some()
                    || raw.persistent.is_some()
                    || raw.stream.is_some()
                {
                    return Err(EndError::OtherBroker {
                        what: "Kafka target",
                        takes: "`topic` and `same_partition`",
                        not: "RabbitMQ settings",
                    });
                }
                Ok(Target::Kafka(KafkaTarget {
                    cluster,
                    topic: raw.topic,
                    same_partition: raw.same_partition.unwrap_or(false),
                }))
            }
            (None, Some(connection)) => {
                if raw.topic.is_some() || raw.same_partition.is_some() {
                    return Err(EndError::OtherBroker {
                        what: "RabbitMQ target",
                        takes: "`exchange`, `routing_key` and `persistent`, or `stream`",
                        not: "Kafka settings",
                    });
                }
                if let Some(stream) = raw.stream {
                    if raw.exchange.is_some()
                        || raw.routing_key.is_some()
                        || raw.persistent.is_some()
                    {
                        return Err(EndError::OtherBroker {
                            what: "RabbitMQ stream target",
                            takes: "`stream`",
                            not: "`exchange`, `routing_key` or `persistent` (a stream is written directly, and is always durable)",
                        });
                    }
                    return Ok(Target::Stream(StreamTarget { connection, stream }));
                }
                Ok(Target::Amqp(AmqpTarget {
                    connection,
                    exchange: raw.exchange.ok_or(EndError::Missing {
                        what: "RabbitMQ target",
                        key: "`exchange` (\"\" for the default exchange)",
                    })?,
                    routing_key: raw.routing_key,
                    persistent: raw.persistent.unwrap_or(true),
                }))
            }
            (Some(_), Some(_)) => Err(EndError::Both { end: "target" }),
            (None, None) => Err(EndError::Neither { end: "target" }),
        }
    }
}

/// Where dead letters go; the same forms as a target (a Kafka topic is required).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawTarget")]
pub struct DeadLetterTarget(pub Target);

impl TryFrom<RawTarget> for DeadLetterTarget {
    type Error = EndError;

    fn try_from(raw: RawTarget) -> Result<Self, EndError> {
        let target = Target::try_from(raw)?;
        if let Target::Kafka(KafkaTarget { topic: None, .. }) = target {
            return Err(EndError::Missing {
                what: "Kafka dead-letter target",
                key: "`topic`",
            });
        }
        Ok(DeadLetterTarget(target))
    }
}
