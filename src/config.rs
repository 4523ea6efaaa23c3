//! The environment contract: the one place that reads configuration, for every entry point.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::credentials::{AppCredential, GitHubCredential};
use crate::secret::Secret;

pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_INTAKE_URL: &str = "https://intake.sekoia.io";

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

pub(crate) fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

/// Whose audit log to drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Organization(String),
    /// Slug or id. Its audit log takes classic personal access tokens only.
    Enterprise(String),
}

impl Target {
    /// `orgs/acme`, `enterprises/acme-corp`: the API path prefix, and the cursor key's start.
    pub fn path(&self) -> String {
        match self {
            Target::Organization(org) => format!("orgs/{org}"),
            Target::Enterprise(enterprise) => format!("enterprises/{enterprise}"),
        }
    }

    /// `org:acme`, `enterprise:acme-corp`: as `TARGETS` names it.
    pub fn spec(&self) -> String {
        match self {
            Target::Organization(org) => format!("org:{org}"),
            Target::Enterprise(enterprise) => format!("enterprise:{enterprise}"),
        }
    }

    /// The API path under the base URL.
    pub fn audit_log_path(&self) -> String {
        format!("{}/audit-log", self.path())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    Web,
    Git,
    All,
}

impl Include {
    pub fn as_str(self) -> &'static str {
        match self {
            Include::Web => "web",
            Include::Git => "git",
            Include::All => "all",
        }
    }
}

/// Where the GitHub and intake credentials come from.
#[derive(Debug, Clone)]
pub enum CredentialsConfig {
    /// `GITHUB_TOKEN` or `GITHUB_APP_*`, and `SEKOIA_INTAKE_KEY` (local runs).
    Environment { github: GitHubCredential, intake_key: Option<Secret> },
    /// One Secrets Manager secret, named by `SECRET_ID`.
    SecretsManager { secret_id: String },
}

/// One target a deployment serves, with the secret it reads if not the deployment's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    pub target: Target,
    /// A Secrets Manager secret of its own (its GitHub credential and intake key).
    pub secret_id: Option<String>,
}

impl TargetEntry {
    /// `org:NAME` or `enterprise:SLUG`, optionally `=SECRET_ID`: one item of `TARGETS`, or
    /// a payload's `target`.
    pub fn parse(variable: &'static str, text: &str) -> Result<Self, ConfigError> {
        let text = text.trim();
        let (spec, secret_id) = match text.split_once('=') {
            Some((spec, secret)) if !secret.trim().is_empty() => (spec, Some(secret.trim().to_owned())),
            Some(_) => return Err(problem(variable, format!("{text:?} names no secret after '='"))),
            None => (text, None),
        };
        let target = match spec.trim().split_once(':') {
            Some(("org", name)) => Target::Organization(slug(variable, name)?),
            Some(("enterprise", name)) => Target::Enterprise(slug(variable, name)?),
            _ => {
                return Err(problem(
                    variable,
                    format!("has {text:?}; expected org:NAME or enterprise:SLUG, optionally followed by =SECRET_ID"),
                ));
            }
        };
        Ok(Self { target, secret_id })
    }

    /// `org:acme`, `enterprise:acme-corp` (the secret left out).
    pub fn spec(&self) -> String {
        self.target.spec()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The target this configuration drains: the first of `targets`, or one chosen by
    /// [`Config::for_target`].
    pub target: Target,
    /// Every target the deployment serves (`TARGETS`, or the one of `GITHUB_ORG`/`GITHUB_ENTERPRISE`).
    pub targets: Vec<TargetEntry>,
    pub github_api_url: Url,
    /// The credentials of `target`.
    pub credentials: CredentialsConfig,
    /// `SECRET_ID`, or the credential variables; `None` when every target names its own secret.
    deployment_credentials: Option<CredentialsConfig>,
    pub include: Include,
    /// Extra search qualifiers, ANDed to the connector's own `created:` qualifier.
    pub phrase: Option<String>,
    pub intake_url: Url,
    pub state_dir: PathBuf,
    /// DynamoDB table holding the cursors; `None`: files under `state_dir`.
    pub cursor_table: Option<String>,
    pub first_run_lookback: Duration,
    pub late_arrival_window: Duration,
    /// When the deep sweep reads a stretch once more; `None`: no deep sweep.
    pub late_sweep_after: Option<Duration>,
    pub max_run: Duration,
    /// Requests left unspent for other tools sharing the token; `None`: 5% of the hourly limit.
    pub rate_limit_reserve: Option<u32>,
}

impl Config {
    /// Reads every setting through `lookup` (the process environment, or it with CLI overrides).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let targets = targets(&get)?;
        let own_secrets_only = targets.iter().all(|entry| entry.secret_id.is_some());
        let deployment_credentials = match get("SECRET_ID") {
            Some(secret_id) => Some(CredentialsConfig::SecretsManager { secret_id }),
            // Every target reads its own secret: no deployment-wide credential is needed.
            None if own_secrets_only && get("GITHUB_TOKEN").is_none() && get("GITHUB_APP_ID").is_none() => None,
            None => Some(CredentialsConfig::Environment {
                github: github_credential(&get)?,
                intake_key: get("SEKOIA_INTAKE_KEY").map(Secret::new),
            }),
        };
        if let Some(CredentialsConfig::Environment { github: GitHubCredential::App(_), .. }) = &deployment_credentials
            && targets.iter().any(|entry| entry.secret_id.is_none() && matches!(entry.target, Target::Enterprise(_)))
        {
            return Err(problem("GITHUB_APP_ID", ENTERPRISE_NEEDS_A_TOKEN));
        }
        let first = targets[0].clone();
        let credentials = credentials_of(&deployment_credentials, &first)?;
        let include = match get("GITHUB_INCLUDE").as_deref() {
            None | Some("web") => Include::Web,
            Some("git") => Include::Git,
            Some("all") => Include::All,
            Some(other) => return Err(problem("GITHUB_INCLUDE", format!("is {other:?}; expected web, git or all"))),
        };
        let max_run_seconds = max_run_seconds(&get)?;
        let rate_limit_reserve = get("RATE_LIMIT_RESERVE")
            .map(|text| {
                text.parse::<u32>()
                    .map_err(|_| problem("RATE_LIMIT_RESERVE", format!("is {text:?}; expected a number of requests")))
            })
            .transpose()?;
        let late_arrival_window = duration("LATE_ARRIVAL_WINDOW", get("LATE_ARRIVAL_WINDOW"), "5m")?;
        if late_arrival_window < Duration::from_secs(1) {
            return Err(problem(
                "LATE_ARRIVAL_WINDOW",
                "must be at least 1s: GitHub's search has one-second precision",
            ));
        }
        let late_sweep_after =
            Some(duration("LATE_SWEEP_AFTER", get("LATE_SWEEP_AFTER"), "1h")?).filter(|d| !d.is_zero());
        if late_sweep_after.is_some_and(|d| d <= late_arrival_window) {
            return Err(problem(
                "LATE_SWEEP_AFTER",
                "must be longer than LATE_ARRIVAL_WINDOW (or 0 to turn the deep sweep off)",
            ));
        }

        let config = Self {
            target: first.target.clone(),
            targets,
            github_api_url: base_url(
                "GITHUB_API_URL",
                get("GITHUB_API_URL").as_deref().unwrap_or(DEFAULT_GITHUB_API_URL),
            )?,
            credentials,
            deployment_credentials,
            include,
            phrase: get("GITHUB_PHRASE"),
            intake_url: base_url(
                "SEKOIA_INTAKE_URL",
                get("SEKOIA_INTAKE_URL").as_deref().unwrap_or(DEFAULT_INTAKE_URL),
            )?,
            state_dir: PathBuf::from(get("STATE_DIR").unwrap_or_else(|| "./state".to_owned())),
            cursor_table: get("CURSOR_TABLE"),
            first_run_lookback: duration("FIRST_RUN_LOOKBACK", get("FIRST_RUN_LOOKBACK"), "24h")?,
            late_arrival_window,
            late_sweep_after,
            max_run: Duration::from_secs(max_run_seconds),
            rate_limit_reserve,
        };
        Ok(config)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok())
    }

    /// The cursor's name: each (target, include) keeps its own.
    pub fn cursor_key(&self) -> String {
        format!("{}/{}", self.target.path(), self.include.as_str())
    }

    /// The same settings for another organization (a Lambda payload's `{"org": …}`), with the
    /// deployment's own secret.
    pub fn for_org(&self, org: &str) -> Result<Self, ConfigError> {
        self.for_entry(TargetEntry { target: Target::Organization(slug("org", org)?), secret_id: None })
    }

    /// The same settings for an enterprise (a Lambda payload's `{"enterprise": …}`).
    pub fn for_enterprise(&self, enterprise: &str) -> Result<Self, ConfigError> {
        self.for_entry(TargetEntry { target: Target::Enterprise(slug("enterprise", enterprise)?), secret_id: None })
    }

    /// One of the configured targets, by its `TARGETS` item (a schedule's `{"target": …}`,
    /// the CLI's `--target`); its secret is the configured one, never one the caller names.
    pub fn for_target(&self, spec: &str) -> Result<Self, ConfigError> {
        let asked = TargetEntry::parse("target", spec)?;
        let entry = self
            .targets
            .iter()
            .find(|entry| {
                entry.target == asked.target && (asked.secret_id.is_none() || asked.secret_id == entry.secret_id)
            })
            .ok_or_else(|| {
                problem("target", format!("{spec:?} is not one of the configured targets ({})", self.target_list()))
            })?;
        self.for_entry(entry.clone())
    }

    /// The configuration for `target` (a `TARGETS` item), or the only configured target.
    pub fn select(&self, target: Option<&str>) -> Result<Self, ConfigError> {
        match target {
            Some(target) => self.for_target(target),
            None if self.targets.len() > 1 => Err(problem(
                "target",
                format!("is required: this deployment serves several targets ({})", self.target_list()),
            )),
            None => Ok(self.clone()),
        }
    }

    /// `org:a, enterprise:b`: the targets, for messages.
    pub fn target_list(&self) -> String {
        self.targets.iter().map(TargetEntry::spec).collect::<Vec<_>>().join(", ")
    }

    fn for_entry(&self, entry: TargetEntry) -> Result<Self, ConfigError> {
        let credentials = credentials_of(&self.deployment_credentials, &entry)?;
        if let (Target::Enterprise(_), CredentialsConfig::Environment { github: GitHubCredential::App(_), .. }) =
            (&entry.target, &credentials)
        {
            return Err(problem("GITHUB_APP_ID", ENTERPRISE_NEEDS_A_TOKEN));
        }
        Ok(Self { target: entry.target, credentials, ..self.clone() })
    }
}

/// A target's own secret, or the deployment's credentials.
fn credentials_of(
    deployment: &Option<CredentialsConfig>,
    entry: &TargetEntry,
) -> Result<CredentialsConfig, ConfigError> {
    match (&entry.secret_id, deployment) {
        (Some(secret_id), _) => Ok(CredentialsConfig::SecretsManager { secret_id: secret_id.clone() }),
        (None, Some(credentials)) => Ok(credentials.clone()),
        (None, None) => Err(problem(
            "SECRET_ID",
            format!("is required for {}, which names no secret of its own (or set GITHUB_TOKEN)", entry.spec()),
        )),
    }
}

/// `TARGETS` (comma-separated), or the single `GITHUB_ORG` / `GITHUB_ENTERPRISE`.
fn targets(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<TargetEntry>, ConfigError> {
    match (get("TARGETS"), get("GITHUB_ORG"), get("GITHUB_ENTERPRISE")) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err(problem("TARGETS", "and GITHUB_ORG or GITHUB_ENTERPRISE are both set: list every target in TARGETS"))
        }
        (Some(list), None, None) => {
            let mut entries = Vec::new();
            let items: Vec<&str> = list.split(',').map(str::trim).filter(|item| !item.is_empty()).collect();
            for (index, item) in items.iter().enumerate() {
                let entry = TargetEntry::parse("TARGETS", item)?;
                if entries.iter().any(|e: &TargetEntry| e.target == entry.target) {
                    return Err(problem("TARGETS", format!("lists {} twice", entry.spec())));
                }
                if let Some(other) = items[..index].iter().find(|other| resource_name(other) == resource_name(item)) {
                    return Err(problem("TARGETS", format!("lists {other} and {item}, {SAME_RESOURCE_NAME}")));
                }
                entries.push(entry);
            }
            if entries.is_empty() {
                return Err(problem("TARGETS", "is empty: list org:NAME or enterprise:SLUG items"));
            }
            Ok(entries)
        }
        (None, Some(org), None) => {
            Ok(vec![TargetEntry { target: Target::Organization(slug("GITHUB_ORG", &org)?), secret_id: None }])
        }
        (None, None, Some(enterprise)) => Ok(vec![TargetEntry {
            target: Target::Enterprise(slug("GITHUB_ENTERPRISE", &enterprise)?),
            secret_id: None,
        }]),
        (None, Some(_), Some(_)) => {
            Err(problem("GITHUB_ENTERPRISE", "and GITHUB_ORG are both set: name one, or list both in TARGETS"))
        }
        (None, None, None) => Err(problem(
            "GITHUB_ORG",
            "is required (or GITHUB_ENTERPRISE, or TARGETS): the organization whose audit log to drain",
        )),
    }
}

/// The template's per-target resources are named after the item's letters and digits alone
/// (`Fn::ForEach` drops the rest), so two items that differ only in the rest cannot share a stack.
pub const SAME_RESOURCE_NAME: &str = "which differ only in characters other than letters and digits: a stack cannot hold both (their schedules and alarms would get one resource name); deploy one in another stack";

fn resource_name(item: &str) -> String {
    item.chars().filter(char::is_ascii_alphanumeric).collect()
}

pub const ENTERPRISE_NEEDS_A_TOKEN: &str = "is set, but the enterprise audit log takes classic personal access tokens only: use GITHUB_TOKEN (read:audit_log, enterprise admin)";

/// Push mode's settings: the intake, its key and the store; no GitHub target or credential,
/// as the stream's files come from S3.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub intake_url: Url,
    /// `SECRET_ID` (its `sekoia_intake_key`), else `SEKOIA_INTAKE_KEY`.
    pub intake_key: IntakeKeyConfig,
    pub state_dir: PathBuf,
    pub cursor_table: Option<String>,
    /// `STREAM_DEDUPE_WINDOW`: how far behind the newest event forwarded the delivered record
    /// still recognises GitHub's repeats.
    pub dedupe_window: Duration,
    /// `STREAM_BUCKET`: the bucket the stream writes to (the Lambda's, set by the template).
    pub stream_bucket: Option<String>,
    pub max_run: Duration,
}

#[derive(Debug, Clone)]
pub enum IntakeKeyConfig {
    Environment(Option<Secret>),
    SecretsManager { secret_id: String },
}

impl PushConfig {
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let dedupe_window = duration("STREAM_DEDUPE_WINDOW", get("STREAM_DEDUPE_WINDOW"), "1h")?;
        if dedupe_window.is_zero() {
            return Err(problem("STREAM_DEDUPE_WINDOW", "must be above 0: GitHub's stream delivers at least once"));
        }
        let stream_bucket = get("STREAM_BUCKET").map(|b| bucket_name("STREAM_BUCKET", &b)).transpose()?;
        Ok(Self {
            intake_url: base_url(
                "SEKOIA_INTAKE_URL",
                get("SEKOIA_INTAKE_URL").as_deref().unwrap_or(DEFAULT_INTAKE_URL),
            )?,
            intake_key: match get("SECRET_ID") {
                Some(secret_id) => IntakeKeyConfig::SecretsManager { secret_id },
                None => IntakeKeyConfig::Environment(get("SEKOIA_INTAKE_KEY").map(Secret::new)),
            },
            state_dir: PathBuf::from(get("STATE_DIR").unwrap_or_else(|| "./state".to_owned())),
            cursor_table: get("CURSOR_TABLE"),
            dedupe_window,
            stream_bucket,
            max_run: Duration::from_secs(max_run_seconds(&get)?),
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok())
    }
}

/// Whether any pull target is configured at all (a push-only deployment configures none).
pub fn pull_targets_configured(lookup: impl Fn(&str) -> Option<String>) -> bool {
    ["TARGETS", "GITHUB_ORG", "GITHUB_ENTERPRISE"].iter().any(|name| lookup(name).is_some_and(|v| !v.trim().is_empty()))
}

/// S3's rules for bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
pub fn bucket_name(variable: &'static str, name: &str) -> Result<String, ConfigError> {
    let name = name.trim();
    let valid = (3..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid {
        return Err(problem(
            variable,
            format!("{name:?} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"),
        ));
    }
    Ok(name.to_owned())
}

fn max_run_seconds(get: &impl Fn(&str) -> Option<String>) -> Result<u64, ConfigError> {
    match get("MAX_RUN_SECONDS") {
        None => Ok(600),
        Some(text) => text.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            problem("MAX_RUN_SECONDS", format!("is {text:?}; expected a whole number of seconds above 0"))
        }),
    }
}

/// `GITHUB_APP_ID` + key means a GitHub App; otherwise `GITHUB_TOKEN`.
fn github_credential(get: &impl Fn(&str) -> Option<String>) -> Result<GitHubCredential, ConfigError> {
    let Some(app_id) = get("GITHUB_APP_ID") else {
        return get("GITHUB_TOKEN").map(|t| GitHubCredential::Token(Secret::new(t))).ok_or_else(|| {
            problem(
                "GITHUB_TOKEN",
                "is required (or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY, or SECRET_ID): a classic personal access token with read:audit_log",
            )
        });
    };
    let (variable, pem) = match (get("GITHUB_APP_PRIVATE_KEY"), get("GITHUB_APP_PRIVATE_KEY_FILE")) {
        (Some(pem), _) => ("GITHUB_APP_PRIVATE_KEY", pem),
        (None, Some(path)) => (
            "GITHUB_APP_PRIVATE_KEY_FILE",
            std::fs::read_to_string(&path)
                .map_err(|e| problem("GITHUB_APP_PRIVATE_KEY_FILE", format!("cannot be read ({path}): {e}")))?,
        ),
        (None, None) => {
            return Err(problem(
                "GITHUB_APP_PRIVATE_KEY",
                "is required with GITHUB_APP_ID (the app's PEM private key; or GITHUB_APP_PRIVATE_KEY_FILE)",
            ));
        }
    };
    let installation_id = get("GITHUB_APP_INSTALLATION_ID")
        .map(|id| {
            id.parse::<u64>()
                .map_err(|_| problem("GITHUB_APP_INSTALLATION_ID", format!("is {id:?}; expected a number")))
        })
        .transpose()?;
    AppCredential::new(app_id, &pem, installation_id).map(GitHubCredential::App).map_err(|p| problem(variable, p))
}

fn slug(variable: &'static str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(problem(variable, format!("{name:?} is not a name GitHub uses (letters, digits, '-')")));
    }
    Ok(name.to_owned())
}

fn duration(variable: &'static str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&text)
        .map_err(|_| problem(variable, format!("is {text:?}; expected a duration like 30s, 5m, 24h or 7d")))
}

/// https only, except for loopback hosts (the simulator, tests).
fn base_url(variable: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim_end_matches('/'))
        .map_err(|e| problem(variable, format!("is {text:?}, not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => return Err(problem(variable, format!("is {text:?}, which has no host"))),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => {
            Err(problem(variable, format!("is {text:?}: plain http is only allowed for loopback hosts; use https")))
        }
        other => Err(problem(variable, format!("is {text:?}: scheme {other} is not https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(|name| map.get(name).cloned())
    }

    const MINIMAL: [(&str, &str); 2] = [("GITHUB_ORG", "acme"), ("GITHUB_TOKEN", "ghp_x")];

    #[test]
    fn defaults_apply_when_only_the_required_values_are_set() {
        let config = load(&MINIMAL).expect("valid");
        assert_eq!(config.github_api_url.as_str(), "https://api.github.com/");
        assert_eq!(config.include, Include::Web);
        assert_eq!(config.first_run_lookback, Duration::from_secs(24 * 3600));
        assert_eq!(config.late_arrival_window, Duration::from_secs(300));
        assert_eq!(config.late_sweep_after, Some(Duration::from_secs(3600)));
        assert_eq!(config.cursor_key(), "orgs/acme/web");
        assert!(config.cursor_table.is_none());
        assert!(matches!(config.credentials, CredentialsConfig::Environment { intake_key: None, .. }));
    }

    #[test]
    fn an_enterprise_is_a_target_of_its_own_and_refuses_app_credentials() {
        let config = load(&[("GITHUB_ENTERPRISE", "acme-corp"), ("GITHUB_TOKEN", "t"), ("GITHUB_INCLUDE", "all")])
            .expect("valid");
        assert_eq!(config.target.audit_log_path(), "enterprises/acme-corp/audit-log");
        assert_eq!(config.cursor_key(), "enterprises/acme-corp/all");
        assert_eq!(
            load(&[("GITHUB_ENTERPRISE", "e"), ("GITHUB_ORG", "o"), ("GITHUB_TOKEN", "t")]).err().map(|e| e.variable),
            Some("GITHUB_ENTERPRISE")
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("GITHUB_INCLUDE", "both"),
            ("FIRST_RUN_LOOKBACK", "yesterday"),
            ("LATE_ARRIVAL_WINDOW", "5 parsecs"),
            ("MAX_RUN_SECONDS", "0"),
            ("GITHUB_API_URL", "http://api.github.com"),
            ("SEKOIA_INTAKE_URL", "ftp://intake.sekoia.io"),
            ("GITHUB_ORG", "acme/../other"),
            ("RATE_LIMIT_RESERVE", "-1"),
            ("LATE_SWEEP_AFTER", "an hour"),
            ("LATE_SWEEP_AFTER", "5m"),
            ("LATE_ARRIVAL_WINDOW", "0s"),
        ];
        for (variable, value) in cases {
            let mut vars = MINIMAL.to_vec();
            vars.push((variable, value));
            let err = load(&vars).expect_err(variable);
            assert_eq!(err.variable, variable);
        }
        assert_eq!(load(&[("GITHUB_ORG", "acme")]).err().map(|e| e.variable), Some("GITHUB_TOKEN"));
        assert_eq!(load(&[("GITHUB_TOKEN", "t")]).err().map(|e| e.variable), Some("GITHUB_ORG"));
    }

    #[test]
    fn a_zero_deep_sweep_age_turns_the_deep_sweep_off() {
        let mut vars = MINIMAL.to_vec();
        vars.push(("LATE_SWEEP_AFTER", "0"));
        assert_eq!(load(&vars).expect("valid").late_sweep_after, None);
    }

    #[test]
    fn a_secret_id_replaces_the_token_variables() {
        let config = load(&[("GITHUB_ORG", "acme"), ("SECRET_ID", "prod/github-audit")]).expect("valid");
        assert!(
            matches!(config.credentials, CredentialsConfig::SecretsManager { ref secret_id } if secret_id == "prod/github-audit")
        );
    }

    #[test]
    fn another_org_keeps_the_other_settings_and_gets_its_own_cursor() {
        let config = load(&MINIMAL).expect("valid");
        assert_eq!(config.for_enterprise("acme-corp").expect("valid").cursor_key(), "enterprises/acme-corp/web");
        let other = config.for_org("globex").expect("valid name");
        assert_eq!(other.cursor_key(), "orgs/globex/web");
        assert_eq!(other.github_api_url, config.github_api_url);
        assert!(config.for_org("../x").is_err());
    }

    #[test]
    fn plain_http_is_accepted_for_loopback_only() {
        for url in ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"] {
            let mut vars = MINIMAL.to_vec();
            vars.push(("GITHUB_API_URL", url));
            assert!(load(&vars).is_ok(), "{url}");
        }
    }

    #[test]
    fn the_token_never_appears_in_the_config_debug_output() {
        let config = load(&[
            ("GITHUB_ORG", "acme"),
            ("GITHUB_TOKEN", "ghp_supersecret"),
            ("SEKOIA_INTAKE_KEY", "intake-secret"),
        ])
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("supersecret") && !shown.contains("intake-secret"), "{shown}");
    }

    #[test]
    fn targets_list_several_each_with_its_own_cursor_and_optionally_its_own_secret() {
        let config = load(&[
            ("TARGETS", "org:acme, enterprise:acme-corp=github-audit-sekoia/acme-corp ,org:globex.io"),
            ("SECRET_ID", "github-audit-sekoia"),
        ])
        .expect("valid");
        assert_eq!(config.target_list(), "org:acme, enterprise:acme-corp, org:globex.io");
        assert_eq!(config.cursor_key(), "orgs/acme/web");
        let enterprise = config.for_target("enterprise:acme-corp=github-audit-sekoia/acme-corp").expect("listed");
        assert_eq!(enterprise.cursor_key(), "enterprises/acme-corp/web");
        assert!(matches!(enterprise.credentials,
            CredentialsConfig::SecretsManager { ref secret_id } if secret_id == "github-audit-sekoia/acme-corp"));
        let by_name = config.for_target("enterprise:acme-corp").expect("listed");
        assert!(
            matches!(by_name.credentials, CredentialsConfig::SecretsManager { ref secret_id } if secret_id.ends_with("acme-corp"))
        );
        let globex = config.for_target("org:globex.io").expect("listed");
        assert!(
            matches!(globex.credentials, CredentialsConfig::SecretsManager { ref secret_id } if secret_id == "github-audit-sekoia")
        );
        // A caller cannot pick another secret, nor a target the deployment does not serve.
        assert_eq!(config.for_target("org:acme=someone-elses-secret").err().map(|e| e.variable), Some("target"));
        assert_eq!(config.for_target("org:initech").err().map(|e| e.variable), Some("target"));
    }

    #[test]
    fn targets_whose_resource_names_collide_in_the_template_are_refused() {
        for list in ["org:a-b,org:ab", "org:ab,org:a=b", "org:a.b,enterprise:x,org:a_b"] {
            let err = load(&[("TARGETS", list), ("SECRET_ID", "s")]).expect_err(list);
            assert_eq!(err.variable, "TARGETS");
            assert!(err.problem.contains("one resource name"), "{list}: {}", err.problem);
        }
        assert!(load(&[("TARGETS", "org:a-b,org:a-c"), ("SECRET_ID", "s")]).is_ok());
    }

    #[test]
    fn a_bad_targets_list_is_refused_naming_it() {
        for list in ["acme", "org:", "team:acme", "org:acme,org:acme", "org:acme=", " , ", "org:a/b"] {
            let err = load(&[("TARGETS", list), ("GITHUB_TOKEN", "t")]).expect_err(list);
            assert_eq!(err.variable, "TARGETS", "{list}");
        }
        let both = load(&[("TARGETS", "org:a"), ("GITHUB_ORG", "b"), ("GITHUB_TOKEN", "t")]);
        assert_eq!(both.err().map(|e| e.variable), Some("TARGETS"));
        // Every target with a secret of its own: no deployment-wide credential needed.
        assert!(load(&[("TARGETS", "org:a=s1,org:b=s2")]).is_ok());
        assert_eq!(load(&[("TARGETS", "org:a=s1,org:b")]).err().map(|e| e.variable), Some("GITHUB_TOKEN"));
    }

    fn push(vars: &[(&str, &str)]) -> Result<PushConfig, ConfigError> {
        PushConfig::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn push_mode_needs_no_github_setting_and_checks_its_own() {
        let config = push(&[("SEKOIA_INTAKE_KEY", "k"), ("STREAM_BUCKET", "audit-stream")]).expect("valid");
        assert_eq!(
            (config.dedupe_window, config.stream_bucket.as_deref()),
            (Duration::from_secs(3_600), Some("audit-stream"))
        );
        assert!(matches!(
            push(&[("SECRET_ID", "s")]).expect("valid").intake_key,
            IntakeKeyConfig::SecretsManager { .. }
        ));
        for (variable, value) in [
            ("STREAM_DEDUPE_WINDOW", "0s"),
            ("STREAM_DEDUPE_WINDOW", "an hour"),
            ("STREAM_BUCKET", "Audit_Stream"),
            ("STREAM_BUCKET", "ab"),
            ("STREAM_BUCKET", "-audit"),
            ("SEKOIA_INTAKE_URL", "http://intake.example.com"),
        ] {
            assert_eq!(push(&[(variable, value)]).err().map(|e| e.variable), Some(variable), "{value}");
        }
        assert!(!pull_targets_configured(|name| (name == "STREAM_BUCKET").then(|| "b".to_owned())));
        assert!(pull_targets_configured(|name| (name == "TARGETS").then(|| "org:a".to_owned())));
    }

    proptest::proptest! {
        #[test]
        fn any_target_text_parses_or_is_refused_without_panicking(text in ".{0,80}") {
            if let Ok(entry) = TargetEntry::parse("target", &text) {
                proptest::prop_assert!(TargetEntry::parse("target", &entry.spec()).is_ok());
            }
        }
    }
}
