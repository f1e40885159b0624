//! A RabbitMQ restart in the middle of a run loses nothing, in either direction. The broker
//! is a private node (restarting the shared one would disturb other tests); Kafka is the shared
//! broker.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::bridge::{BridgeProcess, free_port, http_get};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::rabbit_node::RabbitNode;

const N: usize = 20_000;
/// RabbitMQ → Kafka runs with a window of 2 (a few hundred messages/s), so these take several
/// seconds and the restart finds them under way.
const R2K_N: usize = 2_000;
const PARTITIONS: i32 = 4;

fn numbered(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:06}").into_bytes())
        .collect()
}

/// Messages ready in `queue`, on a fresh connection (the broker may have restarted); `None`
/// while it is down.
async fn depth(url: &str, queue: &str) -> Option<u32> {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .ok()?;
    let ch = conn.create_channel().await.ok()?;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let depth = ch
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
        .ok()?
        .message_count();
    let _ = conn.close(200, "done".into()).await;
    Some(depth)
}

/// Runs a blocking node operation off the runtime and hands the node back.
async fn on_node(node: RabbitNode, op: fn(&RabbitNode)) -> RabbitNode {
    tokio::task::spawn_blocking(move || {
        op(&node);
        node
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_restart_mid_run_loses_nothing_in_either_direction() {
    let node = tokio::task::spawn_blocking(|| RabbitNode::start(None))
        .await
        .unwrap();
    let url = node.url();
    let bootstrap = brokers::kafka_bootstrap();
    let conn = brokers::amqp_to(&url).await;

    // Kafka → RabbitMQ: a topic full of messages, a durable queue on the node.
    let k2r_topic = unique("restart-k2r");
    brokers::create_topic_on(&bootstrap, &k2r_topic, PARTITIONS).await;
    let records: Vec<Record> = numbered("k2r", N)
        .into_iter()
        .enumerate()
        .map(|(i, p)| Record {
            key: Some(format!("k{}", i % 16).into_bytes()),
            payload: Some(p),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    let exchange = unique("restart-ex");
    let k2r_queue = unique("restart-out");
    brokers::declare_bound_queue(&conn, &exchange, &k2r_queue, "rk").await;

    // RabbitMQ → Kafka: a durable queue full of persistent messages, a topic.
    let r2k_queue = unique("restart-in");
    brokers::declare_queue(&conn, &r2k_queue).await;
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    let messages: Vec<_> = numbered("r2k", R2K_N)
        .into_iter()
        .map(|p| (p, persistent.clone()))
        .collect();
    brokers::publish_to_queue(&conn, &r2k_queue, &messages).await;
    let r2k_topic = unique("restart-r2k");
    brokers::create_topic_on(&bootstrap, &r2k_topic, PARTITIONS).await;
    drop(conn);

    let health = free_port();
    let mut bridge = BridgeProcess::start(&format!(
        r#"
[kafka.main]
bootstrap_servers = "{bootstrap}"
[rabbitmq.local]
url = "{url}"
[bridge]
health_listen = "127.0.0.1:{health}"

[[mapping]]
name = "to-rabbitmq"
source = {{ kafka = "main", topics = ["{k2r_topic}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}", routing_key = "rk" }}
max_in_flight = 200

[[mapping]]
name = "to-kafka"
source = {{ rabbitmq = "local", queue = "{r2k_queue}", prefetch = 2 }}
target = {{ kafka = "main", topic = "{r2k_topic}" }}
max_in_flight = 2
"#,
        unique("restart")
    ));

    // Kafka messages keep coming while RabbitMQ restarts.
    let producing = brokers::feed_topic(&bootstrap, &k2r_topic, records);

    // Restart once both directions are under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = depth(&url, &k2r_queue).await.unwrap_or(0) as usize;
        let left = depth(&url, &r2k_queue).await.unwrap_or(R2K_N as u32) as usize;
        if (out > N / 10 && left < R2K_N * 9 / 10) || Instant::now() > deadline {
            println!("restarting RabbitMQ: {out} delivered to RabbitMQ, {left} left to Kafka");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = || async move {
        tokio::task::spawn_blocking(move || http_get(health, "/readyz").map(|(code, _)| code))
            .await
            .unwrap()
    };
    assert_eq!(ready().await, Some(200), "ready before the restart");
    let node = on_node(node, RabbitNode::stop_app).await;
    // Readiness follows the outage.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready().await != Some(503) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready().await, Some(503), "not ready while RabbitMQ is down");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = on_node(node, RabbitNode::start_app).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while ready().await != Some(200) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready().await, Some(200), "ready again after the restart");

    producing.await.unwrap();
    // Everything arrives: the RabbitMQ queue fills up to N (duplicates included) and the
    // source queue empties; then read both sides.
    let deadline = Instant::now() + Duration::from_secs(240);
    while Instant::now() < deadline {
        let out = depth(&url, &k2r_queue).await.unwrap_or(0) as usize;
        let left = depth(&url, &r2k_queue).await.unwrap_or(1);
        if out >= N && left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let written = brokers::wait_topic_settled(
        &bootstrap,
        &r2k_topic,
        PARTITIONS,
        R2K_N,
        Duration::from_secs(60),
    )
    .await;
    bridge.stop_clean();
    let conn = brokers::amqp_to(&url).await;
    let arrived =
        brokers::consume_queue(&conn, &k2r_queue, usize::MAX, Duration::from_secs(3)).await;
    let (k2r_loss, k2r_dups) =
        brokers::loss_and_duplicates(N, arrived.iter().map(|r| r.payload.as_slice()));
    let t = r2k_topic.clone();
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || {
        brokers::consume_topic_from(&b, &t, usize::MAX, Duration::from_secs(10))
    })
    .await
    .unwrap();
    let (r2k_loss, r2k_dups) =
        brokers::loss_and_duplicates(R2K_N, got.iter().filter_map(|r| r.payload.as_deref()));
    println!(
        "RabbitMQ restart: Kafka→RabbitMQ loss = {k2r_loss}, duplicates = {k2r_dups}; \
         RabbitMQ→Kafka loss = {r2k_loss}, duplicates = {r2k_dups} ({written} written)"
    );
    let log = bridge.log_text();
    assert!(
        log.contains("restarting"),
        "the bridge saw the restart; log:\n{log}"
    );
    assert_eq!((k2r_loss, r2k_loss), (0, 0), "log:\n{log}");
    drop(node);
}
