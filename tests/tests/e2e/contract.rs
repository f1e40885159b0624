//! The WIT contract has one source of truth, `wit/plugin.wit`; the guest SDK's copy must not
//! drift from it.

#![allow(clippy::unwrap_used)]

#[test]
fn guest_sdk_wit_matches_the_contract() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let contract = std::fs::read_to_string(format!("{root}/wit/plugin.wit")).unwrap();
    let copy = std::fs::read_to_string(format!("{root}/guest-sdk/wit/plugin.wit")).unwrap();
    assert!(
        contract == copy,
        "guest-sdk/wit/plugin.wit differs from wit/plugin.wit: copy it with `cp wit/plugin.wit guest-sdk/wit/`"
    );
}

#[test]
fn sdk_and_host_agree_on_the_version() {
    assert_eq!(bridge_host::plugin::CONTRACT_VERSION, "0.1.0");
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit")).unwrap();
    assert!(contract.starts_with("package bridge:plugin@0.1.0;"));
}

/// The failure kinds the host names (in configuration, headers and metrics) are the WIT
/// enum's cases, in its order.
#[test]
fn failure_kind_names_are_the_wits() {
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/plugin.wit")).unwrap();
    let body = contract
        .split("enum failure-kind {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap();
    let wit: Vec<&str> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(','))
        .collect();
    let host: Vec<&str> = bridge_host::plugin::FailureKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(host, wit);
}

use bridge_guest_sdk::{Config, Transform, Verdict};
use bridge_host::plugin::{Outcome, PluginRuntime, PluginSpec, RuntimeOptions};
use bridge_tests::artifacts;

/// What a transform left: headers, payload, routing key and topic.
type Result_ = (
    Vec<(String, Vec<u8>)>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
);

/// Runs `T` natively, on the SDK's in-memory message.
fn native<T: Transform>(
    config: &[(&str, &str)],
    headers: &[(&str, &str)],
    payload: &str,
) -> Result_ {
    let mut plugin = T::init(Config::from_pairs(config)).unwrap();
    let mut msg = bridge_guest_sdk::Message::new();
    msg.set_payload(Some(payload.as_bytes()));
    let headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    msg.set_headers(&headers);
    assert!(matches!(plugin.process(&mut msg), Verdict::Forward));
    (
        msg.headers(),
        msg.payload(),
        msg.amqp_target().routing_key,
        msg.kafka_target().topic,
    )
}

/// Runs the same plugin built for WebAssembly through the host.
fn hosted(wasm: &str, config: &[(&str, &str)], headers: &[(&str, &str)], payload: &str) -> Result_ {
    let mut spec = PluginSpec::new("p", wasm);
    for (k, v) in config {
        spec = spec.with_config(*k, *v);
    }
    let runtime = PluginRuntime::new(RuntimeOptions::default()).unwrap();
    let mut instance = runtime.load(&spec).unwrap().instantiate().unwrap();
    let mut msg = bridge_host::plugin::Message::new(Some(payload.as_bytes().to_vec()));
    msg.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let Outcome::Forward(mut out) = instance.process(msg).unwrap() else {
        panic!("not forwarded");
    };
    let m = out.remove(0);
    (
        m.headers,
        m.payload.map(|p| p.to_vec()),
        m.amqp_target.routing_key,
        m.kafka_target.topic,
    )
}

/// Header editing (set replaces every same-named header in place, add appends, remove takes
/// all, order kept), payloads and targets behave the same on the SDK's native message as on
/// the host's: the same plugins, run both ways on the same cases.
#[test]
fn the_sdk_native_message_behaves_as_the_host() {
    let headers = [("x-a", "0"), ("b", "1"), ("x-a", "2"), ("c", "3")];
    let header_cases: &[&[(&str, &str)]] = &[
        &[("set.x-a", "new")],
        &[("set.z", "appended")],
        &[("rename.b", "x-a")],
        &[("copy.c", "x-a")],
        &[("drop.0", "x-*")],
        &[("keep.0", "x-*"), ("set.b", "again")],
    ];
    for config in header_cases {
        assert_eq!(
            native::<header_map::HeaderMap>(config, &headers, "{}"),
            hosted(artifacts::HEADER_MAP, config, &headers, "{}"),
            "header-map with {config:?}"
        );
    }
    let pii = [
        ("fields", "email,card"),
        ("route_field", "region"),
        ("route_header", "x-region"),
    ];
    for payload in [
        r#"{"email":"a@b.c","region":"eu"}"#,
        r#"{"nested":{"card":"4111"},"list":[{"email":"x"}]}"#,
    ] {
        let headers = [("x-region", "us")];
        assert_eq!(
            native::<pii_mask::PiiMask>(&pii, &headers, payload),
            hosted(artifacts::PII_MASK, &pii, &headers, payload),
            "pii-mask on {payload}"
        );
    }
}

/// A new message has the same defaults — AMQP properties, targets, origin, timestamp, key,
/// headers — on the host as on the SDK's native message.
#[test]
fn new_messages_have_the_same_defaults_on_both_sides() {
    let host = bridge_host::plugin::Message::new(None);
    let sdk = bridge_guest_sdk::Message::new();
    let hp = &host.amqp_properties;
    let sp = sdk.amqp_properties();
    let host_props = (
        hp.content_type.clone(),
        hp.content_encoding.clone(),
        hp.message_id.clone(),
        hp.correlation_id.clone(),
        hp.reply_to.clone(),
        hp.priority,
        hp.expiration.clone(),
        hp.type_.clone(),
        hp.app_id.clone(),
        hp.user_id.clone(),
        hp.delivery_mode,
    );
    let sdk_props = (
        sp.content_type,
        sp.content_encoding,
        sp.message_id,
        sp.correlation_id,
        sp.reply_to,
        sp.priority,
        sp.expiration,
        sp.type_,
        sp.app_id,
        sp.user_id,
        sp.delivery_mode,
    );
    assert_eq!(host_props, sdk_props);
    assert_eq!(
        (
            host.kafka_target.topic.clone(),
            host.kafka_target.partition,
            host.amqp_target.exchange.clone(),
            host.amqp_target.routing_key.clone()
        ),
        (
            sdk.kafka_target().topic,
            sdk.kafka_target().partition,
            sdk.amqp_target().exchange,
            sdk.amqp_target().routing_key
        )
    );
    assert!(matches!(host.origin, bridge_host::plugin::Origin::None));
    assert!(matches!(sdk.origin(), bridge_guest_sdk::Origin::None));
    assert_eq!(host.timestamp, sdk.timestamp());
    assert_eq!(host.key, sdk.key());
    assert_eq!(host.headers, sdk.headers());
    assert_eq!(host.payload.map(|p| p.to_vec()), sdk.payload());
}
