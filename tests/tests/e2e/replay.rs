//! `bridge-host replay`: dead letters go back to their target once it works, and stay where
//! they were while it does not.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use bridge_tests::artifacts;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

/// Runs `bridge-host replay --config CONFIG ARGS…`.
fn replay(config: &Path, args: &[&str]) -> Output {
    let out = std::process::Command::new(bridge_tests::bridge::binary())
        .args(["replay", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("bridge-host runs");
    eprintln!(
        "replay {args:?}: {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Messages whose header `x-behave` is missing make the `hostile` plugin trap: they are
/// dead-lettered at once.
fn trapping(scenario: Scenario) -> Scenario {
    scenario.plugin("hostile", artifacts::HOSTILE, r#"mode = "trap""#)
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_dead_letters_go_back_to_their_target_and_stay_while_it_is_broken() {
    let topic = unique("replay-orders");
    let dlq = unique("replay-dead");
    let exchange = unique("replay-events");
    let queue = unique("replay-routed");
    brokers::create_topic(&topic, 1).await;
    brokers::create_topic(&dlq, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "orders").await;
    let record = |i: usize, behave: bool| Record {
        key: Some(format!("k{i}").into_bytes()),
        payload: Some(format!("order {i}").into_bytes()),
        headers: [("trace".to_string(), format!("t{i}").into_bytes())]
            .into_iter()
            .chain(behave.then(|| ("x-behave".to_string(), b"1".to_vec())))
            .collect(),
        partition: 0,
        timestamp: None,
    };
    brokers::produce(
        &topic,
        &[record(0, true), record(1, false), record(2, false)],
        None,
    )
    .await;
    let scenario = trapping(Scenario::new()).mapping(
        Mapping::kafka_to_rabbitmq("orders", &[&topic], &unique("bridge"), &exchange)
            .routing_key("orders")
            .plugins(&["hostile"])
            .dead_letter_kafka(&dlq),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, scenario.to_toml()).unwrap();
    let mut bridge = scenario.start();
    let delivered = brokers::consume_queue(&conn, &queue, 1, Duration::from_secs(30)).await;
    let dead = brokers::read_topic(&dlq, 2, Duration::from_secs(30)).await;
    bridge.stop_clean();
    assert_eq!(
        (delivered.len(), dead.len()),
        (1, 2),
        "{}",
        bridge.log_report()
    );

    let from = format!("kafka:main/{dlq}");
    let group = unique("replay-group");
    let common = ["--from", from.as_str(), "--group", group.as_str()];

    // A dry run lists them and moves nothing; filters pass over what they do not select.
    let listed = replay(&config, &[&common[..], &["--dry-run"]].concat());
    assert!(listed.status.success());
    assert_eq!(
        stdout(&listed).matches("would replay").count(),
        3,
        "two lines and the summary"
    );
    assert!(stdout(&listed).contains("would replay 2, failed 0, passed over 0"));
    let none = replay(
        &config,
        &[
            &common[..],
            &[
                "--dry-run",
                "--mapping",
                "other",
                "--since",
                "2999-01-01T00:00:00Z",
            ],
        ]
        .concat(),
    );
    assert!(stdout(&none).contains("read 2 dead letters"));
    assert!(stdout(&none).contains("would replay 0, failed 0, passed over 2"));

    // A target that is still broken: both fail, the exit code says so, and they stay.
    let broken = replay(
        &config,
        &[
            &common[..],
            &["--to", "rabbitmq:local/no-such-exchange-for-replay"],
        ]
        .concat(),
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        stdout(&broken).contains("replayed 0, failed 2"),
        "{}",
        stdout(&broken)
    );
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains("2 dead letter(s) could not be replayed")
    );

    // The mapping's target works: both arrive as they were consumed, context removed.
    let fixed = replay(&config, &common);
    assert!(fixed.status.success());
    assert!(
        stdout(&fixed).contains("replayed 2, failed 0"),
        "{}",
        stdout(&fixed)
    );
    assert!(stdout(&fixed).contains("mapping `orders` has plugins"));
    let replayed = brokers::consume_queue(&conn, &queue, 2, Duration::from_secs(10)).await;
    let payloads: Vec<_> = replayed.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(payloads, vec![b"order 1".to_vec(), b"order 2".to_vec()]);
    for (i, m) in replayed.iter().enumerate() {
        assert_eq!(m.header("trace"), Some(format!("t{}", i + 1)));
        assert_eq!(
            m.header("kafka_topic").as_deref(),
            Some(topic.as_str()),
            "provenance"
        );
        assert_eq!(m.header("kafka_offset"), Some((i + 1).to_string()));
        assert_eq!(m.header("x-bridge-reason"), None, "context removed");
        assert_eq!(m.header("x-bridge-source"), None, "context removed");
    }

    // The group's position moved past them: nothing is replayed twice.
    let again = replay(&config, &common);
    assert!(
        stdout(&again).contains("read 0 dead letters"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_dead_letters_leave_their_queue_only_once_their_target_confirmed() {
    let source = unique("replay-in");
    let topic = unique("replay-out");
    let dlx = unique("replay-dlx");
    let dead_queue = unique("replay-dead-q");
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &source).await;
    brokers::declare_bound_queue(&conn, &dlx, &dead_queue, "dead").await;
    let message = |i: usize, behave: bool| {
        let mut headers = FieldTable::default();
        if behave {
            headers.insert("x-behave".into(), AMQPValue::LongString("1".into()));
        }
        let props = BasicProperties::default()
            .with_headers(headers)
            .with_message_id(format!("m{i}").into())
            .with_content_type("text/plain".into());
        (format!("payment {i}").into_bytes(), props)
    };
    brokers::publish_to_queue(
        &conn,
        &source,
        &[message(0, true), message(1, false), message(2, false)],
    )
    .await;
    let scenario = trapping(Scenario::new()).mapping(
        Mapping::rabbitmq_to_kafka("payments", &source, &topic)
            .plugins(&["hostile"])
            .dead_letter_rabbitmq(&dlx, "dead"),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, scenario.to_toml()).unwrap();
    let mut bridge = scenario.start();
    let delivered = brokers::read_topic(&topic, 1, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while brokers::queue_depth(&conn, &dead_queue).await < 2
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bridge.stop_clean();
    assert_eq!(delivered.len(), 1, "{}", bridge.log_report());
    assert_eq!(brokers::queue_depth(&conn, &dead_queue).await, 2);

    let from = format!("rabbitmq:local/{dead_queue}");
    // Back into the source, where the mapping runs them again, plugins included.
    let listed = replay(&config, &["--from", &from, "--to", "source", "--dry-run"]);
    let back = format!("to rabbitmq:local/(default exchange) (routing key `{source}`)");
    assert_eq!(
        stdout(&listed).matches(&back).count(),
        2,
        "{}",
        stdout(&listed)
    );
    assert_eq!(
        brokers::queue_depth(&conn, &dead_queue).await,
        2,
        "a dry run takes none"
    );
    // Still broken: nothing leaves the queue.
    let broken = replay(
        &config,
        &[
            "--from",
            &from,
            "--to",
            "rabbitmq:local/no-such-exchange-for-replay",
        ],
    );
    assert_eq!(broken.status.code(), Some(1), "{}", stdout(&broken));
    assert_eq!(
        brokers::queue_depth(&conn, &dead_queue).await,
        2,
        "both stay"
    );

    // One at a time to the mapping's target.
    let one = replay(&config, &["--from", &from, "--count", "1"]);
    assert!(one.status.success());
    assert!(
        stdout(&one).contains("replayed 1, failed 0"),
        "{}",
        stdout(&one)
    );
    assert_eq!(brokers::queue_depth(&conn, &dead_queue).await, 1);
    let rest = replay(&config, &["--from", &from, "--mapping", "payments"]);
    assert!(rest.status.success());
    assert_eq!(brokers::queue_depth(&conn, &dead_queue).await, 0);

    let all = brokers::read_topic(&topic, 3, Duration::from_secs(10)).await;
    let mut replayed: Vec<_> = all[1..]
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    replayed.sort();
    assert_eq!(replayed, vec!["payment 1", "payment 2"]);
    for r in &all[1..] {
        let header = |n: &str| {
            r.headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert!(header("amqp_message_id").is_some_and(|id| id == "m1" || id == "m2"));
        assert_eq!(header("amqp_content_type").as_deref(), Some("text/plain"));
        assert_eq!(
            header("rabbitmq_queue").as_deref(),
            Some(source.as_str()),
            "provenance"
        );
        assert_eq!(header("x-bridge-mapping"), None, "context removed");
    }
}
