//! The simulated Sekoia intake: `POST /batch`, plus `GET /_sim/stats` for the demo.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faults::{broken_body, drop_connection, huge_body};
use super::{Fault, FaultScript, lock};

/// Sekoia's per-event limit, as its documentation states it (250 KiB).
const MAX_EVENT_BYTES: usize = 250 * 1024;

pub struct IntakeState {
    key: String,
    max_body_bytes: usize,
    latency: Duration,
    /// Larger events are refused: alone in a batch with 413, among others by leaving them out
    /// of `event_ids`, as Sekoia documents.
    pub max_event_bytes: usize,
    /// What the coming batches go through.
    pub faults: FaultScript,
    /// How many times each `_document_id` arrived.
    received: HashMap<String, u32>,
    /// Event texts in arrival order, for byte-for-byte checks.
    pub texts: Vec<String>,
    pub stats: IntakeStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IntakeStats {
    pub batches: u64,
    pub events: u64,
    pub unique_events: u64,
    pub duplicate_events: u64,
    pub largest_body_bytes: usize,
    /// Bodies as they came over the wire (gzip included), and the event texts they carried.
    pub wire_bytes: u64,
    pub event_bytes: u64,
    pub rejected_batches: u64,
    pub rejected_events: u64,
    /// Requests that carried the intake key in a header (it belongs in the body only).
    pub key_in_headers: u64,
}

impl IntakeState {
    pub(super) fn new(key: &str, max_body_bytes: usize, latency: Duration) -> Self {
        Self {
            key: key.to_owned(),
            max_body_bytes,
            latency,
            max_event_bytes: MAX_EVENT_BYTES,
            faults: FaultScript::default(),
            received: HashMap::new(),
            texts: Vec::new(),
            stats: IntakeStats::default(),
        }
    }

    /// The intake's body limit changed.
    pub fn set_max_body_bytes(&mut self, max_body_bytes: usize) {
        self.max_body_bytes = max_body_bytes;
    }

    /// The key was rotated: only `key` is accepted from now on.
    pub fn set_key(&mut self, key: &str) {
        self.key = key.to_owned();
    }

    /// Keeps the batch's events, as Sekoia does: their ids as it answers them, and how many it
    /// left out for being over the per-event limit.
    fn store(&mut self, texts: Vec<String>) -> (Vec<String>, u64) {
        let mut accepted = Vec::new();
        let mut too_large = 0;
        for text in texts {
            if text.len() > self.max_event_bytes {
                too_large += 1;
                continue;
            }
            let id = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("_document_id").and_then(|id| id.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("(no _document_id) {text}"));
            let count = self.received.entry(id).or_insert(0);
            *count += 1;
            if *count > 1 {
                self.stats.duplicate_events += 1;
            } else {
                self.stats.unique_events += 1;
            }
            self.stats.events += 1;
            self.stats.event_bytes += text.len() as u64;
            self.texts.push(text);
            accepted.push(format!("{:032x}", self.stats.events));
        }
        (accepted, too_large)
    }

    /// `_document_id` → how many times it arrived.
    pub fn received(&self) -> &HashMap<String, u32> {
        &self.received
    }
}

pub(super) fn router(state: Arc<Mutex<IntakeState>>) -> Router {
    Router::new()
        .route("/batch", post(batch))
        .route("/_sim/stats", get(stats))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state)
}

#[derive(Deserialize)]
struct Batch {
    intake_key: String,
    jsons: Vec<String>,
}

fn refuse(state: &Arc<Mutex<IntakeState>>, status: StatusCode, message: &str) -> Response {
    lock(state).stats.rejected_batches += 1;
    (status, axum::Json(json!({"message": message}))).into_response()
}

async fn batch(State(state): State<Arc<Mutex<IntakeState>>>, headers: HeaderMap, body: Bytes) -> Response {
    let (fault, max_body_bytes, latency) = {
        let mut state = lock(&state);
        let key = state.key.clone();
        if headers.values().any(|v| v.to_str().is_ok_and(|v| v.contains(&key))) {
            state.stats.key_in_headers += 1;
        }
        state.stats.wire_bytes += body.len() as u64;
        (state.faults.take_next(), state.max_body_bytes, state.latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Status(code)) => {
            return refuse(&state, StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "fault");
        }
        Some(Fault::RetryAfter(code, seconds)) => {
            lock(&state).stats.rejected_batches += 1;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            return (status, [("retry-after", seconds.to_string())], axum::Json(json!({"message": "slow down"})))
                .into_response();
        }
        _ => {}
    }
    let gzipped = headers.get("content-encoding").and_then(|v| v.to_str().ok()) == Some("gzip");
    let (batch, body_bytes) = match read_batch(&body, gzipped, max_body_bytes) {
        Ok(read) => read,
        Err((status, message)) => return refuse(&state, status, message),
    };
    let mut state = lock(&state);
    if batch.intake_key != state.key {
        state.stats.rejected_batches += 1;
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "invalid intake key"}))).into_response();
    }
    let (accepted, too_large) = state.store(batch.jsons);
    state.stats.batches += 1;
    state.stats.largest_body_bytes = state.stats.largest_body_bytes.max(body_bytes);
    state.stats.rejected_events += too_large;
    if accepted.is_empty() && too_large > 0 {
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(json!({"message": "every event too large"})))
            .into_response();
    }
    let answer = json!({"received": true, "event_ids": accepted});
    match fault {
        // The intake stored the batch; only its answer is lost on the way back.
        Some(Fault::BrokenBody) => broken_body(HeaderMap::new(), answer.to_string()),
        Some(Fault::HugeBody(bytes)) => huge_body(HeaderMap::new(), bytes),
        Some(Fault::StoreThenDrop) => {
            drop(state);
            drop_connection()
        }
        _ => axum::Json(answer).into_response(),
    }
}

/// The batch a body carries and the body's size once unzipped, or why it is refused: not
/// gzip though it says so, over the intake's limit, not the batch's JSON.
fn read_batch(body: &[u8], gzipped: bool, max_body_bytes: usize) -> Result<(Batch, usize), (StatusCode, &'static str)> {
    let body: Cow<[u8]> = if gzipped {
        let mut text = Vec::new();
        let limit = (max_body_bytes + 1) as u64;
        GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut text)
            .map_err(|_| (StatusCode::BAD_REQUEST, "body is not valid gzip"))?;
        Cow::Owned(text)
    } else {
        Cow::Borrowed(body)
    };
    if body.len() > max_body_bytes {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
    }
    let batch = serde_json::from_slice::<Batch>(&body)
        .map_err(|_| (StatusCode::BAD_REQUEST, "expected {\"intake_key\": ..., \"jsons\": [...]}"))?;
    Ok((batch, body.len()))
}

async fn stats(State(state): State<Arc<Mutex<IntakeState>>>) -> Response {
    axum::Json(lock(&state).stats.clone()).into_response()
}
