//! The simulated `GET /orgs/{org}/audit-log`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use super::{SimEvent, SimOptions, lock};
use crate::timefmt::to_ms;

pub struct GitHubState {
    org: String,
    token: String,
    pub latency: Duration,
    /// Sorted by (`@timestamp`, `_document_id`), GitHub's order.
    events: Vec<SimEvent>,
    rate_limit: u64,
    rate_used: u64,
    rate_reset: u64,
    /// Audit-log requests answered, of any status.
    pub requests: u64,
}

impl GitHubState {
    pub(super) fn new(options: &SimOptions) -> Self {
        Self {
            org: options.org.clone(),
            token: options.token.clone(),
            latency: options.latency,
            events: Vec::new(),
            rate_limit: options.rate_limit,
            rate_used: 0,
            rate_reset: epoch_seconds() + 3600,
            requests: 0,
        }
    }

    /// Adds events to the index (hidden ones stay invisible until [`Self::reveal_all`]).
    pub fn add_events(&mut self, events: impl IntoIterator<Item = SimEvent>) {
        self.events.extend(events);
        self.events.sort_by(|a, b| (a.timestamp_ms, &a.document_id).cmp(&(b.timestamp_ms, &b.document_id)));
    }

    /// GitHub finishes indexing: every hidden event becomes searchable.
    pub fn reveal_all(&mut self) {
        for event in &mut self.events {
            event.hidden = false;
        }
    }

    pub fn events(&self) -> &[SimEvent] {
        &self.events
    }

    /// The token was rotated: only `token` is accepted from now on.
    pub fn set_token(&mut self, token: &str) {
        self.token = token.to_owned();
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
    Router::new().route("/orgs/{org}/audit-log", get(audit_log)).with_state(state)
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

fn parse_time(text: &str) -> Option<i64> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    humantime::parse_rfc3339_weak(full.trim_end_matches('Z')).ok().map(|t| to_ms(t).div_euclid(1000) * 1000)
}

fn parse_phrase(phrase: &str) -> Option<SearchFilter> {
    let mut query = SearchFilter { from_ms: i64::MIN, until_ms: i64::MAX, actions: Vec::new() };
    for term in phrase.split([' ', '+']).filter(|t| !t.is_empty()) {
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

async fn audit_log(
    State(state): State<Arc<Mutex<GitHubState>>>,
    Path(org): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    request_headers: HeaderMap,
) -> Response {
    let latency = lock(&state).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut state = lock(&state);
    state.requests += 1;
    let mut headers = HeaderMap::new();
    let authorized = request_headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.token) || v == format!("token {}", state.token));
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, headers, "Bad credentials");
    }
    state.rate_headers(&mut headers);
    if state.rate_used >= state.rate_limit {
        return error(StatusCode::FORBIDDEN, headers, "API rate limit exceeded for user ID 1.");
    }
    state.rate_used += 1;
    state.rate_headers(&mut headers);
    if org != state.org {
        return error(StatusCode::NOT_FOUND, headers, "Not Found");
    }

    let Some(query) = parse_phrase(params.get("phrase").map(String::as_str).unwrap_or("")) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, headers, "Invalid search phrase");
    };
    let include = params.get("include").map(String::as_str).unwrap_or("web");
    let (want_web, want_git) = match include {
        "web" => (true, false),
        "git" => (false, true),
        "all" => (true, true),
        _ => return error(StatusCode::UNPROCESSABLE_ENTITY, headers, "Invalid include"),
    };
    let ascending = params.get("order").map(String::as_str) == Some("asc");
    let per_page = params.get("per_page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100);
    let after = match params.get("after").filter(|a| !a.is_empty()) {
        Some(cursor) => match decode_cursor(cursor) {
            Some(position) => Some(position),
            None => return error(StatusCode::INTERNAL_SERVER_ERROR, headers, "Server Error"),
        },
        None => None,
    };

    let matches = |e: &SimEvent| {
        !e.hidden
            && e.timestamp_ms >= query.from_ms
            && e.timestamp_ms < query.until_ms
            && (if e.git { want_git } else { want_web })
            && (query.actions.is_empty()
                || query.actions.iter().any(|a| e.json.contains(&format!("\"action\":\"{a}\""))))
    };
    let events = &state.events;
    let page: Vec<&SimEvent> = if ascending {
        let start = match &after {
            Some((ts, id)) => events.partition_point(|e| (e.timestamp_ms, &e.document_id) <= (*ts, id)),
            None => events.partition_point(|e| e.timestamp_ms < query.from_ms),
        };
        events[start..]
            .iter()
            .take_while(|e| e.timestamp_ms < query.until_ms)
            .filter(|e| matches(e))
            .take(per_page + 1)
            .collect()
    } else {
        let end = match &after {
            Some((ts, id)) => events.partition_point(|e| (e.timestamp_ms, &e.document_id) < (*ts, id)),
            None => events.partition_point(|e| e.timestamp_ms < query.until_ms),
        };
        events[..end]
            .iter()
            .rev()
            .take_while(|e| e.timestamp_ms >= query.from_ms)
            .filter(|e| matches(e))
            .take(per_page + 1)
            .collect()
    };
    let has_more = page.len() > per_page;
    let page = &page[..page.len().min(per_page)];

    let base = format!(
        "http://{}/orgs/{org}/audit-log",
        request_headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1")
    );
    let mut link_query: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "after" && k.as_str() != "before")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    link_query.sort();
    let encoded = |extra: &[(&str, &str)]| {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &link_query {
            serializer.append_pair(k, v);
        }
        for (k, v) in extra {
            serializer.append_pair(k, v);
        }
        serializer.finish()
    };
    let mut links = vec![format!("<{base}?{}>; rel=\"first\"", encoded(&[]))];
    if let (true, Some(last)) = (has_more, page.last()) {
        links.push(format!("<{base}?{}>; rel=\"next\"", encoded(&[("after", &encode_cursor(last)), ("before", "")])));
    }
    if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
        headers.insert("link", value);
    }
    headers.insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    let body = format!("[{}]", page.iter().map(|e| e.json.as_str()).collect::<Vec<_>>().join(","));
    (StatusCode::OK, headers, body).into_response()
}
