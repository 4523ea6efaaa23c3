//! What the three reads cost in GitHub requests, and what they save through an indexing stall.
//!
//! Hours of a live audit log are played against the loopback simulator with a clock moved by
//! hand (shared by the simulator and the drain), through the real GitHub source, intake sink
//! and file store. Figures are counts, not timings, so they repeat exactly for a seed.
//! Run by `make bench`; writes `target/bench/read-cost.txt` as well as printing it.

use std::fmt::Write as _;
use std::time::Duration;

use github_audit_sekoia::cursor::FileCursorStore;
use github_audit_sekoia::timefmt::now_ms;
use github_audit_sekoia_sim::{LiveLog, Stall};

mod common;
use common::{HOUR, MINUTE, Stage, publish};

/// How long after its `@timestamp` GitHub shows an event, at most, outside a stall.
const MAX_DELAY: Duration = Duration::from_secs(10);

struct Scenario {
    per_hour: f64,
    schedule: Duration,
    window: Duration,
    /// `LATE_SWEEP_AFTER`: "0" (off), "1h", "1h,6h" (the default).
    deep_sweep: &'static str,
    stall: Option<Stall>,
    /// Played for this long; measured from `steady_after` on.
    hours: u64,
    steady_after: Duration,
}

struct Outcome {
    requests_per_100: f64,
    requests_per_run_mean: f64,
    requests_per_run_max: u64,
    events: usize,
    /// Made visible later than the usual indexing delay (a stall held them back).
    held: usize,
    lost: usize,
    repeated: u32,
}

async fn play(scenario: &Scenario, seed: u64) -> Outcome {
    // On a whole hour, so that second and minute borders fall alike in every run.
    let start = (now_ms() / 3_600_000 - scenario.hours as i64 - 1) * 3_600_000;
    let span = HOUR * scenario.hours as u32;
    let log = LiveLog {
        start_ms: start,
        span,
        per_second: scenario.per_hour / 3600.0,
        max_delay: MAX_DELAY,
        stall: scenario.stall,
        seed,
    };
    let state = tempfile::tempdir().expect("a state directory");
    let vars = [
        ("STATE_DIR", state.path().display().to_string()),
        ("LATE_ARRIVAL_WINDOW", format!("{}s", scenario.window.as_secs())),
        ("LATE_SWEEP_AFTER", scenario.deep_sweep.to_owned()),
    ];
    let stage = Stage::start(&log, &vars).await;
    let store = FileCursorStore::new(state.path());

    let steady_from = start + scenario.steady_after.as_millis() as i64;
    let end = start + (span + HOUR).as_millis() as i64;
    let (mut requests, mut delivered, mut per_run) = (0u64, 0u64, Vec::new());
    while stage.clock.now_ms() < end {
        let before = stage.sim.github().requests;
        let summary = stage.run(&store).await;
        let spent = stage.sim.github().requests - before;
        let now = stage.clock.now_ms();
        if now >= steady_from && now < start + span.as_millis() as i64 {
            requests += spent;
            delivered += summary.figures.events_forwarded;
            per_run.push(spent);
        }
        stage.clock.advance(scenario.schedule);
    }
    let (lost, repeated) = stage.lost_and_repeated();
    Outcome {
        requests_per_100: requests as f64 * 100.0 / delivered.max(1) as f64,
        requests_per_run_mean: per_run.iter().sum::<u64>() as f64 / per_run.len().max(1) as f64,
        requests_per_run_max: per_run.iter().copied().max().unwrap_or(0),
        events: stage.ids.len(),
        held: stage.held,
        lost,
        repeated,
    }
}

fn label(deep_sweep: &str) -> &str {
    if deep_sweep == "0" { "off" } else { deep_sweep }
}

#[tokio::main]
async fn main() {
    let mut report = String::new();
    let window = 5 * MINUTE;
    let _ = writeln!(
        report,
        "GitHub requests per 100 events delivered, steady state, 20,000 events/h, window 5m\n\
         (goals: <= 2.2 with the deep sweep off, <= 3.3 with one, <= 4.4 with two)\n\n\
         {:<10} {:<12} {:>16} {:>14} {:>8} {:>9}",
        "schedule", "deep sweeps", "requests/100 ev", "requests/run", "lost", "repeated"
    );
    for schedule in [5 * MINUTE, MINUTE] {
        for deep_sweep in ["0", "1h", "1h,6h"] {
            // Steady once the deepest sweep has come round.
            let (hours, steady_after) = if deep_sweep == "1h,6h" { (10, 7 * HOUR) } else { (4, 2 * HOUR) };
            let scenario =
                Scenario { per_hour: 20_000.0, schedule, window, deep_sweep, stall: None, hours, steady_after };
            let outcome = play(&scenario, 1).await;
            let _ = writeln!(
                report,
                "{:<10} {:<12} {:>16.2} {:>14.1} {:>8} {:>9}",
                format!("{}m (1:{})", schedule.as_secs() / 60, window.as_secs() / schedule.as_secs()),
                label(deep_sweep),
                outcome.requests_per_100,
                outcome.requests_per_run_mean,
                outcome.lost,
                outcome.repeated
            );
        }
    }

    let quiet = play(
        &Scenario {
            per_hour: 50.0,
            schedule: 5 * MINUTE,
            window,
            deep_sweep: "1h,6h",
            stall: None,
            hours: 10,
            steady_after: 7 * HOUR,
        },
        2,
    )
    .await;
    let _ = writeln!(
        report,
        "\nA quiet org, 50 events/h, every 5m, deep sweeps 1h,6h (goal: at most 4 requests a run):\n\
         {:.2} requests a run on average, {} at most; lost {}, repeated {}",
        quiet.requests_per_run_mean, quiet.requests_per_run_max, quiet.lost, quiet.repeated
    );

    let stalls = [
        ("15m (three windows), released at 2x real time, every 1m", 15 * MINUTE, 2, MINUTE, 3),
        ("4h (GitHub's worst reported), released at 8x real time, every 5m", 4 * HOUR, 8, 5 * MINUTE, 12),
    ];
    for (name, lasts, release_speed, schedule, hours) in stalls {
        let _ = writeln!(report, "\nAn indexing stall of {name}, 20,000 events/h:");
        for deep_sweep in ["0", "1h", "1h,6h"] {
            let stall = Some(Stall { after: HOUR, lasts, release_speed });
            let scenario = Scenario {
                per_hour: 20_000.0,
                schedule,
                window,
                deep_sweep,
                stall,
                hours,
                steady_after: Duration::ZERO,
            };
            let outcome = play(&scenario, 3).await;
            let _ = writeln!(
                report,
                "  deep sweeps {:<9} lost {:>5} of the {} events the stall held back ({:.1} %; {} events in all), repeated {}",
                label(deep_sweep),
                outcome.lost,
                outcome.held,
                outcome.lost as f64 * 100.0 / outcome.held.max(1) as f64,
                outcome.events,
                outcome.repeated
            );
        }
    }

    publish("read-cost.txt", &report);
}
