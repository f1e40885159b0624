//! A throughput tripwire against the real brokers: in each direction, the bridge drains a
//! backlog at no less than [`MIN_RATIO`] of the plain relay's rate (`bridge_tests::relay`),
//! both measured in the same run by the benchmark's harness (`bridge_tests::throughput`), in
//! one of up to [`ATTEMPTS`] runs. It catches order-of-magnitude regressions, which slow every
//! run, not a shared machine's pauses, which slow some; it makes no timing claim. Its tests measure one at
//! a time; tests of other modules of the binary may run beside them, so for figures nothing
//! else disturbs run them on their own:
//! `cargo test -p bridge-tests --test e2e -- tripwire:: --nocapture`.

use bridge_tests::bridge::tripwire_binary;
use bridge_tests::brokers;
use bridge_tests::throughput::{Direction, throughput, warm_plugin_cache};

/// The least bridge rate, as a fraction of the relay's in the same run.
const MIN_RATIO: f64 = 0.3;

/// Messages per run (`BRIDGE_TRIPWIRE_MESSAGES`).
const MESSAGES: usize = 20_000;

/// Runs (relay, then bridge) before the tripwire fires: a run of well under a second is easily
/// halved by whatever else the machine does at that moment (seen: 0.28 once in CI, 0.42–0.80
/// in six runs of the same build on a quiet machine).
const ATTEMPTS: usize = 3;

/// Lines of the bridge's log shown when the tripwire fires.
const LOG_TAIL: usize = 40;

/// The tests measure one at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Messages per run: `BRIDGE_TRIPWIRE_MESSAGES`, or [`MESSAGES`].
fn messages() -> usize {
    std::env::var("BRIDGE_TRIPWIRE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES)
}

/// The last `lines` lines of `log`.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The plain relay, then the bridge (`header-map` + `routing-key`, provenance headers on, as
/// in the benchmark) drain a backlog of 1 KiB messages in `dir`, each on fresh topics and
/// queues; in one of [`ATTEMPTS`] such runs, the bridge's rate must be at least [`MIN_RATIO`]
/// of the relay's.
///
/// This guards against order-of-magnitude regressions on a noisy machine; it is not a timing
/// claim (`docs/performance.md` has the figures). The bridge under test is optimised (profile
/// `tripwire`: release without link-time optimisation; scripts/test.sh builds it): a debug
/// build spends its time in unoptimised code and would hide a bridge that waits instead of
/// working.
async fn tripwire(dir: Direction) {
    let _alone = ALONE.lock().await;
    let n = messages();
    let bin = tripwire_binary();
    warm_plugin_cache(&bin);
    let conn = brokers::amqp().await;
    let mut runs = Vec::new();
    for _ in 0..ATTEMPTS {
        let relay = throughput(&conn, dir, n, None).await;
        let bridge = throughput(&conn, dir, n, Some(&bin)).await;
        let ratio = bridge.rate / relay.rate.max(1.0);
        let figures = format!(
            "relay {:.0} msgs/s, bridge {:.0} msgs/s, bridge ÷ relay {ratio:.2}",
            relay.rate, bridge.rate,
        );
        println!("tripwire {}: {figures} ({n} messages)", dir.name());
        assert!(relay.rate > 0.0, "{}: the relay moved nothing", dir.name());
        if ratio >= MIN_RATIO {
            return;
        }
        runs.push((figures, bridge.log));
    }
    let (_, log) = runs.last().expect("at least one run");
    let figures: Vec<&str> = runs.iter().map(|(f, _)| f.as_str()).collect();
    panic!(
        "{}: the bridge moved under {MIN_RATIO} × the relay's rate in each of {ATTEMPTS} runs:\n{}\nthe last bridge's log ends:\n{}",
        dir.name(),
        figures.join("\n"),
        tail(log.as_deref().unwrap_or_default(), LOG_TAIL),
    );
}

/// Kafka → Kafka: the bridge drains at least [`MIN_RATIO`] of the relay's rate.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_kafka() {
    tripwire(Direction::KafkaToKafka).await;
}

/// Kafka → RabbitMQ: the bridge drains at least [`MIN_RATIO`] of the relay's rate.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_rabbitmq() {
    tripwire(Direction::KafkaToRabbitmq).await;
}

/// RabbitMQ → Kafka: the bridge drains at least [`MIN_RATIO`] of the relay's rate.
#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_to_kafka() {
    tripwire(Direction::RabbitmqToKafka).await;
}
