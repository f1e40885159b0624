//! A noisy neighbour against the real brokers: tenant A's plugin spins to its CPU limit on
//! every call while tenant B bridges; B keeps its throughput. Tests of other modules of the
//! binary may run beside it, so for figures nothing else disturbs run it on its own:
//! `cargo test -p bridge-tests --test e2e -- noisy_neighbour:: --nocapture`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bridge_tests::artifacts;
use bridge_tests::brokers::{self, unique};
use bridge_tests::scenario::{Mapping, Running, Scenario};

/// Tenant A's plugin spins to its CPU limit on every call while tenant B bridges: B's
/// throughput with A busy is compared with B alone, in the same run.
#[tokio::test(flavor = "multi_thread")]
async fn a_noisy_neighbour_does_not_starve_another_tenant() {
    const B_MESSAGES: usize = 16_000;
    const A_MESSAGES: usize = 24;
    let (a_topic, b_topic) = (unique("noisy-a"), unique("quiet-b"));
    brokers::create_topic(&a_topic, 4).await;
    brokers::create_topic(&b_topic, 2).await;
    let (a_dlx, a_dlq) = (unique("noisy-dlx"), unique("noisy-dlq"));
    let (b_ex, b_q) = (unique("quiet-ex"), unique("quiet-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &a_dlx, &a_dlq, "dl").await;
    brokers::declare_bound_queue(&conn, &b_ex, &b_q, "rk").await;
    let mut bridge = Scenario::new()
        .health()
        .section("[tenants.a]\nlimits = { timeout_ms = 50 }")
        .section("[tenants.b]")
        .plugin("spinner", artifacts::HOSTILE, r#"mode = "loop""#)
        .plugin_extra("spinner", r#"tenant = "a""#)
        .plugin("headers", artifacts::HEADER_MAP, r#"set = { x-b = "yes" }"#)
        .plugin_extra("headers", r#"tenant = "b""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("noisy", &[&a_topic], &unique("noisy"), &a_dlx)
                .routing_key("never")
                .dead_letter_rabbitmq(&a_dlx, "dl")
                .plugins(&["spinner"])
                .set("tenant", "a"),
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("quiet", &[&b_topic], &unique("quiet"), &b_ex)
                .routing_key("rk")
                .plugins(&["headers"])
                .set("tenant", "b"),
        )
        .start();
    bridge.ready().await;
    let (seen, reader) = brokers::collect_queue(&b_q).await;

    // B drains a backlog alone, then again while A's plugin spins on every call.
    let drain = |round: String| {
        let seen = seen.clone();
        let topic = b_topic.clone();
        async move {
            let before = seen.lock().unwrap().len();
            brokers::produce(
                &topic,
                &brokers::numbered_records(&round, B_MESSAGES, 0),
                None,
            )
            .await;
            brokers::wait_distinct(&seen, before + B_MESSAGES, Duration::from_secs(120)).await;
            let arrivals = seen.lock().unwrap();
            let mine = &arrivals[before..];
            assert_eq!(
                mine.len(),
                B_MESSAGES,
                "{round}: every message of B arrived"
            );
            // The steady middle of the drain: the tenth to the ninetieth percentile of arrivals.
            let (from, to) = (B_MESSAGES / 10, B_MESSAGES * 9 / 10);
            let span = mine[to].0 - mine[from].0;
            (to - from) as f64 / span.as_secs_f64()
        }
    };
    // Two rounds each, interleaved; the best of each pair is compared, as benchmarks do, so
    // that an unrelated stall of this shared machine does not count against either side.
    let mut alone = Vec::new();
    let mut busy = Vec::new();
    let mut letters = Vec::new();
    for round in 0..2 {
        alone.push(drain(format!("alone{round}")).await);
        let timeouts_before = timeouts(&bridge);
        brokers::produce(
            &a_topic,
            &brokers::numbered_records(&format!("a{round}"), A_MESSAGES, 0),
            None,
        )
        .await;
        // A is busy once its calls time out.
        let deadline = Instant::now() + Duration::from_secs(30);
        while timeouts(&bridge) == timeouts_before {
            assert!(Instant::now() < deadline, "A's plugin never timed out");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        busy.push(drain(format!("busy{round}")).await);
        // A's messages end in its dead-letter queue before B is alone again.
        letters.extend(
            brokers::consume_queue(&conn, &a_dlq, A_MESSAGES, Duration::from_secs(60)).await,
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (alone, busy) = (best(&alone), best(&busy));
    let status = bridge.status();
    let log = bridge.log_text();
    bridge.stop_clean();
    reader.abort();

    let ratio = busy / alone;
    eprintln!(
        "tenant B: {alone:.0} msg/s alone, {busy:.0} msg/s beside a spinning tenant A: {ratio:.2}"
    );
    // The target is 0.9 (`BRIDGE_FULL_TESTS=1` holds the run to it). On the project's 2-core
    // machines, shared with both brokers and the previous tests' leftovers, a round's throughput
    // swings by ±30 % on its own, so the CI holds B only to not being starved.
    let floor = if std::env::var_os("BRIDGE_FULL_TESTS").is_some() {
        0.9
    } else {
        0.5
    };
    assert!(ratio >= floor, "B kept {ratio:.2} of its throughput");
    assert_eq!(
        letters.len(),
        2 * A_MESSAGES,
        "every message of A dead-lettered"
    );
    for l in &letters {
        assert_eq!(
            l.header("x-bridge-failure-kind").as_deref(),
            Some("plugin-timeout")
        );
    }
    assert_eq!(status["mappings"]["noisy"]["tenant"], "a");
    assert_eq!(status["mappings"]["quiet"]["tenant"], "b");
    assert!(
        log.lines()
            .filter(|l| l.contains("noisy") && l.contains("retrying"))
            .all(|l| l.contains("tenant=a")),
        "the noisy mapping's lines carry its tenant: {}",
        log.lines()
            .filter(|l| l.contains("noisy"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Plugin timeouts counted so far, by every mapping.
fn timeouts(bridge: &Running) -> f64 {
    bridge
        .metrics()
        .lines()
        .filter(|l| l.starts_with("bridge_failures_total") && l.contains("plugin-timeout"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
