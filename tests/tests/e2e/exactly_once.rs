//! `delivery = "exactly-once"` Kafka→Kafka: through `kill -9` of the bridge, a `read_committed`
//! reader of the target sees every message once, in order per key.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};

const PARTITIONS: i32 = 4;
const KEYS: usize = 64;

fn index(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload)
        .ok()?
        .strip_prefix("eos-")?
        .parse()
        .ok()
}

/// Loss, duplicates and per-key order breaks among the `eos-N` payloads of `got`.
fn tally(n: usize, got: &[Record]) -> (usize, usize, usize) {
    let mut count: HashMap<usize, usize> = HashMap::new();
    let mut last: HashMap<usize, usize> = HashMap::new();
    let mut out_of_order = 0;
    for r in got {
        let Some(i) = r.payload.as_deref().and_then(index) else {
            continue;
        };
        *count.entry(i).or_default() += 1;
        if last.insert(i % KEYS, i).is_some_and(|prev| prev > i) {
            out_of_order += 1;
        }
    }
    let loss = (0..n).filter(|i| !count.contains_key(i)).count();
    let duplicates = count.values().map(|c| c - 1).sum();
    (loss, duplicates, out_of_order)
}

/// `n` keyed records `eos-N`.
fn eos_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(format!("key-{}", i % KEYS).into_bytes()),
            payload: Some(format!("eos-{i:06}").into_bytes()),
            headers: vec![("n".into(), i.to_string().into_bytes())],
            partition: 0,
            timestamp: None,
        })
        .collect()
}

/// A source and a target topic; `n` records in the source, the first `upfront` at once and
/// the rest fed at about 1 000 messages/s by the returned task.
async fn stream(
    prefix: &str,
    n: usize,
    upfront: usize,
) -> (String, String, Vec<Record>, tokio::task::JoinHandle<()>) {
    let source = unique(&format!("{prefix}-in"));
    let target = unique(&format!("{prefix}-out"));
    brokers::create_topic(&source, PARTITIONS).await;
    brokers::create_topic(&target, PARTITIONS).await;
    let records = eos_records(n);
    brokers::produce(&source, &records[..upfront], None).await;
    let feeding = brokers::feed_topic(
        &brokers::kafka_bootstrap(),
        &source,
        records[upfront..].to_vec(),
    );
    (source, target, records, feeding)
}

/// Waits (up to `limit`) until a `read_committed` reader of `topic` sees all `n` messages.
async fn wait_all_committed(topic: &str, n: usize, limit: Duration) -> usize {
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < limit {
        seen = committed(topic)
            .await
            .iter()
            .filter_map(|r| r.payload.as_deref().and_then(index))
            .collect::<HashSet<_>>()
            .len();
        if seen >= n {
            break;
        }
    }
    seen
}

/// Every committed record of `topic` (librdkafka's readers are `read_committed`), read until
/// nothing new came for 10 s.
async fn committed(topic: &str) -> Vec<Record> {
    brokers::read_topic(topic, usize::MAX, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_intervals_delivers_each_message_exactly_once_in_key_order() {
    let (n, kills) = (20_000, 5);
    // A backlog, then about 1 000 messages/s while the bridge is killed every 3 s.
    let (source, target, records, feeding) = stream("eos", n, 5_000).await;

    let mut bridge = Scenario::new()
        .mapping(
            Mapping::kafka_to_kafka("copy", &[&source], &unique("eos"), &target)
                .target("same_partition", true)
                .max_in_flight(500)
                .set("delivery", "exactly-once"),
        )
        .env("BRIDGE_INSTANCE_ID", "eos-test")
        .start();
    let started = Instant::now();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_secs(3)).await;
        bridge.kill9();
        bridge.spawn();
    }
    feeding.await.unwrap();
    // Wait until the last run has committed everything.
    let seen = wait_all_committed(&target, n, Duration::from_secs(240)).await;
    bridge.stop_clean();
    let got = committed(&target).await;
    let elapsed = started.elapsed();

    let (loss, duplicates, out_of_order) = tally(n, &got);
    println!(
        "exactly-once: {n} messages, {kills} kill -9 every 3 s, {elapsed:?}: read {}, loss {loss}, duplicates {duplicates}, order breaks {out_of_order} (seen {seen} before the stop)",
        got.len()
    );
    assert!(
        (loss, duplicates, out_of_order) == (0, 0, 0),
        "loss {loss}, duplicates {duplicates}, out of order {out_of_order}; {}",
        bridge.log_report()
    );
    // Keys, headers and partitions are those of the source record.
    for r in got.iter().take(100) {
        let i = index(r.payload.as_deref().unwrap()).unwrap();
        assert_eq!(r.key.as_deref(), records[i].key.as_deref());
        assert_eq!(r.headers[0], ("n".to_string(), i.to_string().into_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_joining_and_leaving_the_group_deliver_each_message_exactly_once() {
    let n = 15_000;
    let group = unique("eos-group");
    let (source, target, _, feeding) = stream("eos-group", n, 3_000).await;
    let replica = |instance: &str| {
        Scenario::new()
            .mapping(
                Mapping::kafka_to_kafka("copy", &[&source], &group, &target)
                    .target("same_partition", true)
                    .max_in_flight(500)
                    .set("delivery", "exactly-once"),
            )
            .env("BRIDGE_INSTANCE_ID", instance)
            .start()
    };
    // A second replica joins (partitions move: the first aborts and re-reads), leaves
    // cleanly (they move back), joins again and is killed.
    let mut first = replica("a");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut second = replica("b");
    tokio::time::sleep(Duration::from_secs(4)).await;
    second.stop_clean();
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.spawn();
    tokio::time::sleep(Duration::from_secs(4)).await;
    second.kill9();
    feeding.await.unwrap();
    let seen = wait_all_committed(&target, n, Duration::from_secs(240)).await;
    first.stop_clean();
    let got = committed(&target).await;
    let (loss, duplicates, out_of_order) = tally(n, &got);
    println!(
        "exactly-once with a second replica joining, leaving, joining and killed: {n} messages: read {}, loss {loss}, duplicates {duplicates}, order breaks {out_of_order} (seen {seen})",
        got.len()
    );
    assert!(
        (loss, duplicates, out_of_order) == (0, 0, 0),
        "loss {loss}, duplicates {duplicates}, out of order {out_of_order}; first: {}\nsecond: {}",
        first.log_report(),
        second.log_report()
    );
}

/// On a 3-broker cluster (replication factor 3): 100 000 records through `kill -9` of the
/// bridge after every eighth of them and, once, `kill -9` of the broker coordinating the
/// mapping's consumer group (librdkafka then waits without end for the offsets of a
/// transaction: the bridge gives the producer up and restarts the mapping):
/// a `read_committed` reader sees every message once, in key order.
#[tokio::test(flavor = "multi_thread")]
async fn on_three_brokers_kill_9_and_a_leader_kill_deliver_each_message_exactly_once() {
    use rdkafka::consumer::Consumer;
    let n = 100_000;
    let mut cluster =
        tokio::task::spawn_blocking(|| bridge_tests::kafka_node::KafkaCluster::start_with(3, &[]))
            .await
            .expect("the cluster starts");
    let bootstrap = cluster.bootstrap.clone();
    let (source, target) = (unique("eos3-in"), unique("eos3-out"));
    for topic in [&source, &target] {
        brokers::create_topic_replicated(&bootstrap, topic, PARTITIONS, 3).await;
    }
    brokers::produce_to(&bootstrap, &source, &eos_records(n), None).await;
    let sections = format!(
        "[kafka.main]\nbootstrap_servers = \"{bootstrap}\"\n\n[rabbitmq.local]\nurl = \"{}\"\n",
        brokers::amqp_url()
    );
    let group = unique("eos3");
    let mut bridge = Scenario::with_brokers(&sections)
        .mapping(
            Mapping::kafka_to_kafka("copy", &[&source], &group, &target)
                .target("same_partition", true)
                .max_in_flight(500)
                .set("delivery", "exactly-once"),
        )
        .env("BRIDGE_INSTANCE_ID", "eos3-test")
        .start();
    let started = Instant::now();
    let mut kills = 0;
    let mut leader_killed = None;
    let mut killed_at = 0;
    let mut marks = vec![0i64; PARTITIONS as usize];
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Records written, aborted ones and transaction markers included: progress only. A
        // partition whose leader is gone keeps its last mark. (A new reader each time: one
        // that asked the killed broker keeps asking it.)
        let reader = brokers::watermark_reader(&bootstrap);
        for (p, mark) in marks.iter_mut().enumerate() {
            if let Ok((_, high)) =
                reader.fetch_watermarks(&target, p as i32, Duration::from_secs(1))
            {
                *mark = (*mark).max(high);
            }
        }
        let written = marks.iter().sum::<i64>() as usize;
        if written >= n || started.elapsed() > Duration::from_secs(300) {
            break;
        }
        if leader_killed.is_none() && written >= n / 3 {
            let (b, g) = (bootstrap.clone(), group.clone());
            let victim = tokio::task::spawn_blocking(move || brokers::group_coordinator(&b, &g))
                .await
                .expect("the group's coordinator") as u32;
            cluster = tokio::task::spawn_blocking(move || {
                cluster.kill(victim);
                cluster
            })
            .await
            .expect("kill the leader");
            leader_killed = Some((victim, written));
        } else if written >= killed_at + n / 8 {
            // Each run gets to write an eighth of the records before it is killed.
            bridge.kill9();
            bridge.spawn();
            kills += 1;
            killed_at = written;
        }
    }
    // Every committed record, once the last run has committed them all.
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_secs(480) {
        let (b, t) = (bootstrap.clone(), target.clone());
        got = tokio::task::spawn_blocking(move || {
            brokers::consume_topic_from(&b, &t, usize::MAX, Duration::from_secs(10))
        })
        .await
        .expect("read the target");
        if tally(n, &got).0 == 0 {
            break;
        }
    }
    bridge.stop_clean();
    let (loss, duplicates, out_of_order) = tally(n, &got);
    println!(
        "exactly-once on 3 brokers: {n} messages, {kills} kill -9 of the bridge, leader killed {leader_killed:?}, {:?}: read {}, loss {loss}, duplicates {duplicates}, order breaks {out_of_order}",
        started.elapsed(),
        got.len()
    );
    assert!(leader_killed.is_some(), "a leader was killed");
    assert!(
        (loss, duplicates, out_of_order) == (0, 0, 0),
        "loss {loss}, duplicates {duplicates}, out of order {out_of_order}; {}",
        bridge.log_report()
    );
    drop(cluster);
}
