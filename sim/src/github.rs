//! The simulated GitHub: the organization and enterprise audit logs, and the GitHub App token
//! endpoints, optionally under a GHES `/api/v3` prefix with page-number pagination.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::json;

use super::faults::{broken_body, gzip_bomb, gzipped, huge_body};
use super::streams::StreamStore;
use super::to_ms;
use super::{Fault, FaultScript, SimClock, SimEvent, SimOptions, lock};

/// A GitHub App the simulator knows: it checks JWTs against `public_key_pem` like GitHub does.
#[derive(Debug, Clone)]
pub struct SimApp {
    pub app_id: String,
    /// SPKI PEM (`BEGIN PUBLIC KEY`).
    pub public_key_pem: String,
    pub installation_id: u64,
    /// Lifetime of the installation tokens it hands out (GitHub: one hour).
    pub token_ttl: Duration,
    /// What the installation may do, as GitHub lists it: `{"organization_administration": "read"}`.
    pub permissions: serde_json::Value,
}

pub struct GitHubState {
    org: String,
    token: String,
    /// `X-OAuth-Scopes` of the classic token: GitHub sends it on every answer to one.
    token_scopes: String,
    pub latency: Duration,
    /// Per target path (`orgs/acme`, `enterprises/acme-corp`), sorted by (`@timestamp`,
    /// `_document_id`), GitHub's order.
    logs: HashMap<String, Vec<SimEvent>>,
    rate_limit: u64,
    rate_used: u64,
    rate_reset: u64,
    /// Audit-log requests answered, of any status.
    pub requests: u64,
    /// Pages are gzipped for a client that accepts it, as GitHub's API does; off, they never are.
    pub gzip_answers: bool,
    /// Pages answered gzipped.
    pub gzipped_answers: u64,
    app: Option<SimApp>,
    /// Installation tokens handed out, with their expiry.
    installation_tokens: HashMap<String, SystemTime>,
    pub installation_lookups: u64,
    pub installation_token_requests: u64,
    /// Enterprise audit-log streaming configurations (one store for every enterprise).
    pub streams: StreamStore,
    /// What the coming audit-log requests go through.
    pub faults: FaultScript,
    /// GHES style: `page=N` links instead of `after=` cursors.
    page_numbers: bool,
    link_scheme: &'static str,
    prefix: String,
    clock: SimClock,
}

impl GitHubState {
    pub(super) fn new(options: &SimOptions) -> Self {
        Self {
            org: options.org.clone(),
            token: options.token.clone(),
            token_scopes: "read:audit_log, repo".to_owned(),
            latency: options.latency,
            logs: HashMap::from([(format!("orgs/{}", options.org), Vec::new())]),
            rate_limit: options.rate_limit,
            rate_used: 0,
            rate_reset: epoch_seconds() + 3600,
            requests: 0,
            gzip_answers: false,
            gzipped_answers: 0,
            app: options.app.clone(),
            installation_tokens: HashMap::new(),
            installation_lookups: 0,
            installation_token_requests: 0,
            streams: StreamStore::default(),
            faults: FaultScript::default(),
            page_numbers: options.page_numbers,
            link_scheme: if options.behind_tls { "https" } else { "http" },
            prefix: options.api_prefix.clone(),
            clock: options.clock.clone(),
        }
    }

    /// Adds events to the organization's log (hidden ones stay invisible until [`Self::reveal_all`]).
    pub fn add_events(&mut self, events: impl IntoIterator<Item = SimEvent>) {
        let target = format!("orgs/{}", self.org);
        self.add_events_to(&target, events);
    }

    /// Adds events to another target's log, e.g. `enterprises/acme-corp` or `orgs/globex`.
    pub fn add_events_to(&mut self, target: &str, events: impl IntoIterator<Item = SimEvent>) {
        let log = self.logs.entry(target.to_owned()).or_default();
        log.extend(events);
        log.sort_by(|a, b| (a.timestamp_ms, &a.document_id).cmp(&(b.timestamp_ms, &b.document_id)));
    }

    /// GitHub finishes indexing: every hidden event becomes searchable.
    pub fn reveal_all(&mut self) {
        for event in self.logs.values_mut().flatten() {
            event.hidden = false;
        }
    }

    /// The organization's log.
    pub fn events(&self) -> &[SimEvent] {
        self.events_of(&format!("orgs/{}", self.org))
    }

    pub fn events_of(&self, target: &str) -> &[SimEvent] {
        self.logs.get(target).map(Vec::as_slice).unwrap_or_default()
    }

    /// The token was rotated: only `token` is accepted from now on.
    pub fn set_token(&mut self, token: &str) {
        self.token = token.to_owned();
    }

    /// The classic token's scopes, comma-separated as GitHub writes them.
    pub fn set_token_scopes(&mut self, scopes: &str) {
        self.token_scopes = scopes.to_owned();
    }

    /// The organization exists (its log may be empty), for lookups by name.
    pub fn add_org(&mut self, org: &str) {
        self.logs.entry(format!("orgs/{org}")).or_default();
    }

    /// Every installation token handed out so far stops working (GitHub revoked them).
    pub fn revoke_installation_tokens(&mut self) {
        self.installation_tokens.clear();
    }

    pub fn set_rate_limit_remaining(&mut self, remaining: u64, resets_in: Duration) {
        self.rate_used = self.rate_limit.saturating_sub(remaining);
        self.rate_reset = epoch_seconds() + resets_in.as_secs();
    }

    fn rate_headers(&mut self, headers: &mut HeaderMap) {
        if epoch_seconds() >= self.rate_reset {
            self.rate_used = 0;
            self.rate_reset = epoch_seconds() + 3600;
        }
        let remaining = self.rate_limit.saturating_sub(self.rate_used);
        for (name, value) in [
            ("x-ratelimit-limit", self.rate_limit),
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-used", self.rate_used),
            ("x-ratelimit-reset", self.rate_reset),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
        headers.insert("x-ratelimit-resource", HeaderValue::from_static("audit_log"));
    }
}

fn epoch_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(super) fn router(state: Arc<Mutex<GitHubState>>) -> Router {
    let prefix = lock(&state).prefix.clone();
    let routes = Router::new()
        .route("/orgs/{org}/audit-log", get(org_audit_log))
        .route("/enterprises/{enterprise}/audit-log", get(enterprise_audit_log))
        .route("/orgs/{org}/installation", get(installation))
        .route("/app/installations/{id}", get(installation_by_id))
        .route("/rate_limit", get(rate_limit))
        .route("/enterprises/{enterprise}/audit-log/stream-key", get(stream_key))
        .route("/enterprises/{enterprise}/audit-log/streams", get(list_streams).post(create_stream))
        .route(
            "/enterprises/{enterprise}/audit-log/streams/{id}",
            get(get_stream).put(update_stream).delete(delete_stream),
        )
        .route("/app/installations/{id}/access_tokens", post(access_token))
        .layer(axum::middleware::map_response_with_state(state.clone(), stamp_date))
        .with_state(state);
    if prefix.is_empty() { routes } else { Router::new().nest(&prefix, routes) }
}

/// Every answer says when it left by GitHub's clock, as GitHub's do (`Date`).
async fn stamp_date(State(state): State<Arc<Mutex<GitHubState>>>, mut response: Response) -> Response {
    if let Ok(date) = HeaderValue::from_str(&lock(&state).clock.http_date()) {
        response.headers_mut().insert("date", date);
    }
    response
}

fn error(status: StatusCode, headers: HeaderMap, message: &str) -> Response {
    let body = json!({"message": message, "documentation_url": "https://docs.github.com/rest"});
    (status, headers, axum::Json(body)).into_response()
}

/// The half-open range of `@timestamp`s a phrase's `created:` qualifiers allow, at second precision.
struct SearchFilter {
    from_ms: i64,
    until_ms: i64,
    actions: Vec<String>,
}

/// A `created:` operand in the forms GitHub documents: `2026-11-22` or
/// `2026-11-22T10:00:00+00:00`. Anything else is refused, so tests pin the connector to them.
fn parse_time(text: &str) -> Option<i64> {
    let full = match text.len() {
        10 => format!("{text}T00:00:00Z"),
        _ => format!("{}Z", text.strip_suffix("+00:00")?),
    };
    humantime::parse_rfc3339(&full).ok().map(|t| to_ms(t).div_euclid(1000) * 1000)
}

fn parse_phrase(phrase: &str) -> Option<SearchFilter> {
    let mut query = SearchFilter { from_ms: i64::MIN, until_ms: i64::MAX, actions: Vec::new() };
    // Qualifiers are separated by spaces (a `+` in a URL's query is a space already decoded).
    for term in phrase.split(' ').filter(|t| !t.is_empty()) {
        if let Some(created) = term.strip_prefix("created:") {
            if let Some(t) = created.strip_prefix(">=") {
                query.from_ms = query.from_ms.max(parse_time(t)?);
            } else if let Some(t) = created.strip_prefix('>') {
                query.from_ms = query.from_ms.max(parse_time(t)? + 1000);
            } else if let Some(t) = created.strip_prefix("<=") {
                query.until_ms = query.until_ms.min(parse_time(t)? + 1000);
            } else if let Some(t) = created.strip_prefix('<') {
                query.until_ms = query.until_ms.min(parse_time(t)?);
            } else if let Some((a, b)) = created.split_once("..") {
                query.from_ms = query.from_ms.max(parse_time(a)?);
                query.until_ms = query.until_ms.min(parse_time(b)? + if b.len() == 10 { 86_400_000 } else { 1000 });
            } else {
                return None;
            }
        } else if let Some(action) = term.strip_prefix("action:") {
            query.actions.push(action.to_owned());
        }
    }
    Some(query)
}

fn encode_cursor(event: &SimEvent) -> String {
    BASE64.encode(format!("{}|{}", event.timestamp_ms, event.document_id))
}

fn decode_cursor(cursor: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(BASE64.decode(cursor).ok()?).ok()?;
    let (ts, id) = text.split_once('|')?;
    Some((ts.parse().ok()?, id.to_owned()))
}

async fn org_audit_log(
    state: State<Arc<Mutex<GitHubState>>>,
    Path(org): Path<String>,
    params: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    audit_log(state, format!("orgs/{org}"), params, headers).await
}

async fn enterprise_audit_log(
    state: State<Arc<Mutex<GitHubState>>>,
    Path(enterprise): Path<String>,
    params: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    audit_log(state, format!("enterprises/{enterprise}"), params, headers).await
}

/// Who a bearer is: the personal access token, or an unexpired installation token.
enum Caller {
    Person,
    Installation,
}

fn caller(state: &GitHubState, headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token "))?;
    if token == state.token {
        return Some(Caller::Person);
    }
    let expiry = state.installation_tokens.get(token)?;
    (SystemTime::now() < *expiry).then_some(Caller::Installation)
}

async fn audit_log(
    State(state): State<Arc<Mutex<GitHubState>>>,
    target: String,
    Query(params): Query<HashMap<String, String>>,
    request_headers: HeaderMap,
) -> Response {
    let (latency, fault) = {
        let mut state = lock(&state);
        (state.latency, state.faults.take_next())
    };
    let delay = latency + if let Some(Fault::Delay(extra)) = fault { extra } else { Duration::ZERO };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut state = lock(&state);
    state.requests += 1;
    let mut headers = match admit(&mut state, &request_headers, &target, fault.as_ref()) {
        Ok(headers) => headers,
        Err(refusal) => return *refusal,
    };
    let Some(events) = state.logs.get(&target) else {
        return error(StatusCode::NOT_FOUND, headers, "Not Found");
    };
    let request = match PageRequest::parse(&params) {
        Ok(request) => request,
        Err((status, message)) => return error(status, headers, message),
    };
    let mut page = request.select(events, state.clock.now_ms(), state.page_numbers);
    let more = page.len() > request.per_page;
    page.truncate(request.per_page);
    if matches!(fault, Some(Fault::EmptyPageWithNext)) {
        page.clear();
    }

    let host = match fault {
        Some(Fault::ForeignNextLink) => "evil.example.com",
        _ => request_headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
    };
    let links = SearchLinks::new(format!("{}://{host}{}/{target}/audit-log", state.link_scheme, state.prefix), &params);
    let last_before_more = page.last().copied().filter(|_| more);
    let next = next_link(&links, fault.as_ref(), &request, state.page_numbers, last_before_more);
    let link = std::iter::once(links.to(&[], "first")).chain(next).collect::<Vec<_>>().join(", ");
    if let Ok(value) = HeaderValue::from_str(&link) {
        headers.insert("link", value);
    }
    headers.insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    let body = page_body(&page, fault.as_ref(), request.filter.from_ms);
    match fault {
        Some(Fault::BrokenBody) => broken_body(headers, body),
        Some(Fault::HugeBody(bytes)) => huge_body(headers, bytes),
        Some(Fault::GzipBomb(bytes)) => gzip_bomb(headers, bytes),
        _ if state.gzip_answers && accepts_gzip(&request_headers) => {
            state.gzipped_answers += 1;
            gzipped(headers, body.as_bytes())
        }
        _ => (StatusCode::OK, headers, body).into_response(),
    }
}

/// The request's `accept-encoding` names gzip.
fn accepts_gzip(request_headers: &HeaderMap) -> bool {
    let names_gzip = |value: &str| value.split(',').any(|coding| coding.trim().starts_with("gzip"));
    request_headers.get_all("accept-encoding").iter().any(|value| value.to_str().is_ok_and(names_gzip))
}

const RATE_LIMITED: &str = "API rate limit exceeded for user ID 1.";

/// What GitHub checks before it reads a log: the credentials, the rate limit (one request of
/// it spent), an App asking for an enterprise's log; and a scripted fault in their place. The
/// headers every answer to the caller carries, or the refusal.
fn admit(
    state: &mut GitHubState,
    request_headers: &HeaderMap,
    target: &str,
    fault: Option<&Fault>,
) -> Result<HeaderMap, Box<Response>> {
    let mut headers = HeaderMap::new();
    let Some(caller) = caller(state, request_headers) else {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, headers, "Bad credentials")));
    };
    if matches!(caller, Caller::Person) {
        scopes_header(state, &mut headers);
    }
    let mut headers = fault_refusal(state, fault, headers)?;
    state.rate_headers(&mut headers);
    if state.rate_used >= state.rate_limit {
        return Err(Box::new(error(StatusCode::FORBIDDEN, headers, RATE_LIMITED)));
    }
    state.rate_used += 1;
    state.rate_headers(&mut headers);
    if matches!(caller, Caller::Installation) && target.starts_with("enterprises/") {
        return Err(Box::new(error(StatusCode::FORBIDDEN, headers, "Resource not accessible by integration")));
    }
    Ok(headers)
}

/// The answer of a scripted fault that refuses the request; other faults keep `headers`.
fn fault_refusal(
    state: &mut GitHubState,
    fault: Option<&Fault>,
    mut headers: HeaderMap,
) -> Result<HeaderMap, Box<Response>> {
    let status = |code: u16, otherwise| StatusCode::from_u16(code).unwrap_or(otherwise);
    let refusal = match fault {
        Some(Fault::Status(code)) => error(status(*code, StatusCode::INTERNAL_SERVER_ERROR), headers, "Server Error"),
        Some(Fault::RetryAfter(code, seconds)) => {
            headers.insert("retry-after", HeaderValue::from(*seconds));
            error(status(*code, StatusCode::TOO_MANY_REQUESTS), headers, "Try again later")
        }
        Some(Fault::RateLimitExhausted(resets_in)) => {
            state.set_rate_limit_remaining(0, *resets_in);
            state.rate_headers(&mut headers);
            error(StatusCode::FORBIDDEN, headers, RATE_LIMITED)
        }
        Some(Fault::RateLimitMessageOnly) => error(StatusCode::FORBIDDEN, HeaderMap::new(), RATE_LIMITED),
        Some(Fault::AbsurdRateHeaders) => {
            for (name, value) in [
                ("x-ratelimit-limit", "-1750"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "99999999999999999999"),
                ("retry-after", "soon-ish"),
            ] {
                headers.insert(name, HeaderValue::from_static(value));
            }
            error(StatusCode::FORBIDDEN, headers, RATE_LIMITED)
        }
        Some(Fault::SecondaryLimit(retry_after)) => {
            if let Some(seconds) = retry_after {
                headers.insert("retry-after", HeaderValue::from(*seconds));
            }
            let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
            error(StatusCode::FORBIDDEN, headers, message)
        }
        _ => return Ok(headers),
    };
    Err(Box::new(refusal))
}

/// What an audit-log request asks for, read from its query.
struct PageRequest {
    filter: SearchFilter,
    want_web: bool,
    want_git: bool,
    ascending: bool,
    per_page: usize,
    page_number: usize,
    /// The `after` cursor's position: (`@timestamp`, `_document_id`).
    after: Option<(i64, String)>,
}

impl PageRequest {
    /// The request, or the status and message GitHub answers a malformed one with.
    fn parse(params: &HashMap<String, String>) -> Result<Self, (StatusCode, &'static str)> {
        let param = |name: &str| params.get(name).map(String::as_str);
        let filter = parse_phrase(param("phrase").unwrap_or(""))
            .ok_or((StatusCode::UNPROCESSABLE_ENTITY, "Invalid search phrase"))?;
        let (want_web, want_git) = match param("include").unwrap_or("web") {
            "web" => (true, false),
            "git" => (false, true),
            "all" => (true, true),
            _ => return Err((StatusCode::UNPROCESSABLE_ENTITY, "Invalid include")),
        };
        let after = match param("after").filter(|a| !a.is_empty()) {
            Some(cursor) => Some(decode_cursor(cursor).ok_or((StatusCode::INTERNAL_SERVER_ERROR, "Server Error"))?),
            None => None,
        };
        Ok(Self {
            filter,
            want_web,
            want_git,
            ascending: param("order") == Some("asc"),
            per_page: param("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100),
            page_number: param("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).max(1),
            after,
        })
    }

    fn matches(&self, e: &SimEvent, now_ms: i64) -> bool {
        let query = &self.filter;
        !e.hidden
            && e.visible_at_ms <= now_ms
            && e.timestamp_ms >= query.from_ms
            && e.timestamp_ms < query.until_ms
            && (if e.git { self.want_git } else { self.want_web })
            && (query.actions.is_empty()
                || query.actions.iter().any(|a| e.json.contains(&format!("\"action\":\"{a}\""))))
    }

    /// The page's events in the order asked, and one more when another page follows. Page
    /// numbers skip whole pages of matches; cursors start right after the cursor's event.
    fn select<'a>(&self, events: &'a [SimEvent], now_ms: i64, page_numbers: bool) -> Vec<&'a SimEvent> {
        let query = &self.filter;
        let skip = if page_numbers { (self.page_number - 1).saturating_mul(self.per_page) } else { 0 };
        let page = |candidates: &mut dyn Iterator<Item = &'a SimEvent>| {
            candidates.filter(|e| self.matches(e, now_ms)).skip(skip).take(self.per_page + 1).collect()
        };
        if self.ascending {
            let start = match &self.after {
                Some((ts, id)) => events.partition_point(|e| (e.timestamp_ms, &e.document_id) <= (*ts, id)),
                None => events.partition_point(|e| e.timestamp_ms < query.from_ms),
            };
            page(&mut events[start..].iter().take_while(|e| e.timestamp_ms < query.until_ms))
        } else {
            let end = match &self.after {
                Some((ts, id)) => events.partition_point(|e| (e.timestamp_ms, &e.document_id) < (*ts, id)),
                None => events.partition_point(|e| e.timestamp_ms < query.until_ms),
            };
            page(&mut events[..end].iter().rev().take_while(|e| e.timestamp_ms >= query.from_ms))
        }
    }
}

/// The parameters that say where a page starts, rather than what the search is.
fn is_position(name: &str) -> bool {
    matches!(name, "after" | "before" | "page")
}

/// Links to pages of one search: its URL, and its query's parameters (sorted) with or without
/// the request's position.
struct SearchLinks<'a> {
    base: String,
    search: Vec<(&'a str, &'a str)>,
    position: Vec<(&'a str, &'a str)>,
}

impl<'a> SearchLinks<'a> {
    fn new(base: String, params: &'a HashMap<String, String>) -> Self {
        let (position, mut search): (Vec<_>, Vec<_>) =
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())).partition(|(k, _)| is_position(k));
        search.sort();
        Self { base, search, position }
    }

    /// `<URL>; rel="REL"`, the search's parameters followed by `position`.
    fn to(&self, position: &[(&str, &str)], rel: &str) -> String {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        serializer.extend_pairs(self.search.iter().chain(position));
        format!("<{}?{}>; rel=\"{rel}\"", self.base, serializer.finish())
    }
}

/// Where `next` points: where a scripted fault says, else past the last event of a page that
/// has more after it (by cursor, or GHES-style by page number), else nowhere.
fn next_link(
    links: &SearchLinks,
    fault: Option<&Fault>,
    request: &PageRequest,
    page_numbers: bool,
    last_before_more: Option<&SimEvent>,
) -> Option<String> {
    match fault {
        Some(Fault::NextLinkToFirstPage) => Some(links.to(&[], "next")),
        // The same page again: a server going round in circles.
        Some(Fault::EmptyPageWithNext | Fault::NextLinkToItself) => Some(links.to(&links.position, "next")),
        _ if page_numbers => {
            last_before_more.map(|_| links.to(&[("page", &(request.page_number + 1).to_string())], "next"))
        }
        _ => last_before_more.map(|last| links.to(&[("after", &encode_cursor(last)), ("before", "")], "next")),
    }
}

/// The page as GitHub sends it: a JSON array of the events' texts (with one from a minute
/// before the range first, when a fault says so).
fn page_body(page: &[&SimEvent], fault: Option<&Fault>, from_ms: i64) -> String {
    let outside = (matches!(fault, Some(Fault::EventOutsideRange)) && from_ms > i64::MIN).then(|| {
        json!({"@timestamp": from_ms - 60_000, "_document_id": "outside-the-range", "action": "repo.create"})
            .to_string()
    });
    let texts: Vec<&str> = outside.iter().map(String::as_str).chain(page.iter().map(|e| e.json.as_str())).collect();
    format!("[{}]", texts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_times_are_taken_only_in_the_documented_form() {
        let documented = parse_phrase("created:>=2026-11-22T10:00:00+00:00").expect("accepted");
        assert_eq!(documented.from_ms, 1_795_341_600_000);
        let range = parse_phrase("created:2026-11-22T10:00:00+00:00..2026-11-22T10:00:59+00:00").expect("accepted");
        assert_eq!(range.until_ms - range.from_ms, 60_000);
        assert!(parse_phrase("created:2026-11-01..2026-11-21 action:repo.create").is_some(), "dates alone");
        for undocumented in ["created:>=2026-11-22T10:00:00Z", "created:>=2026-11-22T10:00:00 00:00"] {
            assert!(parse_phrase(undocumented).is_none(), "{undocumented}");
        }
    }
}

#[derive(Deserialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
}

fn scopes_header(state: &GitHubState, headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&state.token_scopes) {
        headers.insert("x-oauth-scopes", value);
    }
}

/// `GET /rate_limit`: free, like GitHub's; lists the audit-log allowance among the resources.
async fn rate_limit(State(state): State<Arc<Mutex<GitHubState>>>, request_headers: HeaderMap) -> Response {
    let mut state = lock(&state);
    let mut headers = HeaderMap::new();
    let Some(caller) = caller(&state, &request_headers) else {
        return error(StatusCode::UNAUTHORIZED, headers, "Bad credentials");
    };
    if matches!(caller, Caller::Person) {
        scopes_header(&state, &mut headers);
    }
    state.rate_headers(&mut headers);
    let allowance = json!({
        "limit": state.rate_limit,
        "remaining": state.rate_limit.saturating_sub(state.rate_used),
        "used": state.rate_used,
        "reset": state.rate_reset,
    });
    let core = json!({"limit": 5000, "remaining": 5000, "used": 0, "reset": state.rate_reset});
    let body = json!({"resources": {"core": core, "audit_log": allowance}, "rate": core});
    (StatusCode::OK, headers, axum::Json(body)).into_response()
}

/// Checks an App JWT as GitHub does: RS256 with the app's key, `iss` the app, `exp` in the
/// future, at most ten minutes after `iat`, and `iat` not in the future.
fn verify_app_jwt(state: &GitHubState, headers: &HeaderMap) -> Result<(), &'static str> {
    let app = state.app.as_ref().ok_or("no GitHub App is configured")?;
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("A JSON web token could not be decoded")?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes()).map_err(|_| "bad app key")?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.set_issuer(&[&app.app_id]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<AppClaims>(jwt, &key, &validation)
        .map_err(|_| "A JSON web token could not be decoded")?
        .claims;
    let now = to_ms(SystemTime::now()) / 1000;
    if claims.exp - claims.iat > 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future");
    }
    if claims.iat > now {
        return Err("'Issued at' claim ('iat') must be an Integer representing a time in the past");
    }
    Ok(())
}

async fn installation(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    state.installation_lookups += 1;
    if let Err(message) = verify_app_jwt(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, HeaderMap::new(), message);
    }
    match (&state.app, state.logs.contains_key(&format!("orgs/{org}"))) {
        (Some(app), true) => axum::Json(installation_body(app, &org)).into_response(),
        _ => error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found"),
    }
}

fn installation_body(app: &SimApp, org: &str) -> serde_json::Value {
    json!({"id": app.installation_id, "app_id": app.app_id, "account": {"login": org}, "permissions": app.permissions})
}

async fn installation_by_id(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let state = lock(&state);
    if let Err(message) = verify_app_jwt(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, HeaderMap::new(), message);
    }
    match state.app.as_ref().filter(|app| app.installation_id == id) {
        Some(app) => axum::Json(installation_body(app, &state.org)).into_response(),
        None => error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found"),
    }
}

async fn access_token(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    state.installation_token_requests += 1;
    if let Err(message) = verify_app_jwt(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, HeaderMap::new(), message);
    }
    let Some(ttl) = state.app.as_ref().filter(|app| app.installation_id == id).map(|app| app.token_ttl) else {
        return error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found");
    };
    let token = format!("ghs_{:032x}", fastrand::u128(..));
    let expires_at = SystemTime::now() + ttl;
    state.installation_tokens.insert(token.clone(), expires_at);
    let body = json!({"token": token, "expires_at": humantime::format_rfc3339_seconds(expires_at).to_string(), "permissions": state.app.as_ref().map(|app| app.permissions.clone())});
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// The streaming endpoints take a classic token of an enterprise owner, nothing else: the
/// refusal, if any.
fn stream_refusal(state: &mut GitHubState, headers: &HeaderMap, enterprise: &str) -> Option<Response> {
    state.streams.requests += 1;
    match caller(state, headers) {
        None => Some(error(StatusCode::UNAUTHORIZED, HeaderMap::new(), "Bad credentials")),
        Some(Caller::Installation) => {
            Some(error(StatusCode::FORBIDDEN, HeaderMap::new(), "Resource not accessible by integration"))
        }
        Some(Caller::Person) if !state.logs.contains_key(&format!("enterprises/{enterprise}")) => {
            Some(error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found"))
        }
        Some(Caller::Person) => None,
    }
}

fn validation_failed(message: &str) -> Response {
    let body = json!({"message": "Validation Failed", "errors": [message], "documentation_url": "https://docs.github.com/rest"});
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

async fn stream_key(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(enterprise): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    if let Some(refused) = stream_refusal(&mut state, &headers, &enterprise) {
        return refused;
    }
    axum::Json(state.streams.public_key()).into_response()
}

async fn list_streams(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(enterprise): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    if let Some(refused) = stream_refusal(&mut state, &headers, &enterprise) {
        return refused;
    }
    axum::Json(state.streams.streams.iter().map(|s| s.object()).collect::<Vec<_>>()).into_response()
}

async fn create_stream(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(enterprise): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = lock(&state);
    if let Some(refused) = stream_refusal(&mut state, &headers, &enterprise) {
        return refused;
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, HeaderMap::new(), "Problems parsing JSON");
    };
    match state.streams.create(&body, &now_text()) {
        Ok(object) => axum::Json(object).into_response(),
        Err(message) => validation_failed(&message),
    }
}

async fn get_stream(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path((enterprise, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    if let Some(refused) = stream_refusal(&mut state, &headers, &enterprise) {
        return refused;
    }
    match state.streams.streams.iter().find(|s| s.id == id) {
        Some(stream) => axum::Json(stream.object()).into_response(),
        None => error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found"),
    }
}

async fn update_stream(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path((enterprise, id)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = lock(&state);
    if let Some(refused) = stream_refusal(&mut state, &headers, &enterprise) {
        return refused;
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, HeaderMap::new(), "Problems parsing JSON");
    };
    match state.streams.update(id, &body, &now_text()) {
        None => error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found"),
        Some(Ok(object)) => axum::Json(object).into_response(),
        Some(Err(message)) => validation_failed(&message),
    }
}

async fn delete_stream(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path((enterprise, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Response {
    let mut state = lock(&state);
    if let Some(refused) = stream_refusal(&mut state, &headers, &enterprise) {
        return refused;
    }
    let before = state.streams.streams.len();
    state.streams.streams.retain(|s| s.id != id);
    if state.streams.streams.len() == before {
        return error(StatusCode::NOT_FOUND, HeaderMap::new(), "Not Found");
    }
    StatusCode::NO_CONTENT.into_response()
}
