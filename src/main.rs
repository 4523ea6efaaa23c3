//! The command-line runner: configured from the environment (flags override), one drain per
//! `run`, or a `backfill` that loops until its range is complete.

mod cli_streams;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use github_audit_sekoia::aws_calls;
use github_audit_sekoia::budget::Budget;
use github_audit_sekoia::config::{Config, PushConfig, Shared, defaults};
use github_audit_sekoia::connector::{Connector, RunError, RunRequest, TimeRange};
use github_audit_sekoia::drain::{BackfillStatus, Summary};
use github_audit_sekoia::forwarder::{ForwardError, Forwarder};
use github_audit_sekoia::metrics::emf_line;
use github_audit_sekoia::on_lambda::{LambdaBackfill, OnLambdaError};
use github_audit_sekoia::push::{PushProgress, PushSummary};
use github_audit_sekoia::summary::RunReport;
use github_audit_sekoia::summary::StopReason;
use github_audit_sekoia::timefmt::now_ms;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(version, about = "Forwards GitHub audit logs to a Sekoia.io intake")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drain new audit-log events into the intake once, then print a JSON summary.
    Run {
        #[command(flatten)]
        settings: Settings,
        /// Print the events as NDJSON instead of posting them; the cursor does not move.
        #[arg(long)]
        dry_run: bool,
        /// Also print the run's figures as a CloudWatch Embedded Metric Format line (before the
        /// summary), for a CloudWatch agent or log shipper to turn into metrics.
        #[arg(long)]
        emf: bool,
    },
    /// Check each link a run depends on (configuration, secret, GitHub credential and scope,
    /// target, rate budget, intake key, cursor store) without sending any event. Exit 0 when
    /// all pass, 1 otherwise.
    Check {
        #[command(flatten)]
        settings: Settings,
        /// Print the report as one JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Manage the enterprise's audit-log streaming configurations (GITHUB_ENTERPRISE, classic token).
    Streams {
        #[command(flatten)]
        settings: Settings,
        #[command(subcommand)]
        action: cli_streams::StreamAction,
    },
    /// Push mode from the command line: forward every object of the stream's S3 bucket not
    /// forwarded yet (standard AWS configuration; AWS_ENDPOINT_URL honoured), then print a JSON
    /// summary. Exit 0 when every object was forwarded or skipped, 1 when some failed.
    ForwardS3 {
        /// The bucket GitHub streams the audit log to [env STREAM_BUCKET]
        #[arg(long)]
        bucket: Option<String>,
        /// Only the objects whose keys start with this, e.g. 2026/11/ [default: all]
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, help = format!("Sekoia.io intake base URL for your region [env SEKOIA_INTAKE_URL; default {}]", defaults::INTAKE_URL))]
        intake_url: Option<String>,
        #[arg(long, help = format!("Where the record of forwarded objects lives, unless CURSOR_TABLE names a DynamoDB table [env STATE_DIR; default {}]", defaults::STATE_DIR))]
        state_dir: Option<String>,
        #[arg(long, help = format!("GitHub repeats events within this horizon of the newest; they are recognised and skipped [env STREAM_DEDUPE_WINDOW; default {}]", defaults::STREAM_DEDUPE_WINDOW))]
        dedupe_window: Option<String>,
        /// Also print the run's figures as a CloudWatch Embedded Metric Format line
        #[arg(long)]
        emf: bool,
    },
    /// Every AWS call the stack makes (by this program, by Lambda for it, by the schedules and
    /// by GitHub's stream) and the IAM actions AWS authorizes it by: what the template grants.
    Permissions {
        /// One JSON array instead of a Markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Deliver a past time range again, under its own cursor, until it is complete.
    Backfill {
        #[command(flatten)]
        settings: Settings,
        /// Start of the range, RFC 3339 UTC (2026-11-01T00:00:00Z).
        #[arg(long)]
        since: String,
        /// End of the range (exclusive), RFC 3339 UTC.
        #[arg(long)]
        until: String,
        /// Have this deployed function (name or ARN) run it, invoked asynchronously run after
        /// run, and follow it here; with --target on a stack of several targets. Needs only
        /// lambda:InvokeFunction; AWS is reached the standard way.
        #[arg(long, value_name = "FUNCTION")]
        on_lambda: Option<String>,
    },
}

/// Each flag overrides the environment variable named in its help. Secrets come from the
/// environment only, so they never show in a process list.
#[derive(clap::Args)]
struct Settings {
    /// Organization whose audit log to drain [env GITHUB_ORG; required, or --enterprise, or --targets]
    #[arg(long, global = true)]
    org: Option<String>,
    /// Several targets, comma-separated: org:NAME or enterprise:SLUG, each optionally =SECRET_ID [env TARGETS; default none]
    #[arg(long, global = true)]
    targets: Option<String>,
    /// Which of the targets this command is for (org:NAME); needed when there are several, except for check [default: the only one]
    #[arg(long, global = true)]
    target: Option<String>,
    /// Enterprise (slug or id) to drain instead, with a classic token [env GITHUB_ENTERPRISE]
    #[arg(long, global = true)]
    enterprise: Option<String>,
    #[arg(long, global = true, help = format!("GitHub API base: GHE.com https://api.SUB.ghe.com, GHES https://HOST/api/v3 [env GITHUB_API_URL; default {}]", defaults::GITHUB_API_URL))]
    api_url: Option<String>,
    #[arg(long, global = true, help = format!("Which events: web, git or all, each with its own cursor [env GITHUB_INCLUDE; default {}]", defaults::INCLUDE))]
    include: Option<String>,
    /// Extra search qualifiers ANDed to the connector's own, e.g. -action:git.fetch [env GITHUB_PHRASE; default none]
    #[arg(long, global = true)]
    phrase: Option<String>,
    #[arg(long, global = true, help = format!("Sekoia.io intake base URL for your region [env SEKOIA_INTAKE_URL; default {}]", defaults::INTAKE_URL))]
    intake_url: Option<String>,
    #[arg(long, global = true, help = format!("Where the cursor files live [env STATE_DIR; default {}]", defaults::STATE_DIR))]
    state_dir: Option<String>,
    #[arg(long, global = true, help = format!("How far back the very first run starts, e.g. 30m, 24h, 7d [env FIRST_RUN_LOOKBACK; default {}]", defaults::FIRST_RUN_LOOKBACK))]
    first_run_lookback: Option<String>,
    #[arg(long, global = true, help = format!("Each stretch is read again (window sweep) at this age, at least 1s [env LATE_ARRIVAL_WINDOW; default {}]", defaults::LATE_ARRIVAL_WINDOW))]
    late_arrival_window: Option<String>,
    #[arg(long, global = true, help = format!("And once more (deep sweep) at this age; 0 turns it off [env LATE_SWEEP_AFTER; default {}]", defaults::LATE_SWEEP_AFTER))]
    late_sweep_after: Option<String>,
    #[arg(long, global = true, help = format!("Time budget of one run, in seconds [env MAX_RUN_SECONDS; default {}]", defaults::MAX_RUN_SECONDS))]
    max_run_seconds: Option<String>,
}

impl Settings {
    fn config(&self) -> Result<Config, github_audit_sekoia::config::ConfigError> {
        let flags: [Flag; 12] = [
            ("GITHUB_ORG", "--org (GITHUB_ORG)", self.org.as_deref()),
            ("TARGETS", "--targets (TARGETS)", self.targets.as_deref()),
            ("GITHUB_ENTERPRISE", "--enterprise (GITHUB_ENTERPRISE)", self.enterprise.as_deref()),
            ("GITHUB_API_URL", "--api-url (GITHUB_API_URL)", self.api_url.as_deref()),
            ("GITHUB_INCLUDE", "--include (GITHUB_INCLUDE)", self.include.as_deref()),
            ("GITHUB_PHRASE", "--phrase (GITHUB_PHRASE)", self.phrase.as_deref()),
            ("SEKOIA_INTAKE_URL", "--intake-url (SEKOIA_INTAKE_URL)", self.intake_url.as_deref()),
            ("STATE_DIR", "--state-dir (STATE_DIR)", self.state_dir.as_deref()),
            ("FIRST_RUN_LOOKBACK", "--first-run-lookback (FIRST_RUN_LOOKBACK)", self.first_run_lookback.as_deref()),
            ("LATE_ARRIVAL_WINDOW", "--late-arrival-window (LATE_ARRIVAL_WINDOW)", self.late_arrival_window.as_deref()),
            ("LATE_SWEEP_AFTER", "--late-sweep-after (LATE_SWEEP_AFTER)", self.late_sweep_after.as_deref()),
            ("MAX_RUN_SECONDS", "--max-run-seconds (MAX_RUN_SECONDS)", self.max_run_seconds.as_deref()),
        ];
        Config::load(flags_then_environment(&flags)).map_err(|err| named_by_flag(err, &flags))
    }

    /// A pull target named by a flag.
    fn names_a_target(&self) -> bool {
        self.org.is_some() || self.targets.is_some() || self.enterprise.is_some()
    }
}

/// A flag: the variable it overrides, how a refused value is named, and its value if given.
type Flag<'a> = (&'static str, &'static str, Option<&'a str>);

/// Each setting from its flag when given, else from the environment.
fn flags_then_environment<'a>(flags: &'a [Flag<'a>]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        let flag = flags.iter().find(|(variable, _, value)| *variable == name && value.is_some());
        flag.and_then(|(_, _, value)| value.map(str::to_owned)).or_else(|| std::env::var(name).ok())
    }
}

/// A refused setting given by a flag is named by the flag (and its variable).
fn named_by_flag(
    mut err: github_audit_sekoia::config::ConfigError,
    flags: &[Flag],
) -> github_audit_sekoia::config::ConfigError {
    if let Some((_, label, _)) = flags.iter().find(|(variable, _, value)| *variable == err.variable && value.is_some())
    {
        err.variable = label;
    }
    err
}

fn permissions(json: bool) -> ExitCode {
    if !json {
        print!("{}", aws_calls::markdown());
        return ExitCode::SUCCESS;
    }
    match serde_json::to_string_pretty(aws_calls::AWS_CALLS) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write the table: {e}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    github_audit_sekoia::logging::init_cli();
    let (outcome, emf) = match Cli::parse().command {
        Command::Run { settings, dry_run, emf } => (run(&settings, dry_run).await, emf),
        Command::Backfill { settings, since, until, on_lambda: Some(function) } => {
            return backfill_on_lambda(&function, settings.target.as_deref(), &since, &until).await;
        }
        Command::Backfill { settings, since, until, on_lambda: None } => {
            (backfill(&settings, &since, &until).await, false)
        }
        Command::Check { settings, json } => return check(&settings, json).await,
        Command::ForwardS3 { bucket, prefix, intake_url, state_dir, dedupe_window, emf } => {
            let flags: [Flag; 4] = [
                ("STREAM_BUCKET", "--bucket (STREAM_BUCKET)", bucket.as_deref()),
                ("SEKOIA_INTAKE_URL", "--intake-url (SEKOIA_INTAKE_URL)", intake_url.as_deref()),
                ("STATE_DIR", "--state-dir (STATE_DIR)", state_dir.as_deref()),
                ("STREAM_DEDUPE_WINDOW", "--dedupe-window (STREAM_DEDUPE_WINDOW)", dedupe_window.as_deref()),
            ];
            return forward_s3(&flags, prefix.as_deref(), emf).await;
        }
        Command::Permissions { json } => return permissions(json),
        Command::Streams { settings, action } => {
            let config =
                settings.config().and_then(|c| c.select(settings.target.as_deref())).map_err(|e| e.to_string());
            return cli_streams::streams(config, action).await;
        }
    };
    match outcome {
        Ok(summary) => print_summary(&summary, emf, ExitCode::SUCCESS),
        Err(RunError::Drain(failure)) => print_summary(&failure.summary, emf, ExitCode::FAILURE),
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
    }
}

/// On a terminal, a line that follows the run page by page; nothing otherwise.
async fn run(settings: &Settings, dry_run: bool) -> Result<Summary, RunError> {
    let config = settings.config()?;
    let budget = Budget::lasting(config.shared.max_run);
    let request =
        RunRequest { target: settings.target.clone(), org: None, enterprise: None, backfill: None, budget, dry_run };
    let connector = Connector::new(config).await?;
    if !std::io::stderr().is_terminal() {
        return connector.run(&request).await;
    }
    let spinner = spinner();
    let ticker = spinner.clone();
    let show = move |summary: &Summary| {
        ticker.set_message(format!(
            "{} events forwarded, {} pages, {} duplicates skipped",
            summary.figures.events_forwarded, summary.pages, summary.figures.duplicates_skipped
        ));
    };
    let outcome = connector.run_watched(&request, Some(&show)).await;
    spinner.finish_and_clear();
    outcome
}

/// The doctor's report on stdout; exit 0 when every check passed.
async fn check(settings: &Settings, json: bool) -> ExitCode {
    let environment = |name: &str| std::env::var(name).ok();
    let push_only = !settings.names_a_target()
        && !github_audit_sekoia::config::pull_targets_configured(&github_audit_sekoia::config::Settings::new(
            &environment,
        ))
        && environment("STREAM_BUCKET").is_some();
    let report = match settings.config() {
        _ if push_only => match PushConfig::load(environment) {
            Err(err) => github_audit_sekoia::check::Report::configuration_failed(&err),
            Ok(config) => match Forwarder::new(config).await {
                Ok(forwarder) => github_audit_sekoia::check::check_push(&forwarder).await,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::from(2);
                }
            },
        },
        Err(err) => github_audit_sekoia::check::Report::configuration_failed(&err),
        Ok(config) => match Connector::new(config).await {
            Ok(connector) => github_audit_sekoia::check::check(&connector, settings.target.as_deref()).await,
            Err(err) => {
                eprintln!("{err}");
                return ExitCode::from(2);
            }
        },
    };
    if json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(err) => eprintln!("cannot render the report: {err}"),
        }
    } else {
        print!("{}", report.to_text());
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

async fn backfill(settings: &Settings, since: &str, until: &str) -> Result<Summary, RunError> {
    let config = settings.config()?;
    let range = TimeRange::parse(since, until)?;
    let max_run = config.shared.max_run;
    let connector = Connector::new(config).await?;
    let bar = ProgressBar::new(1000).with_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% covered up to {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let request = RunRequest {
            target: settings.target.clone(),
            org: None,
            enterprise: None,
            backfill: Some(range),
            budget: Budget::lasting(max_run),
            dry_run: false,
        };
        let summary = connector.run(&request).await?;
        if let Some(progress) = &summary.backfill {
            bar.set_position((progress.percent * 10.0) as u64);
            bar.set_message(progress.covered_until.clone());
            if progress.complete {
                bar.finish();
                return Ok(summary);
            }
        }
        match summary.figures.stop_reason {
            StopReason::RateLimited => {
                let wait = summary
                    .rate_limit_reset
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339(t).ok())
                    .and_then(|reset| reset.duration_since(std::time::SystemTime::now()).ok())
                    .unwrap_or(Duration::from_secs(60));
                bar.println(format!("GitHub rate limit reached: waiting {}s for it to reset", wait.as_secs() + 1));
                tokio::time::sleep(wait + Duration::from_secs(1)).await;
            }
            StopReason::TargetBusy => {
                bar.abandon_with_message("another run holds this backfill".to_owned());
                return Ok(summary);
            }
            _ => {}
        }
    }
}

/// The deployed function runs the backfill: a line on stderr each time its progress changes, its
/// last status on stdout. Exit 0 once complete, 2 when refused, 1 when it stopped moving.
async fn backfill_on_lambda(function: &str, target: Option<&str>, since: &str, until: &str) -> ExitCode {
    let prepared = TimeRange::parse(since, until).and_then(|range| Ok((range, Shared::from_env()?.extra_roots)));
    let (range, roots) = match prepared {
        Ok(prepared) => prepared,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let backfill = LambdaBackfill::new(function, target, range, &roots).await;
    let (started, mut first, mut last_line) = (std::time::Instant::now(), None, String::new());
    let shown = |status: &BackfillStatus| {
        let p = &status.progress;
        let (from, elapsed) = *first.get_or_insert((p.percent, started.elapsed()));
        let rate = (p.percent - from) / (started.elapsed() - elapsed).as_secs_f64().max(1.0);
        let left = if rate > 0.0 && !p.complete {
            format!(
                ", about {} left",
                humantime::format_duration(Duration::from_secs(((100.0 - p.percent) / rate) as u64))
            )
        } else {
            String::new()
        };
        let state = if status.running {
            "running"
        } else if p.complete {
            "complete"
        } else {
            "between runs"
        };
        let line = format!(
            "{}: {:.1}% covered up to {}, {} events, {state}",
            status.cursor, p.percent, p.covered_until, status.events_forwarded
        );
        if line != last_line {
            eprintln!("{line}{left}");
            last_line = line;
        }
    };
    match backfill.follow(shown).await {
        Ok(status) => {
            println!("{}", serde_json::to_string(&status).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(err @ OnLambdaError::Refused { .. }) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// A line that turns while a run goes on, with its figures.
fn spinner() -> ProgressBar {
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(Duration::from_millis(200));
    spinner
}

/// Forwards the bucket's objects, a run after another while the time budget is what stopped
/// it; on a terminal a line follows the objects.
async fn forward_s3(flags: &[Flag<'_>], prefix: Option<&str>, emf: bool) -> ExitCode {
    let (forwarder, bucket) = match push_forwarder(flags).await {
        Ok(opened) => opened,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let spinner = std::io::stderr().is_terminal().then(spinner);
    let ticker = spinner.clone();
    let show = move |summary: &PushSummary| {
        if let Some(ticker) = &ticker {
            ticker.set_message(format!(
                "{} events, {} duplicates skipped; {}",
                summary.figures.events_forwarded,
                summary.figures.duplicates_skipped,
                summary.mode_detail()
            ));
        }
    };
    let (total, stopped) = forward_passes(&forwarder, &bucket, prefix, &show).await;
    if let Some(spinner) = spinner {
        spinner.finish_and_clear();
    }
    if let Some(summary) = &total {
        print_last_line(summary, emf.then(|| emf_line(summary, now_ms())));
    }
    match (stopped, total) {
        (Some(err), _) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
        (None, Some(summary)) if summary.objects_failed == 0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Push mode's settings and clients, and the bucket to forward.
async fn push_forwarder(flags: &[Flag<'_>]) -> Result<(Forwarder, String), String> {
    let config =
        PushConfig::load(flags_then_environment(flags)).map_err(|err| named_by_flag(err, flags).to_string())?;
    let Some(bucket) = config.stream_bucket.clone() else {
        return Err("configuration error: --bucket (or STREAM_BUCKET) is required: the bucket GitHub streams to".into());
    };
    let forwarder = Forwarder::new(config).await.map_err(|err| err.to_string())?;
    Ok((forwarder, bucket))
}

/// Passes over the bucket while the time budget is what stopped the last one and it got
/// somewhere: their summary together, and the error that stopped them, if one did.
async fn forward_passes(
    forwarder: &Forwarder,
    bucket: &str,
    prefix: Option<&str>,
    show: &PushProgress,
) -> (Option<PushSummary>, Option<ForwardError>) {
    let max_run = forwarder.config().shared.max_run;
    let mut total: Option<PushSummary> = None;
    loop {
        let pass = match forwarder.forward_bucket(bucket, prefix, &Budget::lasting(max_run), Some(show)).await {
            Ok(pass) => pass,
            Err(err) => return (total, Some(err)),
        };
        let again = pass.out_of_time();
        let stuck = again && !pass.made_progress();
        match &mut total {
            Some(total) => total.absorb(pass.summary),
            None => total = Some(pass.summary),
        }
        if stuck {
            return (total, Some(ForwardError::NoProgress(max_run.as_secs())));
        }
        if !again {
            return (total, pass.stopped);
        }
        tracing::info!("the run's time budget ran out; a new pass goes on where it stopped");
    }
}

/// The summary as the last line on stdout; with `emf`, the metrics line just before it.
fn print_summary(summary: &Summary, emf: bool, code: ExitCode) -> ExitCode {
    print_last_line(summary, emf.then(|| emf_line(summary, now_ms())));
    code
}

/// A summary as JSON on the last line of stdout, after its metrics line if there is one.
fn print_last_line(summary: &impl serde::Serialize, metrics_line: Option<String>) {
    if let Some(line) = metrics_line {
        println!("{line}");
    }
    match serde_json::to_string(summary) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("cannot render the summary: {err}"),
    }
}
