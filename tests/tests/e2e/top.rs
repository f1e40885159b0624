//! `bridge-host top` in a real terminal (tmux): started against a bridge moving a known stream
//! of about 1 000 messages/s, its screen shows the mapping connected, its plugin version, and
//! rates in and out of that order.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use bridge_tests::artifacts;
use bridge_tests::bridge::binary;
use bridge_tests::brokers::{self, unique};
use bridge_tests::scenario::{Mapping, Scenario};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn top_shows_a_running_bridge_with_its_rates() {
    let topic = unique("top-in");
    brokers::create_topic(&topic, 2).await;
    let exchange = unique("top-ex");
    let queue = unique("top-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let (_arrived, collector) = brokers::collect_queue(&queue).await;
    let mut bridge = Scenario::new()
        .health()
        .plugin(
            "headers",
            artifacts::HEADER_MAP,
            r#"set = { x-top = "yes" }"#,
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("watched", &[&topic], &unique("top"), &exchange)
                .routing_key("rk")
                .plugins(&["headers"]),
        )
        .start();
    let feed = brokers::feed_partitions(&brokers::kafka_bootstrap(), &topic, "top", 20_000, 2);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let session = unique("bridge-top");
    let command = format!(
        "{} top --url http://127.0.0.1:{}",
        binary().display(),
        bridge.health_port()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "20",
        &command,
    ]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let screen = tmux(&["capture-pane", "-p", "-t", &session]);
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    feed.abort();
    collector.abort();
    bridge.stop_clean();

    assert!(screen.contains("bridge-host top"), "{screen}");
    let row = screen
        .lines()
        .find(|l| l.starts_with("watched "))
        .unwrap_or_else(|| panic!("no row for the mapping:\n{screen}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "connected", "{screen}");
    let (rate_in, rate_out): (f64, f64) = (cells[2].parse().unwrap(), cells[3].parse().unwrap());
    // The stream runs at about 1 000 messages/s; the view must show that order of magnitude.
    for rate in [rate_in, rate_out] {
        assert!(
            (300.0..3000.0).contains(&rate),
            "rates in and out: {row}\n{screen}"
        );
    }
    assert!(row.contains("headers@"), "plugin version shown: {row}");
}
