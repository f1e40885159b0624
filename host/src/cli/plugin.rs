//! `bridge-host plugin run` and `bridge-host plugin inspect`.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use crate::message_json::JsonMessage;
use crate::plugin::{
    DeadLetterTarget, Decision, Failure, FailureKind, Outcome, PluginRuntime, PluginSpec,
    RuntimeOptions,
};

/// Arguments of `plugin run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// A configuration entry passed to `init`; repeatable.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// The message as JSON: a file, or `-` for standard input.
    #[arg(long, short = 'i', default_value = "-")]
    pub input: String,
    /// Call the dead-letter policy instead of the transform, with this failure kind
    /// (`plugin-trap`, `target-rejected`, …).
    #[arg(long, value_name = "KIND")]
    pub failure: Option<String>,
    /// The attempt number given to the dead-letter policy.
    #[arg(long, default_value_t = 1)]
    pub attempt: u32,
    /// The error text given to the dead-letter policy.
    #[arg(long, default_value = "")]
    pub error: String,
    /// Time limit per call, in milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Memory limit, in MiB.
    #[arg(long)]
    pub memory_mib: Option<u64>,
}

/// Arguments of `plugin inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component (`.wasm`).
    pub plugin: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The JSON printed by `plugin run`.
#[derive(Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub(super) enum RunOutput {
    Forward {
        messages: Vec<JsonMessage>,
    },
    FanOut {
        messages: Vec<JsonMessage>,
    },
    Drop,
    DeadLetter {
        reason: String,
        messages: Vec<JsonMessage>,
    },
    Retry {
        after_ms: u64,
    },
    #[serde(rename = "dead-letter")]
    PolicyDeadLetter {
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<serde_json::Value>,
    },
}

/// `plugin run`: the verdict as JSON.
pub fn run(args: RunArgs) -> anyhow::Result<String> {
    let mut spec = PluginSpec::new(plugin_name(&args.plugin), &args.plugin);
    for entry in &args.config {
        let Some((k, v)) = entry.split_once('=') else {
            bail!("`--config {entry}` is not KEY=VALUE");
        };
        spec = spec.with_config(k, v);
    }
    if let Some(t) = args.timeout_ms {
        spec.limits.timeout_ms = t;
    }
    if let Some(m) = args.memory_mib {
        spec.limits.memory_mib = m;
    }
    let failure = args
        .failure
        .as_deref()
        .map(|k| {
            FailureKind::parse(k).with_context(|| {
                format!(
                    "unknown failure kind `{k}` (expected one of: {})",
                    FailureKind::ALL.map(FailureKind::as_str).join(", ")
                )
            })
        })
        .transpose()?;
    let input = read_input(&args.input)?;
    let json: JsonMessage = serde_json::from_str(&input).with_context(|| {
        format!(
            "the input message is not valid message JSON ({})",
            args.input
        )
    })?;
    let msg = json
        .into_message()
        .map_err(|e| anyhow::Error::new(e).context("the input message is invalid"))?;

    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let plugin = runtime.load(&spec)?;
    let mut instance = plugin.instantiate()?;
    let output = match failure {
        Some(kind) => {
            let failure = Failure {
                kind,
                plugin: None,
                message: args.error.clone(),
                attempt: args.attempt,
            };
            match instance.decide(msg, &failure)? {
                Decision::Retry(after_ms) => RunOutput::Retry { after_ms },
                Decision::Drop => RunOutput::Drop,
                Decision::DeadLetter(d) => RunOutput::PolicyDeadLetter {
                    reason: d.reason,
                    target: d.target.map(|t| match t {
                        DeadLetterTarget::Kafka(topic) => serde_json::json!({ "topic": topic }),
                        DeadLetterTarget::Amqp(a) => {
                            serde_json::json!({ "exchange": a.exchange, "routing_key": a.routing_key })
                        }
                    }),
                },
            }
        }
        None => {
            if !plugin.kinds().contains(crate::plugin::Kind::Transform) {
                bail!(
                    "plugin `{}` is a dead-letter policy only: pass `--failure KIND` to call it",
                    args.plugin.display()
                );
            }
            RunOutput::from_outcome(instance.process(msg)?)
        }
    };
    Ok(serde_json::to_string_pretty(&output)?)
}

impl RunOutput {
    /// A transform's outcome as printed.
    pub(super) fn from_outcome(outcome: Outcome) -> Self {
        let to_json =
            |m: &[crate::plugin::Message]| m.iter().map(JsonMessage::from_message).collect();
        match outcome {
            Outcome::Forward(m) if m.len() == 1 => RunOutput::Forward {
                messages: to_json(&m),
            },
            Outcome::Forward(m) => RunOutput::FanOut {
                messages: to_json(&m),
            },
            Outcome::Drop => RunOutput::Drop,
            Outcome::DeadLetter { message, reason } => RunOutput::DeadLetter {
                reason,
                messages: to_json(std::slice::from_ref(&*message)),
            },
        }
    }
}

/// `plugin inspect`: the component's exports and imports, as text or JSON.
pub fn inspect(args: InspectArgs) -> anyhow::Result<String> {
    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let info = runtime.inspect(&args.plugin)?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&info)?);
    }
    let list = |items: &[String]| {
        if items.is_empty() {
            "  (none)".to_string()
        } else {
            items
                .iter()
                .map(|i| format!("  {i}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    Ok(format!(
        "file: {}\nsize: {} bytes\nversion: {}\nkinds: {}\nbridge:plugin version: {}\nexports:\n{}\nimports:\n{}{}",
        args.plugin.display(),
        info.size,
        info.version.as_deref().unwrap_or("not declared"),
        if info.kinds.is_empty() {
            "none (not a bridge plugin)".to_string()
        } else {
            info.kinds.join(", ")
        },
        info.contract_version.as_deref().unwrap_or("none"),
        list(&info.exports),
        list(&info.imports),
        if info.unsupported_imports.is_empty() {
            String::new()
        } else {
            format!(
                "\nnot provided by this host:\n{}",
                list(&info.unsupported_imports)
            )
        }
    ))
}

fn plugin_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string())
}

fn read_input(input: &str) -> anyhow::Result<String> {
    if input == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the message from standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(input)
            .with_context(|| format!("cannot read the message from `{input}`"))
    }
}
