//! `httpower`: run the demo, send resilient requests, check configuration files.
//!
//! ```text
//! httpower demo                      # a flaky local upstream, clients from examples/httpower.toml
//! httpower request GET https://api.example.com/users/1 -H 'accept: application/json'
//! httpower check --config httpower.toml
//! httpower state --config httpower.toml --limiter login_ip --key 203.0.113.7
//! httpower reset --config httpower.toml --limiter login_ip --key 203.0.113.7
//! ```

mod check;
mod demo;
mod logging;
mod output;
mod request;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Resilient HTTP from the command line.
#[derive(Debug, Parser)]
#[command(name = "httpower", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a bounded workload against an embedded flaky upstream and prints what the
    /// policies did (retries, breaker transitions, limiter waits, latency).
    Demo(demo::DemoArgs),
    /// Sends one request through the policies; prints status, headers and body on
    /// stdout, retries and waits on stderr.
    Request(request::RequestArgs),
    /// Validates a configuration file and prints the effective configuration, with
    /// units and with secrets redacted.
    Check {
        /// The configuration file (default: $HTTPOWER_CONFIG, then ./httpower.toml).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Shows the limiter state a configuration's stores hold: store health, and per
    /// named limiter the identifiers it tracks (Redis) or one --key's remaining quota.
    State(state::StateArgs),
    /// Drops a limiter's state in its store: one --key, or every key of the limiter.
    Reset(state::ResetArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check::run(config.as_deref()),
        Command::Demo(args) => {
            runtime().map_or_else(|code| code, |rt| rt.block_on(demo::run(args)))
        }
        Command::Request(args) => {
            runtime().map_or_else(|code| code, |rt| rt.block_on(request::run(args)))
        }
        Command::State(args) => {
            runtime().map_or_else(|code| code, |rt| rt.block_on(state::run_state(args)))
        }
        Command::Reset(args) => {
            runtime().map_or_else(|code| code, |rt| rt.block_on(state::run_reset(args)))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| output::fail(&format!("cannot start the async runtime: {err}")))
}
