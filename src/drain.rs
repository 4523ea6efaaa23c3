//! The data path, top to bottom: fetch a page → skip what was delivered → post → checkpoint →
//! next page, until GitHub has no next page or the budget is nearly spent.
//!
//! The checkpoint only moves after the intake acknowledged a page, so a crash at any instant
//! re-sends at most the page in flight. Each run re-reads from a little before the settled point
//! (the late-arrival window, at GitHub's one-second search precision) and recognises what it
//! already delivered by `_document_id`, so events sharing a second or indexed late are neither
//! lost nor sent twice.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::cursor::{Checkpoint, MAX_DELIVERED_BYTES, Resume};
use crate::ports::{
    AuditEvent, AuditLogSource, CursorError, CursorStore, IntakeSink, PageRequest, SinkError, SourceError,
};
use crate::timefmt::{now_ms, rfc3339_ms, rfc3339_seconds, to_ms};

/// Never start a page with less than this left (plus twice the slowest page so far).
const MIN_CYCLE_RESERVE: Duration = Duration::from_millis(500);
/// A lease outlives the budget by this much, so the run can still release it itself, yet a
/// crashed Lambda's lease lapses before its deadline (`lambda::SAFETY_MARGIN` after the budget).
const LEASE_GRACE: Duration = Duration::from_secs(10);
/// The summary lists at most this many oversize `_document_id`s (the log has them all).
const MAX_REPORTED_OVERSIZE: usize = 100;

/// What to drain: one cursor over one stretch of the audit log.
#[derive(Debug, Clone)]
pub struct DrainPlan {
    /// The cursor's name in the store.
    pub key: String,
    /// Where a cursor with no checkpoint yet starts (epoch ms).
    pub start_ms: i64,
    /// A backfill's end (exclusive, epoch ms); scheduled drains have none.
    pub until_ms: Option<i64>,
    /// How long after its `@timestamp` GitHub may still add an event to the index.
    pub late_arrival_window: Duration,
}

/// How far a backfill has come.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillProgress {
    pub since: String,
    pub until: String,
    /// Everything before this instant of the range has been delivered.
    pub covered_until: String,
    pub percent: f64,
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// GitHub had no next page: everything visible was delivered.
    Drained,
    /// The time budget is nearly spent; the next run goes on from the cursor.
    Budget,
    /// GitHub's rate limit (less the reserve) is spent until `rate_limit_reset`.
    RateLimited,
    /// Another run holds this target; this one did nothing.
    TargetBusy,
    /// A fatal error; `error` says what to fix. Everything acknowledged before it is checkpointed.
    Failed,
}

/// What one run did: printed by the CLI, returned by the Lambda.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: String,
    pub stop_reason: StopReason,
    pub events_forwarded: u64,
    pub pages: u64,
    pub duplicates_skipped: u64,
    pub oversize_events: u64,
    pub oversize_document_ids: Vec<String>,
    /// Every event before this instant has been delivered.
    pub cursor: Option<String>,
    pub newest_event: Option<String>,
    /// Age of the newest event this run delivered.
    pub lag_seconds: Option<f64>,
    pub rate_limit_reset: Option<String>,
    /// Set when the delivered set outgrew its bound and the re-read window had to start later.
    pub late_window_shortened_to: Option<String>,
    /// Only for backfills.
    pub backfill: Option<BackfillProgress>,
    pub elapsed_seconds: f64,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("GitHub: {0}")]
    GitHub(String),
    #[error("intake: {0}")]
    Intake(String),
    #[error("cursor store: {0}")]
    Cursor(#[from] CursorError),
}

/// A fatal error, with the summary of what the run did before it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DrainFailure {
    pub error: DrainError,
    pub summary: Box<Summary>,
}

pub async fn drain(
    source: &dyn AuditLogSource,
    sink: &dyn IntakeSink,
    store: &dyn CursorStore,
    plan: &DrainPlan,
    budget: Budget,
) -> Result<Summary, DrainFailure> {
    let key = plan.key.as_str();
    let mut run = Run::new(key, budget);
    let held_until = SystemTime::now() + budget.remaining() + LEASE_GRACE;
    let outcome = match store.acquire(key, held_until).await {
        Err(CursorError::Busy { .. }) => Ok(StopReason::TargetBusy),
        Err(err) => Err(DrainError::Cursor(err)),
        Ok(stored) => {
            let checkpoint = stored.unwrap_or_else(|| Checkpoint::starting_at(plan.start_ms));
            run.settled_before_ms = Some(checkpoint.settled_before_ms);
            let outcome = if plan.until_ms.is_some_and(|until| checkpoint.settled_before_ms >= until) {
                // A finished backfill: nothing left to read.
                Ok(StopReason::Drained)
            } else {
                run.pump(source, sink, store, checkpoint, plan).await
            };
            if let Err(err) = store.release(key).await {
                tracing::warn!("could not release the hold on {key}: {err}");
            }
            outcome
        }
    };
    run.finish(outcome, plan)
}

fn backfill_progress(since_ms: i64, until_ms: i64, settled_before_ms: i64) -> BackfillProgress {
    let covered = settled_before_ms.clamp(since_ms, until_ms);
    let span = (until_ms - since_ms).max(1) as f64;
    BackfillProgress {
        since: rfc3339_ms(since_ms),
        until: rfc3339_ms(until_ms),
        covered_until: rfc3339_ms(covered),
        percent: ((covered - since_ms) as f64 * 1000.0 / span).round() / 10.0,
        complete: settled_before_ms >= until_ms,
    }
}

struct Run<'a> {
    key: &'a str,
    budget: Budget,
    started: Instant,
    started_ms: i64,
    /// The checkpoint's, as last loaded or saved.
    settled_before_ms: Option<i64>,
    summary: Summary,
}

impl<'a> Run<'a> {
    fn new(key: &'a str, budget: Budget) -> Self {
        let summary = Summary {
            target: key.to_owned(),
            stop_reason: StopReason::Failed,
            events_forwarded: 0,
            pages: 0,
            duplicates_skipped: 0,
            oversize_events: 0,
            oversize_document_ids: Vec::new(),
            cursor: None,
            newest_event: None,
            lag_seconds: None,
            rate_limit_reset: None,
            late_window_shortened_to: None,
            backfill: None,
            elapsed_seconds: 0.0,
            error: None,
        };
        Self { key, budget, started: Instant::now(), started_ms: now_ms(), settled_before_ms: None, summary }
    }

    async fn pump(
        &mut self,
        source: &dyn AuditLogSource,
        sink: &dyn IntakeSink,
        store: &dyn CursorStore,
        mut checkpoint: Checkpoint,
        plan: &DrainPlan,
    ) -> Result<StopReason, DrainError> {
        // Everything older than this was visible to GitHub's search when this run started.
        let settle_horizon = self.started_ms - ms(plan.late_arrival_window);
        let first_page = |checkpoint: &Checkpoint| PageRequest::Created {
            since_ms: checkpoint.read_from_ms(),
            until_ms: plan.until_ms,
        };

        // Continue an unfinished pass, or start a new one just before the settled point.
        let (mut request, mut settled_frozen) = match checkpoint.resume.take() {
            Some(resume) => (PageRequest::Continue(resume.next_page), resume.settled_frozen),
            None => (first_page(&checkpoint), false),
        };
        tracing::info!(target = self.key, from = %rfc3339_seconds(checkpoint.read_from_ms()), resuming = matches!(request, PageRequest::Continue(_)), "draining");
        let mut position = checkpoint.read_from_ms();
        let mut slowest_cycle = Duration::ZERO;
        let mut newest_this_run: Option<i64> = None;
        loop {
            if self.budget.remaining() < slowest_cycle * 2 + MIN_CYCLE_RESERVE {
                return Ok(StopReason::Budget);
            }
            let cycle_started = Instant::now();

            // 1. Fetch one page.
            let page = match source.fetch(&request, &self.budget).await {
                Ok(page) => page,
                Err(SourceError::RateLimited { reset_at }) => {
                    self.summary.rate_limit_reset = reset_at.map(|t| rfc3339_seconds(to_ms(t)));
                    return Ok(StopReason::RateLimited);
                }
                Err(SourceError::OutOfTime) => return Ok(StopReason::Budget),
                Err(SourceError::Fatal(message))
                    if self.summary.pages == 0 && matches!(request, PageRequest::Continue(_)) =>
                {
                    // A continuation saved by an earlier run may have expired: start the pass over.
                    tracing::warn!("could not continue the previous pass ({message}); re-reading from the cursor");
                    request = first_page(&checkpoint);
                    settled_frozen = false;
                    continue;
                }
                Err(SourceError::Fatal(message)) => return Err(DrainError::GitHub(message)),
            };
            self.summary.pages += 1;

            // 2. Skip what was delivered before; set aside what the intake would refuse.
            let mut to_send: Vec<&AuditEvent> = Vec::with_capacity(page.events.len());
            let mut newly_seen: Vec<(i64, &AuditEvent)> = Vec::with_capacity(page.events.len());
            for event in &page.events {
                // An event without a timestamp is placed where the page stands.
                let ts = event.timestamp_ms.unwrap_or(position);
                position = position.max(ts);
                if checkpoint.delivered.contains(ts, event) {
                    self.summary.duplicates_skipped += 1;
                    continue;
                }
                newly_seen.push((ts, event));
                if event.json().len() > sink.max_event_bytes() {
                    self.report_refused(event, "larger than the intake accepts");
                } else {
                    to_send.push(event);
                }
            }

            // 3. Post; nothing below runs unless the intake acknowledged every event.
            let refused = match sink.send(&to_send, &self.budget).await {
                Ok(refused) => refused,
                Err(SinkError::OutOfTime) => return Ok(StopReason::Budget),
                Err(SinkError::Fatal(message)) => return Err(DrainError::Intake(message)),
            };
            for &index in &refused {
                self.report_refused(to_send[index], "refused by the intake as too large (413)");
            }
            self.summary.events_forwarded += (to_send.len() - refused.len()) as u64;

            // 4. Checkpoint: remember what was delivered, and how far everything is.
            for (ts, event) in newly_seen {
                checkpoint.delivered.insert(ts, event);
                newest_this_run = newest_this_run.max(Some(ts));
            }
            checkpoint.newest_event_ms = checkpoint.newest_event_ms.max(newest_this_run);
            if !settled_frozen {
                if page.next.is_some() && position <= settle_horizon {
                    // Old enough that nothing more can appear before it; events at `position`
                    // itself may go on in the next page.
                    checkpoint.settle(position);
                } else {
                    // Past the horizon (or the end): later indexing may still add events from
                    // here on, so the next pass re-reads from here.
                    checkpoint.settle(settle_horizon);
                    settled_frozen = true;
                }
            }
            if let Some(moved) = checkpoint.shrink_to(MAX_DELIVERED_BYTES) {
                tracing::warn!(
                    "more events in the late-arrival window than one checkpoint holds: late events before {} will not be looked for",
                    rfc3339_ms(moved)
                );
                self.summary.late_window_shortened_to = Some(rfc3339_ms(moved));
            }
            checkpoint.resume = page.next.clone().map(|next_page| Resume { next_page, settled_frozen });
            store.save(self.key, &checkpoint).await?;
            self.settled_before_ms = Some(checkpoint.settled_before_ms);
            self.summary.newest_event = checkpoint.newest_event_ms.map(rfc3339_ms);
            self.summary.lag_seconds = newest_this_run.map(|ts| (now_ms() - ts).max(0) as f64 / 1000.0);
            slowest_cycle = slowest_cycle.max(cycle_started.elapsed());
            tracing::debug!(page = self.summary.pages, sent = to_send.len(), settled_before = %rfc3339_ms(checkpoint.settled_before_ms), "page delivered");

            match page.next {
                Some(next) => request = PageRequest::Continue(next),
                None => return Ok(StopReason::Drained),
            }
        }
    }

    /// An event the intake will not take is reported, never silently dropped, and does not
    /// hold up the cursor.
    fn report_refused(&mut self, event: &AuditEvent, why: &str) {
        let id = event.label();
        tracing::warn!(
            document_id = %id,
            bytes = event.json().len(),
            "event not delivered: {why}; it does not block the cursor, fetch it from GitHub by its _document_id"
        );
        self.summary.oversize_events += 1;
        if self.summary.oversize_document_ids.len() < MAX_REPORTED_OVERSIZE {
            self.summary.oversize_document_ids.push(id);
        }
    }

    fn finish(mut self, outcome: Result<StopReason, DrainError>, plan: &DrainPlan) -> Result<Summary, DrainFailure> {
        self.summary.elapsed_seconds = (self.started.elapsed().as_millis() as f64) / 1000.0;
        self.summary.cursor = self.settled_before_ms.map(rfc3339_ms);
        if let (Some(until_ms), Some(settled)) = (plan.until_ms, self.settled_before_ms) {
            self.summary.backfill = Some(backfill_progress(plan.start_ms, until_ms, settled));
        }
        match outcome {
            Ok(reason) => {
                self.summary.stop_reason = reason;
                tracing::info!(
                    stop_reason = ?reason,
                    events_forwarded = self.summary.events_forwarded,
                    pages = self.summary.pages,
                    duplicates_skipped = self.summary.duplicates_skipped,
                    cursor = ?self.summary.cursor,
                    "run finished"
                );
                Ok(self.summary)
            }
            Err(error) => {
                self.summary.error = Some(error.to_string());
                tracing::error!(events_forwarded = self.summary.events_forwarded, "run failed: {error}");
                Err(DrainFailure { error, summary: Box::new(self.summary) })
            }
        }
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
