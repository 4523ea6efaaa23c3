//! The `check` doctor against the simulator (GitHub, intake) and moto's server (Secrets
//! Manager, DynamoDB): a good setup passes, each broken link gets its own failing line and
//! exit 1, and no secret is ever printed. Run through `scripts/with-moto.sh` (`make test`).

mod common;

use std::process::Output;
use std::time::Duration;

use common::aws::{create_secret, create_table, invocation, moto_env};
use common::{Harness, ORG, events_between};
use github_audit_sekoia::config::Config;
use github_audit_sekoia::connector::Connector;
use github_audit_sekoia::lambda::handle;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(120);

/// Every secret the harness hands the connector; none may show in any output.
fn secrets(h: &Harness) -> [String; 2] {
    [h.options.token.clone(), h.options.intake_key.clone()]
}

fn assert_no_secret(h: &Harness, output: &Output) {
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    for secret in secrets(h).iter().chain([&"ghp_wrong_token_value".to_owned(), &"wrong-intake-key".to_owned()]) {
        assert!(!all.contains(secret.as_str()), "a secret was printed: {all}");
    }
}

/// The JSON report's verdict for one check of the first target.
fn verdict<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["targets"][0]["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|v| v["check"] == check))
        .unwrap_or_else(|| panic!("no {check} verdict in {report}"))
}

async fn check_json(h: &Harness, overrides: &[(&str, &str)]) -> (Output, Value) {
    let output = h.run_cli(&["check", "--json"], overrides).await;
    assert_no_secret(h, &output);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", String::from_utf8_lossy(&output.stdout)));
    (output, report)
}

/// The checks that failed, by name.
fn failed(report: &Value) -> Vec<String> {
    report["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["checks"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["status"] == "fail")
        .map(|v| v["check"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_every_check_and_sends_no_event() {
    let h = Harness::start().await;
    h.add(events_between(30, Duration::from_secs(3600), Duration::from_secs(1), 61));

    let text = h.run_cli(&["check"], &[]).await;
    assert_no_secret(&h, &text);
    let lines = String::from_utf8_lossy(&text.stdout).to_string();
    assert_eq!(text.status.code(), Some(0), "{lines}");
    for check in
        ["configuration", "secret", "credential", "audit log", "rate budget", "clock", "intake", "cursor store"]
    {
        assert!(lines.lines().any(|l| l.contains("ok") && l.contains(check)), "no passing {check} line: {lines}");
    }
    assert!(lines.contains("read:audit_log") && lines.ends_with("all checks passed\n"), "{lines}");

    let (output, report) = check_json(&h, &[]).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(report["ok"], true);
    assert_eq!(report["targets"][0]["target"], "org:acme");
    assert_eq!(report["targets"][0]["checks"].as_array().map(Vec::len), Some(7));
    assert!(h.received().is_empty(), "the doctor sent an event");
    let (_, filtered) = check_json(&h, &[("EXCLUDE_ACTIONS", "git.*, api.request")]).await;
    let forwarded = filtered["configuration"]["detail"].as_str().unwrap_or_default();
    assert!(
        forwarded
            .ends_with("forwarded: every action except git.*, api.request; created_at added to events without one"),
        "{forwarded}"
    );

    // The lease it took was given back: a run drains as usual.
    let run = h.run_cli(&["run"], &[]).await;
    assert_eq!(common::summary(&run)["events_forwarded"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_the_credential_and_skips_what_needs_it() {
    let h = Harness::start().await;
    let (output, report) = check_json(&h, &[("GITHUB_TOKEN", "ghp_wrong_token_value")]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(report["ok"], false);
    let credential = verdict(&report, "credential");
    assert_eq!(credential["status"], "fail");
    assert!(credential["detail"].as_str().is_some_and(|d| d.contains("401")), "{credential}");
    assert!(credential["remedy"].as_str().is_some_and(|r| r.contains("read:audit_log")), "{credential}");
    assert_eq!(verdict(&report, "audit log")["status"], "skip");
    assert_eq!(failed(&report), ["credential"], "the intake and the store still pass: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_the_audit_log_scope_is_named_as_such() {
    let h = Harness::start().await;
    h.sim.github().set_token_scopes("repo, admin:org");
    let (output, report) = check_json(&h, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let credential = verdict(&report, "credential");
    assert_eq!(credential["status"], "fail");
    let detail = credential["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("without read:audit_log") && detail.contains("repo, admin:org"), "{credential}");
    assert_eq!(failed(&report), ["credential"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_org_fails_the_audit_log_check_with_its_name() {
    let h = Harness::start().await;
    let (output, report) = check_json(&h, &[("GITHUB_ORG", "no-such-org")]).await;
    assert_eq!(output.status.code(), Some(1));
    let audit_log = verdict(&report, "audit log");
    assert!(audit_log["detail"].as_str().is_some_and(|d| d.contains("404")), "{audit_log}");
    assert!(audit_log["remedy"].as_str().is_some_and(|r| r.contains("no-such-org")), "{audit_log}");
    assert_eq!(failed(&report), ["audit log"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_intake_key_fails_the_intake_check_only() {
    let h = Harness::start().await;
    let (output, report) = check_json(&h, &[("SEKOIA_INTAKE_KEY", "wrong-intake-key")]).await;
    assert_eq!(output.status.code(), Some(1));
    let intake = verdict(&report, "intake");
    assert!(intake["detail"].as_str().is_some_and(|d| d.contains("refused the key")), "{intake}");
    assert_eq!(failed(&report), ["intake"]);
    assert!(h.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_rate_budget_and_a_bad_setting_each_fail_their_line() {
    let h = Harness::start().await;
    h.sim.github().set_rate_limit_remaining(0, Duration::from_secs(1800));
    let (_, report) = check_json(&h, &[]).await;
    // The audit-log request itself is refused for the spent budget too.
    assert!(failed(&report).contains(&"rate budget".to_owned()), "{report}");

    let (output, report) = check_json(&h, &[("LATE_SWEEP_AFTER", "an hour")]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(report["configuration"]["status"], "fail");
    assert!(report["configuration"]["detail"].as_str().is_some_and(|d| d.contains("LATE_SWEEP_AFTER")));
}

// --- with AWS (moto) ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_table_fails_the_cursor_store_check_and_a_real_one_passes() {
    let h = Harness::start().await;
    let env = moto_env();
    let mut overrides: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    overrides.push(("CURSOR_TABLE", "no-such-table"));
    let (output, report) = check_json(&h, &overrides).await;
    assert_eq!(output.status.code(), Some(1));
    let store = verdict(&report, "cursor store");
    assert!(store["detail"].as_str().is_some_and(|d| d.contains("no-such-table")), "{store}");
    assert!(store["remedy"].as_str().is_some_and(|r| r.contains("exists in this region")), "{store}");
    assert_eq!(failed(&report), ["cursor store"]);

    let table = create_table().await;
    overrides.pop();
    overrides.push(("CURSOR_TABLE", &table));
    let (output, report) = check_json(&h, &overrides).await;
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(verdict(&report, "cursor store")["detail"].as_str().is_some_and(|d| d.contains("lease free")));
}

/// Two targets from one deployment, the second with a secret of its own: the check payload
/// reports on both (the second's own intake key is wrong), and each schedule's payload drains
/// its target with its own credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_target_of_a_deployment_is_checked_and_drained_with_its_own_secret() {
    let h = Harness::start().await;
    h.sim.github().add_events_to("orgs/globex", events_between(40, Duration::from_secs(600), Duration::ZERO, 62));
    h.add(events_between(25, Duration::from_secs(600), Duration::ZERO, 63));
    let shared =
        create_secret(json!({"github_token": h.options.token, "sekoia_intake_key": h.options.intake_key})).await;
    let wrong = create_secret(json!({"github_token": h.options.token, "sekoia_intake_key": "wrong-intake-key"})).await;
    let table = create_table().await;
    let config = |targets: String| {
        let vars = [
            ("TARGETS", targets),
            ("GITHUB_API_URL", h.sim.github_url.clone()),
            ("SEKOIA_INTAKE_URL", h.sim.intake_url.clone()),
            ("SECRET_ID", shared.clone()),
            ("CURSOR_TABLE", table.clone()),
            ("FIRST_RUN_LOOKBACK", "1h".to_owned()),
        ];
        Config::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).expect("config")
    };

    let connector = Connector::new(config(format!("org:{ORG},org:globex={wrong}"))).await.expect("connector");
    let report = handle(&connector, invocation(json!({"check": true}), DEADLINE)).await.expect("a report");
    assert_eq!(report["ok"], false);
    let targets: Vec<&str> =
        report["targets"].as_array().into_iter().flatten().filter_map(|t| t["target"].as_str()).collect();
    assert_eq!(targets, ["org:acme", "org:globex"]);
    let globex = &report["targets"][1]["checks"];
    let status = |target: &Value, check: &str| {
        target.as_array().and_then(|c| c.iter().find(|v| v["check"] == check)).map(|v| v["status"].clone())
    };
    assert_eq!(status(&report["targets"][0]["checks"], "intake"), Some(json!("pass")));
    assert_eq!(status(globex, "intake"), Some(json!("fail")));
    assert!(globex.to_string().contains(&wrong), "the secret's name is shown: {globex}");
    assert!(!report.to_string().contains("wrong-intake-key"));

    // A payload without a target is ambiguous here; one naming an unlisted target is refused.
    assert!(handle(&connector, invocation(json!({}), DEADLINE)).await.is_err());
    assert!(handle(&connector, invocation(json!({"target": "org:initech"}), DEADLINE)).await.is_err());

    let connector = Connector::new(config(format!("org:{ORG},org:globex={shared}"))).await.expect("connector");
    for target in [format!("org:{ORG}"), format!("org:globex={shared}")] {
        let summary = handle(&connector, invocation(json!({"target": target}), DEADLINE)).await.expect("drained");
        assert_eq!(summary["stop_reason"], "drained", "{summary}");
    }
    let expected: Vec<String> = {
        let github = h.sim.github();
        github.events().iter().chain(github.events_of("orgs/globex")).map(|e| e.document_id.clone()).collect()
    };
    assert_eq!(expected.len(), 65);
    h.assert_exactly(&expected);
}
