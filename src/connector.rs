//! Wires the configured adapters to the drain: what every entry point runs. Built once per
//! process (or Lambda container) so clients, connection pools and credentials are reused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

use crate::budget::Budget;
use crate::config::{Config, ConfigError, CredentialsConfig, ENTERPRISE_NEEDS_A_TOKEN, Target, problem};
use crate::credentials::{
    CredentialCache, CredentialError, CredentialSource, Credentials, GitHubCredential, SecretsManagerCredentials,
    StaticCredentials,
};
use crate::cursor::{DynamoCursorStore, FileCursorStore, ReadOnlyStore};
use crate::drain::{BackfillStatus, DrainFailure, DrainPlan, Edges, Progress, Summary, SweepAges, drain};
use crate::dry_run::NdjsonStdout;
use crate::github::{Authorizer, GitHubSource};
use crate::http::{self, ClientError};
use crate::network::{ExtraRoots, aws_http_client};
use crate::ports::{CursorError, CursorStore, SystemClock};
use crate::sekoia::SekoiaIntake;
use crate::timefmt::{now_ms, rfc3339_seconds};
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Drain(#[from] DrainFailure),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Cursor(#[from] CursorError),
}

/// A stretch of the audit log to deliver again, apart from the scheduled cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl TimeRange {
    /// From RFC 3339 UTC instants, e.g. `2026-11-01T00:00:00Z`.
    pub fn parse(since: &str, until: &str) -> Result<Self, ConfigError> {
        let instant = |name: &'static str, text: &str| {
            humantime::parse_rfc3339_weak(text.trim()).map(crate::timefmt::to_ms).map_err(|_| {
                problem(name, format!("is {text:?}; expected an RFC 3339 UTC time like 2026-11-01T00:00:00Z"))
            })
        };
        let range = Self { since_ms: instant("since", since)?, until_ms: instant("until", until)? };
        if range.since_ms >= range.until_ms {
            return Err(problem("until", "must be after since"));
        }
        Ok(range)
    }
}

/// One run's request.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// One of the configured targets (`TARGETS`), e.g. `org:acme`.
    pub target: Option<String>,
    /// Another organization than the configured target, with its own cursor.
    pub org: Option<String>,
    /// An enterprise instead of the configured target, with its own cursor.
    pub enterprise: Option<String>,
    pub backfill: Option<TimeRange>,
    pub budget: Budget,
    /// Print the events instead of posting them; the cursor does not move.
    pub dry_run: bool,
}

pub struct Connector {
    config: Config,
    client: reqwest::Client,
    aws: tokio::sync::OnceCell<aws_config::SdkConfig>,
    /// Per secret (or the environment), read once per container.
    credentials: tokio::sync::Mutex<HashMap<String, Arc<CredentialCache>>>,
    store: Box<dyn CursorStore>,
    /// Per credentials and target, so App installation tokens outlive one run.
    authorizers: tokio::sync::Mutex<HashMap<String, Arc<Authorizer>>>,
}

impl Connector {
    /// Reads the AWS configuration the standard way (region, credentials, `AWS_ENDPOINT_URL`)
    /// only when a secret or a cursor table needs it: a local run never looks for AWS at all.
    pub async fn new(config: Config) -> Result<Self, ClientError> {
        let aws = tokio::sync::OnceCell::new();
        let store: Box<dyn CursorStore> = match &config.shared.cursor_table {
            Some(table) => {
                let sdk = aws.get_or_init(|| load_aws(&config.shared.extra_roots)).await;
                Box::new(DynamoCursorStore::new(aws_sdk_dynamodb::Client::new(sdk), table))
            }
            None => Box::new(FileCursorStore::new(&config.shared.state_dir)),
        };
        Ok(Self {
            client: http::client(&config.shared.extra_roots)?,
            aws,
            credentials: tokio::sync::Mutex::new(HashMap::new()),
            store,
            config,
            authorizers: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn store(&self) -> &dyn CursorStore {
        self.store.as_ref()
    }

    /// The configuration a request drains: a configured target, another organization or
    /// enterprise, or the only configured target.
    pub fn config_for(&self, request: &RunRequest) -> Result<Config, ConfigError> {
        match (&request.target, &request.org, &request.enterprise) {
            (target, None, None) => self.config.select(target.as_deref()),
            (None, Some(org), None) => self.config.for_org(org),
            (None, None, Some(enterprise)) => self.config.for_enterprise(enterprise),
            _ => Err(problem("target", "org and enterprise name one target each: give only one of them")),
        }
    }

    /// The credentials cache of a configuration's target.
    pub async fn credentials(&self, config: &Config) -> Arc<CredentialCache> {
        let key = credentials_key(&config.credentials);
        let mut caches = self.credentials.lock().await;
        if let Some(cache) = caches.get(&key) {
            return cache.clone();
        }
        let source: Box<dyn CredentialSource> = match &config.credentials {
            CredentialsConfig::SecretsManager { secret_id } => {
                let sdk = self.aws.get_or_init(|| load_aws(&self.config.shared.extra_roots)).await;
                Box::new(SecretsManagerCredentials::new(aws_sdk_secretsmanager::Client::new(sdk), secret_id))
            }
            CredentialsConfig::Environment { github, intake_key } => Box::new(StaticCredentials(Credentials {
                github: Some(github.clone()),
                intake_key: intake_key.clone(),
            })),
        };
        let cache = Arc::new(CredentialCache::new(source));
        caches.insert(key, cache.clone());
        cache
    }

    pub async fn run(&self, request: &RunRequest) -> Result<Summary, RunError> {
        self.run_watched(request, None).await
    }

    /// Where the request's backfill stands, from its cursor, without taking or moving it.
    pub async fn backfill_status(&self, request: &RunRequest) -> Result<BackfillStatus, RunError> {
        let config = self.config_for(request)?;
        let Some(range) = request.backfill else {
            return Err(problem("backfill", "is required with status: the range whose progress to tell").into());
        };
        let plan = plan(&config, Some(range));
        Ok(BackfillStatus::of(&plan, &self.store.peek(&plan.key).await?))
    }

    /// A run whose figures `progress` is told after every page.
    pub async fn run_watched(&self, request: &RunRequest, progress: Option<&Progress>) -> Result<Summary, RunError> {
        let config = self.config_for(request)?;
        let plan = plan(&config, request.backfill);
        let span = tracing::info_span!("run", target = %plan.key);
        self.drain_target(&config, &plan, request, progress).instrument(span).await
    }

    async fn drain_target(
        &self,
        config: &Config,
        plan: &DrainPlan,
        request: &RunRequest,
        progress: Option<&Progress>,
    ) -> Result<Summary, RunError> {
        let credentials = self.credentials(config).await;
        check_credentials(&credentials, config, request.dry_run).await?;
        let source = GitHubSource::new(self.client.clone(), config, self.authorizer(config).await);
        let summary = if request.dry_run {
            let store = ReadOnlyStore::new(self.store.as_ref());
            let edges = Edges { source: &source, sink: &NdjsonStdout, store: &store, clock: &SystemClock, progress };
            drain(&edges, plan, request.budget).await?
        } else {
            let sink = SekoiaIntake::new(self.client.clone(), &config.shared.intake_url, credentials);
            let edges =
                Edges { source: &source, sink: &sink, store: self.store.as_ref(), clock: &SystemClock, progress };
            drain(&edges, plan, request.budget).await?
        };
        Ok(summary)
    }

    /// The authorizer of a configuration's target and credentials.
    pub async fn authorizer(&self, config: &Config) -> Arc<Authorizer> {
        let org = match &config.target {
            Target::Organization(org) => Some(org.clone()),
            Target::Enterprise(_) => None,
        };
        let credentials = self.credentials(config).await;
        let key = format!("{} {}", credentials_key(&config.credentials), config.target.path());
        let new = || Arc::new(Authorizer::new(credentials, self.client.clone(), config.github_api_url.clone(), org));
        self.authorizers.lock().await.entry(key).or_insert_with(new).clone()
    }
}

fn credentials_key(credentials: &CredentialsConfig) -> String {
    match credentials {
        CredentialsConfig::SecretsManager { secret_id } => format!("secret {secret_id}"),
        CredentialsConfig::Environment { .. } => "environment".to_owned(),
    }
}

/// The standard AWS configuration (region, credentials, `AWS_ENDPOINT_URL`) over a client that
/// honours the environment's proxy and `roots`.
pub(crate) async fn load_aws(roots: &ExtraRoots) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(aws_timeouts())
        .http_client(aws_http_client(roots))
        .load()
        .await
}

/// What the credentials cannot do is a configuration error, found before anything is fetched.
pub async fn check_credentials(credentials: &CredentialCache, config: &Config, dry_run: bool) -> Result<(), RunError> {
    let credentials = credentials.get().await?;
    if let (Target::Enterprise(_), GitHubCredential::App(_)) = (&config.target, credentials.github()?) {
        return Err(problem("github_app_id", ENTERPRISE_NEEDS_A_TOKEN).into());
    }
    if dry_run || credentials.intake_key.is_some() {
        return Ok(());
    }
    Err(match &config.credentials {
        CredentialsConfig::SecretsManager { secret_id } => CredentialError::Secret {
            secret_id: secret_id.clone(),
            problem: "has no \"sekoia_intake_key\": a drain posts to the intake".into(),
        }
        .into(),
        CredentialsConfig::Environment { .. } => {
            problem("SEKOIA_INTAKE_KEY", "is required: the key of the Sekoia.io intake to post to").into()
        }
    })
}

/// Every AWS call ends within 10 s, retries included: a save started just before the run's
/// budget ends is done inside the Lambda's safety margin (`lambda::SAFETY_MARGIN`, 20 s), and a
/// hung connection never holds a run until its deadline.
fn aws_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(4))
        .operation_timeout(Duration::from_secs(10))
        .build()
}

/// The scheduled cursor, or a backfill's own cursor that never moves the scheduled one. A
/// backfill reads its range once: it is history, and the scheduled drain sweeps whatever part
/// of it is recent.
pub fn plan(config: &Config, backfill: Option<TimeRange>) -> DrainPlan {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match backfill {
        None => DrainPlan {
            key: config.cursor_key(),
            start_ms: now_ms().saturating_sub(ms(config.first_run_lookback)),
            until_ms: None,
            sweeps: Some(SweepAges::new(
                ms(config.late_arrival_window),
                &config.late_sweep_after.iter().copied().map(ms).collect::<Vec<_>>(),
            )),
            shaping: config.shared.shaping.clone(),
        },
        Some(range) => DrainPlan {
            key: format!(
                "backfill/{}/{}..{}",
                config.cursor_key(),
                rfc3339_seconds(range.since_ms),
                rfc3339_seconds(range.until_ms)
            ),
            start_ms: range.since_ms,
            until_ms: Some(range.until_ms),
            sweeps: None,
            shaping: config.shared.shaping.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_range_must_be_ordered_utc_instants() {
        let range = TimeRange::parse("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z").expect("valid");
        assert_eq!(range.until_ms - range.since_ms, 86_400_000);
        assert_eq!(
            TimeRange::parse("2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z").err().map(|e| e.variable),
            Some("until")
        );
        assert_eq!(TimeRange::parse("yesterday", "2026-11-01T00:00:00Z").err().map(|e| e.variable), Some("since"));
    }

    #[test]
    fn a_backfill_has_its_own_cursor_key() {
        let vars = [("GITHUB_ORG", "acme"), ("GITHUB_TOKEN", "t")];
        let config =
            Config::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).expect("config");
        let range = TimeRange::parse("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z").expect("valid");
        assert_eq!(plan(&config, None).key, "orgs/acme/web");
        assert_eq!(plan(&config, Some(range)).key, "backfill/orgs/acme/web/2026-11-01T00:00:00Z..2026-11-02T00:00:00Z");
    }
}
