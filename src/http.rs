//! What both HTTP clients share: one client, budget-bounded timeouts, and backoff.

use std::time::Duration;

use reqwest::{RequestBuilder, Response};

use crate::budget::Budget;

pub(crate) const USER_AGENT: &str = concat!("github-audit-sekoia/", env!("CARGO_PKG_VERSION"));

/// No single request waits longer than this, however much budget is left.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One client for GitHub and the intake: one TLS stack, one connection pool.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// Why a request produced no usable answer.
pub(crate) enum Failure {
    /// Transport error or timeout: worth retrying.
    Transient(String),
    OutOfTime,
}

/// Sends with a timeout that never outlasts the budget.
pub(crate) async fn send_within(request: RequestBuilder, budget: &Budget) -> Result<Response, Failure> {
    let remaining = budget.remaining();
    if remaining.is_zero() {
        return Err(Failure::OutOfTime);
    }
    match request.timeout(remaining.min(MAX_REQUEST_TIMEOUT)).send().await {
        Ok(response) => Ok(response),
        Err(_) if budget.remaining().is_zero() => Err(Failure::OutOfTime),
        Err(err) => Err(Failure::Transient(describe(&err))),
    }
}

/// A reqwest error without its source chain's noise; URLs carry no secrets here.
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Exponential backoff with full jitter, so retrying clients spread out.
pub(crate) struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self { attempt: 0, base, cap }
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.base.saturating_mul(1 << self.attempt.min(16)).min(self.cap);
        self.attempt += 1;
        ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Seconds from a `retry-after` header, if present and numeric.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    header_number(response, "retry-after").map(Duration::from_secs)
}

pub(crate) fn header_number(response: &Response, name: &str) -> Option<u64> {
    response.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_under_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
    }
}
