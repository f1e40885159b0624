//! The bridge against this machine's ceiling, on Apache Kafka and RabbitMQ (`scripts/bench.sh`
//! starts them). In one run, 1 KiB messages with a key and 5 headers:
//!
//! - raw client rates: rdkafka produce (idempotent, `acks=all`) and consume, lapin publish
//!   with confirms (persistent) and consume with manual acks;
//! - plain relays with the bridge's delivery guarantees and no plugins (`bridge_tests::relay`),
//!   Kafka→RabbitMQ, RabbitMQ→Kafka and Kafka→Kafka: the ceiling of each direction;
//! - the bridge in each direction through `header-map` + `routing-key`, provenance headers on,
//!   with its CPU time per 100 000 messages and peak RSS;
//! - latency p50 / p99 / p99.9 at half the bridge's rate, from the producer's send to the
//!   target consumer's receipt, for the bridge and the relay at the same rate.
//!
//! Prints one JSON object per figure. `BENCH_MESSAGES` sets the run length (default 50 000);
//! `BENCH_DIRECTIONS` (e.g. `kafka_to_kafka,kafka_to_rabbitmq`) runs only those directions,
//! without the raw client figures, for profiling one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge_tests::artifacts;
use bridge_tests::bridge::BridgeProcess;
use bridge_tests::brokers::{self, unique};
use bridge_tests::relay;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;

const PARTITIONS: i32 = 4;
/// The headers every benchmark message carries besides the bridge's own.
const HEADERS: [(&str, &str); 5] = [
    ("region", "eu"),
    ("trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("tenant", "acme"),
    ("content-type", "application/json"),
    ("schema", "order-damage-v3"),
];

fn figure(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({ "figure": name, "value": (value * 1000.0).round() / 1000.0, "unit": unit })
    );
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros()
}

/// A 1 KiB JSON payload carrying its send time.
fn payload() -> Vec<u8> {
    let mut p = format!(r#"{{"type":"damage","sent_us":{},"pad":""#, now_us()).into_bytes();
    p.resize(1022, b'x');
    p.extend_from_slice(b"\"}");
    p
}

fn kafka_headers() -> OwnedHeaders {
    HEADERS.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    })
}

fn amqp_properties() -> BasicProperties {
    let mut table = FieldTable::default();
    for (k, v) in HEADERS {
        table.insert(k.into(), AMQPValue::LongString(LongString::from(v)));
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-6)
}

/// Produces `n` messages to `topic`, at most `per_s` a second (`None`: as fast as the client
/// goes), through an idempotent producer with `acks=all`; returns the rate.
async fn kafka_produce(topic: &str, n: usize, per_s: Option<f64>) -> f64 {
    let producer = brokers::producer(&brokers::kafka_bootstrap());
    if per_s.is_some() {
        // A paced run measures latency: learn the new topic's leaders before the clock starts
        // (a payload that is not JSON carries no send time and is not counted).
        let warm = FutureRecord::<str, str>::to(topic)
            .payload("warm-up")
            .key("warm-up");
        let _ = brokers::send(&producer, warm).await.await;
    }
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        if let Some(r) = per_s {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let body = payload();
        let key = format!("k{}", i % 64);
        let rec = FutureRecord::<str, [u8]>::to(topic)
            .payload(&body)
            .key(&key)
            .headers(kafka_headers());
        pending.push_back(brokers::send(&producer, rec).await);
        while pending.len() > 10_000 {
            let _ = pending.pop_front().expect("pending").await;
        }
    }
    for p in pending {
        p.await.expect("delivery").expect("delivered");
    }
    rate(n, start.elapsed())
}

/// Consumes `n` messages of `topic` from the start with a plain consumer; the rate after the
/// first.
fn kafka_consume(topic: &str, n: usize) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers::kafka_bootstrap())
        .set("group.id", unique("raw"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (mut count, mut start) = (0, None);
    let deadline = Instant::now() + Duration::from_secs(300);
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

/// Publishes `n` persistent messages to `queue` with confirms (1 000 in flight), at most
/// `per_s` a second; returns the rate.
async fn amqp_publish(conn: &Connection, queue: &str, n: usize, per_s: Option<f64>) -> f64 {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let props = amqp_properties();
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        if let Some(r) = per_s {
            let due = start + Duration::from_secs_f64(i as f64 / r);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &payload(),
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

/// Consumes `n` messages of `queue` with manual acks (prefetch 1 000, `multiple` every 100);
/// the rate after the first.
async fn amqp_consume(conn: &Connection, queue: &str, n: usize) -> f64 {
    let (_ch, mut consumer) = brokers::queue_consumer(conn, queue, 1000, false).await;
    let (mut count, mut start) = (0, None);
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

/// Messages written to `topic` so far (sum of its partitions' high watermarks).
fn topic_count(client: &BaseConsumer, topic: &str) -> usize {
    (0..PARTITIONS)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |w| w.1)
        })
        .sum::<i64>() as usize
}

/// CPU time (user + system) and peak RSS of a process, from `/proc`.
fn process_usage(pid: u32) -> Option<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hwm_kib = bridge_tests::bridge::proc_status(pid, "VmHWM:")?;
    // Linux reports CPU time in clock ticks of 1/100 s.
    Some((Duration::from_millis(ticks * 10), hwm_kib))
}

/// A throughput run: messages per second from the first arrival to the `n`-th, and for a
/// bridge process its CPU time per 100 000 messages over the same span and its peak RSS.
struct Run {
    rate: f64,
    cpu_per_100k: Option<f64>,
    peak_rss_mib: Option<f64>,
}

/// Polls `count` until it reaches `n` (or 5 minutes pass).
async fn measure(pid: Option<u32>, n: usize, mut count: impl FnMut() -> usize) -> Run {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    let (mut last, mut seen) = (Instant::now(), 0);
    while seen < n && Instant::now() < deadline {
        seen = count();
        if seen > 0 && first.is_none() {
            first = Some((Instant::now(), seen, pid.and_then(process_usage)));
        }
        last = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some((t0, n0, usage0)) = first else {
        return Run {
            rate: 0.0,
            cpu_per_100k: None,
            peak_rss_mib: None,
        };
    };
    let moved = seen.saturating_sub(n0);
    let usage1 = pid.and_then(process_usage);
    Run {
        rate: rate(moved, last - t0),
        cpu_per_100k: match (usage0, usage1) {
            (Some((c0, _)), Some((c1, _))) if moved > 0 => {
                Some((c1 - c0).as_secs_f64() * 100_000.0 / moved as f64)
            }
            _ => None,
        },
        peak_rss_mib: usage1.map(|(_, kib)| kib as f64 / 1024.0),
    }
}

/// Where the bridge keeps compiled plugins between runs, as a deployment would.
fn plugin_cache() -> std::path::PathBuf {
    std::env::temp_dir().join("bridge-bench-plugin-cache")
}

fn chain_config(mapping: &str) -> String {
    format!(
        r#"
{}
[bridge]
plugin_cache_dir = "{}"

[plugins.headers]
path = "{}"
config = {{ rename = {{ kafka_key = "message_key" }}, set = {{ x-source = "{{source}}" }} }}
[plugins.route]
path = "{}"
config = {{ routing_key = "{{header:region|eu}}.bench" }}

[[mapping]]
name = "bench"
plugins = ["headers", "route"]
max_in_flight = {}
{mapping}"#,
        brokers::brokers_toml(),
        plugin_cache().display(),
        artifacts::HEADER_MAP,
        artifacts::ROUTING_KEY,
        relay::IN_FLIGHT,
    )
}

/// Milliseconds from the `sent_us` in each payload to its arrival.
fn latencies_ms(arrivals: &[(Instant, Vec<u8>)]) -> Vec<f64> {
    let (now, now_us) = (Instant::now(), now_us() as f64);
    arrivals
        .iter()
        .filter_map(|(at, data)| {
            let v: serde_json::Value = serde_json::from_slice(data).ok()?;
            let arrived_us = now_us - (now - *at).as_micros() as f64;
            Some((arrived_us - v["sent_us"].as_f64()?) / 1000.0)
        })
        .collect()
}

/// p50, p99, p99.9 in ms.
fn percentiles(mut ms: Vec<f64>) -> [f64; 3] {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    [pct(0.50), pct(0.99), pct(0.999)]
}

/// Reads `topic` from its end in the background, recording arrivals, until `stop`.
fn topic_arrivals(
    topic: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(Instant, Vec<u8>)>> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers::kafka_bootstrap())
            .set("group.id", unique("lat"))
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "10")
            .create()
            .expect("consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                out.push((Instant::now(), m.payload().unwrap_or_default().to_vec()));
            }
        }
        out
    })
}

/// What sits between the source and the target in a run.
enum Mover {
    Bridge(BridgeProcess),
    Relay(Arc<AtomicBool>, tokio::task::JoinHandle<usize>),
}

impl Mover {
    fn pid(&self) -> Option<u32> {
        match self {
            Mover::Bridge(b) => Some(b.pid()),
            Mover::Relay(..) => None,
        }
    }

    async fn stop(self) {
        match self {
            Mover::Bridge(mut b) => {
                b.terminate(Duration::from_secs(30));
            }
            Mover::Relay(stop, task) => {
                stop.store(true, Ordering::Relaxed);
                let _ = task.await;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    KafkaToRabbitmq,
    RabbitmqToKafka,
    KafkaToKafka,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::KafkaToRabbitmq => "kafka_to_rabbitmq",
            Direction::RabbitmqToKafka => "rabbitmq_to_kafka",
            Direction::KafkaToKafka => "kafka_to_kafka",
        }
    }
}

/// A source and a target of one direction, fresh for each run.
struct Lane {
    topic: String,
    queue: String,
    out_topic: String,
    exchange: String,
}

impl Lane {
    async fn new(conn: &Connection) -> Self {
        let lane = Lane {
            topic: unique("bench-in"),
            queue: unique("bench-q"),
            out_topic: unique("bench-out"),
            exchange: unique("bench-ex"),
        };
        brokers::create_topic(&lane.topic, PARTITIONS).await;
        brokers::create_topic(&lane.out_topic, PARTITIONS).await;
        brokers::declare_bound_queue(conn, &lane.exchange, &lane.queue, "eu.bench").await;
        lane
    }

    /// The bridge or the relay moving this lane's messages in `dir`.
    async fn start(&self, dir: Direction, bridge: bool) -> Mover {
        if bridge {
            let mapping = match dir {
                Direction::KafkaToRabbitmq => format!(
                    "source = {{ kafka = \"main\", topics = [\"{}\"], group = \"{}\" }}\ntarget = {{ rabbitmq = \"local\", exchange = \"{}\" }}\n",
                    self.topic,
                    unique("bench"),
                    self.exchange
                ),
                Direction::RabbitmqToKafka => format!(
                    "source = {{ rabbitmq = \"local\", queue = \"{}\", prefetch = 1000 }}\ntarget = {{ kafka = \"main\", topic = \"{}\" }}\n",
                    self.queue, self.out_topic
                ),
                Direction::KafkaToKafka => format!(
                    "source = {{ kafka = \"main\", topics = [\"{}\"], group = \"{}\" }}\ntarget = {{ kafka = \"main\", topic = \"{}\" }}\n",
                    self.topic,
                    unique("bench"),
                    self.out_topic
                ),
            };
            return Mover::Bridge(BridgeProcess::start(&chain_config(&mapping)));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (bootstrap, s) = (brokers::kafka_bootstrap(), Arc::clone(&stop));
        let task = match dir {
            Direction::KafkaToRabbitmq => tokio::spawn(relay::kafka_to_rabbitmq(
                bootstrap,
                self.topic.clone(),
                "earliest",
                brokers::amqp().await,
                self.exchange.clone(),
                "eu.bench".to_string(),
                s,
            )),
            Direction::RabbitmqToKafka => tokio::spawn(relay::rabbitmq_to_kafka(
                brokers::amqp().await,
                self.queue.clone(),
                bootstrap,
                self.out_topic.clone(),
                s,
            )),
            Direction::KafkaToKafka => tokio::spawn(relay::kafka_to_kafka(
                bootstrap,
                self.topic.clone(),
                self.out_topic.clone(),
                s,
            )),
        };
        Mover::Relay(stop, task)
    }
}

/// Throughput of the bridge or the relay in `dir` over `n` messages waiting in the source.
async fn throughput(conn: &Connection, dir: Direction, n: usize, bridge: bool) -> Run {
    let lane = Lane::new(conn).await;
    // Fill the source, then count what reaches the target: a queue consumer or Kafka's
    // watermarks.
    if dir == Direction::RabbitmqToKafka {
        amqp_publish(conn, &lane.queue, n, None).await;
    } else {
        kafka_produce(&lane.topic, n, None).await;
    }
    let collector = match dir {
        Direction::KafkaToRabbitmq => Some(brokers::collect_queue(&lane.queue).await),
        _ => None,
    };
    let mover = lane.start(dir, bridge).await;
    let run = match &collector {
        Some((arrived, _)) => measure(mover.pid(), n, || arrived.lock().expect("lock").len()).await,
        None => {
            let client: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", brokers::kafka_bootstrap())
                .create()
                .expect("client");
            measure(mover.pid(), n, || topic_count(&client, &lane.out_topic)).await
        }
    };
    mover.stop().await;
    if let Some((_, task)) = collector {
        task.abort();
    }
    run
}

/// Latency p50/p99/p99.9 (ms) of the bridge or the relay in `dir` at `per_s` messages/s for
/// `secs` seconds, from the producer's send to the target consumer's receipt.
async fn latency(
    conn: &Connection,
    dir: Direction,
    per_s: f64,
    secs: f64,
    bridge: bool,
) -> [f64; 3] {
    let lane = Lane::new(conn).await;
    let n = (per_s * secs) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let mover = lane.start(dir, bridge).await;
    // Let the mover connect and join its group before the clock starts.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let arrivals: brokers::Arrivals;
    match dir {
        Direction::KafkaToRabbitmq => {
            let (seen, collector) = brokers::collect_queue(&lane.queue).await;
            kafka_produce(&lane.topic, n, Some(per_s)).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.lock().expect("lock").len() < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            collector.abort();
            arrivals = seen;
        }
        _ => {
            let reader = topic_arrivals(&lane.out_topic, Arc::clone(&stop));
            tokio::time::sleep(Duration::from_secs(3)).await;
            amqp_publish(conn, &lane.queue, n, Some(per_s)).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            stop.store(true, Ordering::Relaxed);
            arrivals = Arc::new(Mutex::new(reader.await.expect("reader")));
        }
    }
    mover.stop().await;
    let got = arrivals.lock().expect("lock");
    percentiles(latencies_ms(&got))
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let only = std::env::var("BENCH_DIRECTIONS").ok();
    let conn = brokers::amqp().await;
    // Compile the plugins into the cache once (`check` loads them), so no run pays for it.
    let config = tempfile::NamedTempFile::new().expect("temp file");
    let warm = chain_config(
        "source = { kafka = \"main\", topics = [\"warm-up\"], group = \"warm-up\" }\ntarget = { kafka = \"main\", topic = \"warm-up\" }\n",
    );
    std::fs::write(config.path(), warm).expect("config");
    let status = std::process::Command::new(bridge_tests::bridge::binary())
        .args(["check", "--config"])
        .arg(config.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bridge-host check");
    assert!(status.success(), "the benchmark's plugins load");
    if only.is_none() {
        raw_clients(&conn, n).await;
    }
    // Each direction: the relay, then the bridge; then latency at half the bridge's rate.
    for dir in [
        Direction::KafkaToRabbitmq,
        Direction::RabbitmqToKafka,
        Direction::KafkaToKafka,
    ] {
        if only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|d| d == dir.name()))
        {
            direction(&conn, dir, n).await;
        }
    }
}

async fn raw_clients(conn: &Connection, n: usize) {
    let topic = unique("bench-raw");
    brokers::create_topic(&topic, PARTITIONS).await;
    figure(
        "raw_kafka_produce",
        kafka_produce(&topic, n, None).await,
        "msgs/s",
    );
    let t = topic.clone();
    let consumed = tokio::task::spawn_blocking(move || kafka_consume(&t, n))
        .await
        .expect("consume");
    figure("raw_kafka_consume", consumed, "msgs/s");
    let queue = unique("bench-raw-q");
    brokers::declare_queue(conn, &queue).await;
    figure(
        "raw_amqp_publish_confirmed",
        amqp_publish(conn, &queue, n, None).await,
        "msgs/s",
    );
    figure(
        "raw_amqp_consume_acked",
        amqp_consume(conn, &queue, n).await,
        "msgs/s",
    );
}

/// The relay and the bridge in `dir`: throughput, CPU time, peak RSS, and latency at half the
/// bridge's rate beside the relay's at the same rate.
async fn direction(conn: &Connection, dir: Direction, n: usize) {
    let name = dir.name();
    let relay_run = throughput(conn, dir, n, false).await;
    let bridge_run = throughput(conn, dir, n, true).await;
    figure(&format!("relay_{name}"), relay_run.rate, "msgs/s");
    figure(&format!("bridge_{name}"), bridge_run.rate, "msgs/s");
    figure(
        &format!("bridge_{name}_ratio_to_relay"),
        bridge_run.rate / relay_run.rate.max(1.0),
        "ratio",
    );
    if let Some(cpu) = bridge_run.cpu_per_100k {
        figure(&format!("bridge_{name}_cpu_per_100k"), cpu, "s");
    }
    if let Some(rss) = bridge_run.peak_rss_mib {
        figure(&format!("bridge_{name}_peak_rss"), rss, "MiB");
    }
    if dir == Direction::KafkaToKafka {
        return;
    }
    let half = (bridge_run.rate / 2.0).max(100.0);
    figure(&format!("latency_{name}_rate"), half, "msgs/s");
    let relay_lat = latency(conn, dir, half, 10.0, false).await;
    let bridge_lat = latency(conn, dir, half, 10.0, true).await;
    for (i, p) in ["p50", "p99", "p99_9"].iter().enumerate() {
        figure(&format!("relay_{name}_latency_{p}"), relay_lat[i], "ms");
        figure(&format!("bridge_{name}_latency_{p}"), bridge_lat[i], "ms");
    }
    figure(
        &format!("bridge_{name}_added_latency_p99"),
        bridge_lat[1] - relay_lat[1],
        "ms",
    );
}
