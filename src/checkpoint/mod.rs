//! Where a target stands between runs: its three read positions, any unfinished pass, and which
//! buckets of the delivered record exist. A leaf: it knows events and time, nothing else.

pub mod delivered;
mod listing;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::timefmt::{floor_to_second, rfc3339_ms};
use delivered::DeliveredSet;
use listing::Listing;

/// Deep sweeps a target may have (`LATE_SWEEP_AFTER` lists their ages).
pub const MAX_DEEP_SWEEPS: usize = 3;

/// The reads each stretch of the audit log gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    /// From the newest second delivered to the end of what GitHub shows.
    Fresh,
    /// Once more when a stretch is `LATE_ARRIVAL_WINDOW` old.
    WindowSweep,
    /// Once more when it is the nth age of `LATE_SWEEP_AFTER` old (0: the first).
    DeepSweep(u8),
}

impl Read {
    /// `fresh`, `window_sweep`, `deep_sweep`, `deep_sweep_2`, …: as passes store it.
    pub fn name(self) -> String {
        match self {
            Read::Fresh => "fresh".into(),
            Read::WindowSweep => "window_sweep".into(),
            Read::DeepSweep(0) => "deep_sweep".into(),
            Read::DeepSweep(n) => format!("deep_sweep_{}", u16::from(n) + 1),
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "fresh" => Some(Read::Fresh),
            "window_sweep" => Some(Read::WindowSweep),
            "deep_sweep" => Some(Read::DeepSweep(0)),
            _ => {
                let n: usize = name.strip_prefix("deep_sweep_")?.parse().ok()?;
                (2..=MAX_DEEP_SWEEPS).contains(&n).then(|| Read::DeepSweep((n - 1) as u8))
            }
        }
    }
}

impl Serialize for Read {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Read {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Read::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown read {name:?}")))
    }
}

/// How far each read has come (epoch ms).
///
/// Invariants: each deep sweep's position is at or before the one before it, the first at or
/// before `window_swept_to_ms`, which is at or before `fresh_read_to_ms`. Every event before
/// `fresh_read_to_ms` that GitHub showed when the fresh read passed it has been delivered;
/// every event before `window_swept_to_ms` that GitHub showed when that stretch was at least
/// the window old has been delivered; likewise for each deep sweep. A deep sweep that is not
/// configured stands with the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positions {
    /// The newest `@timestamp` delivered: the fresh read starts again at its second.
    pub newest_event_ms: Option<i64>,
    pub fresh_read_to_ms: i64,
    pub window_swept_to_ms: i64,
    pub deep_swept_to_ms: [i64; MAX_DEEP_SWEEPS],
}

impl Positions {
    pub fn starting_at(ms: i64) -> Self {
        Self {
            newest_event_ms: None,
            fresh_read_to_ms: ms,
            window_swept_to_ms: ms,
            deep_swept_to_ms: [ms; MAX_DEEP_SWEEPS],
        }
    }

    /// Where the next fresh read starts: the second of the newest event delivered (events
    /// indexed a little late beside it are found at once), never past what the fresh read
    /// covered (an event stamped in the future must not hide the present).
    pub fn fresh_start_ms(&self) -> i64 {
        let newest = self.newest_event_ms.map_or(self.fresh_read_to_ms, |n| n.min(self.fresh_read_to_ms));
        floor_to_second(newest)
    }

    /// How far `read` has come.
    pub fn of(&self, read: Read) -> i64 {
        match read {
            Read::Fresh => self.fresh_read_to_ms,
            Read::WindowSweep => self.window_swept_to_ms,
            Read::DeepSweep(n) => self.deep_swept_to_ms[usize::from(n).min(MAX_DEEP_SWEEPS - 1)],
        }
    }

    pub fn of_mut(&mut self, read: Read) -> &mut i64 {
        match read {
            Read::Fresh => &mut self.fresh_read_to_ms,
            Read::WindowSweep => &mut self.window_swept_to_ms,
            Read::DeepSweep(n) => &mut self.deep_swept_to_ms[usize::from(n).min(MAX_DEEP_SWEEPS - 1)],
        }
    }

    /// The read before `read` in the chain fresh → window → deep 1 → deep 2 …
    pub fn before(read: Read) -> Read {
        match read {
            Read::Fresh | Read::WindowSweep => Read::Fresh,
            Read::DeepSweep(0) => Read::WindowSweep,
            Read::DeepSweep(n) => Read::DeepSweep(n - 1),
        }
    }

    /// Brings hand-edited positions back in order, earlier ones winning: lowering the fresh
    /// read's position re-reads from there with every read.
    fn normalized(mut self) -> Self {
        self.window_swept_to_ms = self.window_swept_to_ms.min(self.fresh_read_to_ms);
        let mut before = self.window_swept_to_ms;
        for position in &mut self.deep_swept_to_ms {
            *position = (*position).min(before);
            before = *position;
        }
        self
    }
}

/// A read whose stretch is not finished: the next run continues it with GitHub's own link, so
/// that a run affording few pages still progresses through a second holding more events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pass {
    pub read: Read,
    /// GitHub's opaque next-page link.
    pub next_page: String,
    /// Everything of the stretch before this instant has been read.
    pub covered_to_ms: i64,
    /// When the last page was requested: the next page's stretch counts as read at this instant.
    pub read_at_ms: i64,
    /// The stretch's end (exclusive); `None`: up to whatever GitHub shows.
    pub until_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub positions: Positions,
    /// At most one per read.
    pub passes: Vec<Pass>,
    /// Starts of the stored buckets of the delivered record.
    pub delivered_buckets: Vec<i64>,
    /// Those of them a format 2 checkpoint listed, stored without an expiry, until a save
    /// writes them or they are pruned (and deleted).
    pub buckets_without_expiry: Vec<i64>,
    /// A v1 checkpoint's single delivered set, until the first save splits it into buckets.
    pub legacy_delivered: Option<DeliveredSet>,
    /// Events the intake acknowledged under this cursor, all runs together: a backfill's
    /// progress, followed from outside.
    pub events_forwarded: u64,
}

/// How a checkpoint is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Times in milliseconds only: a DynamoDB item, billed by its size on every save.
    Compact,
    /// Each time also in RFC 3339: a file an operator may open.
    Readable,
}

/// Format 3 lists buckets compactly ([`listing`]) and gives times in milliseconds only, with
/// their readable forms in files alone; format 2 listed buckets one by one.
pub const FORMAT: u32 = 3;

/// The stored shape; the readable times are for operators and ignored when loading.
#[derive(Serialize, Deserialize)]
struct StoredCheckpoint {
    format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    newest_event: Option<String>,
    newest_event_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fresh_read_to: Option<String>,
    fresh_read_to_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_swept_to: Option<String>,
    window_swept_to_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deep_swept_to: Option<String>,
    deep_swept_to_ms: i64,
    /// The further deep sweeps' positions; a checkpoint written with one deep sweep has none,
    /// and they start where the first stands (nothing behind it is read again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    deeper_swept_to: Vec<String>,
    #[serde(default)]
    deeper_swept_to_ms: Vec<i64>,
    #[serde(default)]
    passes: Vec<Pass>,
    /// Format 2: every bucket start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    delivered_buckets: Vec<i64>,
    /// Format 3: every bucket start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    buckets: Option<Listing>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    buckets_without_expiry: Vec<i64>,
    #[serde(default)]
    events_forwarded: u64,
}

/// What version 1 stored: a settled point and one delivered set for the whole window.
#[derive(Deserialize)]
struct StoredV1 {
    settled_before_ms: i64,
    newest_event_ms: Option<i64>,
    delivered: String,
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckpointError(String);

impl Checkpoint {
    pub fn starting_at(ms: i64) -> Self {
        Self {
            positions: Positions::starting_at(ms),
            passes: Vec::new(),
            delivered_buckets: Vec::new(),
            buckets_without_expiry: Vec::new(),
            legacy_delivered: None,
            events_forwarded: 0,
        }
    }

    /// A v1 checkpoint carried on: everything before `settled_before_ms` was delivered with the
    /// late-arrival window re-read, and `delivered` holds every event from that second on.
    /// Nothing before it is swept again (there is no record of it); its unfinished pass is
    /// dropped, as the fresh read restarts at the newest second, which `delivered` covers.
    pub fn from_v1(settled_before_ms: i64, newest_event_ms: Option<i64>, delivered: DeliveredSet) -> Self {
        let fresh = newest_event_ms.map_or(settled_before_ms, |n| n.max(settled_before_ms));
        Self {
            positions: Positions {
                newest_event_ms,
                fresh_read_to_ms: fresh,
                window_swept_to_ms: settled_before_ms,
                deep_swept_to_ms: [settled_before_ms; MAX_DEEP_SWEEPS],
            },
            passes: Vec::new(),
            delivered_buckets: Vec::new(),
            buckets_without_expiry: Vec::new(),
            legacy_delivered: Some(delivered),
            events_forwarded: 0,
        }
    }

    pub fn take_pass(&mut self, read: Read) -> Option<Pass> {
        let index = self.passes.iter().position(|p| p.read == read)?;
        Some(self.passes.remove(index))
    }

    pub fn set_pass(&mut self, read: Read, pass: Option<Pass>) {
        self.passes.retain(|p| p.read != read);
        self.passes.extend(pass);
    }

    /// One line of JSON (DynamoDB bills every save by the item's size); with `Style::Readable`
    /// each time also in RFC 3339, for an operator opening the file.
    pub fn to_json(&self, style: Style) -> Result<String, CheckpointError> {
        let p = &self.positions;
        let readable = |ms: i64| matches!(style, Style::Readable).then(|| rfc3339_ms(ms));
        let stored = StoredCheckpoint {
            format: FORMAT,
            newest_event: p.newest_event_ms.and_then(readable),
            newest_event_ms: p.newest_event_ms,
            fresh_read_to: readable(p.fresh_read_to_ms),
            fresh_read_to_ms: p.fresh_read_to_ms,
            window_swept_to: readable(p.window_swept_to_ms),
            window_swept_to_ms: p.window_swept_to_ms,
            deep_swept_to: readable(p.deep_swept_to_ms[0]),
            deep_swept_to_ms: p.deep_swept_to_ms[0],
            deeper_swept_to: p.deep_swept_to_ms[1..].iter().filter_map(|ms| readable(*ms)).collect(),
            deeper_swept_to_ms: p.deep_swept_to_ms[1..].to_vec(),
            passes: self.passes.clone(),
            delivered_buckets: Vec::new(),
            buckets: listing::listing(&self.delivered_buckets),
            buckets_without_expiry: self.buckets_without_expiry.clone(),
            events_forwarded: self.events_forwarded,
        };
        serde_json::to_string(&stored).map_err(|e| CheckpointError(format!("cannot render the checkpoint: {e}")))
    }

    /// Reads what [`Self::to_json`] wrote, or a version 1 checkpoint.
    pub fn from_json(text: &str) -> Result<Self, CheckpointError> {
        let not_a_checkpoint = |e: serde_json::Error| CheckpointError(format!("not a checkpoint: {e}"));
        let FormatOnly { format } = serde_json::from_str(text).map_err(not_a_checkpoint)?;
        match format {
            1 => {
                let v1: StoredV1 = serde_json::from_str(text).map_err(not_a_checkpoint)?;
                let bytes = BASE64
                    .decode(v1.delivered)
                    .map_err(|e| CheckpointError(format!("delivered set is not base64: {e}")))?;
                let delivered = DeliveredSet::decode(&bytes).map_err(|e| CheckpointError(e.to_string()))?;
                Ok(Self::from_v1(v1.settled_before_ms, v1.newest_event_ms, delivered))
            }
            2 | FORMAT => {
                let stored: StoredCheckpoint = serde_json::from_str(text).map_err(not_a_checkpoint)?;
                let mut deep = [stored.deep_swept_to_ms; MAX_DEEP_SWEEPS];
                for (slot, ms) in deep[1..].iter_mut().zip(&stored.deeper_swept_to_ms) {
                    *slot = *ms;
                }
                let positions = Positions {
                    newest_event_ms: stored.newest_event_ms,
                    fresh_read_to_ms: stored.fresh_read_to_ms,
                    window_swept_to_ms: stored.window_swept_to_ms,
                    deep_swept_to_ms: deep,
                }
                .normalized();
                let mut passes: Vec<Pass> = Vec::new();
                for pass in stored.passes {
                    if passes.iter().all(|p| p.read != pass.read) {
                        passes.push(pass);
                    }
                }
                // Format 2's buckets were stored without an expiry.
                let (delivered_buckets, buckets_without_expiry) = match stored.buckets {
                    Some(listed) => (
                        listing::starts(&listed).map_err(|e| CheckpointError(e.to_string()))?,
                        stored.buckets_without_expiry,
                    ),
                    None => (stored.delivered_buckets.clone(), stored.delivered_buckets),
                };
                Ok(Self {
                    positions,
                    passes,
                    delivered_buckets,
                    buckets_without_expiry,
                    legacy_delivered: None,
                    events_forwarded: stored.events_forwarded,
                })
            }
            other => Err(CheckpointError(format!(
                "unknown checkpoint format {other}; it was written by a newer version of this connector"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuditEvent;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    fn event(id: usize, ts: i64) -> AuditEvent {
        let text = format!(r#"{{"@timestamp":{ts},"_document_id":"doc-{id}"}}"#);
        AuditEvent::from_raw(RawValue::from_string(text).expect("json"))
    }

    #[test]
    fn round_trips_through_json() {
        let mut cp = Checkpoint::starting_at(1_700_000_000_123);
        cp.positions.newest_event_ms = Some(1_700_000_000_500);
        cp.positions.fresh_read_to_ms = 1_700_000_009_000;
        cp.positions.window_swept_to_ms = 1_700_000_004_000;
        cp.delivered_buckets = vec![1_699_999_980_000, 1_699_999_990_000, 1_700_000_000_000, 1_700_000_003_217];
        cp.buckets_without_expiry = vec![1_699_999_980_000];
        cp.passes.push(Pass {
            read: Read::WindowSweep,
            next_page: "https://api.github.com/x?after=abc".into(),
            covered_to_ms: 1_700_000_001_000,
            read_at_ms: 1_700_000_400_000,
            until_ms: Some(1_700_000_004_000),
        });
        assert_eq!(Checkpoint::from_json(&cp.to_json(Style::Readable).expect("renders")), Ok(cp));
    }

    #[test]
    fn a_busy_checkpoint_stays_well_under_a_dynamodb_write_unit() {
        let mut cp = Checkpoint::starting_at(1_796_000_000_000);
        cp.positions.newest_event_ms = Some(1_796_023_400_123);
        cp.delivered_buckets = (0..2_340).map(|n| 1_796_000_000_000 + n * 10_000).collect();
        cp.events_forwarded = 123_456_789;
        cp.passes.push(Pass {
            read: Read::Fresh,
            next_page: format!("https://api.github.com/orgs/acme/audit-log?phrase=created%3A%3E%3D2026-12-02T10%3A00%3A00Z&include=web&order=asc&per_page=100&after={}", "M".repeat(60)),
            covered_to_ms: 1_796_023_400_000,
            read_at_ms: 1_796_023_410_000,
            until_ms: None,
        });
        let compact = cp.to_json(Style::Compact).expect("renders");
        assert!(compact.len() < 750, "{} bytes: {compact}", compact.len());
        assert!(!compact.contains("newest_event\""), "times in milliseconds only");
        assert_eq!(Checkpoint::from_json(&compact), Ok(cp.clone()));
        let readable = cp.to_json(Style::Readable).expect("renders");
        assert!(readable.contains(r#""newest_event":"2026-"#), "{readable}");
    }

    #[test]
    fn a_format_2_checkpoint_keeps_its_buckets_as_stored_without_an_expiry() {
        let format_2 = r#"{"format":2,"newest_event_ms":1700000000500,"fresh_read_to_ms":1700000009000,
            "window_swept_to_ms":1700000004000,"deep_swept_to_ms":1700000000000,
            "delivered_buckets":[1699999980000,1700000040000,1700000071234],"events_forwarded":12}"#;
        let cp = Checkpoint::from_json(format_2).expect("format 2 loads");
        let buckets = vec![1_699_999_980_000, 1_700_000_040_000, 1_700_000_071_234];
        assert_eq!((&cp.delivered_buckets, &cp.buckets_without_expiry), (&buckets, &buckets));
        assert_eq!(cp.events_forwarded, 12);
        let again = Checkpoint::from_json(&cp.to_json(Style::Compact).expect("renders")).expect("loads");
        assert_eq!(again, cp);
    }

    #[test]
    fn a_listing_no_record_could_have_is_refused() {
        let text = r#"{"format":3,"newest_event_ms":null,"fresh_read_to_ms":0,"window_swept_to_ms":0,"deep_swept_to_ms":0,"buckets":{"from":0,"slots":"b"}}"#;
        assert!(Checkpoint::from_json(text).is_ok());
        let text = text.replace(r#""slots":"b""#, r#""slots":"q""#);
        let err = Checkpoint::from_json(&text).expect_err("unknown listing");
        assert!(err.to_string().contains("buckets: unknown kind of listing"), "{err}");
    }

    #[test]
    fn a_v1_checkpoint_is_carried_on_with_its_delivered_set() {
        let mut delivered = DeliveredSet::default();
        delivered.insert(1_700_000_000_500, &event(1, 1_700_000_000_500));
        let v1 = format!(
            r#"{{"format":1,"settled_before":"x","settled_before_ms":1700000000123,"newest_event":null,
              "newest_event_ms":1700000000500,"delivered_count":1,"delivered":"{}",
              "resume":{{"next_page":"https://api.github.com/x?after=a","settled_frozen":true}}}}"#,
            BASE64.encode(delivered.encode())
        );
        let cp = Checkpoint::from_json(&v1).expect("v1 loads");
        assert_eq!(cp.positions.window_swept_to_ms, 1_700_000_000_123);
        assert_eq!(cp.positions.deep_swept_to_ms, [1_700_000_000_123; MAX_DEEP_SWEEPS]);
        assert_eq!(cp.positions.fresh_start_ms(), 1_700_000_000_000);
        assert_eq!(cp.legacy_delivered, Some(delivered));
        assert!(cp.passes.is_empty());
    }

    #[test]
    fn a_checkpoint_with_one_deep_sweep_carries_on_with_the_further_ones_where_the_first_stands() {
        let mut cp = Checkpoint::starting_at(9_000);
        cp.positions.deep_swept_to_ms = [7_000, 6_000, 5_000];
        cp.passes.push(Pass {
            read: Read::DeepSweep(2),
            next_page: "x".into(),
            covered_to_ms: 5_000,
            read_at_ms: 9_000,
            until_ms: Some(6_000),
        });
        let text = cp.to_json(Style::Readable).expect("renders");
        assert!(text.contains(r#""read":"deep_sweep_3""#), "{text}");
        assert_eq!(Checkpoint::from_json(&text), Ok(cp));
        let mut one_deep: serde_json::Value = serde_json::from_str(&text).expect("json");
        one_deep.as_object_mut().map(|o| (o.remove("deeper_swept_to_ms"), o.remove("passes")));
        let carried = Checkpoint::from_json(&one_deep.to_string()).expect("loads");
        assert_eq!(carried.positions.deep_swept_to_ms, [7_000; MAX_DEEP_SWEEPS]);
        for (read, name) in
            [(Read::Fresh, "fresh"), (Read::DeepSweep(0), "deep_sweep"), (Read::DeepSweep(1), "deep_sweep_2")]
        {
            assert_eq!((read.name(), Read::from_name(name)), (name.to_owned(), Some(read)));
        }
        assert_eq!(Read::from_name("deep_sweep_4"), None);
        assert_eq!(Read::from_name("deep_sweep_1"), None);
    }

    #[test]
    fn edited_positions_are_put_back_in_order_and_unknown_formats_refused() {
        let mut cp = Checkpoint::starting_at(5_000);
        cp.positions.fresh_read_to_ms = 1_000;
        let loaded = Checkpoint::from_json(&cp.to_json(Style::Readable).expect("renders")).expect("loads");
        assert_eq!(loaded.positions.window_swept_to_ms, 1_000);
        assert_eq!(loaded.positions.deep_swept_to_ms, [1_000; MAX_DEEP_SWEEPS]);
        let err = Checkpoint::from_json(r#"{"format":9}"#).expect_err("future format");
        assert!(err.to_string().contains("newer version"), "{err}");
    }

    #[test]
    fn the_fresh_read_starts_at_the_newest_second_but_never_past_what_it_read() {
        let mut p = Positions::starting_at(10_000);
        assert_eq!(p.fresh_start_ms(), 10_000);
        p.newest_event_ms = Some(12_345);
        p.fresh_read_to_ms = 20_000;
        assert_eq!(p.fresh_start_ms(), 12_000);
        p.newest_event_ms = Some(99_999_999);
        assert_eq!(p.fresh_start_ms(), 20_000, "an event from the future does not hide the present");
    }

    proptest! {
        #[test]
        fn any_text_loads_or_fails_cleanly(text in ".{0,200}") {
            let _ = Checkpoint::from_json(&text);
        }

        #[test]
        fn any_field_values_load_or_fail_cleanly(
            format in 0u32..4,
            numbers in proptest::collection::vec(any::<i64>(), 4),
            delivered in "[A-Za-z0-9+/=]{0,40}",
            buckets in proptest::collection::vec(any::<i64>(), 0..5),
            from in any::<i64>(),
            slots in "[rb][A-Za-z0-9+/=]{0,12}",
        ) {
            let text = serde_json::json!({
                "format": format, "settled_before_ms": numbers[0], "newest_event_ms": numbers[1],
                "delivered": delivered, "fresh_read_to_ms": numbers[2], "window_swept_to_ms": numbers[3],
                "deep_swept_to_ms": numbers[0], "delivered_buckets": buckets, "buckets": {"from": from, "slots": slots},
                "passes": [{"read": "fresh", "next_page": "x", "covered_to_ms": numbers[1], "read_at_ms": numbers[2], "until_ms": null}],
            }).to_string();
            if let Ok(cp) = Checkpoint::from_json(&text) {
                let p = cp.positions;
                prop_assert!(p.window_swept_to_ms <= p.fresh_read_to_ms);
                prop_assert!(p.deep_swept_to_ms[0] <= p.window_swept_to_ms);
                prop_assert!(p.deep_swept_to_ms.windows(2).all(|w| w[1] <= w[0]));
                let _ = p.fresh_start_ms();
            }
        }
    }
}
