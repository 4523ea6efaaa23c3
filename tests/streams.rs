//! `github-audit-sekoia streams …` as a user runs it, against the simulator's streaming
//! endpoints, which open every sealed secret with their key pair and refuse plain-text ones.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::Harness;
use serde_json::{Value, json};

const ENTERPRISE: &str = "acme-corp";

async fn enterprise_harness() -> Harness {
    let mut h = Harness::start().await;
    h.sim.github().add_events_to(&format!("enterprises/{ENTERPRISE}"), Vec::new());
    h.extra_env
        .extend([("GITHUB_ORG".to_owned(), String::new()), ("GITHUB_ENTERPRISE".to_owned(), ENTERPRISE.to_owned())]);
    h
}

fn config_file(h: &Harness, name: &str, config: &Value) -> String {
    let path = h.state.path().join(name);
    std::fs::write(&path, config.to_string()).expect("config written");
    path.display().to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn assert_never_printed(output: &Output, secrets: &[&str]) {
    let all = format!("{}{}", stdout(output), stderr(output));
    for secret in secrets {
        assert!(!all.contains(secret), "{secret} was printed: {all}");
    }
}

fn requests(h: &Harness) -> u64 {
    h.sim.github().streams.requests
}

/// Every provider family GitHub documents, created through the CLI: the simulator checks each
/// body's fields, `key_id` and sealed boxes, and what it opened is what the file said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_family_is_created_with_its_secrets_sealed() {
    let h = enterprise_harness().await;
    let families = [
        (
            "Azure Blob Storage",
            json!({"sas_url": "https://x.blob.core.windows.net/c?sig=sas-secret"}),
            vec![("encrypted_sas_url", "https://x.blob.core.windows.net/c?sig=sas-secret")],
        ),
        (
            "Azure Event Hubs",
            json!({"name": "hub", "connstring": "Endpoint=sb://hub/;SharedAccessKey=conn-secret"}),
            vec![("encrypted_connstring", "Endpoint=sb://hub/;SharedAccessKey=conn-secret")],
        ),
        (
            "Amazon S3",
            json!({"bucket": "audit", "region": "eu-west-3", "authentication_type": "oidc", "arn_role": "arn:aws:iam::123456789012:role/github-stream"}),
            vec![],
        ),
        (
            "Amazon S3",
            json!({"bucket": "audit", "region": "eu-west-3", "authentication_type": "access_keys", "access_key_id": "AKIA-secret", "secret_key": "s3-secret"}),
            vec![("encrypted_access_key_id", "AKIA-secret"), ("encrypted_secret_key", "s3-secret")],
        ),
        (
            "Splunk",
            json!({"domain": "splunk.example.com", "port": 8088, "ssl_verify": true, "token": "hec-secret"}),
            vec![("encrypted_token", "hec-secret")],
        ),
        (
            "HTTPS Event Collector",
            json!({"domain": "hec.example.com", "port": 443, "ssl_verify": false, "token": "hec2-secret"}),
            vec![("encrypted_token", "hec2-secret")],
        ),
        (
            "Google Cloud Storage",
            json!({"bucket": "audit", "json_credentials": "{\"private_key\": \"gcs-secret\"}"}),
            vec![("encrypted_json_credentials", "{\"private_key\": \"gcs-secret\"}")],
        ),
        ("Datadog", json!({"site": "EU1", "token": "dd-secret"}), vec![("encrypted_token", "dd-secret")]),
    ];
    for (n, (stream_type, config, sealed)) in families.iter().enumerate() {
        let file = config_file(&h, &format!("stream-{n}.json"), config);
        let output = h.run_cli(&["streams", "create", "--type", stream_type, "--config", &file], &[]).await;
        assert_eq!(output.status.code(), Some(0), "{stream_type}: {}", stderr(&output));
        assert!(stdout(&output).contains(stream_type), "{}", stdout(&output));
        assert_never_printed(&output, &sealed.iter().map(|(_, plain)| *plain).collect::<Vec<_>>());
        let github = h.sim.github();
        let stream = github.streams.streams.last().expect("created");
        assert_eq!(&stream.stream_type, stream_type);
        assert!(stream.enabled);
        let opened: Vec<(&str, &str)> = stream.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut expected = sealed.clone();
        expected.sort();
        assert_eq!(opened, expected, "{stream_type}");
    }

    let list = h.run_cli(&["streams", "list", "--json"], &[]).await;
    let streams: Vec<Value> = serde_json::from_slice(&list.stdout).expect("GitHub's objects");
    assert_eq!(streams.len(), families.len());
    let table = h.run_cli(&["streams", "list"], &[]).await;
    assert_eq!(stdout(&table).lines().count(), families.len() + 1, "a header and a line per stream");
    let one = h.run_cli(&["streams", "get", "5", "--json"], &[]).await;
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&one.stdout).expect("json")[0]["stream_type"], "Splunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_update_pause_resume_and_delete_do_what_they_say() {
    let h = enterprise_harness().await;
    let key = h.run_cli(&["streams", "key"], &[]).await;
    let key_id = h.sim.github().streams.key_id.clone();
    assert!(stdout(&key).contains(&format!("key id: {key_id}")), "{}", stdout(&key));

    let first = config_file(&h, "dd.json", &json!({"site": "US", "token": "first-secret"}));
    let created = h.run_cli(&["streams", "create", "--type", "Datadog", "--config", &first, "--disabled"], &[]).await;
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(!h.sim.github().streams.streams[0].enabled, "--disabled creates it paused");

    // Standard input, as the README suggests for secrets kept out of files.
    let mut update = h.cli(&["streams", "update", "1", "--type", "Datadog", "--config", "-"], &[]);
    let mut child = update.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!({"site": "EU1", "token": "second-secret"}).to_string().as_bytes())
        .expect("written");
    let updated = tokio::task::spawn_blocking(move || child.wait_with_output().expect("ends")).await.expect("join");
    assert!(updated.status.success(), "{}", stderr(&updated));
    assert_never_printed(&updated, &["second-secret"]);
    {
        let github = h.sim.github();
        let stream = &github.streams.streams[0];
        assert_eq!((stream.enabled, stream.secrets["encrypted_token"].as_str()), (true, "second-secret"));
        assert_eq!(stream.fields["site"], "EU1");
    }

    let second = config_file(&h, "dd2.json", &json!({"site": "EU1", "token": "second-secret"}));
    let paused = h.run_cli(&["streams", "pause", "1", "--type", "Datadog", "--config", &second], &[]).await;
    assert!(paused.status.success() && !h.sim.github().streams.streams[0].enabled, "{}", stderr(&paused));
    let resumed = h.run_cli(&["streams", "resume", "1", "--type", "Datadog", "--config", &second], &[]).await;
    assert!(resumed.status.success() && h.sim.github().streams.streams[0].enabled, "{}", stderr(&resumed));

    // Not a terminal and no --yes: refused before asking GitHub anything.
    let before = requests(&h);
    let refused = h.run_cli(&["streams", "delete", "1"], &[]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!((requests(&h), h.sim.github().streams.streams.len()), (before, 1));
    let deleted = h.run_cli(&["streams", "delete", "1", "--yes"], &[]).await;
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert!(h.sim.github().streams.streams.is_empty());
    let gone = h.run_cli(&["streams", "get", "1"], &[]).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("404"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_before_any_request_and_never_echo_a_secret() {
    let h = enterprise_harness().await;
    let splunk = json!({"domain": "d.example.com", "port": 8088, "ssl_verify": true, "token": "inline-secret"});
    let missing =
        config_file(&h, "missing.json", &json!({"domain": "d.example.com", "port": 8088, "ssl_verify": true}));
    let encrypted = config_file(&h, "enc.json", &json!({"site": "EU1", "encrypted_token": "inline-secret"}));
    let good = config_file(&h, "good.json", &splunk);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--type".into(), "Splunk".into(), "--config".into(), splunk.to_string()],
            "never taken as command-line arguments",
        ),
        (vec!["--type".into(), "Splunk".into(), "--config".into(), missing], "\"token\""),
        (vec!["--type".into(), "splunk".into(), "--config".into(), good.clone()], "case-sensitive"),
        (vec!["--type".into(), "Datadog".into(), "--config".into(), encrypted], "plain text as \"token\""),
        (vec!["--type".into(), "Splunk".into(), "--config".into(), "/no/such/file.json".into()], "cannot read"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["streams", "create"];
        all.extend(args.iter().map(String::as_str));
        let output = h.run_cli(&all, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr(&output).contains(expected), "{args:?}: {}", stderr(&output));
        assert_never_printed(&output, &["inline-secret"]);
    }
    assert_eq!(requests(&h), 0, "nothing reached GitHub");

    // An organization target, an App or a wrong token: each explained.
    let org = h.run_cli(&["streams", "list"], &[("GITHUB_ENTERPRISE", ""), ("GITHUB_ORG", "acme")]).await;
    assert!(stderr(&org).contains("GITHUB_ENTERPRISE"), "{}", stderr(&org));
    let wrong = h.run_cli(&["streams", "list"], &[("GITHUB_TOKEN", "ghp_wrong_value")]).await;
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("401") && stderr(&wrong).contains("classic"), "{}", stderr(&wrong));
    assert_never_printed(&wrong, &["ghp_wrong_value"]);
    let ok = h.run_cli(&["streams", "create", "--type", "Splunk", "--config", &good], &[]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
}
