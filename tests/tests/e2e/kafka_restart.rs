//! A Kafka broker crash and restart in the middle of a run loses nothing, in either
//! direction, and readiness follows the outage. The broker is a private Apache Kafka node (its
//! log directory survives the restart); RabbitMQ is the shared one.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::bridge::{BridgeProcess, free_port, http_get};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::kafka_node::KafkaNode;

const N: usize = 6_000;
const PARTITIONS: i32 = 4;

fn written(bootstrap: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(2))
                .map_or(0, |(_, high)| high)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_restart_mid_run_loses_nothing_in_either_direction() {
    let mut kafka = tokio::task::spawn_blocking(KafkaNode::start).await.unwrap();
    let bootstrap = kafka.bootstrap.clone();
    let conn = brokers::amqp().await;

    let k2r_topic = unique("krestart-k2r");
    brokers::create_topic_on(&bootstrap, &k2r_topic, PARTITIONS).await;
    let exchange = unique("krestart-ex");
    let k2r_queue = unique("krestart-out");
    brokers::declare_bound_queue(&conn, &exchange, &k2r_queue, "rk").await;
    let (arrived, collector) = brokers::collect_queue(&k2r_queue).await;

    let r2k_queue = unique("krestart-in");
    brokers::declare_queue(&conn, &r2k_queue).await;
    let r2k_topic = unique("krestart-r2k");
    brokers::create_topic_on(&bootstrap, &r2k_topic, PARTITIONS).await;

    let health = free_port();
    let mut bridge = BridgeProcess::start(&brokers::two_way_toml(
        &bootstrap,
        &k2r_topic,
        &exchange,
        &r2k_queue,
        &r2k_topic,
        &format!("[bridge]\nhealth_listen = \"127.0.0.1:{health}\"\n"),
    ));

    // Both directions are fed at about 1 000 messages/s while the broker goes down.
    let records: Vec<Record> = (0..N)
        .map(|i| Record {
            key: Some(format!("k{}", i % 16).into_bytes()),
            payload: Some(format!("k2r-{i:06}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    let to_kafka = brokers::feed_topic(&bootstrap, &k2r_topic, records);
    let to_rabbitmq = brokers::feed_queue(
        &brokers::amqp_url(),
        &r2k_queue,
        (0..N).map(|i| format!("r2k-{i:06}").into_bytes()).collect(),
    );

    let ready = || async move {
        tokio::task::spawn_blocking(move || http_get(health, "/readyz").map(|(code, _)| code))
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = arrived.lock().unwrap().len();
        let (b, t) = (bootstrap.clone(), r2k_topic.clone());
        let into = tokio::task::spawn_blocking(move || written(&b, &t))
            .await
            .unwrap() as usize;
        if (out > N / 10 && into > N / 10) || Instant::now() > deadline {
            println!("killing Kafka: {out} delivered to RabbitMQ, {into} to Kafka");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready().await, Some(200), "ready before the outage");
    let restarting = tokio::task::spawn_blocking(move || {
        kafka.restart(Duration::from_secs(10));
        kafka
    });
    let mut saw_unready = false;
    while !restarting.is_finished() && !saw_unready {
        saw_unready = ready().await == Some(503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kafka = restarting.await.unwrap();
    to_kafka.await.unwrap();
    to_rabbitmq.await.unwrap();

    // Everything arrives on both sides.
    brokers::wait_distinct(&arrived, N, Duration::from_secs(180)).await;
    brokers::wait_topic_settled(
        &bootstrap,
        &r2k_topic,
        PARTITIONS,
        N,
        Duration::from_secs(120),
    )
    .await;
    let back_to_ready = ready().await;
    bridge.stop_clean();
    collector.abort();
    let (k2r_loss, k2r_dups) = brokers::arrivals_loss_and_duplicates(N, &arrived);
    let (r2k_loss, r2k_dups) = brokers::topic_loss_and_duplicates(&bootstrap, &r2k_topic, N).await;
    println!(
        "Kafka restart: Kafka→RabbitMQ loss = {k2r_loss}, duplicates = {k2r_dups}; \
         RabbitMQ→Kafka loss = {r2k_loss}, duplicates = {r2k_dups}"
    );
    let log = bridge.log_text();
    assert_eq!((k2r_loss, r2k_loss), (0, 0), "log:\n{log}");
    assert!(saw_unready, "/readyz answered 503 while Kafka was down");
    assert_eq!(back_to_ready, Some(200), "ready again after the restart");
    drop(kafka);
}
