//! The four edges the drain talks to. Each outside system has one adapter behind one trait;
//! the drain never sees HTTP, files or AWS.

use std::time::SystemTime;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::budget::Budget;
use crate::cursor::Checkpoint;

/// One audit-log event: the exact JSON text GitHub sent, plus the two fields the drain reads.
#[derive(Debug)]
pub struct AuditEvent {
    raw: Box<RawValue>,
    /// `@timestamp` (epoch ms), else `created_at`; `None` if GitHub sent neither.
    pub timestamp_ms: Option<i64>,
    pub document_id: Option<String>,
}

#[derive(Deserialize)]
struct EventKeys {
    #[serde(rename = "@timestamp")]
    timestamp: Option<serde_json::Number>,
    created_at: Option<serde_json::Number>,
    #[serde(rename = "_document_id")]
    document_id: Option<String>,
}

impl AuditEvent {
    /// Reads the checkpoint fields without touching the text that will be forwarded.
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        let keys: Option<EventKeys> = serde_json::from_str(raw.get()).ok();
        let as_ms = |n: &serde_json::Number| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64));
        let (timestamp_ms, document_id) = match keys {
            Some(k) => {
                (k.timestamp.as_ref().and_then(as_ms).or_else(|| k.created_at.as_ref().and_then(as_ms)), k.document_id)
            }
            None => (None, None),
        };
        Self { raw, timestamp_ms, document_id }
    }

    pub fn json(&self) -> &str {
        self.raw.get()
    }

    /// What a user searches the SIEM for when we report this event.
    pub fn label(&self) -> String {
        self.document_id.clone().unwrap_or_else(|| "(no _document_id)".to_owned())
    }
}

/// Where the next page comes from: a time to start at, or the source's own continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest {
    /// Events created at or after `since_ms` and, if set, before `until_ms` (epoch ms; sources
    /// may widen both to whole seconds).
    Created { since_ms: i64, until_ms: Option<i64> },
    /// An opaque continuation the source handed out with the previous page.
    Continue(String),
}

#[derive(Debug)]
pub struct Page {
    /// Oldest first.
    pub events: Vec<AuditEvent>,
    /// The continuation for [`PageRequest::Continue`]; `None` on the last page.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("GitHub rate limit reached{}", match .reset_at { Some(t) => format!(" (resets at {})", humantime::format_rfc3339_seconds(*t)), None => String::new() })]
    RateLimited { reset_at: Option<SystemTime> },
    #[error("the run's time budget ran out while waiting for GitHub")]
    OutOfTime,
    #[error("{0}")]
    Fatal(String),
}

#[async_trait]
pub trait AuditLogSource: Send + Sync {
    async fn fetch(&self, request: &PageRequest, budget: &Budget) -> Result<Page, SourceError>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the run's time budget ran out while posting to the intake")]
    OutOfTime,
    #[error("{0}")]
    Fatal(String),
}

#[async_trait]
pub trait IntakeSink: Send + Sync {
    /// Larger events are refused by the intake; the drain reports them instead of sending.
    fn max_event_bytes(&self) -> usize;

    /// Returns once the intake acknowledged every event, or refused some as too large on their
    /// own: those come back as indices into `events`, to be reported rather than retried.
    async fn send(&self, events: &[&AuditEvent], budget: &Budget) -> Result<Vec<usize>, SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("another run is draining {key} right now")]
    Busy { key: String },
    #[error("the cursor for {key} was changed by another run; this run stops without moving it")]
    Conflict { key: String },
    #[error("{0}")]
    Storage(String),
}

/// Where a target's checkpoint lives between runs.
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// Takes exclusive hold of `key` until `release` (or `held_until`, for stores whose hold
    /// must outlive a crashed holder) and loads its checkpoint, `None` on the very first run.
    async fn acquire(&self, key: &str, held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError>;
    /// Durable when it returns.
    async fn save(&self, key: &str, checkpoint: &Checkpoint) -> Result<(), CursorError>;
    async fn release(&self, key: &str) -> Result<(), CursorError>;
}
