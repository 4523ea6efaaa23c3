//! Push mode's settings: the intake key, the stream's bucket and how long GitHub's repeats are
//! looked for; no GitHub target or credential, as the stream's files come from S3.

use std::time::Duration;

use super::{ConfigError, Settings, Shared, defaults, problem};
use crate::secret::Secret;

/// Push mode's settings.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub shared: Shared,
    /// `SECRET_ID` (its `sekoia_intake_key`), else `SEKOIA_INTAKE_KEY`.
    pub intake_key: IntakeKeyConfig,
    /// `STREAM_DEDUPE_WINDOW`: how far behind the newest event forwarded the delivered record
    /// still recognises GitHub's repeats.
    pub dedupe_window: Duration,
    /// `STREAM_BUCKET`: the bucket the stream writes to (the Lambda's, set by the template).
    pub stream_bucket: Option<String>,
}

#[derive(Debug, Clone)]
pub enum IntakeKeyConfig {
    Environment(Option<Secret>),
    SecretsManager { secret_id: String },
}

impl PushConfig {
    /// Reads every setting through `lookup` (the process environment, or it with CLI overrides).
    pub fn load(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let settings = Settings::new(&lookup);
        Self::with_shared(Shared::load(&settings)?, &settings)
    }

    /// Push mode's own settings, beside the shared ones read already.
    pub fn with_shared(shared: Shared, settings: &Settings) -> Result<Self, ConfigError> {
        let dedupe_window = settings.duration("STREAM_DEDUPE_WINDOW", defaults::STREAM_DEDUPE_WINDOW)?;
        if dedupe_window.is_zero() {
            return Err(problem("STREAM_DEDUPE_WINDOW", "must be above 0: GitHub's stream delivers at least once"));
        }
        Ok(Self {
            shared,
            intake_key: match settings.get("SECRET_ID") {
                Some(secret_id) => IntakeKeyConfig::SecretsManager { secret_id },
                None => IntakeKeyConfig::Environment(settings.get("SEKOIA_INTAKE_KEY").map(Secret::new)),
            },
            dedupe_window,
            stream_bucket: settings.get("STREAM_BUCKET").map(|b| bucket_name("STREAM_BUCKET", &b)).transpose()?,
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(|name| std::env::var(name).ok())
    }
}

/// Whether any pull target is configured at all (a push-only deployment configures none).
pub fn pull_targets_configured(settings: &Settings) -> bool {
    ["TARGETS", "GITHUB_ORG", "GITHUB_ENTERPRISE"].iter().any(|name| settings.get(name).is_some())
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let only = |var: &'static str| move |name: &str| (name == var).then(|| "b".to_owned());
        assert!(!pull_targets_configured(&Settings::new(&only("STREAM_BUCKET"))));
        assert!(pull_targets_configured(&Settings::new(&only("TARGETS"))));
    }
}
