//! Network faults between the bridge and each broker, through a TCP fault proxy
//! ([`FaultProxy`]), during a steady stream in both directions (Kafka → RabbitMQ and
//! RabbitMQ → Kafka, about 1 000 messages/s each):
//!
//! - a blackhole (connections open, nothing answers) for 30 s: the bridge notices within
//!   2 × heartbeat + 5 s (`/readyz` answers 503), loses nothing, and is flowing again soon
//!   after the link is back;
//! - a degraded link, in turn: 200 ms latency, a 64 KiB/s bandwidth limit, every connection
//!   reset (TCP RST) three times while confirms and delivery reports are pending, and a slow
//!   close: loss 0 and flowing again after each.
//!
//! The RabbitMQ leg goes through a proxy in front of the shared broker; the Kafka leg through a
//! proxy in front of a private Kafka node whose second listener advertises the proxy, so that
//! the test's own clients reach the broker directly.

// Helpers below panic on broker errors on purpose: a test cannot go on without them.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::bridge::{BridgeProcess, free_port, http_get, wait_readyz};
use bridge_tests::brokers::{self, Arrivals, Record, unique};
use bridge_tests::fault_proxy::{FaultProxy, Faults};
use bridge_tests::kafka_node::KafkaNode;

/// Messages per direction in the blackhole runs: about 20 s of stream at 1 000 messages/s.
const BLACKHOLE_N: usize = 20_000;
/// Messages per direction in the degraded-link runs, which take longer.
const DEGRADED_N: usize = 60_000;
const PARTITIONS: i32 = 4;
/// The AMQP heartbeat the bridge asks for, in seconds.
const HEARTBEAT: u64 = 5;
const BLACKHOLE: Duration = Duration::from_secs(30);

/// Which broker the faults are between.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Leg {
    RabbitMq,
    Kafka,
}

/// A bridge moving two streams through a proxy.
struct Run {
    proxy: FaultProxy,
    bridge: BridgeProcess,
    health: u16,
    /// Where the test's own clients reach Kafka.
    bootstrap: String,
    k2r_seen: Arrivals,
    r2k_topic: String,
    /// Messages per direction.
    n: usize,
    watermarks: std::sync::Arc<rdkafka::consumer::BaseConsumer>,
    _kafka: Option<KafkaNode>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i:06}").into_bytes())
        .collect()
}

async fn ready(health: u16) -> Option<u16> {
    tokio::task::spawn_blocking(move || http_get(health, "/readyz").map(|(code, _)| code))
        .await
        .unwrap()
}

impl Run {
    async fn start(leg: Leg, n: usize) -> Run {
        let (kafka, proxy) = match leg {
            Leg::RabbitMq => (None, FaultProxy::start("127.0.0.1:5672").await),
            Leg::Kafka => {
                // The node's second listener, PROXIED, advertises the proxy's port: clients
                // bootstrapping through the proxy keep going through it.
                let proxied = free_port();
                let proxy = FaultProxy::start("127.0.0.1:1").await;
                let node = tokio::task::spawn_blocking({
                    let advertised = proxy.port();
                    move || {
                        KafkaNode::start_with(
                            1,
                            &[
                                &format!(
                                    "listeners=PLAINTEXT://127.0.0.1:{{port}},PROXIED://127.0.0.1:{proxied},CONTROLLER://127.0.0.1:{{controller_port}}"
                                ),
                                &format!(
                                    "advertised.listeners=PLAINTEXT://127.0.0.1:{{port}},PROXIED://127.0.0.1:{advertised}"
                                ),
                                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT",
                            ],
                        )
                    }
                })
                .await
                .unwrap();
                proxy.set_upstream(&format!("127.0.0.1:{proxied}"));
                (Some(node), proxy)
            }
        };
        let bootstrap = kafka
            .as_ref()
            .map_or_else(brokers::kafka_bootstrap, |k| k.bootstrap.clone());
        let (bridge_kafka, bridge_amqp) = match leg {
            Leg::RabbitMq => (
                bootstrap.clone(),
                format!(
                    "amqp://guest:guest@{}/%2f?heartbeat={HEARTBEAT}",
                    proxy.addr()
                ),
            ),
            Leg::Kafka => (
                proxy.addr(),
                format!("{}?heartbeat={HEARTBEAT}", brokers::amqp_url()),
            ),
        };

        let conn = brokers::amqp().await;
        let k2r_topic = unique("faults-k2r");
        brokers::create_topic_on(&bootstrap, &k2r_topic, PARTITIONS).await;
        let exchange = unique("faults-ex");
        let k2r_queue = unique("faults-out");
        brokers::declare_bound_queue(&conn, &exchange, &k2r_queue, "rk").await;
        let r2k_queue = unique("faults-in");
        brokers::declare_queue(&conn, &r2k_queue).await;
        let r2k_topic = unique("faults-r2k");
        brokers::create_topic_on(&bootstrap, &r2k_topic, PARTITIONS).await;
        drop(conn);
        let (k2r_seen, collecting) = brokers::collect_queue(&k2r_queue).await;

        let health = free_port();
        let bridge = BridgeProcess::start(&format!(
            r#"
[kafka.main]
bootstrap_servers = "{bridge_kafka}"
[rabbitmq.local]
url = "{bridge_amqp}"
[bridge]
health_listen = "127.0.0.1:{health}"

[[mapping]]
name = "to-rabbitmq"
source = {{ kafka = "main", topics = ["{k2r_topic}"], group = "{group}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}", routing_key = "rk" }}
max_in_flight = 200

[[mapping]]
name = "to-kafka"
source = {{ rabbitmq = "local", queue = "{r2k_queue}", prefetch = 200 }}
target = {{ kafka = "main", topic = "{r2k_topic}" }}
max_in_flight = 200
"#,
            group = unique("faults")
        ));
        assert!(
            wait_readyz(health, 200, Duration::from_secs(60))
                .await
                .map(|(took, _)| took)
                .is_some(),
            "the bridge gets ready through the proxy:\n{}",
            bridge.log_text()
        );
        let records: Vec<Record> = payloads("k2r", n)
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
        let tasks = vec![
            collecting,
            brokers::feed_topic(&bootstrap, &k2r_topic, records),
            brokers::feed_queue(&brokers::amqp_url(), &r2k_queue, payloads("r2k", n)),
        ];
        let watermarks = brokers::watermark_reader(&bootstrap);
        Run {
            proxy,
            bridge,
            health,
            bootstrap,
            k2r_seen,
            r2k_topic,
            n,
            watermarks: std::sync::Arc::new(watermarks),
            _kafka: kafka,
            _tasks: tasks,
        }
    }

    /// Messages delivered so far: (to RabbitMQ, to Kafka), duplicates included.
    async fn delivered(&self) -> (usize, i64) {
        let (consumer, topic) = (
            std::sync::Arc::clone(&self.watermarks),
            self.r2k_topic.clone(),
        );
        let to_kafka = tokio::task::spawn_blocking(move || {
            brokers::high_watermarks(&consumer, &topic, PARTITIONS)
        })
        .await
        .unwrap();
        (self.k2r_seen.lock().unwrap().len(), to_kafka)
    }

    /// Waits until both directions moved at least `n` more messages than now (or everything
    /// arrived); how long it took.
    async fn wait_flowing(&self, n: usize, limit: Duration) -> Option<Duration> {
        let since = self.delivered().await;
        self.wait_flowing_since(since, n, limit).await
    }

    /// Waits until both directions moved at least `n` more messages than `since` (or every
    /// message arrived: a backlog may drain before the first look); how long it took.
    async fn wait_flowing_since(
        &self,
        since: (usize, i64),
        n: usize,
        limit: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        let to_rabbitmq = (since.0 + n).min(self.n);
        let to_kafka = (since.1 + n as i64).min(self.n as i64);
        while start.elapsed() < limit {
            let (a, b) = self.delivered().await;
            if a >= to_rabbitmq && b >= to_kafka {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// Waits for everything, then checks loss in both directions; returns the duplicates.
    async fn finish(self) -> (usize, usize) {
        let n = self.n;
        brokers::wait_distinct(&self.k2r_seen, n, Duration::from_secs(180)).await;
        let (k2r_loss, k2r_dups) = brokers::arrivals_loss_and_duplicates(n, &self.k2r_seen);
        brokers::wait_topic_settled(
            &self.bootstrap,
            &self.r2k_topic,
            PARTITIONS,
            n,
            Duration::from_secs(180),
        )
        .await;
        let (r2k_loss, r2k_dups) =
            brokers::topic_loss_and_duplicates(&self.bootstrap, &self.r2k_topic, n).await;
        let log = self.bridge.log_text();
        assert_eq!(
            (k2r_loss, r2k_loss),
            (0, 0),
            "nothing lost (Kafka → RabbitMQ, RabbitMQ → Kafka); bridge log:\n{log}"
        );
        assert!(
            !log.contains("panicked"),
            "the bridge did not panic:\n{log}"
        );
        // A restarted mapping's partitions are sought back to what it did not settle, so
        // that they resume there instead of staying paused.
        assert!(
            !log.contains("Kafka seek failed"),
            "every rewind of a restarted mapping's partitions took effect:\n{log}"
        );
        (k2r_dups, r2k_dups)
    }
}

async fn blackhole(leg: Leg) {
    let run = Run::start(leg, BLACKHOLE_N).await;
    assert!(
        run.wait_flowing(500, Duration::from_secs(60))
            .await
            .is_some(),
        "both directions flow before the fault:\n{}",
        run.bridge.log_text()
    );
    run.proxy.set(Faults {
        blackhole: true,
        ..Faults::default()
    });
    let faulted = Instant::now();
    let detect_limit = Duration::from_secs(2 * HEARTBEAT + 5);
    let detected = wait_readyz(run.health, 503, BLACKHOLE)
        .await
        .map(|(took, _)| took);
    println!("{leg:?} blackhole: /readyz 503 after {detected:?}");
    assert!(
        detected.is_some_and(|d| d <= detect_limit),
        "{leg:?} blackhole detected within {detect_limit:?}, took {detected:?}:\n{}",
        run.bridge.log_text()
    );
    // Not ready for as long as the fault lasts.
    while faulted.elapsed() < BLACKHOLE {
        assert_eq!(
            ready(run.health).await,
            Some(503),
            "{leg:?} not ready during the blackhole ({:?} in)",
            faulted.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Counted from the moment the link is back: the backlog may drain before `/readyz` is
    // looked at again, and the stream may have ended by then.
    let since = run.delivered().await;
    run.proxy.clear();
    let back = wait_readyz(run.health, 200, Duration::from_secs(60))
        .await
        .map(|(took, _)| took);
    let flowing = run
        .wait_flowing_since(since, 500, Duration::from_secs(60))
        .await;
    println!("{leg:?} blackhole: ready again after {back:?}, flowing after {flowing:?}");
    assert!(
        back.is_some() && flowing.is_some_and(|d| d <= Duration::from_secs(30)),
        "{leg:?} ready and flowing within 30 s of the link coming back ({back:?}, {flowing:?}):\n{}",
        run.bridge.log_text()
    );
    let (k2r_dups, r2k_dups) = run.finish().await;
    println!(
        "{leg:?} blackhole: loss 0, duplicates {k2r_dups} (to RabbitMQ) and {r2k_dups} (to Kafka)"
    );
}

async fn degraded_link(leg: Leg) {
    let run = Run::start(leg, DEGRADED_N).await;
    let steps: [(&str, Faults); 3] = [
        (
            "200 ms latency",
            Faults {
                latency: Duration::from_millis(200),
                ..Faults::default()
            },
        ),
        (
            "64 KiB/s",
            Faults {
                bandwidth: Some(64 * 1024),
                ..Faults::default()
            },
        ),
        (
            "slow close (5 s)",
            Faults {
                slow_close: Duration::from_secs(5),
                ..Faults::default()
            },
        ),
    ];
    assert!(
        run.wait_flowing(500, Duration::from_secs(60))
            .await
            .is_some(),
        "both directions flow before the faults:\n{}",
        run.bridge.log_text()
    );
    for (name, faults) in steps {
        run.proxy.set(faults);
        if faults.slow_close > Duration::ZERO {
            run.proxy.close_connections();
        }
        // Ten seconds of the fault; the stream keeps going, slower, on a slow link.
        let until = Instant::now() + Duration::from_secs(10);
        let during = run.wait_flowing(50, Duration::from_secs(10)).await;
        tokio::time::sleep_until(until.into()).await;
        run.proxy.clear();
        let after = run.wait_flowing(500, Duration::from_secs(60)).await;
        println!("{leg:?} {name}: flowing during the fault after {during:?}, after it {after:?}");
        assert!(
            after.is_some_and(|d| d <= Duration::from_secs(30)),
            "{leg:?} flowing within 30 s after {name}:\n{}",
            run.bridge.log_text()
        );
    }
    // Resets while confirms and delivery reports are pending (the stream is steady).
    for _ in 0..3 {
        run.proxy.reset_peers();
        let after = run.wait_flowing(500, Duration::from_secs(60)).await;
        println!("{leg:?} reset_peer: flowing again after {after:?}");
        assert!(
            after.is_some_and(|d| d <= Duration::from_secs(30)),
            "{leg:?} flowing within 30 s after a reset:\n{}",
            run.bridge.log_text()
        );
    }
    let (k2r_dups, r2k_dups) = run.finish().await;
    println!(
        "{leg:?} degraded link: loss 0, duplicates {k2r_dups} (to RabbitMQ) and {r2k_dups} (to Kafka)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_blackhole_is_detected_and_loses_nothing() {
    blackhole(Leg::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_blackhole_is_detected_and_loses_nothing() {
    blackhole(Leg::Kafka).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_latency_bandwidth_resets_and_slow_close_lose_nothing() {
    degraded_link(Leg::RabbitMq).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_latency_bandwidth_resets_and_slow_close_lose_nothing() {
    degraded_link(Leg::Kafka).await;
}
