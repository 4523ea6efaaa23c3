//! What both HTTP clients share: one client, budget-bounded timeouts, and backoff.

use std::time::{Duration, SystemTime};

use reqwest::{RequestBuilder, Response};

use crate::budget::Budget;
use crate::network::ExtraRoots;

pub(crate) const USER_AGENT: &str = concat!("github-audit-sekoia/", env!("CARGO_PKG_VERSION"));

/// No single request waits longer than this, however much budget is left.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A wait a server asks for is never taken as longer than this: absurd values stop the run
/// cleanly instead of overflowing a clock.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client (TLS): {0}")]
pub struct ClientError(String);

/// One client for GitHub and the intake: one TLS stack, one connection pool, no redirects
/// (a token must not follow one to another host), the system's roots and `roots`, the proxy
/// the environment names. Failing to build it is an error: a default client would follow
/// redirects and wait for ever on a dead host.
pub fn client(roots: &ExtraRoots) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .tls_certs_merge(roots.reqwest_certificates())
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientError(describe(&e)))
}

/// `path` under the base URL's own path: `https://HOST/api/v3` + `orgs/acme` gives
/// `https://HOST/api/v3/orgs/acme`.
pub(crate) fn join_path(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    url.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    url
}

/// A probe's refusal: the server's status and message, or why there was no answer. Never holds
/// a credential.
#[derive(Debug)]
pub struct ProbeFailure {
    pub status: Option<reqwest::StatusCode>,
    pub message: String,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{}", format!("{status} {}", self.message).trim()),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a request produced no usable answer.
pub(crate) enum Failure {
    /// Transport error or timeout: worth retrying.
    Transient(String),
    OutOfTime,
}

/// Sends with a timeout that never outlasts the budget.
pub(crate) async fn send_within(request: RequestBuilder, budget: &Budget) -> Result<Response, Failure> {
    send_within_grace(request, budget, Duration::ZERO).await
}

/// Sends if the budget is not spent, giving the request `grace` beyond it: a request cut
/// short after the server acted on it would be made again by the next run.
pub(crate) async fn send_within_grace(
    request: RequestBuilder,
    budget: &Budget,
    grace: Duration,
) -> Result<Response, Failure> {
    let remaining = budget.remaining();
    if remaining.is_zero() {
        return Err(Failure::OutOfTime);
    }
    match request.timeout((remaining + grace).min(MAX_REQUEST_TIMEOUT)).send().await {
        Ok(response) => Ok(response),
        Err(_) if budget.remaining().is_zero() => Err(Failure::OutOfTime),
        Err(err) => Err(Failure::Transient(describe(&err))),
    }
}

/// The most of a GitHub audit-log page read: 100 events of 160 KB each (GitHub's are a few KB;
/// the intake takes none over 250 KB). A page over it is read again, like a broken one.
pub(crate) const PAGE_CAP: usize = 16 << 20;

/// The most of any other answer read (the streaming and App APIs', error bodies).
pub(crate) const ANSWER_CAP: usize = 1 << 20;

/// The most of the intake's acknowledgement read: one `event_id` (a UUID, about 40 bytes with
/// its quotes) per event of a 4 MiB body of the smallest events (about 100 bytes) is 1.7 MB.
pub(crate) const INTAKE_ANSWER_CAP: usize = 8 << 20;

/// Why an answer's body could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// More than the cap: a broken proxy or a hostile host; the rest is never read.
    #[error("{host} sent an answer of more than {cap} bytes ({size}); it was dropped unread past the cap")]
    TooLarge { host: String, cap: usize, size: String },
    #[error("reading {host}'s answer failed: {problem}")]
    Broken { host: String, problem: String },
}

/// The body, read as it arrives and never past `cap` bytes (after decompression), so an answer
/// of gigabytes costs `cap` at most.
pub(crate) async fn read_capped(mut response: Response, cap: usize) -> Result<Vec<u8>, BodyError> {
    let host = response.url().host_str().unwrap_or("the server").to_owned();
    let too_large = |host: String, size: String| BodyError::TooLarge { host, cap, size };
    if let Some(length) = response.content_length().filter(|&length| length > cap as u64) {
        return Err(too_large(host, format!("{length} bytes announced")));
    }
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| BodyError::Broken { host: host.clone(), problem: describe(&e) })?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_large(host, format!("over {} bytes read", body.len() + chunk.len())));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON answer of at most `cap` bytes, as `T`; what went wrong otherwise, in words.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(response: Response, cap: usize) -> Result<T, String> {
    let body = read_capped(response, cap).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// At most the first `cap` bytes of an answer as text (lossy), for a message: the rest is not
/// read, and a body that breaks off gives what came before.
pub(crate) async fn read_prefix(mut response: Response, cap: usize) -> String {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
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

/// When the answer left the server, by its clock: its `Date` header (whole seconds), epoch ms.
pub fn date_ms(response: &Response) -> Option<i64> {
    parse_date(response.headers().get(reqwest::header::DATE)?.to_str().ok()?)
}

fn parse_date(text: &str) -> Option<i64> {
    httpdate::parse_http_date(text.trim()).ok().map(crate::timefmt::to_ms)
}

/// A `retry-after` header: seconds, or an HTTP date; at most [`MAX_WAIT`].
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    parse_retry_after(response.headers().get("retry-after")?.to_str().ok()?, SystemTime::now())
}

fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let wait = match parse_number(text) {
        Some(seconds) => Duration::from_secs(seconds),
        None => httpdate::parse_http_date(text.trim()).ok()?.duration_since(now).unwrap_or_default(),
    };
    Some(wait.min(MAX_WAIT))
}

/// A header holding a whole number; one too large for 64 bits reads as the largest.
pub(crate) fn header_number(response: &Response, name: &str) -> Option<u64> {
    parse_number(response.headers().get(name)?.to_str().ok()?)
}

fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => Some(u64::MAX),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date_and_is_clamped() {
        let now = httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").expect("date");
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 22 Nov 2026 10:01:30 GMT", now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO), "already past");
        assert_eq!(parse_retry_after("99999999999999999999", now), Some(MAX_WAIT));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_date_header_reads_as_epoch_milliseconds() {
        assert_eq!(parse_date("Sun, 22 Nov 2026 10:00:00 GMT"), Some(1_795_341_600_000));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn header_numbers_too_large_for_64_bits_read_as_the_largest() {
        assert_eq!(parse_number(" 42 "), Some(42));
        assert_eq!(parse_number("99999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("1e9"), None);
    }

    proptest! {
        #[test]
        fn any_header_text_parses_without_panicking(text in ".{0,40}") {
            let _ = parse_number(&text);
            let _ = parse_date(&text);
            if let Some(wait) = parse_retry_after(&text, SystemTime::now()) {
                prop_assert!(wait <= MAX_WAIT);
            }
        }
    }

    #[test]
    fn backoff_grows_then_stays_under_its_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
    }
}
