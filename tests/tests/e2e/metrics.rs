//! `GET /metrics`: Prometheus text that the Prometheus project's own OpenMetrics parser
//! (`prometheus_client` from PyPI) accepts, with counters that match what the test sent in
//! each direction, and the same figures on `/status`.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use bridge_tests::artifacts;
use bridge_tests::bridge::http_get;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use serde_json::Value;

/// Parses OpenMetrics text with `prometheus_client`; returns `{sample name: [[labels, value]]}`.
fn parse(text: &str) -> Value {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup.sh installs prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejects /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of sample `name` whose labels include every `(key, value)` of `labels`.
fn sample(parsed: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parsed[name].as_array()?.iter().find_map(|s| {
        let have = &s[0];
        labels
            .iter()
            .all(|(k, v)| have[*k] == *v)
            .then(|| s[1].as_f64())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_count_what_was_sent_both_ways() {
    const K2R: usize = 300;
    const R2K: usize = 200;
    let topic = unique("metrics-in");
    brokers::create_topic(&topic, 2).await;
    let back = unique("metrics-back");
    brokers::create_topic(&back, 1).await;
    let exchange = unique("metrics-ex");
    let queue = unique("metrics-q");
    let in_queue = unique("metrics-in-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::declare_queue(&conn, &in_queue).await;
    let mut bridge = Scenario::new()
        .health()
        .plugin(
            "headers",
            artifacts::HEADER_MAP,
            r#"set = { x-metered = "yes" }"#,
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("metered", &[&topic], &unique("metrics"), &exchange)
                .routing_key("rk")
                .plugins(&["headers"]),
        )
        .mapping(Mapping::rabbitmq_to_kafka("metered-back", &in_queue, &back))
        .start();
    let health = bridge.health_port();
    let records: Vec<Record> = (0..K2R)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            payload: Some(format!("m-{i}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    brokers::produce(&topic, &records, None).await;
    let messages: Vec<_> = (0..R2K)
        .map(|i| {
            (
                format!("b-{i}").into_bytes(),
                lapin::BasicProperties::default(),
            )
        })
        .collect();
    brokers::publish_to_queue(&conn, &in_queue, &messages).await;
    assert_eq!(
        brokers::consume_queue(&conn, &queue, K2R, Duration::from_secs(30))
            .await
            .len(),
        K2R
    );
    brokers::wait_topic_settled(
        &brokers::kafka_bootstrap(),
        &back,
        1,
        R2K,
        Duration::from_secs(30),
    )
    .await;

    // Counters settle within a moment of the last confirmation; the cluster probe runs every 2 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    let parsed = loop {
        let (code, text) = tokio::task::spawn_blocking(move || http_get(health, "/metrics"))
            .await
            .unwrap()
            .expect("/metrics answers");
        assert_eq!(code, 200);
        let parsed = parse(&text);
        let done = sample(
            &parsed,
            "bridge_messages_delivered_total",
            &[("mapping", "metered-back")],
        ) == Some(R2K as f64)
            && sample(
                &parsed,
                "bridge_kafka_cluster_reachable",
                &[("cluster", "main")],
            ) == Some(1.0);
        if done || Instant::now() > deadline {
            break parsed;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let status = tokio::task::spawn_blocking(move || http_get(health, "/status"))
        .await
        .unwrap()
        .unwrap()
        .1;
    bridge.stop_clean();
    let status: Value = serde_json::from_str(&status).unwrap();

    for (mapping, n) in [("metered", K2R), ("metered-back", R2K)] {
        let m = [("mapping", mapping)];
        assert_eq!(
            sample(&parsed, "bridge_messages_consumed_total", &m),
            Some(n as f64),
            "{mapping}"
        );
        assert_eq!(
            sample(&parsed, "bridge_messages_delivered_total", &m),
            Some(n as f64),
            "{mapping}"
        );
        assert_eq!(
            sample(&parsed, "bridge_messages_dead_lettered_total", &m),
            Some(0.0)
        );
        assert_eq!(sample(&parsed, "bridge_mapping_connected", &m), Some(1.0));
        assert_eq!(
            sample(&parsed, "bridge_mapping_restarts_total", &m),
            Some(0.0)
        );
        assert_eq!(
            status["mappings"][mapping]["counters"]["delivered"], n,
            "/status agrees"
        );
    }
    // Kafka records carry a timestamp: every delivery was timed.
    assert_eq!(
        sample(
            &parsed,
            "bridge_end_to_end_latency_seconds_count",
            &[("mapping", "metered")]
        ),
        Some(K2R as f64)
    );
    assert_eq!(
        sample(
            &parsed,
            "bridge_kafka_cluster_reachable",
            &[("cluster", "main")]
        ),
        Some(1.0)
    );
    // The Kafka source holds both partitions of its topic, assigned once.
    assert_eq!(
        sample(
            &parsed,
            "bridge_partitions_assigned",
            &[("mapping", "metered")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &parsed,
            "bridge_rebalanced_partitions_total",
            &[("mapping", "metered"), ("change", "assigned")]
        ),
        Some(2.0)
    );
    assert_eq!(status["mappings"]["metered"]["counters"]["partitions"], 2);
    // Each call of the mapping's plugin was timed.
    assert_eq!(
        sample(
            &parsed,
            "bridge_plugin_call_seconds_count",
            &[("mapping", "metered"), ("plugin", "headers")]
        ),
        Some(K2R as f64)
    );
    assert_eq!(
        sample(
            &parsed,
            "bridge_plugin_info",
            &[("plugin", "headers"), ("version", "0.1.0")]
        ),
        Some(1.0),
        "the loaded plugin's info metric: {}",
        parsed["bridge_plugin_info"]
    );
}

/// `log_format = "json"` in the configuration: every line is a JSON object; the
/// start names each mapping, broker and plugin without secrets, and the stop sums up.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_with_start_and_stop_summaries() {
    let topic = unique("jsonlog-in");
    brokers::create_topic(&topic, 1).await;
    let exchange = unique("jsonlog-ex");
    let queue = unique("jsonlog-q");
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    // The format from the configuration (`--log-format` or BRIDGE_LOG_FORMAT would win).
    let mut bridge = Scenario::new()
        .bridge("log_format", "json")
        .mapping(
            Mapping::kafka_to_rabbitmq("logged", &[&topic], &unique("jsonlog"), &exchange)
                .routing_key("rk"),
        )
        .start();
    let records: Vec<Record> = (0..50)
        .map(|i| Record {
            key: None,
            payload: Some(format!("j-{i}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    brokers::produce(&topic, &records, None).await;
    let got = brokers::consume_queue(&conn, &queue, 50, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 50);
    bridge.stop_clean();
    let log = bridge.log_text();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message && l["mapping"] == "logged")
            .unwrap_or_else(|| panic!("no `{message}` line for the mapping in:\n{log}"))
    };
    let started = find("Mapping.");
    assert_eq!(started["tenant"], "default");
    // Lines the mapping writes while running carry its tenant in their span.
    let running = find("Kafka source started.");
    assert_eq!(running["span"]["tenant"], "default", "{running}");
    assert_eq!(started["source"], format!("kafka:main/{topic}"));
    let stopped = find("Mapping summary.");
    assert_eq!(stopped["delivered"], 50);
    assert_eq!(stopped["consumed"], 50);
    let rabbit = lines
        .iter()
        .find(|l| l["message"] == "RabbitMQ connection.")
        .expect("the RabbitMQ connection is listed");
    assert!(
        !rabbit["url"].as_str().unwrap().contains(":guest@"),
        "the password is hidden: {rabbit}"
    );
}

/// `bridge_consumer_lag`: records that cannot be delivered yet (their routing key leads
/// nowhere) show as lag on their partition, and the lag goes back to 0 once they are through.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_lag_shows_the_backlog_and_returns_to_zero() {
    let topic = unique("lag-in");
    brokers::create_topic(&topic, 1).await;
    let (exchange, queue) = (unique("lag-ex"), unique("lag-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let ch = conn.create_channel().await.unwrap();
    let binding = |bind: bool| {
        let (ch, queue, exchange) = (ch.clone(), queue.clone(), exchange.clone());
        async move {
            let (q, e, k) = (queue.as_str().into(), exchange.as_str().into(), "rk".into());
            let args = lapin::types::FieldTable::default();
            if bind {
                ch.queue_bind(q, e, k, lapin::options::QueueBindOptions::default(), args)
                    .await
                    .unwrap();
            } else {
                ch.queue_unbind(q, e, k, args).await.unwrap();
            }
        }
    };
    let bridge = Scenario::new()
        .health()
        .mapping(
            Mapping::kafka_to_rabbitmq("lagging", &[&topic], &unique("lag"), &exchange)
                .routing_key("rk"),
        )
        .start();
    bridge.ready().await;
    // Ten through, so that the partition has a committed offset.
    brokers::produce(&topic, &brokers::numbered_records("first", 10, 64), None).await;
    assert_eq!(
        brokers::consume_queue(&conn, &queue, 10, Duration::from_secs(30))
            .await
            .len(),
        10
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    binding(false).await;
    brokers::produce(&topic, &brokers::numbered_records("lag", 200, 64), None).await;
    let line = format!(
        r#"bridge_consumer_lag{{mapping="lagging",tenant="default",topic="{topic}",partition="0"}}"#
    );
    let lag_reaches = |check: fn(f64) -> bool| {
        let line = line.clone();
        let bridge = &bridge;
        async move {
            let waited = Instant::now();
            let mut lag = bridge.metric(&line);
            while !lag.is_some_and(check) && waited.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                lag = bridge.metric(&line);
            }
            lag
        }
    };
    let behind = lag_reaches(|lag| lag >= 100.0).await;
    assert!(
        behind.is_some_and(|lag| lag >= 100.0),
        "lag while nothing can be delivered: {behind:?}\n{}",
        bridge.metrics()
    );
    binding(true).await;
    let arrived = brokers::consume_queue(&conn, &queue, 200, Duration::from_secs(60)).await;
    let after = lag_reaches(|lag| lag == 0.0).await;
    assert_eq!(arrived.len(), 200);
    assert_eq!(after, Some(0.0), "{}", bridge.metrics());
}

/// The lag a stopped bridge leaves behind shows when it starts again, and goes back to 0 as
/// it catches up.
#[tokio::test(flavor = "multi_thread")]
async fn consumer_lag_built_up_while_the_bridge_was_stopped_returns_to_zero() {
    let topic = unique("lag-stopped");
    brokers::create_topic(&topic, 1).await;
    let (exchange, queue) = (unique("lag-stopped-ex"), unique("lag-stopped-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let group = unique("lag-stopped");
    let scenario = || {
        Scenario::new().health().mapping(
            Mapping::kafka_to_rabbitmq("behind", &[&topic], &group, &exchange)
                .routing_key("rk")
                .max_in_flight(1),
        )
    };
    let mut first = scenario().start();
    first.ready().await;
    brokers::produce(&topic, &brokers::numbered_records("before", 10, 64), None).await;
    assert_eq!(
        brokers::consume_queue(&conn, &queue, 10, Duration::from_secs(30))
            .await
            .len(),
        10
    );
    first.stop_clean();
    // While it is stopped, the topic grows.
    let n = 30_000;
    brokers::produce(&topic, &brokers::numbered_records("while", n, 64), None).await;
    let (arrived, _collecting) = brokers::collect_queue(&queue).await;
    let bridge = scenario().start();
    bridge.ready().await;
    let line = format!(
        r#"bridge_consumer_lag{{mapping="behind",tenant="default",topic="{topic}",partition="0"}}"#
    );
    let waited = Instant::now();
    let mut highest: f64 = 0.0;
    let mut last = None;
    while waited.elapsed() < Duration::from_secs(180) {
        last = bridge.metric(&line);
        highest = highest.max(last.unwrap_or(0.0));
        if highest > 0.0 && last == Some(0.0) && arrived.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        highest > 0.0,
        "the backlog left while stopped shows as lag: highest {highest}\n{}",
        bridge.metrics()
    );
    assert_eq!(last, Some(0.0), "caught up: {}", bridge.metrics());
    let got = arrived.lock().unwrap().clone();
    let (loss, duplicates) = brokers::loss_and_duplicates(n, got.iter().map(|(_, p)| p.as_slice()));
    assert!(
        (loss, duplicates) == (0, 0),
        "{} arrived: loss {loss}, duplicates {duplicates}; {}",
        got.len(),
        bridge.log_report()
    );
}

/// Every metric a query of the Grafana dashboard (`deploy/grafana/bridge-host.json`) uses is
/// one the bridge exports: no panel on a metric that is not there.
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_queries_exists() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/bridge-host.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    fn queries(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr", Value::String(q)) => out.push(q.clone()),
                        ("query", Value::String(q)) => out.push(q.clone()),
                        _ => queries(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| queries(i, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    queries(&dashboard, &mut exprs);
    // A mapping that exercises what the panels show: a plugin, a delivery, a refused target
    // (a topic that does not exist) and its dead letter, a Kafka consumer's lag.
    let (topic, out, dlq) = (unique("dash-in"), unique("dash-out"), unique("dash-dlq"));
    brokers::create_topics(&[&topic, &out, &dlq], 1).await;
    let record = |dest: &str| Record::with_header("{}", "dest", dest);
    brokers::produce(
        &topic,
        &[record(&out), record(&unique("dash-nowhere"))],
        None,
    )
    .await;
    let sections =
        brokers::brokers_toml_with_kafka_properties(&[brokers::MISSING_TOPIC_FAILS_FAST]);
    let mut bridge = Scenario::with_brokers(&sections)
        .health()
        .plugin(
            "route",
            artifacts::ROUTING_KEY,
            r#"topic = "{header:dest}""#,
        )
        .mapping(
            Mapping::kafka_to_kafka("m", &[&topic], &unique("g"), &out)
                .plugins(&["route"])
                .dead_letter_kafka(&dlq),
        )
        .start();
    bridge.ready().await;
    assert_eq!(
        brokers::read_topic(&dlq, 1, Duration::from_secs(30))
            .await
            .len(),
        1
    );
    // The lag comes with librdkafka's statistics, every 5 s.
    let waited = Instant::now();
    while !bridge.metrics().contains("bridge_consumer_lag{")
        && waited.elapsed() < Duration::from_secs(20)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = bridge.metrics();
    bridge.stop_clean();
    // `# TYPE bridge_messages_consumed counter`: every registered family, with samples or not.
    let families: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(i) = rest.find("bridge_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            used.insert(name);
        }
    }
    assert!(used.len() >= 15, "the dashboard's metrics: {used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            !families.contains(family)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard queries use metrics the bridge does not export: {missing:?}\n{text}"
    );
}
