//! Plugin messages and RabbitMQ stream messages (AMQP 1.0): the payload is the body, each
//! header an application property (text when it is UTF-8, else binary), the AMQP properties a
//! plugin or the source set are the message's properties.

use rabbitmq_stream_client::types::{Message as StreamMessage, SimpleValue};

use crate::plugin::{AmqpOrigin, AmqpProperties, Message, Origin};

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

/// A message read from `stream` on `[rabbitmq.CONNECTION]` as a plugin message: application
/// properties as headers (by name; numbers and other values as their text), the key from
/// header `kafka_key`, a Kafka tombstone restored. Its origin is the stream, as a queue.
pub fn from_stream(connection: &str, stream: &str, m: &StreamMessage) -> Message {
    let mut msg = Message::new(Some(m.data().unwrap_or_default().to_vec()));
    let mut headers: Vec<(String, Vec<u8>)> = m
        .application_properties()
        .map(|props| {
            props
                .iter()
                .map(|(name, value)| (name.clone(), value_bytes(value)))
                .collect()
        })
        .unwrap_or_default();
    headers.sort();
    msg.headers = headers;
    if msg.payload.as_ref().is_some_and(|p| p.is_empty()) && msg.header(TOMBSTONE) == Some(b"true")
    {
        msg.payload = None;
        msg.headers.retain(|(n, _)| n != TOMBSTONE);
    }
    msg.key = msg.header("kafka_key").map(<[u8]>::to_vec);
    let mut props = AmqpProperties::default();
    if let Some(p) = m.properties() {
        props.message_id = p.message_id.as_ref().map(message_id);
        props.correlation_id = p.correlation_id.as_ref().map(message_id);
        props.content_type = p.content_type.as_ref().map(|s| s.to_string());
        props.content_encoding = p.content_encoding.as_ref().map(|s| s.to_string());
        props.reply_to = p.reply_to.clone();
        props.user_id = p
            .user_id
            .as_ref()
            .map(|u| String::from_utf8_lossy(u).into_owned());
    }
    msg.amqp_properties = props.clone();
    msg.origin = Origin::Amqp(AmqpOrigin {
        connection: connection.to_string(),
        queue: stream.to_string(),
        exchange: String::new(),
        routing_key: String::new(),
        redelivered: false,
        properties: props,
    });
    msg
}

/// A message id as text. (The client does not export the type; its conversions do.)
fn message_id<T>(id: &T) -> String
where
    T: Clone + std::fmt::Debug + TryInto<String> + TryInto<u64> + TryInto<i64> + TryInto<Vec<u8>>,
{
    if let Ok(s) = TryInto::<String>::try_into(id.clone()) {
        return s;
    }
    if let Ok(n) = TryInto::<u64>::try_into(id.clone()) {
        return n.to_string();
    }
    if let Ok(n) = TryInto::<i64>::try_into(id.clone()) {
        return n.to_string();
    }
    if let Ok(b) = TryInto::<Vec<u8>>::try_into(id.clone()) {
        return String::from_utf8_lossy(&b).into_owned();
    }
    format!("{id:?}")
}

/// An application property's value as header bytes.
fn value_bytes(value: &SimpleValue) -> Vec<u8> {
    match value {
        SimpleValue::String(s) => s.as_bytes().to_vec(),
        SimpleValue::Binary(b) => b.clone(),
        SimpleValue::Symbol(s) => s.as_bytes().to_vec(),
        SimpleValue::Null => Vec::new(),
        SimpleValue::Boolean(b) => b.to_string().into_bytes(),
        SimpleValue::Ubyte(n) => n.to_string().into_bytes(),
        SimpleValue::Ushort(n) => n.to_string().into_bytes(),
        SimpleValue::Uint(n) => n.to_string().into_bytes(),
        SimpleValue::Ulong(n) => n.to_string().into_bytes(),
        SimpleValue::Byte(n) => n.to_string().into_bytes(),
        SimpleValue::Short(n) => n.to_string().into_bytes(),
        SimpleValue::Int(n) => n.to_string().into_bytes(),
        SimpleValue::Long(n) => n.to_string().into_bytes(),
        SimpleValue::Char(c) => c.to_string().into_bytes(),
        SimpleValue::Uuid(u) => u.to_string().into_bytes(),
        other => format!("{other:?}").into_bytes(),
    }
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
