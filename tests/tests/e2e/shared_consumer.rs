//! Kafka-sourced mappings of one tenant, cluster and consumer group share one consumer, against
//! the real brokers. Sharing must not tie them together: a mapping whose target fails restarts
//! alone, loses nothing of its own topic (what it had taken and not settled is consumed again),
//! and the mapping beside it keeps flowing with its partitions untouched.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Running, Scenario};
use lapin::options::ExchangeDeleteOptions;

const N: usize = 6_000;
const PARTITIONS: i32 = 2;

fn records(prefix: &str) -> Vec<Record> {
    brokers::numbered_records(prefix, N, 0)
}

/// Mapping `name` from `topic` to `exchange` (routing key `rk`) in consumer group `group`.
fn mapping(name: &str, group: &str, topic: &str, exchange: &str) -> Mapping {
    Mapping::kafka_to_rabbitmq(name, &[topic], group, exchange).routing_key("rk")
}

/// For each side, a topic, and an exchange with a queue bound to it with `rk`.
async fn ends(conn: &lapin::Connection, sides: [&str; 2]) -> [(String, String, String); 2] {
    let mut ends = Vec::new();
    for side in sides {
        let (topic, exchange, queue) = (
            unique(&format!("shared-{side}")),
            unique(&format!("shared-ex-{side}")),
            unique(&format!("shared-q-{side}")),
        );
        brokers::create_topic(&topic, PARTITIONS).await;
        brokers::declare_bound_queue(conn, &exchange, &queue, "rk").await;
        ends.push((topic, exchange, queue));
    }
    <[_; 2]>::try_from(ends).unwrap()
}

/// A counter of `/metrics` for one mapping, 0 when absent.
fn metric(bridge: &Running, name: &str, mapping: &str, extra: &str) -> f64 {
    bridge
        .metric(&format!(
            "{name}{{mapping=\"{mapping}\",tenant=\"default\"{extra}}}"
        ))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_mapping_neither_stalls_nor_loses_for_its_consumer_neighbour() {
    let group = unique("shared-group");
    let conn = brokers::amqp().await;
    let [(topic_a, ex_a, q_a), (topic_b, ex_b, q_b)] = ends(&conn, ["a", "b"]).await;
    let (seen_a, _collecting_a) = brokers::collect_queue(&q_a).await;
    let (seen_b, _collecting_b) = brokers::collect_queue(&q_b).await;
    let bridge = Scenario::new()
        .health()
        .mapping(mapping("a", &group, &topic_a, &ex_a))
        .mapping(mapping("b", &group, &topic_b, &ex_b))
        .start();
    bridge.ready().await;
    let bootstrap = brokers::kafka_bootstrap();
    let _feeding_a = brokers::feed_topic(&bootstrap, &topic_a, records("a"));
    let _feeding_b = brokers::feed_topic(&bootstrap, &topic_b, records("b"));
    while seen_a.lock().unwrap().len() < 500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `a`'s target exchange goes away mid-stream: `a` fails and restarts until it is back.
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_delete(ex_a.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let line = bridge
        .wait_log_line(
            &["mapping=\"a\"", "Mapping stopped; restarting"],
            Duration::from_secs(30),
        )
        .await;
    assert!(line.is_some(), "a restarted:\n{}", bridge.log_text());
    let b_during = seen_b.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b_moved = seen_b.lock().unwrap().len() - b_during;
    brokers::declare_bound_queue(&conn, &ex_a, &q_a, "rk").await;

    brokers::wait_distinct(&seen_b, N, Duration::from_secs(120)).await;
    brokers::wait_distinct(&seen_a, N, Duration::from_secs(120)).await;
    let (loss_a, dups_a) = brokers::arrivals_loss_and_duplicates(N, &seen_a);
    let (loss_b, dups_b) = brokers::arrivals_loss_and_duplicates(N, &seen_b);
    let restarts_a = metric(&bridge, "bridge_mapping_restarts_total", "a", "");
    let restarts_b = metric(&bridge, "bridge_mapping_restarts_total", "b", "");
    let revoked_b = metric(
        &bridge,
        "bridge_rebalanced_partitions_total",
        "b",
        ",change=\"revoked\"",
    );
    let log = bridge.log_text();
    eprintln!(
        "shared consumer: a lost its exchange for 4 s and restarted {restarts_a} times: loss {loss_a}, \
         duplicates {dups_a}; b moved {b_moved} messages meanwhile: loss {loss_b}, duplicates \
         {dups_b}, restarts {restarts_b}, partitions revoked {revoked_b}"
    );
    assert_eq!(loss_a, 0, "a lost messages:\n{}", bridge.log_text());
    assert_eq!(loss_b, 0, "b lost messages");
    assert!(restarts_a >= 1.0, "a restarted");
    let restarted_b: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("mapping=\"b\"") && (l.contains("ERROR") || l.contains("WARN")))
        .collect();
    assert_eq!(restarts_b, 0.0, "b did not restart: {restarted_b:#?}");
    assert_eq!(revoked_b, 0.0, "b kept its partitions");
    assert!(b_moved > 0, "b kept flowing while a was down");
}

/// A mapping slower than its topic fills its queue: its partitions pause (and resume) while
/// the mapping beside it on the same consumer keeps its pace, and nothing is lost on either.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_mapping_pauses_its_own_partitions_only() {
    const SLOW: usize = 3_000;
    let group = unique("shared-group");
    let conn = brokers::amqp().await;
    let [(slow_topic, slow_ex, slow_q), (fast_topic, fast_ex, fast_q)] =
        ends(&conn, ["slow", "fast"]).await;
    let (slow_seen, _collecting_slow) = brokers::collect_queue(&slow_q).await;
    let (fast_seen, _collecting_fast) = brokers::collect_queue(&fast_q).await;
    // `slow` takes one message at a time (it waits for each confirm and commit), far slower
    // than the consumer fetches its backlog: its queue fills and its partitions pause.
    let bridge = Scenario::new()
        .health()
        .mapping(mapping("slow", &group, &slow_topic, &slow_ex).max_in_flight(1))
        .mapping(mapping("fast", &group, &fast_topic, &fast_ex))
        // The pauses are logged at debug level.
        .env("RUST_LOG", "info,bridge_host::kafka::group=debug")
        .start();
    bridge.ready().await;
    brokers::produce(
        &slow_topic,
        &brokers::numbered_records("slow", SLOW, 0),
        None,
    )
    .await;
    brokers::produce(&fast_topic, &records("fast"), None).await;
    brokers::wait_distinct(&fast_seen, N, Duration::from_secs(60)).await;
    let slow_when_fast_done = slow_seen.lock().unwrap().len();
    brokers::wait_distinct(&slow_seen, SLOW, Duration::from_secs(120)).await;
    let (loss_slow, dups_slow) = brokers::arrivals_loss_and_duplicates(SLOW, &slow_seen);
    let (loss_fast, dups_fast) = brokers::arrivals_loss_and_duplicates(N, &fast_seen);
    let log = bridge.log_text();
    let pauses = log
        .lines()
        .filter(|l| l.contains("Mapping busy: partition paused.") && l.contains("mapping=slow"))
        .count();
    let other_pauses = log
        .lines()
        .filter(|l| l.contains("Mapping busy: partition paused.") && !l.contains("mapping=slow"))
        .count();
    eprintln!(
        "shared consumer: fast drained {N} while slow had sent {slow_when_fast_done} of {SLOW}; \
         slow's partitions paused {pauses} times (fast's {other_pauses}); slow loss {loss_slow}, \
         duplicates {dups_slow}; fast loss {loss_fast}, duplicates {dups_fast}"
    );
    assert_eq!(loss_fast, 0, "fast lost messages");
    assert_eq!(loss_slow, 0, "slow lost messages");
    assert_eq!(
        (dups_slow, dups_fast),
        (0, 0),
        "no duplicates without a fault"
    );
    assert!(pauses > 0, "slow's queue filled and paused its partitions");
}
