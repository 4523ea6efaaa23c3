//! Single requests the `check` doctor makes: what GitHub says about a credential and a target,
//! without reading the log.

use serde::Deserialize;
use url::Url;

use super::{api_headers, github_message};
use crate::budget::Budget;
use crate::config::Config;
use crate::http::{self, Failure, ProbeFailure, join_path, send_within};
use crate::secret::Secret;

/// What `GET /rate_limit` (free: it spends no request) tells about a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFacts {
    /// `X-OAuth-Scopes`: a classic token's scopes; `None` for other kinds of token.
    pub scopes: Option<Vec<String>>,
    /// The audit-log allowance, when GitHub lists one (GHES may not).
    pub audit_log: Option<Allowance>,
    /// How far GitHub's clock is ahead of this host's (ms; its `Date`, whole seconds).
    pub clock_offset_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Allowance {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds.
    pub reset: u64,
}

#[derive(Deserialize)]
struct RateLimitBody {
    resources: Resources,
}

#[derive(Deserialize)]
struct Resources {
    audit_log: Option<Allowance>,
}

/// The classic-token scope the audit log needs.
pub const AUDIT_LOG_SCOPE: &str = "read:audit_log";

/// `X-OAuth-Scopes: repo, read:audit_log` → its scopes.
pub fn parse_scopes(header: &str) -> Vec<String> {
    header.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

async fn get(
    client: &reqwest::Client,
    url: Url,
    authorization: &Secret,
    budget: &Budget,
) -> Result<reqwest::Response, ProbeFailure> {
    let headers = api_headers(authorization)
        .ok_or_else(|| ProbeFailure { status: None, message: "the credential is not a valid header value".into() })?;
    match send_within(client.get(url).headers(headers), budget).await {
        Ok(response) if response.status().is_success() => Ok(response),
        Ok(response) => {
            let status = response.status();
            Err(ProbeFailure { status: Some(status), message: github_message(response).await })
        }
        Err(Failure::OutOfTime) => Err(ProbeFailure { status: None, message: "GitHub did not answer in time".into() }),
        Err(Failure::Transient(why)) => Err(ProbeFailure { status: None, message: why }),
    }
}

/// `GET /rate_limit` with the credential: whether GitHub takes it, its scopes, the audit-log budget.
pub async fn credential_facts(
    client: &reqwest::Client,
    api: &Url,
    authorization: &Secret,
    budget: &Budget,
) -> Result<CredentialFacts, ProbeFailure> {
    let response = get(client, join_path(api, "rate_limit"), authorization, budget).await?;
    let clock_offset_ms = http::date_ms(&response).map(|date| date - crate::timefmt::now_ms());
    let scopes = response.headers().get("x-oauth-scopes").and_then(|v| v.to_str().ok()).map(parse_scopes);
    let audit_log =
        http::read_json::<RateLimitBody>(response, http::ANSWER_CAP).await.ok().and_then(|b| b.resources.audit_log);
    Ok(CredentialFacts { scopes, audit_log, clock_offset_ms })
}

/// One `per_page=1` audit-log request: the number of events on that page (0 or 1).
pub async fn audit_log_page(
    client: &reqwest::Client,
    config: &Config,
    authorization: &Secret,
    budget: &Budget,
) -> Result<usize, ProbeFailure> {
    let mut page = join_path(&config.github_api_url, &config.target.audit_log_path());
    page.query_pairs_mut().append_pair("per_page", "1").append_pair("include", config.include.as_str());
    let response = get(client, page, authorization, budget).await?;
    match http::read_json::<Vec<serde_json::Value>>(response, http::PAGE_CAP).await {
        Ok(events) => Ok(events.len()),
        Err(why) => {
            Err(ProbeFailure { status: None, message: format!("the answer is not a JSON array of events: {why}") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scopes_are_split_on_commas_and_trimmed() {
        assert_eq!(parse_scopes("repo, read:audit_log ,admin:org"), ["repo", "read:audit_log", "admin:org"]);
        assert!(parse_scopes("").is_empty());
    }

    proptest! {
        #[test]
        fn any_scopes_header_parses_to_non_empty_trimmed_names(header in ".{0,200}") {
            for scope in parse_scopes(&header) {
                prop_assert!(!scope.is_empty() && scope.trim() == scope);
            }
        }
    }
}
