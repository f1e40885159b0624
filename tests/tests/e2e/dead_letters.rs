//! Failures reach the dead-letter target with their context headers, never vanish.

use std::time::Duration;

use bridge_tests::artifacts;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};

/// RabbitMQ returns an unroutable message and confirms it later, often in one `multiple` ack
/// with routed messages published around it: the return is the unroutable message's, not
/// another's, whichever way the confirmations come.
#[tokio::test(flavor = "multi_thread")]
async fn returns_among_many_confirmations_reach_the_message_returned() {
    let n = 5_000;
    let topic = unique("mixed");
    let dlq = unique("mixed-dead");
    let exchange = unique("mixed-ex");
    let queue = unique("mixed-routed");
    brokers::create_topics(&[&topic, &dlq], 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "order.ok").await;
    // Every fifth is unroutable.
    let lost = |i: usize| i.is_multiple_of(5);
    let records: Vec<Record> = (0..n)
        .map(|i| Record::kind(if lost(i) { "lost" } else { "ok" }, i, 0))
        .collect();
    brokers::produce(&topic, &records, None).await;
    let mut bridge = Scenario::new()
        .plugin(
            "route",
            artifacts::ROUTING_KEY,
            r#"routing_key = "order.{json:kind}""#,
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("mixed", &[&topic], &unique("bridge"), &exchange)
                .plugins(&["route"])
                .dead_letter_kafka(&dlq),
        )
        .start();
    let unroutable = (0..n).filter(|i| lost(*i)).count();
    let routed =
        brokers::consume_queue(&conn, &queue, n - unroutable, Duration::from_secs(20)).await;
    let dead = brokers::read_topic(&dlq, unroutable, Duration::from_secs(20)).await;
    bridge.stop_clean();

    let index = brokers::kind_index;
    let dead: std::collections::BTreeSet<usize> = dead
        .iter()
        .map(|r| index(r.payload.as_deref().unwrap_or_default()))
        .collect();
    let routed: std::collections::BTreeSet<usize> =
        routed.iter().map(|m| index(&m.payload)).collect();
    let wrongly_dead: Vec<usize> = dead
        .iter()
        .copied()
        .filter(|i| !lost(*i))
        .take(10)
        .collect();
    let missing: Vec<usize> = (0..n)
        .filter(|i| lost(*i) && !dead.contains(i))
        .take(10)
        .collect();
    assert!(
        wrongly_dead.is_empty() && missing.is_empty(),
        "routed messages dead-lettered: {wrongly_dead:?}…; unroutable messages neither routed nor dead-lettered: {missing:?}…; {}",
        bridge.log_report()
    );
    assert_eq!(
        routed.len(),
        n - unroutable,
        "every routable message routed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unroutable_and_trapped_messages_are_dead_lettered_with_context() {
    let topic = unique("orders");
    let dlq = unique("dead-letters");
    let exchange = unique("events");
    let queue = unique("routed");
    brokers::create_topics(&[&topic, &dlq], 1).await;
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "order.ok").await;

    // `route` derives the routing key from the payload: `ok` is bound, `lost` is unroutable.
    // `trap` makes the hostile plugin panic on messages without header `x-behave`.
    let msg = |i: usize, kind: &str, behave: bool| Record {
        key: Some(format!("k{i}").into_bytes()),
        payload: Some(format!(r#"{{"kind":"{kind}","i":{i}}}"#).into_bytes()),
        headers: if behave {
            vec![("x-behave".into(), b"1".to_vec())]
        } else {
            vec![]
        },
        partition: 0,
        timestamp: None,
    };
    let sent = vec![
        msg(0, "ok", true),
        msg(1, "lost", true),
        msg(2, "ok", false),
        msg(3, "ok", true),
    ];
    brokers::produce(&topic, &sent, None).await;

    let mut bridge = Scenario::new()
        .plugin(
            "route",
            artifacts::ROUTING_KEY,
            r#"routing_key = "order.{json:kind}""#,
        )
        .plugin("hostile", artifacts::HOSTILE, r#"mode = "trap""#)
        .mapping(
            Mapping::kafka_to_rabbitmq("orders", &[&topic], &unique("bridge"), &exchange)
                .plugins(&["route", "hostile"])
                .dead_letter_kafka(&dlq),
        )
        .start();
    let routed = brokers::consume_queue(&conn, &queue, 2, Duration::from_secs(30)).await;
    let dlq_topic = dlq.clone();
    let dead = tokio::task::spawn_blocking(move || {
        brokers::consume_topic(&dlq_topic, 2, Duration::from_secs(30))
    })
    .await
    .unwrap();
    bridge.stop_clean();

    let routed_payloads: Vec<_> = routed
        .iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect();
    assert_eq!(
        routed_payloads,
        vec![r#"{"kind":"ok","i":0}"#, r#"{"kind":"ok","i":3}"#],
        "log:\n{}",
        bridge.log_text()
    );

    assert!(
        dead.len() == 2,
        "{:?}, expected {:?}; {}",
        dead.len(),
        2,
        bridge.log_report()
    );
    let unroutable = dead
        .iter()
        .find(|r| r.key.as_deref() == Some(b"k1"))
        .expect("unroutable dead letter");
    assert_eq!(unroutable.payload, sent[1].payload, "original payload");
    assert_eq!(
        unroutable.header("x-bridge-failure-kind").as_deref(),
        Some("unroutable")
    );
    assert_eq!(
        unroutable.header("x-bridge-mapping").as_deref(),
        Some("orders")
    );
    assert_eq!(
        unroutable.header("x-bridge-source"),
        Some(format!("kafka:main/{topic}/0/1"))
    );
    assert_eq!(
        unroutable.header("x-behave").as_deref(),
        Some("1"),
        "original headers kept"
    );
    assert!(
        unroutable
            .header("x-bridge-reason")
            .unwrap()
            .contains("NO_ROUTE"),
        "{:?}",
        unroutable.header("x-bridge-reason")
    );
    assert_eq!(unroutable.header("x-bridge-attempts").as_deref(), Some("1"));
    assert!(
        unroutable
            .header("x-bridge-time")
            .unwrap()
            .parse::<u128>()
            .is_ok()
    );

    let trapped = dead
        .iter()
        .find(|r| r.key.as_deref() == Some(b"k2"))
        .expect("trap dead letter");
    assert_eq!(trapped.payload, sent[2].payload);
    assert_eq!(
        trapped.header("x-bridge-failure-kind").as_deref(),
        Some("plugin-trap")
    );
    assert!(
        trapped
            .header("x-bridge-plugin")
            .unwrap()
            .starts_with("hostile@sha256:"),
        "{:?}",
        trapped.header("x-bridge-plugin")
    );
    assert!(
        trapped
            .header("x-bridge-reason")
            .unwrap()
            .starts_with("plugin-trap: trap:"),
        "{:?}",
        trapped.header("x-bridge-reason")
    );
}

/// A loop (a topic bridged to RabbitMQ and back into itself): the message goes round until it
/// reaches `hop_limit`, then it is dead-lettered as `hop-limit` naming the count; it does not
/// circle for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_loop_stops_at_the_hop_limit_and_is_dead_lettered() {
    let (topic, dlq) = (unique("loop"), unique("loop-dlq"));
    brokers::create_topics(&[&topic, &dlq], 1).await;
    let (exchange, queue) = (unique("loop-ex"), unique("loop-q"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &queue, "rk").await;
    let mut bridge = Scenario::new()
        .mapping(
            Mapping::kafka_to_rabbitmq("out", &[&topic], &unique("g"), &exchange)
                .routing_key("rk")
                .set("hop_limit", 4)
                .dead_letter_kafka(&dlq),
        )
        .mapping(
            Mapping::rabbitmq_to_kafka("back", &queue, &topic)
                .set("hop_limit", 4)
                .dead_letter_kafka(&dlq),
        )
        .start();
    brokers::produce(
        &topic,
        &[Record {
            key: None,
            payload: Some(b"round and round".to_vec()),
            headers: vec![],
            partition: 0,
            timestamp: None,
        }],
        None,
    )
    .await;
    let dead = brokers::read_topic(&dlq, 1, Duration::from_secs(30)).await;
    // Nothing more goes round once it is dead-lettered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let laps = brokers::read_topic(&topic, 100, Duration::from_secs(3)).await;
    bridge.stop_clean();
    let log = bridge.log_text();
    assert_eq!(dead.len(), 1, "log:\n{log}");
    assert_eq!(
        dead[0].header("x-bridge-failure-kind").as_deref(),
        Some("hop-limit"),
        "log:\n{log}"
    );
    let reason = dead[0].header("x-bridge-reason").unwrap_or_default();
    assert!(reason.contains("(hop_limit = 4)"), "{reason}");
    // In the topic as produced (no hop), then after hops 2 and 4; the next hop would be the
    // fifth, over the limit of 4: dead-lettered instead.
    let hops: Vec<Option<String>> = laps.iter().map(|r| r.header("x-bridge-hops")).collect();
    assert_eq!(
        hops,
        [None, Some("2".to_string()), Some("4".to_string())],
        "log:\n{log}"
    );
}
