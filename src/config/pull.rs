//! Pull mode's settings: the targets' credentials, GitHub's API, which events, and how late
//! events are looked for.

use std::time::Duration;

use url::Url;

use super::target::{cursor_key, slug, targets};
use super::{ConfigError, Include, Settings, Shared, Target, TargetEntry, defaults, problem};
use crate::checkpoint::MAX_DEEP_SWEEPS;
use crate::credentials::{AppCredential, GitHubCredential};
use crate::secret::Secret;

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
    pub shared: Shared,
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
    pub first_run_lookback: Duration,
    pub late_arrival_window: Duration,
    /// When each deep sweep reads a stretch once more, ascending; empty: no deep sweep.
    pub late_sweep_after: Vec<Duration>,
    /// Requests left unspent for other tools sharing the token; `None`: 5% of the hourly limit.
    pub rate_limit_reserve: Option<u32>,
}

impl Config {
    /// Reads every setting through `lookup` (the process environment, or it with CLI overrides).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::new(&lookup);
        Self::with_shared(Shared::load(&settings)?, &settings)
    }

    /// Pull mode's own settings, beside the shared ones read already.
    pub fn with_shared(shared: Shared, settings: &Settings) -> Result<Self, ConfigError> {
        let targets = targets(settings)?;
        let deployment_credentials = deployment_credentials(settings, &targets)?;
        let first = targets[0].clone();
        let (late_arrival_window, late_sweep_after) = late_reads(settings)?;
        Ok(Self {
            shared,
            target: first.target.clone(),
            credentials: credentials_of(&deployment_credentials, &first)?,
            targets,
            github_api_url: settings.base_url("GITHUB_API_URL", defaults::GITHUB_API_URL)?,
            deployment_credentials,
            include: Include::from_settings(settings)?,
            phrase: settings.get("GITHUB_PHRASE"),
            first_run_lookback: settings.duration("FIRST_RUN_LOOKBACK", defaults::FIRST_RUN_LOOKBACK)?,
            late_arrival_window,
            late_sweep_after,
            rate_limit_reserve: settings
                .get("RATE_LIMIT_RESERVE")
                .map(|text| {
                    text.parse::<u32>().map_err(|_| {
                        problem("RATE_LIMIT_RESERVE", format!("is {text:?}; expected a number of requests"))
                    })
                })
                .transpose()?,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok())
    }

    /// The cursor's name: each (target, include) keeps its own.
    pub fn cursor_key(&self) -> String {
        cursor_key(&self.target, self.include)
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

/// `SECRET_ID`, or the credential variables; none when every target reads its own secret.
fn deployment_credentials(
    settings: &Settings,
    targets: &[TargetEntry],
) -> Result<Option<CredentialsConfig>, ConfigError> {
    let own_secrets_only = targets.iter().all(|entry| entry.secret_id.is_some());
    let credentials = match settings.get("SECRET_ID") {
        Some(secret_id) => Some(CredentialsConfig::SecretsManager { secret_id }),
        None if own_secrets_only
            && settings.get("GITHUB_TOKEN").is_none()
            && settings.get("GITHUB_APP_ID").is_none() =>
        {
            None
        }
        None => Some(CredentialsConfig::Environment {
            github: github_credential(settings).map_err(|err| for_targets_without_a_secret(err, targets))?,
            intake_key: settings.get("SEKOIA_INTAKE_KEY").map(Secret::new),
        }),
    };
    if let Some(CredentialsConfig::Environment { github: GitHubCredential::App(_), .. }) = &credentials
        && targets.iter().any(|entry| entry.secret_id.is_none() && matches!(entry.target, Target::Enterprise(_)))
    {
        return Err(problem("GITHUB_APP_ID", ENTERPRISE_NEEDS_A_TOKEN));
    }
    Ok(credentials)
}

/// A missing deployment credential, when some targets have secrets of their own: said for
/// those that do not.
fn for_targets_without_a_secret(err: ConfigError, targets: &[TargetEntry]) -> ConfigError {
    let without: Vec<String> = targets.iter().filter(|e| e.secret_id.is_none()).map(TargetEntry::spec).collect();
    if without.len() == targets.len() {
        return err;
    }
    let problem_text = format!(
        "{} — needed for {}, which name no secret of their own (or give each =SECRET_ID in TARGETS, or set SECRET_ID)",
        err.problem,
        without.join(", ")
    );
    problem(err.variable, problem_text)
}

/// `LATE_ARRIVAL_WINDOW`, and `LATE_SWEEP_AFTER`'s ages (ascending, each longer than the window;
/// `0`: no deep sweep).
fn late_reads(settings: &Settings) -> Result<(Duration, Vec<Duration>), ConfigError> {
    let window = settings.duration("LATE_ARRIVAL_WINDOW", defaults::LATE_ARRIVAL_WINDOW)?;
    if window < Duration::from_secs(1) {
        return Err(problem("LATE_ARRIVAL_WINDOW", "must be at least 1s: GitHub's search has one-second precision"));
    }
    let list = settings.get("LATE_SWEEP_AFTER").unwrap_or_else(|| defaults::LATE_SWEEP_AFTER.to_owned());
    let mut deep = Vec::new();
    for item in list.split(',').map(str::trim) {
        let age = humantime::parse_duration(item).map_err(|_| {
            problem("LATE_SWEEP_AFTER", format!("is {list:?}; expected durations like 1h or 1h,6h (or 0)"))
        })?;
        deep.push(age);
    }
    deep.retain(|age| !age.is_zero());
    deep.sort_unstable();
    deep.dedup();
    if deep.first().is_some_and(|first| *first <= window) {
        return Err(problem(
            "LATE_SWEEP_AFTER",
            "must be longer than LATE_ARRIVAL_WINDOW (or 0 to turn the deep sweep off)",
        ));
    }
    if deep.len() > MAX_DEEP_SWEEPS {
        return Err(problem("LATE_SWEEP_AFTER", format!("lists more than {MAX_DEEP_SWEEPS} ages")));
    }
    Ok((window, deep))
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

pub const ENTERPRISE_NEEDS_A_TOKEN: &str = "is set, but the enterprise audit log takes classic personal access tokens only: use GITHUB_TOKEN (read:audit_log, enterprise admin)";

/// `GITHUB_APP_ID` + key means a GitHub App; otherwise `GITHUB_TOKEN`.
fn github_credential(settings: &Settings) -> Result<GitHubCredential, ConfigError> {
    let get = |name: &str| settings.get(name);
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
        assert_eq!(config.late_sweep_after, [Duration::from_secs(3600), Duration::from_secs(6 * 3600)]);
        assert_eq!(config.cursor_key(), "orgs/acme/web");
        assert!(config.shared.cursor_table.is_none());
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
        assert!(load(&vars).expect("valid").late_sweep_after.is_empty());
    }

    #[test]
    fn deep_sweep_ages_are_a_list_in_any_order_each_longer_than_the_window() {
        let ages = |list: &'static str| {
            let mut vars = MINIMAL.to_vec();
            vars.push(("LATE_SWEEP_AFTER", list));
            load(&vars).map(|c| c.late_sweep_after.iter().map(|d| d.as_secs() / 60).collect::<Vec<_>>())
        };
        assert_eq!(ages("4h, 1h").expect("valid"), [60, 240]);
        assert_eq!(ages("1h,1h,90m").expect("valid"), [60, 90]);
        for bad in ["1h,5m", "1h,2h,3h,4h", "1h,,2h", "1h,soon"] {
            assert_eq!(ages(bad).err().map(|e| e.variable), Some("LATE_SWEEP_AFTER"), "{bad}");
        }
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
    fn targets_and_the_single_target_variables_exclude_each_other_and_own_secrets_need_no_token() {
        let both = load(&[("TARGETS", "org:a"), ("GITHUB_ORG", "b"), ("GITHUB_TOKEN", "t")]);
        assert_eq!(both.err().map(|e| e.variable), Some("TARGETS"));
        // Every target with a secret of its own: no deployment-wide credential needed.
        assert!(load(&[("TARGETS", "org:a=s1,org:b=s2")]).is_ok());
        let mixed = load(&[("TARGETS", "org:a=s1,org:b")]).expect_err("org:b has no credential");
        assert_eq!(mixed.variable, "GITHUB_TOKEN");
        assert!(mixed.problem.contains("needed for org:b,") && !mixed.problem.contains("org:a"), "{}", mixed.problem);
    }
}
