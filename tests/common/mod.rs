//! A simulator plus a state directory, and the checks every delivery test makes.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod aws;
pub mod network;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use github_audit_sekoia::budget::Budget;
use github_audit_sekoia::checkpoint::Checkpoint;
use github_audit_sekoia::checkpoint::delivered::DeliveredSet;
use github_audit_sekoia::config::{Config, CredentialsConfig};
use github_audit_sekoia::connector::plan;
use github_audit_sekoia::credentials::{CredentialCache, Credentials, StaticCredentials};
use github_audit_sekoia::cursor::FileCursorStore;
use github_audit_sekoia::drain::{DrainFailure, Edges, Summary, drain};
use github_audit_sekoia::github::{Authorizer, GitHubSource};
use github_audit_sekoia::http;
use github_audit_sekoia::ports::{CheckpointSave, CursorError, CursorState, CursorStore, SystemClock};
use github_audit_sekoia::sekoia::SekoiaIntake;
use github_audit_sekoia::timefmt::now_ms;
use github_audit_sekoia_sim::{LiveLog, SimEvent, SimOptions, Simulator, live_events};

pub const ORG: &str = "acme";
pub const BIN: &str = env!("CARGO_BIN_EXE_github-audit-sekoia");
pub const PAGE: usize = 100;

pub struct Harness {
    pub sim: Simulator,
    pub options: SimOptions,
    pub state: tempfile::TempDir,
    pub extra_env: Vec<(String, String)>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with_options(SimOptions::default()).await
    }

    pub async fn with_options(options: SimOptions) -> Self {
        let sim = Simulator::start(options.clone()).await.expect("simulator starts");
        Self { sim, options, state: tempfile::tempdir().expect("tempdir"), extra_env: Vec::new() }
    }

    /// The environment a user would set to point the connector at this simulator; `extra_env`
    /// overrides it (an empty value unsets a variable).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("GITHUB_ORG", ORG.to_owned()),
            ("GITHUB_API_URL", self.sim.github_url.clone()),
            ("GITHUB_TOKEN", self.options.token.clone()),
            ("SEKOIA_INTAKE_URL", self.sim.intake_url.clone()),
            ("SEKOIA_INTAKE_KEY", self.options.intake_key.clone()),
            ("STATE_DIR", self.state.path().display().to_string()),
            ("FIRST_RUN_LOOKBACK", "7d".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// The CLI with this harness's environment (and nothing else), plus `overrides`.
    pub fn cli(&self, args: &[&str], overrides: &[(&str, &str)]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        command.envs(self.env());
        command.envs(overrides.iter().copied());
        command
    }

    /// Runs the CLI on a blocking thread, so the simulator keeps serving meanwhile.
    pub async fn run_cli(&self, args: &[&str], overrides: &[(&str, &str)]) -> Output {
        let mut command = self.cli(args, overrides);
        tokio::task::spawn_blocking(move || command.output().expect("the binary runs")).await.expect("join")
    }

    pub fn config(&self) -> Config {
        let env = self.env();
        Config::load(|name| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())).expect("valid config")
    }

    pub fn store(&self) -> FileCursorStore {
        FileCursorStore::new(self.state.path())
    }

    /// One drain through the library, with the given store (to inject crashes).
    pub async fn drain_with(
        &self,
        store: &dyn CursorStore,
        budget: Duration,
        max_body_bytes: Option<usize>,
    ) -> Result<Summary, DrainFailure> {
        let config = self.config();
        let client = http::client(&Default::default()).expect("an HTTP client");
        let CredentialsConfig::Environment { github, intake_key } = config.credentials.clone() else {
            panic!("the harness configures credentials through the environment")
        };
        let credentials = Arc::new(CredentialCache::new(Box::new(StaticCredentials(Credentials {
            github: Some(github),
            intake_key,
        }))));
        let auth =
            Authorizer::new(credentials.clone(), client.clone(), config.github_api_url.clone(), Some(ORG.to_owned()));
        let source = GitHubSource::new(client.clone(), &config, Arc::new(auth));
        let mut sink = SekoiaIntake::new(client, &config.shared.intake_url, credentials);
        if let Some(limit) = max_body_bytes {
            sink = sink.with_max_body_bytes(limit);
        }
        let edges = Edges { source: &source, sink: &sink, store, clock: &SystemClock, progress: None };
        drain(&edges, &plan(&config, None), Budget::lasting(budget)).await
    }

    pub async fn drain(&self) -> Summary {
        self.drain_with(&self.store(), Duration::from_secs(120), None).await.expect("drain succeeds")
    }

    pub fn add(&self, events: Vec<SimEvent>) {
        self.sim.github().add_events(events);
    }

    /// A live audit log from now on; returns its events' `_document_id`s.
    pub fn add_live(&self, live: &LiveLog) -> Vec<String> {
        let events = live_events(live, ORG);
        let ids = events.iter().map(|e| e.document_id.clone()).collect();
        self.add(events);
        ids
    }

    /// How many of `expected` never arrived, and how many arrivals were repeats.
    pub fn missing_and_repeated(&self, expected: &[String]) -> (usize, u32) {
        let received = self.received();
        let missing = expected.iter().filter(|id| !received.contains_key(*id)).count();
        (missing, received.values().map(|n| n - 1).sum())
    }

    /// `_document_id` → how many times the intake received it.
    pub fn received(&self) -> HashMap<String, u32> {
        self.sim.intake().received().clone()
    }

    /// Every web event GitHub can show arrived exactly once, and nothing else arrived.
    pub fn assert_exactly_once(&self) {
        let expected: Vec<String> =
            self.sim.github().events().iter().filter(|e| !e.git).map(|e| e.document_id.clone()).collect();
        self.assert_exactly(&expected);
    }

    /// These events arrived exactly once each, and nothing else arrived.
    pub fn assert_exactly(&self, expected: &[String]) {
        let received = self.received();
        let missing: Vec<&String> = expected.iter().filter(|id| !received.contains_key(*id)).collect();
        let repeated: Vec<(&String, &u32)> = received.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            missing.is_empty(),
            "{} of {} events never arrived, e.g. {:?}",
            missing.len(),
            expected.len(),
            missing.first()
        );
        assert!(repeated.is_empty(), "{} events arrived more than once, e.g. {:?}", repeated.len(), repeated.first());
        assert_eq!(received.len(), expected.len(), "the intake received events GitHub does not have");
    }

    /// The organization's events with `since_ms <= @timestamp < until_ms`: what a backfill owes.
    pub fn ids_created_in(&self, since_ms: i64, until_ms: i64) -> Vec<String> {
        let github = self.sim.github();
        let in_range = github.events().iter().filter(|e| e.timestamp_ms >= since_ms && e.timestamp_ms < until_ms);
        in_range.map(|e| e.document_id.clone()).collect()
    }

    pub fn checkpoint(&self) -> Checkpoint {
        let path = self.store().path_for(&self.config().cursor_key());
        Checkpoint::from_json(&std::fs::read_to_string(path).expect("checkpoint file")).expect("valid checkpoint")
    }
}

/// Events from `start` to `end` ms ago, deterministic per seed.
pub fn events_between(count: usize, from_ago: Duration, to_ago: Duration, seed: u64) -> Vec<SimEvent> {
    let now = now_ms();
    github_audit_sekoia_sim::generate_events(
        count,
        now - from_ago.as_millis() as i64,
        now - to_ago.as_millis() as i64,
        0.0,
        ORG,
        seed,
    )
}

/// A store that dies right after the intake acknowledged page `fail_at_save` and before the
/// checkpoint is written: what a kill between post and save leaves behind.
pub struct CrashBeforeSave<S> {
    pub inner: S,
    pub fail_at_save: usize,
    pub saves: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl<S: CursorStore> CursorStore for CrashBeforeSave<S> {
    async fn acquire(&self, key: &str, held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError> {
        self.inner.acquire(key, held_until).await
    }

    async fn load_buckets(&self, key: &str, starts: &[i64]) -> Result<Vec<(i64, DeliveredSet)>, CursorError> {
        self.inner.load_buckets(key, starts).await
    }

    async fn save(&self, key: &str, save: &CheckpointSave<'_>) -> Result<(), CursorError> {
        let n = self.saves.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if n == self.fail_at_save {
            return Err(CursorError::Storage("simulated crash before the checkpoint was written".into()));
        }
        self.inner.save(key, save).await
    }

    async fn release(&self, key: &str) -> Result<(), CursorError> {
        self.inner.release(key).await
    }

    async fn peek(&self, key: &str) -> Result<CursorState, CursorError> {
        self.inner.peek(key).await
    }
}

/// The JSON summary: the last line the CLI printed on stdout.
pub fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last stdout line is not a JSON summary ({e}): {stdout}"))
}
