//! `bridge-host plugin test`: the conformance kit. Runs a plugin on a directory of cases —
//! each an input message, a plugin configuration and what must come out — and reports every
//! pass and failure with a readable difference. Plugin authors run it in their own CI.
//!
//! A case is a `*.json` file:
//!
//! ```json
//! {
//!   "description": "masks nested fields",
//!   "config": { "fields": ["email", "card"], "route_field": "region" },
//!   "input": { "payload": "{\"email\":\"a@b.c\",\"region\":\"eu\"}" },
//!   "expect": {
//!     "verdict": "forward",
//!     "messages": [ { "payload": { "email": "***", "region": "eu" },
//!                     "target": { "routing_key": "eu", "topic": "eu" } } ]
//!   }
//! }
//! ```
//!
//! `expect` holds one of: `verdict` (`forward`, `fan-out`, `drop`, `dead-letter`) with optional
//! `messages` (each compared field by field with the output: only the fields given count; a
//! `payload` given as a JSON object or array is compared with the output payload parsed as
//! JSON, so key order and spacing do not matter) and optional `reason_contains` (dead
//! letters); `failure`, the failure kind the call must end in (`plugin-trap`, …); or
//! `init_error_contains`, text the plugin's `init` must reject the configuration with.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plugin::RunOutput;
use crate::message_json::JsonMessage;
use crate::plugin::{LoadError, PluginRuntime, PluginSpec, RuntimeOptions};

/// Arguments of `plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// The directory of cases (`*.json`).
    #[arg(long)]
    pub fixtures: PathBuf,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    description: Option<String>,
    /// The plugin's configuration, as in `bridge.toml` (nested tables and lists flatten the
    /// same way).
    #[serde(default)]
    config: serde_json::Map<String, Value>,
    input: JsonMessage,
    expect: Expect,
}

/// What must come out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Value>>,
    #[serde(default)]
    reason_contains: Option<String>,
    #[serde(default)]
    failure: Option<String>,
    #[serde(default)]
    init_error_contains: Option<String>,
}

/// The result of one case.
#[derive(Debug, Serialize)]
struct CaseResult {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    passed: bool,
    /// What differed, one line each.
    problems: Vec<String>,
}

/// The whole report (`--json`).
#[derive(Debug, Serialize)]
struct Report {
    plugin: String,
    fixtures: String,
    passed: usize,
    failed: usize,
    cases: Vec<CaseResult>,
}

/// Runs every case; `Ok` with the report when all pass, else the report is printed and the
/// error counts the failures.
pub fn run(args: TestArgs) -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.fixtures)
        .with_context(|| format!("cannot read the fixtures `{}`", args.fixtures.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no `*.json` cases in `{}`", args.fixtures.display());
    }
    let cache = std::env::temp_dir().join("bridge-host-plugin-cache");
    let runtime = PluginRuntime::new(RuntimeOptions {
        cache_dir: Some(cache),
    })?;
    let name = args.plugin.file_stem().map_or_else(
        || "plugin".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let plugin = runtime.load(&PluginSpec::new(&name, &args.plugin))?;
    let cases: Vec<CaseResult> = files
        .iter()
        .map(|file| {
            let case_name = file
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            match read_case(file) {
                Ok(case) => {
                    let problems = check(&plugin, &case);
                    CaseResult {
                        name: case_name,
                        description: case.description,
                        passed: problems.is_empty(),
                        problems,
                    }
                }
                Err(e) => CaseResult {
                    name: case_name,
                    description: None,
                    passed: false,
                    problems: vec![format!("{e:#}")],
                },
            }
        })
        .collect();
    let passed = cases.iter().filter(|c| c.passed).count();
    let report = Report {
        plugin: args.plugin.display().to_string(),
        fixtures: args.fixtures.display().to_string(),
        passed,
        failed: cases.len() - passed,
        cases,
    };
    let text = if args.json {
        serde_json::to_string_pretty(&report)?
    } else {
        render(&report)
    };
    if report.failed > 0 {
        println!("{text}");
        bail!(
            "{} of {} cases failed for `{}`",
            report.failed,
            report.failed + report.passed,
            report.plugin
        );
    }
    Ok(text)
}

fn render(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.cases {
        let label = if c.passed { "ok  " } else { "FAIL" };
        let about = c
            .description
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        out.push_str(&format!("{label} {}{about}\n", c.name));
        for p in &c.problems {
            out.push_str(&format!("       {p}\n"));
        }
    }
    out.push_str(&format!(
        "{} passed, {} failed ({})",
        report.passed, report.failed, report.plugin
    ));
    out
}

fn read_case(file: &Path) -> anyhow::Result<Case> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read `{}`", file.display()))?;
    let case: Case = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a valid case", file.display()))?;
    let e = &case.expect;
    let given = [
        e.verdict.is_some(),
        e.failure.is_some(),
        e.init_error_contains.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        bail!(
            "`{}`: `expect` needs exactly one of `verdict`, `failure`, `init_error_contains`",
            file.display()
        );
    }
    Ok(case)
}

/// The plugin configuration as `bridge.toml` would give it: nested tables and lists
/// flattened with dots, scalars as text.
fn flat_config(config: &serde_json::Map<String, Value>) -> anyhow::Result<Vec<(String, String)>> {
    let table: toml::Value = toml::Value::try_from(config)
        .context("`config` cannot be expressed in TOML (nulls are not allowed)")?;
    Ok(crate::config::flatten_plugin_config(&table))
}

/// Every difference between what the case expects and what the plugin did.
fn check(plugin: &std::sync::Arc<crate::plugin::LoadedPlugin>, case: &Case) -> Vec<String> {
    let config = match flat_config(&case.config) {
        Ok(c) => c,
        Err(e) => return vec![format!("{e:#}")],
    };
    let expect = &case.expect;
    let instance = plugin.with_config(config).instantiate();
    let mut instance = match (instance, &expect.init_error_contains) {
        (Err(LoadError::InitRejected { reason, .. }), Some(want)) => {
            return if reason.contains(want.as_str()) {
                Vec::new()
            } else {
                vec![format!(
                    "init rejected the configuration with {reason:?}, expected it to contain {want:?}"
                )]
            };
        }
        (Ok(_), Some(want)) => {
            return vec![format!(
                "init accepted the configuration; expected it to be rejected with {want:?}"
            )];
        }
        (Err(e), _) => return vec![format!("cannot start the plugin: {e}")],
        (Ok(i), None) => i,
    };
    let msg = match case.input.clone().into_message() {
        Ok(m) => m,
        Err(e) => {
            return vec![format!(
                "the input message is invalid: {}",
                crate::pipeline::error_text(&e)
            )];
        }
    };
    let outcome = instance.process(msg);
    match (outcome, &expect.failure) {
        (Err(e), Some(kind)) if e.kind.as_str() == kind => Vec::new(),
        (Err(e), Some(kind)) => vec![format!(
            "failed with `{}` ({}), expected `{kind}`",
            e.kind, e.detail
        )],
        (Err(e), None) => vec![format!("failed with `{}`: {}", e.kind, e.detail)],
        (Ok(outcome), Some(kind)) => vec![format!(
            "returned {}, expected the call to fail with `{kind}`",
            verdict_of(&RunOutput::from_outcome(outcome))
        )],
        (Ok(outcome), None) => compare_output(&RunOutput::from_outcome(outcome), expect),
    }
}

fn verdict_of(output: &RunOutput) -> String {
    serde_json::to_value(output)
        .ok()
        .and_then(|v| v.get("verdict").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

fn compare_output(output: &RunOutput, expect: &Expect) -> Vec<String> {
    let actual = serde_json::to_value(output).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    let verdict = actual
        .get("verdict")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(want) = &expect.verdict
        && want != verdict
    {
        let reason = actual
            .get("reason")
            .and_then(Value::as_str)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        problems.push(format!(
            "verdict: expected `{want}`, got `{verdict}`{reason}"
        ));
        return problems;
    }
    if let Some(want) = &expect.reason_contains {
        let reason = actual.get("reason").and_then(Value::as_str).unwrap_or("");
        if !reason.contains(want.as_str()) {
            problems.push(format!(
                "reason: expected it to contain {want:?}, got {reason:?}"
            ));
        }
    }
    if let Some(want) = &expect.messages {
        let got = actual
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if got.len() != want.len() {
            problems.push(format!(
                "messages: expected {}, got {}",
                want.len(),
                got.len()
            ));
        }
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            subset(&format!("messages[{i}]"), w, g, &mut problems);
        }
    }
    problems
}

/// Compares the fields `want` gives with `got`; a `payload` given as an object or array is
/// compared with the payload parsed as JSON.
fn subset(path: &str, want: &Value, got: &Value, problems: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) if !path.ends_with(".payload") => {
            for (k, wv) in w {
                let sub = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => subset(&sub, wv, gv, problems),
                    None => problems.push(format!("{sub}: expected {wv}, missing")),
                }
            }
        }
        (Value::Object(_) | Value::Array(_), Value::String(text)) if path.ends_with(".payload") => {
            match serde_json::from_str::<Value>(text) {
                Ok(parsed) if parsed == *want => {}
                Ok(parsed) => problems.push(format!("{path}: expected {want}, got {parsed}")),
                Err(_) => problems.push(format!("{path}: expected JSON {want}, got {got}")),
            }
        }
        _ if want == got => {}
        _ => problems.push(format!("{path}: expected {want}, got {got}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_compare_as_json_and_only_given_fields_count() {
        let mut problems = Vec::new();
        let got = json!({"payload": "{\"b\": 2, \"a\": 1}", "headers": [["h", "v"]]});
        subset(
            "m",
            &json!({"payload": {"a": 1, "b": 2}}),
            &got,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        subset("m", &json!({"payload": {"a": 2}}), &got, &mut problems);
        assert_eq!(
            problems,
            vec![r#"m.payload: expected {"a":2}, got {"a":1,"b":2}"#.to_string()]
        );
    }

    #[test]
    fn config_flattens_as_the_configuration_file_does() {
        let config = json!({"fields": ["email", "card"], "route": {"field": "region"}, "n": 3});
        let flat = flat_config(config.as_object().unwrap()).unwrap();
        assert!(flat.contains(&("fields.0".to_string(), "email".to_string())));
        assert!(flat.contains(&("route.field".to_string(), "region".to_string())));
        assert!(flat.contains(&("n".to_string(), "3".to_string())));
    }
}
