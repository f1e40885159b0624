//! The built-in plugins, loaded and called through the real host.

use bridge_host::plugin::{
    Decision, Failure, FailureKind, KafkaOrigin, Message, Origin, Outcome, PluginSpec,
};
use bridge_tests::{artifacts, runtime};

fn forward_one(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Forward(mut m) if m.len() == 1 => m.remove(0),
        other => panic!("expected one forwarded message, got {other:?}"),
    }
}

fn header_text(msg: &Message) -> Vec<(String, String)> {
    msg.headers
        .iter()
        .map(|(n, v)| {
            (
                n.clone(),
                String::from_utf8(v.clone()).expect("UTF-8 header"),
            )
        })
        .collect()
}

#[test]
fn header_map_renames_filters_and_sets_headers() {
    let spec = PluginSpec::new("headers", artifacts::HEADER_MAP)
        .with_config("keep.0", "kafka_*")
        .with_config("keep.1", "trace-id")
        .with_config("rename.kafka_key", "message_key")
        .with_config("copy.trace-id", "x-trace")
        .with_config("set.x-route", "{topic}.{json:type}.{header:region|eu}");
    let plugin = runtime().load(&spec).expect("header-map loads");
    assert_eq!(plugin.kinds().names(), ["transform"]);
    let mut instance = plugin.instantiate().expect("header-map starts");

    let mut msg = Message::new(Some(br#"{"type":"damage"}"#.to_vec()));
    msg.origin = Origin::Kafka(KafkaOrigin {
        cluster: "main".into(),
        topic: "orders".into(),
        partition: 1,
        offset: 9,
    });
    for (n, v) in [
        ("kafka_topic", "orders"),
        ("kafka_key", "k1"),
        ("trace-id", "t1"),
        ("secret", "s"),
    ] {
        msg.headers.push((n.into(), v.into()));
    }
    let out = forward_one(instance.process(msg).expect("process succeeds"));
    assert_eq!(
        header_text(&out),
        [
            ("kafka_topic", "orders"),
            ("trace-id", "t1"),
            ("message_key", "k1"),
            ("x-trace", "t1"),
            ("x-route", "orders.damage.eu")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(
        out.payload.as_deref(),
        Some(&br#"{"type":"damage"}"#[..]),
        "payload untouched"
    );

    // The same instance keeps serving messages.
    let again = forward_one(instance.process(Message::new(None)).expect("second call"));
    assert_eq!(again.payload, None, "a tombstone stays a tombstone");
}

#[test]
fn header_map_rejects_unknown_settings_at_init() {
    let spec = PluginSpec::new("headers", artifacts::HEADER_MAP).with_config("renam.a", "b");
    let plugin = runtime().load(&spec).expect("loads");
    let err = plugin
        .instantiate()
        .expect_err("init rejects the configuration");
    assert_eq!(
        err.to_string(),
        "plugin `headers` rejected its configuration: unknown setting `renam.a` (expected one of: `keep`, `drop`, `rename`, `copy`, `set`, `on_missing`)"
    );
}

#[test]
fn routing_key_derives_amqp_and_kafka_targets() {
    let spec = PluginSpec::new("route", artifacts::ROUTING_KEY)
        .with_config("routing_key", "order.{json:type}.{header:region|eu}")
        .with_config("topic", "copy-{source}")
        .with_config("key", "{json:customer.id}");
    let mut instance = runtime().load(&spec).unwrap().instantiate().unwrap();
    let mut msg = Message::new(Some(br#"{"type":"damage","customer":{"id":42}}"#.to_vec()));
    msg.origin = Origin::Kafka(KafkaOrigin {
        cluster: "main".into(),
        topic: "events-order-damage".into(),
        partition: 0,
        offset: 0,
    });
    let out = forward_one(instance.process(msg).unwrap());
    assert_eq!(
        out.amqp_target.routing_key.as_deref(),
        Some("order.damage.eu")
    );
    assert_eq!(
        out.kafka_target.topic.as_deref(),
        Some("copy-events-order-damage")
    );
    assert_eq!(out.key.as_deref(), Some(&b"42"[..]));

    // A missing field without a default dead-letters the message with a reason.
    match instance
        .process(Message::new(Some(b"not json".to_vec())))
        .unwrap()
    {
        Outcome::DeadLetter { reason, message } => {
            assert_eq!(
                reason,
                "routing-key: cannot derive `routing_key`: JSON field `type` is missing"
            );
            assert_eq!(message.payload.as_deref(), Some(&b"not json"[..]));
        }
        other => panic!("expected a dead letter, got {other:?}"),
    }
}

#[test]
fn dlq_policy_retries_with_backoff_then_dead_letters() {
    let spec = PluginSpec::new("policy", artifacts::DLQ_POLICY)
        .with_config("max_attempts", "3")
        .with_config("initial_delay_ms", "100")
        .with_config("retry_on.0", "target-rejected");
    let plugin = runtime().load(&spec).unwrap();
    assert_eq!(plugin.kinds().names(), ["dead-letter-policy"]);
    let mut instance = plugin.instantiate().unwrap();
    let failure = |kind, attempt| Failure {
        kind,
        plugin: Some("route".into()),
        message: "nack".into(),
        attempt,
    };
    let decide = |i: &mut bridge_host::plugin::PluginInstance, kind, attempt| {
        i.decide(Message::new(Some(b"x".to_vec())), &failure(kind, attempt))
            .unwrap()
    };
    assert!(matches!(
        decide(&mut instance, FailureKind::TargetRejected, 1),
        Decision::Retry(100)
    ));
    assert!(matches!(
        decide(&mut instance, FailureKind::TargetRejected, 2),
        Decision::Retry(200)
    ));
    match decide(&mut instance, FailureKind::TargetRejected, 3) {
        Decision::DeadLetter(d) => assert_eq!(d.reason, "target-rejected: nack"),
        other => panic!("{other:?}"),
    }
    match decide(&mut instance, FailureKind::PluginTrap, 1) {
        Decision::DeadLetter(d) => assert_eq!(d.reason, "plugin-trap: nack"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn calling_the_wrong_interface_is_an_error_not_a_panic() {
    let mut instance = runtime()
        .load(&PluginSpec::new("policy", artifacts::DLQ_POLICY))
        .unwrap()
        .instantiate()
        .unwrap();
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `policy` failed (plugin-error): the plugin does not export `transform`"
    );
}
