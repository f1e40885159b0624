//! Host bindings for the `bridge:plugin@0.1.0` contract in `wit/plugin.wit`.
//!
//! This is the one `bindgen!` site of the host. Every import is trappable so that a host
//! method can stop a plugin that exceeds its output limits, and the `message` resource is
//! backed by the host's own [`Message`] type, defined here beside the generated types its
//! fields use and stored in the store's resource table.
//!
//! ```no_run
//! use bridge_host::plugin::{Message, PluginRuntime, PluginSpec, RuntimeOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = PluginRuntime::new(RuntimeOptions::default())?;
//! let plugin = runtime.load(&PluginSpec::new("headers", "plugins/header-map.wasm"))?;
//! let mut instance = plugin.instantiate()?;
//! let outcome = instance.process(Message::new(Some(b"hello".to_vec())))?;
//! # let _ = outcome;
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transformer-and-policy",
    imports: { default: trappable },
    with: {
        "bridge:plugin/types.message": self::Message,
    },
});

pub use bridge::plugin::host::LogLevel;
pub use bridge::plugin::types::{
    AmqpOrigin, AmqpProperties, AmqpTarget, DeadLetterDecision, DeadLetterTarget, Decision,
    Failure, FailureKind, KafkaOrigin, KafkaTarget, Origin, Verdict,
};
pub use exports::bridge::plugin::{dead_letter_policy, transform};

/// A message on its way through a plugin chain.
#[derive(Debug, Clone)]
pub struct Message {
    /// The key; `None` when the message has none.
    pub key: Option<Vec<u8>>,
    /// The payload; `None` is a Kafka tombstone.
    pub payload: Option<Bytes>,
    /// Ordered headers; names may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Where the message came from.
    pub origin: Origin,
    /// Kafka target overrides set by plugins.
    pub kafka_target: KafkaTarget,
    /// RabbitMQ target overrides set by plugins.
    pub amqp_target: AmqpTarget,
    /// AMQP properties to publish with.
    pub amqp_properties: AmqpProperties,
    /// Why the source could not read this message whole (a Kafka header name that is not
    /// UTF-8, …): it is refused before the plugins with `conversion-error`. Plugins never see
    /// it.
    pub unreadable: Option<String>,
    /// What the plugins that made or grew it charged to their tenant's budget, held until the
    /// message (its last copy) is dropped.
    pub held: Option<super::budget::Held>,
    /// Sent while a message consumed before it from the same Kafka partition waits on a
    /// retry: out of the source's order, which a target deduplicating by that order (a stream
    /// under exactly-once) must not rely on. Set by the pipeline, for the sink.
    pub behind_a_retry: bool,
}

impl Message {
    /// A message with this payload and nothing else.
    pub fn new(payload: Option<Vec<u8>>) -> Self {
        Message {
            key: None,
            payload: payload.map(Bytes::from),
            headers: Vec::new(),
            timestamp: None,
            origin: Origin::None,
            kafka_target: KafkaTarget {
                topic: None,
                partition: None,
            },
            amqp_target: AmqpTarget {
                exchange: None,
                routing_key: None,
            },
            amqp_properties: AmqpProperties::default(),
            unreadable: None,
            held: None,
            behind_a_retry: false,
        }
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Bytes of key, payload and headers together.
    pub fn size(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        (self.key.as_ref().map_or(0, Vec::len)
            + self.payload.as_ref().map_or(0, Bytes::len)
            + headers) as u64
    }
}

/// The `bridge:plugin` version this host implements; components must export a compatible one.
pub const VERSION: &str = "0.1.0";
/// The transform interface name, without version.
pub const TRANSFORM_INTERFACE: &str = "bridge:plugin/transform";
/// The dead-letter policy interface name, without version.
pub const POLICY_INTERFACE: &str = "bridge:plugin/dead-letter-policy";

impl FailureKind {
    /// The kebab-case name used in WIT, configs and `x-bridge-failure-kind` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::PluginTrap => "plugin-trap",
            FailureKind::PluginTimeout => "plugin-timeout",
            FailureKind::PluginMemoryLimit => "plugin-memory-limit",
            FailureKind::PluginOutputLimit => "plugin-output-limit",
            FailureKind::PluginError => "plugin-error",
            FailureKind::TargetRejected => "target-rejected",
            FailureKind::Unroutable => "unroutable",
            FailureKind::ConversionError => "conversion-error",
            FailureKind::HopLimit => "hop-limit",
        }
    }

    /// Every failure kind, in WIT order.
    pub const ALL: [FailureKind; 9] = [
        FailureKind::PluginTrap,
        FailureKind::PluginTimeout,
        FailureKind::PluginMemoryLimit,
        FailureKind::PluginOutputLimit,
        FailureKind::PluginError,
        FailureKind::TargetRejected,
        FailureKind::Unroutable,
        FailureKind::ConversionError,
        FailureKind::HopLimit,
    ];

    /// Parses the kebab-case name.
    pub fn parse(name: &str) -> Option<FailureKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

#[allow(clippy::derivable_impls)]
impl Default for KafkaTarget {
    fn default() -> Self {
        KafkaTarget {
            topic: None,
            partition: None,
        }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for AmqpTarget {
    fn default() -> Self {
        AmqpTarget {
            exchange: None,
            routing_key: None,
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// The type is generated by `bindgen!`, so it cannot carry a derive.
#[allow(clippy::derivable_impls)]
impl Default for AmqpProperties {
    fn default() -> Self {
        AmqpProperties {
            content_type: None,
            content_encoding: None,
            message_id: None,
            correlation_id: None,
            reply_to: None,
            priority: None,
            expiration: None,
            type_: None,
            app_id: None,
            user_id: None,
            delivery_mode: None,
        }
    }
}
