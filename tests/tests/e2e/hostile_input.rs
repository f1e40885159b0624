//! Whatever a producer writes or a plugin does is contained: a record the bridge cannot carry
//! is dead-lettered with its reason, and nothing stops the consumer it came through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bridge_tests::bridge::http_get;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::rabbit_node::RabbitNode;
use bridge_tests::scenario::{Mapping, Scenario};

/// A header name that is not UTF-8, and one with a NUL byte, between ordinary records: the
/// ordinary ones arrive, the two are dead-lettered as `conversion-error` with their names
/// escaped, and the bridge stays ready.
#[tokio::test(flavor = "multi_thread")]
async fn header_names_that_are_not_utf8_or_hold_a_nul_are_dead_lettered() {
    let topic = unique("rawhdr-in");
    let out = unique("rawhdr-out");
    let dlq = unique("rawhdr-dlq");
    brokers::create_topics(&[&topic, &out, &dlq], 1).await;
    let records: Vec<brokers::RawRecord> = (0..12)
        .map(|i| {
            let name: &[u8] = match i {
                3 => b"n\xff\xfeame",
                7 => b"a\0b",
                _ => b"h",
            };
            (
                format!("m{i}").into_bytes(),
                vec![
                    (b"first".to_vec(), b"1".to_vec()),
                    (name.to_vec(), b"v".to_vec()),
                ],
            )
        })
        .collect();
    let t = topic.clone();
    tokio::task::spawn_blocking(move || brokers::produce_raw_headers(&t, 0, &records))
        .await
        .unwrap();
    let mut bridge = Scenario::new()
        .health()
        .mapping(
            Mapping::kafka_to_kafka("raw", &[&topic], &unique("g"), &out).dead_letter_kafka(&dlq),
        )
        .start();
    let delivered = brokers::read_topic(&out, 10, Duration::from_secs(30)).await;
    let dead = brokers::read_topic(&dlq, 2, Duration::from_secs(10)).await;
    bridge.ready().await;
    bridge.stop_clean();
    let log = bridge.log_text();
    let payloads: Vec<String> = delivered
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = (0..12)
        .filter(|i| ![3, 7].contains(i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(payloads, expected, "log:\n{log}");
    assert_eq!(dead.len(), 2, "log:\n{log}");
    for (letter, (payload, name)) in dead.iter().zip([("m3", "n%FF%FEame"), ("m7", "a%00b")]) {
        assert_eq!(letter.payload.as_deref(), Some(payload.as_bytes()));
        assert_eq!(
            letter.header("x-bridge-failure-kind").as_deref(),
            Some("conversion-error")
        );
        assert_eq!(
            letter.header(name).as_deref(),
            Some("v"),
            "escaped name kept"
        );
        assert_eq!(letter.header("first").as_deref(), Some("1"));
    }
}

fn record(dest: &str, payload: &str) -> brokers::Record {
    brokers::Record::with_header(payload, "dest", dest)
}

/// A tenant allowed only `pay-*`: a header that names another team's topic does not get the
/// message there; it is dead-lettered as `target-not-allowed` and counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_chosen_by_a_header_outside_the_tenants_allowlist_is_dead_lettered() {
    let id = unique("x");
    let (input, out, dlq) = (
        format!("pay-in-{id}"),
        format!("pay-out-{id}"),
        format!("pay-dlq-{id}"),
    );
    let other = format!("other-team-{id}");
    brokers::create_topics(&[&input, &out, &dlq, &other], 1).await;
    brokers::produce(
        &input,
        &[
            record(&out, "mine"),
            record(&other, "theirs"),
            record(&out, "mine again"),
        ],
        None,
    )
    .await;
    let mut bridge = Scenario::new()
        .health()
        .section("[tenants.pay]\nallow = { topics = [\"pay-*\"] }")
        .plugin(
            "route",
            bridge_tests::artifacts::ROUTING_KEY,
            r#"topic = "{header:dest}""#,
        )
        .plugin_extra("route", r#"tenant = "pay""#)
        .mapping(
            Mapping::kafka_to_kafka("m", &[&input], &unique("g"), &out)
                .plugins(&["route"])
                .set("tenant", "pay")
                .dead_letter_kafka(&dlq),
        )
        .start();
    let delivered = brokers::read_topic(&out, 2, Duration::from_secs(30)).await;
    let dead = brokers::read_topic(&dlq, 1, Duration::from_secs(10)).await;
    let refused = bridge.metric(
        r#"bridge_target_refusals_total{mapping="m",tenant="pay",reason="target-not-allowed"}"#,
    );
    bridge.stop_clean();
    let log = bridge.log_text();
    let leaked = brokers::read_topic(&other, 1, Duration::from_secs(3)).await;
    assert!(
        leaked.is_empty(),
        "nothing reaches the other team's topic; log:\n{log}"
    );
    assert_eq!(delivered.len(), 2, "log:\n{log}");
    assert_eq!(dead.len(), 1, "log:\n{log}");
    assert_eq!(dead[0].payload.as_deref(), Some(&b"theirs"[..]));
    let reason = dead[0].header("x-bridge-reason").unwrap_or_default();
    assert!(
        reason.contains("target-not-allowed: topic `other-team-")
            && reason.contains("`allow.topics = [\"pay-*\"]`"),
        "{reason}"
    );
    assert_eq!(refused, Some(1.0), "log:\n{log}");
}

/// A dead-letter policy plugin that chooses a dead-letter topic outside its tenant's
/// allowlists: nothing reaches that topic, the refusal is counted, and the message is kept —
/// the next run, with a policy choosing a topic of the tenant's, dead-letters it there.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_topic_chosen_by_a_policy_is_held_to_the_allowlist() {
    let id = unique("x");
    let (input, out, dlq, kept) = (
        format!("pay-in-{id}"),
        format!("pay-out-{id}"),
        format!("pay-dlq-{id}"),
        format!("pay-kept-{id}"),
    );
    let other = format!("other-team-{id}");
    brokers::create_topics(&[&input, &out, &dlq, &kept, &other], 1).await;
    brokers::produce(&input, &[record("-", "fails")], None).await;
    let group = unique("g");
    let scenario = |chosen: &str| {
        Scenario::new()
            .health()
            .section("[tenants.pay]\nallow = { topics = [\"pay-*\"] }")
            .plugin("trap", bridge_tests::artifacts::HOSTILE, r#"mode = "trap""#)
            .plugin_extra("trap", r#"tenant = "pay""#)
            .plugin(
                "choose",
                bridge_tests::artifacts::CHOSEN_DEAD_LETTER,
                &format!("topic = \"{chosen}\""),
            )
            .plugin_extra("choose", r#"tenant = "pay""#)
            .mapping(
                Mapping::kafka_to_kafka("m", &[&input], &group, &out)
                    .plugins(&["trap"])
                    .set("tenant", "pay")
                    .set("dead_letter_policy", "choose")
                    .dead_letter_kafka(&dlq),
            )
    };
    let mut bridge = scenario(&other).start();
    let refused =
        r#"bridge_target_refusals_total{mapping="m",tenant="pay",reason="target-not-allowed"}"#;
    let port = bridge.health_port();
    bridge
        .wait_for(
            "the refusal of the chosen topic",
            Duration::from_secs(30),
            || {
                http_get(port, "/metrics").is_some_and(|(_, body)| {
                    body.lines()
                        .any(|l| l.starts_with(refused) && !l.ends_with(" 0"))
                })
            },
        )
        .await;
    bridge.stop_clean();
    let log = bridge.log_report();
    let leaked = brokers::read_topic(&other, 1, Duration::from_secs(3)).await;
    assert!(
        leaked.is_empty(),
        "nothing reaches the other team's topic; {log}"
    );

    let mut bridge = scenario(&kept).start();
    let letters = brokers::read_topic(&kept, 1, Duration::from_secs(30)).await;
    bridge.stop_clean();
    assert_eq!(
        letters.first().and_then(|r| r.payload.clone()).as_deref(),
        Some(&b"fails"[..]),
        "the message was kept and dead-lettered by the next run; {}",
        bridge.log_report()
    );
}

/// A topic a header names that does not exist, and a partition a plugin names that does not
/// exist: each message is dead-lettered with its reason (`unknown-topic`, `unknown-partition`)
/// and counted; the others arrive and the mappings never restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_topic_or_partition_chosen_that_does_not_exist_is_dead_lettered() {
    let (by_topic, by_partition) = (unique("unk-in"), unique("unk-pin"));
    let (out, dlq) = (unique("unk-out"), unique("unk-dlq"));
    brokers::create_topics(&[&by_topic, &by_partition, &out, &dlq], 1).await;
    let nowhere = unique("unk-nowhere");
    brokers::produce(
        &by_topic,
        &[
            record(&out, "t1"),
            record(&nowhere, "to nowhere"),
            record(&out, "t2"),
        ],
        None,
    )
    .await;
    let behave = |payload: &str| {
        let mut r = record("-", payload);
        r.headers.push(("x-behave".into(), b"1".to_vec()));
        r
    };
    brokers::produce(
        &by_partition,
        &[behave("p1"), record("-", "to partition 7"), behave("p2")],
        None,
    )
    .await;
    // A missing topic is known missing once librdkafka's metadata wait runs out (30 s by
    // default); shortened here.
    let sections =
        brokers::brokers_toml_with_kafka_properties(&[brokers::MISSING_TOPIC_FAILS_FAST]);
    let mut bridge = Scenario::with_brokers(&sections)
        .health()
        .plugin(
            "route",
            bridge_tests::artifacts::ROUTING_KEY,
            r#"topic = "{header:dest}""#,
        )
        .plugin(
            "seventh",
            bridge_tests::artifacts::HOSTILE,
            r#"mode = "partition", count = "7""#,
        )
        .mapping(
            Mapping::kafka_to_kafka("by-topic", &[&by_topic], &unique("g"), &out)
                .plugins(&["route"])
                .dead_letter_kafka(&dlq),
        )
        .mapping(
            Mapping::kafka_to_kafka("by-partition", &[&by_partition], &unique("g"), &out)
                .plugins(&["seventh"])
                .dead_letter_kafka(&dlq),
        )
        .start();
    let delivered = brokers::read_topic(&out, 4, Duration::from_secs(60)).await;
    let dead = brokers::read_topic(&dlq, 2, Duration::from_secs(60)).await;
    let metric = |mapping: &str, reason: &str| {
        bridge.metric(&format!(
            r#"bridge_target_refusals_total{{mapping="{mapping}",tenant="default",reason="{reason}"}}"#
        ))
    };
    let refused = (
        metric("by-topic", "unknown-topic"),
        metric("by-partition", "unknown-partition"),
    );
    bridge.stop_clean();
    let log = bridge.log_text();
    assert_eq!(delivered.len(), 4, "the others arrive; log:\n{log}");
    let reasons: std::collections::BTreeMap<String, String> = dead
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned(),
                r.header("x-bridge-reason").unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}; log:\n{log}");
    assert!(
        reasons["to nowhere"].contains("unknown-topic: ")
            && reasons["to partition 7"].contains("unknown-partition: "),
        "{reasons:?}"
    );
    assert_eq!(refused, (Some(1.0), Some(1.0)), "log:\n{log}");
    assert!(
        !log.contains("Mapping stopped; restarting"),
        "no restart loop; log:\n{log}"
    );
}

/// An exchange chosen by a header: outside the tenant's allowlist → `target-not-allowed`;
/// allowed but missing → `no-route`, without closing the mapping's channel or restarting it.
#[tokio::test(flavor = "multi_thread")]
async fn an_exchange_chosen_by_a_header_is_checked_against_the_allowlist_and_the_broker() {
    let id = unique("x");
    let input = format!("pay-in-{id}");
    let dlq = format!("pay-dlq-{id}");
    let (ok_ex, ok_q) = (format!("pay.ok.{id}"), format!("pay-ok-q-{id}"));
    let (other_ex, other_q) = (format!("other.{id}"), format!("other-q-{id}"));
    let missing = format!("pay.missing.{id}");
    brokers::create_topics(&[&input, &dlq], 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &ok_ex, &ok_q, "rk").await;
    brokers::declare_bound_queue(&conn, &other_ex, &other_q, "rk").await;
    brokers::produce(
        &input,
        &[
            record(&ok_ex, "one"),
            record(&other_ex, "theirs"),
            record(&missing, "lost?"),
            record(&ok_ex, "two"),
        ],
        None,
    )
    .await;
    let mut bridge = Scenario::new()
        .section("[tenants.pay]\nallow = { topics = [\"pay-*\"], exchanges = [\"pay.*\"] }")
        .plugin(
            "route",
            bridge_tests::artifacts::ROUTING_KEY,
            r#"exchange = "{header:dest}", routing_key = "rk""#,
        )
        .plugin_extra("route", r#"tenant = "pay""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("m", &[&input], &unique("g"), &ok_ex)
                .plugins(&["route"])
                .set("tenant", "pay")
                .dead_letter_kafka(&dlq),
        )
        .health()
        .start();
    let dead = brokers::read_topic(&dlq, 2, Duration::from_secs(30)).await;
    let (arrived, task) = brokers::collect_queue(&ok_q).await;
    bridge
        .wait_for("both allowed messages", Duration::from_secs(30), || {
            arrived.lock().unwrap().len() >= 2
        })
        .await;
    task.abort();
    let counted = |reason: &str| {
        bridge.metric(&format!(
            r#"bridge_target_refusals_total{{mapping="m",tenant="pay",reason="{reason}"}}"#
        ))
    };
    let (not_allowed, no_route) = (counted("target-not-allowed"), counted("no-route"));
    bridge.stop_clean();
    assert_eq!(
        (not_allowed, no_route),
        (Some(1.0), Some(1.0)),
        "each refusal counted by its reason"
    );
    let log = bridge.log_text();
    assert_eq!(
        brokers::queue_depth(&conn, &other_q).await,
        0,
        "log:\n{log}"
    );
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|r| r.header("x-bridge-reason").unwrap_or_default())
        .collect();
    // `target-rejected: REASON: …`: the failure kind, then the bridge's reason.
    reasons.sort_by_key(|r| r.contains("target-not-allowed"));
    assert_eq!(reasons.len(), 2, "log:\n{log}");
    assert!(
        reasons[0].contains("no-route: exchange `pay.missing."),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("target-not-allowed: exchange `other."),
        "{reasons:?}"
    );
    assert!(
        !log.contains("restarting") && !log.contains("Restarting"),
        "no restart; log:\n{log}"
    );
}

/// A plugin that resets `x-bridge-hops` (which would defeat loop detection) and logs a line
/// made to look like two: the host's hop count stands, counted, and the log line stays one.
#[tokio::test(flavor = "multi_thread")]
async fn the_hop_count_is_the_hosts_and_plugin_log_lines_cannot_forge_others() {
    let input = unique("hops-in");
    let out = unique("hops-out");
    brokers::create_topics(&[&input, &out], 1).await;
    let mut sent = record("-", "looped once");
    sent.headers = vec![("x-bridge-hops".into(), b"1".to_vec())];
    brokers::produce(&input, &[sent], None).await;
    let hostile = bridge_tests::artifacts::HOSTILE;
    let mut bridge = Scenario::new()
        .health()
        .plugin("forge", hostile, r#"mode = "forge-log""#)
        .plugin("reset", hostile, r#"mode = "reset-hops""#)
        .mapping(
            Mapping::kafka_to_kafka("m", &[&input], &unique("g"), &out)
                .plugins(&["forge", "reset"]),
        )
        .start();
    let got = brokers::read_topic(&out, 1, Duration::from_secs(30)).await;
    let rewrites = bridge.metric(r#"bridge_hop_rewrites_total{mapping="m",tenant="default"}"#);
    bridge.stop_clean();
    let log = bridge.log_text();
    assert_eq!(got.len(), 1, "log:\n{log}");
    assert_eq!(
        got[0].header("x-bridge-hops").as_deref(),
        Some("2"),
        "log:\n{log}"
    );
    assert_eq!(rewrites, Some(1.0), "log:\n{log}");
    assert!(
        log.contains(r"innocent\n2026-01-01T00:00:00Z ERROR bridge_host: forged line\r\u{1b}[2K"),
        "the plugin's line is one line, its control characters escaped; log:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "no forged line; log:\n{log}"
    );
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
}

/// A RabbitMQ password with every URL delimiter in it, given as `${VAR}` in the URL: the bridge
/// connects with it, and no piece of it shows in the log, `/status`, `/metrics` or `check`.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_with_url_delimiters_connects_and_never_shows() {
    let user = unique("pw-user");
    let pieces = [
        "Segone", "Segtwo", "Segthree", "Segfour", "Segfive", "Segsix", "Segseven",
    ];
    let password = format!(
        "{}@{}%{}/{}#{}?{}:{}",
        pieces[0], pieces[1], pieces[2], pieces[3], pieces[4], pieces[5], pieces[6]
    );
    rabbitmqctl(&["add_user", &user, &password]);
    rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]);
    let topic = unique("pw-in");
    let (exchange, queue) = (unique("pw-ex"), unique("pw-q"));
    brokers::create_topic(&topic, 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    brokers::produce(&topic, &[record("-", "through")], None).await;
    let url =
        brokers::amqp_url().replacen("guest:guest", &format!("{user}:${{BRIDGE_TEST_PW}}"), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let scenario = Scenario::with_brokers(&brokers::brokers_toml_with(&url))
        .health()
        .env("BRIDGE_TEST_PW", &password)
        .mapping(
            Mapping::kafka_to_rabbitmq("pw", &[&topic], &unique("g"), &exchange).routing_key("rk"),
        );
    let mut bridge = scenario.start_at(&path);
    let got = brokers::consume_queue(&conn, &queue, 1, Duration::from_secs(30)).await;
    let status = bridge.status().to_string();
    let metrics = bridge.metrics();
    bridge.stop_clean();
    let log = bridge.log_text();
    let check = std::process::Command::new(bridge_tests::bridge::binary())
        .args(["check", "--config"])
        .arg(&path)
        .env("BRIDGE_TEST_PW", &password)
        .output()
        .unwrap();
    rabbitmqctl(&["delete_user", &user]);
    let check = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    // The user is gone: connection errors, from `check --connect` and from a running bridge.
    let refused = std::process::Command::new(bridge_tests::bridge::binary())
        .args(["check", "--connect", "--config"])
        .arg(&path)
        .env("BRIDGE_TEST_PW", &password)
        .output()
        .unwrap();
    let refused = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    bridge.spawn();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let failing_status = bridge.status().to_string();
    bridge.stop_clean();
    let failing_log = bridge.log_text();
    assert!(
        refused.contains("pw-user") || refused.to_lowercase().contains("access"),
        "`check --connect` says the login failed:\n{refused}"
    );
    assert_eq!(got.len(), 1, "connected with the password; log:\n{log}");
    for (what, text) in [
        ("log", &log),
        ("/status", &status),
        ("/metrics", &metrics),
        ("check", &check),
        ("check --connect with a refused login", &refused),
        ("the log with a refused login", &failing_log),
        ("/status with a refused login", &failing_status),
    ] {
        for piece in pieces {
            assert!(!text.contains(piece), "`{piece}` shows in {what}:\n{text}");
        }
    }
}

/// Two hundred clients that start a request and send its headers a byte a second: the probes
/// keep answering, the slow clients are cut off, and with `protect_status` `/status` and
/// `/metrics` want the admin token while the probes stay open.
#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_and_the_probes_keep_answering() {
    use bridge_tests::bridge::http_request;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let topic = unique("loris-in");
    let out = unique("loris-out");
    brokers::create_topics(&[&topic, &out], 1).await;
    let mut bridge = Scenario::new()
        .health()
        .bridge("admin_token", "loris-token")
        .bridge("protect_status", true)
        .mapping(Mapping::kafka_to_kafka("m", &[&topic], &unique("g"), &out))
        .start();
    bridge.ready().await;
    let port = bridge.health_port();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let dribble = tokio::spawn(async move {
        for _ in 0..12 {
            for s in &mut slow {
                let _ = s.write_all(b"X").await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        slow
    });
    // Probes as Kubernetes sends them, each given 1 s, while the slow clients hold on.
    let probes = tokio::task::spawn_blocking(move || {
        (0..5)
            .map(|_| {
                std::thread::sleep(Duration::from_secs(1));
                bridge_tests::bridge::probe(port, "/livez", Duration::from_secs(1))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let mut slow = dribble.await.unwrap();
    let mut still_open = 0;
    for s in &mut slow {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => continue,
                Err(_) => {
                    still_open += 1;
                    break;
                }
            }
        }
    }
    let auth = vec!["Authorization: Bearer loris-token".to_string()];
    let (plain, with_token, metrics, readyz) = tokio::task::spawn_blocking(move || {
        (
            http_get(port, "/status"),
            http_request(port, "GET", "/status", &auth),
            http_get(port, "/metrics"),
            http_get(port, "/readyz"),
        )
    })
    .await
    .unwrap();
    bridge.stop_clean();
    assert_eq!(
        probes,
        vec![Some(200); 5],
        "every probe answered within 1 s during the attack"
    );
    assert_eq!(still_open, 0, "every slow client was cut off");
    assert_eq!(plain.map(|p| p.0), Some(401), "/status wants the token");
    assert_eq!(with_token.map(|p| p.0), Some(200));
    assert_eq!(metrics.map(|p| p.0), Some(401), "/metrics wants the token");
    assert_eq!(readyz.map(|p| p.0), Some(200), "the probes stay open");
}

/// `check` quotes no secret from a file it cannot parse, and warns about SASL without TLS.
#[test]
fn check_masks_secrets_in_parse_errors_and_warns_about_sasl_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: &str| {
        let path = dir.path().join("bridge.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(bridge_tests::bridge::binary())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let broken = run(
        "[kafka.main]\nbootstrap_servers = \"127.0.0.1:9092\"\nsasl = { username = \"u\", password = 81726354 }\n",
    );
    assert!(broken.contains("line 3"), "{broken}");
    assert!(!broken.contains("81726354"), "{broken}");
    let clear = run(&format!(
        "[kafka.main]\nbootstrap_servers = \"127.0.0.1:9092\"\nsasl = {{ username = \"u\", password = \"p\" }}\n\n[rabbitmq.local]\nurl = \"{}\"\n\n[[mapping]]\nname = \"m\"\nsource = {{ kafka = \"main\", topics = [\"t\"] }}\ntarget = {{ rabbitmq = \"local\", exchange = \"e\" }}\n",
        brokers::amqp_url()
    ));
    assert!(
        clear.contains("warning: `kafka.main.sasl` without `tls`"),
        "{clear}"
    );
}

/// A fatal error of the idempotent producer (raised by a test hook on the eleventh message):
/// the mapping gets a new producer and every message arrives; none is dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_producer_error_replaces_the_producer_and_loses_nothing() {
    let (input, out, dlq) = (unique("fatal-in"), unique("fatal-out"), unique("fatal-dlq"));
    brokers::create_topics(&[&input, &out, &dlq], 1).await;
    let records: Vec<brokers::Record> = (0..30)
        .map(|i| {
            let mut r = record("-", &format!("m{i}"));
            r.headers = if i == 10 {
                vec![("boom".into(), b"1".to_vec())]
            } else {
                vec![]
            };
            r
        })
        .collect();
    brokers::produce(&input, &records, None).await;
    let mut bridge = Scenario::new()
        .health()
        .env("BRIDGE_TEST_FATAL_PRODUCER", "boom")
        .mapping(
            Mapping::kafka_to_kafka("m", &[&input], &unique("g"), &out).dead_letter_kafka(&dlq),
        )
        .start();
    let got = brokers::read_topic(&out, 60, Duration::from_secs(20)).await;
    let dead = brokers::read_topic(&dlq, 1, Duration::from_secs(3)).await;
    let restarts = bridge.metric(r#"bridge_mapping_restarts_total{mapping="m",tenant="default"}"#);
    bridge.stop_clean();
    let log = bridge.log_text();
    let distinct: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(distinct.len(), 30, "every message arrived; log:\n{log}");
    assert!(dead.is_empty(), "nothing dead-lettered; log:\n{log}");
    assert!(
        restarts.unwrap_or(0.0) >= 1.0,
        "the mapping restarted; log:\n{log}"
    );
}

/// A Kafka → Kafka mapping of 30 records run with the test hook `hook` set to fire on the
/// eleventh (its header `crash`), `/readyz` polled all along: the distinct records that
/// arrived, the mapping's restarts, `/readyz`'s answers and the log.
async fn crash_on_the_eleventh_record(hook: &str, prefix: &str) -> (usize, f64, Vec<u16>, String) {
    let (input, out) = (
        unique(&format!("{prefix}-in")),
        unique(&format!("{prefix}-out")),
    );
    brokers::create_topics(&[&input, &out], 1).await;
    let records: Vec<brokers::Record> = (0..30)
        .map(|i| {
            let mut r = record("-", &format!("m{i}"));
            if i == 10 {
                r.headers.push(("crash".into(), b"1".to_vec()));
            }
            r
        })
        .collect();
    let mut bridge = Scenario::new()
        .health()
        .env(hook, "crash")
        .mapping(Mapping::kafka_to_kafka("m", &[&input], &unique("g"), &out))
        .start();
    bridge.ready().await;
    // `/readyz` as Kubernetes polls it, from before the records arrive until they are through.
    let port = bridge.health_port();
    let polling = Arc::new(AtomicBool::new(true));
    let answers = std::thread::spawn({
        let polling = Arc::clone(&polling);
        move || {
            let mut answers = Vec::new();
            while polling.load(Ordering::Relaxed) {
                answers.push(http_get(port, "/readyz").map_or(0, |(code, _)| code));
                std::thread::sleep(Duration::from_millis(100));
            }
            answers
        }
    });
    brokers::produce(&input, &records, None).await;
    let got = brokers::read_topic(&out, 40, Duration::from_secs(20)).await;
    let restarts = bridge.metric(r#"bridge_mapping_restarts_total{mapping="m",tenant="default"}"#);
    bridge.ready().await;
    polling.store(false, Ordering::Relaxed);
    let answers = answers.join().expect("the readiness poller");
    bridge.stop_clean();
    let distinct: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    (
        distinct.len(),
        restarts.unwrap_or(0.0),
        answers,
        bridge.log_text(),
    )
}

/// The poller of a shared Kafka consumer dies (a bug, raised by a test hook on the eleventh
/// record): its mapping restarts on a new consumer, `/readyz` says why until it runs again,
/// and every record arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_kafka_poller_restarts_its_mapping_and_loses_nothing() {
    let (arrived, restarts, answers, log) =
        crash_on_the_eleventh_record("BRIDGE_TEST_POLLER_PANIC", "poller").await;
    assert!(
        answers.contains(&503) && answers.last() == Some(&200),
        "`/readyz` failed while the mapping was down and recovered: {answers:?}"
    );
    assert_eq!(arrived, 30, "every record arrived; log:\n{log}");
    assert!(restarts >= 1.0, "the mapping restarted; log:\n{log}");
    assert!(
        log.contains("the Kafka poller panics") && log.contains("Mapping stopped; restarting"),
        "the log says what happened; log:\n{log}"
    );
}

/// The mapping's own task panics as it sends the eleventh record (a bug, raised by a test
/// hook): the mapping restarts, the record is consumed again, and every record arrives.
#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_a_mapping_restarts_it_and_loses_nothing() {
    let (arrived, restarts, answers, log) =
        crash_on_the_eleventh_record("BRIDGE_TEST_MAPPING_PANIC", "mpanic").await;
    assert_eq!(answers.last(), Some(&200), "ready again: {answers:?}");
    assert_eq!(arrived, 30, "every record arrived; log:\n{log}");
    assert!(restarts >= 1.0, "the mapping restarted; log:\n{log}");
    assert!(
        log.contains("the mapping's task panics") && log.contains("Mapping stopped; restarting"),
        "the log says what happened; log:\n{log}"
    );
}

/// The Kafka readiness probe panics on its first round (a test hook): it is restarted,
/// `/readyz` goes on answering from its probes, and the mappings are not disturbed.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_readiness_probe_is_restarted() {
    let (input, out) = (unique("probe-in"), unique("probe-out"));
    brokers::create_topics(&[&input, &out], 1).await;
    let mut bridge = Scenario::new()
        .health()
        .env("BRIDGE_TEST_PROBE_PANIC", "1")
        .mapping(Mapping::kafka_to_kafka("m", &[&input], &unique("g"), &out))
        .start();
    bridge.ready().await;
    bridge
        .wait_for("the probe's restart", Duration::from_secs(20), || {
            bridge
                .log_text()
                .contains("The Kafka readiness probe ended; restarting it.")
        })
        .await;
    brokers::produce(&input, &[record("-", "after")], None).await;
    let got = brokers::read_topic(&out, 1, Duration::from_secs(20)).await;
    bridge.ready().await;
    bridge.stop_clean();
    let log = bridge.log_text();
    assert!(
        log.contains("the Kafka readiness probe panics"),
        "the log says why; log:\n{log}"
    );
    assert_eq!(got.len(), 1, "the mapping moved its record; log:\n{log}");
    assert!(
        !log.contains("Mapping stopped; restarting"),
        "no mapping restarted; log:\n{log}"
    );
}

/// The default tenant has a budget too: a plugin that fans an 8 MiB message out a thousand
/// times fails with `plugin-memory-limit` instead of making the host hold 8 GB, and a chain
/// whose stages multiply (40 × 40) is capped by `fan_out` across the chain.
#[tokio::test(flavor = "multi_thread")]
async fn memory_is_bounded_by_default_and_fan_out_across_a_chain() {
    let (big_in, chain_in) = (unique("mem-in"), unique("chain-in"));
    let (out, dlq) = (unique("mem-out"), unique("mem-dlq"));
    brokers::create_topics(&[&big_in, &chain_in, &out, &dlq], 1).await;
    brokers::produce(&big_in, &[record("-", "grow me")], None).await;
    brokers::produce(&chain_in, &[record("-", "multiply me")], None).await;
    let hostile = bridge_tests::artifacts::HOSTILE;
    let mut bridge = Scenario::new()
        .plugin("big", hostile, r#"mode = "huge-payload", size = "8388608""#)
        .plugin("fan", hostile, r#"mode = "fan-out", count = "1000""#)
        .plugin("fan40a", hostile, r#"mode = "fan-out", count = "40""#)
        .plugin("fan40b", hostile, r#"mode = "fan-out", count = "40""#)
        .mapping(
            Mapping::kafka_to_kafka("big", &[&big_in], &unique("g"), &out)
                .plugins(&["big", "fan"])
                .dead_letter_kafka(&dlq),
        )
        .mapping(
            Mapping::kafka_to_kafka("chain", &[&chain_in], &unique("g"), &out)
                .plugins(&["fan40a", "fan40b"])
                .dead_letter_kafka(&dlq),
        )
        .start();
    let dead = brokers::read_topic(&dlq, 2, Duration::from_secs(60)).await;
    let peak_kib = bridge_tests::bridge::proc_status(bridge.pid(), "VmHWM:").unwrap_or(0);
    bridge.stop_clean();
    let log = bridge.log_text();
    let kinds: std::collections::BTreeMap<String, String> = dead
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned(),
                r.header("x-bridge-failure-kind").unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds.get("grow me").map(String::as_str),
        Some("plugin-memory-limit"),
        "log:\n{log}"
    );
    assert_eq!(
        kinds.get("multiply me").map(String::as_str),
        Some("plugin-output-limit"),
        "log:\n{log}"
    );
    assert_rss_within_the_budget(peak_kib, &log);
}

/// The documented bound (docs/operations.md, "Limits"): peak RSS under the tenants' `held_bytes`
/// (here the default tenant's 256 MiB) plus 256 MiB for the host itself.
fn assert_rss_within_the_budget(peak_kib: u64, log: &str) {
    eprintln!("peak RSS {} MiB", peak_kib / 1024);
    assert!(
        peak_kib < (256 + 256) * 1024,
        "peak RSS {} MiB; log:\n{log}",
        peak_kib / 1024
    );
}

/// A plugin that keeps a thousand duplicates of every message across its calls: what it keeps
/// counts against the tenant's budget until it lets go, so it fails with `plugin-memory-limit`
/// once the budget is full; every message is delivered or dead-lettered, and the host stays
/// within its bound.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_keeping_duplicates_across_calls_is_held_to_the_budget() {
    let (input, out, dlq) = (unique("keep-in"), unique("keep-out"), unique("keep-dlq"));
    brokers::create_topics(&[&input, &out, &dlq], 1).await;
    let payload = "k".repeat(8 * 1024);
    let records: Vec<brokers::Record> = (0..40)
        .map(|i| record("-", &format!("{i:02}{payload}")))
        .collect();
    brokers::produce(&input, &records, None).await;
    let mut bridge = Scenario::new()
        .plugin(
            "keep",
            bridge_tests::artifacts::HOSTILE,
            r#"mode = "keep", count = "1000""#,
        )
        .mapping(
            Mapping::kafka_to_kafka("keep", &[&input], &unique("g"), &out)
                .plugins(&["keep"])
                .dead_letter_kafka(&dlq),
        )
        .start();
    let delivered = brokers::read_topic(&out, 40, Duration::from_secs(10)).await;
    let dead = brokers::read_topic(&dlq, 40, Duration::from_secs(10)).await;
    let peak_kib = bridge_tests::bridge::proc_status(bridge.pid(), "VmHWM:").unwrap_or(0);
    bridge.stop_clean();
    let log = bridge.log_report();
    let ids = |records: &[brokers::Record]| -> std::collections::BTreeSet<String> {
        records
            .iter()
            .map(|r| {
                String::from_utf8_lossy(&r.payload.as_deref().unwrap_or_default()[..2]).into_owned()
            })
            .collect()
    };
    let (delivered_ids, dead_ids) = (ids(&delivered), ids(&dead));
    assert_eq!(
        delivered_ids.len() + dead_ids.len(),
        40,
        "{} delivered and {} dead-lettered of 40; {log}",
        delivered_ids.len(),
        dead_ids.len()
    );
    assert!(
        !dead.is_empty()
            && dead.iter().all(
                |r| r.header("x-bridge-failure-kind").as_deref() == Some("plugin-memory-limit")
            ),
        "{} dead-lettered, all for `plugin-memory-limit`; {log}",
        dead.len()
    );
    assert_rss_within_the_budget(peak_kib, &log);
}

/// A message larger than RabbitMQ's `max_message_size` (128 MiB by default, here 64 KiB): the
/// broker closes the publishing channel on it. The bridge learns the limit from the broker's
/// words, refuses the message as `target-rejected` (dead-lettered here) and the messages behind
/// it in its partition arrive: it is not sent again after every restart, holding the partition.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_rabbitmqs_max_message_size_is_dead_lettered_not_sent_forever() {
    let node = tokio::task::spawn_blocking(|| {
        let node = RabbitNode::start(None);
        let limited = node.ctl(&[
            "eval",
            "application:set_env(rabbit, max_message_size, 65536).",
        ]);
        (node, limited)
    })
    .await
    .unwrap();
    let (node, limited) = node;
    assert!(limited, "the private node takes max_message_size = 65536");
    let url = node.url();
    let topic = unique("big-in");
    let dlq = unique("big-dead");
    brokers::create_topics(&[&topic, &dlq], 1).await;
    let (exchange, queue) = (unique("big-ex"), unique("big-q"));
    let conn = brokers::amqp_to(&url).await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let big = 10;
    let records: Vec<Record> = (0..=20)
        .map(|i| {
            let mut r = Record::kind("small", i, 0);
            if i == big {
                r.payload = Some(vec![b'x'; 200 * 1024]);
            }
            r
        })
        .collect();
    brokers::produce(&topic, &records, None).await;
    let mut bridge = Scenario::with_brokers(&brokers::brokers_toml_with(&url))
        .mapping(
            Mapping::kafka_to_rabbitmq("big", &[&topic], &unique("g"), &exchange)
                .routing_key("rk")
                .dead_letter_kafka(&dlq),
        )
        .start();
    // Waits for the dead letter (retries come first).
    brokers::read_topic(&dlq, 1, Duration::from_secs(40)).await;
    // Everything that arrived, restarts' duplicates included.
    let arrived = brokers::consume_queue(&conn, &queue, usize::MAX, Duration::from_secs(5)).await;
    bridge.stop_clean();
    let arrived: std::collections::BTreeSet<usize> = arrived
        .iter()
        .map(|m| brokers::kind_index(&m.payload))
        .collect();
    let expected: std::collections::BTreeSet<usize> = (0..=20).filter(|i| *i != big).collect();
    assert_eq!(
        arrived,
        expected,
        "every message but the large one reaches the queue; {}",
        bridge.log_report()
    );
    // At least once; every dead letter is the large message.
    let dead = brokers::read_topic(&dlq, 10, Duration::from_secs(3)).await;
    assert!(!dead.is_empty(), "the large message is dead-lettered");
    assert!(
        dead.iter()
            .all(|d| d.payload.as_ref().map(Vec::len) == Some(200 * 1024)),
        "only the large message is dead-lettered"
    );
    let reason = dead[0].header("x-bridge-reason").unwrap_or_default();
    assert!(
        reason.contains("max_message_size"),
        "the dead letter says why: {reason}"
    );
    drop(node);
}
