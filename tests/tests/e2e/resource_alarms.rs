//! RabbitMQ resource alarms during a Kafka → RabbitMQ stream: when the broker's memory alarm,
//! then its disk alarm, blocks publishers (`connection.blocked`), the bridge stops taking
//! messages from Kafka instead of buffering them, `/readyz` answers 503 and says why, its RSS
//! stays bounded, and it resumes when the alarm clears — losing nothing. The broker is a
//! private node: an alarm blocks every publisher on a node.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::bridge::{BridgeProcess, free_port, proc_status, wait_readyz};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::rabbit_node::RabbitNode;

const N: usize = 30_000;
const PARTITIONS: i32 = 4;
/// How long each alarm stays on.
const ALARM: Duration = Duration::from_secs(15);

/// Messages delivered so far to the queue (duplicates included).
fn delivered(seen: &brokers::Arrivals) -> usize {
    seen.lock().unwrap().len()
}

/// Waits until `n` more messages arrived; whether they did within `limit`.
async fn wait_flowing(seen: &brokers::Arrivals, n: usize, limit: Duration) -> bool {
    let start = delivered(seen);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if delivered(seen) >= start + n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn ctl(node: std::sync::Arc<RabbitNode>, args: &'static [&'static str]) {
    let ok = tokio::task::spawn_blocking(move || node.ctl(args))
        .await
        .unwrap();
    assert!(ok, "rabbitmqctl {args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_and_disk_alarms_push_back_on_kafka_and_lose_nothing() {
    let node = std::sync::Arc::new(
        tokio::task::spawn_blocking(|| RabbitNode::start(None))
            .await
            .unwrap(),
    );
    let url = node.url();
    let bootstrap = brokers::kafka_bootstrap();
    let topic = unique("alarm-k2r");
    brokers::create_topic(&topic, PARTITIONS).await;
    let exchange = unique("alarm-ex");
    let queue = unique("alarm-out");
    {
        let conn = brokers::amqp_to(&url).await;
        brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    }
    // The collector consumes from the private node (consumers are not blocked).
    let (seen, _collecting) = brokers::collect_queue_on(&url, &queue).await;

    let health = free_port();
    let bridge = BridgeProcess::start(&format!(
        r#"
[kafka.main]
bootstrap_servers = "{bootstrap}"
[rabbitmq.local]
url = "{url}"
[bridge]
health_listen = "127.0.0.1:{health}"

[[mapping]]
name = "to-rabbitmq"
source = {{ kafka = "main", topics = ["{topic}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}", routing_key = "rk" }}
max_in_flight = 200
"#,
        unique("alarm")
    ));
    assert!(
        wait_readyz(health, 200, Duration::from_secs(60))
            .await
            .map(|(_, body)| body)
            .is_some(),
        "ready:\n{}",
        bridge.log_text()
    );
    let records: Vec<Record> = (0..N)
        .map(|i| Record {
            key: Some(format!("k{}", i % 16).into_bytes()),
            payload: Some(format!("alarm-{i:06}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    let _producing = brokers::feed_topic(&bootstrap, &topic, records);
    assert!(wait_flowing(&seen, 500, Duration::from_secs(60)).await);

    let alarms: [(&str, &'static [&'static str], &'static [&'static str]); 2] = [
        (
            "memory",
            &["set_vm_memory_high_watermark", "absolute", "1"],
            &["set_vm_memory_high_watermark", "0.4"],
        ),
        (
            "disk",
            &["set_disk_free_limit", "1000000GB"],
            &["set_disk_free_limit", "50MB"],
        ),
    ];
    for (name, raise, clear) in alarms {
        let rss_before = proc_status(bridge.pid(), "VmRSS:").unwrap_or(0);
        ctl(std::sync::Arc::clone(&node), raise).await;
        let why = wait_readyz(health, 503, Duration::from_secs(30))
            .await
            .map(|(_, body)| body);
        println!("{name} alarm: /readyz 503: {why:?}");
        let why = why.unwrap_or_default();
        assert!(
            why.contains("blocked publishing"),
            "readiness says why during the {name} alarm: {why}\n{}",
            bridge.log_text()
        );
        // Nothing gets through while the alarm is on: the bridge holds back.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = delivered(&seen);
        tokio::time::sleep(ALARM).await;
        let during = delivered(&seen) - held;
        let rss_during = proc_status(bridge.pid(), "VmRSS:").unwrap_or(0);
        println!(
            "{name} alarm: {during} delivered while blocked; RSS {} → {} MiB",
            rss_before / 1024,
            rss_during / 1024
        );
        assert_eq!(
            during, 0,
            "nothing is published while RabbitMQ blocks publishers"
        );
        assert!(
            rss_during < rss_before + 256 * 1024,
            "RSS stays bounded during the {name} alarm: {rss_before} → {rss_during} KiB"
        );
        let cleared = Instant::now();
        ctl(std::sync::Arc::clone(&node), clear).await;
        assert!(
            wait_readyz(health, 200, Duration::from_secs(30))
                .await
                .map(|(_, body)| body)
                .is_some(),
            "ready again after the {name} alarm:\n{}",
            bridge.log_text()
        );
        assert!(
            wait_flowing(&seen, 500, Duration::from_secs(30)).await,
            "flowing again within 30 s of the {name} alarm clearing:\n{}",
            bridge.log_text()
        );
        println!(
            "{name} alarm: flowing again {:?} after it cleared",
            cleared.elapsed()
        );
    }

    brokers::wait_distinct(&seen, N, Duration::from_secs(120)).await;
    let (loss, duplicates) = brokers::arrivals_loss_and_duplicates(N, &seen);
    println!("resource alarms: loss {loss}, duplicates {duplicates}");
    let log = bridge.log_text();
    assert_eq!(loss, 0, "nothing lost; bridge log:\n{log}");
    assert!(
        !log.contains("not written within"),
        "a blocked publish is not taken for a dead connection:\n{log}"
    );
}
