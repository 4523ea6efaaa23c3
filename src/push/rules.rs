//! The push mode's decisions, pure: which cursor a bucket has, where an object resumes, what
//! counts as an audit event.

use serde::Deserialize;

use crate::ports::ObjectRecord;

/// `s3/BUCKET`: a bucket's cursor key, its metrics' `Target`.
pub fn cursor_key(bucket: &str) -> String {
    format!("s3/{bucket}")
}

/// S3 quotes ETags in its answers and not in its notifications.
pub fn normalize_etag(etag: &str) -> String {
    etag.trim().trim_matches('"').to_owned()
}

/// Where an object's reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Every event of this version was forwarded (or it held none).
    Done,
    /// Events before this position (1-based count in file order) need no sending.
    From(u64),
}

/// A record of another ETag is another object written under the same key: read it whole.
/// `etag` is `None` when not known yet (a listing or notification without one).
pub fn resume(stored: Option<&ObjectRecord>, etag: Option<&str>) -> Resume {
    match (stored, etag) {
        (Some(record), Some(etag)) if normalize_etag(&record.etag) != normalize_etag(etag) => Resume::From(0),
        (Some(record), _) if record.complete => Resume::Done,
        (Some(record), Some(_)) => Resume::From(record.events_done),
        _ => Resume::From(0),
    }
}

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    action: Option<std::borrow::Cow<'a, str>>,
}

/// An audit event names its action. A file whose first object does not (GitHub's endpoint
/// checks, anything else put in the bucket) holds no audit events.
pub fn is_audit_event(text: &str) -> bool {
    serde_json::from_str::<Action>(text).is_ok_and(|a| a.action.is_some_and(|action| !action.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(etag: &str, events_done: u64, complete: bool) -> ObjectRecord {
        ObjectRecord { etag: etag.into(), events_done, complete, not_audit_events: false }
    }

    #[test]
    fn an_object_resumes_after_its_recorded_events_and_only_for_the_same_etag() {
        assert_eq!(resume(None, Some("e1")), Resume::From(0));
        assert_eq!(resume(Some(&record("e1", 40, false)), Some("\"e1\"")), Resume::From(40));
        assert_eq!(resume(Some(&record("e1", 40, true)), Some("e1")), Resume::Done);
        assert_eq!(
            resume(Some(&record("e1", 40, true)), None),
            Resume::Done,
            "a listing without ETags trusts the record"
        );
        assert_eq!(resume(Some(&record("e1", 40, true)), Some("e2")), Resume::From(0), "rewritten under the same key");
        assert_eq!(
            resume(Some(&record("e1", 40, false)), None),
            Resume::From(0),
            "progress counts for one version only"
        );
    }

    #[test]
    fn only_objects_naming_an_action_are_audit_events() {
        assert!(is_audit_event(r#"{"@timestamp":1,"action":"repo.create","_document_id":"a"}"#));
        for text in [r#"{"test":true}"#, r#"{"action":""}"#, r#"{"action":7}"#, "{}", "not json", r#"{"action":"x""#] {
            assert!(!is_audit_event(text), "{text}");
        }
    }
}
