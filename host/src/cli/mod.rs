//! Command-line interface of `bridge-host`.

pub mod plugin;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A WebAssembly-extensible bridge between Apache Kafka and RabbitMQ.
#[derive(Debug, Parser)]
#[command(name = "bridge-host", version, about)]
pub struct Cli {
    /// The bridge configuration (same as `run --config`).
    #[arg(long, short = 'c', global = false)]
    pub config: Option<PathBuf>,

    /// What to do; without a subcommand, run the bridge with `--config`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}
