//! Each direction end to end against real brokers, with payloads, keys, headers and
//! properties compared byte for byte.

use std::time::Duration;

use bridge_tests::bridge::BridgeProcess;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

fn records(n: usize) -> Vec<Record> {
    let start = brokers::recent_timestamp(3_600_000);
    (0..n)
        .map(|i| Record {
            key: Some(format!("key-{}", i % 7).into_bytes()),
            payload: Some(format!(r#"{{"type":"damage","n":{i}}}"#).into_bytes()),
            headers: vec![
                ("trace-id".to_string(), format!("t{i}").into_bytes()),
                ("bin".to_string(), vec![0, 159, 146, 150]),
                ("trace-id".to_string(), b"second".to_vec()),
            ],
            partition: 0,
            timestamp: Some(start + i as i64),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_rabbitmq_with_provenance_headers() {
    let topic = unique("events-order-damage");
    let exchange = unique("events");
    let queue = unique("order-damage-queue");
    brokers::create_topic(&topic, 3).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "order.damage").await;
    let sent = records(300);
    brokers::produce(&topic, &sent, None).await;

    let mut bridge = Scenario::new()
        .mapping(
            Mapping::kafka_to_rabbitmq("order-damage", &[&topic], &unique("bridge"), &exchange)
                .routing_key("order.damage"),
        )
        .start();
    let got = brokers::consume_queue(&conn, &queue, sent.len(), Duration::from_secs(30)).await;
    bridge.stop_clean();
    assert!(
        got.len() == sent.len(),
        "{:?}, expected {:?}; {}",
        got.len(),
        sent.len(),
        bridge.log_report()
    );

    for m in &got {
        let n: usize = serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["n"]
            .as_u64()
            .unwrap() as usize;
        let original = &sent[n];
        assert_eq!(m.payload, original.payload.clone().unwrap());
        assert_eq!(m.routing_key, "order.damage");
        assert_eq!(*m.properties.delivery_mode(), Some(2), "persistent");
        assert_eq!(m.header("kafka_topic").as_deref(), Some(topic.as_str()));
        assert_eq!(
            m.header("kafka_key"),
            original.key.clone().map(|k| String::from_utf8(k).unwrap())
        );
        assert!(m.header("kafka_partition").unwrap().parse::<i32>().unwrap() < 3);
        assert!(m.header("kafka_offset").unwrap().parse::<i64>().is_ok());
        let headers = bridge_host::amqp::from_field_table(m.properties.headers().as_ref().unwrap());
        let trace: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n == "trace-id")
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(
            trace,
            vec![format!("t{n}").into_bytes(), b"second".to_vec()],
            "repeated headers keep order"
        );
        assert_eq!(
            headers.iter().find(|(n, _)| n == "bin").unwrap().1,
            vec![0, 159, 146, 150],
            "binary header bytes"
        );
    }
    // Per-partition order: offsets of each partition arrive increasing.
    let mut last = std::collections::HashMap::new();
    for m in &got {
        let p = m.header("kafka_partition").unwrap();
        let o: i64 = m.header("kafka_offset").unwrap().parse().unwrap();
        if let Some(prev) = last.insert(p, o) {
            assert!(o > prev, "order kept within a partition");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_to_kafka_with_provenance_headers() {
    let queue = unique("warehouse-events");
    let topic = unique("warehouse-events");
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &queue).await;
    let messages: Vec<_> = (0..200)
        .map(|i| {
            let mut headers = FieldTable::default();
            headers.insert(
                "kafka_key".into(),
                AMQPValue::LongString(format!("k{i}").into()),
            );
            headers.insert("count".into(), AMQPValue::LongLongInt(i));
            headers.insert("flag".into(), AMQPValue::Boolean(i % 2 == 0));
            let props = BasicProperties::default()
                .with_headers(headers)
                .with_content_type("application/json".into())
                .with_message_id(format!("m{i}").into());
            (format!(r#"{{"n":{i}}}"#).into_bytes(), props)
        })
        .collect();
    brokers::publish_to_queue(&conn, &queue, &messages).await;

    let mut bridge = Scenario::new()
        .mapping(Mapping::rabbitmq_to_kafka("warehouse", &queue, &topic))
        .start();
    let got = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&topic, 200, Duration::from_secs(30))
    })
    .await
    .unwrap();
    bridge.stop_clean();
    assert!(
        got.len() == 200,
        "{:?}, expected {:?}; {}",
        got.len(),
        200,
        bridge.log_report()
    );
    for (i, r) in got.iter().enumerate() {
        assert_eq!(
            r.payload.as_deref(),
            Some(format!(r#"{{"n":{i}}}"#).as_bytes()),
            "queue order kept"
        );
        assert_eq!(
            r.key.as_deref(),
            Some(format!("k{i}").as_bytes()),
            "key from `kafka_key`"
        );
        assert_eq!(r.header("rabbitmq_queue").as_deref(), Some(queue.as_str()));
        assert_eq!(r.header("rabbitmq_exchange").as_deref(), Some(""));
        assert_eq!(
            r.header("rabbitmq_routing_key").as_deref(),
            Some(queue.as_str())
        );
        assert_eq!(r.header("count"), Some(i.to_string()));
        assert_eq!(r.header("flag"), Some((i % 2 == 0).to_string()));
    }
    // Everything was acked: the queue is empty.
    let left = brokers::consume_queue(&conn, &queue, 1, Duration::from_secs(1)).await;
    assert!(left.is_empty(), "no message left unacked");
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_kafka_keeps_keys_headers_timestamps_and_partitions() {
    let from = unique("damage");
    let to = unique("damage-copy");
    brokers::create_topic(&from, 3).await;
    brokers::create_topic(&to, 3).await;
    let sent = records(150);
    for p in 0..3 {
        brokers::produce(&from, &sent[p * 50..(p + 1) * 50], Some(p as i32)).await;
    }
    // Two clusters, `a` and `b`, on the one test broker.
    let b = brokers::kafka_bootstrap();
    let mut bridge = Scenario::with_brokers(&format!(
        "[kafka.a]\nbootstrap_servers = \"{b}\"\n[kafka.b]\nbootstrap_servers = \"{b}\"\n"
    ))
    .mapping(
        Mapping::kafka_to_kafka("replicate", &[&from], &unique("bridge"), &to)
            .source("kafka", "a")
            .target("kafka", "b")
            .target("same_partition", true)
            .set("provenance_headers", false),
    )
    .start();
    let got = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&to, 150, Duration::from_secs(30))
    })
    .await
    .unwrap();
    bridge.stop_clean();
    assert!(
        got.len() == 150,
        "{:?}, expected {:?}; {}",
        got.len(),
        150,
        bridge.log_report()
    );
    for r in &got {
        let n =
            serde_json::from_slice::<serde_json::Value>(r.payload.as_ref().unwrap()).unwrap()["n"]
                .as_u64()
                .unwrap() as usize;
        let original = &sent[n];
        assert_eq!(r.key, original.key);
        assert_eq!(r.timestamp, original.timestamp);
        assert_eq!(r.partition as usize, n / 50, "same partition number");
        let mut expected = original.headers.clone();
        expected.push(("x-bridge-hops".to_string(), b"1".to_vec()));
        assert_eq!(
            r.headers, expected,
            "headers kept byte for byte, plus the hop count"
        );
    }
}

/// Kafka → RabbitMQ → Kafka through two mappings keeps every header byte for byte and in
/// order, repeated names included (an AMQP field table sorts its names; the bridge carries
/// the order across).
#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_rabbitmq_to_kafka_keeps_header_order() {
    let (from, to) = (unique("order-src"), unique("order-back"));
    brokers::create_topic(&from, 1).await;
    brokers::create_topic(&to, 1).await;
    let (exchange, queue) = (unique("order-ex"), unique("order-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let mut sent = records(20);
    for r in &mut sent {
        r.headers.insert(0, ("zz-first".to_string(), b"z".to_vec()));
    }
    let mut bridge = BridgeProcess::start(&brokers::two_way_toml(
        &brokers::kafka_bootstrap(),
        &from,
        &exchange,
        &queue,
        &to,
        "",
    ));
    brokers::produce(&from, &sent, None).await;
    let got = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&to, 20, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let log = bridge.log_text();
    bridge.stop_clean();
    assert_eq!(got.len(), 20, "log:\n{log}");
    for r in &got {
        let n =
            serde_json::from_slice::<serde_json::Value>(r.payload.as_ref().unwrap()).unwrap()["n"]
                .as_u64()
                .unwrap() as usize;
        // The bridge's own headers (hops, provenance, the key, the AMQP properties it published
        // with) aside, the rest come back as sent.
        let theirs: Vec<_> = r
            .headers
            .iter()
            .filter(|(name, _)| {
                !["x-bridge-", "kafka_", "rabbitmq_", "amqp_"]
                    .iter()
                    .any(|p| name.starts_with(p))
            })
            .cloned()
            .collect();
        assert_eq!(theirs, sent[n].headers, "message {n}");
    }
}

/// Without `declare`, a topic, queue or exchange that does not exist stops the bridge at
/// startup, naming every one with its mapping and key.
#[test]
fn missing_topics_queues_and_exchanges_stop_the_bridge_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let (topic, queue, exchange) = (unique("nope-t"), unique("nope-q"), unique("nope-ex"));
    let out_topic = unique("nope-out");
    std::fs::write(
        &path,
        format!(
            r#"{}
[[mapping]]
name = "out"
source = {{ kafka = "main", topics = ["{topic}"] }}
target = {{ rabbitmq = "local", exchange = "{exchange}" }}

[[mapping]]
name = "in"
source = {{ rabbitmq = "local", queue = "{queue}" }}
target = {{ kafka = "main", topic = "{out_topic}" }}
"#,
            brokers::brokers_toml()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bridge_tests::bridge::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        format!("mapping `out`.source.topics: topic `{topic}` does not exist on `main`"),
        format!("mapping `in`.target.topic: topic `{out_topic}` does not exist on `main`"),
        format!("mapping `out`.target.exchange: exchange `{exchange}` is not usable on `local`"),
        format!("mapping `in`.source.queue: queue `{queue}` is not usable on `local`"),
    ] {
        assert!(stderr.contains(&expected), "{expected}\nin: {stderr}");
    }
    assert!(
        stderr.contains("declare = true"),
        "says how to fix it: {stderr}"
    );
}

/// A thousand mappings, two of whose queues are missing (past the 681st, where the checks
/// once ran out of channels and blamed the first queue): each error names its own mapping and
/// queue, and no other mapping is blamed.
#[tokio::test(flavor = "multi_thread")]
async fn among_a_thousand_mappings_each_missing_queue_is_named_with_its_own_mapping() {
    const MAPPINGS: usize = 1000;
    const MISSING: [usize; 2] = [700, 990];
    let (run, topic) = (unique("thousand"), unique("thousand-t"));
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    let ch = conn.create_channel().await.unwrap();
    for i in (0..MAPPINGS).filter(|i| !MISSING.contains(i)) {
        ch.queue_declare(
            format!("{run}-q{i}").as_str().into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let mut scenario = Scenario::new();
    for i in 0..MAPPINGS {
        scenario = scenario.mapping(Mapping::rabbitmq_to_kafka(
            &format!("m{i}"),
            &format!("{run}-q{i}"),
            &topic,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, scenario.to_toml()).unwrap();
    let out = tokio::process::Command::new(bridge_tests::bridge::binary())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for i in (0..MAPPINGS).filter(|i| !MISSING.contains(i)) {
        let queue = format!("{run}-q{i}");
        let _ = ch
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    let _ = ch.close(200, "done".into()).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for i in MISSING {
        let expected =
            format!("mapping `m{i}`.source.queue: queue `{run}-q{i}` is not usable on `local`");
        assert!(stderr.contains(&expected), "{expected}\nin: {stderr}");
    }
    let blamed = stderr.matches(".source.queue: queue").count();
    assert_eq!(
        blamed,
        MISSING.len(),
        "only the missing queues are named: {stderr}"
    );
}
