//! Soaks: a long Kafka → RabbitMQ run with `kill -9` at a fixed interval, and a steady run in
//! both directions watching the bridge's memory.
//!
//! The test command runs short versions; `BRIDGE_SOAK=1` (`scripts/bench.sh soak`) runs the
//! full ones: one million messages with a kill every 30 s (at least ten kills), and 30 minutes
//! of steady traffic.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bridge_tests::bridge::{BridgeProcess, proc_status};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use rdkafka::producer::FutureRecord;

fn full() -> bool {
    std::env::var("BRIDGE_SOAK").is_ok_and(|v| v == "1")
}

const PARTITIONS: i32 = 4;
const KEYS: usize = 64;
const MAX_IN_FLIGHT: usize = 200;
/// What a kill may redeliver (docs/guarantees.md): the unsettled window with the batch the
/// plugins work on (no larger than the window), and what settled since the last commit (half
/// a window).
const REDELIVERED_PER_KILL: usize = MAX_IN_FLIGHT * 3 / 2
    + if MAX_IN_FLIGHT < 256 {
        MAX_IN_FLIGHT
    } else {
        256
    };

/// The index in payload `soak-{i:07}`.
fn index(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload)
        .ok()?
        .strip_prefix("soak-")?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_intervals_loses_nothing_and_keeps_key_order() {
    let (n, every, kills_wanted) = if full() {
        (1_000_000, Duration::from_secs(30), 10)
    } else {
        (60_000, Duration::from_secs(5), 3)
    };
    let topic = unique("soak");
    brokers::create_topic(&topic, PARTITIONS).await;
    let exchange = unique("soak-ex");
    let queue = unique("soak-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    // Keyed records: each key stays in one partition, in index order.
    for start in (0..n).step_by(100_000) {
        let records: Vec<Record> = (start..(start + 100_000).min(n))
            .map(|i| Record {
                key: Some(format!("key-{}", i % KEYS).into_bytes()),
                payload: Some(format!("soak-{i:07}").into_bytes()),
                headers: vec![],
                partition: 0,
                timestamp: None,
            })
            .collect();
        brokers::produce(&topic, &records, None).await;
    }
    let (seen, _collecting) = brokers::collect_queue(&queue).await;
    let mut bridge = Scenario::new()
        .mapping(
            Mapping::kafka_to_rabbitmq("soak", &[&topic], &unique("soak"), &exchange)
                .routing_key("rk")
                .max_in_flight(MAX_IN_FLIGHT),
        )
        .start();
    let started = Instant::now();
    let mut kills = 0;
    let mut under_way = 0;
    while kills < kills_wanted {
        tokio::time::sleep(every).await;
        let delivered = seen.lock().unwrap().len();
        if delivered < n {
            under_way += 1;
        }
        bridge.kill9();
        kills += 1;
        bridge.spawn();
    }
    brokers::wait_distinct(
        &seen,
        n,
        Duration::from_secs(if full() { 1800 } else { 240 }),
    )
    .await;
    let elapsed = started.elapsed();
    let got = seen.lock().unwrap().clone();
    let (loss, duplicates) = brokers::loss_and_duplicates(n, got.iter().map(|(_, p)| p.as_slice()));
    // Per key: the first arrival of each message comes in index order (a duplicate may
    // repeat earlier ones, never reorder new ones).
    let mut last: HashMap<usize, usize> = HashMap::new();
    let mut first_seen = std::collections::HashSet::new();
    let mut out_of_order = 0;
    for (_, payload) in &got {
        let Some(i) = index(payload) else { continue };
        if !first_seen.insert(i) {
            continue;
        }
        let key = i % KEYS;
        if last.get(&key).is_some_and(|prev| *prev > i) {
            out_of_order += 1;
        }
        last.insert(key, i);
    }
    println!(
        "soak: {n} messages, {kills} kill -9 every {every:?} ({under_way} during the stream), {elapsed:?}: loss {loss}, duplicates {duplicates} (≤ kills × {REDELIVERED_PER_KILL} = {}), per-key order breaks {out_of_order}",
        kills * REDELIVERED_PER_KILL
    );
    let log = bridge.log_text();
    assert_eq!(loss, 0, "nothing lost; log:\n{log}");
    assert_eq!(out_of_order, 0, "per-key order kept between duplicates");
    assert!(
        duplicates <= kills * REDELIVERED_PER_KILL,
        "at most about 1.5 × max_in_flight + one batch duplicates per kill: {duplicates} for {kills} kills"
    );
    bridge.stop_clean();
}

/// RSS samples `(seconds since start, KiB)` → least-squares slope in MiB per minute.
fn slope_mib_per_min(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    let (sx, sy) = samples
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = samples.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den / 1024.0 * 60.0
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn steady_run_in_both_directions_keeps_memory_flat() {
    let (run_for, rate) = if full() {
        (Duration::from_secs(30 * 60), 1_000)
    } else {
        (Duration::from_secs(60), 1_000)
    };
    let bootstrap = brokers::kafka_bootstrap();
    let k2r_topic = unique("steady-k2r");
    brokers::create_topic(&k2r_topic, PARTITIONS).await;
    let r2k_topic = unique("steady-r2k");
    brokers::create_topic(&r2k_topic, PARTITIONS).await;
    let exchange = unique("steady-ex");
    let out_queue = unique("steady-out");
    let in_queue = unique("steady-in");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &out_queue, "rk").await;
    brokers::declare_queue(&conn, &in_queue).await;
    let (seen, _collecting) = brokers::collect_queue(&out_queue).await;
    let bridge = BridgeProcess::start(&brokers::two_way_toml(
        &bootstrap, &k2r_topic, &exchange, &in_queue, &r2k_topic, "",
    ));

    // Feed both directions at `rate` messages/s each until `run_for` is over.
    let deadline = Instant::now() + run_for;
    let producer = brokers::producer(&bootstrap);
    let k2r_feed = {
        let topic = k2r_topic.clone();
        tokio::spawn(async move {
            let mut i = 0usize;
            while Instant::now() < deadline {
                let mut pending = Vec::new();
                for _ in 0..rate / 10 {
                    let payload = format!("k2r-{i:08}");
                    let key = format!("k{}", i % KEYS);
                    let rec = FutureRecord::<str, str>::to(&topic)
                        .key(&key)
                        .payload(&payload);
                    pending.push(brokers::send(&producer, rec).await);
                    i += 1;
                }
                for p in pending {
                    p.await.unwrap().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            i
        })
    };
    let r2k_feed = {
        let conn = brokers::amqp().await;
        let queue = in_queue.clone();
        tokio::spawn(async move {
            let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
            let mut i = 0usize;
            while Instant::now() < deadline {
                let batch: Vec<_> = (i..i + rate / 10)
                    .map(|j| (format!("r2k-{j:08}").into_bytes(), persistent.clone()))
                    .collect();
                brokers::publish_to_queue(&conn, &queue, &batch).await;
                i += rate / 10;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            i
        })
    };
    let start = Instant::now();
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        if let Some(rss) = proc_status(bridge.pid(), "VmRSS:").filter(|kib| *kib > 0) {
            samples.push((start.elapsed().as_secs_f64(), rss as f64));
        }
        tokio::time::sleep(Duration::from_secs(if full() { 10 } else { 2 })).await;
    }
    let k2r_n = k2r_feed.await.unwrap();
    let r2k_n = r2k_feed.await.unwrap();
    brokers::wait_distinct(&seen, k2r_n, Duration::from_secs(120)).await;
    let (k2r_loss, _) = brokers::arrivals_loss_and_duplicates(k2r_n, &seen);
    brokers::wait_topic_settled(
        &bootstrap,
        &r2k_topic,
        PARTITIONS,
        r2k_n,
        Duration::from_secs(120),
    )
    .await;
    let (r2k_loss, _) = brokers::topic_loss_and_duplicates(&bootstrap, &r2k_topic, r2k_n).await;
    // The first third warms up (allocator pools, librdkafka queues, plugin instances).
    let steady = &samples[samples.len() / 3..];
    let slope = slope_mib_per_min(steady);
    let (first, last) = (samples[0].1 / 1024.0, samples[samples.len() - 1].1 / 1024.0);
    println!(
        "steady run: {run_for:?} at {rate} msg/s each way ({k2r_n} to RabbitMQ, {r2k_n} to Kafka): RSS {first:.1} → {last:.1} MiB, slope after warm-up {slope:+.2} MiB/min; loss {k2r_loss} / {r2k_loss}"
    );
    let log = bridge.log_text();
    assert_eq!((k2r_loss, r2k_loss), (0, 0), "nothing lost; log:\n{log}");
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "no error in the log:\n{}",
        errors.join("\n")
    );
    if full() {
        assert!(slope < 1.0, "RSS flat within noise: {slope:+.2} MiB/min");
    }
    let mut bridge = bridge;
    bridge.stop_clean();
}
