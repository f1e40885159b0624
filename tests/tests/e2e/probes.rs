//! `/livez` and `/readyz` as Kubernetes uses them: readiness follows the brokers and the
//! mappings; liveness fails only when the process no longer answers, so that a bridge waiting
//! for a broker is never restarted for it.

use std::time::Duration;

use bridge_tests::bridge::{http_get, probe, send_signal};
use bridge_tests::brokers::{self, unique};
use bridge_tests::scenario::{Mapping, Scenario};

#[tokio::test(flavor = "multi_thread")]
async fn livez_stays_up_through_a_broker_outage_and_fails_when_the_process_hangs() {
    // RabbitMQ at a port nothing listens on: the mapping cannot connect.
    let dead = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        bridge_tests::bridge::free_port()
    );
    let topic = unique("livez");
    brokers::create_topic(&topic, 1).await;
    let bridge = Scenario::with_brokers(&brokers::brokers_toml_with(&dead))
        .health()
        .mapping(Mapping::kafka_to_rabbitmq(
            "out",
            &[&topic],
            &unique("livez"),
            "events",
        ))
        .start();
    let port = bridge.health_port();
    let quick = Duration::from_secs(2);
    // The listener answers once it is up.
    let mut live = None;
    for _ in 0..100 {
        live = probe(port, "/livez", quick);
        if live.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(live, Some(200), "{}", bridge.log_report());
    let (ready, why) = http_get(port, "/readyz").expect("/readyz answers");
    assert_eq!(ready, 503, "the mapping cannot reach RabbitMQ: {why}");
    assert!(why.contains("mapping `out`"), "{why}");
    assert_eq!(
        probe(port, "/livez", quick),
        Some(200),
        "a broker outage is not a hang"
    );

    // A process that no longer answers fails the probe; it passes again once it does.
    send_signal(bridge.pid(), libc::SIGSTOP);
    // `kill` returns before every thread has stopped: a busy machine may let one answer.
    let stopped = |task: std::fs::DirEntry| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T'))
        })
    };
    for _ in 0..100 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", bridge.pid()));
        if tasks.is_ok_and(|mut t| t.all(|task| task.is_ok_and(stopped))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let hung = probe(port, "/livez", quick);
    send_signal(bridge.pid(), libc::SIGCONT);
    assert_eq!(
        hung, None,
        "a stopped process does not answer its liveness probe"
    );
    assert_eq!(probe(port, "/livez", Duration::from_secs(10)), Some(200));
}
