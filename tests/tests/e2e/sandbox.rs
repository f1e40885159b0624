//! Hostile plugins are contained: every misbehaviour becomes a typed error, the failed
//! instance is replaced, and the next message is processed normally.

use bridge_host::plugin::{
    FailureKind, Message, Outcome, PluginInstance, PluginLimits, PluginSpec,
};
use bridge_tests::{artifacts, runtime};

fn hostile(mode: &str, limits: PluginLimits, extra: &[(&str, &str)]) -> PluginInstance {
    let mut spec = PluginSpec::new(format!("hostile-{mode}"), artifacts::HOSTILE)
        .with_config("mode", mode)
        .with_limits(limits);
    for (k, v) in extra {
        spec = spec.with_config(*k, *v);
    }
    runtime()
        .load(&spec)
        .expect("loads")
        .instantiate()
        .expect("starts")
}

fn well_behaved() -> Message {
    let mut msg = Message::new(Some(b"ok".to_vec()));
    msg.headers.push(("x-behave".into(), b"1".to_vec()));
    msg
}

/// After a failure, the replacement instance serves the next message.
fn assert_recovers(instance: &mut PluginInstance) {
    match instance
        .process(well_behaved())
        .expect("the next message is processed")
    {
        Outcome::Forward(m) => assert_eq!(m[0].header("x-processed"), Some(&b"yes"[..])),
        other => panic!("{other:?}"),
    }
}

#[test]
fn infinite_loop_is_stopped_at_the_time_limit() {
    let limits = PluginLimits {
        timeout_ms: 50,
        ..PluginLimits::default()
    };
    let mut instance = hostile("loop", limits, &[]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginTimeout);
    assert_eq!(err.plugin, "hostile-loop");
    assert_recovers(&mut instance);
}

#[test]
fn memory_bomb_is_denied_at_the_cap() {
    let limits = PluginLimits {
        memory_mib: 16,
        ..PluginLimits::default()
    };
    let mut instance = hostile("memory", limits, &[]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginMemoryLimit, "{err}");
    assert!(
        err.detail
            .starts_with("memory limit of 16777216 bytes exceeded"),
        "{}",
        err.detail
    );
    assert_recovers(&mut instance);
}

#[test]
fn deep_recursion_traps_cleanly() {
    // Large frames live on Rust's shadow stack in linear memory: it runs out first.
    let mut instance = hostile("recursion", PluginLimits::default(), &[]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginTrap);
    assert!(
        err.detail.contains("out of bounds memory access"),
        "{}",
        err.detail
    );
    assert_recovers(&mut instance);

    // Small frames live on the WebAssembly stack: its cap stops them, without a process abort.
    let mut instance = hostile("call-depth", PluginLimits::default(), &[]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginTrap);
    assert_eq!(
        err.detail,
        "stack overflow (the call exceeded its WebAssembly stack limit)"
    );
    assert_recovers(&mut instance);
}

#[test]
fn a_plugin_that_always_traps_never_takes_the_host_down() {
    let mut instance = hostile("trap", PluginLimits::default(), &[]);
    for _ in 0..3 {
        let err = instance.process(Message::new(None)).unwrap_err();
        assert_eq!(err.kind, FailureKind::PluginTrap);
        assert!(err.detail.contains("unreachable"), "{}", err.detail);
    }
    assert_recovers(&mut instance);
}

#[test]
fn files_environment_and_network_are_denied() {
    let mut instance = hostile("sandbox", PluginLimits::default(), &[]);
    let out = match instance.process(Message::new(None)).unwrap() {
        Outcome::Forward(mut m) => m.remove(0),
        other => panic!("{other:?}"),
    };
    let h = |n: &str| String::from_utf8(out.header(n).expect(n).to_vec()).unwrap();
    assert!(h("x-file").starts_with("denied"), "file: {}", h("x-file"));
    assert!(h("x-dir").starts_with("denied"), "dir: {}", h("x-dir"));
    assert_eq!(h("x-env-count"), "0");
    assert_eq!(h("x-env-path"), "unset");
    assert!(h("x-tcp").starts_with("denied"), "tcp: {}", h("x-tcp"));
    assert!(h("x-dns").starts_with("denied"), "dns: {}", h("x-dns"));
}

#[test]
fn a_100_mib_payload_is_rejected_by_the_output_limit() {
    // Memory is generous so that the output limit, not the memory cap, is what stops it.
    let limits = PluginLimits {
        memory_mib: 512,
        timeout_ms: 5_000,
        ..PluginLimits::default()
    };
    let mut instance = hostile("huge-payload", limits, &[]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginOutputLimit, "{err}");
    assert_eq!(
        err.detail,
        "output limit exceeded: payload of 104857600 bytes is larger than 16777216 bytes"
    );
    assert_recovers(&mut instance);
}

#[test]
fn a_million_headers_are_rejected_by_the_output_limit() {
    let limits = PluginLimits {
        timeout_ms: 5_000,
        ..PluginLimits::default()
    };
    let mut instance = hostile("many-headers", limits, &[]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginOutputLimit);
    assert_eq!(
        err.detail,
        "output limit exceeded: 1025 headers are more than 1024"
    );
    assert_recovers(&mut instance);
}

#[test]
fn fan_out_is_bounded() {
    let mut instance = hostile("fan-out", PluginLimits::default(), &[("count", "3")]);
    match instance.process(Message::new(Some(b"p".to_vec()))).unwrap() {
        Outcome::Forward(m) => {
            assert_eq!(m.len(), 3);
            assert!(m.iter().all(|m| m.payload.as_deref() == Some(&b"p"[..])));
        }
        other => panic!("{other:?}"),
    }
    let mut instance = hostile("fan-out", PluginLimits::default(), &[("count", "5000")]);
    let err = instance.process(Message::new(None)).unwrap_err();
    assert_eq!(err.kind, FailureKind::PluginOutputLimit);
    assert_eq!(
        err.detail,
        "output limit exceeded: more than 1024 messages created in one call"
    );
}

#[test]
fn chatty_plugins_are_rate_limited_not_fatal() {
    let mut instance = hostile("log", PluginLimits::default(), &[("count", "500")]);
    assert!(matches!(
        instance.process(Message::new(None)).unwrap(),
        Outcome::Forward(_)
    ));
}

#[test]
fn init_rejection_names_the_plugin() {
    let spec = PluginSpec::new("strict", artifacts::HOSTILE).with_config("mode", "reject");
    let err = runtime().load(&spec).unwrap().instantiate().unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `strict` rejected its configuration: this plugin always rejects its configuration"
    );
}
