//! The Sekoia.io HTTP intake as an [`IntakeSink`]: `POST {intake}/batch`, gzip, bounded bodies.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use flate2::{Compress, Compression};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use url::Url;

use crate::budget::Budget;
use crate::compression::compress_all;
use crate::credentials::CredentialCache;
use crate::http::{self, Backoff, Failure, ProbeFailure, send_within, send_within_grace};
use crate::ports::{AuditEvent, IntakeSink, SinkError};

/// The intake refuses larger events: 250,000 is what Sekoia's own SDK enforces (its docs say
/// 250 KiB), so nothing it would take is held back and nothing it refuses is sent.
pub const MAX_EVENT_BYTES: usize = 250_000;
/// Bodies stay under this many bytes as sent (before gzip), escaping included.
pub const MAX_BODY_BYTES: usize = 9 * 1024 * 1024;
/// A body being posted when the run's budget ends gets this long more to be answered, rather
/// than be cut off after the intake stored it and sent again by the next run. Inside the
/// Lambda's safety margin (`lambda::SAFETY_MARGIN`) with the save that follows.
const POST_GRACE: Duration = Duration::from_secs(5);

pub struct SekoiaIntake {
    client: reqwest::Client,
    batch_url: Url,
    credentials: Arc<CredentialCache>,
    max_body_bytes: usize,
    /// One gzip compressor for every body ([`crate::compression`]).
    gzip: Mutex<Compress>,
}

/// What the intake did with one body.
enum Answer {
    /// With the number of `event_ids` it answered, when it answered them.
    Acknowledged(Option<usize>),
    /// 413: the body, or the one event in it, is more than the intake takes.
    TooLarge,
}

const MISSING_KEY: &str = "no intake key: set SEKOIA_INTAKE_KEY or the secret's sekoia_intake_key";

/// Sekoia's answer to `/batch`: an id per event it accepted.
#[derive(serde::Deserialize)]
struct BatchAnswer {
    event_ids: Vec<serde_json::Value>,
}

/// How many events an answer acknowledges; an answer without `event_ids` acknowledges all.
fn acknowledged_count(body: &str) -> Option<usize> {
    serde_json::from_str::<BatchAnswer>(body).ok().map(|answer| answer.event_ids.len())
}

/// Why posting stopped.
enum PostError {
    KeyRejected(StatusCode),
    Sink(SinkError),
}

impl SekoiaIntake {
    pub fn new(client: reqwest::Client, intake_url: &Url, credentials: Arc<CredentialCache>) -> Self {
        let batch_url = http::join_path(intake_url, "batch");
        let gzip = Mutex::new(Compress::new_gzip(Compression::fast(), 15));
        Self { client, batch_url, credentials, max_body_bytes: MAX_BODY_BYTES, gzip }
    }

    /// Posts an empty batch, which stores nothing: whether the intake answers and takes the
    /// key. The error is the intake's status and message, never the key.
    pub async fn probe(&self, budget: &Budget) -> Result<(), ProbeFailure> {
        let credentials = self
            .credentials
            .get()
            .await
            .map_err(|e| ProbeFailure { status: None, message: format!("intake credentials: {e}") })?;
        let key = credentials
            .intake_key
            .as_ref()
            .ok_or_else(|| ProbeFailure { status: None, message: MISSING_KEY.into() })?;
        let body = serde_json::json!({"intake_key": key.expose(), "jsons": []}).to_string();
        let request = self.client.post(self.batch_url.clone()).header(CONTENT_TYPE, "application/json").body(body);
        match send_within(request, budget).await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let text: String = http::read_prefix(response, http::ANSWER_CAP).await.chars().take(200).collect();
                Err(ProbeFailure { status: Some(status), message: text.replace(key.expose(), "***") })
            }
            Err(Failure::OutOfTime) => {
                Err(ProbeFailure { status: None, message: "the intake did not answer in time".into() })
            }
            Err(Failure::Transient(why)) => Err(ProbeFailure { status: None, message: why }),
        }
    }

    /// A smaller body limit, to exercise chunking without megabytes of events.
    pub fn with_max_body_bytes(mut self, max_body_bytes: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self
    }

    /// Splits the events into `/batch` bodies of at most `max_bytes` each, with the events
    /// each body holds.
    fn bodies(&self, events: &[&AuditEvent], key: &str, max_bytes: usize) -> Vec<(Vec<u8>, Range<usize>)> {
        let mut head = br#"{"intake_key":"#.to_vec();
        push_json_string(&mut head, key);
        head.extend_from_slice(br#","jsons":["#);
        let tail = b"]}";
        let mut bodies = Vec::new();
        let mut body = head.clone();
        let mut start = 0;
        for (index, event) in events.iter().enumerate() {
            // Escaped straight into the body; taken back out if it makes the body too large.
            let before = body.len();
            if index > start {
                body.push(b',');
            }
            push_json_string(&mut body, event.json());
            if index > start && body.len() + tail.len() > max_bytes {
                let element_from = before + 1;
                let element = body.split_off(element_from);
                body.truncate(before);
                body.extend_from_slice(tail);
                bodies.push((std::mem::replace(&mut body, head.clone()), start..index));
                start = index;
                body.extend_from_slice(&element);
            }
        }
        if start < events.len() {
            body.extend_from_slice(tail);
            bodies.push((body, start..events.len()));
        }
        bodies
    }

    /// Posts every body in turn and returns how many events the intake did not acknowledge. A
    /// body the intake finds too large is split in two and retried; a single event it refuses
    /// is under the limit we know, so the intake's limit is not what we think: that fails the
    /// run rather than drop the event. On any failure, says how many events went before it.
    async fn post_all(&self, events: &[&AuditEvent], key: &str, budget: &Budget) -> Result<usize, (usize, PostError)> {
        let mut unacknowledged = 0;
        let mut pending: VecDeque<(Vec<u8>, Range<usize>)> = self.bodies(events, key, self.max_body_bytes).into();
        while let Some((body, range)) = pending.pop_front() {
            match self.post(&body, budget).await.map_err(|e| (range.start, e))? {
                Answer::Acknowledged(Some(ids)) if ids < range.len() => {
                    let missing = range.len() - ids;
                    unacknowledged += missing;
                    tracing::warn!(
                        events = range.len(),
                        acknowledged = ids,
                        first_document_id = %events[range.start].label(),
                        last_document_id = %events[range.end - 1].label(),
                        "the intake accepted a batch but acknowledged only some of its events: {missing} were refused inside it (for example over its size limit) and are not counted as forwarded"
                    );
                }
                Answer::Acknowledged(_) => {}
                Answer::TooLarge if range.len() > 1 => {
                    let middle = range.start + range.len() / 2;
                    tracing::warn!(
                        events = range.len(),
                        "the intake found a batch too large (413); sending it in two halves"
                    );
                    for half in [middle..range.end, range.start..middle] {
                        for (body, within) in self.bodies(&events[half.clone()], key, usize::MAX) {
                            pending.push_front((body, half.start + within.start..half.start + within.end));
                        }
                    }
                }
                Answer::TooLarge => {
                    let event = events[range.start];
                    return Err((
                        range.start,
                        PostError::Sink(SinkError::Fatal(format!(
                            "the intake refused event {} of {} bytes as too large (413), under the {MAX_EVENT_BYTES}-byte limit this connector knows: check SEKOIA_INTAKE_URL; the event stays unsent and the cursor before it",
                            event.label(),
                            event.json().len()
                        ))),
                    ));
                }
            }
        }
        Ok(unacknowledged)
    }

    async fn post(&self, body: &[u8], budget: &Budget) -> Result<Answer, PostError> {
        let gzipped = compress_all(&mut self.gzip.lock().unwrap_or_else(PoisonError::into_inner), body)
            .map_err(|e| PostError::Sink(SinkError::Fatal(format!("cannot compress the intake body: {e}"))))?;
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let request = self
                .client
                .post(self.batch_url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
                .body(gzipped.clone());
            let (why, wait) = match send_within_grace(request, budget, POST_GRACE).await {
                Err(Failure::OutOfTime) => return Err(PostError::Sink(SinkError::OutOfTime)),
                Err(Failure::Transient(why)) => (why, None),
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        // The batch is stored once the status says so; an unreadable answer
                        // acknowledges it all.
                        let answer = http::read_prefix(response, http::INTAKE_ANSWER_CAP).await;
                        return Ok(Answer::Acknowledged(acknowledged_count(&answer)));
                    }
                    let retry_after = http::retry_after(&response);
                    let text: String = http::read_prefix(response, http::ANSWER_CAP).await.chars().take(200).collect();
                    match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(PostError::KeyRejected(status)),
                        StatusCode::PAYLOAD_TOO_LARGE => return Ok(Answer::TooLarge),
                        s if s.is_server_error()
                            || s == StatusCode::TOO_MANY_REQUESTS
                            || s == StatusCode::REQUEST_TIMEOUT =>
                        {
                            (format!("intake answered {s}"), retry_after)
                        }
                        s => {
                            return Err(PostError::Sink(SinkError::Fatal(format!(
                                "the intake refused a batch ({s}): {text}"
                            ))));
                        }
                    }
                }
            };
            let delay = wait.unwrap_or_else(|| backoff.next_delay());
            if !budget.allows(delay, Duration::from_secs(1)) {
                return Err(PostError::Sink(SinkError::Fatal(format!(
                    "the intake kept failing ({why}) until the run's time budget ran out"
                ))));
            }
            tracing::warn!(retry_in_ms = delay.as_millis() as u64, "posting to the intake failed ({why}); retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// `text` as a JSON string, escaped as JSON requires.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, text);
}

#[async_trait]
impl IntakeSink for SekoiaIntake {
    fn max_event_bytes(&self) -> usize {
        MAX_EVENT_BYTES
    }

    async fn send(&self, events: &[&AuditEvent], budget: &Budget) -> Result<usize, SinkError> {
        let credential_error = |e| SinkError::Fatal(format!("intake credentials: {e}"));
        let missing_key = || SinkError::Fatal(MISSING_KEY.into());
        let credentials = self.credentials.get().await.map_err(credential_error)?;
        let key = credentials.intake_key.as_ref().ok_or_else(missing_key)?;
        let (acknowledged, status) = match self.post_all(events, key.expose(), budget).await {
            Ok(unacknowledged) => return Ok(unacknowledged),
            Err((_, PostError::Sink(err))) => return Err(err),
            Err((acknowledged, PostError::KeyRejected(status))) => (acknowledged, status),
        };
        // The key may have been rotated since it was read: read it again, once.
        tracing::warn!("the intake rejected the key ({status}); reading the credentials again");
        let credentials = self.credentials.reload().await.map_err(credential_error)?;
        let key = credentials.intake_key.as_ref().ok_or_else(missing_key)?;
        match self.post_all(&events[acknowledged..], key.expose(), budget).await {
            Ok(unacknowledged) => Ok(unacknowledged),
            Err((_, PostError::Sink(err))) => Err(err),
            Err((_, PostError::KeyRejected(status))) => Err(SinkError::Fatal(format!(
                "the intake key was rejected ({status}): check SEKOIA_INTAKE_KEY (or the secret's sekoia_intake_key) and SEKOIA_INTAKE_URL"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{CredentialCache, Credentials, GitHubCredential, StaticCredentials};
    use crate::secret::Secret;
    use serde_json::value::RawValue;

    fn event(payload: &str) -> AuditEvent {
        let text = serde_json::json!({"_document_id": "d", "@timestamp": 1, "note": payload}).to_string();
        AuditEvent::from_raw(RawValue::from_string(text).expect("json"))
    }

    fn credentials() -> Arc<CredentialCache> {
        let credentials = Credentials {
            github: Some(GitHubCredential::Token(Secret::new("t"))),
            intake_key: Some(Secret::new("key")),
        };
        Arc::new(CredentialCache::new(Box::new(StaticCredentials(credentials))))
    }

    fn intake(max_body_bytes: usize) -> SekoiaIntake {
        let url = Url::parse("https://intake.sekoia.io").expect("url");
        SekoiaIntake::new(reqwest::Client::new(), &url, credentials()).with_max_body_bytes(max_body_bytes)
    }

    #[test]
    fn bodies_stay_under_the_byte_limit_counting_escapes_and_multibyte_text() {
        // Quotes double under escaping and é is two bytes: counting characters would overflow.
        let events: Vec<AuditEvent> =
            (0..200).map(|i| event(&format!("{i} \"quoted\" é {}", "\u{7}".repeat(50)))).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let bodies = intake(4096).bodies(&refs, "key", 4096);
        assert!(bodies.len() > 1);
        let mut forwarded = Vec::new();
        for (body, range) in &bodies {
            assert!(body.len() <= 4096, "body of {} bytes", body.len());
            let parsed: serde_json::Value = serde_json::from_slice(body).expect("valid json");
            assert_eq!(parsed["intake_key"], "key");
            let jsons = parsed["jsons"].as_array().expect("jsons");
            assert_eq!(jsons.len(), range.len());
            for json in jsons {
                forwarded.push(json.as_str().expect("a JSON string").to_owned());
            }
        }
        let sent: Vec<&str> = events.iter().map(AuditEvent::json).collect();
        assert_eq!(forwarded, sent, "every event, in order, byte for byte");
    }

    #[test]
    fn an_answer_counts_its_event_ids_and_one_without_them_acknowledges_all() {
        assert_eq!(acknowledged_count(r#"{"received": true, "event_ids": ["a", "b"]}"#), Some(2));
        assert_eq!(acknowledged_count(r#"{"event_ids": []}"#), Some(0));
        assert_eq!(acknowledged_count(r#"{"received": true}"#), None);
        assert_eq!(acknowledged_count("<html>ok</html>"), None);
    }

    #[test]
    fn the_batch_path_is_appended_to_a_regional_base() {
        let url = Url::parse("https://intake.fra2.sekoia.io/api/v1/intake-http").expect("url");
        let sink = SekoiaIntake::new(reqwest::Client::new(), &url, credentials());
        assert_eq!(sink.batch_url.as_str(), "https://intake.fra2.sekoia.io/api/v1/intake-http/batch");
    }
}
