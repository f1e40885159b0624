//! Topology removed while the bridge runs, during a stream: the target queue's binding, the
//! target exchange, the source queue and the target topic, in turn. Each gives an error naming
//! the mapping and the object, `/readyz` answers 503 and says why, nothing still in the source
//! is lost, and the bridge recovers on its own once the object is back.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::bridge::{BridgeProcess, wait_readyz};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Running, Scenario};
use lapin::options::{ExchangeDeleteOptions, QueueBindOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

const PARTITIONS: i32 = 2;

/// Waits until `/readyz` answers 503 naming `mapping` and `object`, and the bridge logged a
/// warning or an error naming both; prints what it said and how long it took.
async fn expect_reported(
    bridge: &BridgeProcess,
    health: u16,
    what: &str,
    mapping: &str,
    object: &str,
    limit: Duration,
) {
    let answer = wait_readyz(health, 503, limit).await;
    let (took, why) = answer.unwrap_or_default();
    let reasons = serde_json::from_str::<serde_json::Value>(&why)
        .map(|v| v["not_ready_because"].to_string())
        .unwrap_or(why);
    println!("{what}: /readyz 503 after {took:?}: {reasons}");
    assert!(
        reasons.contains(mapping) && reasons.contains(object),
        "{what}: readiness names the mapping and `{object}`: {reasons}\n{}",
        bridge.log_text()
    );
    let line = bridge
        .wait_log_line(&[mapping, object], Duration::from_secs(10))
        .await;
    println!("{what}: log: {line:?}");
    assert!(
        line.is_some(),
        "{what}: an error naming the mapping and `{object}`:\n{}",
        bridge.log_text()
    );
}

fn records(prefix: &str, range: std::ops::Range<usize>) -> Vec<Record> {
    range
        .map(|i| Record {
            key: Some(format!("k{}", i % 8).into_bytes()),
            payload: Some(format!("{prefix}-{i:06}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect()
}

/// Kafka → RabbitMQ, `orders-out`, with a health listener.
fn k2r_scenario(topic: &str, exchange: &str) -> Scenario {
    Scenario::new().health().mapping(
        Mapping::kafka_to_rabbitmq("orders-out", &[topic], &unique("topology"), exchange)
            .routing_key("rk")
            .max_in_flight(100),
    )
}

/// RabbitMQ → Kafka, `orders-in`, with a health listener.
fn r2k_scenario(queue: &str, topic: &str) -> Scenario {
    Scenario::new().health().mapping(
        Mapping::rabbitmq_to_kafka("orders-in", queue, topic)
            .source("prefetch", 50)
            .max_in_flight(50),
    )
}

/// A RabbitMQ → Kafka mapping, `orders-in`, from a fresh queue to a fresh topic, ready.
struct R2k {
    queue: String,
    topic: String,
    conn: lapin::Connection,
    health: u16,
    bridge: Running,
}

impl R2k {
    async fn start() -> R2k {
        let queue = unique("topo-in");
        let topic = unique("topo-r2k");
        brokers::create_topic(&topic, PARTITIONS).await;
        let conn = brokers::amqp().await;
        brokers::declare_queue(&conn, &queue).await;
        let bridge = r2k_scenario(&queue, &topic).start();
        bridge.ready().await;
        let health = bridge.health_port();
        R2k {
            queue,
            topic,
            conn,
            health,
            bridge,
        }
    }
}

/// Kafka → RabbitMQ, with the binding or the exchange taken away mid-stream and put back.
async fn kafka_to_rabbitmq_target_removed(remove_exchange: bool) {
    const N: usize = 10_000;
    let topic = unique("topo-k2r");
    brokers::create_topic(&topic, PARTITIONS).await;
    let exchange = unique("topo-ex");
    let queue = unique("topo-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let (seen, _collecting) = brokers::collect_queue(&queue).await;
    let bridge = k2r_scenario(&topic, &exchange).start();
    let health = bridge.health_port();
    assert!(
        wait_readyz(health, 200, Duration::from_secs(60))
            .await
            .is_some()
    );
    let _feeding = brokers::feed_topic(&brokers::kafka_bootstrap(), &topic, records("k2r", 0..N));
    while seen.lock().unwrap().len() < 500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ch = conn.create_channel().await.unwrap();
    let object = if remove_exchange {
        ch.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .unwrap();
        "exchange"
    } else {
        ch.queue_unbind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "rk".into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        "binding"
    };
    expect_reported(
        &bridge,
        health,
        &format!("{object} removed"),
        "orders-out",
        &exchange,
        Duration::from_secs(30),
    )
    .await;

    // Back again: the bridge recovers on its own and delivers everything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if remove_exchange {
        brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    } else {
        ch.queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "rk".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let back = Instant::now();
    assert!(
        wait_readyz(health, 200, Duration::from_secs(60))
            .await
            .is_some(),
        "ready again once the {object} is back:\n{}",
        bridge.log_text()
    );
    let ready_after = back.elapsed();
    brokers::wait_distinct(&seen, N, Duration::from_secs(120)).await;
    let (loss, duplicates) = brokers::arrivals_loss_and_duplicates(N, &seen);
    println!(
        "{object} removed: ready {ready_after:?} after it was back, everything delivered after {:?}; loss {loss}, duplicates {duplicates}",
        back.elapsed()
    );
    if std::env::var("SHOW_LOG").is_ok() {
        println!("{}", bridge.log_text());
    }
    assert_eq!(loss, 0, "nothing lost:\n{}", bridge.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn target_binding_removed_then_restored_loses_nothing() {
    kafka_to_rabbitmq_target_removed(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn target_exchange_removed_then_restored_loses_nothing() {
    kafka_to_rabbitmq_target_removed(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn source_queue_removed_then_restored_resumes() {
    const N: usize = 2_000;
    let R2k {
        queue,
        topic,
        conn,
        health,
        bridge,
    } = R2k::start().await;
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    let first: Vec<_> = (0..N)
        .map(|i| (format!("before-{i:06}").into_bytes(), persistent.clone()))
        .collect();
    brokers::publish_to_queue(&conn, &queue, &first).await;
    brokers::wait_topic_settled(
        &brokers::kafka_bootstrap(),
        &topic,
        PARTITIONS,
        N,
        Duration::from_secs(60),
    )
    .await;

    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    expect_reported(
        &bridge,
        health,
        "source queue removed",
        "orders-in",
        &queue,
        Duration::from_secs(30),
    )
    .await;

    // The queue is back with new messages: they are bridged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    brokers::declare_queue(&conn, &queue).await;
    let second: Vec<_> = (0..N)
        .map(|i| (format!("after-{i:06}").into_bytes(), persistent.clone()))
        .collect();
    brokers::publish_to_queue(&conn, &queue, &second).await;
    assert!(
        wait_readyz(health, 200, Duration::from_secs(60))
            .await
            .is_some(),
        "ready again once the queue is back:\n{}",
        bridge.log_text()
    );
    brokers::wait_topic_settled(
        &brokers::kafka_bootstrap(),
        &topic,
        PARTITIONS,
        2 * N,
        Duration::from_secs(60),
    )
    .await;
    let got = brokers::consume_topic(&topic, 2 * N, Duration::from_secs(10));
    let after: Vec<&[u8]> = got
        .iter()
        .filter_map(|r| r.payload.as_deref())
        .filter(|p| p.starts_with(b"after-"))
        .collect();
    let (loss, duplicates) = brokers::loss_and_duplicates(N, after.into_iter());
    println!("source queue removed: after it was back, loss {loss}, duplicates {duplicates}");
    assert_eq!(
        loss,
        0,
        "what the new queue holds is bridged:\n{}",
        bridge.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn target_topic_removed_then_restored_loses_nothing_from_the_queue() {
    const N: usize = 30_000;
    let R2k {
        queue,
        topic,
        conn,
        health,
        bridge,
    } = R2k::start().await;
    let payloads: Vec<Vec<u8>> = (0..N).map(|i| format!("r2k-{i:06}").into_bytes()).collect();
    let feeding = brokers::feed_queue(&brokers::amqp_url(), &queue, payloads);
    let bootstrap = brokers::kafka_bootstrap();
    brokers::wait_topic_count(&bootstrap, &topic, PARTITIONS, 500, Duration::from_secs(60)).await;

    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    // Records in the topic just before it goes: what it takes with it is about this many.
    let before = brokers::wait_topic_count(&bootstrap, &topic, PARTITIONS, 0, Duration::ZERO).await;
    admin
        .delete_topics(&[topic.as_str()], &AdminOptions::new())
        .await
        .unwrap();
    let removed = Instant::now();
    expect_reported(
        &bridge,
        health,
        "target topic removed",
        "orders-in",
        &topic,
        Duration::from_secs(60),
    )
    .await;

    // What the deleted topic held is gone with it; what is still in the queue is not.
    tokio::time::sleep(Duration::from_secs(3)).await;
    brokers::create_topic(&topic, PARTITIONS).await;
    assert!(
        wait_readyz(health, 200, Duration::from_secs(90))
            .await
            .is_some(),
        "ready again once the topic is back:\n{}",
        bridge.log_text()
    );
    // Everything left the queue, acked only after Kafka took it (once all of it was published:
    // on a loaded machine the feeder may still be at it, and the queue empty for a moment).
    feeding.await.expect("the queue's feeder");
    let deadline = Instant::now() + Duration::from_secs(120);
    while brokers::queue_depth(&conn, &queue).await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let left = brokers::queue_depth(&conn, &queue).await;
    let got = brokers::consume_topic(&topic, N, Duration::from_secs(10));
    let indexes: std::collections::BTreeSet<usize> = got
        .iter()
        .filter_map(|r| r.payload.as_deref())
        .filter_map(|p| {
            std::str::from_utf8(p)
                .ok()?
                .strip_prefix("r2k-")?
                .parse()
                .ok()
        })
        .collect();
    let first = indexes.first().copied().unwrap_or(N);
    let gaps = (first..N).filter(|i| !indexes.contains(i)).count();
    println!(
        "target topic removed: recovered {:?} after it was back; the old topic had {before} records, the new one holds {first}..{N} with {gaps} gaps; {left} left in the queue",
        removed.elapsed(),
    );
    assert_eq!(
        left,
        0,
        "the queue drains into the new topic:\n{}",
        bridge.log_text()
    );
    // The new topic holds everything from where the old one stopped (a second of the stream
    // may have gone with the old topic), without a gap.
    assert_eq!(gaps, 0, "nothing lost after the topic came back");
    assert!(
        first as i64 <= before + 1_000,
        "the new topic starts where the old one stopped ({first} vs {before})"
    );
}
