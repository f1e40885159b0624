//! Command-line interface of `bridge-host`.

pub mod conformance;
pub mod migrate;
pub mod plugin;
pub mod replay;
pub mod scaffold;
pub mod top;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A WebAssembly-extensible bridge between Apache Kafka and RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "bridge-host", version, about)]
pub struct Cli {
    /// The bridge configuration (same as `run --config`).
    #[arg(long, short = 'c', global = false)]
    pub config: Option<PathBuf>,

    /// Log lines as human-readable text or as one JSON object per line (default: the
    /// configuration's `log_format`, else text).
    #[arg(long, global = true, value_enum, env = "BRIDGE_LOG_FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,

    /// What to do; without a subcommand, run the bridge with `--config`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The configuration file this invocation runs, if it runs one.
    pub fn running_config(&self) -> Option<&std::path::Path> {
        match &self.command {
            Some(Command::Run { config }) => Some(config),
            None => self.config.as_deref(),
            _ => None,
        }
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every mapping in the configuration (the default command).
    Run {
        /// The bridge configuration.
        #[arg(long, short = 'c')]
        config: PathBuf,
    },
    /// Validate the configuration and load every plugin; list every problem.
    Check {
        /// The bridge configuration.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Also connect to every broker and check that topics, queues and exchanges exist.
        #[arg(long)]
        connect: bool,
    },
    /// Write a `bridge.toml` equivalent to the Python replicators' Helm values (several files
    /// merge as Helm merges them; later ones win).
    Migrate {
        /// Values files, e.g. `values.yaml values-production.yaml`.
        #[arg(required = true)]
        values: Vec<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// A live view of a running bridge (from its health listener), refreshed every second.
    Top {
        /// The bridge's health listener.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Milliseconds between refreshes.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
    },
    /// Send dead letters back (to their mapping's target, their source, or a given target)
    /// once their cause is fixed.
    Replay(replay::ReplayArgs),
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// Plugin tools.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin on one message read as JSON and print its verdict as JSON.
    Run(plugin::RunArgs),
    /// Show what a component exports and imports.
    Inspect(plugin::InspectArgs),
    /// Run a plugin on a directory of cases and check its verdicts and outputs.
    Test(conformance::TestArgs),
    /// Create a plugin project (source, build script, README, conformance cases).
    New(scaffold::NewArgs),
}

impl PluginCommand {
    /// Runs the command; the returned string is printed on stdout.
    pub fn execute(self) -> anyhow::Result<String> {
        match self {
            PluginCommand::Run(args) => plugin::run(args),
            PluginCommand::Inspect(args) => plugin::inspect(args),
            PluginCommand::Test(args) => conformance::run(args),
            PluginCommand::New(args) => scaffold::run(args),
        }
    }
}
