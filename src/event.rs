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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> AuditEvent {
        AuditEvent::from_raw(RawValue::from_string(text.to_owned()).expect("valid json"))
    }

    #[test]
    fn reads_the_timestamp_and_id_and_keeps_the_text_byte_for_byte() {
        let text = r#"{"@timestamp":1606929874512,"_document_id":"abc","action":"repo.create"}"#;
        let event = parse(text);
        assert_eq!(
            (event.timestamp_ms, event.document_id.as_deref(), event.json()),
            (Some(1_606_929_874_512), Some("abc"), text)
        );
        assert_eq!(parse(r#"{"created_at":5,"@timestamp":null}"#).timestamp_ms, Some(5));
        assert_eq!(parse(r#"{"@timestamp":"yesterday","_document_id":7}"#).timestamp_ms, None);
        assert_eq!(parse("[1,2]").label(), "(no _document_id)");
    }

    proptest! {
        #[test]
        fn odd_timestamps_and_ids_never_panic(
            timestamp in prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| if f.is_finite() { f.to_string() } else { "1e400".into() }),
                "\"[^\"\\\\]{0,20}\"",
                Just("99999999999999999999999".to_owned()),
                Just("null".to_owned()),
                Just("{}".to_owned()),
            ],
            id in prop_oneof![Just("null".to_owned()), "\"[a-zA-Z0-9_-]{0,30}\"", any::<u32>().prop_map(|n| n.to_string())],
        ) {
            let text = format!(r#"{{"@timestamp":{timestamp},"_document_id":{id}}}"#);
            if let Ok(raw) = RawValue::from_string(text) {
                let event = AuditEvent::from_raw(raw);
                let _ = event.label();
            }
        }
    }
}
