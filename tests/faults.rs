//! Fault injection: GitHub and the intake misbehave by script or at random, runs are killed,
//! and every test checks by `_document_id` that nothing was lost, what was repeated, and why
//! the run stopped.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, PAGE, events_between, summary};
use github_audit_sekoia::summary::StopReason;
use github_audit_sekoia_sim::{Fault, SimOptions};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn github_server_errors_and_broken_pages_are_retried_without_loss() {
    let h = Harness::start().await;
    h.add(events_between(1_200, 6 * HOUR, Duration::from_secs(1), 61));
    h.sim.github().faults.extend([
        None,
        Some(Fault::Status(500)),
        Some(Fault::Status(502)),
        None,
        Some(Fault::BrokenBody),
        None,
        Some(Fault::Status(503)),
        Some(Fault::Status(408)),
        None,
        Some(Fault::Status(504)),
    ]);

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert_eq!(h.sim.github().faults.remaining(), 0, "every scripted fault was met");
    h.assert_exactly_once();
}

#[tokio::test]
async fn endless_answers_from_github_and_the_intake_are_cut_at_their_caps_without_loss() {
    let h = Harness::start().await;
    h.add(events_between(1_000, 6 * HOUR, Duration::from_secs(1), 63));
    // A gigabyte-long page, then one small on the wire that inflates to 256 MiB: each read again
    // like any broken page (the memory they may take: tests/memory.rs).
    h.sim.github().faults.extend([None, Some(Fault::HugeBody(256 << 20)), None, Some(Fault::GzipBomb(256 << 20))]);
    // The intake stored the batch, then answers without end: read up to its cap, acknowledged.
    h.sim.intake().faults.extend([None, Some(Fault::HugeBody(256 << 20))]);

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert_eq!(h.sim.github().faults.remaining() + h.sim.intake().faults.remaining(), 0);
    h.assert_exactly_once();
}

#[tokio::test]
async fn pages_github_sends_gzipped_arrive_once_each() {
    let h = Harness::start().await;
    h.sim.github().gzip_answers = true;
    h.add(events_between(1_500, 6 * HOUR, Duration::from_secs(1), 64));

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert!(h.sim.github().gzipped_answers >= 15, "the connector asks GitHub for compressed pages");
    h.assert_exactly_once();
}

#[tokio::test]
async fn seeded_random_faults_on_both_sides_lose_and_repeat_nothing() {
    let github_kinds =
        [Fault::Status(500), Fault::Status(502), Fault::BrokenBody, Fault::SecondaryLimit(Some(1)), Fault::Status(503)];
    let intake_kinds = [Fault::Status(500), Fault::Status(503), Fault::RetryAfter(429, 1), Fault::Status(502)];
    for seed in [1, 2, 3] {
        let h = Harness::start().await;
        h.add(events_between(1_500, 6 * HOUR, Duration::from_secs(1), 70 + seed));
        h.sim.github().faults.random(seed, 40, 0.15, &github_kinds);
        h.sim.intake().faults.random(seed + 100, 40, 0.15, &intake_kinds);

        let summary = h.drain().await;

        assert_eq!(summary.figures.stop_reason, StopReason::Drained, "seed {seed}");
        h.assert_exactly_once();
    }
}

#[tokio::test]
async fn a_primary_rate_limit_that_resets_within_the_budget_is_waited_out() {
    let h = Harness::start().await;
    h.add(events_between(800, 6 * HOUR, Duration::from_secs(1), 62));
    h.sim.github().faults.extend([None, None, Some(Fault::RateLimitExhausted(Duration::from_secs(2)))]);

    let started = Instant::now();
    let summary = h.drain_with(&h.store(), Duration::from_secs(60), None).await.expect("drain");

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited for the reset");
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_primary_rate_limit_beyond_the_budget_stops_cleanly_and_the_next_run_resumes() {
    let h = Harness::start().await;
    h.add(events_between(900, 6 * HOUR, Duration::from_secs(1), 63));
    h.sim.github().faults.extend([None, None, Some(Fault::RateLimitExhausted(HOUR))]);

    let stopped = h.drain().await;
    assert_eq!(stopped.figures.stop_reason, StopReason::RateLimited);
    assert_eq!(stopped.figures.events_forwarded, 200, "the two pages before the limit were delivered");
    let reset = stopped.rate_limit_reset.expect("the summary says when the limit resets");
    let reset = humantime::parse_rfc3339(&reset).expect("a time");
    assert!(reset > std::time::SystemTime::now() + Duration::from_secs(3000));
    // Quiet: a run while the limit lasts spends one request to learn that, no more.
    let requests = h.sim.github().requests;
    let again = h.drain().await;
    assert_eq!((again.figures.stop_reason, h.sim.github().requests), (StopReason::RateLimited, requests + 1));

    h.sim.github().set_rate_limit_remaining(1_750, HOUR);
    let resumed = h.drain().await;
    assert_eq!(resumed.figures.stop_reason, StopReason::Drained);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_secondary_rate_limit_waits_for_its_retry_after() {
    let h = Harness::start().await;
    h.add(events_between(500, 6 * HOUR, Duration::from_secs(1), 64));
    h.sim.github().faults.extend([None, Some(Fault::SecondaryLimit(Some(2)))]);

    let started = Instant::now();
    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert!(started.elapsed() >= Duration::from_secs(2), "retry-after was honoured");
    h.assert_exactly_once();
}

#[tokio::test]
async fn the_rate_limit_reserve_is_left_for_other_tools() {
    let mut h = Harness::start().await;
    h.extra_env.push(("RATE_LIMIT_RESERVE".to_owned(), "10".to_owned()));
    h.add(events_between(2_000, 6 * HOUR, Duration::from_secs(1), 65));
    h.sim.github().set_rate_limit_remaining(15, HOUR);

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::RateLimited);
    assert_eq!(summary.pages, 5, "15 left, 10 kept for others");
}

#[tokio::test]
async fn answers_that_need_a_human_fail_with_what_to_fix_and_keep_the_cursor() {
    for (status, hint) in [(403, "read:audit_log"), (404, "GITHUB_ORG"), (422, "GITHUB_PHRASE")] {
        let h = Harness::start().await;
        h.add(events_between(500, 6 * HOUR, Duration::from_secs(1), 66));
        h.sim.github().faults.extend([None, Some(Fault::Status(status))]);

        let failure = h.drain_with(&h.store(), Duration::from_secs(60), None).await.expect_err("fatal");

        let message = failure.to_string();
        assert!(message.contains(hint), "{status}: {message}");
        assert_eq!(failure.summary.figures.stop_reason, StopReason::Failed);
        assert_eq!(failure.summary.figures.events_forwarded, 100, "the page before was delivered and saved");
        h.drain().await;
        h.assert_exactly_once();
    }
}

#[tokio::test]
async fn intake_errors_are_retried_honouring_retry_after() {
    let h = Harness::start().await;
    h.add(events_between(600, 6 * HOUR, Duration::from_secs(1), 67));
    h.sim.intake().faults.extend([
        Some(Fault::Status(500)),
        None,
        Some(Fault::Status(503)),
        Some(Fault::RetryAfter(429, 1)),
        None,
        Some(Fault::Status(502)),
    ]);

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_lost_intake_answer_repeats_that_batch_only() {
    let h = Harness::start().await;
    h.add(events_between(600, 6 * HOUR, Duration::from_secs(1), 75));
    // The intake stores the second batch, then the connection drops before any status line:
    // the connector cannot know, and sends the batch again.
    h.sim.intake().faults.extend([None, Some(Fault::StoreThenDrop)]);

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    let received = h.received();
    let missing = h.sim.github().events().iter().filter(|e| !received.contains_key(&e.document_id)).count();
    let repeated: Vec<u32> = received.values().copied().filter(|n| *n > 1).collect();
    assert_eq!(missing, 0);
    assert_eq!(repeated.len(), PAGE, "exactly the dropped batch (one page) arrived twice");
    assert!(repeated.iter().all(|n| *n == 2));
}

#[tokio::test]
async fn an_intake_that_takes_smaller_bodies_gets_halves() {
    // The intake refuses bodies over 20 KB; the connector assumed 9 MiB.
    let h = Harness::with_options(SimOptions { intake_max_body_bytes: 20_000, ..SimOptions::default() }).await;
    h.add(events_between(400, 6 * HOUR, Duration::from_secs(1), 68));

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::Drained);
    assert_eq!(summary.figures.events_forwarded, 400);
    assert!(h.sim.intake().stats.rejected_batches > 0, "the intake did refuse the first bodies");
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_single_event_the_intake_refuses_under_our_limit_fails_the_run_and_loses_nothing() {
    // An intake whose limit is far lower than Sekoia's: one event alone is still too large.
    let h = Harness::with_options(SimOptions { intake_max_body_bytes: 20_000, ..SimOptions::default() }).await;
    let mut events = events_between(400, 6 * HOUR, Duration::from_secs(1), 68);
    let big = &mut events[150];
    big.json = big.json.replacen('{', &format!("{{\"padding\":\"{}\",", "x".repeat(30_000)), 1);
    let big_id = big.document_id.clone();
    h.add(events);

    let failure = h.drain_with(&h.store(), Duration::from_secs(60), None).await.expect_err("the run fails");

    let message = failure.to_string();
    assert!(message.contains(&big_id) && message.contains("SEKOIA_INTAKE_URL"), "{message}");
    assert_eq!(failure.summary.figures.events_forwarded, 100, "the page before it was delivered");
    assert!(!h.received().contains_key(&big_id));
    // The intake's limit is raised (as the operator would fix it): everything arrives, and what
    // the intake took of the failed page before the refusal arrives a second time.
    h.sim.intake().set_max_body_bytes(10 * 1024 * 1024);
    h.drain().await;
    let received = h.received();
    assert!(h.sim.github().events().iter().all(|e| received.contains_key(&e.document_id)), "nothing lost");
    let repeated: u32 = received.values().map(|n| n - 1).sum();
    assert!(repeated as usize <= PAGE, "{repeated} repeated, more than the failed page");
}

#[tokio::test]
async fn events_the_intake_refuses_inside_an_accepted_batch_are_reported_not_counted() {
    let h = Harness::start().await;
    let mut events = events_between(300, 6 * HOUR, Duration::from_secs(1), 76);
    let mut refused = Vec::new();
    for event in events.iter_mut().step_by(23) {
        event.json = event.json.replacen('{', &format!("{{\"padding\":\"{}\",", "x".repeat(3_000)), 1);
        refused.push(event.document_id.clone());
    }
    h.add(events);
    // An intake that takes events up to 2 KB only, leaving the others out of its `event_ids`.
    h.sim.intake().max_event_bytes = 2_000;

    let summary = h.drain().await;

    assert_eq!(summary.figures.intake_unacknowledged, refused.len() as u64);
    assert_eq!(summary.figures.events_forwarded, 300 - refused.len() as u64);
    let received = h.received();
    assert!(refused.iter().all(|id| !received.contains_key(id)));
    assert_eq!(received.len(), 300 - refused.len());
    let again = h.drain().await;
    assert_eq!(
        (again.figures.events_forwarded, again.figures.intake_unacknowledged),
        (0, 0),
        "reported once, not resent"
    );
}

#[tokio::test]
async fn a_rate_limit_said_only_in_the_message_stops_the_run_cleanly() {
    let h = Harness::start().await;
    h.add(events_between(500, 6 * HOUR, Duration::from_secs(1), 77));
    h.sim.github().faults.extend([None, Some(Fault::RateLimitMessageOnly)]);

    // A minute's wait does not fit a ten-second budget: the run stops, it does not fail.
    let summary = h.drain_with(&h.store(), Duration::from_secs(10), None).await.expect("a clean stop");

    assert_eq!(summary.figures.stop_reason, StopReason::RateLimited);
    assert_eq!(summary.figures.events_forwarded, 100);
    h.drain().await;
    h.assert_exactly_once();
}

#[tokio::test]
async fn absurd_rate_limit_headers_are_clamped_and_stop_the_run_cleanly() {
    let h = Harness::start().await;
    h.add(events_between(300, 6 * HOUR, Duration::from_secs(1), 78));
    h.sim.github().faults.extend([None, Some(Fault::AbsurdRateHeaders)]);

    let summary = h.drain().await;

    assert_eq!(summary.figures.stop_reason, StopReason::RateLimited);
    let reset = humantime::parse_rfc3339(&summary.rate_limit_reset.expect("a reset time")).expect("a time");
    assert!(reset <= std::time::SystemTime::now() + Duration::from_secs(24 * 3600 + 60), "clamped to a day");
    h.drain().await;
    h.assert_exactly_once();
}

#[tokio::test]
async fn empty_pages_that_keep_linking_on_stop_the_read_until_the_next_run() {
    let h = Harness::start().await;
    h.add(events_between(600, 6 * HOUR, Duration::from_secs(1), 79));
    h.sim.github().faults.extend([None, None, Some(Fault::EmptyPageWithNext), Some(Fault::EmptyPageWithNext)]);
    h.sim.github().faults.extend([Some(Fault::EmptyPageWithNext), Some(Fault::EmptyPageWithNext)]);

    let first = h.drain().await;

    // The first empty page links to itself: the pagination went round. Asked anew by time, GitHub
    // answers another empty page: nothing past the position this run, the read waits.
    assert_eq!(first.pages, 4, "two pages, an empty one linking to itself, one asked anew: {first:?}");
    assert_eq!((first.figures.events_forwarded, first.pagination_loops), (200, 1));
    h.drain().await;
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let h = Harness::start().await;
    h.add(events_between(500, 6 * HOUR, Duration::from_secs(1), 69));
    h.sim.github().faults.extend([None, Some(Fault::ForeignNextLink)]);

    let failure = h.drain_with(&h.store(), Duration::from_secs(60), None).await.expect_err("refused");

    assert!(failure.to_string().contains("evil.example.com"), "{failure}");
    assert_eq!(failure.summary.figures.events_forwarded, 100);
    h.drain().await;
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_slow_github_ends_the_run_at_its_budget_and_the_next_run_goes_on() {
    let h = Harness::start().await;
    h.add(events_between(600, 6 * HOUR, Duration::from_secs(1), 70));
    h.sim.github().faults.extend([None, Some(Fault::Delay(Duration::from_secs(5)))]);

    let summary = h.drain_with(&h.store(), Duration::from_secs(2), None).await.expect("drain");

    assert_eq!(summary.figures.stop_reason, StopReason::Budget);
    assert!(
        summary.figures.elapsed_seconds < 3.0,
        "no request outlived the budget: {}",
        summary.figures.elapsed_seconds
    );
    h.drain().await;
    h.assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_instants_loses_nothing_and_repeats_at_most_a_page_per_kill() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(15), ..SimOptions::default() }).await;
    h.add(events_between(8_000, 12 * HOUR, Duration::from_secs(1), 71));
    let mut rng = fastrand::Rng::with_seed(71);
    let mut kills = 0;
    for _ in 0..8 {
        let mut child = h.cli(&["run"], &[("LOG_LEVEL", "warn")]).spawn().expect("spawned");
        tokio::time::sleep(Duration::from_millis(rng.u64(40..600))).await;
        if child.try_wait().expect("status").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reaped");
    }
    let last = h.run_cli(&["run"], &[]).await;
    assert_eq!(summary(&last)["stop_reason"], "drained");

    let received = h.received();
    let missing = h.sim.github().events().iter().filter(|e| !e.git && !received.contains_key(&e.document_id)).count();
    let repeated: u32 = received.values().map(|n| n - 1).sum();
    assert!(kills >= 4, "the runs should mostly be killed mid-drain ({kills})");
    assert_eq!(missing, 0, "nothing lost after {kills} kills");
    assert!(repeated as usize <= kills * PAGE, "{repeated} repeats after {kills} kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_never_both_deliver() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(20), ..SimOptions::default() }).await;
    h.add(events_between(3_000, 12 * HOUR, Duration::from_secs(1), 72));

    let (a, b) = tokio::join!(h.run_cli(&["run"], &[]), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.run_cli(&["run"], &[]).await
    });

    let reasons = [summary(&a)["stop_reason"].clone(), summary(&b)["stop_reason"].clone()];
    assert_eq!(reasons, ["drained", "target_busy"]);
    h.assert_exactly_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_of_a_faulty_run_and_the_key_travels_in_the_body_only() {
    let options = SimOptions {
        token: "ghp_TOKENSECRET0123456789".to_owned(),
        intake_key: "INTAKEKEYSECRET-9876".to_owned(),
        ..SimOptions::default()
    };
    let h = Harness::with_options(options).await;
    h.add(events_between(700, 6 * HOUR, Duration::from_secs(1), 73));
    h.sim.github().faults.random(9, 20, 0.3, &[Fault::Status(502), Fault::BrokenBody]);
    h.sim.intake().faults.random(10, 20, 0.3, &[Fault::Status(503)]);

    let mut outputs = vec![h.run_cli(&["run"], &[("LOG_LEVEL", "debug")]).await];
    h.add(events_between(50, Duration::from_secs(100), Duration::from_secs(1), 74));
    h.sim.intake().set_key("rotated-away");
    outputs.push(h.run_cli(&["run"], &[("LOG_LEVEL", "debug")]).await);
    outputs.push(h.run_cli(&["run"], &[("LOG_LEVEL", "debug"), ("GITHUB_TOKEN", "ghp_WRONGSECRET555")]).await);

    assert_eq!(summary(&outputs[1])["stop_reason"], "failed", "the rejected key is fatal");
    for output in &outputs {
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        for secret in ["ghp_TOKENSECRET0123456789", "INTAKEKEYSECRET-9876", "ghp_WRONGSECRET555"] {
            assert!(!text.contains(secret), "{secret} leaked into the output");
        }
    }
    assert_eq!(h.sim.intake().stats.key_in_headers, 0);
}

#[tokio::test]
async fn a_stored_link_edited_to_another_host_is_discarded_and_the_token_goes_nowhere_else() {
    // Someone else's host: it counts whoever connects to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a listener");
    let elsewhere = listener.local_addr().expect("its address");
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let h = Harness::start().await;
    let second = (github_audit_sekoia::timefmt::now_ms() - 3_600_000) / 1000 * 1000;
    // 450 events in one second: the stored link points into the middle of it.
    h.add(github_audit_sekoia_sim::generate_events(450, second, second + 999, 0.0, common::ORG, 80));
    h.add(events_between(300, Duration::from_secs(3000), Duration::from_secs(1), 81));
    // A run that can afford two pages stops inside that second, keeping GitHub's link.
    h.sim.github().set_rate_limit_remaining(89, HOUR);
    assert_eq!(h.drain().await.figures.stop_reason, StopReason::RateLimited);

    let path = h.store().path_for("orgs/acme/web");
    let stored = std::fs::read_to_string(&path).expect("the checkpoint");
    let tampered = stored.replace(&h.sim.github_url, &format!("http://{elsewhere}"));
    assert_ne!(stored, tampered, "a next-page link was stored");
    std::fs::write(&path, tampered).expect("edited");
    h.sim.github().set_rate_limit_remaining(1_750, HOUR);

    let resumed = h.drain().await;

    assert_eq!(resumed.figures.stop_reason, StopReason::Drained);
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing went to the other host");
    h.assert_exactly_once();
}

#[tokio::test]
async fn an_event_github_returns_outside_the_range_asked_for_is_held_back_and_counted() {
    let h = Harness::start().await;
    h.add(events_between(400, 6 * HOUR, Duration::from_secs(1), 82));
    h.sim.github().faults.extend([None, Some(Fault::EventOutsideRange)]);

    let summary = h.drain().await;

    assert_eq!(summary.out_of_range_events, 1);
    assert!(!h.received().contains_key("outside-the-range"));
    h.assert_exactly_once();
}

#[tokio::test]
async fn pagination_that_goes_round_costs_a_request_or_two_and_delivers_every_event_once() {
    for (fault, seed) in [(Fault::NextLinkToItself, 71), (Fault::NextLinkToFirstPage, 72)] {
        let h = Harness::start().await;
        h.add(events_between(3_000, 6 * HOUR, Duration::from_secs(1), seed));
        // From the fifth request on, for as long as the run goes: every next link leads back.
        h.sim.github().faults.extend(std::iter::repeat_n(None, 4).chain(std::iter::repeat_n(Some(fault.clone()), 500)));

        let summary = h.drain().await;

        h.assert_exactly_once();
        assert_eq!((summary.figures.stop_reason, summary.pagination_loops), (StopReason::Drained, 1), "{fault:?}");
        let requests = h.sim.github().requests;
        // 30 pages, the one answer that went back, the sweeps' due requests, and the seconds each
        // new query reads again.
        assert!(requests <= 30 + 6, "{fault:?}: 3,000 events took {requests} requests");
        // The next run starts from the position by time: no looping link was kept.
        let checkpoint = h.checkpoint();
        assert!(checkpoint.passes.is_empty(), "{fault:?}: {:?}", checkpoint.passes);
    }
}
