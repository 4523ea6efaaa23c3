//! The checkpoint a target keeps between runs, and the stores that keep it.

mod dynamodb;
mod file;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use std::time::SystemTime;

pub use dynamodb::{DynamoCursorStore, PARTITION_KEY};
pub use file::FileCursorStore;

use crate::dedupe::DeliveredSet;
use crate::ports::{CursorError, CursorStore};
use crate::timefmt::{floor_to_second, rfc3339_ms};

/// The encoded delivered set stays under this (about 54,000 events), so a checkpoint fits one
/// DynamoDB item (409,600 bytes) with room for its other attributes.
pub const MAX_DELIVERED_BYTES: usize = 380_000;

/// Where a target stands.
///
/// Invariant: every event whose `@timestamp` is before `settled_before_ms` has been delivered,
/// and `delivered` holds every delivered event at or after the second holding it. The next run
/// reads from that second and skips what `delivered` recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub settled_before_ms: i64,
    pub delivered: DeliveredSet,
    /// The newest `@timestamp` ever delivered, for operators.
    pub newest_event_ms: Option<i64>,
    /// Set while a pass over the audit log is unfinished: the next run continues it.
    pub resume: Option<Resume>,
}

/// An unfinished pass: continuing it makes progress even when a run can only afford a few
/// pages (rate limits) and one second holds more events than that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// GitHub's opaque next-page link.
    pub next_page: String,
    /// This pass already read events recent enough that others before them may still be
    /// indexed: the settled point stays put until a new pass re-reads from it.
    pub settled_frozen: bool,
}

impl Checkpoint {
    pub fn starting_at(ms: i64) -> Self {
        Self { settled_before_ms: ms, delivered: DeliveredSet::default(), newest_event_ms: None, resume: None }
    }

    /// The first instant the next read must cover.
    pub fn read_from_ms(&self) -> i64 {
        floor_to_second(self.settled_before_ms)
    }

    /// Moves the settled point forward (never back) and forgets what can no longer be re-read.
    pub fn settle(&mut self, settled_before_ms: i64) {
        self.settled_before_ms = self.settled_before_ms.max(settled_before_ms);
        self.delivered.forget_before(self.read_from_ms());
    }

    /// Keeps the encoded set under `max_bytes` by settling whole seconds from the oldest end.
    /// Returns the new settled point when it had to move: late events before it will not be
    /// looked for again.
    pub fn shrink_to(&mut self, max_bytes: usize) -> Option<i64> {
        let mut moved = None;
        loop {
            let size = self.delivered.encoded_len();
            if size <= max_bytes {
                return moved;
            }
            // Drop about the excess, rounded up to whole seconds so the next read starts cleanly.
            let excess_entries = (size - max_bytes) / 7 + 1;
            let Some(cut_ts) = self.delivered.nth_oldest_ms(excess_entries.min(self.delivered.len() - 1)) else {
                return moved;
            };
            let cut = floor_to_second(cut_ts) + 1000;
            self.settle(cut);
            moved = Some(self.settled_before_ms);
        }
    }

    pub fn to_json(&self) -> Result<String, CursorError> {
        let stored = StoredCheckpoint {
            format: 1,
            settled_before: rfc3339_ms(self.settled_before_ms),
            settled_before_ms: self.settled_before_ms,
            newest_event: self.newest_event_ms.map(rfc3339_ms),
            newest_event_ms: self.newest_event_ms,
            delivered_count: self.delivered.len(),
            delivered: BASE64.encode(self.delivered.encode()),
            resume: self.resume.clone(),
        };
        serde_json::to_string_pretty(&stored)
            .map_err(|e| CursorError::Storage(format!("cannot render the checkpoint: {e}")))
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let stored: StoredCheckpoint = serde_json::from_str(text).map_err(|e| format!("not a checkpoint: {e}"))?;
        if stored.format != 1 {
            return Err(format!("unknown checkpoint format {}", stored.format));
        }
        let bytes = BASE64.decode(stored.delivered).map_err(|e| format!("delivered set is not base64: {e}"))?;
        let delivered = DeliveredSet::decode(&bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            settled_before_ms: stored.settled_before_ms,
            delivered,
            newest_event_ms: stored.newest_event_ms,
            resume: stored.resume,
        })
    }
}

/// The on-disk shape: the human-readable fields are for operators reading the file.
#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    format: u32,
    settled_before: String,
    settled_before_ms: i64,
    newest_event: Option<String>,
    newest_event_ms: Option<i64>,
    delivered_count: usize,
    delivered: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<Resume>,
}

/// Loads like the store it wraps and saves nothing: `--dry-run` leaves the cursor where it was.
pub struct ReadOnlyStore<'a>(pub &'a dyn CursorStore);

#[async_trait]
impl CursorStore for ReadOnlyStore<'_> {
    async fn acquire(&self, key: &str, held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError> {
        self.0.acquire(key, held_until).await
    }

    async fn save(&self, _key: &str, _checkpoint: &Checkpoint) -> Result<(), CursorError> {
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CursorError> {
        self.0.release(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::AuditEvent;
    use serde_json::value::RawValue;

    fn deliver(cp: &mut Checkpoint, id: usize, ts: i64) {
        let text = format!(r#"{{"@timestamp":{ts},"_document_id":"doc-{id}"}}"#);
        let event = AuditEvent::from_raw(RawValue::from_string(text).expect("json"));
        cp.delivered.insert(ts, &event);
    }

    #[test]
    fn settling_never_moves_back_and_keeps_the_floor_second() {
        let mut cp = Checkpoint::starting_at(10_500);
        deliver(&mut cp, 1, 10_100);
        deliver(&mut cp, 2, 9_999);
        cp.settle(5_000);
        assert_eq!(cp.settled_before_ms, 10_500);
        assert_eq!(cp.read_from_ms(), 10_000);
        assert_eq!(cp.delivered.len(), 1, "the event in the re-read second stays known");
    }

    #[test]
    fn shrinking_settles_whole_seconds_until_the_set_fits() {
        let mut cp = Checkpoint::starting_at(0);
        for i in 0..10_000 {
            deliver(&mut cp, i, (i as i64) * 3);
        }
        let moved = cp.shrink_to(30_000).expect("had to shrink");
        assert!(cp.delivered.encode().len() <= 30_000);
        assert_eq!(cp.delivered.encoded_len(), cp.delivered.encode().len());
        assert_eq!(moved % 1000, 0);
        assert_eq!(cp.delivered.oldest_ms().map(|ts| ts >= moved), Some(true));
    }

    #[test]
    fn round_trips_through_json() {
        let mut cp = Checkpoint::starting_at(1_700_000_000_123);
        deliver(&mut cp, 1, 1_700_000_000_500);
        cp.newest_event_ms = Some(1_700_000_000_500);
        cp.resume = Some(Resume { next_page: "https://api.github.com/x?after=abc".into(), settled_frozen: true });
        assert_eq!(Checkpoint::from_json(&cp.to_json().expect("renders")), Ok(cp));
    }
}
