//! `bridge-host plugin run` and `bridge-host plugin inspect`, as plugin authors use them.

use bridge_host::cli::{Cli, Command};
use bridge_tests::artifacts;
use clap::Parser;

/// Runs a `plugin` subcommand in process: its stdout text, or its error on one line.
fn plugin_cmd(args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("bridge-host").chain(args.iter().copied()))
        .expect("arguments parse");
    match cli.command {
        Some(Command::Plugin(cmd)) => cmd.execute().map_err(|e| format!("{e:#}")),
        other => panic!("not a plugin command: {other:?}"),
    }
}

fn input_file(json: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), json).expect("temp file is writable");
    file
}

#[test]
fn run_prints_the_verdict_as_json() {
    let input = input_file(
        r#"{"key":"k1","payload":{"base64":"AAEC"},"headers":[["kafka_key","k1"],["bin",{"base64":"/w=="}]],
            "origin":{"kafka":{"cluster":"main","topic":"orders","partition":2,"offset":7}}}"#,
    );
    let out = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::HEADER_MAP,
        "--config",
        "rename.kafka_key=message_key",
        "--config",
        "set.x-src={topic}/{partition}/{offset}",
        "--input",
        input.path().to_str().unwrap(),
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "verdict": "forward",
            "messages": [{
                "key": "k1",
                "payload": {"base64": "AAEC"},
                "headers": [["bin", {"base64": "/w=="}], ["message_key", "k1"], ["x-src", "orders/2/7"]],
                "origin": {"kafka": {"cluster": "main", "topic": "orders", "partition": 2, "offset": 7}}
            }]
        })
    );
}

#[test]
fn run_shows_dead_letters_and_policy_decisions() {
    let input = input_file(r#"{"payload":"not json"}"#);
    let path = input.path().to_str().unwrap();
    let out = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::ROUTING_KEY,
        "-c",
        "routing_key={json:type}",
        "-i",
        path,
    ])
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verdict"], "dead-letter");
    assert_eq!(
        json["reason"],
        "routing-key: cannot derive `routing_key`: JSON field `type` is missing"
    );

    let out = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::DLQ_POLICY,
        "--failure",
        "target-rejected",
        "--attempt",
        "2",
        "--error",
        "nack",
        "-i",
        path,
    ])
    .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap(),
        serde_json::json!({"verdict": "retry", "after_ms": 400})
    );
}

#[test]
fn run_fails_with_one_line_errors() {
    let input = input_file(r#"{"payload":"x"}"#);
    let path = input.path().to_str().unwrap();
    let err = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::HOSTILE,
        "-c",
        "mode=trap",
        "-i",
        path,
    ])
    .unwrap_err();
    assert!(err.starts_with("plugin `hostile` failed (plugin-trap): trap: wasm trap: wasm `unreachable` instruction executed"), "{err}");
    let err = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::HOSTILE,
        "-c",
        "mode=loop",
        "--timeout-ms",
        "20",
        "-i",
        path,
    ])
    .unwrap_err();
    assert_eq!(
        err,
        "plugin `hostile` failed (plugin-timeout): the call ran past its time limit and was interrupted"
    );
    let err = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::HEADER_MAP,
        "-c",
        "bogus=1",
        "-i",
        path,
    ])
    .unwrap_err();
    assert!(
        err.starts_with("plugin `header_map` rejected its configuration: unknown setting `bogus`"),
        "{err}"
    );
    let bad = input_file(r#"{"payload":"x","colour":"red"}"#);
    let err = plugin_cmd(&[
        "plugin",
        "run",
        artifacts::HEADER_MAP,
        "-i",
        bad.path().to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(err.contains("unknown field `colour`"), "{err}");
    let err = plugin_cmd(&["plugin", "run", artifacts::DLQ_POLICY, "-i", path]).unwrap_err();
    assert!(
        err.contains("is a dead-letter policy only: pass `--failure KIND`"),
        "{err}"
    );
}

#[test]
fn inspect_lists_exports_imports_and_version() {
    let out = plugin_cmd(&["plugin", "inspect", artifacts::ROUTING_KEY, "--json"]).unwrap();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["kinds"], serde_json::json!(["transform"]));
    assert_eq!(json["contract_version"], "0.1.0");
    // The SDK declares the plugin crate's version in a `bridge-plugin-version` section.
    assert_eq!(json["version"], "0.1.0");
    assert_eq!(
        json["exports"],
        serde_json::json!(["bridge:plugin/transform@0.1.0"])
    );
    assert_eq!(
        json["size"],
        std::fs::metadata(artifacts::ROUTING_KEY).unwrap().len()
    );
    assert!(
        json["imports"]
            .as_array()
            .unwrap()
            .contains(&"bridge:plugin/types@0.1.0".into())
    );

    let text = plugin_cmd(&["plugin", "inspect", artifacts::BAD_IMPORT]).unwrap();
    assert!(text.contains("version: not declared"), "{text}");
    assert!(
        text.contains("not provided by this host:\n  evil:net/raw-socket@0.1.0"),
        "{text}"
    );
}
