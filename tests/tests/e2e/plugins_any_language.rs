//! The same plugin — PII masking, routing and dead-lettering — in every supported language,
//! built from source with each language's own toolchain and held to one set of conformance
//! cases (`examples/plugins/fixtures`) by `bridge-host plugin test`; the JavaScript one also
//! bridges Kafka to RabbitMQ against the real brokers.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bridge_tests::artifacts;
use bridge_tests::bridge::binary;
use bridge_tests::brokers::{self, Record, unique};
use bridge_tests::scenario::{Mapping, Scenario};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("plugins")
}

/// Builds `examples/plugins/LANG` with its own `build.sh`, once per test run.
fn build(lang: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(path) = built.get(lang) {
        return path.clone();
    }
    let out = std::env::temp_dir().join(format!("pii-mask-{lang}-{}.wasm", std::process::id()));
    let result = Command::new("bash")
        .arg(examples().join(lang).join("build.sh"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success() && out.exists(),
        "building the {lang} plugin failed:\n{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    built.insert(lang.to_string(), out.clone());
    out
}

/// `bridge-host plugin test PLUGIN --fixtures DIR --json`: the exit status and the report.
fn kit(plugin: &Path, fixtures: &Path) -> (bool, Value) {
    let out = Command::new(binary())
        .args(["plugin", "test"])
        .arg(plugin)
        .arg("--fixtures")
        .arg(fixtures)
        .arg("--json")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// Every conformance case passes.
fn conforms(plugin: &Path) {
    let fixtures = examples().join("fixtures");
    let cases = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    let (ok, report) = kit(plugin, &fixtures);
    assert!(ok, "{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report["passed"], cases);
    assert_eq!(report["failed"], 0);
}

#[test]
fn the_rust_plugin_conforms() {
    conforms(Path::new(artifacts::PII_MASK));
}

#[test]
fn the_javascript_plugin_conforms() {
    conforms(&build("javascript"));
}

#[test]
fn the_python_plugin_conforms() {
    conforms(&build("python"));
}

#[test]
fn the_c_plugin_conforms() {
    conforms(&build("c"));
}

/// The kit fails, exit status and report, for a plugin that does something else, and says
/// what differed.
#[test]
fn the_kit_reports_what_a_wrong_plugin_does() {
    let (ok, report) = kit(
        Path::new(artifacts::HEADER_MAP),
        &examples().join("fixtures"),
    );
    assert!(!ok);
    assert!(report["failed"].as_u64().unwrap() > 0);
    let problems = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["problems"].as_array().unwrap().iter())
        .map(|p| p.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert!(
        problems.iter().any(|p| p.contains("unknown setting")),
        "{problems:?}"
    );
}

/// The JavaScript plugin in a Kafka → RabbitMQ mapping: masked payloads routed by region,
/// a payload that is not JSON dead-lettered with the plugin's reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_plugin_bridges_kafka_to_rabbitmq() {
    let plugin = build("javascript");
    let topic = unique("pii-src");
    brokers::create_topic(&topic, 1).await;
    let (exchange, eu, us) = (unique("pii-ex"), unique("pii-eu"), unique("pii-us"));
    let (dlx, dlq) = (unique("pii-dlx"), unique("pii-dlq"));
    let conn = brokers::amqp().await;
    brokers::declare_bound_queue(&conn, &exchange, &eu, "eu").await;
    brokers::declare_bound_queue(&conn, &exchange, &us, "us").await;
    brokers::declare_bound_queue(&conn, &dlx, &dlq, "dl").await;
    let mut bridge = Scenario::new()
        .health()
        .plugin(
            "pii",
            plugin,
            r#"fields = ["email", "card"], route_field = "region", default_route = "us""#,
        )
        .mapping(
            Mapping::kafka_to_rabbitmq("pii", &[&topic], &unique("pii"), &exchange)
                .dead_letter_rabbitmq(&dlx, "dl")
                .plugins(&["pii"]),
        )
        .start();
    bridge.ready().await;
    let record = |payload: &str| Record {
        key: None,
        payload: Some(payload.as_bytes().to_vec()),
        headers: Vec::new(),
        partition: 0,
        timestamp: None,
    };
    let mut records: Vec<Record> = (0..20)
        .map(|i| {
            let region = if i % 2 == 0 { "eu" } else { "us" };
            record(&format!(
                r#"{{"n":{i},"region":"{region}","email":"user{i}@example.com","card":"4111"}}"#
            ))
        })
        .collect();
    records.push(record("not json at all"));
    brokers::produce(&topic, &records, None).await;

    let eu = brokers::consume_queue(&conn, &eu, 10, Duration::from_secs(30)).await;
    let us = brokers::consume_queue(&conn, &us, 10, Duration::from_secs(30)).await;
    let dead = brokers::consume_queue(&conn, &dlq, 1, Duration::from_secs(30)).await;
    let log = bridge.log_text();
    bridge.stop_clean();
    assert_eq!((eu.len(), us.len(), dead.len()), (10, 10, 1), "{log}");
    for (queue, region) in [(&eu, "eu"), (&us, "us")] {
        for m in queue {
            let doc: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(doc["region"], region);
            assert_eq!(doc["email"], "***");
            assert_eq!(doc["card"], "***");
        }
    }
    assert_eq!(dead[0].payload, b"not json at all");
    let reason = dead[0].header("x-bridge-reason").unwrap();
    assert!(reason.contains("payload is not JSON"), "{reason}");
}

/// `plugin new` makes a project that builds with its own script and passes its own cases,
/// in every language it has a template for.
#[test]
fn plugin_new_projects_build_and_pass_their_own_cases() {
    let root = tempfile::tempdir().unwrap();
    // The target directory of this build, for the Rust project's dependencies.
    let target = std::env::current_exe()
        .unwrap()
        .ancestors()
        .nth(3)
        .unwrap()
        .join("plugin-new");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for lang in ["rust", "js", "python", "c"] {
        let name = format!("tag-{lang}");
        let dir = root.path().join(&name);
        let mut new = Command::new(binary());
        new.args(["plugin", "new", "--lang", lang, &name, "--dir"])
            .arg(&dir);
        if lang == "rust" {
            new.arg("--sdk-path").arg(&repo);
        }
        let created = new.output().unwrap();
        assert!(
            created.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let built = Command::new("bash")
            .arg(dir.join("build.sh"))
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{lang}: the generated project does not build:\n{}\n{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
        let (ok, report) = kit(&dir.join(format!("{name}.wasm")), &dir.join("fixtures"));
        assert!(
            ok,
            "{lang}: {}",
            serde_json::to_string_pretty(&report).unwrap()
        );
        assert_eq!(report["passed"], 3, "{lang}");
    }
}

/// The usual JavaScript mistake — a plugin built with `fetch()` support imports `wasi:http` —
/// is refused at load time in one line that names the import and says how to fix it.
#[test]
fn a_javascript_plugin_importing_wasi_http_is_refused_with_the_fix() {
    build("javascript"); // installs componentize-js in the example
    let dir = examples().join("javascript");
    let script = dir.join(".test-build-with-http.mjs");
    let text = std::fs::read_to_string(dir.join("build.mjs"))
        .unwrap()
        .replace(
            r#"disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],"#,
            "disableFeatures: [],",
        );
    assert!(text.contains("disableFeatures: [],"));
    std::fs::write(&script, text).unwrap();
    let out = std::env::temp_dir().join(format!("pii-mask-http-{}.wasm", std::process::id()));
    let built = Command::new("node")
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap();
    std::fs::remove_file(&script).unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let checked = Command::new(binary())
        .args(["plugin", "test"])
        .arg(&out)
        .arg("--fixtures")
        .arg(examples().join("fixtures"))
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(line.contains("`wasi:http/"), "{line}");
    assert!(line.contains("--disable http fetch-event"), "{line}");
}
