//! RabbitMQ streams over the stream protocol. As a target: Kafka → stream under
//! `delivery = "exactly-once"` stores each record once through `kill -9` of the bridge (the
//! broker drops what a named producer sent before), where at-least-once duplicates. As a
//! source: the offset the broker stores for the consumer covers only settled messages, so a
//! killed bridge loses nothing and a stopped one reads on where it stopped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bridge_tests::brokers::{self, AmqpRecord, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};

const PARTITIONS: i32 = 2;

/// `n` records `s-N` with a key and a header.
fn numbered(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: Some(format!("key-{}", i % 16).into_bytes()),
            payload: Some(format!("s-{i:06}").into_bytes()),
            headers: vec![("n".into(), i.to_string().into_bytes())],
            partition: 0,
            timestamp: None,
        })
        .collect()
}

/// Loss and duplicates among the `s-N` payloads read.
fn tally(n: usize, got: &[AmqpRecord]) -> (usize, usize) {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in got {
        *count
            .entry(String::from_utf8_lossy(&r.payload).into_owned())
            .or_default() += 1;
    }
    let loss = (0..n)
        .filter(|i| !count.contains_key(&format!("s-{i:06}")))
        .count();
    (loss, count.values().map(|c| c - 1).sum())
}

/// Kafka → stream with `delivery`, the bridge killed with `kill -9` after every `1 / kills`
/// of the `n` records reached the stream, while a backlog of a fifth of them and then a feed
/// of the rest go through; what the stream holds in the end.
async fn through_kills(
    prefix: &str,
    delivery: &str,
    n: usize,
    kills: usize,
) -> (Vec<AmqpRecord>, String) {
    let (topic, stream) = (
        unique(&format!("{prefix}-in")),
        unique(&format!("{prefix}-stream")),
    );
    brokers::create_topic(&topic, PARTITIONS).await;
    let records = numbered(n);
    // A fifth waits as a backlog, the rest comes at 1 000 a second: the bridge moves records
    // for long enough to be killed `kills` times while it does, each restart given time to
    // recover (its consumer waits for the killed member to leave the group, a transactional
    // producer for its predecessor's transaction to abort).
    let backlog = n / 5;
    brokers::produce(&topic, &records[..backlog], None).await;
    let feeding = brokers::feed_topic(
        &brokers::kafka_bootstrap(),
        &topic,
        records[backlog..].to_vec(),
    );
    let mut bridge = Scenario::new()
        .mapping(
            Mapping::kafka_to_stream("to-stream", &[&topic], &unique("g"), &stream)
                .max_in_flight(500)
                .set("delivery", delivery)
                .set("declare", true),
        )
        .start();
    let started = Instant::now();
    let (mut killed, mut before) = (0, 0);
    let mut progress = Vec::new();
    while killed < kills && before < n && started.elapsed() < Duration::from_secs(240) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stored = stream_length(&stream).await;
        // Killed while it moves records, so that some are in flight.
        let moving = stored > before;
        before = stored;
        if moving && stored >= (killed + 1) * n / (kills + 1) {
            progress.push(format!("{stored} at {:?}", started.elapsed()));
            bridge.kill9();
            bridge.spawn();
            killed += 1;
        }
    }
    feeding.await.expect("the feed");
    while started.elapsed() < Duration::from_secs(300) {
        let got = brokers::read_stream(&stream, Duration::from_secs(3)).await;
        if tally(n, &got).0 == 0 {
            break;
        }
    }
    // What was in flight at the last start has had time to arrive twice, if it would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = brokers::read_stream(&stream, Duration::from_secs(3)).await;
    bridge.stop_clean();
    assert_eq!(
        killed,
        kills,
        "the bridge was killed {kills} times (killed at: {progress:?}; {before} stored); {}",
        bridge.log_report()
    );
    (got, bridge.log_report())
}

/// Messages in `stream`, as RabbitMQ counts them (0 before it exists).
async fn stream_length(stream: &str) -> usize {
    let conn = brokers::amqp().await;
    let ch = conn.create_channel().await.expect("channel");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        lapin::types::AMQPValue::LongString("stream".into()),
    );
    let count = ch
        .queue_declare(stream.into(), passive, args)
        .await
        .map_or(0, |q| q.message_count() as usize);
    let _ = conn.close(200, "done".into()).await;
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_a_stream_exactly_once_stores_each_record_once_through_kill_9() {
    let n = 100_000;
    let (got, log) = through_kills("eos-stream", "exactly-once", n, 6).await;
    let (loss, duplicates) = tally(n, &got);
    println!(
        "exactly-once into a stream: {n} records, 6 × kill -9: read {}, loss {loss}, duplicates {duplicates}",
        got.len()
    );
    assert_eq!(
        (loss, duplicates),
        (0, 0),
        "loss {loss}, duplicates {duplicates}; {log}"
    );
    // Headers and provenance travel as application properties.
    let first = got
        .iter()
        .find(|r| r.payload == b"s-000000")
        .expect("the first record");
    assert_eq!(first.header("n").as_deref(), Some("0"));
    assert_eq!(first.header("kafka_key").as_deref(), Some("key-0"));
    assert!(
        first.header("kafka_offset").is_some(),
        "{:?}",
        first.properties
    );

    // The same kills at least once: the redelivered records are stored again.
    // Long enough a feed for three restarts, each waiting for the killed member to leave the
    // group (its session, 10 s).
    let n = 40_000;
    let (got, log) = through_kills("alo-stream", "at-least-once", n, 3).await;
    let (loss, duplicates) = tally(n, &got);
    println!(
        "at-least-once into a stream: {n} records, 3 × kill -9: read {}, loss {loss}, duplicates {duplicates}",
        got.len()
    );
    assert_eq!(loss, 0, "loss {loss}; {log}");
    assert!(duplicates > 0, "kill -9 redelivers at least once; {log}");
}

/// A stream declared over AMQP with `n` messages `m-N`, each with header `n`.
async fn stream_with(n: usize) -> String {
    let stream = unique("src-stream");
    brokers::declare_stream(&brokers::amqp().await, &stream).await;
    append(&stream, 0..n).await;
    stream
}

/// Appends messages `m-N` for `range` to `stream`, over AMQP.
async fn append(stream: &str, range: std::ops::Range<usize>) {
    let messages: Vec<_> = range
        .map(|i| {
            let mut headers = lapin::types::FieldTable::default();
            headers.insert(
                "n".into(),
                lapin::types::AMQPValue::LongString(i.to_string().into()),
            );
            (
                format!("m-{i:06}").into_bytes(),
                lapin::BasicProperties::default().with_headers(headers),
            )
        })
        .collect();
    let conn = brokers::amqp().await;
    brokers::publish_to_queue(&conn, stream, &messages).await;
}

/// How many times each `m-N` payload is in `records`.
fn counts(records: &[Record]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for r in records {
        *count
            .entry(String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
            .or_default() += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_source_loses_nothing_through_kill_9_and_reads_on_from_its_stored_offset() {
    let n = 5_000;
    let stream = stream_with(n).await;
    let topic = unique("from-stream");
    brokers::create_topic(&topic, 1).await;
    let mut bridge = Scenario::new()
        .mapping(
            Mapping::stream_to_kafka("from-stream", &stream, &topic)
                .source("offset", "first")
                .max_in_flight(200),
        )
        .start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bridge.kill9();
    bridge.spawn();
    // Until nothing more comes: the kill redelivers what was in flight, so `n` records read
    // are not yet all `n` messages.
    let got = brokers::read_topic(&topic, usize::MAX, Duration::from_secs(10)).await;
    let seen = counts(&got);
    let loss = (0..n)
        .filter(|i| !seen.contains_key(&format!("m-{i:06}")))
        .count();
    assert_eq!(loss, 0, "{} read; {}", got.len(), bridge.log_report());
    let first = got
        .iter()
        .find(|r| r.payload.as_deref() == Some(&b"m-000000"[..]))
        .expect("the first message");
    assert_eq!(first.header("n").as_deref(), Some("0"));
    assert_eq!(
        first.header("rabbitmq_queue").as_deref(),
        Some(stream.as_str())
    );

    // A clean stop stores the offset: the next run reads only what came after.
    bridge.stop_clean();
    append(&stream, n..n + 100).await;
    bridge.spawn();
    let after = brokers::read_topic(&topic, usize::MAX, Duration::from_secs(10)).await;
    bridge.stop_clean();
    let again = counts(&after);
    let new = (n..n + 100)
        .filter(|i| again.get(&format!("m-{i:06}")) == Some(&1))
        .count();
    let reread = (0..n)
        .filter(|i| again.get(&format!("m-{i:06}")) != seen.get(&format!("m-{i:06}")))
        .count();
    assert_eq!(
        (new, reread),
        (100, 0),
        "new once, old not again; {}",
        bridge.log_report()
    );
}

/// Under exactly-once into a stream, a record waiting on a retry while the records after it
/// go out, then `kill -9`: the next run delivers it. (Sent on the partition's named producer,
/// the records after it would have raised the broker's last id past it, and the broker would
/// have dropped it as a duplicate when it came again.)
#[tokio::test(flavor = "multi_thread")]
async fn a_record_waiting_on_a_retry_is_not_lost_to_deduplication() {
    let (topic, stream) = (unique("retry-in"), unique("retry-stream"));
    brokers::create_topic(&topic, 1).await;
    let records: Vec<Record> = (0..20)
        .map(|i| Record {
            key: None,
            payload: Some(if i == 10 {
                b"boom".to_vec()
            } else {
                format!("s-{i:06}").into_bytes()
            }),
            headers: Vec::new(),
            partition: 0,
            timestamp: None,
        })
        .collect();
    brokers::produce(&topic, &records, None).await;
    let group = unique("g");
    let scenario = |failing: bool| {
        let mapping = Mapping::kafka_to_stream("to-stream", &[&topic], &group, &stream)
            .set("delivery", "exactly-once")
            .set("declare", true)
            .set("dead_letter_policy", "patient");
        Scenario::new()
            .plugin(
                "patient",
                bridge_tests::artifacts::DLQ_POLICY,
                r#"retry_on = ["plugin-trap"], max_attempts = "1000", backoff = "fixed", initial_delay_ms = "1000""#,
            )
            .plugin("tenth", bridge_tests::artifacts::TENTH, "")
            .mapping(if failing { mapping.plugins(&["tenth"]) } else { mapping })
    };
    // `tenth` traps on `boom`: it waits on retries while the 19 others go out.
    let mut bridge = scenario(true).start();
    let started = Instant::now();
    while stream_length(&stream).await < 19 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bridge.kill9();
    let log = bridge.log_report();
    // The next run has no failing plugin.
    let mut bridge = scenario(false).start();
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        got = brokers::read_stream(&stream, Duration::from_secs(3)).await;
        if got.iter().any(|r| r.payload == b"boom") {
            break;
        }
    }
    bridge.stop_clean();
    let payloads: std::collections::BTreeSet<Vec<u8>> =
        got.iter().map(|r| r.payload.clone()).collect();
    assert!(
        payloads.contains(b"boom".as_slice()),
        "the retried record arrived ({} read); first run: {log}; second run: {}",
        got.len(),
        bridge.log_report()
    );
    assert_eq!(payloads.len(), 20, "every record arrived");
}

/// Messages of 20 KiB go out in batches larger than a stream frame (1 MiB): each batch is
/// split into frames the broker takes, so all of them arrive, exactly-once and at least once.
/// A message too large for any frame (a plugin makes it 2 MiB) is refused and dead-lettered,
/// and its mapping does not restart.
#[tokio::test(flavor = "multi_thread")]
async fn batches_fit_the_stream_frame_and_a_message_too_large_for_one_is_dead_lettered() {
    let n = 300;
    let (topic, big_topic, dlq) = (unique("frame-in"), unique("frame-big"), unique("frame-dlq"));
    let (stream, eos_stream) = (unique("frame-stream"), unique("frame-eos"));
    brokers::create_topics(&[&topic, &big_topic, &dlq], 1).await;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut payload = format!("s-{i:06}").into_bytes();
            payload.resize(20 * 1024, b'.');
            Record {
                key: None,
                payload: Some(payload),
                headers: vec![],
                partition: 0,
                timestamp: None,
            }
        })
        .collect();
    brokers::produce(&topic, &records, None).await;
    brokers::produce(&big_topic, &numbered(1), None).await;
    let mut bridge = Scenario::new()
        .plugin(
            "grow",
            bridge_tests::artifacts::HOSTILE,
            r#"mode = "huge-payload", size = "2097152""#,
        )
        .mapping(
            Mapping::kafka_to_stream("plain", &[&topic], &unique("g"), &stream)
                .set("declare", true),
        )
        .mapping(
            Mapping::kafka_to_stream("eos", &[&topic], &unique("g"), &eos_stream)
                .set("delivery", "exactly-once")
                .set("declare", true),
        )
        .mapping(
            Mapping::kafka_to_stream("big", &[&big_topic], &unique("g"), &stream)
                .plugins(&["grow"])
                .dead_letter_kafka(&dlq)
                .set("declare", true),
        )
        .start();
    let dead = brokers::read_topic(&dlq, 1, Duration::from_secs(60)).await;
    let mut counts = Vec::new();
    for s in [&stream, &eos_stream] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            got = brokers::read_stream(s, Duration::from_secs(2)).await;
            if got.len() >= n {
                break;
            }
        }
        let mut payloads: Vec<Vec<u8>> = got.into_iter().map(|r| r.payload).collect();
        payloads.sort();
        payloads.dedup();
        counts.push(payloads.len());
    }
    bridge.stop_clean();
    let log = bridge.log_report();
    assert_eq!(
        counts,
        vec![n, n],
        "every 20 KiB message arrived in both streams; {log}"
    );
    assert_eq!(dead.len(), 1, "the 2 MiB message was dead-lettered; {log}");
    let reason = dead[0].header("x-bridge-reason").unwrap_or_default();
    assert!(
        reason.contains("frame"),
        "the reason names the frame: {reason}"
    );
    assert!(
        !bridge.log_text().contains("Mapping stopped; restarting"),
        "no mapping restarted; {log}"
    );
}
