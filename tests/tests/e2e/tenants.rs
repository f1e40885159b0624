//! Tenants against the real brokers: a mapping outside its tenant's allowlist is rejected naming
//! both; a plugin that tries to make the host hold more message bytes than its tenant's budget
//! fails with `plugin-memory-limit` while the bridge's memory stays bounded. (The noisy
//! neighbour has a module of its own: `noisy_neighbour.rs`.)

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use bridge_tests::artifacts;
use bridge_tests::bridge::binary;
use bridge_tests::brokers::{self, unique};
use bridge_tests::fault_proxy::{FaultProxy, Faults};
use bridge_tests::scenario::{Mapping, Scenario};

#[test]
fn a_mapping_outside_its_tenants_allowlist_is_rejected_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{}
[tenants.payments]
allow = {{ topics = ["payments-*"], exchanges = ["payments.*"] }}

[plugins.route]
path = "{}"
tenant = "payments"
config = {{ routing_key = "x" }}

[plugins.other]
path = "{}"

[[mapping]]
name = "leaky"
tenant = "payments"
source = {{ kafka = "main", topics = ["orders-events"] }}
target = {{ rabbitmq = "local", exchange = "payments.out" }}
plugins = ["route", "other"]
"#,
        brokers::brokers_toml(),
        artifacts::ROUTING_KEY,
        artifacts::HEADER_MAP,
    );
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(
            "mapping `leaky`.source.topics: topic `orders-events` is outside tenant `payments`'s `allow.topics = [\"payments-*\"]`"
        ),
        "{text}"
    );
    assert!(
        text.contains("uses plugin `other` of tenant `default`: tenants share no plugins"),
        "{text}"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    bridge_tests::bridge::proc_status(pid, "VmHWM:").unwrap()
}

/// A plugin duplicating a 512 KiB message a thousand times would make the host hold 500 MiB;
/// its tenant's budget is 16 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_cannot_make_the_host_hold_more_than_its_tenants_budget() {
    const BUDGET: u64 = 16 * 1024 * 1024;
    let topic = unique("hoard-in");
    brokers::create_topic(&topic, 1).await;
    let (dlx, dlq) = (unique("hoard-dlx"), unique("hoard-dlq"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &dlx, &dlq, "dl").await;
    let mut bridge = Scenario::new()
        .health()
        .section(&format!("[tenants.hoarder]\nheld_bytes = {BUDGET}"))
        .plugin(
            "copier",
            artifacts::HOSTILE,
            r#"mode = "fan-out", count = "1000""#,
        )
        .plugin_extra("copier", r#"tenant = "hoarder""#)
        .plugin_extra("copier", "limits = { output_bytes = 4194304 }")
        .mapping(
            Mapping::kafka_to_rabbitmq("hoard", &[&topic], &unique("hoard"), &dlx)
                .routing_key("never")
                .dead_letter_rabbitmq(&dlx, "dl")
                .plugins(&["copier"])
                .set("tenant", "hoarder"),
        )
        .start();
    bridge.ready().await;
    let idle = peak_rss_kib(bridge.pid());
    brokers::produce(
        &topic,
        &brokers::numbered_records("big", 3, 512 * 1024),
        None,
    )
    .await;
    let letters = brokers::consume_queue(&conn, &dlq, 3, Duration::from_secs(60)).await;
    let peak = peak_rss_kib(bridge.pid());
    bridge.stop_clean();
    assert_eq!(letters.len(), 3);
    for l in &letters {
        assert_eq!(
            l.header("x-bridge-failure-kind").as_deref(),
            Some("plugin-memory-limit")
        );
        assert!(
            l.header("x-bridge-reason")
                .unwrap_or_default()
                .contains("held_bytes"),
            "{:?}",
            l.header("x-bridge-reason")
        );
    }
    let grew_mib = (peak.saturating_sub(idle)) / 1024;
    eprintln!(
        "hoarder: peak RSS {} MiB, {grew_mib} MiB over idle, budget 16 MiB",
        peak / 1024
    );
    // The budget plus a fixed overhead (the consumer's fetch buffers, the three 512 KiB messages
    // and their dead letters, the plugin's linear memory): far from the 1 GiB asked for.
    assert!(grew_mib < 16 + 112, "RSS grew {grew_mib} MiB");
}

/// A message a plugin grew keeps its charge until it is settled, not only while the plugin
/// runs: behind a slow target a tenant's messages in flight stay within its budget (those past
/// it fail with `plugin-memory-limit` and are dead-lettered) instead of piling up in memory.
#[tokio::test(flavor = "multi_thread")]
async fn messages_in_flight_keep_their_plugins_charge_until_settled() {
    const BUDGET: u64 = 16 * 1024 * 1024;
    const N: usize = 200;
    let (topic, dlq) = (unique("grown-in"), unique("grown-dlq"));
    brokers::create_topics(&[&topic, &dlq], 1).await;
    let (exchange, queue) = (unique("grown-ex"), unique("grown-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    // The target behind a 1 MiB/s link: each 1 MiB output waits for its confirm.
    let proxy = FaultProxy::start("127.0.0.1:5672").await;
    proxy.set(Faults {
        bandwidth: Some(1024 * 1024),
        ..Faults::default()
    });
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let mut bridge = Scenario::with_brokers(&brokers::brokers_toml_with(&url))
        .health()
        .section(&format!("[tenants.grower]\nheld_bytes = {BUDGET}"))
        .plugin(
            "grow",
            artifacts::HOSTILE,
            r#"mode = "huge-payload", size = "1048576""#,
        )
        .plugin_extra("grow", r#"tenant = "grower""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("grown", &[&topic], &unique("g"), &exchange)
                .routing_key("rk")
                .dead_letter_kafka(&dlq)
                .plugins(&["grow"])
                .max_in_flight(N)
                .set("tenant", "grower"),
        )
        .start();
    bridge.ready().await;
    let idle = peak_rss_kib(bridge.pid());
    brokers::produce(&topic, &brokers::numbered_records("small", N, 100), None).await;
    // Every message is accounted for: delivered through the slow link, or dead-lettered.
    let dead = brokers::read_topic(&dlq, N, Duration::from_secs(15)).await;
    let delivered =
        brokers::consume_queue(&conn, &queue, N - dead.len(), Duration::from_secs(30)).await;
    let peak = peak_rss_kib(bridge.pid());
    bridge.stop_clean();
    let log = bridge.log_text();
    let grew_mib = peak.saturating_sub(idle) / 1024;
    eprintln!(
        "in flight: {} delivered, {} dead-lettered, RSS grew {grew_mib} MiB, budget 16 MiB",
        delivered.len(),
        dead.len()
    );
    assert_eq!(
        delivered.len() + dead.len(),
        N,
        "every message delivered or dead-lettered; log:\n{log}"
    );
    assert!(
        !dead.is_empty(),
        "200 MiB in flight against a 16 MiB budget: some messages are refused; log:\n{log}"
    );
    for letter in &dead {
        assert_eq!(
            letter.header("x-bridge-failure-kind").as_deref(),
            Some("plugin-memory-limit")
        );
    }
    // The budget plus the same fixed overhead as above.
    assert!(grew_mib < 16 + 112, "RSS grew {grew_mib} MiB");
}
