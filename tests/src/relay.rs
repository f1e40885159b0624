//! Plain relays with the bridge's delivery guarantees and nothing else — no plugins, no
//! provenance, no dead-letter policy — written to be as fast as their clients allow: batched
//! fetches, up to [`IN_FLIGHT`] unconfirmed sends, offsets stored only after the target
//! confirmed (and every message before it), RabbitMQ deliveries acked with `multiple` only
//! after Kafka's delivery report. They are the benchmark's ceiling for each direction on this
//! machine. Each runs until `stop` is set and returns how many messages it relayed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::brokers;

/// Unconfirmed sends a relay keeps in flight.
pub const IN_FLIGHT: usize = 1000;

/// Deliveries acknowledged at once (with `multiple`).
const ACK_EVERY: usize = 100;

fn consumer(bootstrap: &str, topic: &str, group: &str, reset: &str) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("relay consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("relay producer")
}

/// The next message, or `None` after 100 ms without one.
async fn next<S: futures_util::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(Duration::from_millis(100), stream.next())
        .await
        .ok()
        .flatten()
}

/// Kafka → RabbitMQ: headers as AMQP long strings, persistent, `mandatory`, with confirms; an
/// offset is stored once its message and every one before it was confirmed.
pub async fn kafka_to_rabbitmq(
    bootstrap: String,
    topic: String,
    reset: &'static str,
    conn: Connection,
    exchange: String,
    routing_key: String,
    stop: Arc<AtomicBool>,
) -> usize {
    let consumer = consumer(&bootstrap, &topic, &brokers::unique("relay"), reset);
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut stream = consumer.stream();
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    let mut relayed = 0;
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        let received = if pending.len() < IN_FLIGHT && !stop.load(Ordering::Relaxed) {
            next(&mut stream).await
        } else {
            None
        };
        let idle = received.is_none();
        if let Some(Ok(m)) = received {
            let mut table = FieldTable::default();
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    table.insert(
                        h.key.into(),
                        AMQPValue::LongString(LongString::from(h.value.unwrap_or_default())),
                    );
                }
            }
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(table);
            let confirm = ch
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    m.payload().unwrap_or_default(),
                    props,
                )
                .await
                .expect("publish");
            pending.push_back((confirm, m.partition(), m.offset()));
        }
        while pending.len() >= IN_FLIGHT || (idle && !pending.is_empty()) {
            let (confirm, partition, offset) = pending.pop_front().expect("pending");
            assert!(confirm.await.expect("confirm").is_ack(), "nacked");
            consumer
                .store_offset(&topic, partition, offset)
                .expect("store offset");
            relayed += 1;
        }
    }
    relayed
}

/// RabbitMQ → Kafka: headers copied, idempotent producer with `acks=all`; a delivery is acked
/// (with `multiple`) once its delivery report and every one before it arrived.
pub async fn rabbitmq_to_kafka(
    conn: Connection,
    queue: String,
    bootstrap: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> usize {
    // The bridge's default prefetch; the window stays below it by an ack batch, or the queue
    // would stop delivering before the next ack.
    let (_ch, mut consumer) = brokers::queue_consumer(&conn, &queue, 1000, false).await;
    let window = 1000 - ACK_EVERY;
    let producer = producer(&bootstrap);
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    let (mut relayed, mut unacked) = (0, 0);
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        let received = if pending.len() < window && !stop.load(Ordering::Relaxed) {
            next(&mut consumer).await
        } else {
            None
        };
        let idle = received.is_none();
        if let Some(Ok(d)) = received {
            let headers = d
                .properties
                .headers()
                .as_ref()
                .map(bridge_host::amqp::from_field_table)
                .unwrap_or_default()
                .iter()
                .fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v),
                    })
                });
            let record = FutureRecord::<[u8], [u8]>::to(&topic)
                .payload(&d.data)
                .headers(headers);
            let delivery = brokers::send(&producer, record).await;
            pending.push_back((delivery, d.acker));
        }
        while pending.len() >= window || (idle && !pending.is_empty()) {
            let (delivery, acker) = pending.pop_front().expect("pending");
            delivery.await.expect("delivery").expect("delivered");
            relayed += 1;
            unacked += 1;
            if unacked >= ACK_EVERY || pending.is_empty() {
                unacked = 0;
                acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
        }
    }
    relayed
}

/// Kafka → Kafka: key, headers and timestamp kept, idempotent producer with `acks=all`; an
/// offset is stored once its message and every one before it was delivered.
pub async fn kafka_to_kafka(
    bootstrap: String,
    topic: String,
    target: String,
    stop: Arc<AtomicBool>,
) -> usize {
    let consumer = consumer(&bootstrap, &topic, &brokers::unique("relay"), "earliest");
    let producer = producer(&bootstrap);
    let mut stream = consumer.stream();
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    let mut relayed = 0;
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        let received = if pending.len() < IN_FLIGHT && !stop.load(Ordering::Relaxed) {
            next(&mut stream).await
        } else {
            None
        };
        let idle = received.is_none();
        if let Some(Ok(m)) = received {
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&target).payload(m.payload().unwrap_or_default());
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            if let Some(h) = m.headers() {
                record = record.headers(h.detach());
            }
            if let Some(ts) = m.timestamp().to_millis() {
                record = record.timestamp(ts);
            }
            let delivery = brokers::send(&producer, record).await;
            pending.push_back((delivery, m.partition(), m.offset()));
        }
        while pending.len() >= IN_FLIGHT || (idle && !pending.is_empty()) {
            let (delivery, partition, offset) = pending.pop_front().expect("pending");
            delivery.await.expect("delivery").expect("delivered");
            consumer
                .store_offset(&topic, partition, offset)
                .expect("store offset");
            relayed += 1;
        }
    }
    relayed
}

/// Kafka → RabbitMQ stream, over the stream protocol: headers as application properties; a
/// record's offset is stored once the broker confirmed it and every one before it.
pub async fn kafka_to_stream(
    bootstrap: String,
    topic: String,
    stream_name: String,
    stop: Arc<AtomicBool>,
) -> usize {
    use rabbitmq_stream_client::Environment;
    use rabbitmq_stream_client::types::Message as StreamMessage;
    let consumer = consumer(&bootstrap, &topic, &brokers::unique("relay"), "earliest");
    let environment = Environment::builder()
        .host("127.0.0.1")
        .port(5552)
        .build()
        .await
        .expect("stream environment");
    let producer = environment
        .producer()
        .build(&stream_name)
        .await
        .expect("stream producer");
    let mut stream = consumer.stream();
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    let mut relayed = 0;
    while !stop.load(Ordering::Relaxed) || !pending.is_empty() {
        let received = if pending.len() < IN_FLIGHT && !stop.load(Ordering::Relaxed) {
            next(&mut stream).await
        } else {
            None
        };
        let idle = received.is_none();
        if let Some(Ok(m)) = received {
            let mut properties = StreamMessage::builder().application_properties();
            if let Some(h) = m.headers() {
                for h in h.iter() {
                    properties = properties.insert(
                        h.key,
                        String::from_utf8_lossy(h.value.unwrap_or_default()).as_ref(),
                    );
                }
            }
            let message = properties
                .message_builder()
                .body(m.payload().unwrap_or_default())
                .build();
            let (tx, rx) = tokio::sync::oneshot::channel();
            producer
                .send(message, move |status| {
                    let _ = tx.send(status.map(|s| s.confirmed()).unwrap_or(false));
                    std::future::ready(())
                })
                .await
                .expect("publish to the stream");
            pending.push_back((rx, m.partition(), m.offset()));
        }
        while pending.len() >= IN_FLIGHT || (idle && !pending.is_empty()) {
            let (confirm, partition, offset) = pending.pop_front().expect("pending");
            assert!(confirm.await.expect("confirm"), "not confirmed");
            consumer
                .store_offset(&topic, partition, offset)
                .expect("store offset");
            relayed += 1;
        }
    }
    let _ = producer.close().await;
    relayed
}
