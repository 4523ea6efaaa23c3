//! The data path, top to bottom. Each run makes up to three reads of the audit log, in budget
//! priority:
//!
//! 1. **fresh**: from the newest second delivered to the end of what GitHub shows;
//! 2. **window sweep**: each stretch once more when it is `LATE_ARRIVAL_WINDOW` old;
//! 3. **deep sweep**: and once more when it is `LATE_SWEEP_AFTER` old (an indexing stall).
//!
//! Every read goes page by page: fetch → skip what was delivered → post → record and move the
//! positions → save, the last three in [`crate::deliver`], the step push mode shares. The
//! checkpoint only moves after the intake acknowledged a page, so a crash at any instant re-sends
//! at most the page in flight. Re-read events are recognised by
//! `_document_id` in the delivered record and skipped. The decisions live in [`plan`].

mod clock;
pub mod plan;
mod report;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

use crate::budget::Budget;
use crate::checkpoint::{Checkpoint, Pass, Read};
use crate::deliver::{Batch, DeliverError, Floors, Ledger};
use crate::ports::{
    AuditEvent, AuditLogSource, Clock, CursorError, CursorStore, IntakeSink, Page, PageRequest, SinkError, SourceError,
};
use crate::shaping::Shaping;
use crate::summary::{Figures, StopReason, log_finished};
use crate::timefmt::{ceil_to_second, floor_to_second, rfc3339_ms, rfc3339_seconds, to_ms};
use clock::GitHubClock;
pub use plan::SweepAges;
pub use report::{BackfillProgress, BackfillStatus, Summary};

/// A clock further off GitHub's than this is said in a warning.
const CLOCK_WARNING_MS: u64 = 60_000;
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
    /// The sweeps; `None` reads each stretch once (a backfill: its range is history).
    pub sweeps: Option<SweepAges>,
    /// What is sent of what is read.
    pub shaping: Shaping,
}

/// The outside systems one drain talks to.
pub struct Edges<'a> {
    pub source: &'a dyn AuditLogSource,
    pub sink: &'a dyn IntakeSink,
    pub store: &'a dyn CursorStore,
    pub clock: &'a dyn Clock,
    /// Told the run's figures after every page saved (the CLI's progress line).
    pub progress: Option<&'a Progress>,
}

/// Watches a run's figures as it goes.
pub type Progress = dyn Fn(&Summary) + Send + Sync;

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

pub async fn drain(edges: &Edges<'_>, plan: &DrainPlan, budget: Budget) -> Result<Summary, DrainFailure> {
    let key = plan.key.as_str();
    let mut run = Run::new(key, budget);
    let outcome = match edges.store.acquire(key, budget.lease_until()).await {
        Err(CursorError::Busy { .. }) => Ok(StopReason::TargetBusy),
        Err(err) => Err(DrainError::Cursor(err)),
        Ok(stored) => {
            let checkpoint = stored.unwrap_or_else(|| Checkpoint::starting_at(plan.start_ms));
            let mut ledger = Ledger::open(key, edges.store, checkpoint, plan.shaping.clone());
            let outcome = run.pump(edges, &mut ledger, plan).await;
            let (checkpoint, closed) = ledger.close().await;
            run.checkpoint = Some(checkpoint);
            closed_with(outcome, closed)
        }
    };
    run.summary.rate_limit_remaining = edges.source.rate_budget().map(|rate| rate.left);
    run.finish(outcome, plan, edges.clock)
}

/// A run's outcome once the positions its last pages moved are saved: a failed save fails a
/// run that had not failed already.
fn closed_with(
    outcome: Result<StopReason, DrainError>,
    closed: Result<(), CursorError>,
) -> Result<StopReason, DrainError> {
    match (outcome, closed) {
        (Ok(stop), Ok(())) => Ok(stop),
        (Ok(_), Err(err)) => Err(DrainError::Cursor(err)),
        (Err(err), closed) => {
            if let Err(save_err) = closed {
                tracing::warn!("the last pages' positions were not saved: {save_err}");
            }
            Err(err)
        }
    }
}

/// One read's progress through its stretch.
struct Stretch {
    read: Read,
    request: PageRequest,
    /// The first second asked for (GitHub's search has second precision).
    since_ms: i64,
    /// Everything of the stretch before this has been read.
    covered_to_ms: i64,
    /// When the previous page was requested; `None` before the first.
    read_at_ms: Option<i64>,
    until_ms: Option<i64>,
    /// Continues a pass saved by an earlier run.
    resumed: bool,
    /// Pages in a row with no event.
    empty_pages: u32,
    /// GitHub's links this pass has followed (hashed): one offered again means a loop.
    followed: HashSet<u64>,
    /// Set once GitHub's pagination went round in this pass: its links are no longer followed,
    /// each page is asked for anew from the read's position; where the read stood when it last
    /// did so.
    restarted_at_ms: Option<i64>,
}

impl Stretch {
    fn new(read: Read, since_ms: i64, until_ms: Option<i64>) -> Self {
        Self {
            read,
            request: PageRequest::Created { since_ms, until_ms },
            since_ms: floor_to_second(since_ms),
            covered_to_ms: since_ms,
            read_at_ms: None,
            until_ms,
            resumed: false,
            empty_pages: 0,
            followed: HashSet::new(),
            restarted_at_ms: None,
        }
    }

    fn resume(pass: Pass) -> Self {
        Self {
            read: pass.read,
            request: PageRequest::Continue(pass.next_page),
            // A continuation goes on from the last event read, in that event's second.
            since_ms: floor_to_second(pass.covered_to_ms),
            covered_to_ms: pass.covered_to_ms,
            read_at_ms: Some(pass.read_at_ms),
            until_ms: pass.until_ms,
            resumed: true,
            empty_pages: 0,
            followed: HashSet::new(),
            restarted_at_ms: None,
        }
    }

    /// Starts over from where it stands, without GitHub's link.
    fn restart(&mut self) {
        self.since_ms = floor_to_second(self.covered_to_ms);
        self.request = PageRequest::Created { since_ms: self.since_ms, until_ms: self.until_ms };
        self.read_at_ms = None;
        self.resumed = false;
        self.followed.clear();
    }

    /// Whether the page in hand came by one of GitHub's links.
    fn continues(&self) -> bool {
        matches!(self.request, PageRequest::Continue(_))
    }
}

struct Run {
    budget: Budget,
    started: Instant,
    /// As it stood when the run ended.
    checkpoint: Option<Checkpoint>,
    slowest_page: Duration,
    /// GitHub's clock, by which stretches are aged and fresh reads end.
    github_clock: GitHubClock,
    summary: Summary,
}

impl Run {
    fn new(key: &str, budget: Budget) -> Self {
        let summary = Summary { figures: Figures::new(key, StopReason::Failed), ..Summary::default() };
        Self {
            budget,
            started: Instant::now(),
            checkpoint: None,
            slowest_page: Duration::ZERO,
            github_clock: GitHubClock::default(),
            summary,
        }
    }

    /// The three reads in turn, each to the end of its stretch unless the budget stops it.
    async fn pump(
        &mut self,
        edges: &Edges<'_>,
        ledger: &mut Ledger<'_>,
        plan: &DrainPlan,
    ) -> Result<StopReason, DrainError> {
        if plan.until_ms.is_some_and(|until| ledger.checkpoint.positions.fresh_read_to_ms >= until) {
            // A finished backfill: nothing left to read.
            return Ok(StopReason::Drained);
        }
        let reads = plan::reads(plan.sweeps);
        // A pass of a read since turned off would hold the record back for ever.
        ledger.checkpoint.passes.retain(|pass| reads.contains(&pass.read));
        for read in reads {
            if read == Read::WindowSweep {
                // After the fresh read: by then GitHub's answers tell its clock.
                let now = self.now(edges);
                let skipped = plan::skip_lagging_sweeps(&mut ledger.checkpoint.positions, plan.sweeps, now);
                self.report_skipped(skipped);
            }
            let Some(mut stretch) = self.next_stretch(edges, ledger, read, plan).await? else {
                continue;
            };
            tracing::debug!(?read, request = ?stretch.request, "reading");
            if let Some(stop) = self.read(edges, ledger, &mut stretch, plan).await? {
                return Ok(stop);
            }
        }
        Ok(StopReason::Drained)
    }

    /// What `read` reads this run: its unfinished pass, or a new stretch if one is due.
    async fn next_stretch(
        &mut self,
        edges: &Edges<'_>,
        ledger: &mut Ledger<'_>,
        read: Read,
        plan: &DrainPlan,
    ) -> Result<Option<Stretch>, DrainError> {
        if let Some(pass) = ledger.checkpoint.take_pass(read) {
            if let (Read::WindowSweep | Read::DeepSweep(_), Some(until)) = (read, pass.until_ms) {
                // What lies ahead decides how many pages the sweep asks for.
                ledger.ensure_loaded(pass.covered_to_ms, until).await?;
            }
            return Ok(Some(Stretch::resume(pass)));
        }
        let positions = &ledger.checkpoint.positions;
        let Some(ages) = plan.sweeps.filter(|_| read != Read::Fresh) else {
            return Ok(Some(Stretch::new(read, positions.fresh_start_ms(), plan.until_ms)));
        };
        let now = self.now(edges);
        let Some((since, until)) = plan::sweep_bounds(read, positions, ages, now, plan.until_ms) else {
            return Ok(None);
        };
        ledger.ensure_loaded(since, until).await?;
        Ok(Some(Stretch::new(read, since, Some(until))))
    }

    /// Reads one stretch page by page. `None` when it is done; otherwise why the run stops.
    ///
    /// Pipelined: while a page is posted and its checkpoint saved, the next one is already being
    /// fetched (one page ahead at most). Checkpoints stay strictly in order, and a page is only
    /// ever posted after the one before it was saved, so a kill still repeats at most the page
    /// in flight.
    async fn read(
        &mut self,
        edges: &Edges<'_>,
        ledger: &mut Ledger<'_>,
        stretch: &mut Stretch,
        plan: &DrainPlan,
    ) -> Result<Option<StopReason>, DrainError> {
        let mut prefetched: Option<Fetched> = None;
        loop {
            let page_started = Instant::now();
            let (requested_at, page) = match self.take_page(edges, stretch, prefetched.take()).await? {
                Taken::Page(requested_at, page) => (requested_at, page),
                Taken::Again => continue,
                Taken::Stop(stop) => return Ok(Some(stop)),
            };
            let sorted = self.sort_page(edges, ledger, stretch, &page.events).await?;
            let step =
                self.decide(edges.source, ledger, stretch, &page, (sorted.position, sorted.behind), requested_at);
            let delivery =
                Delivery { sorted, read_from: step.read_from, read_to: step.read_to, requested_at, next: step.link };
            let ahead = prefetch(edges, step.after.request(), self.budget);
            let (delivered, ahead) = tokio::join!(self.deliver(edges, ledger, stretch, plan, delivery), ahead);
            if let Some(stop) = delivered? {
                return Ok(Some(stop));
            }
            self.slowest_page = self.slowest_page.max(page_started.elapsed());
            match step.after {
                After::Page(request) => {
                    stretch.request = request;
                    prefetched = ahead;
                }
                After::Stop(stop) => return Ok(Some(stop)),
                After::StartOver => stretch.restart(),
                After::Done => return Ok(None),
                After::GoingRound => {
                    tracing::warn!(
                        read = ?stretch.read,
                        "GitHub answered {} empty pages in a row that still link to a next one; this read goes on in the next run",
                        plan::MAX_EMPTY_PAGES
                    );
                    return Ok(None);
                }
            }
        }
    }

    /// The stretch's next page: the one fetched while the last was delivered, or a new fetch if
    /// the gates allow it. A refusal stops the run, or starts the stretch over without a link.
    async fn take_page(
        &mut self,
        edges: &Edges<'_>,
        stretch: &mut Stretch,
        prefetched: Option<Fetched>,
    ) -> Result<Taken, DrainError> {
        let fetched = match prefetched {
            Some(fetched) => fetched,
            None => match self.gate(edges.source, stretch.read) {
                Some(stop) => return Ok(Taken::Stop(stop)),
                None => fetch(edges, &stretch.request, self.budget).await,
            },
        };
        let refusal = match fetched.answer {
            Ok(page) => {
                if let Some(server_ms) = page.server_time_ms {
                    self.github_clock.observe(server_ms, fetched.answered_at);
                }
                stretch.resumed = false;
                self.count_page(stretch.read);
                // The page holds what GitHub had stamped when it was asked for, by its clock.
                return Ok(Taken::Page(self.github_clock.now_ms(fetched.requested_at), page));
            }
            Err(refusal) => refusal,
        };
        if let SourceError::RateLimited { reset_at } = &refusal {
            self.summary.rate_limit_reset = reset_at.map(|t| rfc3339_seconds(to_ms(t)));
        }
        match plan::after_refusal(&refusal, stretch.resumed) {
            plan::AfterRefusal::Stop(stop) => Ok(Taken::Stop(stop)),
            plan::AfterRefusal::StartOver => {
                tracing::warn!(error = %refusal, "GitHub's link was not followed; reading the stretch again from its position");
                stretch.restart();
                Ok(Taken::Again)
            }
            plan::AfterRefusal::Fail => Err(DrainError::GitHub(refusal.to_string())),
        }
    }

    /// Sorts a page's events: outside the stretch asked for (GitHub misbehaving must not move
    /// a position or forward what was not asked for) and delivered before are skipped; what the
    /// intake would refuse is set aside; the rest is to send.
    async fn sort_page<'p>(
        &mut self,
        edges: &Edges<'_>,
        ledger: &mut Ledger<'_>,
        stretch: &Stretch,
        events: &'p [AuditEvent],
    ) -> Result<Sorted<'p>, DrainError> {
        let asked: Vec<&AuditEvent> = events.iter().filter(|e| self.asked_for(e, stretch)).collect();
        let (low, high) = timestamp_span(&asked, stretch.covered_to_ms);
        ledger.ensure_loaded(floor_to_second(low), high).await?;
        let mut sorted =
            Sorted { position: stretch.covered_to_ms, to_send: Vec::new(), newly_seen: Vec::new(), behind: 0 };
        let behind_ms = plan::behind_before(stretch.continues(), stretch.covered_to_ms);
        for event in asked {
            // An event without a timestamp is placed where the page stands.
            let ts = event.timestamp_ms.unwrap_or(sorted.position);
            if ledger.record.contains(ts, event) {
                self.summary.figures.duplicates_skipped += 1;
                sorted.position = sorted.position.max(ts);
                continue;
            }
            if ts < behind_ms {
                // Back before the read's position, and unknown to the record (which may have
                // forgotten that far back): never sent on GitHub's word; a sweep reads it again.
                sorted.behind += 1;
                continue;
            }
            sorted.position = sorted.position.max(ts);
            sorted.newly_seen.push((ts, event));
            if event.json().len() > edges.sink.max_event_bytes() {
                self.report_oversize(event);
            } else {
                sorted.to_send.push(event);
            }
        }
        Ok(sorted)
    }

    /// How far a page reads (up to `position`, the newest instant on it), whether the read
    /// keeps GitHub's link, and what comes after the page.
    fn decide(
        &mut self,
        source: &dyn AuditLogSource,
        ledger: &Ledger<'_>,
        stretch: &mut Stretch,
        page: &Page,
        (position, behind): (i64, usize),
        requested_at: i64,
    ) -> Step {
        let read_from = stretch.covered_to_ms;
        let read_to = plan::page_reads_to(page.next.is_some(), stretch.until_ms, position, requested_at).max(read_from);
        let sweep_ahead = stretch.until_ms.filter(|_| stretch.read != Read::Fresh).map(|until| plan::SweepAhead {
            known: ledger.record.count_between(read_to, until),
            page_events: page.events.len(),
            page_span_ms: read_to - read_from,
            span_ms: until - read_to,
        });
        let link = page.next.clone().filter(|_| sweep_ahead.is_none_or(plan::sweep_goes_on));
        stretch.empty_pages = plan::empty_pages_in_a_row(stretch.empty_pages, page.events.len());
        let offered_again = link.as_ref().is_some_and(|link| stretch.followed.contains(&link_hash(link)));
        let restarted_at_ms = stretch.restarted_at_ms;
        if offered_again || behind > 0 {
            self.report_loop(stretch, page.next.as_deref(), behind);
        }
        if offered_again || behind > 0 || restarted_at_ms.is_some() {
            // The looping link is never kept, for this run or the next; the next page, if any,
            // is asked for anew from where this one leaves the read.
            stretch.restarted_at_ms = Some(read_to);
            let after = match (&link, plan::linkless_next(restarted_at_ms, read_to, page.events.len())) {
                (None, _) | (Some(_), plan::Linkless::Done) => After::Done,
                (Some(_), plan::Linkless::StartOver) => After::StartOver,
                (Some(_), plan::Linkless::Stop) => After::Stop(StopReason::PaginationLoop),
            };
            return Step { read_from, read_to, link: None, after };
        }
        let after = match &link {
            None => After::Done,
            Some(_) if plan::going_round(stretch.empty_pages) => After::GoingRound,
            Some(link) => match self.gate(source, stretch.read) {
                None => {
                    stretch.followed.insert(link_hash(link));
                    After::Page(PageRequest::Continue(link.clone()))
                }
                Some(stop) => After::Stop(stop),
            },
        };
        Step { read_from, read_to, link, after }
    }

    /// How far this host's clock is from GitHub's: in the summary, and a warning past a minute.
    fn report_clock(&mut self) {
        let Some(offset_ms) = self.github_clock.offset_ms() else { return };
        self.summary.clock_offset_seconds = Some(offset_ms as f64 / 1000.0);
        if offset_ms.unsigned_abs() > CLOCK_WARNING_MS {
            tracing::warn!(
                github_ahead_seconds = offset_ms / 1000,
                "this host's clock is more than a minute off GitHub's (its answers' Date headers): the connector reckons by GitHub's, but fix the host's time (NTP)"
            );
        }
    }

    /// GitHub's pagination went round: said once per detection, with where the link led (its
    /// host and cursor; the token is never in a link).
    fn report_loop(&mut self, stretch: &Stretch, link: Option<&str>, behind: usize) {
        self.summary.pagination_loops += 1;
        tracing::warn!(
            read = ?stretch.read,
            link = %link.map(plan::link_place).unwrap_or_default(),
            events_behind = behind,
            at = %rfc3339_ms(stretch.covered_to_ms),
            "GitHub's pagination went round (a link offered again, or a page back before the read's position): its links are no longer followed; each page is asked for anew from the read's position"
        );
    }

    /// Whether another page may be started: the time budget must fit it, and sweeps leave the
    /// rate budget of a few fresh reads unspent.
    fn gate(&mut self, source: &dyn AuditLogSource, read: Read) -> Option<StopReason> {
        if !plan::page_fits(self.budget.remaining(), self.slowest_page) {
            return Some(StopReason::Budget);
        }
        if read != Read::Fresh
            && let Some(rate) =
                source.rate_budget().filter(|rate| !plan::sweeps_may_spend(rate.left, self.summary.fresh_pages))
        {
            self.summary.rate_limit_reset = rate.resets_at.map(|t| rfc3339_seconds(to_ms(t)));
            tracing::warn!(
                requests_left = rate.left,
                resets_at = self.summary.rate_limit_reset.as_deref(),
                "the GitHub rate budget left is kept for fresh reads; the sweeps wait for the reset"
            );
            return Some(StopReason::RateLimited);
        }
        None
    }

    /// Delivers a page ([`Ledger::deliver`]): its positions move, and its pass is kept for the
    /// next page or the next run, only once the intake answered for its events.
    async fn deliver(
        &mut self,
        edges: &Edges<'_>,
        ledger: &mut Ledger<'_>,
        stretch: &mut Stretch,
        plan: &DrainPlan,
        delivery: Delivery<'_>,
    ) -> Result<Option<StopReason>, DrainError> {
        let Delivery { sorted, read_from, read_to, requested_at, next } = delivery;
        let batch = Batch { send: &sorted.to_send, seen: sorted.newly_seen };
        let move_positions = |checkpoint: &mut Checkpoint| {
            let read_at = stretch.read_at_ms.map_or(requested_at, |earlier| earlier.min(requested_at));
            plan::advance(&mut checkpoint.positions, plan.sweeps, read_from, read_to, read_at);
            stretch.covered_to_ms = read_to;
            stretch.read_at_ms = Some(requested_at);
            let pass = next.map(|next_page| Pass {
                read: stretch.read,
                next_page,
                covered_to_ms: read_to,
                read_at_ms: requested_at,
                until_ms: stretch.until_ms,
            });
            checkpoint.set_pass(stretch.read, pass);
            let floor = plan::record_floor(&checkpoint.positions, plan.sweeps, &checkpoint.passes);
            Floors { prune_before_ms: floor, unload_before_ms: read_to }
        };
        let delivered = match ledger.deliver(edges.sink, &self.budget, batch, move_positions).await {
            Ok(delivered) => delivered,
            Err(DeliverError::Sink(SinkError::OutOfTime)) => return Ok(Some(StopReason::Budget)),
            Err(DeliverError::Sink(SinkError::Fatal(message))) => return Err(DrainError::Intake(message)),
            Err(DeliverError::Store(err)) => return Err(DrainError::Cursor(err)),
        };
        self.summary.figures.count(&delivered);
        tracing::debug!(read = ?stretch.read, sent = sorted.to_send.len(), read_to = %rfc3339_ms(read_to), "page delivered");
        if let Some(progress) = edges.progress {
            progress(&self.summary);
        }
        Ok(None)
    }

    /// Now, by GitHub's clock as far as its answers told it.
    fn now(&self, edges: &Edges<'_>) -> i64 {
        self.github_clock.now_ms(edges.clock.now_ms())
    }

    fn count_page(&mut self, read: Read) {
        self.summary.pages += 1;
        match read {
            Read::Fresh => self.summary.fresh_pages += 1,
            Read::WindowSweep => self.summary.sweep_pages += 1,
            Read::DeepSweep(_) => self.summary.deep_sweep_pages += 1,
        }
    }

    fn report_skipped(&mut self, skipped: plan::Skipped) {
        if let Some(until) = skipped.window_until_ms {
            tracing::warn!(
                until = %rfc3339_ms(until),
                "the window sweep fell too far behind and skips ahead unread: events indexed late before this are looked for only by the deep sweep"
            );
            self.summary.window_sweep_skipped_until = Some(rfc3339_ms(until));
        }
        for (n, until) in skipped.deep_until_ms.into_iter().enumerate() {
            let Some(until) = until else { continue };
            tracing::warn!(
                sweep = %Read::DeepSweep(n as u8).name(),
                until = %rfc3339_ms(until),
                "a deep sweep fell further behind than its age and skips ahead unread: events indexed that late before this are looked for only by a deeper sweep, if any; give the connector more rate budget or time"
            );
            // The deepest sweep's skip is where events can go unlooked-for.
            self.summary.deep_sweep_skipped_until = Some(rfc3339_ms(until));
        }
    }

    /// Whether an event lies in what the stretch asked GitHub for; one that does not is
    /// counted and logged, not forwarded.
    fn asked_for(&mut self, event: &AuditEvent, stretch: &Stretch) -> bool {
        let Some(ts) = event.timestamp_ms else { return true };
        let until = stretch.until_ms.map(ceil_to_second);
        if ts >= stretch.since_ms && until.is_none_or(|until| ts < until) {
            return true;
        }
        tracing::warn!(
            document_id = %event.label(),
            timestamp = %rfc3339_ms(ts),
            read = ?stretch.read,
            "GitHub returned an event outside the time range asked for; it is not forwarded by this read"
        );
        self.summary.out_of_range_events += 1;
        false
    }

    /// An event the intake will not take is reported, never silently dropped, and does not
    /// hold up the reads.
    fn report_oversize(&mut self, event: &AuditEvent) {
        let id = event.label();
        tracing::warn!(
            document_id = %id,
            bytes = event.json().len(),
            "event not delivered: larger than the intake accepts; it does not block the cursor, fetch it from GitHub by its _document_id"
        );
        self.summary.figures.oversize_events += 1;
        if self.summary.oversize_document_ids.len() < MAX_REPORTED_OVERSIZE {
            self.summary.oversize_document_ids.push(id);
        }
    }

    fn finish(
        mut self,
        outcome: Result<StopReason, DrainError>,
        plan: &DrainPlan,
        clock: &dyn Clock,
    ) -> Result<Summary, DrainFailure> {
        self.summary.figures.elapsed_seconds = (self.started.elapsed().as_millis() as f64) / 1000.0;
        let now = self.github_clock.now_ms(clock.now_ms());
        if let Some(positions) = self.checkpoint.as_ref().map(|checkpoint| checkpoint.positions) {
            self.summary.report_positions(&positions, plan, now);
        }
        self.report_clock();
        match outcome {
            Ok(reason) => {
                self.summary.figures.stop_reason = reason;
                log_finished(&self.summary);
                Ok(self.summary)
            }
            Err(error) => {
                self.summary.error = Some(error.to_string());
                log_finished(&self.summary);
                tracing::error!(error = %error, "run failed");
                Err(DrainFailure { error, summary: Box::new(self.summary) })
            }
        }
    }
}

/// A page's answer, with when it was asked for and when it came, by this host's clock.
struct Fetched {
    requested_at: i64,
    answered_at: i64,
    answer: Result<Page, SourceError>,
}

/// Asks for a page, noting when.
async fn fetch(edges: &Edges<'_>, request: &PageRequest, budget: Budget) -> Fetched {
    let requested_at = edges.clock.now_ms();
    let answer = edges.source.fetch(request, &budget).await;
    Fetched { requested_at, answered_at: edges.clock.now_ms(), answer }
}

/// A stretch's next page, or why there is none now.
enum Taken {
    Page(i64, Page),
    /// GitHub's link was dropped: the stretch starts over from its position.
    Again,
    Stop(StopReason),
}

/// A page's events, sorted: those to send, those seen for the first time (sent or set aside),
/// and the newest instant on the page.
struct Sorted<'p> {
    to_send: Vec<&'p AuditEvent>,
    newly_seen: Vec<(i64, &'p AuditEvent)>,
    position: i64,
    /// Events back before the read's position that the record does not hold: not sent.
    behind: usize,
}

/// What a page reads, and what follows it.
struct Step {
    /// The stretch this page read, `[read_from, read_to)`.
    read_from: i64,
    read_to: i64,
    /// GitHub's link to the page after, kept in the pass if the read goes on (now or next run).
    link: Option<String>,
    after: After,
}

/// What follows a page.
enum After {
    /// The next page, fetched while this one is delivered.
    Page(PageRequest),
    /// The read goes on in a later run, from its pass.
    Stop(StopReason),
    GoingRound,
    /// The next page is asked for anew from the read's position (GitHub's links went round).
    StartOver,
    /// The stretch is read.
    Done,
}

impl After {
    fn request(&self) -> Option<&PageRequest> {
        match self {
            After::Page(request) => Some(request),
            _ => None,
        }
    }
}

/// What delivering one page takes.
struct Delivery<'p> {
    sorted: Sorted<'p>,
    read_from: i64,
    read_to: i64,
    requested_at: i64,
    next: Option<String>,
}

/// A link's identity: the same link with its query in another order is the same link.
fn link_hash(link: &str) -> u64 {
    xxh3_64(plan::link_identity(link).as_bytes())
}

/// Fetches the page after while the current one is delivered.
async fn prefetch(edges: &Edges<'_>, request: Option<&PageRequest>, budget: Budget) -> Option<Fetched> {
    match request {
        Some(request) => Some(fetch(edges, request, budget).await),
        None => None,
    }
}

/// The oldest and newest `@timestamp` of some events (`fallback` without any).
fn timestamp_span(events: &[&AuditEvent], fallback: i64) -> (i64, i64) {
    let stamps = events.iter().filter_map(|e| e.timestamp_ms);
    let low = stamps.clone().min().unwrap_or(fallback).min(fallback);
    let high = stamps.max().unwrap_or(fallback).max(fallback);
    (low, high)
}
