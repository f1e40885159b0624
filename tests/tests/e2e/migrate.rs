//! `bridge-host migrate` on the Python replicators' real Helm values: every migrated file
//! passes `bridge-host check` and holds no password; a migrated Kafka⇄RabbitMQ config runs
//! against the real brokers and writes the replicator's header names.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bridge_tests::bridge::{BridgeProcess, binary};
use bridge_tests::brokers::{self, Record, unique};

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/seed-values")
        .join(name)
}

fn migrate(files: &[PathBuf]) -> String {
    let out = Command::new(binary())
        .arg("migrate")
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate {files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .env("RABBITMQ_PASSWORD", "from-the-environment")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn every_seed_values_file_migrates_to_a_valid_config_without_passwords() {
    for files in [
        vec![seed("kafka-rabbitmq-replicator.values.yaml")],
        vec![seed("kafka-replicator.values.yaml")],
        vec![
            seed("kafka-replicator.values.yaml"),
            seed("kafka-replicator.values-production.yaml"),
        ],
    ] {
        let toml = migrate(&files);
        let (ok, said) = check(&toml);
        assert!(ok, "{files:?}: {said}\n{toml}");
        assert!(!toml.contains(":password@"), "no literal password: {toml}");
    }
    let k2r = migrate(&[seed("kafka-rabbitmq-replicator.values.yaml")]);
    assert!(
        k2r.contains("${RABBITMQ_PASSWORD}@rabbitmq:5672/%2F"),
        "{k2r}"
    );
    assert!(
        k2r.contains("group = \"kafka-rabbitmq-replicator-k2r-v2\""),
        "{k2r}"
    );
    let production = migrate(&[
        seed("kafka-replicator.values.yaml"),
        seed("kafka-replicator.values-production.yaml"),
    ]);
    assert!(
        production.contains("group = \"kafka-replicator-s2t-prod\""),
        "{production}"
    );
    assert!(
        production.contains("\"session.timeout.ms\" = \"45000\""),
        "{production}"
    );

    // The production overlay alone lacks the brokers: the error names the key.
    let out = Command::new(binary())
        .arg("migrate")
        .arg(seed("kafka-replicator.values-production.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sourceKafka.bootstrapServers"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every leaf key of `values` (dotted, list indices as `[]`) with its scalar value.
fn leaves(values: &serde_json::Value, at: &str, out: &mut Vec<(String, serde_json::Value)>) {
    use serde_json::Value;
    match values {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                leaves(v, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                leaves(item, &format!("{at}[]"), out);
            }
        }
        scalar => out.push((at.to_string(), scalar.clone())),
    }
}

/// A replicator user's values carry over whole: for every key of the three seed values
/// files, the migrated config holds its value or names the key (or the table above it) in a
/// comment, and no key is one `migrate` does not know.
#[test]
fn every_key_of_the_seed_values_is_carried_over_or_named() {
    for (file, migrated_from) in [
        (
            "kafka-rabbitmq-replicator.values.yaml",
            vec!["kafka-rabbitmq-replicator.values.yaml"],
        ),
        (
            "kafka-replicator.values.yaml",
            vec!["kafka-replicator.values.yaml"],
        ),
        // An overlay: its keys win over the base file's.
        (
            "kafka-replicator.values-production.yaml",
            vec![
                "kafka-replicator.values.yaml",
                "kafka-replicator.values-production.yaml",
            ],
        ),
    ] {
        let out = migrate(&migrated_from.iter().map(|f| seed(f)).collect::<Vec<_>>());
        assert!(
            !out.contains("not a key of this chart"),
            "{file}: every seed key is one migrate knows:\n{out}"
        );
        let values: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(seed(file)).unwrap()).unwrap();
        let mut keys = Vec::new();
        leaves(&values, "", &mut keys);
        assert!(keys.len() > 10, "{file}: {keys:?}");
        for (key, value) in keys {
            // The key, or a table above it, named in backticks.
            let mut named = false;
            let mut above = key.as_str();
            loop {
                named |= out.contains(&format!("`{above}`"));
                match above.rfind('.') {
                    Some(i) => above = &above[..i],
                    None => break,
                }
            }
            let carried = match &value {
                serde_json::Value::String(text) => out.contains(text.as_str()),
                serde_json::Value::Number(n) => out.contains(&n.to_string()),
                // Switches: what they switch is there or not (the mappings above).
                _ => true,
            };
            assert!(
                named || carried,
                "{file}: `{key}` = {value} is neither carried over nor named:\n{out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migrated_kafka_rabbitmq_config_bridges_both_ways_with_the_seed_header_names() {
    let (topic, queue, exchange) = (
        unique("mig-orders"),
        unique("mig-orders-q"),
        unique("mig-ex"),
    );
    let (in_queue, out_topic) = (unique("mig-wh"), unique("mig-wh-out"));
    brokers::create_topic(&topic, 1).await;
    brokers::create_topic(&out_topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_queue(&conn, &in_queue).await;
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            r#"replicaCount: 2
kafka:
  bootstrapServers: "{}"
rabbitmq:
  host: "127.0.0.1"
  port: 5672
  username: "guest"
  password: "guest"
  vhost: "/"
consumerGroup:
  kafkaToRabbitmq: "{}"
consumer:
  autoOffsetReset: "earliest"
replication:
  kafkaToRabbitmq:
    enabled: true
    mappings:
      - kafkaTopic: "{topic}"
        rabbitmqQueue: "{queue}"
        rabbitmqExchange: "{exchange}"
        rabbitmqRoutingKey: "order.damage"
  rabbitmqToKafka:
    enabled: true
    mappings:
      - rabbitmqQueue: "{in_queue}"
        kafkaTopic: "{out_topic}"
"#,
            brokers::kafka_bootstrap(),
            unique("mig-group")
        ),
    )
    .unwrap();
    let toml = migrate(&[values]);
    // `declare` makes the exchange and binds the queue, as the replicator did.
    let toml = toml.replace("[bridge]", "[bridge]\nshutdown_timeout_secs = 10");
    let mut bridge = BridgeProcess::start_with_env(&toml, &[("RABBITMQ_PASSWORD", "guest")]);
    brokers::produce(
        &topic,
        &[Record {
            key: Some(b"order-1".to_vec()),
            payload: Some(b"{\"type\":\"damage\"}".to_vec()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        }],
        None,
    )
    .await;
    let got = brokers::consume_queue(&conn, &queue, 1, Duration::from_secs(30)).await;
    brokers::publish_to_queue(
        &conn,
        &in_queue,
        &[(b"back".to_vec(), lapin::BasicProperties::default())],
    )
    .await;
    let ot = out_topic.clone();
    let back = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&ot, 1, Duration::from_secs(30))
    })
    .await
    .unwrap();
    bridge.stop_clean();
    let log = bridge.log_text();
    assert_eq!(got.len(), 1, "log:\n{log}");
    assert_eq!(got[0].routing_key, "order.damage");
    assert_eq!(
        got[0].header("kafka_topic").as_deref(),
        Some(topic.as_str())
    );
    assert_eq!(got[0].header("kafka_partition").as_deref(), Some("0"));
    assert_eq!(got[0].header("kafka_offset").as_deref(), Some("0"));
    assert_eq!(got[0].header("kafka_key").as_deref(), Some("order-1"));
    assert_eq!(back.len(), 1, "log:\n{log}");
    assert_eq!(
        back[0].header("rabbitmq_queue").as_deref(),
        Some(in_queue.as_str())
    );
    assert!(!log.contains("guest:guest"), "no password in the log");
}
