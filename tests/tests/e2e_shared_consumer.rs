//! Kafka-sourced mappings of one tenant, cluster and consumer group share one consumer, against
//! the real brokers. Sharing must not tie them together: a mapping whose target fails restarts
//! alone, loses nothing of its own topic (what it had taken and not settled is consumed again),
//! and the mapping beside it keeps flowing with its partitions untouched.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bridge_tests::bridge::{BridgeProcess, free_port, http_get, wait_readyz};
use bridge_tests::brokers::{self, Record, unique};
use lapin::options::ExchangeDeleteOptions;

const N: usize = 6_000;
const PARTITIONS: i32 = 2;

fn records(prefix: &str) -> Vec<Record> {
    brokers::numbered_records(prefix, N, 0)
}

fn config(health: u16, group: &str, a: (&str, &str), b: (&str, &str)) -> String {
    let mapping = |name: &str, (topic, exchange): (&str, &str)| {
        format!(
            r#"
[[mapping]]
name = "{name}"
source = {{ kafka = "main", topics = ["{topic}"], group = "{group}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}", routing_key = "rk" }}
"#
        )
    };
    format!(
        "{}\n[bridge]\nhealth_listen = \"127.0.0.1:{health}\"\n{}{}",
        brokers::brokers_toml(),
        mapping("a", a),
        mapping("b", b)
    )
}

/// A counter of `/metrics` for one mapping, 0 when absent.
fn metric(port: u16, name: &str, mapping: &str, extra: &str) -> f64 {
    let text = http_get(port, "/metrics").unwrap().1;
    let start = format!("{name}{{mapping=\"{mapping}\",tenant=\"default\"{extra}}}");
    text.lines()
        .find(|l| l.starts_with(&start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_mapping_neither_stalls_nor_loses_for_its_consumer_neighbour() {
    let group = unique("shared-group");
    let conn = brokers::amqp().await;
    let mut ends = Vec::new();
    for side in ["a", "b"] {
        let (topic, exchange, queue) = (
            unique(&format!("shared-{side}")),
            unique(&format!("shared-ex-{side}")),
            unique(&format!("shared-q-{side}")),
        );
        brokers::create_topic(&topic, PARTITIONS).await;
        brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
        ends.push((topic, exchange, queue));
    }
    let [(topic_a, ex_a, q_a), (topic_b, ex_b, q_b)] = <[_; 2]>::try_from(ends).unwrap();
    let (seen_a, _collecting_a) = brokers::collect_queue(&q_a).await;
    let (seen_b, _collecting_b) = brokers::collect_queue(&q_b).await;
    let health = free_port();
    let bridge = BridgeProcess::start(&config(
        health,
        &group,
        (&topic_a, &ex_a),
        (&topic_b, &ex_b),
    ));
    assert!(
        wait_readyz(health, 200, Duration::from_secs(60))
            .await
            .is_some(),
        "ready:\n{}",
        bridge.log_text()
    );
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
    let restarts_a = metric(health, "bridge_mapping_restarts_total", "a", "");
    let restarts_b = metric(health, "bridge_mapping_restarts_total", "b", "");
    let revoked_b = metric(
        health,
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
