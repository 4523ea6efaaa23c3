//! What one drain reports: its summary, the metrics only pull mode has, and a backfill's progress.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::DrainPlan;
use crate::checkpoint::Positions;
use crate::metrics::Metric;
use crate::ports::CursorState;
use crate::summary::{Figures, RunReport, StopReason};
use crate::timefmt::rfc3339_ms;

/// How far a backfill has come.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillProgress {
    pub since: String,
    pub until: String,
    /// Everything before this instant of the range has been delivered.
    pub covered_until: String,
    pub percent: f64,
    pub complete: bool,
}

/// Where a backfill stands, read from its cursor without taking it: what the function answers
/// to `{"backfill": …, "status": true}`, and `backfill --on-lambda` follows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillStatus {
    pub cursor: String,
    #[serde(flatten)]
    pub progress: BackfillProgress,
    /// Acknowledged by the intake so far, all runs of this backfill together.
    pub events_forwarded: u64,
    /// A run works on it now.
    pub running: bool,
}

impl BackfillStatus {
    pub fn of(plan: &DrainPlan, state: &CursorState) -> Self {
        let checkpoint = state.checkpoint.as_ref();
        let covered_ms = checkpoint.map_or(plan.start_ms, |c| c.positions.fresh_read_to_ms);
        Self {
            cursor: plan.key.clone(),
            progress: backfill_progress(plan.start_ms, plan.until_ms.unwrap_or(plan.start_ms), covered_ms),
            events_forwarded: checkpoint.map_or(0, |c| c.events_forwarded),
            running: state.held,
        }
    }
}

/// What one run did: printed by the CLI, returned by the Lambda.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    #[serde(flatten)]
    pub figures: Figures,
    /// Requests answered with a page, all reads together.
    pub pages: u64,
    pub fresh_pages: u64,
    pub sweep_pages: u64,
    pub deep_sweep_pages: u64,
    pub oversize_document_ids: Vec<String>,
    /// Events GitHub returned outside the time range asked for; not forwarded by that read.
    pub out_of_range_events: u64,
    /// Times GitHub's pagination went round (a link offered again, or a page back before the
    /// read's position); the read then asks anew from its position instead.
    #[serde(default)]
    pub pagination_loops: u64,
    /// The fresh read has read everything before this.
    pub fresh_read_to: Option<String>,
    /// Everything before this was read again once it was `LATE_ARRIVAL_WINDOW` old.
    pub window_swept_to: Option<String>,
    /// Everything before this was read again once it was the first `LATE_SWEEP_AFTER` age old.
    pub deep_swept_to: Option<String>,
    /// Likewise for each further age of `LATE_SWEEP_AFTER`, in order.
    #[serde(default)]
    pub deeper_swept_to: Vec<String>,
    /// How far GitHub's clock is ahead of this host's (negative: behind), by its answers'
    /// `Date` headers: the drain reckons by GitHub's.
    #[serde(default)]
    pub clock_offset_seconds: Option<f64>,
    /// GitHub requests left before `RATE_LIMIT_RESERVE`, as of the last answer.
    pub rate_limit_remaining: Option<u64>,
    pub rate_limit_reset: Option<String>,
    /// The window sweep fell too far behind and was moved here unread: late events before it
    /// are looked for only by the deep sweep.
    pub window_sweep_skipped_until: Option<String>,
    /// The deep sweep fell too far behind and was moved here unread: events indexed very late
    /// before it are not looked for.
    pub deep_sweep_skipped_until: Option<String>,
    /// Only for backfills.
    pub backfill: Option<BackfillProgress>,
    pub error: Option<String>,
}

const STOP_METRICS: [(StopReason, &str); 6] = [
    (StopReason::Drained, "StopDrained"),
    (StopReason::Budget, "StopBudget"),
    (StopReason::RateLimited, "StopRateLimited"),
    (StopReason::TargetBusy, "StopTargetBusy"),
    (StopReason::PaginationLoop, "StopPaginationLoop"),
    (StopReason::Failed, "StopFailed"),
];

impl RunReport for Summary {
    fn figures(&self) -> &Figures {
        &self.figures
    }

    fn mode_metrics(&self) -> Vec<Metric> {
        let mut metrics: Vec<Metric> = vec![("PagesFetched", "Count", json!(self.pages))];
        if let Some(left) = self.rate_limit_remaining {
            metrics.push(("RateLimitRemaining", "Count", json!(left)));
        }
        for (reason, name) in STOP_METRICS {
            metrics.push((name, "Count", json!(u8::from(self.figures.stop_reason == reason))));
        }
        metrics
    }

    fn mode_detail(&self) -> String {
        let rate = self.rate_limit_remaining.map_or(String::new(), |left| format!(", {left} GitHub requests left"));
        format!(
            "{} pages ({} fresh, {} window sweep, {} deep sweep), fresh read to {}{rate}",
            self.pages,
            self.fresh_pages,
            self.sweep_pages,
            self.deep_sweep_pages,
            self.fresh_read_to.as_deref().unwrap_or("-"),
        )
    }
}

impl Summary {
    /// Where the run left the positions, as the summary tells them.
    pub(super) fn report_positions(&mut self, p: &Positions, plan: &DrainPlan, now: i64) {
        let summary = self;
        if plan.until_ms.is_none() {
            summary.figures.lag_seconds = Some((now - p.fresh_read_to_ms).max(0) as f64 / 1000.0);
        }
        summary.figures.newest_event = p.newest_event_ms.map(rfc3339_ms);
        summary.fresh_read_to = Some(rfc3339_ms(p.fresh_read_to_ms));
        if plan.sweeps.is_some() {
            summary.window_swept_to = Some(rfc3339_ms(p.window_swept_to_ms));
        }
        let deep: Vec<String> =
            plan.sweeps.iter().flat_map(|ages| ages.deep_sweeps()).map(|read| rfc3339_ms(p.of(read))).collect();
        summary.deep_swept_to = deep.first().cloned();
        summary.deeper_swept_to = deep.into_iter().skip(1).collect();
        if let Some(until_ms) = plan.until_ms {
            summary.backfill = Some(backfill_progress(plan.start_ms, until_ms, p.fresh_read_to_ms));
        }
    }
}

fn backfill_progress(since_ms: i64, until_ms: i64, covered_ms: i64) -> BackfillProgress {
    let covered = covered_ms.clamp(since_ms, until_ms);
    let span = (until_ms - since_ms).max(1) as f64;
    BackfillProgress {
        since: rfc3339_ms(since_ms),
        until: rfc3339_ms(until_ms),
        covered_until: rfc3339_ms(covered),
        percent: ((covered - since_ms) as f64 * 1000.0 / span).round() / 10.0,
        complete: covered_ms >= until_ms,
    }
}
