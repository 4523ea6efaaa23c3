//! The `github-audit-sekoia` binary as a user runs it: environment in, summary line out.

mod common;

use std::time::Duration;

use common::{Harness, events_between, summary};
use github_audit_sekoia::timefmt::to_ms;
use github_audit_sekoia_sim::SimOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_drains_then_a_second_run_sends_nothing() {
    let h = Harness::start().await;
    h.add(events_between(2_500, Duration::from_secs(6 * 3600), Duration::from_secs(1), 21));

    let first = h.run_cli(&["run"], &[]).await;
    let logs = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{logs}");
    assert!(!logs.to_lowercase().contains("imds"), "a local run must not go looking for AWS: {logs}");
    let s = summary(&first);
    assert_eq!(s["events_forwarded"], 2_500);
    assert_eq!(s["stop_reason"], "drained");
    assert_eq!(s["pages"], 25);
    for field in [
        "duplicates_skipped",
        "oversize_events",
        "fresh_read_to",
        "window_swept_to",
        "deep_swept_to",
        "fresh_pages",
        "sweep_pages",
        "deep_sweep_pages",
        "deep_sweep_skipped_until",
        "lag_seconds",
    ] {
        assert!(s.get(field).is_some(), "summary lacks {field}: {s}");
    }

    let second = h.run_cli(&["run"], &[]).await;
    assert!(second.status.success());
    let s = summary(&second);
    assert_eq!(s["events_forwarded"], 0);
    assert!(s["duplicates_skipped"].as_u64() > Some(0), "the newest second was read again and recognised: {s}");
    h.assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_events_and_leaves_the_cursor_alone() {
    let h = Harness::start().await;
    h.add(events_between(150, Duration::from_secs(3600), Duration::from_secs(1), 22));

    let output = h.run_cli(&["run", "--dry-run"], &[("SEKOIA_INTAKE_KEY", "")]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 151, "150 events then the summary");
    let expected: Vec<String> = h.sim.github().events().iter().map(|e| e.json.clone()).collect();
    assert_eq!(&lines[..150], expected.as_slice());
    assert!(h.received().is_empty(), "nothing posted");

    // The cursor did not move: a real run still delivers everything.
    let real = h.run_cli(&["run"], &[]).await;
    assert_eq!(summary(&real)["events_forwarded"], 150);
}

#[test]
fn a_bad_setting_exits_2_naming_the_variable_and_sends_nothing() {
    let h = tokio::runtime::Runtime::new().expect("runtime").block_on(Harness::start());
    for (variable, value) in
        [("GITHUB_INCLUDE", "everything"), ("GITHUB_API_URL", "http://api.github.com"), ("GITHUB_TOKEN", "")]
    {
        let output = h.cli(&["run"], &[(variable, value)]).output().expect("the binary runs");
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    assert!(h.received().is_empty());
}

#[test]
fn a_bad_value_given_by_a_flag_is_named_by_the_flag() {
    let h = tokio::runtime::Runtime::new().expect("runtime").block_on(Harness::start());
    let by_flag = h.cli(&["run", "--late-sweep-after", "5m"], &[]).output().expect("the binary runs");
    let said = String::from_utf8_lossy(&by_flag.stderr);
    assert!(said.contains("--late-sweep-after (LATE_SWEEP_AFTER) must be longer than"), "{said}");
    let by_variable = h.cli(&["run"], &[("LATE_SWEEP_AFTER", "5m")]).output().expect("the binary runs");
    let said = String::from_utf8_lossy(&by_variable.stderr);
    assert!(said.contains("LATE_SWEEP_AFTER must be longer than") && !said.contains("--late"), "{said}");
    let push = h.cli(&["forward-s3", "--bucket", "b-1", "--dedupe-window", "0s"], &[]).output().expect("runs");
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(said.contains("--dedupe-window (STREAM_DEDUPE_WINDOW) must be above 0"), "{said}");
    assert_eq!((by_flag.status.code(), push.status.code()), (Some(2), Some(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_with_a_clear_message_and_no_secret_in_the_output() {
    let h = Harness::start().await;
    h.add(events_between(10, Duration::from_secs(3600), Duration::from_secs(1), 23));
    let output = h.run_cli(&["run"], &[("GITHUB_TOKEN", "ghp_wrong_secret_value")]).await;
    assert_eq!(output.status.code(), Some(1));
    let s = summary(&output);
    assert_eq!(s["stop_reason"], "failed");
    assert!(s["error"].as_str().unwrap_or_default().contains("GITHUB_TOKEN"), "{s}");
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!all.contains("ghp_wrong_secret_value") && !all.contains("simulated-intake-key"), "a secret leaked: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_intake_key_fails_and_keeps_the_cursor() {
    let h = Harness::start().await;
    h.add(events_between(300, Duration::from_secs(3600), Duration::from_secs(1), 24));
    let output = h.run_cli(&["run"], &[("SEKOIA_INTAKE_KEY", "not-the-key")]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(summary(&output)["error"].as_str().unwrap_or_default().contains("intake key was rejected"));

    let retry = h.run_cli(&["run"], &[]).await;
    assert_eq!(summary(&retry)["events_forwarded"], 300, "nothing was skipped by the failed run");
    h.assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loops_until_its_range_is_complete_and_leaves_the_scheduled_cursor_alone() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(25), ..SimOptions::default() }).await;
    let day = Duration::from_secs(86_400);
    h.add(events_between(9_000, 3 * day, Duration::from_secs(1), 25));
    let now = std::time::SystemTime::now();
    let since = humantime::format_rfc3339_seconds(now - 2 * day).to_string();
    let until = humantime::format_rfc3339_seconds(now - day).to_string();
    let (since_ms, until_ms) = (to_ms(now - 2 * day) / 1000 * 1000, to_ms(now - day) / 1000 * 1000);

    let output = h.run_cli(&["backfill", "--since", &since, "--until", &until], &[("MAX_RUN_SECONDS", "1")]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let s = summary(&output);
    assert_eq!(s["backfill"]["complete"], true, "{s}");
    assert_eq!(s["backfill"]["percent"], 100.0);

    let expected = h.ids_created_in(since_ms, until_ms);
    let received = h.received();
    assert!(expected.len() > 2_000, "several one-second runs were needed");
    assert_eq!(received.len(), expected.len());
    assert!(expected.iter().all(|id| received.get(id) == Some(&1)));
    assert!(!h.store().path_for("orgs/acme/web").exists(), "the scheduled cursor was not created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_emf_prints_the_metrics_line_before_the_summary() {
    let h = Harness::start().await;
    h.add(events_between(250, Duration::from_secs(3600), Duration::from_secs(1), 26));

    let output = h.run_cli(&["run", "--emf"], &[]).await;

    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let emf: serde_json::Value =
        serde_json::from_str(stdout.lines().rev().nth(1).unwrap_or_default()).expect("the EMF line parses");
    assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], "GitHubAuditSekoia");
    assert_eq!((emf["Target"].as_str(), emf["EventsForwarded"].as_u64()), (Some("orgs/acme/web"), Some(250)));
    assert_eq!(emf["StopDrained"], 1);
    assert!(emf["LagSeconds"].as_f64().is_some_and(|lag| lag < 60.0), "{emf}");
    assert_eq!(summary(&output)["events_forwarded"], 250, "the summary still closes the output");
}

/// On a terminal `run` shows how far it has come; piped, it prints nothing but the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shows_progress_on_a_terminal_only() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(60), ..SimOptions::default() }).await;
    h.add(events_between(2_000, Duration::from_secs(6 * 3600), Duration::from_secs(1), 24));

    // `script` gives the command a pseudo-terminal, as a person's shell would.
    let mut on_terminal = std::process::Command::new("script");
    on_terminal.args(["-qec", &format!("{} run", common::BIN), "/dev/null"]).env_clear();
    on_terminal.envs(h.env()).env("PATH", std::env::var("PATH").unwrap_or_default()).env("TERM", "xterm");
    let shown = tokio::task::spawn_blocking(move || on_terminal.output().expect("script runs")).await.expect("join");
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen}");
    assert!(screen.contains("events forwarded") && screen.contains("pages"), "no progress line: {screen}");

    let piped = h.run_cli(&["run"], &[]).await;
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("events forwarded"));
    assert_eq!(String::from_utf8_lossy(&piped.stdout).lines().count(), 1, "only the summary");
    h.assert_exactly_once();
}

/// The Lambda binary's log lines at start-up, with `AWS_LAMBDA_RUNTIME_API` pointing nowhere (it
/// reads its configuration, says so at debug, then fails to reach the runtime and exits).
fn lambda_start_up_logs(vars: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_github-audit-sekoia-lambda"));
    command.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs([
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        ("AWS_LAMBDA_FUNCTION_NAME", "connector"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("TARGETS", "org:acme"),
        ("SECRET_ID", "github-audit-sekoia"),
        ("CURSOR_TABLE", "cursors"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ]);
    command.envs(vars.iter().copied());
    let output = command.output().expect("the Lambda binary runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_lambda_honours_log_level_for_its_own_logs_and_keeps_libraries_at_warn() {
    let started = "configuration read; waiting for invocations";
    assert!(!lambda_start_up_logs(&[]).contains(started), "info by default");
    let debug = lambda_start_up_logs(&[("LOG_LEVEL", "debug")]);
    assert!(debug.contains(started), "LOG_LEVEL=debug: {debug}");
    assert!(debug.lines().all(|line| line.starts_with('{')), "JSON lines, as the function's log format asks");
    // Lambda's own level (the template's LogLevel) applies when LOG_LEVEL is not set.
    assert!(lambda_start_up_logs(&[("AWS_LAMBDA_LOG_LEVEL", "DEBUG")]).contains(started));
    let everything = lambda_start_up_logs(&[("LOG_LEVEL", "debug"), ("LOG_LEVEL_DEPS", "debug")]);
    assert!(everything.lines().count() > debug.lines().count(), "the libraries' debug lines only when asked");
}
