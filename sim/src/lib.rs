//! A loopback stand-in for GitHub's audit-log API and the Sekoia intake, for tests, `make demo`
//! and benchmarks. It behaves like the real services where the connector depends on them:
//! cursor pagination through `Link` headers, `created:` filtering at second precision, `order`,
//! `per_page` ≤ 100, rate-limit headers, bearer-token checks, events indexed late, pages gzipped
//! for a client that accepts it (when a test turns it on), and an intake that checks the key and
//! counts every `_document_id` it receives.

mod events;
mod faults;
mod github;
mod intake;
mod streams;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

pub use events::{LiveLog, SimEvent, Stall, generate_events, live_events};
pub use faults::{Fault, FaultScript};
pub use github::{GitHubState, SimApp};
pub use intake::{IntakeState, IntakeStats};
pub use streams::{SimStream, StreamStore, streamed_file, streamed_file_key};

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub org: String,
    pub token: String,
    pub intake_key: String,
    /// Added to every audit-log answer.
    pub latency: Duration,
    /// Added to every intake answer.
    pub intake_latency: Duration,
    /// `x-ratelimit-limit` per hour.
    pub rate_limit: u64,
    /// A GitHub App whose JWTs and installation tokens are accepted.
    pub app: Option<SimApp>,
    /// The intake refuses larger bodies (decompressed) with 413; Sekoia's own limit is unknown.
    pub intake_max_body_bytes: usize,
    /// `/api/v3` for GitHub Enterprise Server.
    pub api_prefix: String,
    /// GHES style pagination: `page=N` in the `Link` header instead of `after=` cursors.
    pub page_numbers: bool,
    /// Links say https: the simulator stands behind a TLS front, as GHES behind a load balancer.
    pub behind_tls: bool,
    /// 0 picks a free port.
    pub github_port: u16,
    pub intake_port: u16,
    /// What "now" is for indexing delays: the wall clock, or one a benchmark moves by hand.
    pub clock: SimClock,
}

/// The simulator's time: GitHub's clock. A manual clock lets a benchmark play hours of a live
/// audit log in seconds (tests hand the same clock to the drain); an offset one is the wall
/// clock moved, a GitHub whose clock differs from the connector's host.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    manual: Option<Arc<AtomicI64>>,
    offset_ms: i64,
}

impl SimClock {
    pub fn manual(start_ms: i64) -> Self {
        Self { manual: Some(Arc::new(AtomicI64::new(start_ms))), offset_ms: 0 }
    }

    /// The wall clock, `offset_ms` ahead (negative: behind).
    pub fn offset(offset_ms: i64) -> Self {
        Self { manual: None, offset_ms }
    }

    /// Moves a manual clock on; the wall clock moves by itself.
    pub fn advance(&self, by: Duration) {
        if let Some(now) = &self.manual {
            now.fetch_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX), Ordering::SeqCst);
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(now) => now.load(Ordering::SeqCst),
            None => to_ms(SystemTime::now()) + self.offset_ms,
        }
    }

    /// Now as an HTTP `Date` header says it (whole seconds).
    pub fn http_date(&self) -> String {
        let ms = u64::try_from(self.now_ms()).unwrap_or(0);
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
    }
}

/// Epoch milliseconds.
pub fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            org: "acme".into(),
            token: "ghp_simulated_token".into(),
            intake_key: "simulated-intake-key".into(),
            latency: Duration::ZERO,
            intake_latency: Duration::ZERO,
            rate_limit: 1750,
            app: None,
            intake_max_body_bytes: 10 * 1024 * 1024,
            api_prefix: String::new(),
            page_numbers: false,
            behind_tls: false,
            github_port: 0,
            intake_port: 0,
            clock: SimClock::default(),
        }
    }
}

/// A running simulator; it stops when dropped.
pub struct Simulator {
    pub github_url: String,
    pub intake_url: String,
    github: Arc<Mutex<GitHubState>>,
    intake: Arc<Mutex<IntakeState>>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    pub async fn start(options: SimOptions) -> std::io::Result<Self> {
        let github = Arc::new(Mutex::new(GitHubState::new(&options)));
        let intake = Arc::new(Mutex::new(IntakeState::new(
            &options.intake_key,
            options.intake_max_body_bytes,
            options.intake_latency,
        )));
        let (github_addr, github_server) = serve(options.github_port, github::router(github.clone())).await?;
        let (intake_addr, intake_server) = serve(options.intake_port, intake::router(intake.clone())).await?;
        Ok(Self {
            github_url: format!("http://{github_addr}"),
            intake_url: format!("http://{intake_addr}"),
            github,
            intake,
            servers: vec![github_server, intake_server],
        })
    }

    pub fn github(&self) -> MutexGuard<'_, GitHubState> {
        lock(&self.github)
    }

    pub fn intake(&self) -> MutexGuard<'_, IntakeState> {
        lock(&self.intake)
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// A poisoned lock only means a handler panicked; the counts are still worth reading.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(port: u16, router: axum::Router) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router).await {
            tracing::error!("simulator server stopped: {err}");
        }
    });
    Ok((addr, server))
}
