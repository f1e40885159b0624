//! AMQP basic properties carried across Kafka as headers, so that RabbitMQ → Kafka → RabbitMQ
//! keeps them (mapping setting `amqp_properties`, on by default).
//!
//! | property | Kafka header | value |
//! |---|---|---|
//! | content-type | `amqp_content_type` | text |
//! | content-encoding | `amqp_content_encoding` | text |
//! | message-id | `amqp_message_id` | text |
//! | correlation-id | `amqp_correlation_id` | text |
//! | reply-to | `amqp_reply_to` | text |
//! | expiration | `amqp_expiration` | text (milliseconds, as AMQP has it) |
//! | type | `amqp_type` | text |
//! | user-id | `amqp_user_id` | text |
//! | app-id | `amqp_app_id` | text |
//! | priority | `amqp_priority` | decimal text, 0–255 |
//! | delivery-mode | `amqp_delivery_mode` | `1` (transient) or `2` (persistent) |
//! | timestamp | `amqp_timestamp` | seconds since the epoch, decimal text |
//!
//! Towards Kafka the headers are added after the message's own. Towards RabbitMQ they become
//! properties again and are not also sent as headers; a property a plugin set wins over its
//! header, and a header whose value is not what the table says stays a header.

use crate::plugin::{AmqpProperties, Message};

/// Header name prefix of carried properties.
const PREFIX: &str = "amqp_";

/// The carried properties' header names (without [`PREFIX`]).
const TEXT: [&str; 9] = [
    "content_type",
    "content_encoding",
    "message_id",
    "correlation_id",
    "reply_to",
    "expiration",
    "type",
    "user_id",
    "app_id",
];

fn text_field<'a>(p: &'a mut AmqpProperties, name: &str) -> Option<&'a mut Option<String>> {
    Some(match name {
        "content_type" => &mut p.content_type,
        "content_encoding" => &mut p.content_encoding,
        "message_id" => &mut p.message_id,
        "correlation_id" => &mut p.correlation_id,
        "reply_to" => &mut p.reply_to,
        "expiration" => &mut p.expiration,
        "type" => &mut p.type_,
        "user_id" => &mut p.user_id,
        "app_id" => &mut p.app_id,
        _ => return None,
    })
}

/// Adds a header for each property `msg` has, and `amqp_timestamp` for its AMQP timestamp
/// (`timestamp_secs`).
pub fn add_headers(msg: &mut Message, timestamp_secs: Option<u64>) {
    let mut p = msg.amqp_properties.clone();
    for name in TEXT {
        if let Some(Some(value)) = text_field(&mut p, name).map(Option::take) {
            msg.headers
                .push((format!("{PREFIX}{name}"), value.into_bytes()));
        }
    }
    let numbers = [
        ("priority", p.priority.map(u64::from)),
        ("delivery_mode", p.delivery_mode.map(u64::from)),
        ("timestamp", timestamp_secs),
    ];
    for (name, value) in numbers {
        if let Some(v) = value {
            msg.headers
                .push((format!("{PREFIX}{name}"), v.to_string().into_bytes()));
        }
    }
}

/// Whether `headers` carry properties.
pub fn carried(headers: &[(String, Vec<u8>)]) -> bool {
    headers.iter().any(|(n, _)| n.starts_with(PREFIX))
}

/// Takes the carried properties out of `headers` into `props` (those a plugin set are
/// kept); the AMQP timestamp, if carried, in seconds.
pub fn take_headers(
    headers: &mut Vec<(String, Vec<u8>)>,
    props: &mut AmqpProperties,
) -> Option<u64> {
    let mut timestamp = None;
    headers.retain(|(name, value)| {
        let Some(field) = name.strip_prefix(PREFIX) else {
            return true;
        };
        let text = std::str::from_utf8(value).ok();
        let number = text.and_then(|t| t.parse::<u64>().ok());
        match field {
            "priority" => match number.and_then(|n| u8::try_from(n).ok()) {
                Some(n) => {
                    props.priority.get_or_insert(n);
                    false
                }
                None => true,
            },
            "delivery_mode" => match number.and_then(|n| u8::try_from(n).ok()) {
                Some(n @ (1 | 2)) => {
                    props.delivery_mode.get_or_insert(n);
                    false
                }
                _ => true,
            },
            "timestamp" => match number {
                Some(n) => {
                    timestamp = Some(n);
                    false
                }
                None => true,
            },
            other => match (text_field(props, other), text) {
                (Some(slot), Some(t)) => {
                    slot.get_or_insert_with(|| t.to_string());
                    false
                }
                _ => true,
            },
        }
    });
    timestamp
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[ -~]{0,40}")
    }

    prop_compose! {
        fn properties()(
            texts in proptest::collection::vec(text(), 9),
            priority in proptest::option::of(any::<u8>()),
            delivery_mode in proptest::option::of(1u8..=2),
        ) -> AmqpProperties {
            let mut t = texts.into_iter();
            let mut next = || t.next().flatten();
            AmqpProperties {
                content_type: next(),
                content_encoding: next(),
                message_id: next(),
                correlation_id: next(),
                reply_to: next(),
                priority,
                expiration: next(),
                type_: next(),
                app_id: next(),
                user_id: next(),
                delivery_mode,
            }
        }
    }

    proptest! {
        #[test]
        fn every_property_comes_back_and_leaves_no_header(
            props in properties(),
            timestamp in proptest::option::of(0u64..=u64::from(u32::MAX)),
            headers in proptest::collection::vec(("[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..8)), 0..4),
        ) {
            let mut msg = Message::new(Some(b"x".to_vec()));
            msg.headers = headers.clone();
            msg.amqp_properties = props.clone();
            add_headers(&mut msg, timestamp);
            // Across Kafka only the headers travel.
            let mut back = Message::new(Some(b"x".to_vec()));
            back.headers = msg.headers.clone();
            let ts = take_headers(&mut back.headers, &mut back.amqp_properties);
            prop_assert_eq!(format!("{:?}", back.amqp_properties), format!("{:?}", props));
            prop_assert_eq!(ts, timestamp);
            prop_assert_eq!(back.headers, headers);
        }
    }

    #[test]
    fn a_plugins_property_wins_and_a_bad_value_stays_a_header() {
        let mut msg = Message::new(None);
        msg.headers = vec![
            ("amqp_content_type".into(), b"text/plain".to_vec()),
            ("amqp_priority".into(), b"high".to_vec()),
            ("amqp_delivery_mode".into(), b"7".to_vec()),
        ];
        msg.amqp_properties.content_type = Some("application/json".into());
        assert_eq!(
            take_headers(&mut msg.headers, &mut msg.amqp_properties),
            None
        );
        assert_eq!(
            msg.amqp_properties.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(
            msg.headers,
            vec![
                ("amqp_priority".to_string(), b"high".to_vec()),
                ("amqp_delivery_mode".to_string(), b"7".to_vec()),
            ]
        );
    }
}
