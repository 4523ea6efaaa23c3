//! Push mode: GitHub streams the enterprise audit log into an S3 bucket as files of events, at
//! least once; each file is forwarded to the intake, and each event exactly once.
//!
//! A bucket is one cursor (`s3/BUCKET`), held by one run at a time. For each object: its record
//! (by key and ETag) says how many of its events need no sending again; the rest are read in
//! file order, those the delivered record already holds (by `_document_id`, within
//! `STREAM_DEDUPE_WINDOW` of the newest event) are skipped, and the others go to the intake in
//! bodies of at most [`CHUNK_BYTES`]. After each acknowledged body the delivered record is
//! saved, then the object's progress: a kill repeats at most the body in flight, and even that
//! only if it came after the save of the record. A gzip file is checked whole before any of its
//! events is sent ([`read::check`]). The decisions live in [`rules`].

pub mod read;
pub mod rules;
pub mod split;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use xxhash_rust::xxh3::xxh3_64;

use crate::budget::Budget;
use crate::checkpoint::{Checkpoint, MAX_DEEP_SWEEPS};
use crate::deliver::{Batch, DeliverError, Floors, Ledger};
use crate::metrics::Metric;
use crate::ports::{
    AuditEvent, Clock, CursorError, CursorStore, IntakeSink, ObjectBody, ObjectLedger, ObjectRecord, ObjectRef,
    ObjectSource, SinkError,
};
use crate::shaping::Shaping;
use crate::summary::{Figures, RunReport, StopReason, log_finished};
use crate::timefmt::rfc3339_ms;
use read::{Checked, Events, ReadError};
use rules::{Resume, resume};
use split::Piece;

/// Raw event bytes per intake body: escaped as JSON strings they stay under the intake's body
/// limit (`sekoia::MAX_BODY_BYTES`), so one chunk is one body.
pub const CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A lease another run holds is asked for again this often while the budget lasts.
const LEASE_RETRY: Duration = Duration::from_millis(500);
/// No object is started with less than this left of the budget (the CLI's passes may be as
/// short as a second, and each must get on with its object).
const OBJECT_RESERVE: Duration = Duration::from_millis(100);

pub struct PushEdges<'a> {
    pub objects: &'a dyn ObjectSource,
    pub sink: &'a dyn IntakeSink,
    pub store: &'a dyn CursorStore,
    pub ledger: &'a dyn ObjectLedger,
    pub clock: &'a dyn Clock,
    /// Told after every object; the CLI's progress line.
    pub progress: Option<&'a PushProgress>,
}

pub type PushProgress = dyn Fn(&PushSummary) + Send + Sync;

/// How a bucket's objects are forwarded.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// `STREAM_DEDUPE_WINDOW`: events this much older than the newest forwarded are no longer
    /// looked for in the delivered record.
    pub dedupe_window: Duration,
    /// Raw event bytes per intake body.
    pub chunk_bytes: usize,
    /// What is sent of what is read.
    pub shaping: Shaping,
}

impl PushSettings {
    pub fn new(dedupe_window: Duration, shaping: Shaping) -> Self {
        Self { dedupe_window, chunk_bytes: CHUNK_BYTES, shaping }
    }
}

/// What one run did with a bucket's objects. Its stop reason: `drained`, every object given was
/// tried; `budget`, the time budget ran out first (the rest is resumed by the next run);
/// `failed`, the intake or the store failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushSummary {
    #[serde(flatten)]
    pub figures: Figures,
    pub objects_forwarded: u64,
    /// Recorded as forwarded already (a redelivered notification, a second listing).
    pub objects_already_forwarded: u64,
    /// Holding no audit events (GitHub's endpoint checks): recorded, never retried.
    pub objects_skipped: u64,
    pub objects_failed: u64,
    /// Each failed object and why (retried: by the queue, or the next `forward-s3`).
    pub failures: Vec<ObjectFailure>,
}

impl PushSummary {
    /// Adds a later pass over the same bucket.
    pub fn absorb(&mut self, later: PushSummary) {
        self.figures.absorb(later.figures);
        self.objects_forwarded += later.objects_forwarded;
        self.objects_already_forwarded += later.objects_already_forwarded;
        self.objects_skipped += later.objects_skipped;
        self.objects_failed += later.objects_failed;
        self.failures.extend(later.failures);
    }
}

impl RunReport for PushSummary {
    fn figures(&self) -> &Figures {
        &self.figures
    }

    fn mode_metrics(&self) -> Vec<Metric> {
        vec![
            ("ObjectsForwarded", "Count", json!(self.objects_forwarded)),
            ("ObjectsAlreadyForwarded", "Count", json!(self.objects_already_forwarded)),
            ("ObjectsSkipped", "Count", json!(self.objects_skipped)),
            ("ObjectsFailed", "Count", json!(self.objects_failed)),
        ]
    }

    fn mode_detail(&self) -> String {
        format!(
            "objects: {} forwarded, {} already forwarded, {} holding no audit events, {} failed",
            self.objects_forwarded, self.objects_already_forwarded, self.objects_skipped, self.objects_failed
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectFailure {
    pub key: String,
    pub error: String,
}

/// What became of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOutcome {
    Forwarded,
    AlreadyForwarded,
    NotAuditEvents,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// This object alone: unreadable, corrupt or cut off. The others go on.
    #[error("s3://{bucket}/{key}: {problem}")]
    Object { bucket: String, key: String, problem: String },
    /// The intake or the store failed: nothing more can be forwarded now.
    #[error(transparent)]
    Sink(SinkError),
    #[error(transparent)]
    Store(#[from] CursorError),
    /// The run's time budget ran out: a stop, not a failure; the next run resumes here.
    #[error("the run's time budget ran out; the next run resumes here")]
    OutOfTime,
}

impl From<SinkError> for PushError {
    fn from(err: SinkError) -> Self {
        match err {
            SinkError::OutOfTime => PushError::OutOfTime,
            err => PushError::Sink(err),
        }
    }
}

impl From<DeliverError> for PushError {
    fn from(err: DeliverError) -> Self {
        match err {
            DeliverError::Sink(err) => err.into(),
            DeliverError::Store(err) => PushError::Store(err),
        }
    }
}

impl PushError {
    /// Whether the objects after this one can still be tried.
    pub fn is_object_only(&self) -> bool {
        matches!(self, PushError::Object { .. })
    }
}

/// A bucket held by this run: its checkpoint and delivered record.
pub struct BucketRun<'a> {
    edges: &'a PushEdges<'a>,
    bucket: String,
    key: String,
    dedupe_window_ms: i64,
    chunk_bytes: usize,
    max_event_bytes: usize,
    ledger: Ledger<'a>,
    summary: PushSummary,
    started: Instant,
}

impl<'a> BucketRun<'a> {
    /// Takes the bucket's lease, waiting while another run holds it and the budget allows.
    pub async fn open(
        edges: &'a PushEdges<'a>,
        bucket: &str,
        settings: &PushSettings,
        budget: &Budget,
    ) -> Result<BucketRun<'a>, PushError> {
        let key = rules::cursor_key(bucket);
        let checkpoint = loop {
            match edges.store.acquire(&key, budget.lease_until()).await {
                Ok(checkpoint) => break checkpoint,
                Err(CursorError::Busy { .. }) if budget.allows(LEASE_RETRY, Duration::ZERO) => {
                    tokio::time::sleep(LEASE_RETRY).await;
                }
                Err(err) => return Err(err.into()),
            }
        };
        let checkpoint = checkpoint.unwrap_or_else(|| Checkpoint::starting_at(edges.clock.now_ms()));
        let ledger = Ledger::open(&key, edges.store, checkpoint, settings.shaping.clone());
        let summary = PushSummary { figures: Figures::new(&key, StopReason::Drained), ..PushSummary::default() };
        Ok(Self {
            edges,
            bucket: bucket.to_owned(),
            key,
            dedupe_window_ms: i64::try_from(settings.dedupe_window.as_millis()).unwrap_or(i64::MAX),
            chunk_bytes: settings.chunk_bytes,
            max_event_bytes: edges.sink.max_event_bytes(),
            ledger,
            summary,
            started: Instant::now(),
        })
    }

    /// Forwards what of one object was not forwarded yet. An object error is counted here;
    /// the caller decides what else to try.
    pub async fn forward(&mut self, object: &ObjectRef, budget: &Budget) -> Result<ObjectOutcome, PushError> {
        let object_key = object.key.as_str();
        let outcome = self.forward_object(object, budget).await;
        match &outcome {
            Ok(ObjectOutcome::Forwarded) => self.summary.objects_forwarded += 1,
            Ok(ObjectOutcome::AlreadyForwarded) => self.summary.objects_already_forwarded += 1,
            Ok(ObjectOutcome::NotAuditEvents) => {
                tracing::info!(object = object_key, "skipped: the object holds no audit events");
                self.summary.objects_skipped += 1;
            }
            Err(PushError::OutOfTime) => {
                tracing::info!(object = object_key, "the run's time budget ran out; the next run resumes this object");
                self.summary.figures.stop_reason = StopReason::Budget;
            }
            Err(err) => {
                tracing::warn!(object = object_key, error = %err, "object not forwarded");
                self.summary.objects_failed += 1;
                self.summary.failures.push(ObjectFailure { key: object_key.to_owned(), error: err.to_string() });
                if !err.is_object_only() {
                    self.summary.figures.stop_reason = StopReason::Failed;
                }
            }
        }
        if let Some(progress) = self.edges.progress {
            progress(&self.summary);
        }
        outcome
    }

    async fn forward_object(&mut self, object: &ObjectRef, budget: &Budget) -> Result<ObjectOutcome, PushError> {
        if !budget.allows(Duration::ZERO, OBJECT_RESERVE) {
            return Err(PushError::OutOfTime);
        }
        let stored = self.edges.ledger.load_object(&self.key, &object.key).await?;
        // Known complete from the notification's or the listing's ETag: not even opened.
        if resume(stored.as_ref(), object.etag.as_deref()) == Resume::Done {
            return Ok(ObjectOutcome::AlreadyForwarded);
        }
        let body = self.open_checked(object, budget).await?;
        let events_done = match resume(stored.as_ref(), Some(&body.etag)) {
            Resume::Done => return Ok(ObjectOutcome::AlreadyForwarded),
            Resume::From(events_done) => events_done,
        };
        let progress = ObjectRecord {
            etag: rules::normalize_etag(&body.etag),
            events_done,
            complete: false,
            not_audit_events: false,
        };
        let events = Events::open(body.bytes, self.max_event_bytes)
            .await
            .map_err(|e| self.read_error(&object.key, e, budget))?;
        let pass = ObjectPass { key: object.key.clone(), progress, position: 0, chunk: Chunk::default() };
        self.forward_events(events, pass, budget).await
    }

    /// Opens an object to read its events: a gzip file is read whole once to check it, then
    /// opened again, and must still be the same version.
    async fn open_checked(&self, object: &ObjectRef, budget: &Budget) -> Result<ObjectBody, PushError> {
        let body = self.open_within(object, budget).await?;
        match read::check(body.bytes).await.map_err(|e| self.read_error(&object.key, e, budget))? {
            Checked::Plain(bytes) => Ok(ObjectBody { etag: body.etag, bytes }),
            Checked::SoundGzip => {
                let again = self.open_within(object, budget).await?;
                if rules::normalize_etag(&again.etag) != rules::normalize_etag(&body.etag) {
                    return Err(self.object_error(&object.key, "it was written again while being read; retried later"));
                }
                Ok(again)
            }
        }
    }

    /// Sends an object's events not sent before, chunk by chunk, each chunk's progress saved.
    async fn forward_events(
        &mut self,
        mut events: Events,
        mut pass: ObjectPass,
        budget: &Budget,
    ) -> Result<ObjectOutcome, PushError> {
        loop {
            let piece = match events.next().await {
                Ok(Some(piece)) => piece,
                Ok(None) => return self.finish_object(pass, budget).await,
                // Not even one object at its start: not an audit-log file.
                Err(ReadError::Split(_)) if pass.position == 0 => return self.not_audit_events(pass).await,
                Err(err) => return Err(self.cut_short(&mut pass, err, budget).await),
            };
            pass.position += 1;
            if pass.position <= pass.progress.events_done {
                continue;
            }
            let event = match self.judge(&pass, piece) {
                Judged::Skip => continue,
                Judged::NotAuditEvents => return self.not_audit_events(pass).await,
                Judged::Invalid(problem) => {
                    // The events before it are sent and recorded; the file fails at this one.
                    pass.position -= 1;
                    self.flush(&mut pass, budget).await?;
                    return Err(self.object_error(&pass.key, problem));
                }
                Judged::Event(event) => event,
            };
            if self.already_delivered(&event, &pass.chunk).await? {
                self.summary.figures.duplicates_skipped += 1;
                continue;
            }
            pass.chunk.push(event);
            if pass.chunk.bytes >= self.chunk_bytes {
                self.flush(&mut pass, budget).await?;
            }
        }
    }

    /// One piece of an object, at `pass.position`: an event to send, or why not.
    fn judge(&mut self, pass: &ObjectPass, piece: Piece) -> Judged {
        let text = match piece {
            Piece::Object(text) => text,
            Piece::Oversize { bytes } => {
                tracing::warn!(object = %pass.key, event = pass.position, bytes, "event over the intake's limit, not sent");
                self.summary.figures.oversize_events += 1;
                return Judged::Skip;
            }
        };
        if pass.position == 1 && !rules::is_audit_event(&text) {
            return Judged::NotAuditEvents;
        }
        match RawValue::from_string(text) {
            Ok(raw) => Judged::Event(AuditEvent::from_raw(raw)),
            Err(err) => Judged::Invalid(format!("event {} is not valid JSON ({err})", pass.position)),
        }
    }

    /// An object whose bytes failed partway: what was read before the fault is sent and
    /// recorded (a retry skips it), unless the budget ran out.
    async fn cut_short(&mut self, pass: &mut ObjectPass, err: ReadError, budget: &Budget) -> PushError {
        let err = self.read_error(&pass.key, err, budget);
        if !err.is_object_only() {
            return err;
        }
        match self.flush(pass, budget).await {
            Ok(()) => err,
            Err(flush_err) => flush_err,
        }
    }

    /// The last chunk sent, the object recorded complete.
    async fn finish_object(&mut self, mut pass: ObjectPass, budget: &Budget) -> Result<ObjectOutcome, PushError> {
        self.flush(&mut pass, budget).await?;
        let mut progress = pass.progress;
        progress.complete = true;
        progress.events_done = pass.position;
        // An empty file is no stream's output either.
        progress.not_audit_events = pass.position == 0;
        self.edges.ledger.save_object(&self.key, &pass.key, &progress).await?;
        Ok(if pass.position == 0 { ObjectOutcome::NotAuditEvents } else { ObjectOutcome::Forwarded })
    }

    /// In the delivered record (its buckets loaded as needed) or earlier in the same chunk.
    async fn already_delivered(&mut self, event: &AuditEvent, chunk: &Chunk) -> Result<bool, CursorError> {
        let Some(ts) = event.timestamp_ms else { return Ok(false) };
        self.ledger.ensure_loaded(ts, ts).await?;
        Ok(self.ledger.record.contains(ts, event) || chunk.holds(ts, event))
    }

    /// Sends the chunk, then saves the record and the object's progress up to `pass.position`.
    async fn flush(&mut self, pass: &mut ObjectPass, budget: &Budget) -> Result<(), PushError> {
        let chunk = &mut pass.chunk;
        if chunk.events.is_empty() {
            return Ok(());
        }
        let send: Vec<&AuditEvent> = chunk.events.iter().collect();
        let seen = chunk.events.iter().filter_map(|event| event.timestamp_ms.map(|ts| (ts, event))).collect();
        let (clock, window_ms, oldest_ms) = (self.edges.clock, self.dedupe_window_ms, chunk.oldest_ms);
        let move_positions = |checkpoint: &mut Checkpoint| {
            let now = clock.now_ms();
            let positions = &mut checkpoint.positions;
            let newest = positions.newest_event_ms.unwrap_or(now);
            // A stream's positions all stand at its newest event: nothing is read by time.
            positions.fresh_read_to_ms = newest.min(now);
            positions.window_swept_to_ms = positions.fresh_read_to_ms;
            positions.deep_swept_to_ms = [positions.fresh_read_to_ms; MAX_DEEP_SWEEPS];
            Floors { prune_before_ms: newest.saturating_sub(window_ms), unload_before_ms: oldest_ms.unwrap_or(newest) }
        };
        let delivered =
            self.ledger.deliver(self.edges.sink, budget, Batch { send: &send, seen }, move_positions).await?;
        self.summary.figures.count(&delivered);
        // The record before the file's progress, as for every body: whatever the ledger waits for.
        self.ledger.save_pending().await?;
        pass.progress.events_done = pass.position;
        self.edges.ledger.save_object(&self.key, &pass.key, &pass.progress).await?;
        pass.chunk = Chunk::default();
        Ok(())
    }

    /// Recorded as done, so that it is never read again.
    async fn not_audit_events(&self, pass: ObjectPass) -> Result<ObjectOutcome, PushError> {
        let mut progress = pass.progress;
        progress.complete = true;
        progress.not_audit_events = true;
        self.edges.ledger.save_object(&self.key, &pass.key, &progress).await?;
        Ok(ObjectOutcome::NotAuditEvents)
    }

    /// Opens an object, its bytes bounded by the budget's deadline: a slow or stalled S3 stops
    /// the run in time, never past it.
    async fn open_within(&self, object: &ObjectRef, budget: &Budget) -> Result<ObjectBody, PushError> {
        match tokio::time::timeout_at(budget.deadline(), self.edges.objects.open(object)).await {
            Err(_) => Err(PushError::OutOfTime),
            Ok(Err(err)) => Err(self.object_error(&object.key, err)),
            Ok(Ok(body)) => Ok(ObjectBody { etag: body.etag, bytes: read::until(body.bytes, budget.deadline()) }),
        }
    }

    /// A read that failed once the budget was spent failed for that reason: the object is
    /// resumed by the next run, not failed.
    fn read_error(&self, key: &str, err: ReadError, budget: &Budget) -> PushError {
        if budget.remaining().is_zero() { PushError::OutOfTime } else { self.object_error(key, err) }
    }

    fn object_error(&self, key: &str, err: impl std::fmt::Display) -> PushError {
        PushError::Object { bucket: self.bucket.clone(), key: key.to_owned(), problem: err.to_string() }
    }

    /// Saves what waits and gives the lease back; the run's figures.
    pub async fn close(mut self) -> PushSummary {
        let (checkpoint, closed) = self.ledger.close().await;
        if let Err(err) = closed {
            tracing::warn!(error = %err, "the last batches' positions were not saved; the next run reads them again");
        }
        let now = self.edges.clock.now_ms();
        if let Some(newest) = checkpoint.positions.newest_event_ms {
            self.summary.figures.newest_event = Some(rfc3339_ms(newest));
            self.summary.figures.lag_seconds = Some((now - newest).max(0) as f64 / 1000.0);
        }
        self.summary.figures.elapsed_seconds = self.started.elapsed().as_secs_f64();
        log_finished(&self.summary);
        self.summary
    }
}

/// One object being forwarded: how far it is read, recorded and batched.
struct ObjectPass {
    /// The object's key.
    key: String,
    /// As recorded: events before `events_done` need no sending again.
    progress: ObjectRecord,
    /// Events read so far, in file order.
    position: u64,
    chunk: Chunk,
}

/// One piece of an object, judged.
enum Judged {
    Event(AuditEvent),
    /// Over the intake's limit: counted and logged, not sent.
    Skip,
    NotAuditEvents,
    /// Not JSON: the object fails at this event.
    Invalid(String),
}

/// Events waiting for the next body.
#[derive(Default)]
struct Chunk {
    events: Vec<AuditEvent>,
    /// (`@timestamp`, hash of the identity) of each, as the delivered record keeps them.
    identities: HashSet<(i64, u64)>,
    bytes: usize,
    oldest_ms: Option<i64>,
}

fn identity(event: &AuditEvent) -> u64 {
    xxh3_64(event.document_id.as_deref().unwrap_or(event.json()).as_bytes())
}

impl Chunk {
    fn push(&mut self, event: AuditEvent) {
        self.bytes += event.json().len();
        if let Some(ts) = event.timestamp_ms {
            self.oldest_ms = Some(self.oldest_ms.map_or(ts, |o| o.min(ts)));
            self.identities.insert((ts, identity(&event)));
        }
        self.events.push(event);
    }

    /// The same event twice in one object, before the first was sent.
    fn holds(&self, ts: i64, event: &AuditEvent) -> bool {
        self.identities.contains(&(ts, identity(event)))
    }
}

/// Forwards `keys` of `bucket` in order, each failing alone where it can. A failure of the
/// intake or the store (or the budget's end) fails the objects not yet done too: they are
/// retried later. Returns the summary and the keys that failed.
pub async fn forward_objects(
    edges: &PushEdges<'_>,
    bucket: &str,
    objects: &[ObjectRef],
    settings: &PushSettings,
    budget: &Budget,
) -> Result<(PushSummary, Vec<usize>), PushError> {
    let mut run = BucketRun::open(edges, bucket, settings, budget).await?;
    let mut failed = Vec::new();
    let mut stopped: Option<String> = None;
    for (index, object) in objects.iter().enumerate() {
        if let Some(reason) = &stopped {
            // Handed back to be tried again; a failure only when a failure stopped the run.
            if run.summary.figures.stop_reason == StopReason::Failed {
                run.summary.objects_failed += 1;
                run.summary.failures.push(ObjectFailure { key: object.key.clone(), error: reason.clone() });
            }
            failed.push(index);
            continue;
        }
        if let Err(err) = run.forward(object, budget).await {
            failed.push(index);
            if !err.is_object_only() {
                stopped = Some(format!("not tried: {err}"));
            }
        }
    }
    Ok((run.close().await, failed))
}
