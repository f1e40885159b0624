//! Bridge throughput against raw client rates on the same brokers, and end-to-end latency.
//! Needs the brokers of `scripts/brokers.sh`; run with `scripts/bench.sh`.
//!
//! Prints one JSON object: msgs/s of each raw client and of the bridge in each direction
//! (through the `header-map` + `routing-key` chain), their ratios, Kafka→RabbitMQ latency
//! p50/p99 at half the measured bridge rate with the same figures for the Kafka broker alone,
//! and a plain lapin→rdkafka relay as the machine's RabbitMQ→Kafka ceiling. 1 KiB payloads.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_tests::artifacts;
use bridge_tests::bridge::BridgeProcess;
use bridge_tests::brokers::{self, Record, unique};
use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const N: usize = 30_000;

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!(r#"{{"type":"damage","i":{i},"pad":""#).into_bytes();
    p.resize(1022, b'x');
    p.extend_from_slice(b"\"}");
    p
}

fn records() -> Vec<Record> {
    (0..N)
        .map(|i| Record {
            key: Some(format!("k{}", i % 64).into_bytes()),
            payload: Some(payload(i)),
            headers: vec![("region".into(), b"eu".to_vec())],
            partition: 0,
            timestamp: None,
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64()).round()
}

/// Raw rdkafka consume of `n` messages from `topic` (after the first arrives).
fn raw_kafka_consume(topic: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .set("group.id", unique("raw"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut count = 0;
    let mut start = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while count < n && Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            start.get_or_insert_with(Instant::now);
            count += 1;
        }
    }
    rate(
        count.saturating_sub(1),
        start.map_or(Duration::from_secs(1), |s| s.elapsed()),
    )
}

/// Raw lapin publish with confirms, persistent, 1000 in flight.
async fn raw_amqp_publish(exchange: &str, n: usize) -> f64 {
    let conn = brokers::amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let props = BasicProperties::default().with_delivery_mode(2);
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        let c = ch
            .basic_publish(
                exchange.into(),
                "bench".into(),
                BasicPublishOptions::default(),
                &payload(i),
                props.clone(),
            )
            .await
            .expect("publish");
        pending.push_back(c);
        if pending.len() >= 1000 {
            pending
                .pop_front()
                .expect("pending")
                .await
                .expect("confirm");
        }
    }
    for c in pending {
        c.await.expect("confirm");
    }
    rate(n, start.elapsed())
}

/// Raw lapin consume with manual acks (prefetch 500, `multiple` every 100).
async fn raw_amqp_consume(queue: &str, n: usize) -> f64 {
    let conn = brokers::amqp().await;
    let (_ch, mut consumer) = brokers::queue_consumer(&conn, queue, 500, false).await;
    let mut start = None;
    let mut count = 0;
    while count < n {
        let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await
        else {
            break;
        };
        start.get_or_insert_with(Instant::now);
        count += 1;
        if count % 100 == 0 || count == n {
            d.acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    rate(
        count.saturating_sub(1),
        start.map_or(Duration::from_secs(1), |s| s.elapsed()),
    )
}

async fn wait_count<T>(seen: &Arc<Mutex<Vec<T>>>, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while seen.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces `n` messages to `topic` at `rate` msgs/s, each with its send time in the payload.
async fn paced_produce(topic: &str, rate: f64, n: usize) {
    let producer = brokers::producer(&brokers::kafka_bootstrap());
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let sent_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_micros();
        let mut body = format!(r#"{{"sent_us":{sent_us},"pad":""#).into_bytes();
        body.resize(1022, b'x');
        body.extend_from_slice(b"\"}");
        let rec = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&body)
            .key(b"k");
        let _ = producer.send_result(rec);
    }
    let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10));
}

/// Arrival times and payloads of `n` messages read from the end of `topic` by a plain
/// consumer with the bridge's fetch settings.
fn raw_kafka_arrivals(topic: &str, n: usize) -> Vec<(Instant, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .set("group.id", unique("raw-lat"))
        .set("auto.offset.reset", "latest")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message as _;
            out.push((Instant::now(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

/// Milliseconds from the `sent_us` in each payload to its arrival.
fn latencies_ms(arrivals: &[(Instant, &[u8])]) -> Vec<f64> {
    let now = Instant::now();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as f64;
    arrivals
        .iter()
        .filter_map(|(at, data)| {
            let v: serde_json::Value = serde_json::from_slice(data).ok()?;
            let arrived_us = now_us - (now - *at).as_micros() as f64;
            Some((arrived_us - v["sent_us"].as_f64()?) / 1000.0)
        })
        .collect()
}

struct Percentiles {
    p50: f64,
    p99: f64,
    samples: usize,
}

fn percentiles(mut ms: Vec<f64>) -> Percentiles {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1)))
            .map_or(f64::NAN, |v| (v * 100.0).round() / 100.0)
    };
    Percentiles {
        p50: pct(0.50),
        p99: pct(0.99),
        samples: ms.len(),
    }
}

/// The machine's own ceiling for RabbitMQ → Kafka: a plain lapin consumer feeding a plain
/// rdkafka producer (idempotent, `acks=all`) with the same headers the bridge writes, no
/// plugins, acking each delivery after its delivery report (`multiple` every 100, 500 in
/// flight). Messages per second, after the first.
async fn raw_relay_amqp_to_kafka(queue: &str, topic: &str, n: usize) -> f64 {
    let conn = brokers::amqp().await;
    let (_ch, mut consumer) = brokers::queue_consumer(&conn, queue, 1000, false).await;
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut pending = std::collections::VecDeque::new();
    let mut since_ack = 0;
    let mut start = None;
    let mut count = 0;
    while count < n {
        let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await
        else {
            break;
        };
        start.get_or_insert_with(Instant::now);
        // The five headers the bridge writes here: tansu stores each header as a row of its
        // own, so headers cost the broker more than the payload does.
        let headers = [
            ("rabbitmq_queue", queue),
            ("rabbitmq_exchange", ""),
            ("rabbitmq_routing_key", queue),
            ("x-bridge-hops", "1"),
            ("x-source", queue),
        ]
        .iter()
        .fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
            h.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_bytes()),
            })
        });
        let mut record = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&d.data)
            .headers(headers);
        let delivery = loop {
            match producer.send_result(record) {
                Ok(f) => break f,
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        pending.push_back((delivery, d.acker));
        count += 1;
        while pending.len() >= 500 || (count == n && !pending.is_empty()) {
            let (delivery, acker) = pending.pop_front().expect("pending");
            let _ = delivery.await;
            since_ack += 1;
            if since_ack >= 100 || pending.is_empty() {
                since_ack = 0;
                acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
        }
    }
    rate(
        count.saturating_sub(1),
        start.map_or(Duration::from_secs(1), |s| s.elapsed()),
    )
}

fn chain_config(extra: &str) -> String {
    format!(
        r#"
{}
[plugins.headers]
path = "{}"
config = {{ rename = {{ kafka_key = "message_key" }}, set = {{ x-source = "{{source}}" }} }}
[plugins.route]
path = "{}"
config = {{ routing_key = "{{header:region|eu}}.bench" }}
{extra}"#,
        brokers::brokers_toml(),
        artifacts::HEADER_MAP,
        artifacts::ROUTING_KEY
    )
}

#[tokio::main]
async fn main() {
    let conn = brokers::amqp().await;
    // Kafka → RabbitMQ.
    let topic = unique("bench-k2r");
    brokers::create_topic(&topic, 4).await;
    brokers::produce(&topic, &records(), None).await;
    let t = topic.clone();
    let raw_consume = tokio::task::spawn_blocking(move || raw_kafka_consume(&t, N))
        .await
        .expect("raw consume");
    let exchange = unique("bench-ex");
    let queue = unique("bench-q");
    brokers::declare_bound_queue(&conn, &exchange, &queue, "eu.bench").await;
    let raw_ex = unique("bench-raw-ex");
    let raw_q = unique("bench-raw-q");
    brokers::declare_bound_queue(&conn, &raw_ex, &raw_q, "bench").await;
    let raw_publish = raw_amqp_publish(&raw_ex, N).await;
    let raw_amqp_consume_rate = raw_amqp_consume(&raw_q, N).await;

    let (seen, _collector) = brokers::collect_queue(&queue).await;
    let mut bridge = BridgeProcess::start(&chain_config(&format!(
        r#"[[mapping]]
name = "k2r"
source = {{ kafka = "main", topics = ["{topic}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}" }}
plugins = ["headers", "route"]
"#,
        unique("bench")
    )));
    wait_count(&seen, N, Duration::from_secs(300)).await;
    let k2r = {
        let s = seen.lock().expect("lock");
        match (s.first(), s.last()) {
            (Some(a), Some(b)) if s.len() > 1 => rate(s.len() - 1, b.0 - a.0),
            _ => 0.0,
        }
    };
    bridge.terminate(Duration::from_secs(30));

    // Latency at half the bridge rate: timestamps in the payload, measured on arrival.
    let lat_topic = unique("bench-lat");
    brokers::create_topic(&lat_topic, 4).await;
    let lat_queue = unique("bench-lat-q");
    brokers::declare_bound_queue(&conn, &exchange, &lat_queue, "eu.bench").await;
    let (lat_seen, _lat_collector) = brokers::collect_queue(&lat_queue).await;
    let mut bridge = BridgeProcess::start(&chain_config(&format!(
        r#"[[mapping]]
name = "lat"
source = {{ kafka = "main", topics = ["{lat_topic}"], group = "{}", auto_offset_reset = "latest" }}
target = {{ rabbitmq = "local", exchange = "{exchange}" }}
plugins = ["headers", "route"]
"#,
        unique("bench")
    )));
    tokio::time::sleep(Duration::from_secs(6)).await;
    let half = (k2r / 2.0).max(100.0);
    let lat_n = (half * 8.0) as usize;
    paced_produce(&lat_topic, half, lat_n).await;
    wait_count(&lat_seen, lat_n, Duration::from_secs(60)).await;
    bridge.terminate(Duration::from_secs(30));
    let latencies = {
        let s = lat_seen.lock().expect("lock");
        let arrivals: Vec<(Instant, &[u8])> = s.iter().map(|(at, d)| (*at, d.as_slice())).collect();
        percentiles(latencies_ms(&arrivals))
    };

    // The same rate straight through the Kafka broker: what the bridge's latency is made of
    // before it adds anything.
    let raw_lat_topic = unique("bench-raw-lat");
    brokers::create_topic(&raw_lat_topic, 4).await;
    let t = raw_lat_topic.clone();
    let reader = tokio::task::spawn_blocking(move || raw_kafka_arrivals(&t, lat_n));
    tokio::time::sleep(Duration::from_secs(6)).await;
    paced_produce(&raw_lat_topic, half, lat_n).await;
    let raw_arrivals = reader.await.expect("raw reader");
    let raw_latencies = percentiles(latencies_ms(
        &raw_arrivals
            .iter()
            .map(|(at, d)| (*at, d.as_slice()))
            .collect::<Vec<_>>(),
    ));

    // RabbitMQ → Kafka.
    let in_queue = unique("bench-r2k");
    brokers::declare_queue(&conn, &in_queue).await;
    let msgs: Vec<_> = (0..N)
        .map(|i| (payload(i), BasicProperties::default()))
        .collect();
    brokers::publish_to_queue(&conn, &in_queue, &msgs).await;
    let out_topic = unique("bench-r2k-out");
    brokers::create_topic(&out_topic, 4).await;
    let mut bridge = BridgeProcess::start(&chain_config(&format!(
        r#"[[mapping]]
name = "r2k"
source = {{ rabbitmq = "local", queue = "{in_queue}", prefetch = 1000 }}
target = {{ kafka = "main", topic = "{out_topic}" }}
plugins = ["headers", "route"]
"#
    )));
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .create()
        .expect("consumer");
    let mut first: Option<(Instant, i64)> = None;
    let mut last = (Instant::now(), 0i64);
    let deadline = Instant::now() + Duration::from_secs(300);
    while last.1 < N as i64 && Instant::now() < deadline {
        let written: i64 = (0..4)
            .map(|p| {
                watermarks
                    .fetch_watermarks(&out_topic, p, Duration::from_secs(5))
                    .map_or(0, |w| w.1)
            })
            .sum();
        let now = Instant::now();
        if written > 0 && first.is_none() {
            first = Some((now, written));
        }
        last = (now, written);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bridge.terminate(Duration::from_secs(30));
    let r2k = first.map_or(0.0, |(t0, n0)| rate((last.1 - n0) as usize, last.0 - t0));

    // The machine's ceiling for RabbitMQ → Kafka with both brokers on it.
    let relay_queue = unique("bench-relay-in");
    brokers::declare_queue(&conn, &relay_queue).await;
    brokers::publish_to_queue(&conn, &relay_queue, &msgs).await;
    let relay_topic = unique("bench-relay-out");
    brokers::create_topic(&relay_topic, 4).await;
    let relay = raw_relay_amqp_to_kafka(&relay_queue, &relay_topic, N).await;

    let ratio = |a: f64, b: f64| ((a / b) * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "messages": N,
            "payload_bytes": 1024,
            "raw_kafka_consume_msgs_per_s": raw_consume,
            "raw_amqp_publish_confirmed_msgs_per_s": raw_publish,
            "raw_amqp_consume_ack_msgs_per_s": raw_amqp_consume_rate,
            "bridge_kafka_to_rabbitmq_msgs_per_s": k2r,
            "kafka_to_rabbitmq_ratio_to_raw": ratio(k2r, raw_consume.min(raw_publish)),
            "bridge_rabbitmq_to_kafka_msgs_per_s": r2k,
            "rabbitmq_to_kafka_ratio_to_raw": ratio(r2k, raw_amqp_consume_rate),
            "raw_relay_amqp_to_kafka_msgs_per_s": relay,
            "rabbitmq_to_kafka_ratio_to_relay": ratio(r2k, relay),
            "latency_rate_msgs_per_s": half.round(),
            "latency_p50_ms": latencies.p50,
            "latency_p99_ms": latencies.p99,
            "latency_samples": latencies.samples,
            "raw_kafka_latency_p50_ms": raw_latencies.p50,
            "raw_kafka_latency_p99_ms": raw_latencies.p99,
        })
    );
}
