//! The GitHub audit-log API as an [`AuditLogSource`].

mod auth;
pub mod probe;

pub use auth::{Authorizer, GitHubAuth, InstallationFacts};

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, LINK};
use reqwest::{Response, StatusCode};
use serde_json::value::RawValue;
use url::Url;

use crate::budget::Budget;
use crate::config::{Config, Include, Target};
use crate::http::{self, Backoff, Failure, header_number, send_within};
use crate::ports::{AuditEvent, AuditLogSource, Page, PageRequest, RateBudget, SourceError};
use crate::secret::Secret;
use crate::timefmt::{ceil_to_second, github_search_time};

const PER_PAGE: &str = "100";
/// Budget kept after a rate-limit wait, to fetch, post and save one more page.
const AFTER_WAIT_RESERVE: Duration = Duration::from_secs(10);
/// GitHub's advice when a secondary limit gives no `retry-after`.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

pub struct GitHubSource {
    client: reqwest::Client,
    api: Url,
    target: Target,
    include: Include,
    phrase: Option<String>,
    auth: Arc<dyn GitHubAuth>,
    reserve: Option<u32>,
    rate: Mutex<RateLimit>,
}

/// What the last answer's `x-ratelimit-*` headers said.
#[derive(Debug, Default, Clone, Copy)]
struct RateLimit {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_at: Option<SystemTime>,
}

impl RateLimit {
    fn read(response: &Response) -> Self {
        Self {
            limit: header_number(response, "x-ratelimit-limit"),
            remaining: header_number(response, "x-ratelimit-remaining"),
            reset_at: header_number(response, "x-ratelimit-reset").map(reset_time),
        }
    }

    /// Requests left before the share kept for other tools; `None` while unknown.
    fn left(&self, reserve: Option<u32>) -> Option<u64> {
        let reserve = reserve.map(u64::from).unwrap_or_else(|| self.limit.unwrap_or(0) / 20);
        Some(self.remaining?.saturating_sub(reserve))
    }

    /// True when spending another request would eat into the share kept for other tools.
    fn exhausted(&self, reserve: Option<u32>) -> bool {
        self.left(reserve) == Some(0)
    }
}

/// An `x-ratelimit-reset` (epoch seconds), never later than [`http::MAX_WAIT`] from now.
fn reset_time(epoch_seconds: u64) -> SystemTime {
    let latest = SystemTime::now() + http::MAX_WAIT;
    UNIX_EPOCH.checked_add(Duration::from_secs(epoch_seconds)).map_or(latest, |t| t.min(latest))
}

/// What one answer means for the drain.
enum Answer {
    Page(Page),
    Retry(String),
    WaitForReset(Option<SystemTime>),
    /// A rate limit without an exhausted allowance in its headers (a secondary limit, or a
    /// limit said only in the message), with GitHub's `retry-after` if it gave one.
    Limited(Option<Duration>),
    Unauthorized(String),
}

impl GitHubSource {
    pub fn new(client: reqwest::Client, config: &Config, auth: Arc<dyn GitHubAuth>) -> Self {
        Self {
            client,
            api: config.github_api_url.clone(),
            target: config.target.clone(),
            include: config.include,
            phrase: config.phrase.clone(),
            auth,
            reserve: config.rate_limit_reserve,
            rate: Mutex::new(RateLimit::default()),
        }
    }

    /// Where a page request goes. A continuation link is followed only within GITHUB_API_URL.
    fn page_url(&self, request: &PageRequest) -> Result<Url, SourceError> {
        match request {
            PageRequest::Created { since_ms, until_ms } => Ok(self.first_page_url(*since_ms, *until_ms)),
            PageRequest::Continue(link) => {
                let url = Url::parse(link)
                    .map_err(|e| SourceError::LinkRefused(format!("a next-page link does not parse ({e})")))?;
                // A link from a stored checkpoint may have been edited, or GITHUB_API_URL changed
                // since: the token goes nowhere else.
                if !self.allowed(&url) {
                    return Err(SourceError::LinkRefused(format!(
                        "a stored next-page link points to {}, outside GITHUB_API_URL {}",
                        Self::place(&url),
                        Self::place(&self.api)
                    )));
                }
                Ok(url)
            }
        }
    }

    /// Waits for the reset when the allowance (less the reserve) is spent.
    async fn wait_for_allowance(&self, budget: &Budget) -> Result<(), SourceError> {
        let rate = self.rate();
        if rate.exhausted(self.reserve) {
            let wait = time_until(rate.reset_at).unwrap_or_default();
            self.wait(wait, rate.reset_at, budget).await?;
            // The reset has passed: spend one request to learn the new allowance.
            if let Ok(mut shared) = self.rate.lock() {
                shared.remaining = None;
            }
        }
        Ok(())
    }

    fn first_page_url(&self, since_ms: i64, until_ms: Option<i64>) -> Url {
        let mut url = http::join_path(&self.api, &self.target.audit_log_path());
        // `created:` has one-second precision and a range includes both ends. The times take
        // the form GitHub documents; the query encoding turns their `+` into `%2B`.
        let mut phrase = match until_ms {
            None => format!("created:>={}", github_search_time(since_ms)),
            Some(until) => format!(
                "created:{}..{}",
                github_search_time(since_ms),
                github_search_time(ceil_to_second(until) - 1000)
            ),
        };
        if let Some(extra) = &self.phrase {
            phrase.push(' ');
            phrase.push_str(extra);
        }
        url.query_pairs_mut()
            .append_pair("phrase", &phrase)
            .append_pair("include", self.include.as_str())
            .append_pair("order", "asc")
            .append_pair("per_page", PER_PAGE);
        url
    }

    /// Only the configured API is ever contacted: its scheme, host and port, under its path
    /// (`/api/v3` on GHES).
    fn allowed(&self, url: &Url) -> bool {
        let prefix = self.api.path().trim_end_matches('/');
        url.scheme() == self.api.scheme()
            && url.host_str() == self.api.host_str()
            && url.port_or_known_default() == self.api.port_or_known_default()
            && url.path().strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
    }

    /// Where a URL points, for messages: origin and path, no query.
    fn place(url: &Url) -> String {
        format!("{}{}", url.origin().ascii_serialization(), url.path())
    }

    async fn headers(&self) -> Result<HeaderMap, SourceError> {
        let authorization =
            self.auth.authorization().await.map_err(|e| SourceError::Fatal(format!("GitHub credentials: {e}")))?;
        api_headers(&authorization)
            .ok_or_else(|| SourceError::Fatal("the GitHub token contains characters a header cannot carry".into()))
    }

    fn rate(&self) -> RateLimit {
        self.rate.lock().map(|r| *r).unwrap_or_default()
    }

    async fn interpret(&self, response: Response) -> Result<Answer, SourceError> {
        let status = response.status();
        let rate = RateLimit::read(&response);
        if let (Some(_), Ok(mut shared)) = (rate.remaining, self.rate.lock()) {
            *shared = rate;
        }
        if status.is_success() {
            let next = self.next_link(&response)?;
            let server_time_ms = http::date_ms(&response);
            // A cut-off or garbled page is read again, like any other transient failure.
            let body = match http::read_capped(response, http::PAGE_CAP).await {
                Ok(body) => body,
                Err(e) => return Ok(Answer::Retry(e.to_string())),
            };
            let raw: Vec<Box<RawValue>> = match serde_json::from_slice(&body) {
                Ok(raw) => raw,
                Err(e) => return Ok(Answer::Retry(format!("GitHub's answer is not a JSON array of events: {e}"))),
            };
            let events = raw.into_iter().map(AuditEvent::from_raw).collect();
            return Ok(Answer::Page(Page { events, next, server_time_ms }));
        }
        let retry_after = http::retry_after(&response);
        let message = github_message(response).await;
        // GitHub signals its limits by status, headers or only the message: any of them counts.
        let limit_status = matches!(status, StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS);
        if limit_status && rate.remaining == Some(0) && retry_after.is_none() {
            return Ok(Answer::WaitForReset(rate.reset_at));
        }
        if limit_status && (retry_after.is_some() || message.to_ascii_lowercase().contains("rate limit")) {
            return Ok(Answer::Limited(retry_after));
        }
        let path = self.target.audit_log_path();
        Err(SourceError::Fatal(match status {
            StatusCode::UNAUTHORIZED => return Ok(Answer::Unauthorized(message)),
            StatusCode::FORBIDDEN => format!(
                "GitHub refused /{path} (403 {message}): the token needs the read:audit_log scope and its owner must be an owner of the organization"
            ),
            StatusCode::NOT_FOUND => format!(
                "GitHub has no /{path} (404 {message}): check GITHUB_ORG, GITHUB_API_URL, and that the organization is on GitHub Enterprise Cloud"
            ),
            StatusCode::UNPROCESSABLE_ENTITY => {
                format!("GitHub rejected the search (422 {message}): check GITHUB_PHRASE")
            }
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                return Ok(Answer::Retry(format!("GitHub answered {s}")));
            }
            s => format!("GitHub answered {s} for /{path}: {message}"),
        }))
    }

    fn next_link(&self, response: &Response) -> Result<Option<String>, SourceError> {
        let Some(header) = response.headers().get(LINK) else {
            return Ok(None);
        };
        let text =
            header.to_str().map_err(|_| SourceError::Fatal("GitHub sent a Link header that is not text".into()))?;
        self.parse_next_link(text)
    }

    /// The `rel="next"` link of a `Link` header, if it stays on the configured API.
    fn parse_next_link(&self, text: &str) -> Result<Option<String>, SourceError> {
        let links = parse_link_header::parse_with_rel(text)
            .map_err(|e| SourceError::Fatal(format!("GitHub sent a Link header that does not parse ({e}): {text}")))?;
        let Some(next) = links.get("next") else {
            return Ok(None);
        };
        if !self.allowed(&next.uri) {
            return Err(SourceError::Fatal(format!(
                "GitHub's next-page link points to {}, outside GITHUB_API_URL {}; refusing to follow it",
                Self::place(&next.uri),
                Self::place(&self.api)
            )));
        }
        Ok(Some(next.raw_uri.clone()))
    }

    /// Waits out a rate limit if the budget allows it afterwards, else stops the run.
    async fn wait(&self, wait: Duration, reset_at: Option<SystemTime>, budget: &Budget) -> Result<(), SourceError> {
        if !budget.allows(wait, AFTER_WAIT_RESERVE) {
            tracing::warn!(
                wait_seconds = wait.as_secs(),
                "GitHub rate limit: the wait does not fit in this run; it stops and the next run goes on"
            );
            return Err(SourceError::RateLimited { reset_at });
        }
        tracing::warn!(wait_seconds = wait.as_secs(), "GitHub rate limit: waiting");
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// How long until a rate-limit reset; `None` when unknown or already past.
fn time_until(reset_at: Option<SystemTime>) -> Option<Duration> {
    reset_at?.duration_since(SystemTime::now()).ok()
}

/// What every GitHub API request carries; the `Authorization` value is marked sensitive so it
/// never shows in debug output. `None` when that value cannot be a header.
pub(crate) fn api_headers(authorization: &Secret) -> Option<HeaderMap> {
    let mut value = HeaderValue::from_str(authorization.expose()).ok()?;
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
    headers.insert("x-github-api-version", HeaderValue::from_static("2022-11-28"));
    headers.insert(AUTHORIZATION, value);
    Some(headers)
}

/// GitHub's `message` field, or the start of the body.
async fn github_message(response: Response) -> String {
    let body = http::read_prefix(response, http::ANSWER_CAP).await;
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

#[async_trait]
impl AuditLogSource for GitHubSource {
    async fn fetch(&self, request: &PageRequest, budget: &Budget) -> Result<Page, SourceError> {
        let url = self.page_url(request)?;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut refreshed = false;
        let mut secondary_limits = 0;
        loop {
            self.wait_for_allowance(budget).await?;
            let sent = send_within(self.client.get(url.clone()).headers(self.headers().await?), budget).await;
            let answer = match sent {
                Ok(response) => self.interpret(response).await?,
                Err(Failure::OutOfTime) => return Err(SourceError::OutOfTime),
                Err(Failure::Transient(why)) => Answer::Retry(why),
            };
            match answer {
                Answer::Page(page) => return Ok(page),
                Answer::WaitForReset(reset_at) => {
                    let wait = time_until(reset_at).unwrap_or(SECONDARY_LIMIT_WAIT);
                    self.wait(wait, reset_at, budget).await?;
                }
                Answer::Limited(retry_after) => {
                    // GitHub's advice: its retry-after, else at least a minute, doubling while
                    // it lasts (an exhausted allowance waits for its reset above).
                    let wait = retry_after.unwrap_or(SECONDARY_LIMIT_WAIT * 2u32.pow(secondary_limits.min(5)));
                    secondary_limits += 1;
                    self.wait(wait, self.rate().reset_at, budget).await?;
                }
                Answer::Unauthorized(_) if !refreshed => {
                    // The token may have been rotated since it was read.
                    tracing::warn!("GitHub rejected the credentials (401); reading them again");
                    self.auth.refresh().await.map_err(|e| SourceError::Fatal(format!("GitHub credentials: {e}")))?;
                    refreshed = true;
                }
                Answer::Unauthorized(message) => {
                    return Err(SourceError::Fatal(format!(
                        "GitHub rejected the credentials (401 {message}): check that the token (GITHUB_TOKEN or the secret's github_token) or the GitHub App is valid and not expired or revoked"
                    )));
                }
                Answer::Retry(why) => {
                    let delay = backoff.next_delay();
                    if !budget.allows(delay, AFTER_WAIT_RESERVE) {
                        return Err(SourceError::Fatal(format!(
                            "GitHub kept failing ({why}) until the run's time budget ran out"
                        )));
                    }
                    tracing::warn!(
                        attempt = backoff.attempts(),
                        retry_in_ms = delay.as_millis() as u64,
                        "GitHub request failed ({why}); retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn rate_budget(&self) -> Option<RateBudget> {
        let rate = self.rate();
        Some(RateBudget { left: rate.left(self.reserve)?, resets_at: rate.reset_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{CredentialCache, Credentials, GitHubCredential, StaticCredentials};
    use crate::secret::Secret;

    fn source(api: &str) -> GitHubSource {
        let vars = [("GITHUB_ORG", "acme"), ("GITHUB_TOKEN", "t"), ("GITHUB_API_URL", api)];
        let config =
            Config::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())).expect("config");
        let credentials = Credentials { github: Some(GitHubCredential::Token(Secret::new("t"))), intake_key: None };
        let cache = Arc::new(CredentialCache::new(Box::new(StaticCredentials(credentials))));
        let auth = Authorizer::new(cache, reqwest::Client::new(), config.github_api_url.clone(), None);
        GitHubSource::new(reqwest::Client::new(), &config, Arc::new(auth))
    }

    #[test]
    fn the_first_page_asks_for_everything_since_the_second_oldest_first() {
        let url = source("https://ghes.example.com/api/v3").first_page_url(1_606_929_874_512, None);
        assert_eq!(url.path(), "/api/v3/orgs/acme/audit-log");
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(query.contains(&("phrase".into(), "created:>=2020-12-02T17:24:34+00:00".into())));
        assert!(url.as_str().contains("%2B00%3A00"), "a bare + would read as a space: {url}");
        assert!(query.contains(&("order".into(), "asc".into())));
        assert!(query.contains(&("per_page".into(), "100".into())));
        assert!(query.contains(&("include".into(), "web".into())));
    }

    #[test]
    fn a_bounded_first_page_covers_whole_seconds_up_to_the_end() {
        let url = source("https://api.github.com").first_page_url(1_606_929_874_512, Some(1_606_929_900_000));
        let phrase = url.query_pairs().find(|(k, _)| k == "phrase").map(|(_, v)| v.into_owned());
        assert_eq!(phrase.as_deref(), Some("created:2020-12-02T17:24:34+00:00..2020-12-02T17:24:59+00:00"));
    }

    #[test]
    fn links_are_followed_only_to_the_configured_origin_and_path() {
        let github = source("https://api.github.com");
        let ok = Url::parse("https://api.github.com/orgs/acme/audit-log?after=abc").expect("url");
        assert!(github.allowed(&ok));
        for foreign in
            ["https://evil.example.com/orgs/acme/audit-log", "http://api.github.com/x", "https://api.github.com:8443/x"]
        {
            assert!(!github.allowed(&Url::parse(foreign).expect("url")), "{foreign}");
        }
        let ghes = source("https://ghes.example.com/api/v3");
        assert!(ghes.allowed(&Url::parse("https://ghes.example.com/api/v3/orgs/acme/audit-log?page=2").expect("url")));
        for outside in ["https://ghes.example.com/orgs/acme/audit-log", "https://ghes.example.com/api/v30/x"] {
            assert!(!ghes.allowed(&Url::parse(outside).expect("url")), "{outside}");
        }
    }

    #[test]
    fn an_absurd_reset_time_is_clamped_not_overflowed() {
        let latest = SystemTime::now() + http::MAX_WAIT + Duration::from_secs(1);
        assert!(reset_time(u64::MAX) <= latest);
        assert_eq!(reset_time(1_700_000_000), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    proptest::proptest! {
        #[test]
        fn any_link_header_is_read_or_refused_without_panicking(text in ".{0,120}") {
            let github = source("https://api.github.com");
            let _ = github.parse_next_link(&text);
        }
    }
}
