//! GitHub App authentication, enterprise audit logs, GHES, `include`, and several targets.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::network::{LoopbackProxy, PrivateCa};
use common::{Harness, events_between};
use github_audit_sekoia::budget::Budget;
use github_audit_sekoia::connector::{Connector, RunError, RunRequest};
use github_audit_sekoia::drain::Summary;
use github_audit_sekoia::summary::StopReason;
use github_audit_sekoia::timefmt::now_ms;
use github_audit_sekoia_sim::{SimApp, SimOptions, generate_events};
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

const HOUR: Duration = Duration::from_secs(3600);
const APP_ID: &str = "123456";
const INSTALLATION_ID: u64 = 4242;

/// PKCS#1 private, PKCS#8 private, SPKI public: one key made for this test run.
fn app_key() -> &'static (String, String, String) {
    static KEY: OnceLock<(String, String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key generated");
        (
            key.to_pkcs1_pem(LineEnding::LF).expect("pkcs1").to_string(),
            key.to_pkcs8_pem(LineEnding::LF).expect("pkcs8").to_string(),
            key.to_public_key().to_public_key_pem(LineEnding::LF).expect("public"),
        )
    })
}

fn app_options(token_ttl: Duration, latency: Duration) -> SimOptions {
    let app = SimApp {
        app_id: APP_ID.to_owned(),
        public_key_pem: app_key().2.clone(),
        installation_id: INSTALLATION_ID,
        token_ttl,
        permissions: serde_json::json!({"organization_administration": "read", "metadata": "read"}),
    };
    SimOptions { app: Some(app), latency, ..SimOptions::default() }
}

fn with_app(h: &mut Harness, private_key: &str) {
    h.extra_env.extend([
        ("GITHUB_TOKEN".to_owned(), String::new()),
        ("GITHUB_APP_ID".to_owned(), APP_ID.to_owned()),
        ("GITHUB_APP_PRIVATE_KEY".to_owned(), private_key.to_owned()),
    ]);
}

fn request() -> RunRequest {
    RunRequest {
        target: None,
        org: None,
        enterprise: None,
        backfill: None,
        budget: Budget::lasting(Duration::from_secs(120)),
        dry_run: false,
    }
}

async fn run(connector: &Connector, request: RunRequest) -> Summary {
    connector.run(&request).await.expect("run succeeds")
}

#[tokio::test]
async fn a_github_app_finds_its_installation_and_reuses_one_token_across_pages() {
    let mut h = Harness::with_options(app_options(HOUR, Duration::ZERO)).await;
    with_app(&mut h, &app_key().0);
    h.add(events_between(2_500, 6 * HOUR, Duration::from_secs(1), 41));
    let connector = Connector::new(h.config()).await.expect("the connector starts");

    let summary = run(&connector, request()).await;

    assert_eq!(summary.pages, 25);
    h.assert_exactly_once();
    let github = h.sim.github();
    assert_eq!(github.installation_lookups, 1);
    assert_eq!(github.installation_token_requests, 1, "one installation token for all 25 pages");
}

#[tokio::test]
async fn a_pkcs8_key_and_a_configured_installation_skip_the_lookup() {
    let mut h = Harness::with_options(app_options(HOUR, Duration::ZERO)).await;
    with_app(&mut h, &app_key().1);
    h.extra_env.push(("GITHUB_APP_INSTALLATION_ID".to_owned(), INSTALLATION_ID.to_string()));
    h.add(events_between(300, HOUR, Duration::from_secs(1), 42));

    run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;

    h.assert_exactly_once();
    assert_eq!(h.sim.github().installation_lookups, 0);
}

#[tokio::test]
async fn an_installation_token_is_replaced_before_it_expires_not_on_every_page() {
    // Three-second tokens, ~100 ms pages: about one token every 1.5 s of draining.
    let mut h = Harness::with_options(app_options(Duration::from_secs(3), Duration::from_millis(100))).await;
    with_app(&mut h, &app_key().0);
    h.add(events_between(5_000, 6 * HOUR, Duration::from_secs(1), 43));

    let summary = run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    h.assert_exactly_once();
    let requests = h.sim.github().installation_token_requests;
    assert!((2..=10).contains(&requests), "{requests} token requests for {} pages", summary.pages);
}

#[tokio::test]
async fn a_revoked_installation_token_is_replaced_after_a_401() {
    let mut h = Harness::with_options(app_options(HOUR, Duration::ZERO)).await;
    with_app(&mut h, &app_key().0);
    h.add(events_between(400, HOUR, Duration::from_secs(600), 44));
    let connector = Connector::new(h.config()).await.expect("the connector starts");
    run(&connector, request()).await;

    h.sim.github().revoke_installation_tokens();
    h.add(events_between(100, Duration::from_secs(250), Duration::from_secs(1), 45));
    let second = run(&connector, request()).await;

    assert_eq!(second.figures.events_forwarded, 100);
    h.assert_exactly_once();
    assert_eq!(h.sim.github().installation_token_requests, 2);
}

#[tokio::test]
async fn a_key_that_is_not_a_pem_private_key_is_a_configuration_error_that_never_shows_the_key() {
    let mut h = Harness::start().await;
    with_app(&mut h, "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END RSA PRIVATE KEY-----");
    let env = h.env();
    let err = github_audit_sekoia::config::Config::load(|name| {
        env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
    })
    .expect_err("refused");
    assert_eq!(err.variable, "GITHUB_APP_PRIVATE_KEY");
    assert!(err.to_string().contains("PEM") && !err.to_string().contains("c2VjcmV0"), "{err}");
}

#[tokio::test]
async fn an_enterprise_audit_log_drains_under_its_own_cursor() {
    let mut h = Harness::start().await;
    h.extra_env
        .extend([("GITHUB_ORG".to_owned(), String::new()), ("GITHUB_ENTERPRISE".to_owned(), "acme-corp".to_owned())]);
    let events = events_between(1_200, 6 * HOUR, Duration::from_secs(1), 46);
    let expected: Vec<String> = events.iter().map(|e| e.document_id.clone()).collect();
    h.sim.github().add_events_to("enterprises/acme-corp", events);

    let summary = run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;

    assert_eq!(summary.figures.target, "enterprises/acme-corp/web");
    h.assert_exactly(&expected);
    assert!(h.store().path_for("enterprises/acme-corp/web").exists());
}

#[tokio::test]
async fn a_github_app_is_refused_for_an_enterprise_before_anything_is_fetched() {
    let mut h = Harness::with_options(app_options(HOUR, Duration::ZERO)).await;
    with_app(&mut h, &app_key().0);
    let connector = Connector::new(h.config()).await.expect("the connector starts");

    let err = connector
        .run(&RunRequest { enterprise: Some("acme-corp".to_owned()), ..request() })
        .await
        .expect_err("refused");

    assert!(matches!(err, RunError::Config(_)));
    assert!(err.to_string().contains("classic personal access tokens only"), "{err}");
    let github = h.sim.github();
    assert_eq!(github.requests + github.installation_token_requests, 0);
}

#[tokio::test]
async fn ghes_under_api_v3_with_page_number_links_loses_and_repeats_nothing() {
    let options = SimOptions { api_prefix: "/api/v3".to_owned(), page_numbers: true, ..SimOptions::default() };
    let mut h = Harness::with_options(options).await;
    h.extra_env.push(("GITHUB_API_URL".to_owned(), format!("{}/api/v3", h.sim.github_url)));
    h.add(events_between(1_750, 6 * HOUR, Duration::from_secs(1), 47));

    let first = run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;
    let second = run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;

    assert_eq!((first.pages, first.figures.events_forwarded), (18, 1_750));
    assert_eq!(second.figures.events_forwarded, 0);
    h.assert_exactly_once();
}

#[tokio::test]
async fn web_git_and_all_are_each_honoured_with_their_own_cursor() {
    let mut h = Harness::start().await;
    let now = now_ms();
    let events = generate_events(3_000, now - 6 * 3_600_000, now - 1_000, 0.4, common::ORG, 48);
    let git_ids: Vec<String> = events.iter().filter(|e| e.git).map(|e| e.document_id.clone()).collect();
    assert!(events.iter().filter(|e| e.git).all(|e| !e.json.contains("created_at")), "git events have no created_at");
    let all_ids: Vec<String> = events.iter().map(|e| e.document_id.clone()).collect();
    h.add(events);

    h.extra_env.push(("GITHUB_INCLUDE".to_owned(), "git".to_owned()));
    let git = run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;
    assert_eq!(git.figures.target, "orgs/acme/git");
    h.assert_exactly(&git_ids);

    h.extra_env.push(("GITHUB_INCLUDE".to_owned(), "web".to_owned()));
    run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;
    h.assert_exactly(&all_ids);

    // `all` has a cursor of its own: starting fresh, it delivers every event once more.
    h.extra_env.push(("GITHUB_INCLUDE".to_owned(), "all".to_owned()));
    let all = run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;
    assert_eq!(all.figures.events_forwarded, 3_000);
    assert!(h.received().values().all(|n| *n == 2));
}

#[tokio::test]
async fn two_organizations_from_one_deployment_keep_independent_cursors() {
    let h = Harness::start().await;
    let acme = events_between(800, 6 * HOUR, Duration::from_secs(1), 49);
    let globex = events_between(600, 6 * HOUR, Duration::from_secs(300), 50);
    let mut expected: Vec<String> = acme.iter().chain(&globex).map(|e| e.document_id.clone()).collect();
    h.add(acme);
    h.sim.github().add_events_to("orgs/globex", globex);
    let connector = Connector::new(h.config()).await.expect("the connector starts");

    let first = run(&connector, request()).await;
    let other = run(&connector, RunRequest { org: Some("globex".to_owned()), ..request() }).await;
    assert_eq!((first.figures.target.as_str(), first.figures.events_forwarded), ("orgs/acme/web", 800));
    assert_eq!((other.figures.target.as_str(), other.figures.events_forwarded), ("orgs/globex/web", 600));

    let new = events_between(50, Duration::from_secs(200), Duration::from_secs(1), 51);
    expected.extend(new.iter().map(|e| e.document_id.clone()));
    h.sim.github().add_events_to("orgs/globex", new);
    assert_eq!(run(&connector, request()).await.figures.events_forwarded, 0, "acme has nothing new");
    assert_eq!(
        run(&connector, RunRequest { org: Some("globex".to_owned()), ..request() }).await.figures.events_forwarded,
        50
    );
    h.assert_exactly(&expected);
}

/// The doctor reads an App's installation: organization Administration (read) passes, an
/// installation without it fails the credential check, whether looked up or configured.
#[tokio::test]
async fn the_check_reads_the_app_installation_permissions() {
    for (permissions, installation_id, passes) in [
        (serde_json::json!({"organization_administration": "read"}), None, true),
        (serde_json::json!({"organization_administration": "write"}), Some(INSTALLATION_ID), true),
        (serde_json::json!({"members": "read", "administration": "read"}), None, false),
        (serde_json::json!({"members": "read"}), Some(INSTALLATION_ID), false),
    ] {
        let mut options = app_options(HOUR, Duration::ZERO);
        if let Some(app) = options.app.as_mut() {
            app.permissions = permissions.clone();
        }
        let mut h = Harness::with_options(options).await;
        with_app(&mut h, &app_key().0);
        if let Some(id) = installation_id {
            h.extra_env.push(("GITHUB_APP_INSTALLATION_ID".to_owned(), id.to_string()));
        }
        let connector = Connector::new(h.config()).await.expect("the connector starts");
        let report = github_audit_sekoia::check::check(&connector, None).await;
        let credential = &report.targets[0].checks.iter().find(|v| v.check == "credential").expect("a verdict");
        assert_eq!(
            credential.status == github_audit_sekoia::check::Status::Pass,
            passes,
            "{permissions}: {credential:?}"
        );
        assert_eq!(report.ok, passes, "{permissions}: {}", report.to_text());
        assert!(!report.to_text().contains("PRIVATE KEY"));
    }
}

/// `_document_id` → (a git event?, the JSON GitHub holds).
fn by_id(events: &[github_audit_sekoia_sim::SimEvent]) -> std::collections::HashMap<String, (bool, String)> {
    events.iter().map(|e| (e.document_id.clone(), (e.git, e.json.clone()))).collect()
}

/// Each text the intake received, with its event as GitHub holds it.
fn arrivals(h: &Harness, held: &std::collections::HashMap<String, (bool, String)>) -> Vec<(String, bool, String)> {
    let texts = h.sim.intake().texts.clone();
    texts
        .into_iter()
        .map(|text| {
            let value: serde_json::Value = serde_json::from_str(&text).expect("JSON arrived");
            let (git, original) = held[value["_document_id"].as_str().expect("an id")].clone();
            (text, git, original)
        })
        .collect()
}

#[tokio::test]
async fn git_events_arrive_dated_by_created_at_and_web_events_as_github_sent_them() {
    let now = now_ms();
    let events = generate_events(800, now - 3_600_000, now - 1_000, 0.5, common::ORG, 51);
    let held = by_id(&events);
    let mut h = Harness::start().await;
    h.add(events.clone());
    h.extra_env.push(("GITHUB_INCLUDE".to_owned(), "all".to_owned()));
    run(&Connector::new(h.config()).await.expect("the connector starts"), request()).await;

    let arrived = arrivals(&h, &held);
    assert_eq!(arrived.len(), 800);
    let git_events = arrived.iter().filter(|(_, git, _)| *git).count();
    assert!(git_events > 300, "{git_events} git events");
    for (text, git, original) in &arrived {
        if !git {
            assert_eq!(text, original, "a web event arrives byte for byte");
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
        assert_eq!(value["created_at"], value["@timestamp"], "{text}");
        let stamp = &value["@timestamp"];
        assert_eq!(text.replacen(&format!(r#""created_at":{stamp},"#), "", 1), *original, "nothing else changed");
    }

    // Turned off, git events go as GitHub sent them (and Sekoia dates them at reception).
    let mut off = Harness::start().await;
    off.add(events);
    off.extra_env.push(("GITHUB_INCLUDE".to_owned(), "all".to_owned()));
    off.extra_env.push(("FILL_CREATED_AT".to_owned(), "false".to_owned()));
    run(&Connector::new(off.config()).await.expect("the connector starts"), request()).await;
    assert!(arrivals(&off, &held).iter().all(|(text, _, original)| text == original));
}

#[tokio::test]
async fn excluded_actions_never_reach_the_intake_count_as_filtered_and_are_not_posted_again() {
    let now = now_ms();
    let events = generate_events(1_200, now - 3_600_000, now - 1_000, 0.4, common::ORG, 52);
    let web_ids: Vec<String> = events.iter().filter(|e| !e.git).map(|e| e.document_id.clone()).collect();
    let git_count = (events.len() - web_ids.len()) as u64;
    let mut h = Harness::start().await;
    h.add(events);
    h.extra_env.push(("GITHUB_INCLUDE".to_owned(), "all".to_owned()));
    h.extra_env.push(("EXCLUDE_ACTIONS".to_owned(), "git.*".to_owned()));
    let connector = Connector::new(h.config()).await.expect("the connector starts");

    let first = run(&connector, request()).await;
    assert_eq!((first.figures.events_forwarded, first.figures.events_filtered), (web_ids.len() as u64, git_count));
    h.assert_exactly(&web_ids);

    let batches = h.sim.intake().stats.batches;
    let second = run(&connector, request()).await;
    assert_eq!(
        (second.figures.events_forwarded, h.sim.intake().stats.batches),
        (0, batches),
        "the next run posts nothing"
    );
    h.assert_exactly(&web_ids);
}

#[tokio::test]
async fn ghes_with_a_private_ca_is_trusted_with_extra_ca_bundle_and_refused_clearly_without() {
    let h = Harness::with_options(SimOptions { behind_tls: true, ..SimOptions::default() }).await;
    h.add(events_between(200, Duration::from_secs(3_600), Duration::from_secs(1), 43));
    let ca = PrivateCa::new();
    let github = ca.front(&h.sim.github_url).await;
    let bundle = h.state.path().join("private-ca.pem");
    std::fs::write(&bundle, &ca.ca_pem).expect("bundle written");

    let refused = h.run_cli(&["check"], &[("GITHUB_API_URL", &github)]).await;
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("certificate is not trusted") && said.contains("EXTRA_CA_BUNDLE"), "{said}");
    assert!(h.received().is_empty());

    // Trusted, and reached through a proxy's CONNECT tunnel as a corporate network would have it.
    let proxy = LoopbackProxy::start().await;
    let bundle = bundle.display().to_string();
    let env = [("GITHUB_API_URL", github.as_str()), ("EXTRA_CA_BUNDLE", &bundle), ("HTTPS_PROXY", &proxy.url)];
    let drained = h.run_cli(&["run"], &env).await;
    assert!(drained.status.success(), "{}", String::from_utf8_lossy(&drained.stderr));
    h.assert_exactly_once();
    assert_eq!(h.received().len(), 200);
    assert!(proxy.seen().iter().any(|tunnel| github.ends_with(tunnel.as_str())), "{:?}", proxy.seen());
}
