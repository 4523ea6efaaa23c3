//! The edges the data paths (the drain and push mode) talk to. Each outside system has one
//! adapter behind one trait; neither path sees HTTP, files or AWS.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::budget::Budget;
use crate::checkpoint::Checkpoint;
use crate::checkpoint::delivered::DeliveredSet;
pub use crate::event::AuditEvent;

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
    /// When the source answered, by its own clock (GitHub's `Date`, epoch ms), if it said.
    pub server_time_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("GitHub rate limit reached{}", match .reset_at { Some(t) => format!(" (resets at {})", humantime::format_rfc3339_seconds(*t)), None => String::new() })]
    RateLimited { reset_at: Option<SystemTime> },
    #[error("the run's time budget ran out while waiting for GitHub")]
    OutOfTime,
    /// A continuation link that will not be followed (it points away from `GITHUB_API_URL`,
    /// or does not parse): the read starts its stretch again without it.
    #[error("{0}")]
    LinkRefused(String),
    #[error("{0}")]
    Fatal(String),
}

/// Requests that may still be spent before the rate-limit reserve, and when that renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBudget {
    pub left: u64,
    pub resets_at: Option<SystemTime>,
}

#[async_trait]
pub trait AuditLogSource: Send + Sync {
    async fn fetch(&self, request: &PageRequest, budget: &Budget) -> Result<Page, SourceError>;

    /// The rate budget as of the last answer; `None` while unknown or unlimited.
    fn rate_budget(&self) -> Option<RateBudget>;
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

    /// Returns once the intake answered for every event, with how many of them it did not
    /// acknowledge (it took the batch but refused those inside it): they are reported, not
    /// retried, as sending them again would meet the same refusal.
    async fn send(&self, events: &[&AuditEvent], budget: &Budget) -> Result<usize, SinkError>;
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

/// One save: the checkpoint, and the buckets of the delivered record that changed.
#[derive(Debug)]
pub struct CheckpointSave<'a> {
    pub checkpoint: &'a Checkpoint,
    /// Bucket start → its whole content.
    pub changed: Vec<(i64, &'a DeliveredSet)>,
    /// Buckets no read will need again: a store whose items expire by themselves may leave them.
    pub removed: Vec<i64>,
    /// Buckets no read will need again that were stored without an expiry: deleted.
    pub deleted: Vec<i64>,
    /// The run's last save: the hold on the key is given back with it.
    pub releases: bool,
}

/// A cursor as it stands, read without taking it: how a backfill is followed from outside.
#[derive(Debug, Default)]
pub struct CursorState {
    pub checkpoint: Option<Checkpoint>,
    /// A run holds it now.
    pub held: bool,
}

/// Where a target's checkpoint and delivered record live between runs.
#[async_trait]
pub trait CursorStore: Send + Sync {
    /// Takes exclusive hold of `key` until `release` (or `held_until`, for stores whose hold
    /// must outlive a crashed holder) and loads its checkpoint, `None` on the very first run.
    async fn acquire(&self, key: &str, held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError>;
    /// The delivered-record buckets starting at `starts`; a bucket the store lacks is empty.
    async fn load_buckets(&self, key: &str, starts: &[i64]) -> Result<Vec<(i64, DeliveredSet)>, CursorError>;
    /// Writes the changed buckets, then the checkpoint, then deletes the removed buckets, each
    /// only while this run holds `key`, and gives the hold back if the save says so. Durable
    /// when it returns; a crash part-way leaves buckets that list events which were delivered,
    /// never a checkpoint ahead of its record.
    async fn save(&self, key: &str, save: &CheckpointSave<'_>) -> Result<(), CursorError>;
    async fn release(&self, key: &str) -> Result<(), CursorError>;
    /// The checkpoint and whether a run holds `key`, without taking it or writing anything.
    async fn peek(&self, key: &str) -> Result<CursorState, CursorError>;
}

/// The time the drain goes by: the wall clock, or a simulated one in tests and benchmarks.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::timefmt::now_ms()
    }
}

/// One object of a bucket the audit-log stream writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    /// As the notification or the listing gave it, if it did.
    pub etag: Option<String>,
}

/// An object opened for reading: its ETag (which version of the key this is) and its bytes as
/// stored (gzip or not).
pub struct ObjectBody {
    pub etag: String,
    pub bytes: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
}

/// One page of a bucket's listing.
#[derive(Debug, Default)]
pub struct ObjectListing {
    /// Keys and ETags.
    pub objects: Vec<(String, Option<String>)>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// This object cannot be read now (gone, refused, unreachable): it fails alone.
    #[error("{0}")]
    Unreadable(String),
    /// The bucket cannot be listed.
    #[error("{0}")]
    Listing(String),
}

/// Where streamed audit-log files are read from (Amazon S3).
#[async_trait]
pub trait ObjectSource: Send + Sync {
    async fn open(&self, object: &ObjectRef) -> Result<ObjectBody, ObjectError>;
    async fn list(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        next: Option<String>,
    ) -> Result<ObjectListing, ObjectError>;
}

/// How far one object (one ETag of one key) has been forwarded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectRecord {
    pub etag: String,
    /// Events of the object, in file order, that need no sending again.
    pub events_done: u64,
    pub complete: bool,
    /// Set when the object was found to hold no audit events.
    #[serde(default)]
    pub not_audit_events: bool,
}

/// The record of forwarded objects, beside a bucket's checkpoint in the cursor store.
#[async_trait]
pub trait ObjectLedger: Send + Sync {
    /// `key` is the bucket's cursor key (`s3/BUCKET`); `object` the object's key.
    async fn load_object(&self, key: &str, object: &str) -> Result<Option<ObjectRecord>, CursorError>;
    async fn save_object(&self, key: &str, object: &str, record: &ObjectRecord) -> Result<(), CursorError>;
}
