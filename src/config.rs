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

#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub github_api_url: Url,
    pub credentials: CredentialsConfig,
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

        let target = match (get("GITHUB_ORG"), get("GITHUB_ENTERPRISE")) {
            (Some(org), None) => Target::Organization(slug("GITHUB_ORG", &org)?),
            (None, Some(enterprise)) => Target::Enterprise(slug("GITHUB_ENTERPRISE", &enterprise)?),
            (Some(_), Some(_)) => {
                return Err(problem(
                    "GITHUB_ENTERPRISE",
                    "and GITHUB_ORG are both set: one deployment drains one of them",
                ));
            }
            (None, None) => {
                return Err(problem(
                    "GITHUB_ORG",
                    "is required (or GITHUB_ENTERPRISE): the organization whose audit log to drain",
                ));
            }
        };
        let credentials = match get("SECRET_ID") {
            Some(secret_id) => CredentialsConfig::SecretsManager { secret_id },
            None => CredentialsConfig::Environment {
                github: github_credential(&get)?,
                intake_key: get("SEKOIA_INTAKE_KEY").map(Secret::new),
            },
        };
        if let (Target::Enterprise(_), CredentialsConfig::Environment { github: GitHubCredential::App(_), .. }) =
            (&target, &credentials)
        {
            return Err(problem("GITHUB_APP_ID", ENTERPRISE_NEEDS_A_TOKEN));
        }
        let include = match get("GITHUB_INCLUDE").as_deref() {
            None | Some("web") => Include::Web,
            Some("git") => Include::Git,
            Some("all") => Include::All,
            Some(other) => return Err(problem("GITHUB_INCLUDE", format!("is {other:?}; expected web, git or all"))),
        };
        let max_run_seconds = match get("MAX_RUN_SECONDS") {
            None => 600,
            Some(text) => text.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                problem("MAX_RUN_SECONDS", format!("is {text:?}; expected a whole number of seconds above 0"))
            })?,
        };
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

        Ok(Self {
            target,
            github_api_url: base_url(
                "GITHUB_API_URL",
                get("GITHUB_API_URL").as_deref().unwrap_or(DEFAULT_GITHUB_API_URL),
            )?,
            credentials,
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
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok())
    }

    /// The cursor's name: each (target, include) keeps its own.
    pub fn cursor_key(&self) -> String {
        format!("{}/{}", self.target.path(), self.include.as_str())
    }

    /// The same settings for another organization (a Lambda payload's `{"org": …}`).
    pub fn for_org(&self, org: &str) -> Result<Self, ConfigError> {
        Ok(Self { target: Target::Organization(slug("org", org)?), ..self.clone() })
    }

    /// The same settings for an enterprise (a Lambda payload's `{"enterprise": …}`).
    pub fn for_enterprise(&self, enterprise: &str) -> Result<Self, ConfigError> {
        Ok(Self { target: Target::Enterprise(slug("enterprise", enterprise)?), ..self.clone() })
    }
}

pub const ENTERPRISE_NEEDS_A_TOKEN: &str = "is set, but the enterprise audit log takes classic personal access tokens only: use GITHUB_TOKEN (read:audit_log, enterprise admin)";

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
}
