//! The `bridge-host` binary.

use std::process::ExitCode;

use bridge_host::cli::{Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    bridge_host::telemetry::init_logging();
    let result = match cli.command {
        Some(Command::Plugin(cmd)) => cmd.execute().map(|out| println!("{out}")),
        None => Err(anyhow::anyhow!(
            "no command given: see `bridge-host --help`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text.replace('\n', " ")
}
