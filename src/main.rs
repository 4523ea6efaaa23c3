//! The command-line runner: one drain, configured from the environment (flags override).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use github_audit_sekoia::config::Config;
use github_audit_sekoia::connector::{RunError, run_once};
use github_audit_sekoia::drain::Summary;

#[derive(Parser)]
#[command(version, about = "Forwards GitHub audit logs to a Sekoia.io intake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drain new audit-log events into the intake once, then print a JSON summary.
    Run(RunArgs),
}

/// Each flag overrides the environment variable named in its help. Secrets come from the
/// environment only, so they never show in a process list.
#[derive(clap::Args)]
struct RunArgs {
    /// GITHUB_ORG
    #[arg(long)]
    org: Option<String>,
    /// GITHUB_API_URL
    #[arg(long)]
    api_url: Option<String>,
    /// GITHUB_INCLUDE: web, git or all
    #[arg(long)]
    include: Option<String>,
    /// GITHUB_PHRASE
    #[arg(long)]
    phrase: Option<String>,
    /// SEKOIA_INTAKE_URL
    #[arg(long)]
    intake_url: Option<String>,
    /// STATE_DIR
    #[arg(long)]
    state_dir: Option<String>,
    /// FIRST_RUN_LOOKBACK, e.g. 24h or 7d
    #[arg(long)]
    first_run_lookback: Option<String>,
    /// LATE_ARRIVAL_WINDOW, e.g. 5m
    #[arg(long)]
    late_arrival_window: Option<String>,
    /// MAX_RUN_SECONDS
    #[arg(long)]
    max_run_seconds: Option<String>,
    /// Print the events as NDJSON instead of posting them; the cursor does not move.
    #[arg(long)]
    dry_run: bool,
}

impl RunArgs {
    fn overrides(&self) -> HashMap<&'static str, String> {
        [
            ("GITHUB_ORG", &self.org),
            ("GITHUB_API_URL", &self.api_url),
            ("GITHUB_INCLUDE", &self.include),
            ("GITHUB_PHRASE", &self.phrase),
            ("SEKOIA_INTAKE_URL", &self.intake_url),
            ("STATE_DIR", &self.state_dir),
            ("FIRST_RUN_LOOKBACK", &self.first_run_lookback),
            ("LATE_ARRIVAL_WINDOW", &self.late_arrival_window),
            ("MAX_RUN_SECONDS", &self.max_run_seconds),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Command::Run(args) = Cli::parse().command;
    let overrides = args.overrides();
    let config = match Config::load(|name| {
        overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    match run_once(&config, args.dry_run).await {
        Ok(summary) => print_summary(&summary, ExitCode::SUCCESS),
        Err(RunError::Config(err)) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
        Err(RunError::Drain(failure)) => print_summary(&failure.summary, ExitCode::FAILURE),
    }
}

fn print_summary(summary: &Summary, code: ExitCode) -> ExitCode {
    match serde_json::to_string(summary) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("cannot render the summary: {err}"),
    }
    code
}
