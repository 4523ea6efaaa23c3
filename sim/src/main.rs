//! Runs the loopback simulator of GitHub's audit-log API and the Sekoia intake until Ctrl-C.

use std::time::Duration;

use clap::Parser;
use github_audit_sekoia_sim::{
    LiveLog, SimOptions, Simulator, Stall, generate_events, live_events, now_ms, streamed_file,
};

#[derive(Parser)]
#[command(about = "Simulated GitHub audit-log API and Sekoia intake on 127.0.0.1")]
struct Args {
    #[arg(long, default_value_t = 0)]
    github_port: u16,
    #[arg(long, default_value_t = 0)]
    intake_port: u16,
    /// Events already in the audit log at start.
    #[arg(long, default_value_t = 5000)]
    events: usize,
    /// They span this far back from now (e.g. 12h).
    #[arg(long, default_value = "12h")]
    span: humantime::Duration,
    /// Share of git events (seen with GITHUB_INCLUDE=git or all).
    #[arg(long, default_value_t = 0.1)]
    git_share: f64,
    /// Delay added to every audit-log answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay added to every intake answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    intake_latency_ms: u64,
    #[arg(long, default_value_t = 1750)]
    rate_limit: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "acme")]
    org: String,
    /// A second organization, with as many events of its own (a deployment of several targets).
    #[arg(long)]
    second_org: Option<String>,
    #[arg(long, env = "SIM_GITHUB_TOKEN", default_value = "ghp_simulated_token", hide_env_values = true)]
    token: String,
    #[arg(long, env = "SIM_INTAKE_KEY", default_value = "simulated-intake-key", hide_env_values = true)]
    intake_key: String,
    /// Live mode: new events keep happening at this rate (events per second) from start-up.
    #[arg(long)]
    live_per_second: Option<f64>,
    /// For this long.
    #[arg(long, default_value = "1h")]
    live_for: humantime::Duration,
    /// Each new event becomes searchable after a random delay of up to this.
    #[arg(long, default_value = "10s")]
    max_indexing_delay: humantime::Duration,
    /// GitHub's index stalls this long after start-up ...
    #[arg(long)]
    stall_after: Option<humantime::Duration>,
    /// ... for this long, then releases the backlog in timestamp order ...
    #[arg(long, default_value = "15m")]
    stall_for: humantime::Duration,
    /// ... this many times faster than real time.
    #[arg(long, default_value_t = 2)]
    release_speed: u32,
    /// Also write the starting events to this file as GitHub's audit-log stream writes them to
    /// Amazon S3 (gzip JSON lines), for push mode.
    #[arg(long)]
    write_stream_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let options = SimOptions {
        org: args.org.clone(),
        token: args.token,
        intake_key: args.intake_key,
        latency: Duration::from_millis(args.latency_ms),
        intake_latency: Duration::from_millis(args.intake_latency_ms),
        rate_limit: args.rate_limit,
        github_port: args.github_port,
        intake_port: args.intake_port,
        ..SimOptions::default()
    };
    let sim = Simulator::start(options).await?;
    let now = now_ms();
    let span_ms = i64::try_from(args.span.as_millis()).unwrap_or(i64::MAX);
    let events = generate_events(args.events, now - span_ms, now - 1000, args.git_share, &args.org, args.seed);
    if let Some(path) = &args.write_stream_file {
        std::fs::write(path, streamed_file(&events))?;
    }
    sim.github().add_events(events);
    if let Some(org) = &args.second_org {
        let events = generate_events(args.events, now - span_ms, now - 1000, args.git_share, org, args.seed + 1);
        sim.github().add_events_to(&format!("orgs/{org}"), events);
    }
    if let Some(per_second) = args.live_per_second {
        let stall = args.stall_after.map(|after| Stall {
            after: after.into(),
            lasts: args.stall_for.into(),
            release_speed: args.release_speed,
        });
        let live = LiveLog {
            start_ms: now,
            span: args.live_for.into(),
            per_second,
            max_delay: args.max_indexing_delay.into(),
            stall,
            seed: args.seed,
        };
        sim.github().add_events(live_events(&live, &args.org));
    }
    println!("GITHUB_API_URL={} SEKOIA_INTAKE_URL={} GITHUB_ORG={}", sim.github_url, sim.intake_url, args.org);
    eprintln!(
        "simulator ready with {} events; intake counts at {}/_sim/stats; Ctrl-C stops it",
        args.events, sim.intake_url
    );
    tokio::signal::ctrl_c().await
}
