//! `amqps://` with a custom CA and a client certificate, against a private RabbitMQ node whose
//! TLS listener requires one.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use bridge_tests::bridge::{BridgeProcess, binary};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::rabbit_node::{RabbitNode, TestCerts};

fn rabbitmq_toml(node: &RabbitNode, certs: &TestCerts, client_cert: bool) -> String {
    let cert = if client_cert {
        format!(
            ", cert_file = \"{}\", key_file = \"{}\"",
            certs.client_cert.display(),
            certs.client_key.display()
        )
    } else {
        String::new()
    };
    format!(
        "[kafka.main]\nbootstrap_servers = \"{}\"\n\n[rabbitmq.local]\nurl = \"amqps://guest:guest@127.0.0.1:{}/%2f\"\ntls = {{ ca_file = \"{}\"{cert} }}\n",
        brokers::kafka_bootstrap(),
        node.tls_port.unwrap(),
        certs.listener.ca.display(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_to_rabbitmq_over_tls_with_a_client_certificate() {
    let certs = TestCerts::generate();
    let listener = certs.listener.clone();
    let node = tokio::task::spawn_blocking(move || RabbitNode::start(Some(&listener)))
        .await
        .unwrap();
    let conn = brokers::amqp_to(&node.url()).await;
    let exchange = unique("tls-ex");
    let queue = unique("tls-q");
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let topic = unique("tls-in");
    brokers::create_topic(&topic, 1).await;
    let records: Vec<Record> = (0..100)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            payload: Some(format!("over-tls-{i:03}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    brokers::produce(&topic, &records, None).await;
    let mapping = format!(
        r#"
[[mapping]]
name = "tls"
source = {{ kafka = "main", topics = ["{topic}"], group = "{}" }}
target = {{ rabbitmq = "local", exchange = "{exchange}", routing_key = "rk" }}
"#,
        unique("tls")
    );

    // Without a client certificate the broker refuses the handshake: `check --connect` says so.
    let dir = tempfile::tempdir().unwrap();
    let no_cert = dir.path().join("no-cert.toml");
    std::fs::write(&no_cert, rabbitmq_toml(&node, &certs, false) + &mapping).unwrap();
    let out = Command::new(binary())
        .args(["check", "--connect", "--config"])
        .arg(&no_cert)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "accepted without a client certificate"
    );
    assert!(
        said.contains("rabbitmq.local") && !said.contains("guest:guest"),
        "names the connection, hides the password: {said}"
    );

    let config = rabbitmq_toml(&node, &certs, true) + &mapping;
    let with_cert = dir.path().join("bridge.toml");
    std::fs::write(&with_cert, &config).unwrap();
    let out = Command::new(binary())
        .args(["check", "--connect", "--config"])
        .arg(&with_cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check --connect over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut bridge = BridgeProcess::start(&config);
    let got = brokers::consume_queue(&conn, &queue, 100, Duration::from_secs(30)).await;
    bridge.stop_clean();
    let payloads: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..100).map(|i| format!("over-tls-{i:03}")).collect();
    assert!(
        payloads == expected,
        "{:?}, expected {:?}; {}",
        payloads,
        expected,
        bridge.log_report()
    );
    drop(node);
}
