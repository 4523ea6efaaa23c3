//! What the benchmarks share: a live audit log played against the loopback simulator with a
//! clock moved by hand (shared by the simulator and the drain), read through the real GitHub
//! source and intake sink into whichever cursor store a benchmark measures. Each benchmark
//! uses part of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use github_audit_sekoia::budget::Budget;
use github_audit_sekoia::config::{Config, CredentialsConfig};
use github_audit_sekoia::connector::plan;
use github_audit_sekoia::credentials::{CredentialCache, Credentials, StaticCredentials};
use github_audit_sekoia::drain::{DrainPlan, Edges, Summary, drain};
use github_audit_sekoia::github::{Authorizer, GitHubSource};
use github_audit_sekoia::http;
use github_audit_sekoia::ports::{Clock, CursorStore};
use github_audit_sekoia::sekoia::SekoiaIntake;
use github_audit_sekoia_sim::{LiveLog, SimClock, SimOptions, Simulator, live_events};

/// moto's configuration and a fresh cursor table, as the tests against moto have them.
#[path = "../../tests/common/aws.rs"]
pub mod aws;

pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);

/// The simulator's hand-moved clock, as the drain's clock.
struct SimulatedTime(SimClock);

impl Clock for SimulatedTime {
    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }
}

/// The simulator holding a played audit log, and the connector's edges to it.
pub struct Stage {
    pub sim: Simulator,
    pub clock: SimClock,
    time: SimulatedTime,
    source: GitHubSource,
    sink: SekoiaIntake,
    pub plan: DrainPlan,
    /// Every event's `_document_id`.
    pub ids: Vec<String>,
    /// Made visible later than `max_delay` after their `@timestamp` (a stall held them back).
    pub held: usize,
}

impl Stage {
    /// `log` played from its `start_ms` on; `vars` configure the connector (the GitHub and
    /// intake variables are added). The plan starts reading at the log's start.
    pub async fn start(log: &LiveLog, vars: &[(&str, String)]) -> Self {
        let clock = SimClock::manual(log.start_ms);
        let options = SimOptions { rate_limit: 1_000_000, clock: clock.clone(), ..SimOptions::default() };
        let sim = Simulator::start(options.clone()).await.expect("the simulator starts");
        let events = live_events(log, &options.org);
        let ids = events.iter().map(|e| e.document_id.clone()).collect();
        let max_delay_ms = log.max_delay.as_millis() as i64;
        let held = events.iter().filter(|e| e.visible_at_ms - e.timestamp_ms > max_delay_ms).count();
        sim.github().add_events(events);

        let mut all = vec![
            ("GITHUB_ORG", options.org.clone()),
            ("GITHUB_API_URL", sim.github_url.clone()),
            ("GITHUB_TOKEN", options.token.clone()),
            ("SEKOIA_INTAKE_URL", sim.intake_url.clone()),
            ("SEKOIA_INTAKE_KEY", options.intake_key.clone()),
        ];
        all.extend(vars.iter().cloned());
        let config =
            Config::load(|name| all.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).expect("valid config");
        let CredentialsConfig::Environment { github, intake_key } = config.credentials.clone() else {
            unreachable!("credentials come from the variables above")
        };
        let credentials = Arc::new(CredentialCache::new(Box::new(StaticCredentials(Credentials {
            github: Some(github),
            intake_key,
        }))));
        let client = http::client(&Default::default()).expect("an HTTP client");
        let auth = Authorizer::new(credentials.clone(), client.clone(), config.github_api_url.clone(), None);
        let source = GitHubSource::new(client.clone(), &config, Arc::new(auth));
        let sink = SekoiaIntake::new(client, &config.shared.intake_url, credentials);
        let mut plan = plan(&config, None);
        plan.start_ms = log.start_ms;
        Self { sim, time: SimulatedTime(clock.clone()), clock, source, sink, plan, ids, held }
    }

    /// One scheduled run into `store`, given a minute.
    pub async fn run(&self, store: &dyn CursorStore) -> Summary {
        let edges = Edges { source: &self.source, sink: &self.sink, store, clock: &self.time, progress: None };
        drain(&edges, &self.plan, Budget::lasting(MINUTE)).await.expect("a run")
    }

    /// Events of the log the intake never received, and receptions beyond the first.
    pub fn lost_and_repeated(&self) -> (usize, u32) {
        let received = self.sim.intake().received().clone();
        let lost = self.ids.iter().filter(|id| !received.contains_key(*id)).count();
        (lost, received.values().map(|n| n - 1).sum())
    }
}

/// Writes a report to `target/bench/NAME` as well as printing it.
pub fn publish(name: &str, report: &str) {
    print!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(name), report)) {
        eprintln!("could not write target/bench/{name}: {e}");
    }
}
