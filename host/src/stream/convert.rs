//! A plugin message as a RabbitMQ stream message (AMQP 1.0): the payload as its body, each
//! header as an application property (text when it is UTF-8, else binary), the AMQP
//! properties a plugin or the source set as the message's properties.

use rabbitmq_stream_client::types::{Message as StreamMessage, SimpleValue};

use crate::plugin::Message;

/// Application property `kafka_tombstone = "true"` marks a Kafka tombstone (its body is empty),
/// as on an AMQP publish.
pub const TOMBSTONE: &str = crate::amqp::TOMBSTONE;

/// A message a stream cannot carry as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// Application properties hold one value per name.
    #[error(
        "header `{0}` appears more than once; a stream message's application properties hold one value per name"
    )]
    RepeatedHeader(String),
}

/// The stream message for `msg`, with `publishing_id` if it is to be deduplicated.
pub fn to_stream(
    msg: &Message,
    publishing_id: Option<u64>,
) -> Result<StreamMessage, ConversionError> {
    let mut seen = std::collections::HashSet::with_capacity(msg.headers.len());
    let mut properties = StreamMessage::builder().application_properties();
    for (name, value) in &msg.headers {
        if !seen.insert(name.as_str()) {
            return Err(ConversionError::RepeatedHeader(name.clone()));
        }
        properties = properties.insert(name.as_str(), simple(value));
    }
    if msg.payload.is_none() {
        properties = properties.insert(TOMBSTONE, "true");
    }
    let p = &msg.amqp_properties;
    let mut props = properties.message_builder().properties();
    if let Some(v) = &p.message_id {
        props = props.message_id(v.clone());
    }
    if let Some(v) = &p.correlation_id {
        props = props.correlation_id(v.clone());
    }
    if let Some(v) = &p.content_type {
        props = props.content_type(v.as_str());
    }
    if let Some(v) = &p.content_encoding {
        props = props.content_encoding(v.as_str());
    }
    if let Some(v) = &p.reply_to {
        props = props.reply_to(v.clone());
    }
    if let Some(v) = &p.user_id {
        props = props.user_id(v.as_bytes());
    }
    let mut builder = props
        .message_builder()
        .body(msg.payload.as_deref().unwrap_or_default());
    if let Some(id) = publishing_id {
        builder = builder.publishing_id(id);
    }
    Ok(builder.build())
}

fn simple(value: &[u8]) -> SimpleValue {
    match std::str::from_utf8(value) {
        Ok(text) => SimpleValue::String(text.to_string()),
        Err(_) => SimpleValue::Binary(value.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_application_properties() {
        let mut msg = Message::new(Some(b"body".to_vec()));
        msg.headers = vec![
            ("kafka_topic".into(), b"orders".to_vec()),
            ("raw".into(), vec![0xff, 0x00]),
        ];
        msg.amqp_properties.message_id = Some("m-1".into());
        let out = to_stream(&msg, Some(7)).unwrap();
        let props = out.application_properties().unwrap();
        assert_eq!(
            props.get("kafka_topic"),
            Some(&SimpleValue::String("orders".into()))
        );
        assert_eq!(
            props.get("raw"),
            Some(&SimpleValue::Binary(vec![0xff, 0x00]))
        );
        assert_eq!(out.data(), Some(&b"body"[..]));
        assert_eq!(out.publishing_id(), Some(&7));
    }

    #[test]
    fn a_tombstone_is_marked_and_a_repeated_header_refused() {
        let out = to_stream(&Message::new(None), None).unwrap();
        let props = out.application_properties().unwrap();
        assert_eq!(
            props.get(TOMBSTONE),
            Some(&SimpleValue::String("true".into()))
        );
        let mut msg = Message::new(Some(vec![]));
        msg.headers = vec![("a".into(), b"1".to_vec()), ("a".into(), b"2".to_vec())];
        assert_eq!(
            to_stream(&msg, None).unwrap_err(),
            ConversionError::RepeatedHeader("a".into())
        );
    }
}
