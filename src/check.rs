//! The `check` doctor: follows each link a run depends on — configuration, secret, GitHub
//! credential, target, rate budget, intake, cursor store — without sending any event, and says
//! for each what it found and, when it failed, what to do.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::budget::Budget;
use crate::checkpoint::Checkpoint;
use crate::config::{Config, ConfigError, CredentialsConfig, Target};
use crate::connector::Connector;
use crate::credentials::{Credentials, GitHubCredential};
use crate::github::GitHubAuth;
use crate::github::probe::{self, AUDIT_LOG_SCOPE, CredentialFacts};
use crate::ports::CursorError;
use crate::secret::Secret;
use crate::sekoia::SekoiaIntake;
use crate::timefmt::rfc3339_seconds;

/// No probe waits longer than this.
const PROBE_TIME: Duration = Duration::from_secs(20);
/// How long the cursor check holds a lease it takes (it gives it back at once).
const LEASE_PROBE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not tried: a link it depends on failed.
    Skip,
}

/// One link checked.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Verdict {
    fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self { check, status: Status::Pass, detail: detail.into(), remedy: None }
    }

    fn fail(check: &'static str, detail: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self { check, status: Status::Fail, detail: detail.into(), remedy: Some(remedy.into()) }
    }

    fn skip(check: &'static str, because: &str) -> Self {
        Self { check, status: Status::Skip, detail: format!("not tried: {because}"), remedy: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// `org:acme`, `enterprise:acme-corp`.
    pub target: String,
    pub checks: Vec<Verdict>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every check passed.
    pub ok: bool,
    pub configuration: Verdict,
    pub targets: Vec<TargetReport>,
}

impl Report {
    /// The configuration did not load: nothing else can be tried.
    pub fn configuration_failed(err: &ConfigError) -> Self {
        let configuration = Verdict::fail(
            "configuration",
            err.to_string(),
            format!(
                "set {} as the message says (the README's Configuration table lists every variable; run --help the flags)",
                err.variable
            ),
        );
        Self { ok: false, configuration, targets: Vec::new() }
    }

    fn new(configuration: Verdict, targets: Vec<TargetReport>) -> Self {
        let ok = configuration.status == Status::Pass
            && targets.iter().flat_map(|t| &t.checks).all(|v| v.status == Status::Pass);
        Self { ok, configuration, targets }
    }

    /// One line per check, a remedy under each failure.
    pub fn to_text(&self) -> String {
        fn line(text: &mut String, indent: &str, verdict: &Verdict) {
            let status = match verdict.status {
                Status::Pass => "ok  ",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let _ = writeln!(text, "{indent}{status}  {:<13} {}", verdict.check, verdict.detail);
            if let Some(remedy) = &verdict.remedy {
                let _ = writeln!(text, "{indent}      {:<13} fix: {remedy}", "");
            }
        }
        let mut text = String::new();
        line(&mut text, "", &self.configuration);
        for target in &self.targets {
            let _ = writeln!(text, "{}", target.target);
            for verdict in &target.checks {
                line(&mut text, "  ", verdict);
            }
        }
        text.push_str(if self.ok { "all checks passed\n" } else { "some checks failed\n" });
        text
    }
}

/// Checks every configured target (or the one named).
pub async fn check(connector: &Connector, only: Option<&str>) -> Report {
    let config = connector.config();
    let entries: Vec<Result<Config, ConfigError>> = match only {
        Some(spec) => vec![config.for_target(spec)],
        None => config.targets.iter().map(|entry| config.for_target(&entry.spec())).collect(),
    };
    let mut targets = Vec::new();
    for entry in entries {
        match entry {
            Ok(target_config) => targets.push(check_target(connector, &target_config).await),
            Err(err) => return Report::new(Report::configuration_failed(&err).configuration, targets),
        }
    }
    Report::new(Verdict::pass("configuration", describe_config(config)), targets)
}

fn describe_config(config: &Config) -> String {
    let store = store_place(&config.shared);
    format!(
        "{} target(s) ({}), {} events, GitHub {}, intake {}, cursors in {store}; forwarded: {}",
        config.targets.len(),
        config.target_list(),
        config.include.as_str(),
        config.github_api_url,
        config.shared.intake_url,
        config.shared.shaping.describe()
    )
}

async fn check_target(connector: &Connector, config: &Config) -> TargetReport {
    let mut checks = Vec::new();
    let credentials = connector.credentials(config).await;
    let loaded = credentials.get().await;
    let (github_ok, intake_ok) = match &loaded {
        Ok(found) => {
            checks.push(secret_verdict(config, found));
            (true, found.intake_key.is_some())
        }
        Err(err) => {
            checks.push(Verdict::fail("secret", err.to_string(), secret_remedy(&config.credentials)));
            (false, false)
        }
    };
    checks.extend(if github_ok {
        check_github(connector, config).await
    } else {
        credential_unusable(Verdict::skip("credential", "the secret could not be read"))
    });
    checks.push(if intake_ok {
        check_intake(connector.client(), &config.shared.intake_url, credentials).await
    } else {
        Verdict::skip("intake", "no intake key")
    });
    checks.push(check_store(connector, config).await);
    TargetReport { target: config.target.spec(), checks }
}

fn secret_verdict(config: &Config, found: &Credentials) -> Verdict {
    let place = match &config.credentials {
        CredentialsConfig::SecretsManager { secret_id } => format!("secret {secret_id}"),
        CredentialsConfig::Environment { .. } => "environment".to_owned(),
    };
    let github = match &found.github {
        Some(GitHubCredential::Token(_)) => "a personal access token".to_owned(),
        Some(GitHubCredential::App(app)) => format!("GitHub App {}", app.app_id),
        None => {
            return Verdict::fail(
                "secret",
                format!("{place}: no GitHub credential"),
                "put github_token (or github_app_id and github_app_private_key) in the secret, or set GITHUB_TOKEN",
            );
        }
    };
    match &found.intake_key {
        Some(_) => Verdict::pass("secret", format!("{place}: {github} and an intake key")),
        None => Verdict::fail(
            "secret",
            format!("{place}: {github}, but no intake key"),
            "set SEKOIA_INTAKE_KEY (or sekoia_intake_key in the secret) to the key of your Sekoia.io intake",
        ),
    }
}

fn secret_remedy(credentials: &CredentialsConfig) -> String {
    match credentials {
        CredentialsConfig::SecretsManager { secret_id } => format!(
            "make sure secret {secret_id} exists in this region, that this role may secretsmanager:GetSecretValue it, and that it holds {{\"github_token\": …, \"sekoia_intake_key\": …}}"
        ),
        CredentialsConfig::Environment { .. } => {
            "set GITHUB_TOKEN (or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY) and SEKOIA_INTAKE_KEY".to_owned()
        }
    }
}

/// The credential, one audit-log page, and the rate budget.
/// The GitHub checks when the credential cannot be used: its verdict, the others not tried.
fn credential_unusable(credential: Verdict) -> Vec<Verdict> {
    let because = "no valid GitHub credential";
    vec![
        credential,
        Verdict::skip("audit log", because),
        Verdict::skip("rate budget", because),
        Verdict::skip("clock", because),
    ]
}

async fn check_github(connector: &Connector, config: &Config) -> Vec<Verdict> {
    let budget = Budget::lasting(PROBE_TIME);
    let authorizer = connector.authorizer(config).await;
    let app = match authorizer.installation().await {
        Ok(app) => app,
        Err(err) => {
            let remedy = "check the App ID, its private key and that the App is installed on the organization";
            return credential_unusable(Verdict::fail("credential", err.to_string(), remedy));
        }
    };
    let authorization = match authorizer.authorization().await {
        Ok(value) => value,
        Err(err) => {
            return credential_unusable(Verdict::fail(
                "credential",
                err.to_string(),
                "check the GitHub App's settings",
            ));
        }
    };
    let facts = probe::credential_facts(connector.client(), &config.github_api_url, &authorization, &budget).await;
    let credential = match (&facts, &app) {
        (Err(err), _) => match err.status.map(|s| s.as_u16()) {
            Some(401) => Verdict::fail(
                "credential",
                format!("GitHub refused it: {err}"),
                "the token is wrong, expired or revoked: create a classic personal access token with read:audit_log and store it",
            ),
            Some(_) => Verdict::fail("credential", format!("GitHub refused it: {err}"), "see GitHub's message above"),
            None => {
                Verdict::fail("credential", format!("GitHub did not answer: {err}"), unreachable_remedy(&err.message))
            }
        },
        (Ok(_), Some(installation)) => app_verdict(installation),
        (Ok(facts), None) => token_verdict(facts, &config.target),
    };
    let audit_log = match credential.status {
        Status::Pass => audit_log_verdict(connector, config, &authorization, &budget).await,
        _ => Verdict::skip("audit log", "the credential check failed"),
    };
    let mut verdicts = vec![credential];
    verdicts.push(audit_log);
    verdicts.push(match &facts {
        Ok(facts) => budget_verdict(facts, SystemTime::now()),
        Err(_) => Verdict::skip("rate budget", "GitHub's /rate_limit did not answer"),
    });
    verdicts.push(match facts.ok().and_then(|facts| facts.clock_offset_ms) {
        Some(offset_ms) => clock_verdict(offset_ms),
        None => Verdict::skip("clock", "GitHub's answer carried no Date"),
    });
    verdicts
}

/// What to look at when GitHub's host gave no HTTP answer, from what the connection said.
pub fn unreachable_remedy(message: &str) -> String {
    let said = message.to_ascii_lowercase();
    if said.contains("certificate") || said.contains("unknownissuer") || said.contains("tls") {
        "the connection's certificate is not trusted: a GitHub Enterprise Server with a private CA, or a TLS-inspecting proxy, needs its CA: EXTRA_CA_BUNDLE=/path/to/ca.pem adds it to this host's roots".to_owned()
    } else if said.contains("proxy") {
        "the proxy refused or failed the connection: check HTTPS_PROXY (and NO_PROXY)".to_owned()
    } else if said.contains("dns") || said.contains("resolve") || said.contains("lookup") {
        "GitHub's host name does not resolve here: check GITHUB_API_URL and this host's DNS".to_owned()
    } else {
        "check GITHUB_API_URL, and that this host reaches it: firewall, HTTPS_PROXY, a VPC without a route out"
            .to_owned()
    }
}

/// This host's clock against GitHub's. The drain reckons by GitHub's, but AWS refuses requests
/// signed more than five minutes off and a GitHub App's tokens need a clock within a minute.
pub fn clock_verdict(github_ahead_ms: i64) -> Verdict {
    let seconds = github_ahead_ms / 1000;
    let detail = match seconds {
        0 => "this host's clock agrees with GitHub's (within a second)".to_owned(),
        s if s > 0 => format!("GitHub's clock is {s} s ahead of this host's"),
        s => format!("GitHub's clock is {} s behind this host's", -s),
    };
    if github_ahead_ms.unsigned_abs() <= 60_000 {
        return Verdict::pass("clock", detail);
    }
    Verdict::fail(
        "clock",
        format!("{detail}: runs reckon by GitHub's clock, but AWS and GitHub App tokens need this host's"),
        "set this host's time (NTP, or the hypervisor's time sync after a snapshot resume)",
    )
}

/// One page of the target's audit log, read with the credential.
async fn audit_log_verdict(connector: &Connector, config: &Config, authorization: &Secret, budget: &Budget) -> Verdict {
    let path = config.target.audit_log_path();
    let err = match probe::audit_log_page(connector.client(), config, authorization, budget).await {
        Ok(events) => return Verdict::pass("audit log", format!("{path} answered (newest page: {events} event(s))")),
        Err(err) => err,
    };
    let remedy = match (err.status.map(|s| s.as_u16()), &config.target) {
        (Some(404), Target::Organization(org)) => format!(
            "GitHub knows no organization {org} that this credential may see: check the name (GITHUB_ORG or TARGETS) and that the token's owner is an owner of it"
        ),
        (Some(404), Target::Enterprise(e)) => format!(
            "GitHub knows no enterprise {e} that this token may see: check the slug and that the token's owner is an enterprise owner"
        ),
        (Some(403), _) => "the credential may not read this audit log: a classic token of an organization owner (enterprise owner for an enterprise) with read:audit_log, or an App with organization Administration: read".to_owned(),
        _ => "see GitHub's message above".to_owned(),
    };
    Verdict::fail("audit log", format!("{path}: {err}"), remedy)
}

/// A classic token needs `read:audit_log`; an enterprise takes nothing but a classic token.
pub fn token_verdict(facts: &CredentialFacts, target: &Target) -> Verdict {
    match (&facts.scopes, target) {
        (Some(scopes), _) if scopes.iter().any(|s| s == AUDIT_LOG_SCOPE) => {
            Verdict::pass("credential", format!("classic token with scopes {}", scopes.join(", ")))
        }
        (Some(scopes), _) => Verdict::fail(
            "credential",
            format!(
                "classic token without {AUDIT_LOG_SCOPE} (its scopes: {})",
                if scopes.is_empty() { "none".to_owned() } else { scopes.join(", ") }
            ),
            format!(
                "edit the token in GitHub (Settings > Developer settings > Tokens (classic)) and tick {AUDIT_LOG_SCOPE}"
            ),
        ),
        (None, Target::Enterprise(_)) => Verdict::fail(
            "credential",
            "not a classic token (GitHub sent no X-OAuth-Scopes)",
            "the enterprise audit log takes classic personal access tokens only: create one with read:audit_log",
        ),
        (None, Target::Organization(_)) => Verdict::pass(
            "credential",
            "GitHub accepts it; not a classic token (no X-OAuth-Scopes), so the audit-log request decides",
        ),
    }
}

/// An App reads the organization's audit log with organization permission Administration.
pub fn app_verdict(installation: &crate::github::InstallationFacts) -> Verdict {
    match installation.permissions.get("organization_administration").map(String::as_str) {
        Some("read" | "write") => Verdict::pass(
            "credential",
            format!("GitHub App installation {} with organization Administration: read", installation.id),
        ),
        _ => Verdict::fail(
            "credential",
            format!("GitHub App installation {} lacks organization permission Administration: read", installation.id),
            "in the App's settings grant Organization permissions > Administration: Read-only, then approve the change on the organization",
        ),
    }
}

pub fn budget_verdict(facts: &CredentialFacts, now: SystemTime) -> Verdict {
    let Some(allowance) = facts.audit_log else {
        return Verdict::pass("rate budget", "GitHub lists no audit-log allowance (GitHub Enterprise Server?)");
    };
    let reset = SystemTime::UNIX_EPOCH + Duration::from_secs(allowance.reset.min(u64::from(u32::MAX)));
    let reset_text = rfc3339_seconds(crate::timefmt::to_ms(reset));
    if allowance.remaining == 0 && reset > now {
        return Verdict::fail(
            "rate budget",
            format!("0 of {} audit-log requests left until {reset_text}", allowance.limit),
            "another tool spends this token's audit-log allowance: give the connector a token of its own, or wait",
        );
    }
    Verdict::pass(
        "rate budget",
        format!("{} of {} audit-log requests left, renewed at {reset_text}", allowance.remaining, allowance.limit),
    )
}

async fn check_intake(
    client: &reqwest::Client,
    intake_url: &url::Url,
    credentials: std::sync::Arc<crate::credentials::CredentialCache>,
) -> Verdict {
    let intake = SekoiaIntake::new(client.clone(), intake_url, credentials);
    match intake.probe(&Budget::lasting(PROBE_TIME)).await {
        Ok(()) => Verdict::pass("intake", format!("{intake_url} took the key (an empty batch, nothing stored)")),
        Err(err) => match err.status.map(|s| s.as_u16()) {
            Some(401 | 403) => Verdict::fail(
                "intake",
                format!("{intake_url} refused the key ({err})"),
                "copy the intake key from Sekoia.io (Intakes, your GitHub intake) into SEKOIA_INTAKE_KEY or the secret's sekoia_intake_key, and check SEKOIA_INTAKE_URL is your region's",
            ),
            _ => Verdict::fail(
                "intake",
                format!("{intake_url}: {err}"),
                "check SEKOIA_INTAKE_URL (your region's intake URL) and that this host can reach it",
            ),
        },
    }
}

/// Takes the target's lease and gives it back at once: the store is readable (the checkpoint
/// parses) and writable, and no run holds the target.
async fn check_store(connector: &Connector, config: &Config) -> Verdict {
    let plan = crate::connector::plan(config, None);
    let place = match &config.shared.cursor_table {
        Some(table) => format!("DynamoDB table {table}, item {}", plan.key),
        None => format!("{} ({})", config.shared.state_dir.display(), plan.key),
    };
    let state = |checkpoint: Option<Checkpoint>| match checkpoint {
        Some(checkpoint) => format!("; fresh read up to {}", rfc3339_seconds(checkpoint.positions.fresh_read_to_ms)),
        None => format!(
            "; no checkpoint yet: the first run starts {} back",
            humantime::format_duration(config.first_run_lookback)
        ),
    };
    lease_verdict(connector.store(), &plan.key, &place, &config.shared, state).await
}

/// Push mode's links: the intake key, the intake, the stream's bucket, the record store.
pub async fn check_push(forwarder: &crate::forwarder::Forwarder) -> Report {
    let config = forwarder.config();
    let Some(bucket) = config.stream_bucket.clone() else {
        let missing = crate::config::problem("STREAM_BUCKET", "is required: the bucket GitHub streams to");
        return Report::configuration_failed(&missing);
    };
    let key = crate::push::rules::cursor_key(&bucket);
    let place = store_place(&config.shared);
    let configuration = Verdict::pass(
        "configuration",
        format!("push mode: bucket {bucket}, intake {}, records in {place}", config.shared.intake_url),
    );
    let (client, credentials) = forwarder.intake_parts();
    let mut checks = vec![match credentials.get().await {
        Ok(found) if found.intake_key.is_some() => Verdict::pass("secret", "an intake key"),
        Ok(_) => Verdict::fail("secret", "no intake key", "set SEKOIA_INTAKE_KEY, or sekoia_intake_key in the secret"),
        Err(err) => Verdict::fail("secret", err.to_string(), "check SECRET_ID and that the role may read it"),
    }];
    checks.push(check_intake(client, &config.shared.intake_url, credentials.clone()).await);
    checks.push(match forwarder.objects().list(&bucket, None, None).await {
        Ok(page) => {
            Verdict::pass("bucket", format!("s3://{bucket} lists ({} object(s) on its first page)", page.objects.len()))
        }
        Err(err) => Verdict::fail(
            "bucket",
            format!("s3://{bucket}: {err}"),
            "check STREAM_BUCKET and that this role may s3:ListBucket and s3:GetObject it",
        ),
    });
    let place = format!("{place}, item {key}");
    checks.push(lease_verdict(forwarder.store(), &key, &place, &config.shared, |_| String::new()).await);
    Report::new(configuration, vec![TargetReport { target: key, checks }])
}

/// Takes a cursor's lease and gives it back at once: the store is readable and writable;
/// `state` says what the checkpoint found tells.
async fn lease_verdict(
    store: &dyn crate::ports::CursorStore,
    key: &str,
    place: &str,
    shared: &crate::config::Shared,
    state: impl FnOnce(Option<Checkpoint>) -> String,
) -> Verdict {
    match store.acquire(key, SystemTime::now() + LEASE_PROBE).await {
        Ok(checkpoint) => match store.release(key).await {
            Ok(()) => {
                Verdict::pass("cursor store", format!("{place}: read and written, lease free{}", state(checkpoint)))
            }
            Err(err) => Verdict::fail(
                "cursor store",
                format!("{place}: read, but the lease could not be given back: {err}"),
                "check that the role may dynamodb:UpdateItem the table",
            ),
        },
        Err(CursorError::Busy { .. }) => {
            Verdict::pass("cursor store", format!("{place}: a run holds the lease right now (draining)"))
        }
        Err(err) => Verdict::fail("cursor store", format!("{place}: {err}"), store_remedy(shared)),
    }
}

/// Where cursors and records live, for the reports.
fn store_place(shared: &crate::config::Shared) -> String {
    match &shared.cursor_table {
        Some(table) => format!("DynamoDB table {table}"),
        None => format!("files under {}", shared.state_dir.display()),
    }
}

fn store_remedy(shared: &crate::config::Shared) -> String {
    match &shared.cursor_table {
        Some(table) => format!(
            "check that table {table} exists in this region (partition key \"target\", a string) and that the role may GetItem, UpdateItem, PutItem and BatchGetItem it"
        ),
        None => format!("check that {} can be created and written by this user", shared.state_dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_github_that_does_not_answer_is_told_apart_by_what_the_connection_said() {
        let remedy = |said: &str| unreachable_remedy(said);
        assert!(remedy("error sending request: invalid peer certificate: UnknownIssuer").contains("EXTRA_CA_BUNDLE"));
        assert!(remedy("error sending request: proxy connect failed").contains("HTTPS_PROXY"));
        assert!(remedy("dns error: failed to lookup address information").contains("DNS"));
        assert!(remedy("connection refused").contains("firewall"));
    }

    #[test]
    fn a_clock_a_minute_off_githubs_passes_and_more_fails_naming_the_fix() {
        assert_eq!(clock_verdict(-400).detail, "this host's clock agrees with GitHub's (within a second)");
        assert_eq!(clock_verdict(59_000).status, Status::Pass);
        let behind = clock_verdict(-3_600_000);
        assert_eq!(behind.status, Status::Fail);
        assert!(behind.detail.starts_with("GitHub's clock is 3600 s behind this host's"), "{}", behind.detail);
        assert!(behind.remedy.is_some_and(|r| r.contains("NTP")));
    }
}
