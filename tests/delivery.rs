//! Delivery guarantees, asserted by `_document_id` at the simulated intake.

mod common;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use common::{CrashBeforeSave, Harness, PAGE, events_between};
use github_audit_sekoia::drain::StopReason;
use github_audit_sekoia::simulator::SimOptions;
use github_audit_sekoia::timefmt::now_ms;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn twenty_thousand_events_with_many_ties_arrive_exactly_once() {
    let h = Harness::start().await;
    h.add(events_between(20_000, 6 * HOUR, Duration::from_secs(1), 1));
    let ties = {
        let github = h.sim.github();
        github.events().windows(2).filter(|w| w[0].timestamp_ms / 1000 == w[1].timestamp_ms / 1000).count()
    };
    assert!(ties > 10_000, "the data set should be full of same-second events, has {ties}");

    let summary = h.drain().await;

    assert_eq!(summary.stop_reason, StopReason::Drained);
    assert_eq!(summary.events_forwarded, 20_000);
    assert_eq!(summary.duplicates_skipped, 0);
    h.assert_exactly_once();
}

#[tokio::test]
async fn events_arrive_byte_for_byte_as_github_sent_them() {
    let h = Harness::start().await;
    h.add(events_between(300, HOUR, Duration::from_secs(1), 2));
    h.drain().await;
    let sent: Vec<String> = h.sim.github().events().iter().map(|e| e.json.clone()).collect();
    assert_eq!(h.sim.intake().texts, sent);
}

#[tokio::test]
async fn a_second_run_sends_nothing_new() {
    let h = Harness::start().await;
    h.add(events_between(1_500, HOUR, Duration::from_secs(1), 3));
    h.drain().await;
    let summary = h.drain().await;
    assert_eq!(summary.events_forwarded, 0);
    assert_eq!(summary.stop_reason, StopReason::Drained);
    h.assert_exactly_once();
}

#[tokio::test]
async fn new_events_after_a_run_are_delivered_by_the_next() {
    let h = Harness::start().await;
    h.add(events_between(1_000, HOUR, Duration::from_secs(120), 4));
    h.drain().await;
    h.add(events_between(700, Duration::from_secs(119), Duration::from_secs(1), 5));
    let summary = h.drain().await;
    assert_eq!(summary.events_forwarded, 700);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_run_stopped_by_its_budget_resumes_where_it_stopped() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(40), ..SimOptions::default() }).await;
    h.add(events_between(6_000, 3 * HOUR, Duration::from_secs(1), 6));
    let mut reasons = Vec::new();
    for _ in 0..20 {
        let summary = h.drain_with(&h.store(), Duration::from_millis(1_200), None).await.expect("drain");
        reasons.push(summary.stop_reason);
        if summary.stop_reason == StopReason::Drained {
            break;
        }
    }
    assert!(reasons.len() > 1 && reasons[..reasons.len() - 1].iter().all(|r| *r == StopReason::Budget), "{reasons:?}");
    assert_eq!(reasons.last(), Some(&StopReason::Drained));
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_kill_between_post_and_save_resends_at_most_the_page_in_flight() {
    for crash_at in [1, 2, 17, 40] {
        let h = Harness::start().await;
        h.add(events_between(5_000, 3 * HOUR, Duration::from_secs(1), 7));
        let crashing = CrashBeforeSave { inner: h.store(), fail_at_save: crash_at, saves: AtomicUsize::new(0) };
        let failure = h.drain_with(&crashing, Duration::from_secs(60), None).await.expect_err("the run dies");
        assert_eq!(failure.summary.pages, crash_at as u64);

        h.drain().await;

        let received = h.received();
        let resent = received.values().filter(|n| **n > 1).count();
        assert!(resent <= PAGE, "crash at save {crash_at}: {resent} events re-sent, more than one page");
        assert!(received.values().all(|n| *n <= 2));
        let missing = h.sim.github().events().iter().filter(|e| !received.contains_key(&e.document_id)).count();
        assert_eq!(missing, 0, "crash at save {crash_at}: events lost");
    }
}

#[tokio::test]
async fn events_indexed_late_inside_the_window_are_delivered_once() {
    let h = Harness::start().await;
    let now = now_ms();
    let visible = events_between(800, HOUR, Duration::from_secs(1), 8);
    // Indexed late: from four minutes ago to now, sharing seconds with visible events.
    let mut late =
        github_audit_sekoia::simulator::generate_events(150, now - 240_000, now - 1_000, 0.0, common::ORG, 9);
    for (event, twin) in late.iter_mut().zip(visible.iter().rev()) {
        event.hidden = true;
        if event.document_id.len() % 3 == 0 {
            // Same millisecond as an event the first run delivers.
            event.timestamp_ms = twin.timestamp_ms;
            event.json = event.json.replacen(
                &format!("\"@timestamp\":{}", event.timestamp_ms),
                &format!("\"@timestamp\":{}", twin.timestamp_ms),
                1,
            );
        }
    }
    h.add(visible);
    h.add(late);

    let first = h.drain().await;
    assert_eq!(first.events_forwarded, 800);
    h.sim.github().reveal_all();
    let second = h.drain().await;

    assert_eq!(second.events_forwarded, 150);
    assert!(second.duplicates_skipped > 0, "the window was re-read and recognised");
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_full_page_of_one_second_split_by_a_rate_limit_stop_loses_nothing() {
    let h = Harness::start().await;
    let second = (now_ms() - 3_600_000) / 1000 * 1000;
    // 450 events in one second, many in the same millisecond: every page border falls inside it.
    h.add(github_audit_sekoia::simulator::generate_events(450, second, second + 999, 0.0, common::ORG, 10));
    h.add(events_between(300, Duration::from_secs(3000), Duration::from_secs(1), 11));
    let mut runs = 0;
    loop {
        // Two requests before the 5% reserve (87 of 1750) is reached: the run stops mid-second.
        h.sim.github().set_rate_limit_remaining(89, Duration::from_secs(3600));
        let summary = h.drain().await;
        runs += 1;
        if summary.stop_reason == StopReason::Drained {
            break;
        }
        assert_eq!(summary.stop_reason, StopReason::RateLimited);
        assert!(summary.rate_limit_reset.is_some());
        assert!(runs < 40, "no progress");
    }
    assert!(runs >= 4, "each run should stop after two pages, took {runs} runs");
    h.assert_exactly_once();
}

#[tokio::test]
async fn an_oversize_event_is_reported_and_does_not_block_the_cursor() {
    let h = Harness::start().await;
    let mut events = events_between(250, HOUR, Duration::from_secs(1), 12);
    let big = &mut events[120];
    big.json = big.json.replacen('{', &format!("{{\"padding\":\"{}\",", "x".repeat(300 * 1024)), 1);
    let big_id = big.document_id.clone();
    h.add(events);

    let summary = h.drain().await;
    assert_eq!(summary.oversize_events, 1);
    assert_eq!(summary.oversize_document_ids, vec![big_id.clone()]);
    assert_eq!(summary.events_forwarded, 249);
    assert_eq!(summary.stop_reason, StopReason::Drained);
    assert!(!h.received().contains_key(&big_id));

    let again = h.drain().await;
    assert_eq!(again.oversize_events, 0, "reported once, not on every run");
}

#[tokio::test]
async fn bodies_are_split_by_bytes_and_every_event_arrives_once() {
    let h = Harness::start().await;
    h.add(events_between(2_000, HOUR, Duration::from_secs(1), 13));
    h.drain_with(&h.store(), Duration::from_secs(60), Some(16 * 1024)).await.expect("drain");
    let stats = h.sim.intake().stats.clone();
    assert!(stats.largest_body_bytes <= 16 * 1024, "{stats:?}");
    assert!(stats.batches > 20);
    h.assert_exactly_once();
}

#[tokio::test]
async fn the_checkpoint_keeps_only_the_late_arrival_window_after_a_long_backlog() {
    let h = Harness::start().await;
    h.add(events_between(20_000, 12 * HOUR, Duration::from_secs(1), 14));
    h.drain().await;
    let in_window = h.sim.github().events().iter().filter(|e| e.timestamp_ms >= now_ms() - 6 * 60_000).count();
    let checkpoint = h.checkpoint();
    assert!(
        checkpoint.delivered.len() <= in_window + 1,
        "{} remembered, {in_window} in the window",
        checkpoint.delivered.len()
    );
    assert!(checkpoint.delivered.len() < 1_000);
}
