//! Delivery guarantees, asserted by `_document_id` at the simulated intake.

mod common;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use base64::Engine;
use common::{CrashBeforeSave, Harness, PAGE, events_between};
use github_audit_sekoia::checkpoint::delivered::DeliveredSet;
use github_audit_sekoia::ports::AuditEvent;
use github_audit_sekoia::summary::StopReason;
use github_audit_sekoia::timefmt::now_ms;
use github_audit_sekoia_sim::SimOptions;
use serde_json::value::RawValue;

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

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert_eq!(summary.figures.events_forwarded, 20_000);
    assert_eq!(summary.fresh_pages, 200, "history is read once");
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
    assert_eq!(summary.figures.events_forwarded, 0);
    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    h.assert_exactly_once();
}

#[tokio::test]
async fn new_events_after_a_run_are_delivered_by_the_next() {
    let h = Harness::start().await;
    h.add(events_between(1_000, HOUR, Duration::from_secs(120), 4));
    h.drain().await;
    h.add(events_between(700, Duration::from_secs(119), Duration::from_secs(1), 5));
    let summary = h.drain().await;
    assert_eq!(summary.figures.events_forwarded, 700);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_run_stopped_by_its_budget_resumes_where_it_stopped() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(40), ..SimOptions::default() }).await;
    h.add(events_between(6_000, 3 * HOUR, Duration::from_secs(1), 6));
    let mut reasons = Vec::new();
    for _ in 0..20 {
        let summary = h.drain_with(&h.store(), Duration::from_millis(1_200), None).await.expect("drain");
        reasons.push(summary.figures.stop_reason);
        if summary.figures.stop_reason == StopReason::Drained {
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
async fn events_indexed_late_inside_the_window_are_delivered_once_by_the_window_sweep() {
    let mut h = Harness::start().await;
    h.extra_env.push(("LATE_ARRIVAL_WINDOW".into(), "3s".into()));
    let now = now_ms();
    h.add(events_between(800, HOUR, Duration::from_millis(500), 8));
    // Indexed late, but within the window: stamped in the last 1.5 s, visible after the first
    // run, among the seconds that run delivered.
    let mut late = github_audit_sekoia_sim::generate_events(150, now - 1_500, now, 0.0, common::ORG, 9);
    for event in &mut late {
        event.hidden = true;
    }
    h.add(late);

    let first = h.drain().await;
    assert_eq!(first.figures.events_forwarded, 800);
    h.sim.github().reveal_all();
    // Once they are a window old, the window sweep reads their stretch again (a remainder
    // under a page may wait for the next run).
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let second = h.drain().await;
    let third = h.drain().await;

    assert_eq!(second.figures.events_forwarded + third.figures.events_forwarded, 150);
    assert!(second.sweep_pages > 0 && second.figures.duplicates_skipped > 0, "the window was swept and recognised");
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_full_page_of_one_second_split_by_a_rate_limit_stop_loses_nothing() {
    let h = Harness::start().await;
    let second = (now_ms() - 3_600_000) / 1000 * 1000;
    // 450 events in one second, many in the same millisecond: every page border falls inside it.
    h.add(github_audit_sekoia_sim::generate_events(450, second, second + 999, 0.0, common::ORG, 10));
    h.add(events_between(300, Duration::from_secs(3000), Duration::from_secs(1), 11));
    let mut runs = 0;
    while h.received().len() < 750 {
        // Two requests before the 5% reserve (87 of 1750) is reached: the run stops mid-second
        // (and the sweeps wait for the reset).
        h.sim.github().set_rate_limit_remaining(89, Duration::from_secs(3600));
        let summary = h.drain().await;
        runs += 1;
        if summary.figures.stop_reason != StopReason::Drained {
            assert_eq!(summary.figures.stop_reason, StopReason::RateLimited);
            assert!(summary.rate_limit_reset.is_some());
        }
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
    assert_eq!(summary.figures.oversize_events, 1);
    assert_eq!(summary.oversize_document_ids, vec![big_id.clone()]);
    assert_eq!(summary.figures.events_forwarded, 249);
    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert!(!h.received().contains_key(&big_id));

    let again = h.drain().await;
    assert_eq!(again.figures.oversize_events, 0, "reported once, not on every run");
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
async fn a_version_1_state_file_is_carried_on_without_loss_or_resending() {
    let h = Harness::start().await;
    // What version 1 left after its last run: everything before `settled` delivered, and the
    // window's events in one set.
    let delivered_before = events_between(600, HOUR, Duration::from_secs(90), 15);
    let settled = delivered_before[500].timestamp_ms;
    let mut set = DeliveredSet::default();
    for e in delivered_before.iter().filter(|e| e.timestamp_ms >= settled / 1000 * 1000) {
        let text = format!(r#"{{"@timestamp":{},"_document_id":"{}"}}"#, e.timestamp_ms, e.document_id);
        set.insert(e.timestamp_ms, &AuditEvent::from_raw(RawValue::from_string(text).expect("json")));
    }
    let newest = delivered_before.last().map(|e| e.timestamp_ms).expect("events");
    let v1 = serde_json::json!({
        "format": 1, "settled_before": "", "settled_before_ms": settled, "newest_event": null,
        "newest_event_ms": newest, "delivered_count": set.len(),
        "delivered": base64::engine::general_purpose::STANDARD.encode(set.encode()),
        "resume": {"next_page": format!("{}/orgs/acme/audit-log?after=gone", h.sim.github_url), "settled_frozen": true},
    });
    std::fs::write(h.store().path_for("orgs/acme/web"), v1.to_string()).expect("v1 file");
    h.add(delivered_before);
    let new = events_between(120, Duration::from_secs(80), Duration::from_secs(1), 16);
    let new_ids: Vec<String> = new.iter().map(|e| e.document_id.clone()).collect();
    h.add(new);

    let summary = h.drain().await;

    assert_eq!(summary.figures.events_forwarded, 120, "only what version 1 had not delivered");
    h.assert_exactly(&new_ids);
    let rewritten = std::fs::read_to_string(h.store().path_for("orgs/acme/web")).expect("state file");
    assert!(rewritten.contains(r#""format":3"#), "{rewritten}");
    assert!(h.store().buckets_dir("orgs/acme/web").read_dir().is_ok_and(|mut d| d.next().is_some()));
}
