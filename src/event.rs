//! One audit-log event: the exact JSON text GitHub sent, plus the fields the connector reads.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug)]
pub struct AuditEvent {
    raw: Box<RawValue>,
    /// `@timestamp` (epoch ms), else `created_at`; `None` if GitHub sent neither.
    pub timestamp_ms: Option<i64>,
    pub document_id: Option<String>,
    /// What happened, e.g. `repo.create`: what action filters match.
    pub action: Option<String>,
    /// The event has no `created_at` at all (git events): Sekoia's parser dates it by
    /// reception unless one is added.
    pub lacks_created_at: bool,
}

/// The fields read, each as found: a value of the wrong type is no value (the event is still
/// forwarded as it is), never a parse failure of the others.
#[derive(Deserialize)]
struct EventKeys {
    #[serde(rename = "@timestamp", default)]
    timestamp: Found,
    #[serde(default)]
    created_at: Found,
    #[serde(rename = "_document_id", default)]
    document_id: Found,
    #[serde(default)]
    action: Found,
}

#[derive(Default)]
enum Found {
    #[default]
    Absent,
    Value(serde_json::Value),
}

impl<'de> Deserialize<'de> for Found {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Found::Value)
    }
}

impl Found {
    fn epoch_ms(&self) -> Option<i64> {
        let Found::Value(serde_json::Value::Number(n)) = self else { return None };
        n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))
    }

    fn text(self) -> Option<String> {
        match self {
            Found::Value(serde_json::Value::String(text)) => Some(text),
            _ => None,
        }
    }
}

impl AuditEvent {
    /// Reads the checkpoint fields without touching the text that will be forwarded.
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        let Ok(keys) = serde_json::from_str::<EventKeys>(raw.get()) else {
            return Self { raw, timestamp_ms: None, document_id: None, action: None, lacks_created_at: false };
        };
        Self {
            timestamp_ms: keys.timestamp.epoch_ms().or_else(|| keys.created_at.epoch_ms()),
            lacks_created_at: matches!(keys.created_at, Found::Absent),
            document_id: keys.document_id.text(),
            action: keys.action.text(),
            raw,
        }
    }

    /// The same event with `"created_at"` set to its `@timestamp`, if it has an `@timestamp`
    /// and no `created_at`: the field goes first, every other byte stays as GitHub sent it.
    pub fn with_created_at(&self) -> Option<AuditEvent> {
        // Without a created_at, the timestamp read is `@timestamp`'s, in whole milliseconds.
        let stamp = self.timestamp_ms.filter(|_| self.lacks_created_at)?;
        let text = self.raw.get();
        let body = text.trim_start().strip_prefix('{')?;
        let separator = if body.trim_start().starts_with('}') { "" } else { "," };
        let filled = format!("{{\"created_at\":{stamp}{separator}{body}");
        // The fields read stay what they were: only the text is checked again, not re-read.
        let raw = RawValue::from_string(filled).ok()?;
        Some(Self {
            raw,
            timestamp_ms: self.timestamp_ms,
            document_id: self.document_id.clone(),
            action: self.action.clone(),
            lacks_created_at: false,
        })
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
        // A field of the wrong type is no value, and spoils none of the others.
        let odd = parse(r#"{"@timestamp":7,"created_at":"yesterday","_document_id":7,"action":["x"]}"#);
        assert_eq!((odd.timestamp_ms, odd.document_id, odd.action, odd.lacks_created_at), (Some(7), None, None, false));
    }

    #[test]
    fn an_event_without_created_at_gets_its_timestamp_as_created_at_and_nothing_else_changes() {
        let git = parse(r#" {"@timestamp":1606929874512,"_document_id":"g","action":"git.clone"}"#);
        let filled = git.with_created_at().expect("a git event lacks created_at");
        assert_eq!(
            filled.json(),
            r#"{"created_at":1606929874512,"@timestamp":1606929874512,"_document_id":"g","action":"git.clone"}"#
        );
        assert_eq!(
            (filled.timestamp_ms, filled.document_id.as_deref(), filled.lacks_created_at),
            (Some(1_606_929_874_512), Some("g"), false)
        );
        let web = parse(r#"{"@timestamp":5,"created_at":4,"action":"repo.create"}"#);
        assert!(web.with_created_at().is_none(), "an existing created_at is never changed");
        assert!(parse(r#"{"action":"x"}"#).with_created_at().is_none(), "nothing to date it by");
        assert!(parse(r#"{"@timestamp":"2026-12-01","action":"x"}"#).with_created_at().is_none());
        assert!(parse(r#"{"@timestamp":null,"action":"x"}"#).with_created_at().is_none());
        assert!(parse("[1]").with_created_at().is_none());
        assert_eq!(
            parse(r#"{"@timestamp":1.5e3}"#).with_created_at().map(|e| e.json().to_owned()).as_deref(),
            Some(r#"{"created_at":1500,"@timestamp":1.5e3}"#)
        );
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
                if let Some(filled) = event.with_created_at() {
                    prop_assert_eq!(filled.timestamp_ms, event.timestamp_ms);
                    prop_assert_eq!(filled.document_id, event.document_id);
                }
            }
        }
    }
}
