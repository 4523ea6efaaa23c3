//! What a run reports, in either mode: the figures both modes share ([`Figures`], flattened into
//! the drain's [`crate::drain::Summary`] and push mode's [`crate::push::PushSummary`]), why it
//! stopped, and the one "run finished" log line. The metrics line is [`crate::metrics::emf_line`].

use serde::{Deserialize, Serialize};

use crate::deliver::Delivered;
use crate::metrics::Metric;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every read due was done: everything visible was delivered (push mode: every object given
    /// was tried).
    #[default]
    Drained,
    /// The time budget is nearly spent; the next run goes on from the checkpoint.
    Budget,
    /// GitHub's rate limit (less the reserve) is spent until `rate_limit_reset`, or what is
    /// left is kept for fresh reads and the sweeps wait.
    RateLimited,
    /// Another run holds this target; this one did nothing.
    TargetBusy,
    /// GitHub's pagination went round, and asking anew from the read's position did not get
    /// past it either: the read goes on in the next run, from its position (the summary's
    /// `pagination_loops`, and a warning with the link, say where).
    PaginationLoop,
    /// A fatal error; the summary says what to fix. Everything acknowledged before it is
    /// checkpointed.
    Failed,
}

/// The figures every run reports, whatever it read from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// The cursor: `orgs/NAME`, `enterprises/NAME` (with a suffix for a second credential), or
    /// `s3/BUCKET`; the metrics' `Target`.
    pub target: String,
    #[serde(default)]
    pub stop_reason: StopReason,
    pub events_forwarded: u64,
    /// Kept from the intake by `INCLUDE_ACTIONS` / `EXCLUDE_ACTIONS`.
    #[serde(default)]
    pub events_filtered: u64,
    pub duplicates_skipped: u64,
    pub oversize_events: u64,
    /// Events the intake took in a batch without acknowledging them (refused inside it); not
    /// counted in `events_forwarded`, each batch logged with its `_document_id` range.
    pub intake_unacknowledged: u64,
    /// The newest `@timestamp` ever delivered.
    pub newest_event: Option<String>,
    /// How far behind the connector stands (pull: now less what the fresh read has read up to;
    /// push: now less the newest event forwarded).
    pub lag_seconds: Option<f64>,
    pub elapsed_seconds: f64,
}

impl Figures {
    pub fn new(target: &str, stop_reason: StopReason) -> Self {
        Self { target: target.to_owned(), stop_reason, ..Self::default() }
    }

    /// Counts what the intake answered for one batch.
    pub fn count(&mut self, delivered: &Delivered) {
        self.events_forwarded += delivered.acknowledged;
        self.intake_unacknowledged += delivered.unacknowledged;
        self.events_filtered += delivered.filtered;
    }

    /// Adds a later run's counts; its target, stop reason, newest event and lag are the
    /// current ones.
    pub fn absorb(&mut self, later: Figures) {
        self.events_forwarded += later.events_forwarded;
        self.events_filtered += later.events_filtered;
        self.duplicates_skipped += later.duplicates_skipped;
        self.oversize_events += later.oversize_events;
        self.intake_unacknowledged += later.intake_unacknowledged;
        self.elapsed_seconds += later.elapsed_seconds;
        self.target = later.target;
        self.stop_reason = later.stop_reason;
        self.newest_event = later.newest_event.or(self.newest_event.take());
        self.lag_seconds = later.lag_seconds.or(self.lag_seconds);
    }
}

/// A run's summary, as the log line and the metrics line see it.
pub trait RunReport {
    fn figures(&self) -> &Figures;
    /// The metrics only this mode has, beside those of [`Figures`].
    fn mode_metrics(&self) -> Vec<Metric>;
    /// What only this mode did, in a few words, for the log line.
    fn mode_detail(&self) -> String;
}

/// The log line that closes a run, the same shape in both modes.
pub fn log_finished(report: &dyn RunReport) {
    let f = report.figures();
    tracing::info!(
        target = %f.target,
        stop_reason = ?f.stop_reason,
        events_forwarded = f.events_forwarded,
        events_filtered = f.events_filtered,
        duplicates_skipped = f.duplicates_skipped,
        oversize_events = f.oversize_events,
        intake_unacknowledged = f.intake_unacknowledged,
        newest_event = f.newest_event.as_deref(),
        lag_seconds = f.lag_seconds,
        elapsed_seconds = f.elapsed_seconds,
        detail = %report.mode_detail(),
        "run finished"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_run_adds_its_counts_and_brings_the_current_state() {
        let mut total = Figures {
            events_forwarded: 5,
            newest_event: Some("a".into()),
            ..Figures::new("s3/b", StopReason::Drained)
        };
        total.absorb(Figures {
            events_forwarded: 7,
            duplicates_skipped: 2,
            lag_seconds: Some(1.5),
            ..Figures::new("s3/b", StopReason::Budget)
        });
        assert_eq!((total.events_forwarded, total.duplicates_skipped), (12, 2));
        assert_eq!(
            (total.stop_reason, total.newest_event.as_deref(), total.lag_seconds),
            (StopReason::Budget, Some("a"), Some(1.5))
        );
    }
}
