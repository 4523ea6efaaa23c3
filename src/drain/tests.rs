//! The drain against in-memory edges and a hand-moved clock: hours of audit log in
//! milliseconds, asserted by `_document_id`.

use super::*;
use crate::checkpoint::delivered::BUCKET_SPAN_MS;
use crate::shaping::Shaping;
use crate::testing::{FakeClock, FakeLog, LinkFault, LogEvent, MemoryStore, RecordingSink};

const T0: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
const W: i64 = 5 * MINUTE;
const D: i64 = 60 * MINUTE;

fn plan(deep: bool) -> DrainPlan {
    DrainPlan {
        key: "orgs/acme/web".into(),
        start_ms: T0 - 24 * D,
        until_ms: None,
        sweeps: Some(SweepAges::new(W, if deep { &[D] } else { &[] })),
        shaping: Shaping::default(),
    }
}

/// `per_hour` events from `from` for `span` ms, each visible after up to `max_delay` ms.
fn live(per_hour: i64, from: i64, span: i64, max_delay: i64, seed: u64) -> Vec<LogEvent> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let count = per_hour * span / D;
    (0..count)
        .map(|i| {
            let ts = from + rng.i64(0..span);
            LogEvent { ts, visible_at: ts + rng.i64(0..=max_delay), id: format!("ev-{seed}-{i}") }
        })
        .collect()
}

/// GitHub's index stops at `at` for `lasts` ms, then releases what it held in timestamp order
/// `speed` times faster than real time.
fn stall(events: &mut [LogEvent], at: i64, lasts: i64, speed: i64) {
    let first_held = events.iter().filter(|e| (at..at + lasts).contains(&e.visible_at)).map(|e| e.ts).min();
    if let Some(first) = first_held {
        for e in events.iter_mut().filter(|e| (at..at + lasts).contains(&e.visible_at)) {
            e.visible_at = at + lasts + (e.ts - first) / speed;
        }
    }
}

struct World<'c> {
    clock: &'c FakeClock,
    log: FakeLog<'c>,
    sink: RecordingSink,
    store: MemoryStore,
}

impl<'c> World<'c> {
    fn new(clock: &'c FakeClock) -> Self {
        Self { clock, log: FakeLog::new(clock), sink: RecordingSink::default(), store: MemoryStore::default() }
    }

    async fn run(&self, plan: &DrainPlan) -> Result<Summary, DrainFailure> {
        let edges =
            Edges { source: &self.log, sink: &self.sink, store: &self.store, clock: self.clock, progress: None };
        drain(&edges, plan, Budget::lasting(Duration::from_secs(60))).await
    }

    /// Runs every `every` ms until `until`, returning the summaries.
    async fn schedule(&self, plan: &DrainPlan, every: i64, until: i64) -> Vec<Summary> {
        let mut summaries = Vec::new();
        while self.clock.now_ms() < until {
            summaries.push(self.run(plan).await.expect("drain"));
            self.clock.advance(every);
        }
        summaries
    }

    fn missing(&self) -> usize {
        let received = self.sink.received.lock().expect("received");
        self.log.ids().iter().filter(|id| !received.contains_key(*id)).count()
    }

    fn repeated(&self) -> u32 {
        self.sink.received.lock().expect("received").values().map(|n| n - 1).sum()
    }

    fn assert_exactly_once(&self) {
        assert_eq!((self.missing(), self.repeated()), (0, 0), "(missing, repeated)");
        assert_eq!(self.sink.received.lock().expect("received").len(), self.log.ids().len());
    }
}

#[tokio::test]
async fn a_stall_of_three_windows_loses_nothing_with_the_deep_sweep_and_loses_events_without() {
    let mut missing = Vec::new();
    for deep in [true, false] {
        let clock = FakeClock::at(T0);
        let world = World::new(&clock);
        let mut events = live(2_000, T0, 2 * D, 30_000, 1);
        stall(&mut events, T0 + 30 * MINUTE, 3 * W, 4);
        world.log.add(events);

        let summaries = world.schedule(&plan(deep), MINUTE, T0 + 2 * D + D + 3 * W).await;

        assert!(summaries.iter().all(|s| s.figures.stop_reason == StopReason::Drained));
        assert_eq!(world.repeated(), 0);
        missing.push(world.missing());
        if deep {
            world.assert_exactly_once();
            assert!(summaries.iter().map(|s| s.deep_sweep_pages).sum::<u64>() > 0);
        }
    }
    assert!(missing[1] > 50, "without the deep sweep the stall should lose events: {missing:?}");
}

#[tokio::test]
async fn events_indexed_late_within_the_window_arrive_exactly_once_on_every_schedule() {
    for every in [MINUTE, W, 7 * MINUTE] {
        let clock = FakeClock::at(T0);
        let world = World::new(&clock);
        world.log.add(live(6_000, T0, D, W - 2_000, 2));
        world.schedule(&plan(false), every, T0 + D + W + 2 * every).await;
        world.assert_exactly_once();
    }
}

#[tokio::test]
async fn a_first_run_over_old_history_reads_each_event_once() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    world.log.add(live(100, T0 - 48 * D - 1_000, 48 * D, 0, 3));
    let plan = DrainPlan { start_ms: T0 - 49 * D, ..plan(true) };
    let summary = world.run(&plan).await.expect("drain");
    assert_eq!(summary.figures.events_forwarded, 4_800);
    assert_eq!(summary.fresh_pages, 48, "4,800 events in pages of 100");
    assert_eq!((summary.sweep_pages, summary.deep_sweep_pages), (0, 0));
    world.assert_exactly_once();

    // A quiet log afterwards (runs every five minutes): one request for each read due while a
    // sweep still has to cover time after the newest event; once the newest event is older than
    // the deep sweep's position, the fresh read, starting at its second, covers both sweeps.
    clock.advance(5 * MINUTE);
    let quiet = world.schedule(&plan, 5 * MINUTE, T0 + 2 * D).await;
    let first = &quiet[0];
    assert_eq!((first.fresh_pages, first.sweep_pages, first.figures.events_forwarded), (1, 1, 0));
    assert!(quiet.iter().all(|s| s.pages <= 3 && s.figures.events_forwarded == 0));
    let an_hour_on = &quiet[13..];
    assert!(an_hour_on.iter().all(|s| s.pages == 1), "{:?}", an_hour_on.iter().map(|s| s.pages).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_quiet_org_costs_at_most_three_requests_a_run() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    world.log.add(live(50, T0, 3 * D, 20_000, 4));
    let summaries = world.schedule(&plan(true), 5 * MINUTE, T0 + 3 * D).await;
    let most = summaries.iter().map(|s| s.pages).max().unwrap_or(0);
    assert!(most <= 3, "a run spent {most} requests");
    world.log.add(Vec::new());
    world.schedule(&plan(true), 5 * MINUTE, T0 + 4 * D + W).await;
    world.assert_exactly_once();
}

#[tokio::test]
async fn a_starved_run_keeps_its_fresh_read_and_the_sweeps_wait_for_budget() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    world.log.add(live(6_000, T0, 2 * D, 60_000, 5));
    world.schedule(&plan(true), MINUTE, T0 + 90 * MINUTE).await;

    *world.log.left.lock().expect("left") = Some(2);
    let starved = world.schedule(&plan(true), MINUTE, T0 + 100 * MINUTE).await;
    assert!(starved.iter().all(|s| s.fresh_pages >= 1 && s.sweep_pages + s.deep_sweep_pages == 0));
    assert!(starved.iter().all(|s| s.figures.stop_reason == StopReason::RateLimited));
    let fresh_lag = starved.last().and_then(|s| s.figures.lag_seconds).unwrap_or(f64::MAX);
    assert!(fresh_lag < 120.0, "new events keep flowing: lag {fresh_lag} s");

    *world.log.left.lock().expect("left") = None;
    let recovered = world.schedule(&plan(true), MINUTE, T0 + 3 * D + 2 * W).await;
    assert!(recovered[0].sweep_pages > 0, "the sweeps catch up once budget is back");
    world.assert_exactly_once();
}

#[tokio::test]
async fn a_crash_between_post_and_save_repeats_at_most_the_page_in_flight() {
    for crash_at in [1, 3, 8] {
        let clock = FakeClock::at(T0);
        let world = World::new(&clock);
        world.log.add(live(20_000, T0 - 30 * MINUTE, 40 * MINUTE, 2 * MINUTE, 6));
        world.schedule(&plan(true), MINUTE, T0).await;
        *world.store.fail_at_save.lock().expect("fail") = Some(crash_at);
        clock.advance(3 * MINUTE);
        assert!(world.run(&plan(true)).await.is_err(), "the run dies at save {crash_at}");
        world.schedule(&plan(true), MINUTE, T0 + 3 * D).await;
        assert_eq!(world.missing(), 0);
        assert!(world.repeated() <= 100, "crash at save {crash_at}: {} repeated", world.repeated());
    }
}

#[tokio::test]
async fn same_second_crowds_across_read_borders_arrive_exactly_once() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut events = Vec::new();
    // 250 events in each of the seconds where runs happen and sweeps end, half of each crowd
    // indexed up to a window late.
    for minute in 0..30 {
        let second = T0 + minute * MINUTE;
        for i in 0..250 {
            let ts = second + rng.i64(0..1_000);
            let delay = if i % 2 == 0 { rng.i64(0..1_000) } else { rng.i64(0..W - 1_000) };
            events.push(LogEvent { ts, visible_at: ts + delay, id: format!("crowd-{minute}-{i}") });
        }
    }
    world.log.add(events);
    world.schedule(&plan(true), MINUTE, T0 + 30 * MINUTE + D + 2 * W).await;
    world.assert_exactly_once();
}

#[tokio::test]
async fn a_deep_sweep_further_behind_than_its_age_again_is_skipped_and_reported() {
    let clock = FakeClock::at(T0 + 4 * D);
    let world = World::new(&clock);
    let mut checkpoint = Checkpoint::starting_at(T0);
    checkpoint.positions.fresh_read_to_ms = T0 + 4 * D - MINUTE;
    checkpoint.positions.window_swept_to_ms = T0 + 4 * D - W - MINUTE;
    world.store.put(checkpoint);

    let summary = world.run(&plan(true)).await.expect("drain");

    assert_eq!(summary.deep_sweep_skipped_until, Some(rfc3339_ms(T0 + 2 * D)));
    assert_eq!(summary.window_sweep_skipped_until, None);
    let deep = world.store.checkpoint().map(|c| c.positions.deep_swept_to_ms[0]);
    assert!(deep.is_some_and(|d| d > T0 + 2 * D), "it swept on from there: {deep:?}");
}

#[tokio::test]
async fn the_record_holds_the_deep_horizon_in_small_buckets_and_forgets_what_is_past_it() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    world.log.add(live(20_000, T0, 3 * D, 10_000, 8));
    world.schedule(&plan(true), 5 * MINUTE, T0 + 3 * D + 20 * MINUTE).await;
    world.assert_exactly_once();
    // From the deep sweep's position to the newest event, none before: a bucket a minute at
    // least, one per slot at most.
    let positions = world.store.checkpoint().expect("checkpoint").positions;
    let newest = positions.newest_event_ms.expect("events were delivered");
    let (minutes, slots) =
        ((newest - positions.deep_swept_to_ms[0]) / MINUTE, (newest - positions.deep_swept_to_ms[0]) / BUCKET_SPAN_MS);
    let buckets = world.store.bucket_count() as i64;
    assert!((minutes..=slots + 2).contains(&buckets), "{buckets} buckets for {minutes} minutes");
    assert!(minutes > 30, "the record reaches back {minutes} minutes");
}

impl World<'_> {
    fn fail_links(&self, normal_first: usize, fault: LinkFault, times: usize) {
        let mut faults = self.log.link_faults.lock().expect("faults");
        faults.extend(std::iter::repeat_n(None, normal_first).chain(std::iter::repeat_n(Some(fault), times)));
    }

    fn requests(&self) -> usize {
        self.log.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_next_link_back_to_itself_costs_a_request_and_every_event_arrives_once() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    world.log.add(live(500, T0 - 6 * D - 1_000, 6 * D, 0, 21));
    // From the fifth request on, for ever: each page's next link is the link that fetched it.
    world.fail_links(4, LinkFault::ToItself, 10_000);
    let plan = DrainPlan { start_ms: T0 - 7 * D, ..plan(true) };

    let summary = world.run(&plan).await.expect("drain");

    world.assert_exactly_once();
    assert_eq!((summary.figures.stop_reason, summary.pagination_loops), (StopReason::Drained, 1));
    assert!(world.requests() <= 30 + 2, "3,000 events took {} requests", world.requests());
    let pass = world.store.checkpoint().expect("saved").passes;
    assert!(pass.is_empty(), "the looping link is not kept: {pass:?}");
}

#[tokio::test]
async fn a_link_back_before_the_position_never_resends_what_the_record_forgot() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    world.log.add(live(500, T0 - 6 * D - 1_000, 6 * D, 0, 22));
    // The sixth page's link leads back to the query's first page, hours behind the read: the
    // record has long forgotten those minutes.
    world.fail_links(5, LinkFault::ToFirstPage, 1);
    let plan = DrainPlan { start_ms: T0 - 7 * D, ..plan(true) };

    let summary = world.run(&plan).await.expect("drain");

    world.assert_exactly_once();
    assert_eq!(summary.pagination_loops, 1);
    assert!(world.requests() <= 30 + 2, "3,000 events took {} requests", world.requests());
}

#[tokio::test]
async fn a_sweep_whose_links_go_round_reads_on_without_them_and_misses_nothing() {
    let clock = FakeClock::at(T0);
    let world = World::new(&clock);
    // 1,000 events in the ten minutes before T0, half of them indexed two minutes late.
    let mut events = live(6_000, T0 - 10 * MINUTE, 10 * MINUTE, 0, 23);
    events.iter_mut().step_by(2).for_each(|e| e.visible_at = e.ts + 2 * MINUTE);
    world.log.add(events);
    world.run(&plan(true)).await.expect("first run");
    assert!(world.missing() > 0, "the late half is not visible yet");

    clock.advance(10 * MINUTE);
    // The fresh read's one page, the sweep's first page, then its links go round.
    world.fail_links(2, LinkFault::ToItself, 10_000);
    let summary = world.run(&plan(true)).await.expect("second run");

    assert!(summary.sweep_pages > 2 && summary.pagination_loops >= 1, "{summary:?}");
    world.assert_exactly_once();
}

#[tokio::test]
async fn a_host_clock_an_hour_off_githubs_either_way_loses_nothing() {
    for ahead in [-D, D] {
        let clock = FakeClock::at(T0);
        let world = World::new(&clock);
        world.log.ahead_ms.store(ahead, std::sync::atomic::Ordering::SeqCst);
        // Three hours of GitHub's time, each event indexed up to four minutes late.
        world.log.add(live(2_000, T0 + ahead, 3 * D, 4 * MINUTE, 24));
        let plan = DrainPlan { start_ms: T0 - D, ..plan(true) };

        let summaries = world.schedule(&plan, 5 * MINUTE, T0 + 3 * D + 2 * D).await;

        world.assert_exactly_once();
        let offset = summaries.last().and_then(|s| s.clock_offset_seconds).unwrap_or_default();
        assert!((offset - ahead as f64 / 1000.0).abs() <= 1.0, "GitHub {ahead} ms ahead, reckoned {offset} s");
    }
}

#[tokio::test]
async fn a_stall_of_four_hours_loses_nothing_with_the_default_deep_sweeps() {
    let mut lost = Vec::new();
    // `1h` alone, then the default `1h,6h`.
    for ladder in [&[D][..], &[D, 6 * D][..]] {
        let clock = FakeClock::at(T0);
        let world = World::new(&clock);
        // GitHub's index stops for four hours, then releases its backlog at eight times real time.
        let mut events = live(2_000, T0, 8 * D, 20_000, 25);
        stall(&mut events, T0 + D, 4 * D, 8);
        world.log.add(events);
        let plan = DrainPlan { sweeps: Some(SweepAges::new(W, ladder)), ..plan(true) };
        world.schedule(&plan, 5 * MINUTE, T0 + 16 * D).await;
        assert_eq!(world.repeated(), 0);
        lost.push(world.missing());
    }
    assert!(lost[0] > 0, "a stall of four hours outlasts a deep sweep at one hour");
    assert_eq!(lost[1], 0, "the sweep at six hours reads it again");
}
