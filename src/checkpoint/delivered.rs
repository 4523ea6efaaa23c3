//! The record of delivered events, so that re-reading a stretch of the audit log sends nothing
//! twice.
//!
//! An entry is the event's `@timestamp` plus a 48-bit fingerprint of its `_document_id`. A
//! re-read event has the same `@timestamp` as when it was delivered, so two events are only
//! ever compared when they share a millisecond: a false match needs a 48-bit collision among
//! the handful of events of one millisecond, which is what keeps the fingerprint this short.
//!
//! The record covers the deep sweep's whole horizon (hours), so it is kept in buckets of
//! `@timestamp`s, each stored on its own (one file, one DynamoDB item) and loaded only when a
//! read reaches it. A save rewrites every bucket its page touched, so buckets stay small: a
//! bucket is at most a minute, and once it holds [`FILL_ENTRIES`] the next five-second slot
//! starts a bucket of its own. A busy organization's bucket is five seconds, a KB or two
//! (DynamoDB bills a write per KB of the item, a read per 4 KB), and a read loads little beyond
//! the stretch it reads; a quiet one's is its minute. A bucket that outgrows
//! [`MAX_BUCKET_ENTRIES`] is split inside its slot. Format 2 kept a bucket a minute, which these
//! rules read as they are.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use integer_encoding::VarInt;
use xxhash_rust::xxh3::xxh3_64;

use crate::event::AuditEvent;

const FINGERPRINT_BYTES: usize = 6;
const FINGERPRINT_MASK: u64 = (1 << (8 * FINGERPRINT_BYTES)) - 1;
const FORMAT_VERSION: u8 = 1;

/// Buckets start on a slot of this span (or inside one, split past [`MAX_BUCKET_ENTRIES`]).
pub const BUCKET_SPAN_MS: i64 = 5_000;
/// No bucket crosses a minute: format 2 kept one bucket a minute, which is still one.
const MINUTE_MS: i64 = 60_000;
/// About 900 bytes encoded: a bucket this full takes no later slot's entries, so that a save
/// rewrites about a KB (DynamoDB bills writes by the KB) while a quiet minute stays one item.
pub const FILL_ENTRIES: usize = 128;
/// About 7 bytes an entry encoded: 50,000 stay under 360 KB, inside one 400 KB DynamoDB item.
pub const MAX_BUCKET_ENTRIES: usize = 50_000;

/// Delivered events as sorted (`@timestamp`, fingerprint) pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveredSet {
    entries: BTreeSet<(i64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored record of delivered events is corrupt ({0})")]
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

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries with `from_ms <= @timestamp < to_ms`.
    pub fn count_between(&self, from_ms: i64, to_ms: i64) -> usize {
        if from_ms >= to_ms {
            return 0;
        }
        self.entries.range((from_ms, 0)..(to_ms, 0)).count()
    }

    /// Moves the entries at or after `from_ms` into a set of their own.
    fn split_off(&mut self, from_ms: i64) -> Self {
        Self { entries: self.entries.split_off(&(from_ms, 0)) }
    }

    /// The `@timestamp` to split at so that both halves hold entries, if there is one.
    fn split_point(&self) -> Option<i64> {
        let first = self.entries.first()?.0;
        let middle = self.entries.iter().nth(self.entries.len() / 2)?.0;
        if middle > first {
            return Some(middle);
        }
        self.entries.range((first + 1, 0)..).next().map(|(ts, _)| *ts)
    }

    /// Sorted, as (timestamp delta varint, 6 fingerprint bytes) after a count and a base.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * (FINGERPRINT_BYTES + 2));
        out.push(FORMAT_VERSION);
        push_varint(&mut out, self.entries.len() as u64);
        let mut previous = self.entries.first().map(|(ts, _)| *ts).unwrap_or(0);
        push_varint(&mut out, previous);
        for &(ts, fp) in &self.entries {
            // Sorted, so deltas are never negative.
            push_varint(&mut out, ts.abs_diff(previous));
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
        // Each entry takes at least seven bytes: a count beyond that is a lie, not an allocation.
        if count > (rest.len() / (FINGERPRINT_BYTES + 1)) as u64 {
            return Err(DecodeError("truncated"));
        }
        let mut entries = BTreeSet::new();
        for _ in 0..count {
            let delta: u64 = take_varint(&mut rest)?;
            ts = ts.checked_add_unsigned(delta).ok_or(DecodeError("timestamp overflow"))?;
            let (fp_bytes, tail) = rest.split_at_checked(FINGERPRINT_BYTES).ok_or(DecodeError("truncated"))?;
            let mut fp = [0u8; 8];
            fp[..FINGERPRINT_BYTES].copy_from_slice(fp_bytes);
            rest = tail;
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
    *rest = rest.get(used..).ok_or(DecodeError("truncated varint"))?;
    Ok(value)
}

/// The slot a timestamp falls in.
fn slot(ts: i64) -> i64 {
    ts.div_euclid(BUCKET_SPAN_MS) * BUCKET_SPAN_MS
}

/// The minute a timestamp falls in: no bucket crosses one.
fn minute(ts: i64) -> i64 {
    ts.div_euclid(MINUTE_MS) * MINUTE_MS
}

#[derive(Debug)]
struct Bucket {
    set: DeliveredSet,
    /// Changed since it was loaded or last saved.
    dirty: bool,
}

/// Every bucket a target has in its store, of which only some are in memory.
///
/// A bucket holds the entries from its start to the next bucket's start, within its minute.
/// Invariant: a bucket is consulted only once loaded; the drain loads the buckets of a
/// stretch ([`Self::unloaded_between`]) before it reads the stretch.
#[derive(Debug, Default)]
pub struct DeliveredRecord {
    /// Starts of every bucket in the store, loaded or not, and of new ones not yet saved.
    starts: BTreeSet<i64>,
    /// Those of them the store holds (listed by the checkpoint, or saved since).
    persisted: BTreeSet<i64>,
    /// Those a format 2 checkpoint listed and no save has written since: stored without an
    /// expiry, they are deleted once pruned.
    without_expiry: BTreeSet<i64>,
    loaded: BTreeMap<i64, Bucket>,
    /// Buckets pruned since the last save.
    removed: Vec<i64>,
}

/// What the next save writes: changed buckets whole, and the buckets no read needs again.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes<'a> {
    pub changed: Vec<(i64, &'a DeliveredSet)>,
    /// Pruned buckets a store whose items expire may leave to expire.
    pub removed: Vec<i64>,
    /// Pruned buckets stored without an expiry: deleted by every store.
    pub deleted: Vec<i64>,
}

impl DeliveredRecord {
    /// The record as a checkpoint lists it: its buckets (those of a format 2 checkpoint stored
    /// without an expiry), or a v1 checkpoint's single set, which becomes buckets written on
    /// the next save.
    pub fn new(stored_starts: &[i64], without_expiry: &[i64], legacy: Option<DeliveredSet>) -> Self {
        let starts: BTreeSet<i64> = stored_starts.iter().copied().collect();
        let without_expiry = without_expiry.iter().copied().filter(|s| starts.contains(s)).collect();
        let mut record = Self { persisted: starts.clone(), starts, without_expiry, ..Self::default() };
        if let Some(legacy) = legacy {
            for &(ts, fp) in &legacy.entries {
                record.insert_entry(ts, fp);
            }
        }
        record
    }

    /// Every bucket start, for the checkpoint.
    pub fn starts(&self) -> Vec<i64> {
        self.starts.iter().copied().collect()
    }

    /// The stored buckets still without an expiry once the pending changes are saved, for the
    /// checkpoint written with them.
    pub fn without_expiry(&self) -> Vec<i64> {
        let written = |start: &&i64| self.loaded.get(start).is_some_and(|b| b.dirty) || self.removed.contains(start);
        self.without_expiry.iter().filter(|s| !written(s)).copied().collect()
    }

    /// Stored buckets holding timestamps in `[from_ms, to_ms]` that are not in memory yet.
    pub fn unloaded_between(&self, from_ms: i64, to_ms: i64) -> Vec<i64> {
        if from_ms > to_ms {
            return Vec::new();
        }
        let holding_from = self.starts.range(minute(from_ms)..=from_ms).next_back().copied();
        let after = self.starts.range((Bound::Excluded(from_ms), Bound::Included(to_ms))).copied();
        holding_from.into_iter().chain(after).filter(|s| !self.loaded.contains_key(s)).collect()
    }

    /// A bucket read from the store. A bucket already in memory wins: it may hold news.
    pub fn add_loaded(&mut self, start: i64, set: DeliveredSet) {
        self.starts.insert(start);
        self.loaded.entry(start).or_insert(Bucket { set, dirty: false });
    }

    /// The start of the bucket that holds `ts`, if there is one.
    fn bucket_holding(&self, ts: i64) -> Option<i64> {
        self.starts.range(minute(ts)..=ts).next_back().copied()
    }

    pub fn contains(&self, ts: i64, event: &AuditEvent) -> bool {
        self.bucket_holding(ts).and_then(|start| self.loaded.get(&start)).is_some_and(|b| b.set.contains(ts, event))
    }

    pub fn insert(&mut self, ts: i64, event: &AuditEvent) {
        self.insert_entry(ts, fingerprint(event));
    }

    /// Into the bucket holding `ts`; a bucket past [`FILL_ENTRIES`] gives up the slot of `ts`
    /// and those after it to a bucket of their own, so that a save rewrites little.
    fn insert_entry(&mut self, ts: i64, fp: u64) {
        let mut start = self.bucket_holding(ts).unwrap_or_else(|| slot(ts));
        if start < slot(ts) && self.loaded.get(&start).is_some_and(|b| b.set.len() >= FILL_ENTRIES) {
            self.split(start, slot(ts));
            start = slot(ts);
        }
        self.starts.insert(start);
        let bucket = self.loaded.entry(start).or_insert_with(|| Bucket { set: DeliveredSet::default(), dirty: true });
        if bucket.set.entries.insert((ts, fp)) {
            bucket.dirty = true;
        }
        if bucket.set.len() > MAX_BUCKET_ENTRIES
            && let Some(at) = bucket.set.split_point()
        {
            self.split(start, at);
        }
    }

    /// Moves the entries of the bucket at `start` from `at` on into a new bucket at `at`.
    fn split(&mut self, start: i64, at: i64) {
        let Some(bucket) = self.loaded.get_mut(&start) else { return };
        let upper = bucket.set.split_off(at);
        if !upper.is_empty() {
            bucket.dirty = true;
        }
        self.starts.insert(at);
        self.loaded.insert(at, Bucket { set: upper, dirty: true });
    }

    /// Loaded entries with `from_ms <= @timestamp < to_ms`.
    pub fn count_between(&self, from_ms: i64, to_ms: i64) -> usize {
        self.loaded.values().map(|b| b.set.count_between(from_ms, to_ms)).sum()
    }

    /// Forgets every bucket of the minutes before the one holding `floor_ms`: no read will
    /// start before it.
    pub fn prune_before(&mut self, floor_ms: i64) {
        let keep = self.starts.split_off(&minute(floor_ms));
        let gone = std::mem::replace(&mut self.starts, keep);
        for start in gone {
            self.loaded.remove(&start);
            // A bucket never saved has nothing to forget.
            if self.persisted.remove(&start) {
                self.removed.push(start);
            }
        }
    }

    /// Drops from memory the saved buckets of the minutes before the one holding `ms`.
    pub fn unload_before(&mut self, ms: i64) {
        self.loaded.retain(|start, bucket| *start >= minute(ms) || bucket.dirty);
    }

    /// What the next save writes.
    pub fn changes(&self) -> Changes<'_> {
        let (deleted, removed) = self.removed.iter().partition(|start| self.without_expiry.contains(start));
        Changes {
            changed: self.loaded.iter().filter(|(_, b)| b.dirty).map(|(start, b)| (*start, &b.set)).collect(),
            removed,
            deleted,
        }
    }

    /// Nothing to write: no bucket changed, none to forget.
    pub fn unchanged(&self) -> bool {
        self.removed.is_empty() && self.loaded.values().all(|b| !b.dirty)
    }

    /// The save went through: what it wrote is stored, with an expiry.
    pub fn saved(&mut self) {
        for (start, bucket) in &mut self.loaded {
            if bucket.dirty {
                self.persisted.insert(*start);
                self.without_expiry.remove(start);
            }
            bucket.dirty = false;
        }
        for start in self.removed.drain(..) {
            self.without_expiry.remove(&start);
        }
    }

    /// Entries in memory: what a run holds of the record.
    pub fn loaded_entries(&self) -> usize {
        self.loaded.values().map(|b| b.set.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::listing;
    use proptest::prelude::*;
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
        let decoded = DeliveredSet::decode(&set.encode()).expect("decodes");
        assert_eq!(decoded, set);
        assert_eq!(DeliveredSet::decode(&DeliveredSet::default().encode()), Ok(DeliveredSet::default()));
    }

    #[test]
    fn rejects_corrupt_bytes_with_a_message() {
        let mut bytes = DeliveredSet::default().encode();
        bytes.push(7);
        assert!(DeliveredSet::decode(&bytes).is_err());
        assert!(DeliveredSet::decode(&[]).is_err());
        assert!(DeliveredSet::decode(&[FORMAT_VERSION, 5, 0]).is_err());
        // A count of 2^62 entries in a few bytes is refused before anything is allocated.
        assert!(DeliveredSet::decode(&[FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0]).is_err());
    }

    #[test]
    fn a_full_bucket_fits_a_dynamodb_item() {
        let mut set = DeliveredSet::default();
        let start = 1_700_000_000_000;
        for i in 0..MAX_BUCKET_ENTRIES as i64 {
            let ts = start + i * BUCKET_SPAN_MS / MAX_BUCKET_ENTRIES as i64;
            set.insert(ts, &event(&format!("doc-{i:08}"), ts));
        }
        let size = set.encode().len();
        assert!(size < 370_000, "a full bucket encodes to {size} bytes, too close to 400 KB");
    }

    #[test]
    fn events_go_to_their_buckets_and_only_loaded_buckets_answer() {
        let start = 1_700_000_040_000; // a minute boundary
        let mut record = DeliveredRecord::new(&[], &[], None);
        let (a, b) = (event("a", start + 5), event("b", start + 61_000));
        record.insert(start + 5, &a);
        record.insert(start + 61_000, &b);
        assert_eq!(record.starts(), vec![start, start + 60_000]);
        assert!(record.contains(start + 5, &a) && record.contains(start + 61_000, &b));
        let changes = record.changes();
        assert_eq!((changes.changed.len(), changes.removed.len()), (2, 0));
        record.saved();

        // A later run knows the buckets exist but loads only the ones it reads.
        let mut later = DeliveredRecord::new(&record.starts(), &[], None);
        assert!(!later.contains(start + 5, &a), "not loaded yet");
        assert_eq!(later.unloaded_between(start + 30_000, start + 61_000), vec![start, start + 60_000]);
        assert_eq!(later.unloaded_between(start + 60_000, start + 90_000), vec![start + 60_000]);
        assert!(record.unchanged(), "nothing changed since the save");
        later.add_loaded(start + 60_000, record.loaded[&(start + 60_000)].set.clone());
        assert!(later.contains(start + 61_000, &b));
    }

    #[test]
    fn an_overfull_bucket_splits_into_buckets_that_each_fit() {
        let start = 1_700_000_040_000;
        let mut record = DeliveredRecord::new(&[], &[], None);
        for i in 0..(MAX_BUCKET_ENTRIES as i64 * 2 + 10) {
            let ts = start + i % 9_000;
            record.insert(ts, &event(&format!("doc-{i}"), ts));
        }
        let changes = record.changes();
        assert!(changes.changed.len() >= 3, "split into {} buckets", changes.changed.len());
        assert!(changes.changed.iter().all(|(_, set)| set.len() <= MAX_BUCKET_ENTRIES));
        assert_eq!(record.count_between(start, start + 10_000), MAX_BUCKET_ENTRIES * 2 + 10);
        // Every event is still found, in whichever part it landed.
        let probe = event("doc-77", start + 77);
        assert!(record.contains(start + 77, &probe));
    }

    #[test]
    fn pruning_forgets_stored_buckets_before_the_floor_minute_and_keeps_that_minute() {
        let start = 1_700_000_040_000;
        let mut record = DeliveredRecord::new(&[start - 20_000, start - 10_000, start], &[], None);
        record.prune_before(start + 35_000);
        assert_eq!(record.starts(), vec![start]);
        assert_eq!(record.changes().removed, vec![start - 20_000, start - 10_000]);
        assert!(!record.unchanged());
        record.saved();
        assert!(record.changes().removed.is_empty());
    }

    #[test]
    fn a_bucket_never_saved_is_pruned_without_a_deletion() {
        let start = 1_700_000_040_000;
        let mut record = DeliveredRecord::new(&[], &[], None);
        record.insert(start + 5, &event("a", start + 5));
        record.prune_before(start + 120_000);
        assert_eq!(record.changes(), Changes::default(), "nothing to write, nothing to delete");
    }

    #[test]
    fn a_v1_set_becomes_buckets_written_on_the_next_save() {
        let start = 1_700_000_040_000;
        let mut legacy = DeliveredSet::default();
        for i in 0..300 {
            legacy.insert(start + i * 1_000, &event(&format!("v1-{i}"), start + i * 1_000));
        }
        let record = DeliveredRecord::new(&[], &[], Some(legacy));
        assert_eq!(record.changes().changed.len(), 5, "a bucket a minute: 60 entries each");
        assert!(record.contains(start + 299_000, &event("v1-299", start + 299_000)));
    }

    #[test]
    fn a_quiet_minute_is_one_bucket_and_a_full_one_gives_its_later_slots_away() {
        let (minute, slot) = (1_700_000_040_000, BUCKET_SPAN_MS);
        let mut quiet = DeliveredRecord::new(&[], &[], None);
        for at in [2 * slot + 1, 5 * slot + 2, 60_000 - 1] {
            quiet.insert(minute + at, &event(&format!("q-{at}"), minute + at));
        }
        assert_eq!(quiet.starts(), vec![minute + 2 * slot], "one bucket from the first event's slot");

        let mut busy = DeliveredRecord::new(&[], &[], None);
        for i in 0..FILL_ENTRIES as i64 + 5 {
            busy.insert(minute + i * 100, &event(&format!("b-{i}"), minute + i * 100));
        }
        let filled_at = FILL_ENTRIES as i64 * 100;
        assert_eq!(
            busy.starts(),
            vec![minute, minute + filled_at - filled_at % slot],
            "a full bucket keeps its own slots only"
        );
        // An entry arriving late for a slot a full bucket holds moves that slot out with it.
        let mut late = DeliveredRecord::new(&[], &[], None);
        for i in 0..FILL_ENTRIES as i64 {
            late.insert(minute + i, &event(&format!("l-{i}"), minute + i));
        }
        let (early, late_at) = (minute + 4 * slot + 10, minute + 3 * slot + 10);
        late.insert(early, &event("early", early));
        late.insert(late_at, &event("late", late_at));
        assert_eq!(late.starts(), vec![minute, minute + 3 * slot, minute + 4 * slot]);
        assert!(late.contains(early, &event("early", early)));
        assert!(late.contains(late_at, &event("late", late_at)));
        assert_eq!(late.count_between(minute, minute + 60_000), FILL_ENTRIES + 2);
    }

    #[test]
    fn the_buckets_of_the_deep_horizon_list_in_a_few_hundred_bytes_at_any_rate() {
        let (mut rng, start, horizon_ms) = (fastrand::Rng::with_seed(11), 1_796_000_000_000, 23_400_000);
        for per_hour in [60, 1_000, 10_000, 25_000, 46_000, 70_000, 120_000] {
            let mut stamps: Vec<i64> = (0..per_hour * 13 / 2).map(|_| start + rng.i64(0..horizon_ms)).collect();
            stamps.sort_unstable();
            let mut record = DeliveredRecord::new(&[], &[], None);
            for ts in stamps {
                record.insert_entry(ts, rng.u64(..) & FINGERPRINT_MASK);
            }
            let listed = serde_json::to_string(&listing::listing(&record.starts())).expect("renders");
            assert!(listed.len() < 700, "{per_hour} events an hour: {} bytes", listed.len());
        }
    }

    #[test]
    fn a_read_loads_the_bucket_holding_its_start_and_those_after_it() {
        let minute = 1_700_000_040_000;
        let record = DeliveredRecord::new(&[minute, minute + 20_000, minute + 70_000], &[], None);
        assert_eq!(record.unloaded_between(minute + 25_000, minute + 65_000), vec![minute + 20_000]);
        assert_eq!(
            record.unloaded_between(minute + 5_000, minute + 70_000),
            vec![minute, minute + 20_000, minute + 70_000]
        );
        assert!(record.unloaded_between(minute + 61_000, minute + 65_000).is_empty(), "no bucket crosses a minute");
    }

    #[test]
    fn format_2_buckets_stored_without_an_expiry_are_deleted_when_pruned_and_not_once_rewritten() {
        let minute = 1_700_000_040_000;
        let stored = [minute - 120_000, minute - 60_000, minute];
        let mut record = DeliveredRecord::new(&stored, &stored, None);
        record.add_loaded(minute, DeliveredSet::default());
        record.insert(minute + 5, &event("a", minute + 5));
        record.prune_before(minute - 30_000);
        let changes = record.changes();
        assert_eq!((changes.removed, changes.deleted), (vec![], vec![minute - 120_000]));
        assert_eq!(record.without_expiry(), vec![minute - 60_000], "the checkpoint saved with them says so");
        record.saved();
        assert_eq!(record.without_expiry(), vec![minute - 60_000], "the rewritten one has an expiry now");
        record.prune_before(minute + 1);
        assert_eq!(record.changes().deleted, vec![minute - 60_000]);
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = DeliveredSet::decode(&bytes);
        }

        #[test]
        fn any_set_round_trips(entries in proptest::collection::btree_set((any::<i64>(), 0..=FINGERPRINT_MASK), 0..50)) {
            let set = DeliveredSet { entries };
            prop_assert_eq!(DeliveredSet::decode(&set.encode()), Ok(set));
        }
    }
}
