//! A rebalance storm: a second bridge joins and leaves the consumer group every 10 s for two
//! minutes under a steady Kafka → RabbitMQ stream. Nothing is lost, every partition keeps
//! making progress, and the rebalances show in the log; duplicates are reported.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::brokers::{self, unique};
use bridge_tests::scenario::{Mapping, Scenario};

const PARTITIONS: i32 = 6;
const STORM: Duration = Duration::from_secs(120);
const WINDOW: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn a_member_joining_and_leaving_every_10_s_loses_nothing() {
    // About 1 000 messages/s for the whole storm and a little more.
    let n = (STORM.as_secs() as usize + 10) * 1000;
    let topic = unique("storm");
    brokers::create_topic(&topic, PARTITIONS).await;
    let exchange = unique("storm-ex");
    let queue = unique("storm-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    // Both bridges run the same mapping, in one consumer group.
    let scenario = Scenario::new().mapping(
        Mapping::kafka_to_rabbitmq("storm", &[&topic], &unique("storm"), &exchange)
            .routing_key("rk"),
    );
    let mut steady = scenario.clone().start();
    let feed =
        brokers::feed_partitions(&brokers::kafka_bootstrap(), &topic, "storm", n, PARTITIONS);

    let start = Instant::now();
    let mut joiner = scenario.start();
    let mut joins = 1;
    while start.elapsed() < STORM {
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The joining bridge leaves cleanly.
        joiner.stop_clean();
        if start.elapsed() < STORM {
            tokio::time::sleep(Duration::from_secs(10)).await;
            joiner.spawn();
            joins += 1;
        }
    }
    feed.await.unwrap();
    brokers::wait_distinct(&arrived, n, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    steady.stop_clean();
    collector.abort();

    let got = arrived.lock().unwrap();
    let (loss, duplicates) = brokers::loss_and_duplicates(n, got.iter().map(|(_, p)| p.as_slice()));
    // Arrivals per partition in each window of the storm (a payload's index tells its partition).
    let windows = (STORM.as_secs() / WINDOW.as_secs()) as usize;
    let mut progress = vec![vec![0usize; PARTITIONS as usize]; windows];
    for (at, payload) in got.iter() {
        let w = at.saturating_duration_since(start).as_secs() / WINDOW.as_secs();
        let index: usize = String::from_utf8_lossy(payload)
            .rsplit('-')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap();
        if let Some(row) = progress.get_mut(w as usize) {
            row[index % PARTITIONS as usize] += 1;
        }
    }
    let log = format!("{}\n{}", steady.log_text(), joiner.log_text());
    let revocations = log.matches("Kafka partitions revoked").count();
    println!(
        "rebalance storm: {joins} joins, {revocations} revocations logged, loss = {loss}, \
         duplicates = {duplicates}; arrivals per partition per {} s window: {progress:?}",
        WINDOW.as_secs()
    );
    assert_eq!(loss, 0, "log:\n{log}");
    for (w, row) in progress.iter().enumerate() {
        assert!(
            row.iter().all(|&c| c > 0),
            "every partition progresses in window {w}: {row:?}"
        );
    }
    assert!(revocations >= joins, "rebalances are logged; log:\n{log}");
}
