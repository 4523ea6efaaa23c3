//! The drain's decisions, as pure functions of positions, ages and time: which stretch each
//! read takes next, how far a page reads and whether the read goes on after it, when a read
//! stops (time, rate budget, empty pages, a refused link), how far a read moves every position,
//! when a lagging sweep is given up, and what the delivered record may forget. No I/O, so
//! every rule has a unit test.

use std::time::Duration;

use crate::checkpoint::{MAX_DEEP_SWEEPS, Pass, Positions, Read};
use crate::ports::SourceError;
use crate::summary::StopReason;
use crate::timefmt::floor_to_second;

/// GitHub's largest page, which the source asks for.
pub const PAGE_SIZE: usize = 100;
/// A sweep's stretch spans at least this fraction of its age.
const SWEEP_BATCH_FRACTION: i64 = 10;
/// A window sweep that falls this far behind, with the deep sweep off, is given up.
const WINDOW_LAG_LIMIT_WITHOUT_DEEP_SWEEP_MS: i64 = 3_600_000;

/// Never start a page with less than this left (plus twice the slowest page so far).
const MIN_CYCLE_RESERVE: Duration = Duration::from_millis(500);
/// Sweeps leave the rate budget of this many fresh reads (as long as this run's) unspent, so
/// that a starved token keeps new events flowing and sweeps wait for the reset.
const FRESH_READS_KEPT_FROM_SWEEPS: u64 = 3;
/// Empty pages in a row that still link to a next one, before a read waits for the next run.
pub const MAX_EMPTY_PAGES: u32 = 3;

/// How old a stretch must be before each sweep reads it again (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepAges {
    pub window_ms: i64,
    /// The deep sweeps' ages, ascending; `None` past the last (all `None`: no deep sweep).
    pub deep_ms: [Option<i64>; MAX_DEEP_SWEEPS],
}

impl SweepAges {
    /// `deep` in any order; repeats and those past [`MAX_DEEP_SWEEPS`] are left out.
    pub fn new(window_ms: i64, deep: &[i64]) -> Self {
        let mut sorted = deep.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut deep_ms = [None; MAX_DEEP_SWEEPS];
        for (slot, age) in deep_ms.iter_mut().zip(sorted) {
            *slot = Some(age);
        }
        Self { window_ms, deep_ms }
    }

    /// How old a stretch must be for `read`; `None` for the fresh read and deep sweeps not set.
    pub fn age(&self, read: Read) -> Option<i64> {
        match read {
            Read::Fresh => None,
            Read::WindowSweep => Some(self.window_ms),
            Read::DeepSweep(n) => self.deep_ms.get(usize::from(n)).copied().flatten(),
        }
    }

    /// The deep sweeps set, first to last.
    pub fn deep_sweeps(&self) -> impl Iterator<Item = Read> + '_ {
        (0..MAX_DEEP_SWEEPS as u8).map(Read::DeepSweep).filter(|read| self.age(*read).is_some())
    }
}

/// The reads a drain makes, in budget priority; `None` (a backfill) reads each stretch once.
pub fn reads(sweeps: Option<SweepAges>) -> Vec<Read> {
    match sweeps {
        None => vec![Read::Fresh],
        Some(ages) => [Read::Fresh, Read::WindowSweep].into_iter().chain(ages.deep_sweeps()).collect(),
    }
}

/// A stretch `[from_ms, to_ms)` was read as GitHub showed it at `read_at_ms`. Each position
/// that the stretch starts at or before moves up to its end, or to the newest instant that was
/// already old enough for that read when it was read: a first run or a backfill over old
/// history thus counts as swept, and reads each event once. A deep sweep not set stands with
/// the one before it.
pub fn advance(positions: &mut Positions, sweeps: Option<SweepAges>, from_ms: i64, to_ms: i64, read_at_ms: i64) {
    let reach = |position: &mut i64, age_ms: i64| {
        if from_ms <= *position {
            *position = (*position).max(to_ms.min(read_at_ms.saturating_sub(age_ms)));
        }
    };
    reach(&mut positions.fresh_read_to_ms, 0);
    let Some(ages) = sweeps else {
        positions.window_swept_to_ms = positions.fresh_read_to_ms;
        positions.deep_swept_to_ms = [positions.fresh_read_to_ms; MAX_DEEP_SWEEPS];
        return;
    };
    reach(&mut positions.window_swept_to_ms, ages.window_ms);
    let mut before = positions.window_swept_to_ms;
    for (position, age) in positions.deep_swept_to_ms.iter_mut().zip(ages.deep_ms) {
        match age {
            Some(age) => reach(position, age),
            None => *position = before,
        }
        before = *position;
    }
}

/// Where lagging sweeps were moved to without being read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub window_until_ms: Option<i64>,
    pub deep_until_ms: [Option<i64>; MAX_DEEP_SWEEPS],
}

/// A sweep that falls further behind its due point than it can usefully catch up (a deep
/// sweep: its age again; the window sweep: the larger of its age and the first deep one's, or
/// an hour with no deep sweep) jumps ahead, so that neither the work owed nor the record grows
/// without bound. The caller reports it: this is where events can go unlooked-for.
pub fn skip_lagging_sweeps(positions: &mut Positions, sweeps: Option<SweepAges>, now_ms: i64) -> Skipped {
    let Some(ages) = sweeps else { return Skipped::default() };
    let mut skipped = Skipped::default();
    let window_limit = ages.window_ms.max(ages.deep_ms[0].unwrap_or(WINDOW_LAG_LIMIT_WITHOUT_DEEP_SWEEP_MS));
    let window_target = (now_ms - ages.window_ms - window_limit).min(positions.fresh_read_to_ms);
    if positions.window_swept_to_ms < window_target {
        positions.window_swept_to_ms = window_target;
        skipped.window_until_ms = Some(window_target);
    }
    let mut before = positions.window_swept_to_ms;
    for (n, age) in ages.deep_ms.into_iter().enumerate() {
        let position = &mut positions.deep_swept_to_ms[n];
        match age {
            Some(age) => {
                let target = (now_ms - 2 * age).min(before);
                if *position < target {
                    *position = target;
                    skipped.deep_until_ms[n] = Some(target);
                }
            }
            None => *position = before,
        }
        before = *position;
    }
    skipped
}

/// The stretch a sweep reads now, `[since, until)` in whole seconds, or `None` when nothing of
/// it is due. It reaches back to the second holding the sweep's position, and forward to what
/// is old enough, was read by the read before it, and is inside `limit_ms`. A sweep waits until
/// its stretch spans a tenth of its age (or reaches the limit), so that the sliver a long run
/// leaves behind costs no request of its own: a window sweep is at most a tenth late.
pub fn sweep_bounds(
    read: Read,
    positions: &Positions,
    ages: SweepAges,
    now_ms: i64,
    limit_ms: Option<i64>,
) -> Option<(i64, i64)> {
    let age = ages.age(read)?;
    let (position, read_before) = (positions.of(read), positions.of(Positions::before(read)));
    let due = read_before.min(now_ms - age);
    let until = floor_to_second(limit_ms.map_or(due, |limit| due.min(limit)));
    let wide_enough = until - position >= age / SWEEP_BATCH_FRACTION || limit_ms.is_some_and(|limit| until >= limit);
    (until > position && wide_enough).then_some((floor_to_second(position), until))
}

/// What lies ahead of a sweep after a page.
#[derive(Debug, Clone, Copy)]
pub struct SweepAhead {
    /// Delivered events the rest of the stretch holds.
    pub known: usize,
    /// The page just read: how many events, over how long a stretch (ms).
    pub page_events: usize,
    pub page_span_ms: i64,
    /// The rest of the stretch (ms).
    pub span_ms: i64,
}

/// Whether a sweep asks for its next page. A request answered with a part-filled page is
/// spent on the newest end of the fresh read; a sweep need not spend one: it goes on while a
/// full page is due ahead, and leaves the rest (under a page) to its next run, where it heads a
/// full page. What is due is what the record knows lies ahead, or, when many events are
/// indexed late and the record knows few of them, what the last page's density predicts.
pub fn sweep_goes_on(ahead: SweepAhead) -> bool {
    let predicted = match usize::try_from(ahead.page_span_ms) {
        Ok(0) | Err(_) => usize::MAX,
        Ok(page_span) => {
            let span = usize::try_from(ahead.span_ms.max(0)).unwrap_or(usize::MAX);
            ahead.page_events.saturating_mul(span) / page_span
        }
    };
    ahead.known.max(predicted) >= PAGE_SIZE
}

/// Whether the time left fits another page: twice the slowest so far, and a reserve.
pub fn page_fits(remaining: Duration, slowest_page: Duration) -> bool {
    remaining >= slowest_page * 2 + MIN_CYCLE_RESERVE
}

/// Whether the sweeps may spend from `requests_left`: they leave what a few fresh reads as
/// long as this run's (`fresh_pages`) would need.
pub fn sweeps_may_spend(requests_left: u64, fresh_pages: u64) -> bool {
    requests_left >= FRESH_READS_KEPT_FROM_SWEEPS * fresh_pages.max(1)
}

/// How far a page reads: with a next page, up to the newest instant on it (more events may
/// share it); without, the whole stretch as GitHub showed it (to its end, or to when a fresh
/// read asked).
pub fn page_reads_to(has_next: bool, until_ms: Option<i64>, newest_on_page_ms: i64, requested_at_ms: i64) -> i64 {
    match (has_next, until_ms) {
        (true, _) => newest_on_page_ms,
        (false, Some(until)) => until,
        (false, None) => requested_at_ms,
    }
}

/// Empty pages in a row, after a page holding `page_events`.
pub fn empty_pages_in_a_row(before: u32, page_events: usize) -> u32 {
    if page_events == 0 { before.saturating_add(1) } else { 0 }
}

/// A page with nothing on it but a next link moves nothing: after a few in a row the read
/// waits for the next run (keeping GitHub's link) instead of spending the rate budget.
pub fn going_round(empty_pages: u32) -> bool {
    empty_pages >= MAX_EMPTY_PAGES
}

/// On a page GitHub reached by a link, events before this are back before the read's
/// position (older than the second it stands in): a continuation never legitimately holds one
/// the record does not know. A page asked for by time has no such bound.
pub fn behind_before(continues: bool, covered_to_ms: i64) -> i64 {
    if continues { floor_to_second(covered_to_ms) } else { i64::MIN }
}

/// What a read that no longer follows GitHub's links does after a page that links on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkless {
    /// Ask anew from the read's position.
    StartOver,
    /// Nothing past the position: a page short of full brought nothing new.
    Done,
    /// A full page that got no further: a fresh query does not escape the loop either.
    Stop,
}

/// A linkless read asks anew only while each page gets it further than where it last started
/// over; a page that does not is the end of the log when it is short of full (GitHub's link
/// was all there was), else a loop a fresh query cannot escape: the read stops for this run.
pub fn linkless_next(restarted_at_ms: Option<i64>, read_to_ms: i64, page_events: usize) -> Linkless {
    match restarted_at_ms {
        Some(at) if read_to_ms <= at && page_events < PAGE_SIZE => Linkless::Done,
        Some(at) if read_to_ms <= at => Linkless::Stop,
        _ => Linkless::StartOver,
    }
}

/// What makes two links the same one: the address and its query pairs in any order.
pub fn link_identity(link: &str) -> String {
    let Ok(mut url) = url::Url::parse(link) else { return link.to_owned() };
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    pairs.sort();
    url.set_query(None);
    let query: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{url}?{}", query.join("&"))
}

/// A part of a link safe to log: its host and its cursor (`after`, or GHES's `page`).
pub fn link_place(link: &str) -> String {
    let Ok(url) = url::Url::parse(link) else { return "(a link that does not parse)".to_owned() };
    let cursor = url.query_pairs().find(|(k, _)| k == "after" || k == "page").map(|(k, v)| format!(" {k}={v}"));
    format!("{}{}", url.host_str().unwrap_or("(no host)"), cursor.unwrap_or_default())
}

/// What a read does when GitHub gave no page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRefusal {
    Stop(StopReason),
    /// The link is dropped and the stretch read again from its position.
    StartOver,
    Fail,
}

/// A refused link, or a failing link an earlier run saved (it may have expired), starts the
/// stretch over; the rate limit and the time budget stop the run; anything else fails it.
pub fn after_refusal(refusal: &SourceError, resumed: bool) -> AfterRefusal {
    match refusal {
        SourceError::RateLimited { .. } => AfterRefusal::Stop(StopReason::RateLimited),
        SourceError::OutOfTime => AfterRefusal::Stop(StopReason::Budget),
        SourceError::LinkRefused(_) => AfterRefusal::StartOver,
        SourceError::Fatal(_) if resumed => AfterRefusal::StartOver,
        SourceError::Fatal(_) => AfterRefusal::Fail,
    }
}

/// No read will start before this: the record may forget the minutes before it.
pub fn record_floor(positions: &Positions, sweeps: Option<SweepAges>, passes: &[Pass]) -> i64 {
    let mut floor = positions.fresh_start_ms();
    if sweeps.is_some() {
        floor = positions.deep_swept_to_ms.iter().fold(floor.min(positions.window_swept_to_ms), |f, p| f.min(*p));
    }
    for pass in passes {
        floor = floor.min(pass.covered_to_ms);
    }
    floor_to_second(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 300_000;
    const D: i64 = 3_600_000;
    const AGES: SweepAges = SweepAges { window_ms: W, deep_ms: [Some(D), None, None] };
    const T0: i64 = 1_700_000_000_000;

    fn at(ms: i64) -> Positions {
        Positions::starting_at(ms)
    }

    #[test]
    fn a_read_of_old_history_counts_for_every_sweep_it_is_old_enough_for() {
        let mut p = at(T0);
        // A first run reads two hours of backlog in one page.
        advance(&mut p, Some(AGES), T0, T0 + 7_200_000, T0 + 7_200_000);
        assert_eq!(p.fresh_read_to_ms, T0 + 7_200_000);
        assert_eq!(p.window_swept_to_ms, T0 + 7_200_000 - W);
        assert_eq!(p.deep_swept_to_ms, [T0 + 7_200_000 - D; MAX_DEEP_SWEEPS], "the deep sweeps not set stand with it");
    }

    #[test]
    fn a_read_starting_after_a_position_does_not_move_it() {
        let mut p = at(T0);
        p.fresh_read_to_ms = T0 + 600_000;
        advance(&mut p, Some(AGES), T0 + 590_000, T0 + 700_000, T0 + 700_000);
        assert_eq!(p.fresh_read_to_ms, T0 + 700_000);
        assert_eq!(p.window_swept_to_ms, T0, "the stretch before 590 s was never swept");
    }

    #[test]
    fn a_sweep_moves_its_own_position_and_a_backfill_moves_all_three() {
        let mut p = at(T0);
        p.fresh_read_to_ms = T0 + 900_000;
        advance(&mut p, Some(AGES), T0, T0 + 60_000, T0 + 60_000 + W);
        assert_eq!(p.window_swept_to_ms, T0 + 60_000);
        assert_eq!(p.deep_swept_to_ms[0], T0, "not an hour old yet");

        let mut b = at(T0);
        advance(&mut b, None, T0, T0 + 1_000, T0 + 2_000);
        assert_eq!((b.window_swept_to_ms, b.deep_swept_to_ms), (T0 + 1_000, [T0 + 1_000; MAX_DEEP_SWEEPS]));
    }

    #[test]
    fn sweeps_read_only_what_is_old_enough_and_already_read_by_the_read_before() {
        let mut p = at(T0);
        p.fresh_read_to_ms = T0 + 900_500;
        p.window_swept_to_ms = T0 + 400_500;
        let now = T0 + 900_000;
        assert_eq!(
            sweep_bounds(Read::WindowSweep, &p, AGES, now, None),
            Some((T0 + 400_000, T0 + 600_000)),
            "from the second holding the position to `now - window`"
        );
        assert_eq!(sweep_bounds(Read::DeepSweep(0), &p, AGES, now, None), None, "nothing is an hour old");
        let later = T0 + D + 500_000;
        assert_eq!(
            sweep_bounds(Read::DeepSweep(0), &p, AGES, later, None),
            Some((T0, T0 + 400_000)),
            "up to the window sweep"
        );
        assert_eq!(
            sweep_bounds(Read::WindowSweep, &p, AGES, now, Some(T0 + 500_000)),
            Some((T0 + 400_000, T0 + 500_000))
        );
        p.window_swept_to_ms = T0 + 600_000;
        assert_eq!(sweep_bounds(Read::WindowSweep, &p, AGES, now, None), None, "caught up");
        p.window_swept_to_ms = T0 + 571_000;
        assert_eq!(sweep_bounds(Read::WindowSweep, &p, AGES, now, None), None, "29 s: under a tenth of the window");
        p.window_swept_to_ms = T0 + 570_000;
        assert_eq!(sweep_bounds(Read::WindowSweep, &p, AGES, now, None), Some((T0 + 570_000, T0 + 600_000)));
        let off = SweepAges { deep_ms: [None; MAX_DEEP_SWEEPS], ..AGES };
        assert_eq!(sweep_bounds(Read::DeepSweep(0), &p, off, later, None), None);
    }

    #[test]
    fn a_sweep_asks_for_another_page_only_while_a_full_page_is_due() {
        let ahead = |known, page_span_ms, span_ms| SweepAhead { known, page_events: PAGE_SIZE, page_span_ms, span_ms };
        assert!(sweep_goes_on(ahead(PAGE_SIZE, 60_000, 1_000)), "the record knows a page lies ahead");
        assert!(!sweep_goes_on(ahead(PAGE_SIZE - 1, 60_000, 30_000)), "under a page: left to the next run");
        assert!(sweep_goes_on(ahead(10, 60_000, 60_000)), "the last page's density predicts a full one");
        assert!(!sweep_goes_on(ahead(10, 60_000, 59_000)));
        assert!(sweep_goes_on(ahead(0, 0, 1)), "a page within one millisecond predicts nothing: go on");
    }

    #[test]
    fn a_deep_sweep_behind_by_its_age_again_is_skipped_and_never_passes_the_window_sweep() {
        let now = T0 + 10 * D;
        let mut p = at(T0);
        p.fresh_read_to_ms = now;
        p.window_swept_to_ms = now - W;
        let skipped = skip_lagging_sweeps(&mut p, Some(AGES), now);
        assert_eq!(skipped, Skipped { window_until_ms: None, deep_until_ms: [Some(now - 2 * D), None, None] });
        assert_eq!(p.deep_swept_to_ms, [now - 2 * D; MAX_DEEP_SWEEPS]);

        // Just inside the limit: kept.
        let mut q = at(now - 2 * D + 1);
        q.fresh_read_to_ms = now;
        q.window_swept_to_ms = now - W;
        assert_eq!(skip_lagging_sweeps(&mut q, Some(AGES), now), Skipped::default());
    }

    #[test]
    fn a_backlog_read_by_the_fresh_read_is_never_skipped() {
        let now = T0 + 48 * D;
        let mut p = at(T0);
        assert_eq!(skip_lagging_sweeps(&mut p, Some(AGES), now), Skipped::default(), "all three stand together");
        assert_eq!(p, at(T0));
    }

    #[test]
    fn a_window_sweep_far_behind_skips_and_pulls_the_deep_sweep_along() {
        let now = T0 + 10 * D;
        let mut p = at(T0);
        p.fresh_read_to_ms = now;
        let skipped = skip_lagging_sweeps(&mut p, Some(AGES), now);
        assert_eq!(skipped.window_until_ms, Some(now - W - D));
        assert_eq!(skipped.deep_until_ms[0], Some(now - 2 * D));
        assert!(p.deep_swept_to_ms[0] <= p.window_swept_to_ms);
    }

    #[test]
    fn the_record_keeps_what_the_earliest_next_read_starts_at() {
        let mut p = at(T0);
        p.fresh_read_to_ms = T0 + 900_000;
        p.window_swept_to_ms = T0 + 600_000;
        p.deep_swept_to_ms = [T0 + 100_500; MAX_DEEP_SWEEPS];
        p.newest_event_ms = Some(T0 + 899_000);
        assert_eq!(record_floor(&p, Some(AGES), &[]), T0 + 100_000);
        assert_eq!(record_floor(&p, None, &[]), T0 + 899_000);
        // A quiet target: the newest event is older than every sweep, and is still recognised.
        p.newest_event_ms = Some(T0 + 5_500);
        assert_eq!(record_floor(&p, Some(AGES), &[]), T0 + 5_000);
    }

    #[test]
    fn reads_come_in_budget_priority() {
        assert_eq!(reads(Some(AGES)), vec![Read::Fresh, Read::WindowSweep, Read::DeepSweep(0)]);
        assert_eq!(
            reads(Some(SweepAges { deep_ms: [None; MAX_DEEP_SWEEPS], ..AGES })),
            vec![Read::Fresh, Read::WindowSweep]
        );
        assert_eq!(reads(None), vec![Read::Fresh]);
    }

    const LADDER: SweepAges = SweepAges { window_ms: W, deep_ms: [Some(D), Some(6 * D), None] };

    #[test]
    fn a_ladder_of_deep_sweeps_reads_each_stretch_once_per_age_each_up_to_the_one_before() {
        assert_eq!(SweepAges::new(W, &[6 * D, D, D]), LADDER, "sorted, repeats left out");
        assert_eq!(reads(Some(LADDER)), vec![Read::Fresh, Read::WindowSweep, Read::DeepSweep(0), Read::DeepSweep(1)]);
        let mut p = at(T0);
        advance(&mut p, Some(LADDER), T0, T0 + 8 * D, T0 + 8 * D);
        assert_eq!(p.deep_swept_to_ms, [T0 + 7 * D, T0 + 2 * D, T0 + 2 * D], "old history counts for both");
        let now = T0 + 9 * D;
        p.window_swept_to_ms = now - W;
        p.deep_swept_to_ms[0] = now - D;
        assert_eq!(sweep_bounds(Read::DeepSweep(1), &p, LADDER, now, None), Some((T0 + 2 * D, T0 + 3 * D)));
        p.deep_swept_to_ms[0] = T0 + 2 * D + 500_000;
        assert_eq!(
            sweep_bounds(Read::DeepSweep(1), &p, LADDER, now, None),
            None,
            "never past the deep sweep before it (500 s: under a tenth of six hours)"
        );
        assert_eq!(sweep_bounds(Read::DeepSweep(2), &p, LADDER, now, None), None, "not set");
    }

    #[test]
    fn each_deep_sweep_skips_when_behind_by_its_own_age_again() {
        let now = T0 + 20 * D;
        let mut p = at(T0);
        p.fresh_read_to_ms = now;
        p.window_swept_to_ms = now - W;
        p.deep_swept_to_ms = [now - D, now - 12 * D + 1, now - 12 * D + 1];
        assert_eq!(skip_lagging_sweeps(&mut p, Some(LADDER), now), Skipped::default());
        p.deep_swept_to_ms = [now - 3 * D, now - 13 * D, now - 13 * D];
        let skipped = skip_lagging_sweeps(&mut p, Some(LADDER), now);
        assert_eq!(skipped.deep_until_ms, [Some(now - 2 * D), Some(now - 12 * D), None]);
        assert_eq!(p.deep_swept_to_ms[2], p.deep_swept_to_ms[1], "the one not set follows");
    }

    #[test]
    fn the_record_keeps_what_the_deepest_sweep_needs() {
        let mut p = at(T0);
        p.fresh_read_to_ms = T0 + 7 * D;
        p.window_swept_to_ms = T0 + 7 * D - W;
        p.deep_swept_to_ms = [T0 + 6 * D, T0 + D, T0 + D];
        assert_eq!(record_floor(&p, Some(LADDER), &[]), T0 + D);
    }

    #[test]
    fn a_page_is_started_only_with_twice_the_slowest_page_and_the_reserve_left() {
        let slowest = Duration::from_secs(2);
        assert!(page_fits(Duration::from_millis(4_500), slowest));
        assert!(!page_fits(Duration::from_millis(4_499), slowest));
        assert!(page_fits(Duration::from_millis(500), Duration::ZERO));
    }

    #[test]
    fn sweeps_leave_three_fresh_reads_worth_of_requests() {
        assert!(sweeps_may_spend(3, 0));
        assert!(!sweeps_may_spend(2, 0));
        assert!(sweeps_may_spend(30, 10));
        assert!(!sweeps_may_spend(29, 10));
    }

    #[test]
    fn a_page_reads_to_its_newest_event_while_more_follow_and_to_the_end_of_the_stretch_after() {
        assert_eq!(page_reads_to(true, Some(9_000), 5_000, 7_000), 5_000);
        assert_eq!(page_reads_to(false, Some(9_000), 5_000, 7_000), 9_000);
        assert_eq!(page_reads_to(false, None, 5_000, 7_000), 7_000);
    }

    #[test]
    fn three_empty_pages_in_a_row_make_a_read_wait_and_one_event_resets_the_count() {
        let mut empty = 0;
        for _ in 0..2 {
            empty = empty_pages_in_a_row(empty, 0);
        }
        assert!(!going_round(empty));
        assert_eq!(empty_pages_in_a_row(empty, 1), 0);
        assert!(going_round(empty_pages_in_a_row(empty, 0)));
        assert_eq!(empty_pages_in_a_row(u32::MAX, 0), u32::MAX);
    }

    #[test]
    fn a_refused_or_stale_link_starts_over_and_only_a_fresh_failure_fails() {
        let refused = SourceError::LinkRefused("elsewhere".into());
        let fatal = SourceError::Fatal("404".into());
        assert_eq!(after_refusal(&refused, false), AfterRefusal::StartOver);
        assert_eq!(after_refusal(&fatal, true), AfterRefusal::StartOver);
        assert_eq!(after_refusal(&fatal, false), AfterRefusal::Fail);
        assert_eq!(after_refusal(&SourceError::OutOfTime, true), AfterRefusal::Stop(StopReason::Budget));
        let limited = SourceError::RateLimited { reset_at: None };
        assert_eq!(after_refusal(&limited, false), AfterRefusal::Stop(StopReason::RateLimited));
    }

    #[test]
    fn a_continuation_never_goes_back_before_the_second_the_read_stands_in() {
        assert_eq!(behind_before(true, 5_432), 5_000);
        assert_eq!(behind_before(false, 5_432), i64::MIN);
    }

    #[test]
    fn a_linkless_read_goes_on_only_while_each_page_gets_it_further() {
        assert_eq!(linkless_next(None, 0, 100), Linkless::StartOver);
        assert_eq!(linkless_next(Some(5_000), 5_001, 100), Linkless::StartOver);
        assert_eq!(linkless_next(Some(5_000), 5_000, 99), Linkless::Done);
        assert_eq!(linkless_next(Some(5_000), 5_000, 100), Linkless::Stop);
    }

    #[test]
    fn a_link_with_its_query_in_another_order_is_the_same_link() {
        let a = "https://api.github.com/orgs/a/audit-log?after=X&before=&per_page=100";
        let b = "https://api.github.com/orgs/a/audit-log?per_page=100&before=&after=X";
        assert_eq!(link_identity(a), link_identity(b));
        assert_ne!(link_identity(a), link_identity("https://api.github.com/orgs/a/audit-log?after=Y&before="));
        assert_eq!(link_identity("1|2||"), "1|2||", "what does not parse is its own identity");
    }

    #[test]
    fn a_link_is_logged_by_its_host_and_cursor_only() {
        let link =
            "https://api.github.com/orgs/acme/audit-log?phrase=created%3A%3E%3D2026&after=MTcwMHxhYmM%3D&before=";
        assert_eq!(link_place(link), "api.github.com after=MTcwMHxhYmM=");
        assert_eq!(link_place("https://ghes.example.com/api/v3/orgs/a/audit-log?page=7"), "ghes.example.com page=7");
        assert_eq!(link_place("not a link"), "(a link that does not parse)");
    }
}
