//! The documentation against the code: the configuration reference lists exactly the keys the
//! configuration types accept, and every `toml` example in the docs loads.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bridge_host::config::BridgeConfig;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A configuration with a marker in every table; one marker at a time becomes an unknown key
/// (`@name,` inside inline tables, `@name` on a line of its own in the others).
const PROBE: &str = r#"@top
[kafka.k]
bootstrap_servers = "h:9092"
@kafka
sasl = { @sasl, username = "u", password = "p" }
tls = { @tls, ca_file = "c" }

[rabbitmq.r]
url = "amqp://h/%2f"
@rabbitmq

[plugins.p]
path = "p.wasm"
@plugin
limits = { @limits, timeout_ms = 5 }

[[mapping]]
name = "m"
@mapping
source = { @source, kafka = "k", topics = ["t"] }
target = { @target, rabbitmq = "r", exchange = "e" }
dedup = { @dedup, by = "coordinates" }
declare = { @declare, partitions = 1 }
breaker = { @breaker, failures = 1 }

[tenants.t]
@tenant
allow = { @allow, topics = ["*"] }

[bridge]
@bridge
"#;

/// Reference headings and the marker of the table each documents.
const SECTIONS: &[(&str, &str)] = &[
    ("## Top level", "top"),
    ("## `[bridge]`", "bridge"),
    ("## `[kafka.NAME]`", "kafka"),
    ("### `sasl`", "sasl"),
    ("### `tls`", "tls"),
    ("## `[rabbitmq.NAME]`", "rabbitmq"),
    ("## `[plugins.NAME]`", "plugin"),
    ("### `limits`", "limits"),
    ("## `[[mapping]]`", "mapping"),
    ("### `source`", "source"),
    ("### `target` and `dead_letter`", "target"),
    ("### `dedup`", "dedup"),
    ("### `declare`", "declare"),
    ("### `breaker`", "breaker"),
    ("## `[tenants.NAME]`", "tenant"),
    ("### `allow`", "allow"),
];

/// The keys the table marked `marker` accepts, from the error an unknown key there gets.
fn accepted_keys(marker: &str) -> BTreeSet<String> {
    let mut text = PROBE.to_string();
    for (_, m) in SECTIONS {
        let (inline, line) = (format!("@{m},"), format!("@{m}"));
        let (inline_by, line_by) = if *m == marker {
            ("zzz_unknown = 1,", "zzz_unknown = 1")
        } else {
            ("", "")
        };
        text = text.replace(&inline, inline_by).replace(&line, line_by);
    }
    let err = toml::from_str::<BridgeConfig>(&text)
        .err()
        .unwrap_or_else(|| panic!("an unknown key in `{marker}` was accepted"))
        .to_string();
    assert!(
        err.contains("zzz_unknown"),
        "`{marker}`: not an unknown-key error: {err}"
    );
    let expected = err
        .split("expected")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of fields in: {err}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The keys the reference documents under `heading`: the first column of its table, up to the
/// next heading of any level.
fn documented_keys(doc: &str, heading: &str) -> BTreeSet<String> {
    let mut lines = doc.lines().skip_while(|l| *l != heading);
    assert!(
        lines.next().is_some(),
        "no `{heading}` in docs/configuration.md"
    );
    lines
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_reference_documents_every_key_and_only_real_ones() {
    let doc = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap();
    let mut problems = Vec::new();
    for (heading, marker) in SECTIONS {
        let accepted = accepted_keys(marker);
        assert!(!accepted.is_empty(), "{heading}: no keys found");
        let documented = documented_keys(&doc, heading);
        for key in accepted.difference(&documented) {
            problems.push(format!("{heading}: `{key}` is accepted but not documented"));
        }
        for key in documented.difference(&accepted) {
            problems.push(format!("{heading}: `{key}` is documented but not accepted"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Markdown files whose `toml` blocks are bridge configurations.
fn documents() -> Vec<PathBuf> {
    let root = repo();
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "examples", "plugins", "deploy/helm"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p.clone());
            }
            let readme = p.join("README.md");
            if readme.is_file() {
                files.push(readme);
            }
        }
    }
    files
}

fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some((i + 2, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A block without mappings is a fragment: it loads beside a minimal mapping of its own.
const FRAGMENT_MAPPING: &str = r#"
[kafka.docs-fragment]
bootstrap_servers = "127.0.0.1:9092"

[[mapping]]
name = "docs-fragment"
source = { kafka = "docs-fragment", topics = ["in"] }
target = { kafka = "docs-fragment", topic = "out" }
"#;

fn load(path: &Path, text: &str) -> Result<BridgeConfig, String> {
    // Environment references stand for what they name: a URL or a secret.
    let env = |name: &str| {
        Some(if name.ends_with("URL") {
            "amqp://bridge:secret@127.0.0.1:5672/%2f".to_string()
        } else {
            "secret".to_string()
        })
    };
    BridgeConfig::parse(path, text, &env).map_err(|e| e.to_string())
}

#[test]
fn every_toml_example_in_the_docs_loads() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, block) in toml_blocks(&text) {
            let config = if block.contains("[[mapping]]") {
                block.clone()
            } else {
                format!("{block}{FRAGMENT_MAPPING}")
            };
            if let Err(e) = load(&file.with_file_name("bridge.toml"), &config) {
                problems.push(format!("{}:{line}: {e}", file.display()));
            }
            checked += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    assert!(checked >= 8, "only {checked} examples found");
}

#[test]
fn the_shipped_example_configs_load() {
    for dir in [
        "examples/quickstart",
        "examples/kafka-kafka",
        "examples/kafka-rabbitmq",
    ] {
        let path = repo().join(dir).join("bridge.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        load(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn the_operations_page_lists_every_metric() {
    let doc = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    use bridge_host::telemetry::metrics::{
        ClusterLabel, Metrics, PluginLabel, ReloadLabel, ResultLabel,
    };
    use bridge_host::telemetry::{Counters, Event};
    // A family is shown once it has a series: make one of each.
    let metrics = Metrics::new();
    let c = Counters::new(&metrics, "m", "t");
    let parts = [("t".to_string(), 0)];
    c.emit(Event::Failed {
        kind: "plugin-trap",
    });
    c.emit(Event::PartitionsAssigned(&parts));
    c.emit(Event::Lag(&[("t".to_string(), 0, 1)]));
    c.plugin_timer("p");
    let _ = metrics.connected.get_or_create(&Metrics::mapping("m", "t"));
    let _ = metrics.cluster_reachable.get_or_create(&ClusterLabel {
        cluster: "k".into(),
    });
    let _ = metrics.plugin_info.get_or_create(&PluginLabel {
        plugin: "p".into(),
        version: "1.0.0".into(),
        contract: "0.1.0".into(),
        digest: "d".into(),
    });
    let _ = metrics.plugin_reloads.get_or_create(&ReloadLabel {
        plugin: "p".into(),
        result: "applied".into(),
    });
    let _ = metrics.config_reloads.get_or_create(&ResultLabel {
        result: "applied".into(),
    });
    let names: BTreeSet<String> = metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 19, "{names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| {
            let shown = [n.to_string(), format!("{n}_total")];
            !shown.iter().any(|s| doc.contains(&format!("`{s}`")))
        })
        .collect();
    assert!(missing.is_empty(), "not in docs/operations.md: {missing:?}");
}
