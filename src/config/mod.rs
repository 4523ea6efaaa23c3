//! The environment contract: the one place that reads configuration, for every entry point.
//! By concern: [`target`] (which audit logs, and their cursor names), [`pull`] (reading
//! GitHub's API), [`push`] (forwarding a stream's bucket); here, what both modes read
//! ([`Shared`]: the intake, where state lives, the time budget), the defaults and the checks
//! every setting goes through.

pub mod pull;
pub mod push;
pub mod target;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::network::ExtraRoots;
use crate::shaping::{ActionFilter, Shaping, action_patterns};

pub use pull::{Config, CredentialsConfig, ENTERPRISE_NEEDS_A_TOKEN};
pub use push::{IntakeKeyConfig, PushConfig, bucket_name, pull_targets_configured};
pub use target::{Include, SAME_RESOURCE_NAME, Target, TargetEntry};

/// Every default, written once: the settings read them, the CLI's help shows them.
pub mod defaults {
    pub const GITHUB_API_URL: &str = "https://api.github.com";
    pub const INTAKE_URL: &str = "https://intake.sekoia.io";
    /// Where state lives without `STATE_DIR`: `$XDG_STATE_HOME/github-audit-sekoia`, else
    /// `~/.local/state/github-audit-sekoia` (absolute, so cron's or systemd's working directory
    /// does not matter), else `./state` when there is no home.
    pub const STATE_DIR: &str = "$XDG_STATE_HOME/github-audit-sekoia, else ~/.local/state/github-audit-sekoia";
    pub const MAX_RUN_SECONDS: u64 = 600;
    pub const INCLUDE: &str = "web";
    pub const FIRST_RUN_LOOKBACK: &str = "24h";
    pub const LATE_ARRIVAL_WINDOW: &str = "5m";
    pub const LATE_SWEEP_AFTER: &str = "1h,6h";
    pub const STREAM_DEDUPE_WINDOW: &str = "1h";
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

pub(crate) fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { variable, problem: problem.into() }
}

/// Settings by name (the process environment, or it with CLI overrides): trimmed, and an empty
/// value is no value.
pub struct Settings<'a>(&'a dyn Fn(&str) -> Option<String>);

impl<'a> Settings<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self(lookup)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// A duration like 30s, 5m, 24h or 7d, or `default`.
    fn duration(&self, variable: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let text = self.get(variable).unwrap_or_else(|| default.to_owned());
        humantime::parse_duration(&text)
            .map_err(|_| problem(variable, format!("is {text:?}; expected a duration like 30s, 5m, 24h or 7d")))
    }

    /// A base URL: https only, except for loopback hosts (the simulator, tests).
    fn base_url(&self, variable: &'static str, default: &str) -> Result<Url, ConfigError> {
        base_url(variable, self.get(variable).as_deref().unwrap_or(default))
    }
}

/// What both modes read: the intake, where cursors and records live, the time budget.
#[derive(Debug, Clone)]
pub struct Shared {
    pub intake_url: Url,
    /// Cursor files (and push mode's records) unless `cursor_table` is set.
    pub state_dir: PathBuf,
    /// DynamoDB table holding the cursors; `None`: files under `state_dir`.
    pub cursor_table: Option<String>,
    pub max_run: Duration,
    /// `FILL_CREATED_AT`, `INCLUDE_ACTIONS`, `EXCLUDE_ACTIONS`: what is sent of what is read.
    pub shaping: Shaping,
    /// `EXTRA_CA_BUNDLE`: roots trusted beside the system's, by every client.
    pub extra_roots: ExtraRoots,
}

impl Shared {
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        let max_run_seconds = match settings.get("MAX_RUN_SECONDS") {
            None => defaults::MAX_RUN_SECONDS,
            Some(text) => text.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                problem("MAX_RUN_SECONDS", format!("is {text:?}; expected a whole number of seconds above 0"))
            })?,
        };
        Ok(Self {
            intake_url: settings.base_url("SEKOIA_INTAKE_URL", defaults::INTAKE_URL)?,
            state_dir: settings.get("STATE_DIR").map_or_else(|| default_state_dir(settings), PathBuf::from),
            cursor_table: settings.get("CURSOR_TABLE"),
            max_run: Duration::from_secs(max_run_seconds),
            shaping: shaping(settings)?,
            extra_roots: match settings.get("EXTRA_CA_BUNDLE") {
                Some(value) => ExtraRoots::parse(&value).map_err(|p| problem("EXTRA_CA_BUNDLE", p))?,
                None => ExtraRoots::default(),
            },
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&Settings::new(&|name| std::env::var(name).ok()))
    }

    /// The function keeps its cursors and records in DynamoDB: its own disk does not outlive
    /// the container.
    pub fn require_table(&self) -> Result<(), ConfigError> {
        match self.cursor_table {
            Some(_) => Ok(()),
            None => Err(problem("CURSOR_TABLE", "is required in Lambda: the DynamoDB table that keeps the cursors")),
        }
    }
}

fn shaping(settings: &Settings) -> Result<Shaping, ConfigError> {
    let fill_created_at = match settings.get("FILL_CREATED_AT").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(problem("FILL_CREATED_AT", format!("is {other:?}; expected true or false"))),
    };
    let patterns = |variable: &'static str| match settings.get(variable) {
        Some(list) => action_patterns(&list).map_err(|p| problem(variable, p)),
        None => Ok(Vec::new()),
    };
    let filter = ActionFilter::new(patterns("INCLUDE_ACTIONS")?, patterns("EXCLUDE_ACTIONS")?);
    Ok(Shaping { fill_created_at, filter })
}

/// [`defaults::STATE_DIR`], from `XDG_STATE_HOME` and `HOME`.
fn default_state_dir(settings: &Settings) -> PathBuf {
    let absolute = |dir: String| Some(PathBuf::from(dir)).filter(|path| path.is_absolute());
    match (settings.get("XDG_STATE_HOME").and_then(absolute), settings.get("HOME").and_then(absolute)) {
        (Some(state), _) => state.join("github-audit-sekoia"),
        (None, Some(home)) => home.join(".local/state/github-audit-sekoia"),
        (None, None) => PathBuf::from("./state"),
    }
}

/// Whether `url`'s host is this machine: `localhost` or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// https only, except for loopback hosts (the simulator, tests).
fn base_url(variable: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim_end_matches('/'))
        .map_err(|e| problem(variable, format!("is {text:?}, not a URL: {e}")))?;
    if url.host().is_none() {
        return Err(problem(variable, format!("is {text:?}, which has no host")));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => {
            Err(problem(variable, format!("is {text:?}: plain http is only allowed for loopback hosts; use https")))
        }
        other => Err(problem(variable, format!("is {text:?}: scheme {other} is not https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(vars: &[(&str, &str)]) -> Result<Shared, ConfigError> {
        Shared::load(&Settings::new(&|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())))
    }

    #[test]
    fn the_shared_settings_default_and_refuse_naming_their_variable() {
        let defaults = shared(&[]).expect("valid");
        assert_eq!(defaults.intake_url.as_str(), "https://intake.sekoia.io/");
        assert_eq!(
            (defaults.max_run, defaults.state_dir.as_path()),
            (Duration::from_secs(600), std::path::Path::new("./state")),
            "no home: the working directory"
        );
        let home = shared(&[("HOME", "/home/ops")]).expect("valid").state_dir;
        assert_eq!(home, PathBuf::from("/home/ops/.local/state/github-audit-sekoia"));
        let xdg = shared(&[("HOME", "/home/ops"), ("XDG_STATE_HOME", "/var/lib/ops")]).expect("valid").state_dir;
        assert_eq!(xdg, PathBuf::from("/var/lib/ops/github-audit-sekoia"));
        let relative = shared(&[("HOME", "/home/ops"), ("XDG_STATE_HOME", "state")]).expect("valid").state_dir;
        assert_eq!(relative, PathBuf::from("/home/ops/.local/state/github-audit-sekoia"), "XDG wants it absolute");
        assert!(defaults.require_table().is_err() && defaults.cursor_table.is_none());
        assert!(defaults.shaping.fill_created_at && defaults.shaping.filter.is_empty());
        for (variable, value) in [
            ("MAX_RUN_SECONDS", "0"),
            ("SEKOIA_INTAKE_URL", "ftp://intake.sekoia.io"),
            ("FILL_CREATED_AT", "no"),
            ("INCLUDE_ACTIONS", "repo.?"),
            ("EXCLUDE_ACTIONS", "git fetch"),
        ] {
            assert_eq!(shared(&[(variable, value)]).err().map(|e| e.variable), Some(variable));
        }
        assert!(shared(&[("CURSOR_TABLE", " t ")]).expect("valid").require_table().is_ok());
        let shaped = shared(&[("FILL_CREATED_AT", "False"), ("EXCLUDE_ACTIONS", "git.*,api.request")]).expect("valid");
        assert!(!shaped.shaping.fill_created_at && !shaped.shaping.filter.admits(Some("git.clone")));
    }

    #[test]
    fn plain_http_is_accepted_for_loopback_only() {
        for url in ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"] {
            assert!(base_url("GITHUB_API_URL", url).is_ok(), "{url}");
        }
        for url in ["http://api.github.com", "http://10.0.0.1", "file:///etc/passwd", "https://"] {
            assert!(base_url("GITHUB_API_URL", url).is_err(), "{url}");
        }
    }
}
