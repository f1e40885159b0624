//! The message a plugin works on.
//!
//! In a WebAssembly build every method is a call into the host, which owns the bytes: reading
//! headers never copies the payload, and the payload is copied in only by [`Message::payload`].
//! In a native build (unit tests) the message is an ordinary in-memory value.

use crate::{AmqpProperties, AmqpTarget, KafkaTarget, Origin};

/// A message on its way through the plugin chain.
#[derive(Debug)]
pub struct Message {
    inner: imp::Inner,
}

impl Message {
    /// A new, empty message (no key, no payload, no headers), for fan-out.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Message { inner: imp::Inner::new() }
    }

    /// A copy of this message, for fan-out. In WebAssembly the host makes the copy.
    pub fn duplicate(&self) -> Self {
        Message { inner: self.inner.duplicate() }
    }

    /// The key, if any.
    pub fn key(&self) -> Option<Vec<u8>> {
        self.inner.key()
    }

    /// Sets or clears the key.
    pub fn set_key(&mut self, key: Option<&[u8]>) {
        self.inner.set_key(key)
    }

    /// The payload; `None` for a Kafka tombstone.
    pub fn payload(&self) -> Option<Vec<u8>> {
        self.inner.payload()
    }

    /// The payload length, without copying it.
    pub fn payload_len(&self) -> u64 {
        self.inner.payload_len()
    }

    /// Replaces the payload; `None` makes a tombstone.
    pub fn set_payload(&mut self, payload: Option<&[u8]>) {
        self.inner.set_payload(payload)
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.inner.header(name)
    }

    /// The first header named `name` as text (`None` if absent or not UTF-8).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name).and_then(|v| String::from_utf8(v).ok())
    }

    /// Every value of headers named `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
        self.inner.header_all(name)
    }

    /// Every header, in order.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.headers()
    }

    /// The header names, in order, without their values.
    pub fn header_names(&self) -> Vec<String> {
        self.inner.header_names()
    }

    /// Replaces every header named `name` by one with `value` (appends if there was none).
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.inner.set_header(name, value.as_ref())
    }

    /// Appends a header, keeping others with the same name.
    pub fn add_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.inner.add_header(name, value.as_ref())
    }

    /// Removes every header named `name`; returns how many were removed.
    pub fn remove_header(&mut self, name: &str) -> u32 {
        self.inner.remove_header(name)
    }

    /// Replaces all headers.
    pub fn set_headers(&mut self, headers: &[(String, Vec<u8>)]) {
        self.inner.set_headers(headers)
    }

    /// Milliseconds since the Unix epoch, if known.
    pub fn timestamp(&self) -> Option<i64> {
        self.inner.timestamp()
    }

    /// Sets or clears the timestamp.
    pub fn set_timestamp(&mut self, timestamp: Option<i64>) {
        self.inner.set_timestamp(timestamp)
    }

    /// Where the message came from.
    pub fn origin(&self) -> Origin {
        self.inner.origin()
    }

    /// The Kafka target overrides set so far.
    pub fn kafka_target(&self) -> KafkaTarget {
        self.inner.kafka_target()
    }

    /// Overrides the Kafka target topic and/or partition.
    pub fn set_kafka_target(&mut self, target: &KafkaTarget) {
        self.inner.set_kafka_target(target)
    }

    /// The RabbitMQ target overrides set so far.
    pub fn amqp_target(&self) -> AmqpTarget {
        self.inner.amqp_target()
    }

    /// Overrides the RabbitMQ exchange and/or routing key.
    pub fn set_amqp_target(&mut self, target: &AmqpTarget) {
        self.inner.set_amqp_target(target)
    }

    /// The AMQP properties the message will be published with.
    pub fn amqp_properties(&self) -> AmqpProperties {
        self.inner.amqp_properties()
    }

    /// Replaces the AMQP properties.
    pub fn set_amqp_properties(&mut self, properties: &AmqpProperties) {
        self.inner.set_amqp_properties(properties)
    }

    /// Sets the origin. Only in native builds, to set up unit tests: in WebAssembly the
    /// origin comes from the host.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn set_origin(&mut self, origin: Origin) {
        self.inner.origin = origin;
    }
}

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

#[cfg(target_arch = "wasm32")]
mod imp {
    use std::mem::ManuallyDrop;

    use crate::bindings::bridge::plugin::types::{self, AmqpProperties, AmqpTarget, KafkaTarget, Origin};

    /// A handle to a host-owned message: borrowed for the call, or owned (created by the guest).
    #[derive(Debug)]
    pub(super) enum Inner {
        Borrowed(ManuallyDrop<types::Message>),
        Owned(types::Message),
    }

    impl Inner {
        pub(super) fn new() -> Self {
            Inner::Owned(types::Message::new())
        }

        /// Wraps a borrowed handle without taking ownership of it.
        pub(crate) fn borrowed(msg: &types::Message) -> Self {
            // SAFETY: the handle stays valid for the call; `ManuallyDrop` keeps us from
            // dropping a handle we do not own.
            Inner::Borrowed(ManuallyDrop::new(unsafe { types::Message::from_handle(msg.handle()) }))
        }

        /// The owned resource to hand back to the host.
        pub(crate) fn into_owned(self) -> types::Message {
            match self {
                Inner::Owned(m) => m,
                Inner::Borrowed(m) => m.duplicate(),
            }
        }

        fn r(&self) -> &types::Message {
            match self {
                Inner::Borrowed(m) => m,
                Inner::Owned(m) => m,
            }
        }

        pub(super) fn duplicate(&self) -> Self {
            Inner::Owned(self.r().duplicate())
        }
        pub(super) fn key(&self) -> Option<Vec<u8>> {
            self.r().key()
        }
        pub(super) fn set_key(&mut self, key: Option<&[u8]>) {
            self.r().set_key(key)
        }
        pub(super) fn payload(&self) -> Option<Vec<u8>> {
            self.r().payload()
        }
        pub(super) fn payload_len(&self) -> u64 {
            self.r().payload_len()
        }
        pub(super) fn set_payload(&mut self, payload: Option<&[u8]>) {
            self.r().set_payload(payload)
        }
        pub(super) fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.r().header(name)
        }
        pub(super) fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            self.r().header_all(name)
        }
        pub(super) fn headers(&self) -> Vec<(String, Vec<u8>)> {
            self.r().headers()
        }
        pub(super) fn header_names(&self) -> Vec<String> {
            self.r().header_names()
        }
        pub(super) fn set_header(&mut self, name: &str, value: &[u8]) {
            self.r().set_header(name, value)
        }
        pub(super) fn add_header(&mut self, name: &str, value: &[u8]) {
            self.r().add_header(name, value)
        }
        pub(super) fn remove_header(&mut self, name: &str) -> u32 {
            self.r().remove_header(name)
        }
        pub(super) fn set_headers(&mut self, headers: &[(String, Vec<u8>)]) {
            self.r().set_headers(headers)
        }
        pub(super) fn timestamp(&self) -> Option<i64> {
            self.r().timestamp()
        }
        pub(super) fn set_timestamp(&mut self, timestamp: Option<i64>) {
            self.r().set_timestamp(timestamp)
        }
        pub(super) fn origin(&self) -> Origin {
            self.r().origin()
        }
        pub(super) fn kafka_target(&self) -> KafkaTarget {
            self.r().kafka_target()
        }
        pub(super) fn set_kafka_target(&mut self, target: &KafkaTarget) {
            self.r().set_kafka_target(target)
        }
        pub(super) fn amqp_target(&self) -> AmqpTarget {
            self.r().amqp_target()
        }
        pub(super) fn set_amqp_target(&mut self, target: &AmqpTarget) {
            self.r().set_amqp_target(target)
        }
        pub(super) fn amqp_properties(&self) -> AmqpProperties {
            self.r().amqp_properties()
        }
        pub(super) fn set_amqp_properties(&mut self, properties: &AmqpProperties) {
            self.r().set_amqp_properties(properties)
        }
    }

    impl super::Message {
        pub(crate) fn from_borrowed(msg: &types::Message) -> Self {
            super::Message { inner: Inner::borrowed(msg) }
        }

        pub(crate) fn into_owned(self) -> types::Message {
            self.inner.into_owned()
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use crate::{AmqpProperties, AmqpTarget, KafkaTarget, Origin};

    /// An in-memory message for native unit tests.
    #[derive(Debug, Clone)]
    pub(super) struct Inner {
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        timestamp: Option<i64>,
        pub(super) origin: Origin,
        kafka_target: KafkaTarget,
        amqp_target: AmqpTarget,
        amqp_properties: AmqpProperties,
    }

    impl Inner {
        pub(super) fn new() -> Self {
            Inner {
                key: None,
                payload: None,
                headers: Vec::new(),
                timestamp: None,
                origin: Origin::None,
                kafka_target: KafkaTarget { topic: None, partition: None },
                amqp_target: AmqpTarget { exchange: None, routing_key: None },
                amqp_properties: AmqpProperties::default(),
            }
        }
        pub(super) fn duplicate(&self) -> Self {
            self.clone()
        }
        pub(super) fn key(&self) -> Option<Vec<u8>> {
            self.key.clone()
        }
        pub(super) fn set_key(&mut self, key: Option<&[u8]>) {
            self.key = key.map(<[u8]>::to_vec);
        }
        pub(super) fn payload(&self) -> Option<Vec<u8>> {
            self.payload.clone()
        }
        pub(super) fn payload_len(&self) -> u64 {
            self.payload.as_ref().map_or(0, |p| p.len() as u64)
        }
        pub(super) fn set_payload(&mut self, payload: Option<&[u8]>) {
            self.payload = payload.map(<[u8]>::to_vec);
        }
        pub(super) fn header(&self, name: &str) -> Option<Vec<u8>> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
        }
        pub(super) fn header_all(&self, name: &str) -> Vec<Vec<u8>> {
            self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
        }
        pub(super) fn headers(&self) -> Vec<(String, Vec<u8>)> {
            self.headers.clone()
        }
        pub(super) fn header_names(&self) -> Vec<String> {
            self.headers.iter().map(|(n, _)| n.clone()).collect()
        }
        pub(super) fn set_header(&mut self, name: &str, value: &[u8]) {
            match self.headers.iter().position(|(n, _)| n == name) {
                Some(first) => {
                    self.headers[first].1 = value.to_vec();
                    let mut index = 0;
                    self.headers.retain(|(n, _)| {
                        index += 1;
                        index - 1 == first || n != name
                    });
                }
                None => self.headers.push((name.to_string(), value.to_vec())),
            }
        }
        pub(super) fn add_header(&mut self, name: &str, value: &[u8]) {
            self.headers.push((name.to_string(), value.to_vec()));
        }
        pub(super) fn remove_header(&mut self, name: &str) -> u32 {
            let before = self.headers.len();
            self.headers.retain(|(n, _)| n != name);
            (before - self.headers.len()) as u32
        }
        pub(super) fn set_headers(&mut self, headers: &[(String, Vec<u8>)]) {
            self.headers = headers.to_vec();
        }
        pub(super) fn timestamp(&self) -> Option<i64> {
            self.timestamp
        }
        pub(super) fn set_timestamp(&mut self, timestamp: Option<i64>) {
            self.timestamp = timestamp;
        }
        pub(super) fn origin(&self) -> Origin {
            self.origin.clone()
        }
        pub(super) fn kafka_target(&self) -> KafkaTarget {
            self.kafka_target.clone()
        }
        pub(super) fn set_kafka_target(&mut self, target: &KafkaTarget) {
            self.kafka_target = target.clone();
        }
        pub(super) fn amqp_target(&self) -> AmqpTarget {
            self.amqp_target.clone()
        }
        pub(super) fn set_amqp_target(&mut self, target: &AmqpTarget) {
            self.amqp_target = target.clone();
        }
        pub(super) fn amqp_properties(&self) -> AmqpProperties {
            self.amqp_properties.clone()
        }
        pub(super) fn set_amqp_properties(&mut self, properties: &AmqpProperties) {
            self.amqp_properties = properties.clone();
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::Message;

    #[test]
    fn header_helpers() {
        let mut m = Message::new();
        m.add_header("a", "1");
        m.add_header("b", "2");
        m.add_header("a", "3");
        assert_eq!(m.header_all("a"), vec![b"1".to_vec(), b"3".to_vec()]);
        m.set_header("a", "9");
        assert_eq!(m.header_names(), vec!["a", "b"]);
        assert_eq!(m.header_str("a").as_deref(), Some("9"));
        assert_eq!(m.remove_header("b"), 1);
        assert_eq!(m.headers(), vec![("a".to_string(), b"9".to_vec())]);
    }
}
