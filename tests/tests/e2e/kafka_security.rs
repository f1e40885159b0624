//! Kafka TLS, mutual TLS and SASL/SCRAM-SHA-512 over TLS against a private Apache Kafka node
//! whose listeners require them (a CA made with `openssl`). The right settings bridge
//! messages both ways; a wrong password, an unknown CA, a certificate for another host name
//! and a missing client certificate each fail naming the cluster, and no secret reaches the
//! output or the log. Host-name verification is on unless the config turns it off.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use bridge_tests::bridge::{BridgeProcess, binary, free_port};
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::kafka_node::KafkaCluster;
use bridge_tests::rabbit_node::TestCerts;

const PASSWORD: &str = "scram-Secret-4711";
const WRONG_PASSWORD: &str = "not-the-Secret-0815";

/// The node's listeners: `plain` (for the test's own clients), `tls`, `mtls` (client
/// certificate required), `scram` (SASL/SCRAM-SHA-512 over TLS) and `wrong_host` (TLS with a
/// certificate for `wrong.example`).
struct Secured {
    node: KafkaCluster,
    certs: TestCerts,
    tls: u16,
    mtls: u16,
    scram: u16,
    wrong_host: u16,
}

fn bundle(certs: &TestCerts, cert: &std::path::Path, key: &std::path::Path, name: &str) -> String {
    let path = certs.dir.path().join(name);
    let text = std::fs::read_to_string(key).unwrap() + &std::fs::read_to_string(cert).unwrap();
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn start() -> Secured {
    let certs = TestCerts::generate();
    let server = bundle(
        &certs,
        &certs.listener.cert,
        &certs.listener.key,
        "server-bundle.pem",
    );
    let (wrong_cert, wrong_key) = certs.sign("wrong-host", "subjectAltName=DNS:wrong.example");
    let wrong = bundle(&certs, &wrong_cert, &wrong_key, "wrong-bundle.pem");
    let (tls, mtls, scram, wrong_host) = (free_port(), free_port(), free_port(), free_port());
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{{port}},SSL://127.0.0.1:{tls},MTLS://127.0.0.1:{mtls},\
         SASL_SSL://127.0.0.1:{scram},WRONGHOST://127.0.0.1:{wrong_host}"
    );
    let lines = [
        format!("listeners={listeners},CONTROLLER://127.0.0.1:{{controller_port}}"),
        format!("advertised.listeners={listeners}"),
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL,WRONGHOST:SSL".to_string(),
        "ssl.keystore.type=PEM".to_string(),
        format!("ssl.keystore.location={server}"),
        "ssl.truststore.type=PEM".to_string(),
        format!("ssl.truststore.location={}", certs.listener.ca.display()),
        "listener.name.mtls.ssl.client.auth=required".to_string(),
        format!("listener.name.wronghost.ssl.keystore.location={wrong}"),
        "sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;".to_string(),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let scram_user = format!("SCRAM-SHA-512=[name=bridge,password={PASSWORD}]");
    let node = KafkaCluster::start_formatted(1, &lines, &["--add-scram", &scram_user]);
    Secured {
        node,
        certs,
        tls,
        mtls,
        scram,
        wrong_host,
    }
}

impl Secured {
    fn cluster(&self, name: &str, port: u16, settings: &str) -> String {
        format!("[kafka.{name}]\nbootstrap_servers = \"127.0.0.1:{port}\"\n{settings}\n")
    }

    fn ca(&self) -> String {
        format!("ca_file = \"{}\"", self.certs.listener.ca.display())
    }

    fn client_cert(&self) -> String {
        format!(
            "cert_file = \"{}\", key_file = \"{}\"",
            self.certs.client_cert.display(),
            self.certs.client_key.display()
        )
    }
}

/// `bridge-host check --connect` on `config` with one mapping from `topic` on cluster
/// `name`: whether it passed, and what it printed.
fn check(dir: &std::path::Path, name: &str, config: &str, topic: &str) -> (bool, String) {
    let path = dir.join(format!("{name}.toml"));
    let toml = format!(
        "{config}\n[rabbitmq.local]\nurl = \"{}\"\n\n[[mapping]]\nname = \"m\"\nsource = {{ kafka = \"{name}\", topics = [\"{topic}\"], group = \"g\" }}\ntarget = {{ rabbitmq = \"local\", exchange = \"amq.direct\", routing_key = \"rk\" }}\n",
        brokers::amqp_url()
    );
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(binary())
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_mutual_tls_and_scram_bridge_messages_and_bad_credentials_fail_naming_the_cluster() {
    let s = tokio::task::spawn_blocking(start).await.unwrap();
    let plain = s.node.bootstrap.clone();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("secure-in");
    brokers::create_topic_on(&plain, &topic, 1).await;

    // What fails, and how it is reported.
    let other_ca = TestCerts::generate();
    let sasl = |password: &str| {
        format!(
            "sasl = {{ username = \"bridge\", password = \"{password}\", mechanism = \"SCRAM-SHA-512\" }}"
        )
    };
    let failing = [
        (
            "bad_password",
            s.cluster(
                "bad_password",
                s.scram,
                &format!("{}\ntls = {{ {} }}", sasl(WRONG_PASSWORD), s.ca()),
            ),
        ),
        (
            "unknown_ca",
            s.cluster(
                "unknown_ca",
                s.tls,
                &format!(
                    "tls = {{ ca_file = \"{}\" }}",
                    other_ca.listener.ca.display()
                ),
            ),
        ),
        (
            "wrong_host",
            s.cluster(
                "wrong_host",
                s.wrong_host,
                &format!("tls = {{ {} }}", s.ca()),
            ),
        ),
        (
            "no_client_cert",
            s.cluster("no_client_cert", s.mtls, &format!("tls = {{ {} }}", s.ca())),
        ),
    ];
    // Each check waits out its connection timeout: run them side by side.
    let results: Vec<(bool, String)> = std::thread::scope(|scope| {
        let runs: Vec<_> = failing
            .iter()
            .map(|(name, config)| scope.spawn(|| check(dir.path(), name, config, &topic)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((name, _), (ok, said)) in failing.iter().zip(results) {
        assert!(!ok, "`{name}` must fail: {said}");
        assert!(
            said.contains(&format!("kafka.{name}")),
            "`{name}`: the error names the cluster: {said}"
        );
        assert!(
            !said.contains(WRONG_PASSWORD) && !said.contains(PASSWORD),
            "no secret: {said}"
        );
    }
    // Host-name verification is on by default, and off only when the config says so.
    let unverified = s.cluster(
        "unverified",
        s.wrong_host,
        &format!(
            "tls = {{ {} }}\nproperties = {{ \"ssl.endpoint.identification.algorithm\" = \"none\" }}",
            s.ca()
        ),
    );
    let (ok, said) = check(dir.path(), "unverified", &unverified, &topic);
    assert!(
        ok,
        "with verification off the same listener is accepted: {said}"
    );

    // The right settings: Kafka → RabbitMQ over TLS, mutual TLS and SCRAM, and RabbitMQ → Kafka
    // over SCRAM, in one bridge.
    let conn = brokers::amqp().await;
    let exchange = unique("secure-ex");
    let queue = unique("secure-q");
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let r2k_queue = unique("secure-back");
    brokers::declare_queue(&conn, &r2k_queue).await;
    let r2k_topic = unique("secure-out");
    brokers::create_topic_on(&plain, &r2k_topic, 1).await;
    let records: Vec<Record> = (0..300)
        .map(|i| Record {
            key: Some(format!("k{i}").into_bytes()),
            payload: Some(format!("secure-{i:03}").into_bytes()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        })
        .collect();
    brokers::produce_to(&plain, &topic, &records, None).await;
    let mut config = String::new();
    config += &s.cluster("tls", s.tls, &format!("tls = {{ {} }}", s.ca()));
    config += &s.cluster(
        "mtls",
        s.mtls,
        &format!("tls = {{ {}, {} }}", s.ca(), s.client_cert()),
    );
    config += &s.cluster(
        "scram",
        s.scram,
        &format!(
            "{}\ntls = {{ {} }}",
            sasl("${BRIDGE_TEST_KAFKA_PASSWORD}"),
            s.ca()
        ),
    );
    config += &s.cluster(
        "bad_password",
        s.scram,
        &format!("{}\ntls = {{ {} }}", sasl(WRONG_PASSWORD), s.ca()),
    );
    config += &format!("[rabbitmq.local]\nurl = \"{}\"\n", brokers::amqp_url());
    for cluster in ["tls", "mtls", "scram"] {
        config += &format!(
            "[[mapping]]\nname = \"via-{cluster}\"\nsource = {{ kafka = \"{cluster}\", topics = [\"{topic}\"], group = \"{}\" }}\ntarget = {{ rabbitmq = \"local\", exchange = \"{exchange}\", routing_key = \"rk\" }}\n",
            unique(cluster)
        );
    }
    config += &format!(
        "[[mapping]]\nname = \"back-via-scram\"\nsource = {{ rabbitmq = \"local\", queue = \"{r2k_queue}\" }}\ntarget = {{ kafka = \"scram\", topic = \"{r2k_topic}\" }}\n"
    );
    // A mapping on the cluster with the wrong password: it keeps retrying, and says why.
    config += &format!(
        "[[mapping]]\nname = \"refused\"\nsource = {{ kafka = \"bad_password\", topics = [\"{topic}\"], group = \"{}\" }}\ntarget = {{ rabbitmq = \"local\", exchange = \"{exchange}\", routing_key = \"none\" }}\n",
        unique("refused")
    );
    let health = free_port();
    config += &format!("[bridge]\nhealth_listen = \"127.0.0.1:{health}\"\n");
    // The password reaches the bridge through its environment only (not this process's: tests
    // of other modules run beside this one).
    let mut bridge =
        BridgeProcess::start_with_env(&config, &[("BRIDGE_TEST_KAFKA_PASSWORD", PASSWORD)]);
    brokers::publish_to_queue(
        &conn,
        &r2k_queue,
        &(0..100)
            .map(|i| {
                (
                    format!("back-{i:03}").into_bytes(),
                    lapin::BasicProperties::default(),
                )
            })
            .collect::<Vec<_>>(),
    )
    .await;
    let got = brokers::consume_queue(&conn, &queue, 900, Duration::from_secs(60)).await;
    let (p, t) = (plain.clone(), r2k_topic.clone());
    let back = tokio::task::spawn_blocking(move || {
        brokers::consume_topic_from(&p, &t, 100, Duration::from_secs(30))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bridge.stop_clean();
    let log = bridge.log_text();
    // Each of the three clusters delivered all 300.
    let (loss, duplicates) =
        brokers::loss_and_duplicates(300, got.iter().map(|r| r.payload.as_slice()));
    assert_eq!((got.len(), loss, duplicates), (900, 0, 600), "log:\n{log}");
    assert_eq!(back.len(), 100, "RabbitMQ → Kafka over SCRAM; log:\n{log}");
    assert!(
        log.contains("kafka.bad_password") && log.to_lowercase().contains("authentication"),
        "the refused cluster is named with the reason; log:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains(WRONG_PASSWORD),
        "no password in the log"
    );
}
