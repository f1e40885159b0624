//! The bridge against this machine's ceiling, on Apache Kafka and RabbitMQ (`scripts/bench.sh`
//! starts them). In one run, 1 KiB messages with a key and 5 headers:
//!
//! - raw client rates: rdkafka produce (idempotent, `acks=all`) and consume, lapin publish
//!   with confirms (persistent) and consume with manual acks;
//! - plain relays with the bridge's delivery guarantees and no plugins (`bridge_tests::relay`),
//!   Kafka→RabbitMQ, RabbitMQ→Kafka and Kafka→Kafka: the ceiling of each direction;
//! - the bridge in each direction through `header-map` + `routing-key`, provenance headers on,
//!   with its CPU time per 100 000 messages and peak RSS;
//! - latency p50 / p99 / p99.9 from the producer's send to the target consumer's receipt, for
//!   the bridge and the relay at the same rate: at 1 000 msgs/s in each direction (`…_at_1000`),
//!   far below saturation, and at half the bridge's rate Kafka→RabbitMQ and RabbitMQ→Kafka;
//! - MirrorMaker 2 Kafka→Kafka (`bridge_tests::mirror_maker`), when `BENCH_MIRROR_MAKER_LIBS`
//!   names its jars (scripts/bench.sh fetches them): throughput, CPU time, peak RSS.
//!
//! Prints one JSON object per figure. `BENCH_MESSAGES` sets the run length (default 50 000);
//! `BENCH_DIRECTIONS` (e.g. `kafka_to_kafka,kafka_to_rabbitmq`) runs only those directions,
//! without the raw client figures, for profiling one; `BENCH_PLUGINS` (e.g. `headers` or empty)
//! sets the bridge's plugins among `headers` and `route`. `BENCH_INSTRUCTIONS=1` prints only
//! the instructions and allocations per message Kafka→Kafka and Kafka→RabbitMQ, counted by
//! valgrind's callgrind (`scripts/bench.sh instructions`): figures the machine's load does not
//! move.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_tests::brokers::{self, unique};
use bridge_tests::mirror_maker;
use bridge_tests::throughput::{
    Direction, Lane, PARTITIONS, Run, amqp_publish, counted_per_message, kafka_produce,
    mirror_maker_throughput, now_us, rate, throughput, warm_plugin_cache,
};
use futures_util::StreamExt;
use lapin::Connection;
use lapin::options::BasicAckOptions;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;

fn figure(name: &str, value: f64, unit: &str) {
    println!(
        "{}",
        serde_json::json!({ "figure": name, "value": (value * 1000.0).round() / 1000.0, "unit": unit })
    );
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

/// Latency p50/p99/p99.9 (ms) of the bridge or the relay in `dir` at `per_s` messages/s for
/// `secs` seconds, from the producer's send to the target consumer's receipt.
async fn latency(
    conn: &Connection,
    dir: Direction,
    per_s: f64,
    secs: f64,
    bridge: Option<&std::path::Path>,
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
            if dir == Direction::RabbitmqToKafka {
                amqp_publish(conn, &lane.queue, n, Some(per_s)).await;
            } else {
                kafka_produce(&lane.topic, n, Some(per_s)).await;
            }
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
    warm_plugin_cache(&bridge_tests::bridge::binary());
    if std::env::var_os("BENCH_INSTRUCTIONS").is_some() {
        return instructions(&conn, n, only.as_deref()).await;
    }
    if only.is_none() {
        raw_clients(&conn, n).await;
    }
    // Each direction: the relay, then the bridge; then latency at half the bridge's rate.
    for dir in Direction::ALL {
        if only
            .as_deref()
            .is_none_or(|o| o.split(',').any(|d| d == dir.name()))
        {
            direction(&conn, dir, n).await;
        }
    }
}

/// Instructions and allocations per message Kafka → Kafka and Kafka → RabbitMQ (those of
/// `only`), counted by callgrind over `n` messages.
async fn instructions(conn: &Connection, n: usize, only: Option<&str>) {
    let bin = bridge_tests::bridge::binary();
    for dir in [Direction::KafkaToKafka, Direction::KafkaToRabbitmq] {
        if only.is_some_and(|o| !o.split(',').any(|d| d == dir.name())) {
            continue;
        }
        if let Some(per_message) = counted_per_message(conn, dir, n, &bin).await {
            figure(
                &format!("bridge_{}_instructions_per_message", dir.name()),
                per_message.instructions,
                "instructions",
            );
            figure(
                &format!("bridge_{}_allocations_per_message", dir.name()),
                per_message.allocations,
                "allocations",
            );
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

/// `{prefix}_cpu_per_100k` and `{prefix}_peak_rss` of a run, when measured.
fn usage_figures(prefix: &str, run: &Run) {
    if let Some(cpu) = run.cpu_per_100k {
        figure(&format!("{prefix}_cpu_per_100k"), cpu, "s");
    }
    if let Some(rss) = run.peak_rss_mib {
        figure(&format!("{prefix}_peak_rss"), rss, "MiB");
    }
}

/// MirrorMaker 2 Kafka → Kafka on a lane of its own (`bridge_tests::mirror_maker`): its
/// throughput, CPU time and peak RSS, and the bridge's `bridge_run` beside it.
async fn peer(conn: &Connection, n: usize, libs: &std::path::Path, bridge_run: &Run) {
    let run = mirror_maker_throughput(conn, n, libs).await;
    if run.rate == 0.0 {
        eprintln!(
            "MirrorMaker 2 moved nothing; its log ends:\n{}",
            run.log.as_deref().unwrap_or_default()
        );
        return;
    }
    figure("mirror_maker_kafka_to_kafka", run.rate, "msgs/s");
    usage_figures("mirror_maker_kafka_to_kafka", &run);
    figure(
        "bridge_kafka_to_kafka_ratio_to_mirror_maker",
        bridge_run.rate / run.rate,
        "ratio",
    );
}

/// The relay and the bridge in `dir`: throughput, CPU time, peak RSS, and latency at a light
/// load and at half the bridge's rate beside the relay's at the same rate.
async fn direction(conn: &Connection, dir: Direction, n: usize) {
    let name = dir.name();
    let bin = bridge_tests::bridge::binary();
    let relay_run = throughput(conn, dir, n, None).await;
    let bridge_run = throughput(conn, dir, n, Some(&bin)).await;
    figure(&format!("relay_{name}"), relay_run.rate, "msgs/s");
    figure(&format!("bridge_{name}"), bridge_run.rate, "msgs/s");
    figure(
        &format!("bridge_{name}_ratio_to_relay"),
        bridge_run.rate / relay_run.rate.max(1.0),
        "ratio",
    );
    usage_figures(&format!("bridge_{name}"), &bridge_run);
    if dir == Direction::KafkaToKafka
        && let Some(libs) = mirror_maker::libs()
    {
        peer(conn, n, &libs, &bridge_run).await;
    }
    if dir.to_stream() || dir == Direction::KafkaToKafkaExactlyOnce {
        return;
    }
    // Far below saturation, where latency is the bridge's and not the queue's.
    latencies(conn, dir, LIGHT_RATE, "_at_1000", &bin).await;
    if dir == Direction::KafkaToKafka {
        return;
    }
    let half = (bridge_run.rate / 2.0).max(100.0);
    figure(&format!("latency_{name}_rate"), half, "msgs/s");
    latencies(conn, dir, half, "", &bin).await;
}

/// The fixed light load of the latency figures named `…_at_1000`, in messages per second.
const LIGHT_RATE: f64 = 1000.0;

/// Latency p50 / p99 / p99.9 of the relay and of the bridge `bin` in `dir` at `per_s`
/// messages per second for 10 s each, and what the bridge adds at p99; the figures' names end
/// with `suffix`.
async fn latencies(
    conn: &Connection,
    dir: Direction,
    per_s: f64,
    suffix: &str,
    bin: &std::path::Path,
) {
    let name = dir.name();
    let relay_lat = latency(conn, dir, per_s, 10.0, None).await;
    let bridge_lat = latency(conn, dir, per_s, 10.0, Some(bin)).await;
    for (i, p) in ["p50", "p99", "p99_9"].iter().enumerate() {
        figure(
            &format!("relay_{name}_latency{suffix}_{p}"),
            relay_lat[i],
            "ms",
        );
        figure(
            &format!("bridge_{name}_latency{suffix}_{p}"),
            bridge_lat[i],
            "ms",
        );
    }
    figure(
        &format!("bridge_{name}_added_latency{suffix}_p99"),
        bridge_lat[1] - relay_lat[1],
        "ms",
    );
}
