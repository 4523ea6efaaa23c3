//! One audit-log event: the exact JSON text GitHub sent, plus the two fields the drain reads.

use serde::Deserialize;
use serde_json::value::RawValue;

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
