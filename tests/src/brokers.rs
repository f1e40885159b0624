//! Real brokers for end-to-end tests: the Kafka-compatible broker and RabbitMQ started by
//! `scripts/brokers.sh`, with helpers to create uniquely named topics, queues and exchanges,
//! and to produce and consume test messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// The Kafka bootstrap servers (`BRIDGE_TEST_KAFKA`, default `127.0.0.1:9092`).
pub fn kafka_bootstrap() -> String {
    std::env::var("BRIDGE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_string())
}

/// The RabbitMQ URL (`BRIDGE_TEST_AMQP`, default guest on 127.0.0.1:5672, vhost `/`).
pub fn amqp_url() -> String {
    std::env::var("BRIDGE_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// `bridge.toml` sections for the test brokers: Kafka cluster `main`, RabbitMQ connection `local`.
pub fn brokers_toml() -> String {
    brokers_toml_with(&amqp_url())
}

/// [`brokers_toml`] with RabbitMQ connection `local` at `amqp_url`.
pub fn brokers_toml_with(amqp_url: &str) -> String {
    format!(
        "[kafka.main]\nbootstrap_servers = \"{}\"\n\n[rabbitmq.local]\nurl = \"{amqp_url}\"\n",
        kafka_bootstrap(),
    )
}

/// [`brokers_toml`] with librdkafka `properties` for Kafka cluster `main`.
pub fn brokers_toml_with_kafka_properties(properties: &[(&str, &str)]) -> String {
    let mut toml = format!("{}\n[kafka.main.properties]\n", brokers_toml());
    for (key, value) in properties {
        toml.push_str(&format!("{key:?} = {value:?}\n"));
    }
    toml
}

/// A bridge config moving both ways between Kafka at `bootstrap` and the test RabbitMQ:
/// mapping `to-rabbitmq` (topic `k2r_topic` → `exchange`, routing key `rk`, its own consumer
/// group) and `to-kafka` (queue `r2k_queue`, prefetch 200 → topic `r2k_topic`); `extra` is
/// appended (a `[bridge]` table, say).
pub fn two_way_toml(
    bootstrap: &str,
    k2r_topic: &str,
    exchange: &str,
    r2k_queue: &str,
    r2k_topic: &str,
    extra: &str,
) -> String {
    format!(
        r#"
[kafka.main]
bootstrap_servers = "{bootstrap}"
[rabbitmq.local]
url = "{}"

[[mapping]]
name = "to-rabbitmq"
source = {{ kafka = "main", topics = ["{k2r_topic}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}", routing_key = "rk" }}

[[mapping]]
name = "to-kafka"
source = {{ rabbitmq = "local", queue = "{r2k_queue}", prefetch = 200 }}
target = {{ kafka = "main", topic = "{r2k_topic}" }}
{extra}
"#,
        amqp_url(),
        unique("two-way")
    )
}

/// A name unique to this test run: `prefix-<pid>-<counter>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A record timestamp `ago_ms` before now. Tests that keep timestamps use recent ones: the
/// broker's retention deletes a segment whose newest record is older than 7 days, within five
/// minutes, and the records would be gone before the bridge reads them.
pub fn recent_timestamp(ago_ms: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64;
    now - ago_ms
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&kafka_bootstrap(), name, partitions).await;
}

/// [`create_topic`] on another cluster.
pub async fn create_topic_on(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_replicated(bootstrap, name, partitions, 1).await;
}

/// Creates a topic with `partitions` partitions of `replicas` replicas each.
pub async fn create_topic_replicated(bootstrap: &str, name: &str, partitions: i32, replicas: i32) {
    create_topics_on(bootstrap, &[name], partitions, replicas).await;
}

/// Creates topics of `partitions` partitions each on the shared broker, in one request.
pub async fn create_topics(names: &[&str], partitions: i32) {
    create_topics_on(&kafka_bootstrap(), names, partitions, 1).await;
}

async fn create_topics_on(bootstrap: &str, names: &[&str], partitions: i32, replicas: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replicas)))
        .collect();
    let res = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics request");
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
    // A new topic takes a moment to show in the broker's metadata, where the bridge checks
    // its topics at startup.
    let (bootstrap, names) = (
        bootstrap.to_string(),
        names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || wait_topics_listed(&bootstrap, &names))
        .await
        .expect("metadata wait");
}

/// Waits (up to 30 s) until the broker's metadata lists every topic of `names` with a leader
/// for each partition.
fn wait_topics_listed(bootstrap: &str, names: &[String]) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = client
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|md| {
                let ready: std::collections::HashSet<&str> = md
                    .topics()
                    .iter()
                    .filter(|t| {
                        !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0)
                    })
                    .map(|t| t.name())
                    .collect();
                names.iter().all(|n| ready.contains(n.as_str()))
            })
            .unwrap_or(false);
        if listed {
            return;
        }
        assert!(Instant::now() < deadline, "topics not listed after 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The broker id leading each partition of `topic`, by partition.
pub fn partition_leaders(bootstrap: &str, topic: &str) -> Vec<i32> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("client");
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut leaders: Vec<(i32, i32)> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
        .collect();
    leaders.sort();
    leaders.into_iter().map(|(_, l)| l).collect()
}

/// The broker coordinating consumer group `group`: the leader of its partition of
/// `__consumer_offsets` (Java's `String.hashCode` of the id, modulo the topic's partitions).
pub fn group_coordinator(bootstrap: &str, group: &str) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let leaders = partition_leaders(bootstrap, "__consumer_offsets");
    let partition = if hash == i32::MIN { 0 } else { hash.abs() } as usize % leaders.len();
    leaders[partition]
}

/// The `i` of a payload made by [`Record::kind`] (`usize::MAX` for any other payload).
pub fn kind_index(payload: &[u8]) -> usize {
    let text = String::from_utf8_lossy(payload);
    text.rsplit_once("\"i\":")
        .and_then(|(_, i)| i.trim_end_matches('}').parse().ok())
        .unwrap_or(usize::MAX)
}

/// A test record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub payload: Option<Vec<u8>>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Partition (consumed records only).
    pub partition: i32,
    /// Timestamp in ms, if any.
    pub timestamp: Option<i64>,
}

impl Record {
    /// Record `i` of a test: key `k{i}`, payload `{"kind":KIND,"i":I}` (a plugin can route on
    /// the kind; [`kind_index`] reads `i` back), bound for `partition`.
    pub fn kind(kind: &str, i: usize, partition: i32) -> Self {
        Record {
            key: Some(format!("k{i}").into_bytes()),
            payload: Some(format!(r#"{{"kind":"{kind}","i":{i}}}"#).into_bytes()),
            headers: vec![],
            partition,
            timestamp: None,
        }
    }

    /// The first header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Hands `record` to `producer`, waiting while its queue is full; the delivery report comes
/// through the returned future.
pub async fn send<K, P>(
    producer: &FutureProducer,
    mut record: FutureRecord<'_, K, P>,
) -> rdkafka::producer::DeliveryFuture
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((_, back)) => {
                record = back;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// An idempotent producer.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces records (to `partition` if given) and waits for every delivery report.
pub async fn produce(topic: &str, records: &[Record], partition: Option<i32>) {
    produce_to(&kafka_bootstrap(), topic, records, partition).await;
}

/// [`produce`] to another cluster.
pub async fn produce_to(bootstrap: &str, topic: &str, records: &[Record], partition: Option<i32>) {
    let producer = producer(bootstrap);
    produce_with(&producer, topic, records, partition).await;
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// [`produce`] through `producer`, waiting for every delivery report.
pub async fn produce_with(
    producer: &FutureProducer,
    topic: &str,
    records: &[Record],
    partition: Option<i32>,
) {
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let headers = r.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
            h.insert(rdkafka::message::Header {
                key: k,
                value: Some(v),
            })
        });
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(p) = &r.payload {
            rec = rec.payload(p.as_slice());
        }
        if let Some(p) = partition {
            rec = rec.partition(p);
        }
        if let Some(ts) = r.timestamp {
            rec = rec.timestamp(ts);
        }
        pending.push(send(producer, rec).await);
    }
    for p in pending {
        p.await.expect("delivery").expect("delivered");
    }
}

/// A payload and headers whose names are any bytes.
pub type RawRecord = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Produces records to `partition` whose header names are raw bytes (not UTF-8, a NUL
/// inside, …), which rdkafka's typed API cannot write: through librdkafka's
/// `rd_kafka_produceva`, in order, then waits until all are delivered.
pub fn produce_raw_headers(topic: &str, partition: i32, records: &[RawRecord]) {
    use rdkafka::bindings as rd;
    use rdkafka::producer::BaseProducer;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let topic = std::ffi::CString::new(topic).expect("topic name");
    for (payload, headers) in records {
        let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
        // SAFETY: every pointer handed to librdkafka outlives the call (the payload is not
        // copied: it lives until the flush below); on success the header list belongs to the
        // message, on failure it is freed here.
        unsafe {
            let hdrs = rd::rd_kafka_headers_new(headers.len());
            for (name, value) in headers {
                rd::rd_kafka_header_add(
                    hdrs,
                    name.as_ptr().cast(),
                    name.len() as isize,
                    value.as_ptr().cast(),
                    value.len() as isize,
                );
            }
            let vus = [
                vu(
                    rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
                    rd::rd_kafka_vu_s__bindgen_ty_1 {
                        cstr: topic.as_ptr(),
                    },
                ),
                vu(
                    rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION,
                    rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition },
                ),
                vu(
                    rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
                    rd::rd_kafka_vu_s__bindgen_ty_1 {
                        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                            ptr: payload.as_ptr().cast_mut().cast(),
                            size: payload.len(),
                        },
                    },
                ),
                vu(
                    rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADERS,
                    rd::rd_kafka_vu_s__bindgen_ty_1 { headers: hdrs },
                ),
            ];
            let error =
                rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len());
            if !error.is_null() {
                let text = std::ffi::CStr::from_ptr(rd::rd_kafka_error_string(error))
                    .to_string_lossy()
                    .into_owned();
                rd::rd_kafka_error_destroy(error);
                rd::rd_kafka_headers_destroy(hdrs);
                panic!("producing a record with raw header names: {text}");
            }
        }
        // In order: one record at a time.
        producer.flush(Duration::from_secs(10)).expect("flush");
    }
}

impl Record {
    /// A record without a key, with `payload` and one header.
    pub fn with_header(payload: &str, name: &str, value: &str) -> Self {
        Record {
            key: None,
            payload: Some(payload.as_bytes().to_vec()),
            headers: vec![(name.to_string(), value.as_bytes().to_vec())],
            partition: 0,
            timestamp: None,
        }
    }
}

/// The librdkafka property that makes a produce to a missing topic fail after 2 s instead of
/// librdkafka's 30 s, for [`brokers_toml_with_kafka_properties`].
pub const MISSING_TOPIC_FAILS_FAST: (&str, &str) = ("topic.metadata.propagation.max.ms", "2000");

/// `n` records keyed `k{i}` with payload `{prefix}-{i:07}-`, padded with `x` to `size` bytes.
pub fn numbered_records(prefix: &str, n: usize, size: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut payload = format!("{prefix}-{i:07}-").into_bytes();
            payload.resize(size.max(payload.len()), b'x');
            Record {
                key: Some(format!("k{i}").into_bytes()),
                payload: Some(payload),
                headers: vec![],
                partition: 0,
                timestamp: None,
            }
        })
        .collect()
}

/// Produces `records` to `topic` on `bootstrap` in the background, 100 every 100 ms (about
/// 1 000 messages/s), so that a run is still under way when a test disturbs it.
pub fn feed_topic(
    bootstrap: &str,
    topic: &str,
    records: Vec<Record>,
) -> tokio::task::JoinHandle<()> {
    let (producer, topic) = (producer(bootstrap), topic.to_string());
    tokio::spawn(async move {
        for chunk in records.chunks(100) {
            produce_with(&producer, &topic, chunk, None).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Produces `n` records to `topic` in the background at about 1 000 messages/s (100 every
/// 100 ms) through one idempotent producer: record `i` goes to partition `i % partitions`
/// with payload `{prefix}-{i:07}`, so a payload tells its partition.
pub fn feed_partitions(
    bootstrap: &str,
    topic: &str,
    prefix: &str,
    n: usize,
    partitions: i32,
) -> tokio::task::JoinHandle<()> {
    let (producer, topic, prefix) = (producer(bootstrap), topic.to_string(), prefix.to_string());
    tokio::spawn(async move {
        for start in (0..n).step_by(100) {
            let mut pending = Vec::with_capacity(100);
            for i in start..(start + 100).min(n) {
                let payload = format!("{prefix}-{i:07}");
                let key = format!("k{i}");
                let rec = FutureRecord::<str, str>::to(&topic)
                    .key(&key)
                    .payload(&payload)
                    .partition(i as i32 % partitions);
                pending.push(send(&producer, rec).await);
            }
            for p in pending {
                p.await.expect("delivery").expect("delivered");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Publishes `messages` (persistent) to `queue` in the background at about 1 000 messages/s
/// (100 every 100 ms), with confirms.
pub fn feed_queue(url: &str, queue: &str, messages: Vec<Vec<u8>>) -> tokio::task::JoinHandle<()> {
    let (url, queue) = (url.to_string(), queue.to_string());
    tokio::spawn(async move {
        let conn = amqp_to(&url).await;
        let persistent = BasicProperties::default().with_delivery_mode(2);
        let messages: Vec<_> = messages
            .into_iter()
            .map(|m| (m, persistent.clone()))
            .collect();
        for chunk in messages.chunks(100) {
            publish_to_queue(&conn, &queue, chunk).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Reads a topic from the beginning until `expected` records arrived or `idle` passed without
/// any new one.
pub fn consume_topic(topic: &str, expected: usize, idle: Duration) -> Vec<Record> {
    consume_topic_from(&kafka_bootstrap(), topic, expected, idle)
}

/// [`consume_topic`] from an async test, on a blocking thread.
pub async fn read_topic(topic: &str, expected: usize, idle: Duration) -> Vec<Record> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || consume_topic(&topic, expected, idle))
        .await
        .expect("the topic reader")
}

/// [`consume_topic`] from another cluster.
pub fn consume_topic_from(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    idle: Duration,
) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < expected && last.elapsed() < idle {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            // Transport errors are transient (a broker of the cluster is down): librdkafka
            // carries on with the others.
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("test reader: {e}");
                    continue;
                }
            };
            out.push(Record {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
                partition: m.partition(),
                timestamp: m.timestamp().to_millis(),
            });
            last = Instant::now();
        }
    }
    out
}

/// A RabbitMQ connection.
pub async fn amqp() -> Connection {
    amqp_to(&amqp_url()).await
}

/// A RabbitMQ connection to `url`.
pub async fn amqp_to(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("RabbitMQ is reachable (scripts/brokers.sh start)")
}

/// Declares a durable direct exchange and a durable queue bound to it with `routing_key`.
pub async fn declare_bound_queue(
    conn: &Connection,
    exchange: &str,
    queue: &str,
    routing_key: &str,
) {
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    declare_queue(conn, queue).await;
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        routing_key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
}

/// Declares a durable queue.
pub async fn declare_queue(conn: &Connection, queue: &str) {
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue");
}

/// A consumed AMQP message.
#[derive(Debug, Clone)]
pub struct AmqpRecord {
    /// Payload.
    pub payload: Vec<u8>,
    /// Properties (headers included).
    pub properties: BasicProperties,
    /// Routing key it was published with.
    pub routing_key: String,
}

impl AmqpRecord {
    /// Header `name` as text (long strings and arrays of them).
    pub fn header(&self, name: &str) -> Option<String> {
        let headers = self.properties.headers().as_ref()?;
        bridge_host::amqp::from_field_table(headers)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
    }
}

/// A consumer of `queue` on a new channel with `prefetch` (auto-ack with `no_ack`).
pub async fn queue_consumer(
    conn: &Connection,
    queue: &str,
    prefetch: u16,
    no_ack: bool,
) -> (lapin::Channel, lapin::Consumer) {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let options = BasicConsumeOptions {
        no_ack,
        ..BasicConsumeOptions::default()
    };
    let consumer = ch
        .basic_consume(
            queue.into(),
            unique("reader").into(),
            options,
            FieldTable::default(),
        )
        .await
        .expect("consume");
    (ch, consumer)
}

/// Consumes (and acks) from `queue` until `expected` messages or `idle` without one.
pub async fn consume_queue(
    conn: &Connection,
    queue: &str,
    expected: usize,
    idle: Duration,
) -> Vec<AmqpRecord> {
    let (ch, mut consumer) = queue_consumer(conn, queue, 1000, false).await;
    let mut out = Vec::new();
    while out.len() < expected {
        match tokio::time::timeout(idle, consumer.next()).await {
            Ok(Some(Ok(d))) => {
                d.acker.ack(BasicAckOptions::default()).await.expect("ack");
                out.push(AmqpRecord {
                    payload: d.data,
                    properties: d.properties,
                    routing_key: d.routing_key.to_string(),
                });
            }
            Ok(Some(Err(e))) => panic!("consuming {queue} failed after {}: {e}", out.len()),
            Ok(None) => panic!("the consumer of {queue} was cancelled after {}", out.len()),
            Err(_) => break,
        }
    }
    let _ = ch.close(200, "done".into()).await;
    out
}

/// Declares RabbitMQ stream `stream` (a durable queue of type `stream`) over AMQP.
pub async fn declare_stream(conn: &Connection, stream: &str) {
    let ch = conn.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("stream".into()),
    );
    ch.queue_declare(
        stream.into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .expect("declare the stream");
    let _ = ch.close(200, "done".into()).await;
}

/// How many messages a RabbitMQ stream holds, counted as a reader over AMQP receives them (the
/// count RabbitMQ reports for a stream lags by seconds).
pub struct StreamCounter {
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StreamCounter {
    /// Starts counting `stream` from its first message.
    pub async fn new(stream: &str) -> Self {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (c, stream) = (Arc::clone(&count), stream.to_string());
        let conn = amqp().await;
        let mut consumer = stream_reader(&conn, &stream, 2000).await;
        let task = tokio::spawn(async move {
            let _conn = conn;
            let mut n = 0;
            while let Some(Ok(d)) = consumer.next().await {
                n += 1;
                if n % 500 == 0 {
                    let _ = d.acker.ack(BasicAckOptions { multiple: true }).await;
                }
                c.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        });
        StreamCounter { count, task }
    }

    /// The last count.
    pub fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for StreamCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A consumer of RabbitMQ stream `stream` from its first message, over AMQP on `conn`, with
/// `prefetch` (a stream consumer must acknowledge).
async fn stream_reader(conn: &Connection, stream: &str, prefetch: u16) -> lapin::Consumer {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        lapin::types::AMQPValue::LongString("first".into()),
    );
    ch.basic_consume(
        stream.into(),
        unique("stream-reader").into(),
        BasicConsumeOptions::default(),
        args,
    )
    .await
    .expect("consume the stream")
}

/// Every message of RabbitMQ stream `stream` from its first, read over AMQP 0-9-1 (a stream's
/// application properties are the messages' headers), until `idle` passes without one.
pub async fn read_stream(stream: &str, idle: Duration) -> Vec<AmqpRecord> {
    let conn = amqp().await;
    let mut consumer = stream_reader(&conn, stream, 1000).await;
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, consumer.next()).await {
            Ok(Some(Ok(d))) => {
                d.acker.ack(BasicAckOptions::default()).await.expect("ack");
                out.push(AmqpRecord {
                    payload: d.data,
                    properties: d.properties,
                    routing_key: d.routing_key.to_string(),
                });
            }
            Ok(Some(Err(e))) => panic!("reading stream {stream} failed after {}: {e}", out.len()),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Messages ready in `queue` (not counting those delivered and not yet acked).
pub async fn queue_depth(conn: &Connection, queue: &str) -> u32 {
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let depth = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .expect("queue exists")
        .message_count();
    let _ = ch.close(200, "done".into()).await;
    depth
}

/// What arrived on a queue, in order: arrival time and payload.
pub type Arrivals = std::sync::Arc<std::sync::Mutex<Vec<(Instant, Vec<u8>)>>>;

/// Consumes `queue` (auto-ack) in the background, recording every arrival.
pub async fn collect_queue(queue: &str) -> (Arrivals, tokio::task::JoinHandle<()>) {
    collect_queue_on(&amqp_url(), queue).await
}

/// [`collect_queue`] on another broker.
pub async fn collect_queue_on(url: &str, queue: &str) -> (Arrivals, tokio::task::JoinHandle<()>) {
    let conn = amqp_to(url).await;
    let (_ch, mut consumer) = queue_consumer(&conn, queue, 2000, true).await;
    let seen = Arrivals::default();
    let sink = std::sync::Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let _conn = conn;
        while let Some(Ok(d)) = consumer.next().await {
            sink.lock().expect("lock").push((Instant::now(), d.data));
        }
    });
    (seen, task)
}

/// Publishes messages to the default exchange, routed to `queue`, with confirms.
pub async fn publish_to_queue(
    conn: &Connection,
    queue: &str,
    messages: &[(Vec<u8>, BasicProperties)],
) {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut pending = Vec::new();
    for (payload, props) in messages {
        pending.push(
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                payload,
                props.clone(),
            )
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(p.await.expect("confirm").is_ack());
    }
}

/// Waits until `topic` holds at least `n` records (high watermarks over `partitions`,
/// duplicates included) and nothing more arrived for 3 s, or `limit` passed. Returns the count.
pub async fn wait_topic_settled(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    limit: Duration,
) -> i64 {
    let watermarks = watermark_reader(bootstrap);
    let deadline = Instant::now() + limit;
    let (mut last, mut stable_since) = (0, Instant::now());
    loop {
        let written = high_watermarks(&watermarks, topic, partitions);
        if written != last {
            (last, stable_since) = (written, Instant::now());
        }
        let settled = written >= n as i64 && stable_since.elapsed() > Duration::from_secs(3);
        if settled || Instant::now() > deadline {
            return written;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client for reading high watermarks.
pub fn watermark_reader(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer")
}

/// Records written to `topic` (high watermarks over `partitions`, duplicates included).
pub fn high_watermarks(reader: &BaseConsumer, topic: &str, partitions: i32) -> i64 {
    (0..partitions)
        .map(|p| {
            reader
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

/// Waits until `topic` holds at least `n` records (high watermarks over `partitions`,
/// duplicates included) or `limit` passed. Returns the count.
pub async fn wait_topic_count(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    limit: Duration,
) -> i64 {
    let watermarks = watermark_reader(bootstrap);
    let deadline = Instant::now() + limit;
    loop {
        let written = high_watermarks(&watermarks, topic, partitions);
        if written >= n as i64 || Instant::now() > deadline {
            return written;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Loss and duplicates among what arrived on a queue (see [`loss_and_duplicates`]).
pub fn arrivals_loss_and_duplicates(expected: usize, seen: &Arrivals) -> (usize, usize) {
    let seen = seen.lock().expect("lock");
    loss_and_duplicates(expected, seen.iter().map(|(_, p)| p.as_slice()))
}

/// Waits until `n` distinct payloads arrived, or `limit` passed.
pub async fn wait_distinct(seen: &Arrivals, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while arrivals_loss_and_duplicates(n, seen).0 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads all of `topic` on `bootstrap` and counts loss and duplicates of `expected` distinct
/// payloads.
pub async fn topic_loss_and_duplicates(
    bootstrap: &str,
    topic: &str,
    expected: usize,
) -> (usize, usize) {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    let got = tokio::task::spawn_blocking(move || {
        consume_topic_from(&b, &t, usize::MAX, Duration::from_secs(10))
    })
    .await
    .expect("reader");
    loss_and_duplicates(expected, got.iter().filter_map(|r| r.payload.as_deref()))
}

/// Counts messages by payload: how many distinct arrived, and how many duplicates.
pub fn loss_and_duplicates<'a>(
    expected: usize,
    payloads: impl Iterator<Item = &'a [u8]>,
) -> (usize, usize) {
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for p in payloads {
        *seen.entry(p).or_default() += 1;
    }
    let duplicates = seen.values().map(|c| c - 1).sum();
    (expected.saturating_sub(seen.len()), duplicates)
}
