//! End-to-end tests of the settlement faults: messages left unsettled on stop, retry, revoke and
//! panic must come back, never be acknowledged or committed unsettled, and a message under
//! retry holds back only its own partition.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::artifacts;
use bridge_tests::bridge::BridgeProcess;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::BasicProperties;
use lapin::options::QueueBindOptions;
use lapin::types::FieldTable;

/// Over the Kafka producer's `message.max.bytes` (1 MB): Kafka refuses it, every time.
const TOO_BIG: usize = 1_100 * 1024;

fn record(kind: &str, i: usize, partition: i32) -> Record {
    Record::kind(kind, i, partition)
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Queues 21 messages, the sixth one Kafka refuses, and returns the queue's name.
async fn queue_with_a_refused_message(conn: &lapin::Connection, prefix: &str) -> String {
    let queue = unique(prefix);
    brokers::declare_queue(conn, &queue).await;
    let messages: Vec<(Vec<u8>, BasicProperties)> = (0..21)
        .map(|i| {
            let body = if i == 5 {
                vec![b'x'; TOO_BIG]
            } else {
                format!("good-{i}").into_bytes()
            };
            (body, BasicProperties::default())
        })
        .collect();
    brokers::publish_to_queue(conn, &queue, &messages).await;
    queue
}

fn rabbit_to_kafka(queue: &str, topic: &str, extra: &str) -> String {
    format!(
        r#"{}
[bridge]
shutdown_timeout_secs = 5

[[mapping]]
name = "refused"
source = {{ rabbitmq = "local", queue = "{queue}", prefetch = 50 }}
target = {{ kafka = "main", topic = "{topic}" }}
{extra}
"#,
        brokers::brokers_toml()
    )
}

/// Fault: a stop while a RabbitMQ message waits on a retry acked it with the deliveries after
/// it (`multiple`). It must stay in the queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_a_retry_leaves_the_refused_rabbitmq_message_in_its_queue() {
    let conn = brokers::amqp().await;
    let queue = queue_with_a_refused_message(&conn, "refused-stop").await;
    let topic = unique("refused-stop-out");
    brokers::create_topic(&topic, 1).await;
    let mut bridge = BridgeProcess::start(&rabbit_to_kafka(&queue, &topic, ""));
    let t = topic.clone();
    let delivered = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&t, 20, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(
        delivered.len() == 20,
        "{:?}, expected {:?}; {}",
        delivered.len(),
        20,
        bridge.log_report()
    );
    assert!(
        wait_until(Duration::from_secs(30), || bridge
            .log_text()
            .contains("retrying"))
        .await,
        "the refused message is retried; log:\n{}",
        bridge.log_text()
    );
    assert!(
        bridge.terminate(Duration::from_secs(20)),
        "log:\n{}",
        bridge.log_text()
    );
    let left = brokers::consume_queue(&conn, &queue, 21, Duration::from_secs(3)).await;
    assert!(
        left.iter().any(|m| m.payload.len() == TOO_BIG),
        "the refused message is still in the queue ({} messages left); log:\n{}",
        left.len(),
        bridge.log_text()
    );
}

/// The same across a configuration reload that restarts the mapping: the new run consumes the
/// refused message again, and dead-letters it to the target the reload added.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_during_a_retry_leaves_the_refused_rabbitmq_message_for_the_next_run() {
    let conn = brokers::amqp().await;
    let queue = queue_with_a_refused_message(&conn, "refused-reload").await;
    let dead = unique("refused-reload-dlq");
    brokers::declare_queue(&conn, &dead).await;
    let topic = unique("refused-reload-out");
    brokers::create_topic(&topic, 1).await;
    let mut bridge = BridgeProcess::start(&rabbit_to_kafka(&queue, &topic, ""));
    assert!(
        wait_until(Duration::from_secs(30), || bridge
            .log_text()
            .contains("retrying"))
        .await,
        "the refused message is retried; log:\n{}",
        bridge.log_text()
    );
    let with_dead_letter = rabbit_to_kafka(
        &queue,
        &topic,
        &format!(
            r#"dead_letter = {{ rabbitmq = "local", exchange = "", routing_key = "{dead}" }}"#
        ),
    );
    let tmp = bridge.config.with_extension("tmp");
    std::fs::write(&tmp, with_dead_letter).unwrap();
    std::fs::rename(&tmp, &bridge.config).unwrap();
    let letters = brokers::consume_queue(&conn, &dead, 1, Duration::from_secs(40)).await;
    assert!(
        bridge.terminate(Duration::from_secs(20)),
        "log:\n{}",
        bridge.log_text()
    );
    assert_eq!(
        letters
            .iter()
            .filter(|m| m.payload.len() == TOO_BIG)
            .count(),
        1,
        "the refused message is dead-lettered by the reloaded mapping; log:\n{}",
        bridge.log_text()
    );
}

/// Fault: dedup recorded a key at admission, so a message abandoned when its partition was
/// revoked was dropped as a duplicate when the partition came back. Every message arrives.
#[tokio::test(flavor = "multi_thread")]
async fn dedup_forgets_messages_abandoned_by_a_revoked_partition() {
    let topic = unique("dedup-revoke");
    brokers::create_topic(&topic, 2).await;
    let exchange = unique("dedup-revoke-ex");
    let queue = unique("dedup-revoke-q");
    let conn = brokers::amqp().await;
    // Bound for another key: until the test binds `rk`, every message is unroutable.
    brokers::declare_bound_queue(&conn, &exchange, &queue, "not-yet").await;
    let config = Scenario::new()
        .bridge("shutdown_timeout_secs", 5)
        .mapping(
            Mapping::kafka_to_rabbitmq(
                "dedup-revoke",
                &[&topic],
                &unique("dedup-revoke"),
                &exchange,
            )
            .routing_key("rk")
            .dedup("coordinates", 600),
        )
        .to_toml();
    let records: Vec<Record> = (0..20).map(|i| record("m", i, i as i32 % 2)).collect();
    for p in 0..2 {
        let mine: Vec<Record> = records
            .iter()
            .filter(|r| r.partition == p)
            .cloned()
            .collect();
        brokers::produce(&topic, &mine, Some(p)).await;
    }
    let mut first = BridgeProcess::start(&config);
    assert!(
        wait_until(Duration::from_secs(30), || first
            .log_text()
            .contains("retrying"))
        .await,
        "log:\n{}",
        first.log_text()
    );
    // A second member takes one partition, then leaves: it comes back to the first.
    let mut second = BridgeProcess::start(&config);
    assert!(
        wait_until(Duration::from_secs(60), || first
            .log_text()
            .contains("Kafka partitions revoked"))
        .await,
        "a partition moves to the second bridge; log:\n{}",
        first.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(30), || second
            .log_text()
            .contains("retrying"))
        .await,
        "log:\n{}",
        second.log_text()
    );
    assert!(second.terminate(Duration::from_secs(20)));
    assert!(
        wait_until(Duration::from_secs(60), || first
            .log_text()
            .matches("Kafka partitions assigned")
            .count()
            >= 2)
        .await,
        "the partition comes back; log:\n{}",
        first.log_text()
    );
    // Consumed again by the first bridge, then routable.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "rk".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    brokers::wait_distinct(&arrived, 20, Duration::from_secs(40)).await;
    assert!(first.terminate(Duration::from_secs(20)));
    collector.abort();
    let (loss, _) = brokers::arrivals_loss_and_duplicates(20, &arrived);
    assert_eq!(
        loss,
        0,
        "every message arrives; first bridge's log:\n{}",
        first.log_text()
    );
}

/// Fault: the messages behind one waiting on a retry filled the mapping's window, and then no
/// partition was read. Only the retried message's partition waits.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_with_thousands_behind_it_holds_back_only_its_partition() {
    let topic = unique("retry-backlog");
    brokers::create_topic(&topic, 4).await;
    let exchange = unique("retry-backlog-ex");
    let queue = unique("retry-backlog-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "order.ok").await;
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    let config = Scenario::new()
        .plugin(
            "route",
            artifacts::ROUTING_KEY,
            r#"routing_key = "order.{json:kind}""#,
        )
        .bridge("shutdown_timeout_secs", 5)
        .mapping(
            Mapping::kafka_to_rabbitmq(
                "retry-backlog",
                &[&topic],
                &unique("retry-backlog"),
                &exchange,
            )
            .plugins(&["route"]),
        )
        .to_toml();
    // Partition 0: an unroutable message with 3 000 routable ones behind it.
    let mut blocked = vec![record("lost", 0, 0)];
    blocked.extend((1..=3000).map(|i| record("ok", i, 0)));
    brokers::produce(&topic, &blocked, Some(0)).await;
    let mut bridge = BridgeProcess::start(&config);
    assert!(
        wait_until(Duration::from_secs(30), || bridge
            .log_text()
            .contains("retrying"))
        .await,
        "log:\n{}",
        bridge.log_text()
    );
    for p in 1..4 {
        let others: Vec<Record> = (0..1334)
            .map(|i| record("ok", 10_000 * p as usize + i, p))
            .collect();
        brokers::produce(&topic, &others, Some(p)).await;
    }
    // Messages of partitions 1–3 carry an index of 10 000 or more.
    let others = || {
        arrived
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| (10_000..usize::MAX).contains(&brokers::kind_index(p)))
            .count()
    };
    let flowed = wait_until(Duration::from_secs(60), || others() >= 3 * 1334).await;
    let got = others();
    assert!(bridge.terminate(Duration::from_secs(20)));
    collector.abort();
    assert!(
        flowed,
        "partitions 1–3 keep flowing: {} of {} arrived; log:\n{}",
        got,
        3 * 1334,
        bridge.log_text()
    );
}

/// Fault: a host panic in a plugin chain poisoned the chain, and every later message was
/// dead-lettered while the log said the mapping restarts. Now the mapping restarts with fresh
/// instances, shows it, and loses nothing (`BRIDGE_TEST_PANIC_ONCE` is a debug-build hook).
#[tokio::test(flavor = "multi_thread")]
async fn a_host_panic_in_a_chain_restarts_the_mapping_and_loses_nothing() {
    let topic = unique("panic");
    brokers::create_topic(&topic, 1).await;
    let exchange = unique("panic-ex");
    let queue = unique("panic-q");
    let dead = unique("panic-dlq");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::declare_queue(&conn, &dead).await;
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    let config = format!(
        r#"{}
[plugins.route]
path = "{}"
config = {{ routing_key = "rk" }}

[[mapping]]
name = "panic"
source = {{ kafka = "main", topics = ["{topic}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}" }}
plugins = ["route"]
dead_letter = {{ rabbitmq = "local", exchange = "", routing_key = "{dead}" }}
"#,
        brokers::brokers_toml(),
        artifacts::ROUTING_KEY,
        unique("panic")
    );
    let records: Vec<Record> = (0..50)
        .map(|i| {
            let mut r = record("m", i, 0);
            if i == 10 {
                r.headers.push(("x-boom".to_string(), b"1".to_vec()));
            }
            r
        })
        .collect();
    brokers::produce(&topic, &records, Some(0)).await;
    let mut bridge =
        BridgeProcess::start_with_env(&config, &[("BRIDGE_TEST_PANIC_ONCE", "x-boom")]);
    brokers::wait_distinct(&arrived, 50, Duration::from_secs(60)).await;
    let (loss, _) = brokers::arrivals_loss_and_duplicates(50, &arrived);
    assert!(bridge.terminate(Duration::from_secs(20)));
    collector.abort();
    let log = bridge.log_text();
    assert!(
        log.contains("test hook: a host panic"),
        "the hook fired; log:\n{log}"
    );
    assert!(log.contains("Mapping stopped; restarting."), "log:\n{log}");
    let letters = brokers::consume_queue(&conn, &dead, 50, Duration::from_secs(2)).await;
    assert_eq!(letters.len(), 0, "nothing is dead-lettered; log:\n{log}");
    assert_eq!(loss, 0, "every message arrives; log:\n{log}");
}

/// A Kafka → RabbitMQ mapping whose RabbitMQ node raised its memory alarm (publishing
/// blocked), with records waiting: the bridge, its RabbitMQ node, the topic, exchange and queue.
struct Blocked {
    node: std::sync::Arc<bridge_tests::rabbit_node::RabbitNode>,
    topic: String,
    exchange: String,
    queue: String,
    group: String,
    health: u16,
}

impl Blocked {
    async fn start() -> Self {
        let node = std::sync::Arc::new(
            tokio::task::spawn_blocking(|| bridge_tests::rabbit_node::RabbitNode::start(None))
                .await
                .unwrap(),
        );
        let topic = unique("deadline");
        brokers::create_topic(&topic, 2).await;
        let exchange = unique("deadline-ex");
        let queue = unique("deadline-q");
        let conn = brokers::amqp_to(&node.url()).await;
        brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
        let blocked = Blocked {
            node,
            topic,
            exchange,
            queue,
            group: unique("deadline"),
            health: bridge_tests::bridge::free_port(),
        };
        blocked.alarm(true).await;
        let records: Vec<Record> = (0..2000).map(|i| record("m", i, (i % 2) as i32)).collect();
        for p in 0..2 {
            let mine: Vec<Record> = records
                .iter()
                .filter(|r| r.partition == p)
                .cloned()
                .collect();
            brokers::produce(&blocked.topic, &mine, Some(p)).await;
        }
        blocked
    }

    fn config(&self, shutdown_timeout_secs: u64) -> String {
        format!(
            r#"
[kafka.main]
bootstrap_servers = "{}"
[rabbitmq.local]
url = "{}"
[bridge]
health_listen = "127.0.0.1:{}"
shutdown_timeout_secs = {shutdown_timeout_secs}

[[mapping]]
name = "deadline"
source = {{ kafka = "main", topics = ["{}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{}", routing_key = "rk" }}
"#,
            brokers::kafka_bootstrap(),
            self.node.url(),
            self.health,
            self.topic,
            self.group,
            self.exchange
        )
    }

    async fn alarm(&self, on: bool) {
        let node = std::sync::Arc::clone(&self.node);
        let args: &'static [&'static str] = if on {
            &["set_vm_memory_high_watermark", "absolute", "1"]
        } else {
            &["set_vm_memory_high_watermark", "0.4"]
        };
        let ok = tokio::task::spawn_blocking(move || node.ctl(args))
            .await
            .unwrap();
        assert!(ok, "rabbitmqctl {args:?}");
    }

    /// Starts a bridge and waits until it says the target is blocked.
    async fn bridge(&self, shutdown_timeout_secs: u64) -> BridgeProcess {
        let bridge = BridgeProcess::start(&self.config(shutdown_timeout_secs));
        let health = self.health;
        let blocked = wait_until(Duration::from_secs(60), || {
            bridge_tests::bridge::http_get(health, "/readyz")
                .is_some_and(|(_, body)| body.contains("blocked publishing"))
        })
        .await;
        assert!(
            blocked,
            "publishing is blocked; log:\n{}",
            bridge.log_text()
        );
        bridge
    }
}

/// Fault: `shutdown_timeout_secs` was not a deadline: with publishing blocked by a resource
/// alarm the bridge ignored SIGTERM. It exits within the timeout and 2 s, a second signal
/// exits at once, and what was not delivered is delivered after the alarm.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_holds_its_deadline_while_publishing_is_blocked() {
    let blocked = Blocked::start().await;
    let mut bridge = blocked.bridge(5).await;
    let status = bridge.stop_within(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "exits within shutdown_timeout_secs + 2 s; log:\n{}",
        bridge.log_text()
    );

    // A second signal ends a long drain at once.
    let mut bridge = blocked.bridge(120).await;
    bridge_tests::bridge::send_signal(bridge.pid(), libc::SIGTERM);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = bridge.stop_within(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(130),
        "the second signal exits at once; log:\n{}",
        bridge.log_text()
    );

    // Nothing was lost: once the alarm clears every record arrives.
    blocked.alarm(false).await;
    let (arrived, collector) = brokers::collect_queue_on(&blocked.node.url(), &blocked.queue).await;
    let mut bridge = BridgeProcess::start(&blocked.config(5));
    brokers::wait_distinct(&arrived, 2000, Duration::from_secs(60)).await;
    assert!(bridge.terminate(Duration::from_secs(20)));
    collector.abort();
    let (loss, _) = brokers::arrivals_loss_and_duplicates(2000, &arrived);
    assert!(
        loss == 0,
        "{:?}, expected {:?}; {}",
        loss,
        0,
        bridge.log_report()
    );
}

/// A dead-letter target that refuses the letter (its exchange routes key `dl` nowhere): the
/// message is kept and retried, holding back only its own partition, and `/readyz` says why;
/// once the target takes the letter, it arrives and the partition moves on. Nothing is lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_dead_letter_target_holds_back_only_its_partition() {
    let topic = unique("dlref-in");
    brokers::create_topic(&topic, 2).await;
    let conn = brokers::amqp().await;
    let (exchange, queue) = (unique("dlref-ex"), unique("dlref-q"));
    let (dlx, dlq) = (unique("dlref-dlx"), unique("dlref-dlq"));
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::declare_bound_queue(&conn, &dlx, &dlq, "elsewhere").await;
    let good = |i: usize, partition: i32| {
        let mut r = record("good", i, partition);
        r.headers.push(("x-behave".into(), b"1".to_vec()));
        r
    };
    brokers::produce(
        &topic,
        &[record("bad", 0, 0), good(1, 0), good(2, 0)],
        Some(0),
    )
    .await;
    let (arrived, collector) = brokers::collect_queue(&queue).await;
    let mut bridge = Scenario::new()
        .health()
        // Every message without `x-behave` is dead-lettered by the plugin.
        .plugin("refuse", artifacts::HOSTILE, r#"mode = "dead-letter-it""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("m", &[&topic], &unique("g"), &exchange)
                .routing_key("rk")
                .plugins(&["refuse"])
                .dead_letter_rabbitmq(&dlx, "dl"),
        )
        .start();
    // The bad record's letter is refused by now; the other partition still moves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    brokers::produce(&topic, &[good(3, 1), good(4, 1)], Some(1)).await;
    let payloads = || -> Vec<String> {
        arrived
            .lock()
            .unwrap()
            .iter()
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect()
    };
    let has =
        |moved: &[String], i: usize| moved.iter().any(|p| p.contains(&format!(r#""i":{i}}}"#)));
    let other = Instant::now();
    while !(has(&payloads(), 3) && has(&payloads(), 4)) && other.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let moved = payloads();
    let (_, readyz) =
        bridge_tests::bridge::http_get(bridge.health_port(), "/readyz").unwrap_or_default();
    assert!(
        has(&moved, 3) && has(&moved, 4),
        "the other partition moved while the letter was refused: {moved:?}\n{}",
        bridge.log_text()
    );
    assert!(
        readyz.contains("dead-letter target"),
        "/readyz says why: {readyz}"
    );
    // The target takes letters with key `dl` from now on.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_bind(
        dlq.as_str().into(),
        dlx.as_str().into(),
        "dl".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let letters = brokers::consume_queue(&conn, &dlq, 1, Duration::from_secs(30)).await;
    let all = Instant::now();
    while arrived.lock().unwrap().len() < 4 && all.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bridge.stop_clean();
    collector.abort();
    let log = bridge.log_text();
    assert_eq!(letters.len(), 1, "the letter arrived; log:\n{log}");
    assert!(
        String::from_utf8_lossy(&letters[0].payload).contains(r#""kind":"bad""#),
        "{:?}",
        letters[0].payload
    );
    let moved: std::collections::BTreeSet<String> = payloads().into_iter().collect();
    assert_eq!(
        moved.len(),
        4,
        "every good record arrived: {moved:?}; log:\n{log}"
    );
}

/// Mapping `a` restarts (a panic, raised by a test hook) while many of its publishes are still
/// queued on the tenant's shared RabbitMQ connection: its channel closes without those reaching
/// RabbitMQ after the close, so the connection, and mapping `b` publishing on it, live on;
/// everything of both arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_publishes_queued_leaves_the_shared_connection_alone() {
    let n = 20_000;
    let (topic_a, topic_b) = (unique("queued-a"), unique("queued-b"));
    let (exchange, queue_a, queue_b) = (
        unique("queued-ex"),
        unique("queued-qa"),
        unique("queued-qb"),
    );
    brokers::create_topics(&[&topic_a, &topic_b], 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue_a, "a").await;
    brokers::declare_bound_queue(&conn, &exchange, &queue_b, "b").await;
    let mut records_a = brokers::numbered_records("a", n, 2048);
    records_a[n / 2]
        .headers
        .push(("crash".into(), b"1".to_vec()));
    let records_b = brokers::numbered_records("b", n, 2048);
    brokers::produce(&topic_a, &records_a, None).await;
    brokers::produce(&topic_b, &records_b, None).await;
    let (seen_a, reader_a) = brokers::collect_queue(&queue_a).await;
    let (seen_b, reader_b) = brokers::collect_queue(&queue_b).await;
    let mut bridge = Scenario::new()
        .health()
        .env("BRIDGE_TEST_MAPPING_PANIC", "crash")
        .mapping(
            Mapping::kafka_to_rabbitmq("a", &[&topic_a], &unique("g"), &exchange).routing_key("a"),
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("b", &[&topic_b], &unique("g"), &exchange).routing_key("b"),
        )
        .start();
    let distinct = |seen: &brokers::Arrivals| {
        seen.lock()
            .expect("arrivals")
            .iter()
            .map(|(_, payload)| payload.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while (distinct(&seen_a) < n || distinct(&seen_b) < n) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let restarts = |m: &str| {
        bridge
            .metric(&format!(
                r#"bridge_mapping_restarts_total{{mapping="{m}",tenant="default"}}"#
            ))
            .unwrap_or(0.0)
    };
    let (restarts_a, restarts_b) = (restarts("a"), restarts("b"));
    reader_a.abort();
    reader_b.abort();
    bridge.stop_clean();
    let log = bridge.log_report();
    assert_eq!(
        (distinct(&seen_a), distinct(&seen_b)),
        (n, n),
        "everything arrived; {log}"
    );
    assert!(restarts_a >= 1.0, "`a` restarted; {log}");
    assert_eq!(restarts_b, 0.0, "`b` went on, undisturbed; {log}");
}
