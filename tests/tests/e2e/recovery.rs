//! Crashes and restarts lose nothing: `kill -9` in the middle of a run, and a graceful
//! shutdown followed by a restart (which must not duplicate either).

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};

fn scenario(topic: &str, exchange: &str, group: &str) -> Scenario {
    Scenario::new().bridge("shutdown_timeout_secs", 20).mapping(
        Mapping::kafka_to_rabbitmq("crash-test", &[topic], group, exchange).routing_key("rk"),
    )
}

fn numbered(range: std::ops::Range<usize>) -> Vec<Record> {
    range
        .map(|i| Record {
            key: Some(format!("{}", i % 100).into_bytes()),
            payload: Some(format!("message-{i:07}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect()
}

async fn wait_for(seen: &brokers::Arrivals, count: usize, idle: Duration) {
    let mut last_len = 0;
    let mut last_change = Instant::now();
    loop {
        let len = seen.lock().unwrap().len();
        if len >= count || last_change.elapsed() > idle {
            return;
        }
        if len != last_len {
            last_len = len;
            last_change = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kafka → RabbitMQ, `kill -9` a third of the way through 100 000 messages. The restarted
/// process joins the group while the killed member's session has not yet expired.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_rabbitmq_kill_9_in_the_middle_of_100k_messages_loses_nothing() {
    const N: usize = 100_000;
    let topic = unique("crash");
    brokers::create_topic(&topic, 4).await;
    let exchange = unique("crash-ex");
    let queue = unique("crash-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::produce(&topic, &numbered(0..N), None).await;
    let (seen, task) = brokers::collect_queue(&queue).await;

    let mut bridge = scenario(&topic, &exchange, &unique("bridge")).start();
    wait_for(&seen, N / 3, Duration::from_secs(60)).await;
    let at_kill = seen.lock().unwrap().len();
    bridge.kill9();
    assert!(
        at_kill > 0 && at_kill < N,
        "killed in the middle (at {at_kill}); log:\n{}",
        bridge.log_text()
    );
    bridge.spawn();
    brokers::wait_distinct(&seen, N, Duration::from_secs(180)).await;
    bridge.stop_clean();
    task.abort();
    let got = seen.lock().unwrap();
    let (loss, duplicates) = brokers::loss_and_duplicates(N, got.iter().map(|(_, p)| p.as_slice()));
    println!(
        "Kafka→RabbitMQ kill -9 at {at_kill} of {N}: loss = {loss}, duplicates = {duplicates}"
    );
    assert!(
        loss == 0,
        "{:?}, expected {:?}; {}",
        loss,
        0,
        bridge.log_report()
    );
}

/// RabbitMQ → Kafka, `kill -9` a third of the way through 100 000 messages: the restarted
/// process's idempotent producer is a new one, and what the killed one had produced but not
/// acked comes back from the queue.
#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_to_kafka_kill_9_in_the_middle_of_100k_messages_loses_nothing() {
    const N: usize = 100_000;
    let bootstrap = brokers::kafka_bootstrap();
    let queue = unique("crash-in");
    let topic = unique("crash-out");
    brokers::create_topic(&topic, 8).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &queue).await;
    let messages: Vec<_> = (0..N)
        .map(|i| {
            (
                format!("message-{i:07}").into_bytes(),
                lapin::BasicProperties::default(),
            )
        })
        .collect();
    brokers::publish_to_queue(&conn, &queue, &messages).await;
    let mut bridge = Scenario::new()
        .mapping(Mapping::rabbitmq_to_kafka("crash-in", &queue, &topic).source("prefetch", 1000))
        .start();
    // Kill once about a third has been taken off the queue.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if (brokers::queue_depth(&conn, &queue).await as usize) < N * 2 / 3
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bridge.kill9();
    bridge.spawn();
    brokers::wait_topic_settled(&bootstrap, &topic, 8, N, Duration::from_secs(180)).await;
    bridge.stop_clean();
    let (t, b) = (topic.clone(), bootstrap.clone());
    let got = tokio::task::spawn_blocking(move || {
        brokers::consume_topic_from(&b, &t, usize::MAX, Duration::from_secs(10))
    })
    .await
    .unwrap();
    let (loss, duplicates) =
        brokers::loss_and_duplicates(N, got.iter().filter_map(|r| r.payload.as_deref()));
    let left = brokers::queue_depth(&conn, &queue).await;
    println!(
        "RabbitMQ→Kafka kill -9: loss = {loss}, duplicates = {duplicates}, left in queue = {left}"
    );
    assert!(
        loss == 0,
        "{:?}, expected {:?}; {}",
        loss,
        0,
        bridge.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_then_restart_has_no_duplicates() {
    let topic = unique("graceful");
    let exchange = unique("graceful-ex");
    let queue = unique("graceful-q");
    brokers::create_topic(&topic, 2).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let (seen, task) = brokers::collect_queue(&queue).await;
    let scenario = scenario(&topic, &exchange, &unique("bridge"));

    brokers::produce(&topic, &numbered(0..5_000), None).await;
    let mut bridge = scenario.start();
    wait_for(&seen, 5_000, Duration::from_secs(60)).await;
    bridge.stop_clean();

    brokers::produce(&topic, &numbered(5_000..10_000), None).await;
    bridge.spawn();
    wait_for(&seen, 10_000, Duration::from_secs(60)).await;
    // Give a duplicate, if any, time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    bridge.stop_clean();
    task.abort();
    let got = seen.lock().unwrap();
    let (loss, duplicates) =
        brokers::loss_and_duplicates(10_000, got.iter().map(|(_, p)| p.as_slice()));
    assert_eq!((loss, duplicates), (0, 0), "{}", bridge.log_report());
}

/// Two bridges in one consumer group share the partitions; when one is killed the other takes
/// over its partitions once the broker expires the dead member's session.
#[tokio::test(flavor = "multi_thread")]
async fn two_bridges_in_one_group_one_killed_loses_nothing() {
    const N: usize = 40_000;
    let topic = unique("shared");
    brokers::create_topic(&topic, 4).await;
    let exchange = unique("shared-ex");
    let queue = unique("shared-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::produce(&topic, &numbered(0..N), None).await;
    let (seen, task) = brokers::collect_queue(&queue).await;

    let scenario = scenario(&topic, &exchange, &unique("bridge"));
    let mut first = scenario.clone().start();
    let mut second = scenario.start();
    wait_for(&seen, N / 4, Duration::from_secs(60)).await;
    let assigned = |log: String| log.matches("Kafka partitions assigned").count();
    let before = assigned(second.log_text());
    first.kill9();
    let killed = Instant::now();
    // The broker expires the dead member after the session timeout (10 s) and the survivor
    // is assigned its partitions.
    while assigned(second.log_text()) == before && killed.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    brokers::wait_distinct(&seen, N, Duration::from_secs(120)).await;
    second.stop_clean();
    task.abort();
    let got = seen.lock().unwrap();
    let (loss, duplicates) = brokers::loss_and_duplicates(N, got.iter().map(|(_, p)| p.as_slice()));
    println!(
        "two bridges, one killed: survivor assigned the partitions after {takeover:?}, \
         loss = {loss}, duplicates = {duplicates}"
    );
    assert_eq!(loss, 0, "survivor log:\n{}", second.log_text());
    assert!(
        assigned(second.log_text()) > before,
        "the survivor took over the partitions; log:\n{}",
        second.log_text()
    );
}
