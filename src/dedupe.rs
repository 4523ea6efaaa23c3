//! The compact set of recently delivered events, so that re-reading the late-arrival window
//! sends nothing twice.
//!
//! An entry is the event's `@timestamp` plus a 48-bit fingerprint of its `_document_id`. A
//! re-read event has the same `@timestamp` as when it was delivered, so two events are only
//! ever compared when they share a millisecond: a false match needs a 48-bit collision among
//! the handful of events of one millisecond, which is what keeps the fingerprint this short.
//! Encoded sorted, as (timestamp delta varint, 6 fingerprint bytes): about 7 bytes an event,
//! so 50,000 events fit one DynamoDB item.

use std::collections::BTreeSet;

use integer_encoding::VarInt;
use xxhash_rust::xxh3::xxh3_64;

use crate::ports::AuditEvent;

const FINGERPRINT_BYTES: usize = 6;
const FINGERPRINT_MASK: u64 = (1 << (8 * FINGERPRINT_BYTES)) - 1;
const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveredSet {
    entries: BTreeSet<(i64, u64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("the stored set of delivered events is corrupt ({0}); reset the cursor to recover")]
pub struct DecodeError(&'static str);

/// Identifies an event; events without `_document_id` are identified by their whole text.
fn fingerprint(event: &AuditEvent) -> u64 {
    let identity = event.document_id.as_deref().unwrap_or(event.json());
    xxh3_64(identity.as_bytes()) & FINGERPRINT_MASK
}

impl DeliveredSet {
    pub fn contains(&self, timestamp_ms: i64, event: &AuditEvent) -> bool {
        self.entries.contains(&(timestamp_ms, fingerprint(event)))
    }

    pub fn insert(&mut self, timestamp_ms: i64, event: &AuditEvent) {
        self.entries.insert((timestamp_ms, fingerprint(event)));
    }

    /// Forgets events older than `floor_ms`: they will never be re-read.
    pub fn forget_before(&mut self, floor_ms: i64) {
        self.entries = self.entries.split_off(&(floor_ms, 0));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn oldest_ms(&self) -> Option<i64> {
        self.entries.first().map(|(ts, _)| *ts)
    }

    /// The timestamp of the `n`th oldest entry.
    pub fn nth_oldest_ms(&self, n: usize) -> Option<i64> {
        self.entries.iter().nth(n).map(|(ts, _)| *ts)
    }

    /// `encode().len()`, without building the bytes: checked after every page.
    pub fn encoded_len(&self) -> usize {
        let mut previous = self.oldest_ms().unwrap_or(0);
        let mut len = 1 + (self.entries.len() as u64).required_space() + previous.required_space();
        for &(ts, _) in &self.entries {
            len += ((ts - previous) as u64).required_space() + FINGERPRINT_BYTES;
            previous = ts;
        }
        len
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * (FINGERPRINT_BYTES + 2));
        out.push(FORMAT_VERSION);
        push_varint(&mut out, self.entries.len() as u64);
        let mut previous = self.oldest_ms().unwrap_or(0);
        push_varint(&mut out, previous);
        for &(ts, fp) in &self.entries {
            // Sorted, so deltas are never negative.
            push_varint(&mut out, (ts - previous) as u64);
            out.extend_from_slice(&fp.to_le_bytes()[..FINGERPRINT_BYTES]);
            previous = ts;
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&version, mut rest) = bytes.split_first().ok_or(DecodeError("empty"))?;
        if version != FORMAT_VERSION {
            return Err(DecodeError("unknown format version"));
        }
        let count: u64 = take_varint(&mut rest)?;
        let mut ts: i64 = take_varint(&mut rest)?;
        let mut entries = BTreeSet::new();
        for _ in 0..count {
            let delta: u64 = take_varint(&mut rest)?;
            ts = ts.checked_add_unsigned(delta).ok_or(DecodeError("timestamp overflow"))?;
            if rest.len() < FINGERPRINT_BYTES {
                return Err(DecodeError("truncated"));
            }
            let mut fp = [0u8; 8];
            fp[..FINGERPRINT_BYTES].copy_from_slice(&rest[..FINGERPRINT_BYTES]);
            rest = &rest[FINGERPRINT_BYTES..];
            entries.insert((ts, u64::from_le_bytes(fp)));
        }
        if !rest.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Self { entries })
    }
}

fn push_varint<V: VarInt>(out: &mut Vec<u8>, value: V) {
    let start = out.len();
    out.resize(start + value.required_space(), 0);
    value.encode_var(&mut out[start..]);
}

fn take_varint<V: VarInt>(rest: &mut &[u8]) -> Result<V, DecodeError> {
    let (value, used) = V::decode_var(rest).ok_or(DecodeError("truncated varint"))?;
    *rest = &rest[used..];
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn event(id: &str, ts: i64) -> AuditEvent {
        let text = format!(r#"{{"@timestamp":{ts},"_document_id":"{id}","action":"repo.create"}}"#);
        AuditEvent::from_raw(RawValue::from_string(text).expect("valid json"))
    }

    #[test]
    fn recognises_a_delivered_event_only_at_its_own_timestamp() {
        let mut set = DeliveredSet::default();
        let e = event("abc", 1000);
        set.insert(1000, &e);
        assert!(set.contains(1000, &e));
        assert!(!set.contains(1001, &e));
        assert!(!set.contains(1000, &event("abd", 1000)));
    }

    #[test]
    fn round_trips_through_its_encoding() {
        let mut set = DeliveredSet::default();
        for i in 0..1000 {
            let ts = 1_700_000_000_000 + (i / 7) * 13;
            set.insert(ts, &event(&format!("id-{i}"), ts));
        }
        let encoded = set.encode();
        assert_eq!(set.encoded_len(), encoded.len());
        assert_eq!(DeliveredSet::default().encoded_len(), DeliveredSet::default().encode().len());
        let decoded = DeliveredSet::decode(&encoded).expect("decodes");
        assert_eq!(decoded, set);
    }

    #[test]
    fn forgets_only_what_is_older_than_the_floor() {
        let mut set = DeliveredSet::default();
        for ts in [1000, 1999, 2000, 2500] {
            set.insert(ts, &event(&format!("id-{ts}"), ts));
        }
        set.forget_before(2000);
        assert_eq!(set.len(), 2);
        assert_eq!(set.oldest_ms(), Some(2000));
    }

    #[test]
    fn rejects_corrupt_bytes_with_a_message() {
        let mut bytes = DeliveredSet::default().encode();
        bytes.push(7);
        assert!(DeliveredSet::decode(&bytes).is_err());
        assert!(DeliveredSet::decode(&[]).is_err());
        assert!(DeliveredSet::decode(&[FORMAT_VERSION, 5, 0]).is_err());
    }

    #[test]
    fn fifty_thousand_events_in_five_minutes_fit_a_dynamodb_item() {
        let mut set = DeliveredSet::default();
        let start = 1_700_000_000_000;
        for i in 0..50_000i64 {
            let ts = start + i * 300_000 / 50_000;
            set.insert(ts, &event(&format!("doc-{i:08}"), ts));
        }
        let size = set.encode().len();
        eprintln!("50,000 events in five minutes encode to {size} bytes");
        assert!(size < 360_000, "encoded size {size} bytes leaves no room in a 400 KB item");
    }
}
