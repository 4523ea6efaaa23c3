//! A live audit log in compressed time (windows and sweeps of seconds): events keep happening
//! while the connector runs every few hundred milliseconds, each becomes visible after a random
//! indexing delay, and GitHub's index may stall. Asserted by `_document_id` at the intake.

mod common;

use std::time::Duration;

use common::{Harness, PAGE, summary};
use github_audit_sekoia::drain::Summary;
use github_audit_sekoia::summary::StopReason;
use github_audit_sekoia::timefmt::now_ms;
use github_audit_sekoia_sim::{LiveLog, SimClock, SimOptions, Stall};
use tokio::sync::Mutex;

/// These tests measure wall-clock behaviour on a machine of two cores: one at a time, so that
/// none starves another of the CPU its timing assumes.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn compressed(h: &mut Harness, window: &str, deep_sweep_after: &str) {
    for (name, value) in
        [("LATE_ARRIVAL_WINDOW", window), ("LATE_SWEEP_AFTER", deep_sweep_after), ("FIRST_RUN_LOOKBACK", "1m")]
    {
        h.extra_env.push((name.into(), value.into()));
    }
}

/// Drains every `every` until `until_ms`; the summaries of every run.
async fn schedule(h: &Harness, every: Duration, until_ms: i64) -> Vec<Summary> {
    let mut summaries = Vec::new();
    while now_ms() < until_ms {
        summaries.push(h.drain().await);
        tokio::time::sleep(every).await;
    }
    summaries
}

/// Six seconds of events; from the second second GitHub's index stalls for three windows, then
/// releases the backlog in timestamp order at twice real time while new events keep coming.
async fn through_a_stall(deep_sweep_after: &str) -> (usize, u32, u64) {
    let mut h = Harness::start().await;
    compressed(&mut h, "1s", deep_sweep_after);
    let start = now_ms();
    let ids = h.add_live(&LiveLog {
        start_ms: start,
        span: Duration::from_secs(6),
        per_second: 60.0,
        max_delay: Duration::from_millis(400),
        stall: Some(Stall { after: Duration::from_secs(2), lasts: Duration::from_secs(3), release_speed: 2 }),
        seed: 81,
    });
    let summaries = schedule(&h, Duration::from_millis(250), start + 13_000).await;
    assert!(summaries.iter().all(|s| s.figures.stop_reason == StopReason::Drained));
    let (missing, repeated) = h.missing_and_repeated(&ids);
    (missing, repeated, summaries.iter().map(|s| s.deep_sweep_pages).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_of_three_windows_loses_nothing_with_the_deep_sweep_and_events_without_it() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (with_deep, without_deep) = tokio::join!(through_a_stall("5s"), through_a_stall("0"));

    assert_eq!((with_deep.0, with_deep.1), (0, 0), "(missing, repeated) with the deep sweep");
    assert!(with_deep.2 > 0, "the deep sweep read pages");
    assert!(without_deep.0 > 0, "without the deep sweep the released backlog should be missed");
    assert_eq!(without_deep.1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowded_seconds_indexed_out_of_order_arrive_exactly_once_across_read_borders() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut h = Harness::start().await;
    compressed(&mut h, "1s", "3s");
    let start = now_ms();
    // Three pages' worth in every second, each event visible up to 0.8 s late.
    let ids = h.add_live(&LiveLog {
        start_ms: start,
        span: Duration::from_secs(3),
        per_second: 300.0,
        max_delay: Duration::from_millis(800),
        stall: None,
        seed: 82,
    });
    let summaries = schedule(&h, Duration::from_millis(200), start + 8_500).await;
    assert_eq!(h.missing_and_repeated(&ids), (0, 0), "(missing, repeated)");
    assert!(summaries.iter().map(|s| s.sweep_pages).sum::<u64>() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_starved_of_rate_budget_keeps_its_fresh_read_and_the_sweeps_wait() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut h = Harness::start().await;
    compressed(&mut h, "1s", "3s");
    let start = now_ms();
    let ids = h.add_live(&LiveLog {
        start_ms: start,
        span: Duration::from_secs(4),
        per_second: 50.0,
        max_delay: Duration::from_millis(300),
        stall: None,
        seed: 83,
    });
    schedule(&h, Duration::from_millis(250), start + 2_000).await;

    // 87 requests are kept for other tools (5% of 1,750): three left for this connector.
    h.sim.github().set_rate_limit_remaining(87 + 3, Duration::from_secs(3600));
    // Over a second later: a whole second more is due for the window sweep.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let starved = h.drain().await;
    assert_eq!(starved.figures.stop_reason, StopReason::RateLimited);
    assert!(starved.fresh_pages >= 1 && starved.figures.events_forwarded > 0, "new events still flow: {starved:?}");
    assert_eq!(starved.sweep_pages + starved.deep_sweep_pages, 0, "the sweeps waited");

    h.sim.github().set_rate_limit_remaining(1_750, Duration::from_secs(3600));
    let recovered = schedule(&h, Duration::from_millis(250), start + 9_500).await;
    // Either sweep may be the one due: a fresh read that starts at or before the window sweep's
    // position counts as that sweep too (the read model's one rule), so whether the window
    // sweep still has a stretch left depends on where in its second the newest event fell.
    let first = &recovered[0];
    assert!(first.sweep_pages + first.deep_sweep_pages > 0, "the sweeps caught up once budget was back: {first:?}");
    assert_eq!(h.missing_and_repeated(&ids), (0, 0), "(missing, repeated)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_instants_of_a_live_log_repeats_at_most_a_page_per_kill() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut h = Harness::with_options(SimOptions { latency: Duration::from_millis(15), ..SimOptions::default() }).await;
    // Runs killed early and often may never reach the deep sweep; one that falls behind twice its
    // age skips ahead unread (by design, and warned). With a 6 s age that point stays before the
    // first event throughout the kills, so whatever is lost here is lost by a kill.
    compressed(&mut h, "1s", "6s");
    let start = now_ms();
    let ids = h.add_live(&LiveLog {
        start_ms: start - 2_000,
        span: Duration::from_secs(7),
        per_second: 400.0,
        max_delay: Duration::from_millis(600),
        stall: Some(Stall { after: Duration::from_secs(3), lasts: Duration::from_millis(1_500), release_speed: 2 }),
        seed: 84,
    });
    let mut rng = fastrand::Rng::with_seed(84);
    let mut kills = 0;
    while now_ms() < start + 10_000 {
        let mut child =
            h.cli(&["run"], &[("LOG_LEVEL", "warn")]).stdout(std::process::Stdio::null()).spawn().expect("spawned");
        tokio::time::sleep(Duration::from_millis(rng.u64(10..250))).await;
        if child.try_wait().expect("status").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reaped");
    }
    // The deep sweep reaches the newest event (start + 5 s) 6 s later.
    tokio::time::sleep(Duration::from_millis((start + 11_500 - now_ms()).max(0) as u64)).await;
    for _ in 0..2 {
        let last = h.run_cli(&["run"], &[]).await;
        assert_eq!(summary(&last)["stop_reason"], "drained");
    }

    let (missing, repeated) = h.missing_and_repeated(&ids);
    assert!(kills >= 10, "the runs should mostly be killed mid-drain ({kills})");
    assert_eq!(missing, 0, "nothing lost after {kills} kills");
    assert!(repeated as usize <= kills * PAGE, "{repeated} repeats after {kills} kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_whose_clock_is_an_hour_off_githubs_either_way_loses_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    for github_ahead_ms in [-3_600_000, 3_600_000] {
        let options = SimOptions { clock: SimClock::offset(github_ahead_ms), ..SimOptions::default() };
        let mut h = Harness::with_options(options).await;
        compressed(&mut h, "1s", "3s");
        // The first run's lookback is reckoned by this host's clock (no answer from GitHub yet).
        h.extra_env.push(("FIRST_RUN_LOOKBACK".into(), "2h".into()));
        let start = now_ms();
        // Events stamped and indexed by GitHub's clock.
        let ids = h.add_live(&LiveLog {
            start_ms: start + github_ahead_ms,
            span: Duration::from_secs(3),
            per_second: 100.0,
            max_delay: Duration::from_millis(600),
            stall: None,
            seed: 84,
        });
        let summaries = schedule(&h, Duration::from_millis(250), start + 7_000).await;
        assert_eq!(h.missing_and_repeated(&ids), (0, 0), "GitHub {github_ahead_ms} ms ahead: (missing, repeated)");
        let offset = summaries.last().and_then(|s| s.clock_offset_seconds).unwrap_or_default();
        assert!((offset * 1000.0 - github_ahead_ms as f64).abs() <= 1_500.0, "reckoned {offset} s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_first_deep_age_is_caught_by_the_next_one() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut h = Harness::start().await;
    // Compressed: window 1 s, deep sweeps at 2 s and 7 s; GitHub's index stalls for 4 s.
    compressed(&mut h, "1s", "2s,7s");
    let start = now_ms();
    let ids = h.add_live(&LiveLog {
        start_ms: start,
        span: Duration::from_secs(5),
        per_second: 60.0,
        max_delay: Duration::from_millis(300),
        stall: Some(Stall { after: Duration::from_secs(1), lasts: Duration::from_secs(4), release_speed: 2 }),
        seed: 85,
    });
    let summaries = schedule(&h, Duration::from_millis(250), start + 16_000).await;
    assert_eq!(h.missing_and_repeated(&ids), (0, 0), "(missing, repeated)");
    let deeper = summaries.iter().rev().find_map(|s| s.deeper_swept_to.first());
    assert!(deeper.is_some(), "the second deep sweep reports its position");
}
