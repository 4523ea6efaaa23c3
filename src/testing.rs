//! In-memory stand-ins for the edges both data paths use (imported by the drain's, push mode's
//! and the delivery step's tests): an audit log whose events become visible at set instants of a
//! hand-moved clock, a sink that counts what it receives, a store that can fail.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::value::RawValue;

use crate::budget::Budget;
use crate::checkpoint::Checkpoint;
use crate::checkpoint::delivered::DeliveredSet;
use crate::ports::{
    AuditEvent, AuditLogSource, CheckpointSave, Clock, CursorError, CursorState, CursorStore, IntakeSink, ObjectLedger,
    ObjectRecord, Page, PageRequest, RateBudget, SinkError, SourceError,
};
use crate::timefmt::{ceil_to_second, floor_to_second};

pub struct FakeClock(AtomicI64);

impl FakeClock {
    pub fn at(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct LogEvent {
    pub ts: i64,
    pub visible_at: i64,
    pub id: String,
}

/// GitHub's pagination misbehaving on one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// The page's `next` link is the link that fetched it (or its query's first page).
    ToItself,
    /// The page's `next` link leads to its query's first page.
    ToFirstPage,
}

/// GitHub's audit log as the drain sees it: `created:` at second precision, oldest first,
/// pages of `page_size`, continuation after the last event of a page.
pub struct FakeLog<'c> {
    clock: &'c FakeClock,
    events: Mutex<Vec<LogEvent>>,
    pub page_size: usize,
    /// Requests left, as `rate_budget` answers.
    pub left: Mutex<Option<u64>>,
    /// For the coming answers, in order: `None` answers normally.
    pub link_faults: Mutex<std::collections::VecDeque<Option<LinkFault>>>,
    pub requests: AtomicUsize,
    /// How far GitHub's clock is ahead of the drain's (negative: behind); events are stamped
    /// and shown by GitHub's.
    pub ahead_ms: AtomicI64,
}

impl<'c> FakeLog<'c> {
    pub fn new(clock: &'c FakeClock) -> Self {
        Self {
            clock,
            events: Mutex::new(Vec::new()),
            page_size: 100,
            left: Mutex::new(None),
            link_faults: Mutex::default(),
            requests: AtomicUsize::new(0),
            ahead_ms: AtomicI64::new(0),
        }
    }

    pub fn add(&self, events: impl IntoIterator<Item = LogEvent>) {
        let mut log = self.events.lock().expect("log");
        log.extend(events);
        log.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
    }

    pub fn ids(&self) -> Vec<String> {
        self.events.lock().expect("log").iter().map(|e| e.id.clone()).collect()
    }
}

#[async_trait]
impl AuditLogSource for FakeLog<'_> {
    async fn fetch(&self, request: &PageRequest, _budget: &Budget) -> Result<Page, SourceError> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let fault = self.link_faults.lock().expect("faults").pop_front().flatten();
        let (since, until, after) = match request {
            PageRequest::Created { since_ms, until_ms } => (*since_ms, *until_ms, None),
            PageRequest::Continue(link) => {
                let parts: Vec<&str> = link.split('|').collect();
                let number = |i: usize| parts.get(i).and_then(|p| p.parse::<i64>().ok());
                let since = number(0).ok_or_else(|| SourceError::Fatal(format!("bad link {link}")))?;
                let after = number(2).zip(parts.get(3).map(|id| id.to_string()));
                (since, number(1), after)
            }
        };
        // GitHub's clock: the test's, moved by `ahead_ms`; its `Date` has whole seconds.
        let now = self.clock.now_ms() + self.ahead_ms.load(Ordering::SeqCst);
        let from = floor_to_second(since);
        let to = until.map_or(i64::MAX, ceil_to_second);
        let log = self.events.lock().expect("log");
        let matching: Vec<&LogEvent> = log
            .iter()
            .filter(|e| e.visible_at <= now && e.ts >= from && e.ts < to)
            .filter(|e| after.as_ref().is_none_or(|(ts, id)| (e.ts, &e.id) > (*ts, id)))
            .take(self.page_size + 1)
            .collect();
        let more = matching.len() > self.page_size;
        let page = &matching[..matching.len().min(self.page_size)];
        let until_text = until.map(|u| u.to_string()).unwrap_or_default();
        let first_page = format!("{since}|{until_text}||");
        let next = match (fault, request, more, page.last()) {
            (Some(LinkFault::ToItself), PageRequest::Continue(link), _, _) => Some(link.clone()),
            (Some(_), _, _, _) => Some(first_page),
            (None, _, true, Some(last)) => Some(format!("{since}|{until_text}|{}|{}", last.ts, last.id)),
            _ => None,
        };
        let events = page
            .iter()
            .map(|e| {
                let text = format!(r#"{{"@timestamp":{},"_document_id":"{}","action":"repo.create"}}"#, e.ts, e.id);
                AuditEvent::from_raw(RawValue::from_string(text).expect("valid json"))
            })
            .collect();
        Ok(Page { events, next, server_time_ms: Some(floor_to_second(now)) })
    }

    fn rate_budget(&self) -> Option<RateBudget> {
        self.left.lock().expect("left").map(|left| RateBudget { left, resets_at: None })
    }
}

/// Counts every `_document_id` it receives, and keeps the texts.
#[derive(Default)]
pub struct RecordingSink {
    pub received: Mutex<HashMap<String, u32>>,
    pub texts: Mutex<Vec<String>>,
}

#[async_trait]
impl IntakeSink for RecordingSink {
    fn max_event_bytes(&self) -> usize {
        250_000
    }

    async fn send(&self, events: &[&AuditEvent], _budget: &Budget) -> Result<usize, SinkError> {
        let mut received = self.received.lock().expect("received");
        for event in events {
            *received.entry(event.label()).or_default() += 1;
        }
        self.texts.lock().expect("texts").extend(events.iter().map(|event| event.json().to_owned()));
        Ok(0)
    }
}

/// Keeps the checkpoint and buckets in memory; with `fail_at_save`, the nth save fails as a
/// crash between the intake's acknowledgement and the checkpoint would.
#[derive(Default)]
pub struct MemoryStore {
    checkpoint: Mutex<Option<Checkpoint>>,
    objects: Mutex<HashMap<String, ObjectRecord>>,
    buckets: Mutex<HashMap<i64, DeliveredSet>>,
    pub fail_at_save: Mutex<Option<usize>>,
    saves: AtomicUsize,
    releases: AtomicUsize,
    /// Buckets asked for by `load_buckets`, found or not.
    pub buckets_asked: AtomicUsize,
}

impl MemoryStore {
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.lock().expect("checkpoint").clone()
    }

    pub fn put(&self, checkpoint: Checkpoint) {
        *self.checkpoint.lock().expect("checkpoint") = Some(checkpoint);
    }

    pub fn save_count(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    /// Holds given back, alone or with a save.
    pub fn releases(&self) -> usize {
        self.releases.load(Ordering::SeqCst)
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.lock().expect("buckets").len()
    }
}

#[async_trait]
impl CursorStore for MemoryStore {
    async fn acquire(&self, _key: &str, _held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError> {
        Ok(self.checkpoint())
    }

    async fn load_buckets(&self, _key: &str, starts: &[i64]) -> Result<Vec<(i64, DeliveredSet)>, CursorError> {
        self.buckets_asked.fetch_add(starts.len(), Ordering::SeqCst);
        let buckets = self.buckets.lock().expect("buckets");
        Ok(starts.iter().filter_map(|s| buckets.get(s).map(|b| (*s, b.clone()))).collect())
    }

    async fn save(&self, _key: &str, save: &CheckpointSave<'_>) -> Result<(), CursorError> {
        let n = self.saves.fetch_add(1, Ordering::SeqCst) + 1;
        if *self.fail_at_save.lock().expect("fail") == Some(n) {
            return Err(CursorError::Storage("simulated crash before the checkpoint was written".into()));
        }
        let mut buckets = self.buckets.lock().expect("buckets");
        for (start, set) in &save.changed {
            buckets.insert(*start, (*set).clone());
        }
        *self.checkpoint.lock().expect("checkpoint") = Some(save.checkpoint.clone());
        for start in save.removed.iter().chain(&save.deleted) {
            buckets.remove(start);
        }
        if save.releases {
            self.releases.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn release(&self, _key: &str) -> Result<(), CursorError> {
        self.releases.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn peek(&self, _key: &str) -> Result<CursorState, CursorError> {
        Ok(CursorState { checkpoint: self.checkpoint(), held: false })
    }
}

#[async_trait]
impl ObjectLedger for MemoryStore {
    async fn load_object(&self, _key: &str, object: &str) -> Result<Option<ObjectRecord>, CursorError> {
        Ok(self.objects.lock().expect("objects").get(object).cloned())
    }

    async fn save_object(&self, _key: &str, object: &str, record: &ObjectRecord) -> Result<(), CursorError> {
        self.objects.lock().expect("objects").insert(object.to_owned(), record.clone());
        Ok(())
    }
}
