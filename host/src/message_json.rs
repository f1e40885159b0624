//! The JSON form of a message, used by `bridge-host plugin run`.
//!
//! Byte fields (key, payload, header values) are JSON strings when they are UTF-8 text (no
//! control characters but tab, CR and LF) and `{"base64": "…"}` otherwise. See the README's "Message JSON" section.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::plugin::{
    AmqpOrigin, AmqpProperties, AmqpTarget, KafkaOrigin, KafkaTarget, Message, Origin,
};

/// Bytes as text, or base64 when not UTF-8.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JsonBytes {
    /// UTF-8 text.
    Text(String),
    /// Anything else.
    Base64 {
        /// Standard base64 with padding.
        base64: String,
    },
}

impl JsonBytes {
    /// Text when the bytes are UTF-8 without control characters (other than tab, CR, LF).
    fn from_bytes(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s)
                if !s
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) =>
            {
                JsonBytes::Text(s.to_string())
            }
            _ => JsonBytes::Base64 {
                base64: STANDARD.encode(bytes),
            },
        }
    }

    fn into_bytes(self, field: impl FnOnce() -> String) -> Result<Vec<u8>, BadBase64> {
        match self {
            JsonBytes::Text(s) => Ok(s.into_bytes()),
            JsonBytes::Base64 { base64 } => {
                STANDARD
                    .decode(base64.as_bytes())
                    .map_err(|source| BadBase64 {
                        field: field(),
                        source,
                    })
            }
        }
    }
}

/// A field of message JSON that says `base64` and is not.
#[derive(Debug, thiserror::Error)]
#[error("`{field}` is not valid base64")]
pub struct BadBase64 {
    /// The field (`payload`, `key`, `headers[2]`).
    pub field: String,
    /// What the decoder found.
    #[source]
    pub source: base64::DecodeError,
}

/// A message as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonMessage {
    /// The key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<JsonBytes>,
    /// The payload; `null` or absent is a tombstone.
    #[serde(default)]
    pub payload: Option<JsonBytes>,
    /// Headers as `[name, value]` pairs, in order.
    #[serde(default)]
    pub headers: Vec<(String, JsonBytes)>,
    /// Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Where the message came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<JsonOrigin>,
    /// AMQP properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<JsonProperties>,
    /// Target overrides set by plugins (output only; accepted on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<JsonTarget>,
}

/// The origin of a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JsonOrigin {
    /// Consumed from Kafka.
    Kafka {
        /// Cluster name.
        #[serde(default)]
        cluster: String,
        /// Topic.
        topic: String,
        /// Partition.
        #[serde(default)]
        partition: i32,
        /// Offset.
        #[serde(default)]
        offset: i64,
    },
    /// Consumed from RabbitMQ.
    Rabbitmq {
        /// Connection name.
        #[serde(default)]
        connection: String,
        /// Queue.
        queue: String,
        /// Exchange it was published to.
        #[serde(default)]
        exchange: String,
        /// Routing key it was published with.
        #[serde(default)]
        routing_key: String,
        /// Whether RabbitMQ redelivered it.
        #[serde(default)]
        redelivered: bool,
    },
}

/// AMQP basic properties.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct JsonProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<u8>,
}

/// Target overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct JsonTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

impl JsonMessage {
    /// Converts to a host message, naming the field that is wrong.
    pub fn into_message(self) -> Result<Message, BadBase64> {
        let mut msg = Message::new(
            self.payload
                .map(|p| p.into_bytes(|| "payload".into()))
                .transpose()?,
        );
        msg.key = self
            .key
            .map(|k| k.into_bytes(|| "key".into()))
            .transpose()?;
        msg.headers = self
            .headers
            .into_iter()
            .enumerate()
            .map(|(i, (n, v))| Ok((n, v.into_bytes(|| format!("headers[{i}]"))?)))
            .collect::<Result<_, BadBase64>>()?;
        msg.timestamp = self.timestamp;
        let props = self.properties.unwrap_or_default();
        msg.amqp_properties = AmqpProperties {
            content_type: props.content_type,
            content_encoding: props.content_encoding,
            message_id: props.message_id,
            correlation_id: props.correlation_id,
            reply_to: props.reply_to,
            priority: props.priority,
            expiration: props.expiration,
            type_: props.type_,
            app_id: props.app_id,
            user_id: props.user_id,
            delivery_mode: props.delivery_mode,
        };
        msg.origin = match self.origin {
            None => Origin::None,
            Some(JsonOrigin::Kafka {
                cluster,
                topic,
                partition,
                offset,
            }) => Origin::Kafka(KafkaOrigin {
                cluster,
                topic,
                partition,
                offset,
            }),
            Some(JsonOrigin::Rabbitmq {
                connection,
                queue,
                exchange,
                routing_key,
                redelivered,
            }) => Origin::Amqp(AmqpOrigin {
                connection,
                queue,
                exchange,
                routing_key,
                redelivered,
                properties: msg.amqp_properties.clone(),
            }),
        };
        if let Some(t) = self.target {
            msg.kafka_target = KafkaTarget {
                topic: t.topic,
                partition: t.partition,
            };
            msg.amqp_target = AmqpTarget {
                exchange: t.exchange,
                routing_key: t.routing_key,
            };
        }
        Ok(msg)
    }

    /// The JSON form of a host message.
    pub fn from_message(msg: &Message) -> Self {
        let p = &msg.amqp_properties;
        let properties = JsonProperties {
            content_type: p.content_type.clone(),
            content_encoding: p.content_encoding.clone(),
            message_id: p.message_id.clone(),
            correlation_id: p.correlation_id.clone(),
            reply_to: p.reply_to.clone(),
            priority: p.priority,
            expiration: p.expiration.clone(),
            type_: p.type_.clone(),
            app_id: p.app_id.clone(),
            user_id: p.user_id.clone(),
            delivery_mode: p.delivery_mode,
        };
        let empty_props = serde_json::to_value(&properties).ok() == Some(serde_json::json!({}));
        let target = JsonTarget {
            topic: msg.kafka_target.topic.clone(),
            partition: msg.kafka_target.partition,
            exchange: msg.amqp_target.exchange.clone(),
            routing_key: msg.amqp_target.routing_key.clone(),
        };
        let empty_target = target.topic.is_none()
            && target.partition.is_none()
            && target.exchange.is_none()
            && target.routing_key.is_none();
        JsonMessage {
            key: msg.key.as_deref().map(JsonBytes::from_bytes),
            payload: msg.payload.as_deref().map(JsonBytes::from_bytes),
            headers: msg
                .headers
                .iter()
                .map(|(n, v)| (n.clone(), JsonBytes::from_bytes(v)))
                .collect(),
            timestamp: msg.timestamp,
            origin: match &msg.origin {
                Origin::None => None,
                Origin::Kafka(k) => Some(JsonOrigin::Kafka {
                    cluster: k.cluster.clone(),
                    topic: k.topic.clone(),
                    partition: k.partition,
                    offset: k.offset,
                }),
                Origin::Amqp(a) => Some(JsonOrigin::Rabbitmq {
                    connection: a.connection.clone(),
                    queue: a.queue.clone(),
                    exchange: a.exchange.clone(),
                    routing_key: a.routing_key.clone(),
                    redelivered: a.redelivered,
                }),
            },
            properties: (!empty_props).then_some(properties),
            target: (!empty_target).then_some(target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_text_and_binary() {
        let input = r#"{"key":"k","payload":{"base64":"/wA="},"headers":[["a","1"],["a","2"]],
            "origin":{"kafka":{"topic":"t","partition":1,"offset":7}}}"#;
        let msg: JsonMessage = serde_json::from_str(input).unwrap();
        let msg = msg.into_message().unwrap();
        assert_eq!(msg.payload.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(msg.headers.len(), 2);
        let back = serde_json::to_value(JsonMessage::from_message(&msg)).unwrap();
        assert_eq!(
            back,
            serde_json::json!({"key":"k","payload":{"base64":"/wA="},"headers":[["a","1"],["a","2"]],
                "origin":{"kafka":{"cluster":"","topic":"t","partition":1,"offset":7}}})
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let msg: JsonMessage =
            serde_json::from_str(r#"{"headers":[["h",{"base64":"!!"}]]}"#).unwrap();
        let err = msg.into_message().unwrap_err();
        assert_eq!(err.field, "headers[0]");
        assert!(
            err.to_string()
                .starts_with("`headers[0]` is not valid base64"),
            "{err}"
        );
        let err = serde_json::from_str::<JsonMessage>(r#"{"paylod":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `paylod`"), "{err}");
    }
}
