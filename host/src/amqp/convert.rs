//! AMQP ⇄ plugin message conversion.
//!
//! Headers: an AMQP field table has unique names and typed values; Kafka headers are ordered
//! bytes with repeatable names. Towards AMQP every header becomes a long string with the exact
//! bytes; a name that repeats becomes an array of long strings. Back from AMQP:
//!
//! | AMQP value | header bytes |
//! |---|---|
//! | long string, short string, byte array | the bytes as they are |
//! | array of strings | one header per element, in order |
//! | integers, floats, decimals | decimal text (`42`, `-1.5`) |
//! | boolean | `true` / `false` |
//! | timestamp | seconds since the epoch as decimal text |
//! | nested table, other arrays | JSON text |
//! | void | empty |
//!
//! The types come back too: when the table has headers that are not strings, the headers
//! carry [`HEADER_TYPES`], a JSON object naming each one's AMQP type (`{"count":"i32",
//! "flag":"bool","meta":"table"}`), and the way back turns their text into values of that type
//! again — exactly for numbers, booleans, decimals, timestamps, byte arrays and void; inside a
//! nested table or array, numbers come back as 64-bit integers or doubles.
//!
//! An AMQP field table keeps its names sorted, so the order of the Kafka headers would be lost
//! on the way: when it is not already the sorted order, the table also carries
//! [`HEADER_ORDER`], the header names in their order (one entry per header), and the way back
//! restores it. So Kafka → RabbitMQ → Kafka keeps every header byte for byte, in order,
//! including repeated names.
//!
//! Properties: AMQP basic properties are carried across Kafka as headers, so that RabbitMQ →
//! Kafka → RabbitMQ keeps them (mapping setting `amqp_properties`, on by default).
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

use std::borrow::Cow;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

use crate::plugin::{AmqpOrigin, AmqpProperties, Message, Origin};

/// The AMQP header with the Kafka header names in their order, when it is not the sorted one.
pub const HEADER_ORDER: &str = "x-bridge-header-order";

/// The Kafka header naming the AMQP type of each header that was not a string (JSON object).
pub const HEADER_TYPES: &str = "x-bridge-header-types";

/// A message that cannot be expressed in AMQP: a header name or a property longer than the
/// 255 bytes of an AMQP short string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {len} bytes long; AMQP allows at most 255 (it starts `{start}`)")]
pub struct ConversionError {
    /// What is too long: `header name`, `property content-type`, …
    pub what: String,
    /// Its length in bytes.
    pub len: usize,
    /// Its first characters.
    pub start: String,
}

/// `value` as an AMQP short string, or an error naming `what`.
fn short_string(what: &str, value: &str) -> Result<ShortString, ConversionError> {
    ShortString::try_new(value).map_err(|_| ConversionError {
        what: what.to_string(),
        len: value.len(),
        start: value.chars().take(32).collect(),
    })
}

/// Header list → field table. Fails on a header name longer than 255 bytes.
pub fn to_field_table(headers: &[(String, Vec<u8>)]) -> Result<FieldTable, ConversionError> {
    let mut table = std::collections::BTreeMap::<ShortString, AMQPValue>::new();
    let types: std::collections::HashMap<String, String> = headers
        .iter()
        .find(|(n, _)| n == HEADER_TYPES)
        .and_then(|(_, v)| serde_json::from_slice(v).ok())
        .unwrap_or_default();
    let carried: Vec<&(String, Vec<u8>)> = headers
        .iter()
        .filter(|(n, _)| n != HEADER_ORDER && n != HEADER_TYPES)
        .collect();
    let sorted = carried.windows(2).all(|w| w[0].0 <= w[1].0);
    if !sorted {
        let names = carried
            .iter()
            .map(|(n, _)| AMQPValue::LongString(LongString::from(n.as_bytes().to_vec())))
            .collect::<Vec<_>>();
        table.insert(
            ShortString::from(HEADER_ORDER),
            AMQPValue::FieldArray(FieldArray::from(names)),
        );
    }
    for (name, value) in carried {
        let v = types
            .get(name)
            .and_then(|t| typed_value(t, value))
            .unwrap_or_else(|| AMQPValue::LongString(LongString::from(value.clone())));
        let key = short_string("header name", name)?;
        match table.remove(&key) {
            None => {
                table.insert(key, v);
            }
            Some(AMQPValue::FieldArray(arr)) => {
                let mut items: Vec<AMQPValue> = arr.as_slice().to_vec();
                items.push(v);
                table.insert(key, AMQPValue::FieldArray(FieldArray::from(items)));
            }
            Some(first) => {
                table.insert(key, AMQPValue::FieldArray(FieldArray::from(vec![first, v])));
            }
        }
    }
    Ok(FieldTable::from(table))
}

/// Field table → header list (see the module docs for the value conversion), in the order
/// [`HEADER_ORDER`] gives when the table has it: each name listed takes its next value; what
/// the list does not name (added by another publisher on the way) follows in table order.
pub fn from_field_table(table: &FieldTable) -> Vec<(String, Vec<u8>)> {
    let mut types = serde_json::Map::new();
    let mut headers = ordered_headers(table, &mut types);
    if !types.is_empty() {
        let json = serde_json::Value::Object(types).to_string();
        headers.push((HEADER_TYPES.to_string(), json.into_bytes()));
    }
    headers
}

/// The AMQP type of a header value that does not travel as plain bytes (`None` for strings,
/// and for arrays of strings, which become repeated headers).
fn type_name(v: &AMQPValue) -> Option<&'static str> {
    Some(match v {
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => return None,
        AMQPValue::FieldArray(a) if a.as_slice().iter().all(is_bytes) => return None,
        AMQPValue::ByteArray(_) => "bytes",
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "i8",
        AMQPValue::ShortShortUInt(_) => "u8",
        AMQPValue::ShortInt(_) => "i16",
        AMQPValue::ShortUInt(_) => "u16",
        AMQPValue::LongInt(_) => "i32",
        AMQPValue::LongUInt(_) => "u32",
        AMQPValue::LongLongInt(_) => "i64",
        AMQPValue::Float(_) => "f32",
        AMQPValue::Double(_) => "f64",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Void => "void",
    })
}

/// A decimal's exact text: `value` with the point `scale` digits from the right (`1.50`).
fn decimal_text(d: &lapin::types::DecimalValue) -> String {
    let digits = d.value.to_string();
    let scale = usize::from(d.scale);
    match digits.len().checked_sub(scale) {
        _ if scale == 0 => digits,
        Some(whole) if whole > 0 => format!("{}.{}", &digits[..whole], &digits[whole..]),
        _ => format!("0.{}{digits}", "0".repeat(scale - digits.len())),
    }
}

/// A header's bytes as a value of AMQP type `name` again; `None` when they do not parse as
/// one (a plugin changed the value), and it then goes as a string.
fn typed_value(name: &str, bytes: &[u8]) -> Option<AMQPValue> {
    use AMQPValue as V;
    if name == "bytes" {
        return Some(V::ByteArray(bytes.to_vec().into()));
    }
    let text = std::str::from_utf8(bytes).ok()?;
    Some(match name {
        "bool" => V::Boolean(text.parse().ok()?),
        "i8" => V::ShortShortInt(text.parse().ok()?),
        "u8" => V::ShortShortUInt(text.parse().ok()?),
        "i16" => V::ShortInt(text.parse().ok()?),
        "u16" => V::ShortUInt(text.parse().ok()?),
        "i32" => V::LongInt(text.parse().ok()?),
        "u32" => V::LongUInt(text.parse().ok()?),
        "i64" => V::LongLongInt(text.parse().ok()?),
        "f32" => V::Float(text.parse().ok()?),
        "f64" => V::Double(text.parse().ok()?),
        "timestamp" => V::Timestamp(text.parse().ok()?),
        "void" if text.is_empty() => V::Void,
        "decimal" => {
            let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
            let scale = u8::try_from(fraction.len()).ok()?;
            let value = format!("{whole}{fraction}").parse().ok()?;
            V::DecimalValue(lapin::types::DecimalValue { scale, value })
        }
        "table" | "array" => match (name, serde_json::from_str(text).ok()?) {
            // Only what reads back as the same text (a double JSON does not parse exactly
            // does not), and no array that would come back as strings only: that crosses as
            // repeated headers.
            ("table", j @ serde_json::Value::Object(_))
            | ("array", j @ serde_json::Value::Array(_)) => match from_json(&j) {
                AMQPValue::FieldArray(a) if a.as_slice().iter().all(is_bytes) => return None,
                v if serde_json::to_string(&to_json(&v)).ok().as_deref() != Some(text) => {
                    return None;
                }
                v => v,
            },
            _ => return None,
        },
        _ => return None,
    })
}

/// A JSON value as an AMQP value: numbers as 64-bit integers or doubles.
fn from_json(j: &serde_json::Value) -> AMQPValue {
    use serde_json::Value as J;
    match j {
        J::Null => AMQPValue::Void,
        J::Bool(b) => AMQPValue::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        J::Array(a) => AMQPValue::FieldArray(a.iter().map(from_json).collect::<Vec<_>>().into()),
        J::Object(o) => {
            let mut t = FieldTable::default();
            for (k, v) in o {
                if let Ok(k) = ShortString::try_new(k.as_str()) {
                    t.insert(k, from_json(v));
                }
            }
            AMQPValue::FieldTable(t)
        }
    }
}

/// The headers in the order [`HEADER_ORDER`] gives, when the table has it.
fn ordered_headers(
    table: &FieldTable,
    types: &mut serde_json::Map<String, serde_json::Value>,
) -> Vec<(String, Vec<u8>)> {
    let in_table_order = table_headers(table, types);
    let Some(AMQPValue::FieldArray(order)) = table.inner().get(HEADER_ORDER) else {
        return in_table_order;
    };
    let mut pending: std::collections::BTreeMap<&str, std::collections::VecDeque<&[u8]>> =
        std::collections::BTreeMap::new();
    for (name, value) in &in_table_order {
        pending.entry(name).or_default().push_back(value);
    }
    let mut out = Vec::with_capacity(in_table_order.len());
    for name in order.as_slice() {
        let name = String::from_utf8_lossy(&value_bytes(name)).into_owned();
        if let Some(value) = pending.get_mut(name.as_str()).and_then(|v| v.pop_front()) {
            out.push((name, value.to_vec()));
        }
    }
    for (name, values) in pending {
        out.extend(values.into_iter().map(|v| (name.to_string(), v.to_vec())));
    }
    out
}

/// The table's headers in table order, without [`HEADER_ORDER`]; the type of each that is
/// not a string goes into `types`.
fn table_headers(
    table: &FieldTable,
    types: &mut serde_json::Map<String, serde_json::Value>,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, value) in table.inner() {
        if name.as_str() == HEADER_ORDER || name.as_str() == HEADER_TYPES {
            continue;
        }
        match value {
            AMQPValue::FieldArray(arr) if arr.as_slice().iter().all(is_bytes) => {
                for v in arr.as_slice() {
                    out.push((name.to_string(), value_bytes(v)));
                }
            }
            v => {
                let bytes = value_bytes(v);
                // Typed only when its text reads back as that type (not a NaN, say): what
                // reads back differently crosses as the string it became.
                if let Some(t) = type_name(v)
                    && typed_value(t, &bytes).is_some()
                {
                    types.insert(name.to_string(), t.into());
                }
                out.push((name.to_string(), bytes));
            }
        }
    }
    out
}

fn is_bytes(v: &AMQPValue) -> bool {
    matches!(
        v,
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) | AMQPValue::ByteArray(_)
    )
}

fn value_bytes(v: &AMQPValue) -> Vec<u8> {
    match v {
        AMQPValue::LongString(s) => s.as_bytes().to_vec(),
        AMQPValue::ShortString(s) => s.as_str().as_bytes().to_vec(),
        AMQPValue::ByteArray(b) => b.as_slice().to_vec(),
        AMQPValue::Void => Vec::new(),
        other => match to_json(other) {
            serde_json::Value::String(s) => s.into_bytes(),
            json => json.to_string().into_bytes(),
        },
    }
}

fn to_json(v: &AMQPValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AMQPValue::Boolean(b) => J::Bool(*b),
        AMQPValue::ShortShortInt(n) => J::from(*n),
        AMQPValue::ShortShortUInt(n) => J::from(*n),
        AMQPValue::ShortInt(n) => J::from(*n),
        AMQPValue::ShortUInt(n) => J::from(*n),
        AMQPValue::LongInt(n) => J::from(*n),
        AMQPValue::LongUInt(n) => J::from(*n),
        AMQPValue::LongLongInt(n) => J::from(*n),
        AMQPValue::Float(f) => J::from(f64::from(*f)),
        AMQPValue::Double(f) => J::from(*f),
        AMQPValue::DecimalValue(d) => J::String(decimal_text(d)),
        AMQPValue::Timestamp(t) => J::from(*t),
        AMQPValue::ShortString(s) => J::String(s.to_string()),
        AMQPValue::LongString(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ByteArray(b) => J::String(String::from_utf8_lossy(b.as_slice()).into_owned()),
        AMQPValue::FieldArray(a) => J::Array(a.as_slice().iter().map(to_json).collect()),
        AMQPValue::FieldTable(t) => J::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        ),
        AMQPValue::Void => J::Null,
    }
}

/// Marks a Kafka tombstone (a record without a value) published to RabbitMQ with an empty body.
pub const TOMBSTONE: &str = "kafka_tombstone";

/// A RabbitMQ delivery as a plugin message. The key comes from header `kafka_key`, if any;
/// an empty body with header `kafka_tombstone = "true"` becomes a tombstone again.
/// With `properties_as_headers`, its AMQP properties are also carried as `amqp_*` headers
/// (see [`super::properties`]).
pub fn to_message(
    connection: &str,
    queue: &str,
    d: &lapin::message::Delivery,
    properties_as_headers: bool,
) -> Message {
    let p = &d.properties;
    let mut msg = Message::new(Some(d.data.clone()));
    msg.headers = p
        .headers()
        .as_ref()
        .map(from_field_table)
        .unwrap_or_default();
    if d.data.is_empty() && msg.header(TOMBSTONE) == Some(b"true") {
        msg.payload = None;
        msg.headers.retain(|(n, _)| n != TOMBSTONE);
    }
    msg.key = msg.header("kafka_key").map(<[u8]>::to_vec);
    msg.timestamp = p.timestamp().map(|t| (t as i64).saturating_mul(1000));
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.to_string());
    let props = AmqpProperties {
        content_type: s(p.content_type()),
        content_encoding: s(p.content_encoding()),
        message_id: s(p.message_id()),
        correlation_id: s(p.correlation_id()),
        reply_to: s(p.reply_to()),
        priority: *p.priority(),
        expiration: s(p.expiration()),
        type_: s(p.kind()),
        app_id: s(p.app_id()),
        user_id: s(p.user_id()),
        delivery_mode: *p.delivery_mode(),
    };
    msg.amqp_properties = props.clone();
    if properties_as_headers {
        add_property_headers(&mut msg, *p.timestamp());
    }
    msg.origin = Origin::Amqp(AmqpOrigin {
        connection: connection.to_string(),
        queue: queue.to_string(),
        exchange: d.exchange.to_string(),
        routing_key: d.routing_key.to_string(),
        redelivered: d.redelivered,
        properties: props,
    });
    msg
}

/// The properties to publish a plugin message with. A tombstone gets header
/// `kafka_tombstone = "true"` (its body is empty). With `properties_from_headers`, carried
/// `amqp_*` headers become properties again (see [`super::properties`]). Fails on a header
/// name or a property longer than AMQP allows.
pub fn properties_from_message(
    msg: &Message,
    persistent: bool,
    properties_from_headers: bool,
) -> Result<BasicProperties, ConversionError> {
    // Only the headers and properties change: the rest is read from `msg` as it is.
    let (headers, p, amqp_timestamp) =
        if properties_from_headers && carries_properties(&msg.headers) {
            let (mut headers, mut p) = (msg.headers.clone(), msg.amqp_properties.clone());
            let ts = take_property_headers(&mut headers, &mut p);
            (Cow::Owned(headers), Cow::Owned(p), ts)
        } else {
            (
                Cow::Borrowed(&msg.headers),
                Cow::Borrowed(&msg.amqp_properties),
                None,
            )
        };
    let mut table = to_field_table(&headers)?;
    if msg.payload.is_none() {
        table.insert(TOMBSTONE.into(), AMQPValue::LongString("true".into()));
    }
    let mut props = BasicProperties::default().with_headers(table);
    let s = |name: &str, v: &str| short_string(&format!("property {name}"), v);
    if let Some(v) = &p.content_type {
        props = props.with_content_type(s("content-type", v)?);
    }
    if let Some(v) = &p.content_encoding {
        props = props.with_content_encoding(s("content-encoding", v)?);
    }
    if let Some(v) = &p.message_id {
        props = props.with_message_id(s("message-id", v)?);
    }
    if let Some(v) = &p.correlation_id {
        props = props.with_correlation_id(s("correlation-id", v)?);
    }
    if let Some(v) = &p.reply_to {
        props = props.with_reply_to(s("reply-to", v)?);
    }
    if let Some(v) = p.priority {
        props = props.with_priority(v);
    }
    if let Some(v) = &p.expiration {
        props = props.with_expiration(s("expiration", v)?);
    }
    if let Some(v) = &p.type_ {
        props = props.with_type(s("type", v)?);
    }
    if let Some(v) = &p.app_id {
        props = props.with_app_id(s("app-id", v)?);
    }
    if let Some(v) = &p.user_id {
        props = props.with_user_id(s("user-id", v)?);
    }
    let mode = p.delivery_mode.unwrap_or(if persistent { 2 } else { 1 });
    props = props.with_delivery_mode(mode);
    if let Some(secs) = amqp_timestamp {
        props = props.with_timestamp(secs);
    } else if let Some(ts) = msg.timestamp
        && ts >= 0
    {
        props = props.with_timestamp((ts / 1000) as u64);
    }
    Ok(props)
}

/// Header name prefix of carried properties.
const PROPERTY_PREFIX: &str = "amqp_";

/// The carried properties' header names (without [`PROPERTY_PREFIX`]).
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
pub fn add_property_headers(msg: &mut Message, timestamp_secs: Option<u64>) {
    let mut p = msg.amqp_properties.clone();
    for name in TEXT {
        if let Some(Some(value)) = text_field(&mut p, name).map(Option::take) {
            msg.headers
                .push((format!("{PROPERTY_PREFIX}{name}"), value.into_bytes()));
        }
    }
    let numbers = [
        ("priority", p.priority.map(u64::from)),
        ("delivery_mode", p.delivery_mode.map(u64::from)),
        ("timestamp", timestamp_secs),
    ];
    for (name, value) in numbers {
        if let Some(v) = value {
            msg.headers.push((
                format!("{PROPERTY_PREFIX}{name}"),
                v.to_string().into_bytes(),
            ));
        }
    }
}

/// Whether `headers` carry properties.
pub fn carries_properties(headers: &[(String, Vec<u8>)]) -> bool {
    headers.iter().any(|(n, _)| n.starts_with(PROPERTY_PREFIX))
}

/// Takes the carried properties out of `headers` into `props` (those a plugin set are
/// kept); the AMQP timestamp, if carried, in seconds.
pub fn take_property_headers(
    headers: &mut Vec<(String, Vec<u8>)>,
    props: &mut AmqpProperties,
) -> Option<u64> {
    let mut timestamp = None;
    headers.retain(|(name, value)| {
        let Some(field) = name.strip_prefix(PROPERTY_PREFIX) else {
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

    #[test]
    fn headers_round_trip_with_repeated_names_and_binary() {
        let headers = vec![
            ("a".to_string(), b"1".to_vec()),
            ("bin".to_string(), vec![0, 255, 7]),
            ("a".to_string(), b"2".to_vec()),
        ];
        let back = from_field_table(&to_field_table(&headers).unwrap());
        assert_eq!(back, headers);
    }

    #[test]
    fn sorted_headers_need_no_order_header() {
        let headers = vec![
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ];
        assert!(
            !to_field_table(&headers)
                .unwrap()
                .inner()
                .contains_key(HEADER_ORDER)
        );
        let reversed: Vec<_> = headers.iter().rev().cloned().collect();
        assert!(
            to_field_table(&reversed)
                .unwrap()
                .inner()
                .contains_key(HEADER_ORDER)
        );
    }

    #[test]
    fn headers_added_on_the_way_follow_the_ordered_ones() {
        let headers = vec![
            ("z".to_string(), b"1".to_vec()),
            ("a".to_string(), b"2".to_vec()),
        ];
        let mut table = to_field_table(&headers).unwrap();
        table.insert("m".into(), AMQPValue::LongString("added".into()));
        assert_eq!(
            from_field_table(&table),
            vec![
                ("z".to_string(), b"1".to_vec()),
                ("a".to_string(), b"2".to_vec()),
                ("m".to_string(), b"added".to_vec()),
            ]
        );
    }

    proptest::proptest! {
        /// Kafka headers → AMQP field table → Kafka headers keeps names, values and order,
        /// whatever the names repeat or the values hold.
        #[test]
        fn kafka_headers_round_trip_through_amqp(
            headers in proptest::collection::vec(
                ("[a-e]{1,2}", proptest::collection::vec(proptest::num::u8::ANY, 0..8)),
                0..12,
            )
        ) {
            let back = from_field_table(&to_field_table(&headers).unwrap());
            proptest::prop_assert_eq!(back, headers);
        }
    }

    #[test]
    fn names_and_properties_longer_than_amqp_allows_are_errors() {
        let long = "n".repeat(256);
        let err = to_field_table(&[(long.clone(), b"v".to_vec())]).unwrap_err();
        assert_eq!((err.what.as_str(), err.len), ("header name", 256));
        assert!(to_field_table(&[("n".repeat(255), Vec::new())]).is_ok());
        let mut msg = Message::new(Some(b"x".to_vec()));
        msg.amqp_properties.content_type = Some(long);
        let err = properties_from_message(&msg, true, true).unwrap_err();
        assert_eq!(err.what, "property content-type");
    }

    #[test]
    fn typed_amqp_values_become_text() {
        let mut t = FieldTable::default();
        t.insert("n".into(), AMQPValue::LongLongInt(-42));
        t.insert("b".into(), AMQPValue::Boolean(true));
        t.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut nested = FieldTable::default();
        nested.insert("x".into(), AMQPValue::LongInt(1));
        t.insert("t".into(), AMQPValue::FieldTable(nested));
        t.insert(
            "arr".into(),
            AMQPValue::FieldArray(vec![AMQPValue::LongInt(1), AMQPValue::Boolean(false)].into()),
        );
        t.insert("v".into(), AMQPValue::Void);
        let h: std::collections::HashMap<_, _> = from_field_table(&t)
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(h["n"], "-42");
        assert_eq!(h["b"], "true");
        assert_eq!(h["ts"], "1700000000");
        assert_eq!(h["t"], r#"{"x":1}"#);
        assert_eq!(h["arr"], "[1,false]");
        assert_eq!(h["v"], "");
    }

    #[test]
    fn every_value_crosses_the_same_way_twice() {
        use lapin::types::DecimalValue;
        let mut t = FieldTable::default();
        t.insert("nan".into(), AMQPValue::Double(f64::NAN));
        t.insert(
            "tiny".into(),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 217,
                value: 12_337,
            }),
        );
        t.insert(
            "inexact".into(),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 37,
                value: 1_233_999_999,
            }),
        );
        let decimals = vec![AMQPValue::DecimalValue(DecimalValue { scale: 1, value: 5 })];
        t.insert("decimals".into(), AMQPValue::FieldArray(decimals.into()));
        let headers = from_field_table(&t);
        let again = to_field_table(&headers).unwrap();
        assert_eq!(
            from_field_table(&again),
            headers,
            "a second crossing changes nothing"
        );
        // Decimals are written exactly, so they come back whatever their scale.
        for name in ["tiny", "inexact"] {
            assert_eq!(again.inner().get(name), t.inner().get(name), "{name}");
        }
        // A NaN's text is `null`, and an array of decimals would come back as strings.
        assert_eq!(
            again.inner().get("nan"),
            Some(&AMQPValue::LongString("null".into()))
        );
        assert!(matches!(
            again.inner().get("decimals"),
            Some(AMQPValue::LongString(_))
        ));
    }

    #[test]
    fn typed_amqp_values_come_back_with_their_types() {
        use lapin::types::DecimalValue;
        let mut t = FieldTable::default();
        let values = [
            ("a-bool", AMQPValue::Boolean(true)),
            ("b-i8", AMQPValue::ShortShortInt(-8)),
            ("c-u8", AMQPValue::ShortShortUInt(8)),
            ("d-i16", AMQPValue::ShortInt(-16)),
            ("e-u16", AMQPValue::ShortUInt(16)),
            ("f-i32", AMQPValue::LongInt(-32)),
            ("g-u32", AMQPValue::LongUInt(32)),
            ("h-i64", AMQPValue::LongLongInt(-64)),
            ("i-f32", AMQPValue::Float(1.5)),
            ("j-f64", AMQPValue::Double(-2.25)),
            (
                "k-dec",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 12345,
                }),
            ),
            ("l-ts", AMQPValue::Timestamp(1_700_000_000)),
            ("m-bytes", AMQPValue::ByteArray(vec![0, 255].into())),
            ("n-void", AMQPValue::Void),
            ("o-str", AMQPValue::LongString("text".into())),
        ];
        for (k, v) in &values {
            t.insert((*k).into(), v.clone());
        }
        let mut nested = FieldTable::default();
        nested.insert("x".into(), AMQPValue::LongLongInt(1));
        nested.insert("y".into(), AMQPValue::LongString("z".into()));
        t.insert("p-table".into(), AMQPValue::FieldTable(nested.clone()));
        let arr = AMQPValue::FieldArray(
            vec![AMQPValue::LongLongInt(1), AMQPValue::Boolean(false)].into(),
        );
        t.insert("q-array".into(), arr.clone());
        let headers = from_field_table(&t);
        let back = to_field_table(&headers).unwrap();
        for (k, v) in &values {
            assert_eq!(back.inner().get(*k), Some(v), "{k}");
        }
        assert_eq!(
            back.inner().get("p-table"),
            Some(&AMQPValue::FieldTable(nested))
        );
        assert_eq!(back.inner().get("q-array"), Some(&arr));
        assert!(
            !back.inner().contains_key(HEADER_TYPES),
            "the types travel only in Kafka"
        );
        // A plugin that changed a typed value to text it does not parse as: a string.
        let changed: Vec<_> = headers
            .into_iter()
            .map(|(k, v)| {
                if k == "f-i32" {
                    (k, b"many".to_vec())
                } else {
                    (k, v)
                }
            })
            .collect();
        let back = to_field_table(&changed).unwrap();
        assert_eq!(
            back.inner().get("f-i32"),
            Some(&AMQPValue::LongString("many".into()))
        );
    }

    // Carried properties.

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
            add_property_headers(&mut msg, timestamp);
            // Across Kafka only the headers travel.
            let mut back = Message::new(Some(b"x".to_vec()));
            back.headers = msg.headers.clone();
            let ts = take_property_headers(&mut back.headers, &mut back.amqp_properties);
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
            take_property_headers(&mut msg.headers, &mut msg.amqp_properties),
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
