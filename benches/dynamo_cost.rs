//! What the DynamoDB cursor store costs per event: write and read request units per 1,000
//! events delivered, and US dollars per million events at on-demand prices.
//!
//! Runs inside `scripts/with-moto.sh scripts/dynamo_meter.py` (as `make bench` does): the store
//! talks to moto's server through the meter, which bills every request the way AWS does. The
//! audit log is played with a clock moved by hand, as in `read_cost`. Writes
//! `target/bench/dynamo-cost.txt` as well as printing it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use github_audit_sekoia::cursor::DynamoCursorStore;
use github_audit_sekoia::timefmt::now_ms;
use github_audit_sekoia_sim::LiveLog;
use serde_json::Value;

mod common;
use common::{HOUR, MINUTE, Stage, aws, publish};

/// On-demand prices (us-east-1): per million write request units (1 KB each) and per million
/// read request units (4 KB each, strongly consistent).
const USD_PER_MILLION_WRITES: f64 = 0.625;
const USD_PER_MILLION_READS: f64 = 0.125;
/// Goals per 1,000 events at the live rate.
const WRITE_GOAL: f64 = 60.0;
const READ_GOAL: f64 = 30.0;

struct Case {
    name: &'static str,
    per_hour: f64,
    /// Every run reads what GitHub shows then; a backlog is all there at the first run.
    schedule: Option<Duration>,
    window: Duration,
    deep_sweep: &'static str,
    played: Duration,
    steady_after: Duration,
}

/// Write units, read units and requests, by DynamoDB operation.
#[derive(Default, Clone)]
struct Units(BTreeMap<String, [f64; 3]>);

impl Units {
    fn since(&self, earlier: &Units) -> Units {
        let mut spent = self.0.clone();
        for (operation, figures) in &mut spent {
            let before = earlier.0.get(operation).copied().unwrap_or_default();
            figures.iter_mut().zip(before).for_each(|(figure, before)| *figure -= before);
        }
        Units(spent)
    }

    fn total(&self) -> [f64; 3] {
        self.0.values().fold([0.0; 3], |sum, f| [sum[0] + f[0], sum[1] + f[1], sum[2] + f[2]])
    }
}

async fn metered(meter: &str) -> Units {
    let text = reqwest::get(meter).await.expect("the meter answers").text().await.expect("a body");
    let totals: Value = serde_json::from_str(&text).expect("JSON");
    let operations = totals["by_operation"].as_object().expect("by operation");
    let figure = |entry: &Value, name: &str| entry[name].as_f64().expect("a number");
    Units(
        operations
            .iter()
            .map(|(name, e)| (name.clone(), [figure(e, "write_units"), figure(e, "read_units"), figure(e, "requests")]))
            .collect(),
    )
}

struct Outcome {
    units: Units,
    events: u64,
    lost: usize,
    repeated: u32,
}

async fn play(case: &Case, client: &aws_sdk_dynamodb::Client, meter: &str) -> Outcome {
    let start = (now_ms() / 3_600_000 - 12) * 3_600_000;
    let log = LiveLog {
        start_ms: start,
        span: case.played,
        per_second: case.per_hour / 3600.0,
        max_delay: Duration::from_secs(10),
        stall: None,
        seed: 7,
    };
    let table = aws::create_table().await;
    let vars = [
        ("CURSOR_TABLE", table.clone()),
        ("LATE_ARRIVAL_WINDOW", format!("{}s", case.window.as_secs())),
        ("LATE_SWEEP_AFTER", case.deep_sweep.to_owned()),
    ];
    let stage = Stage::start(&log, &vars).await;
    let store = DynamoCursorStore::new(client.clone(), table);
    let end = start + case.played.as_millis() as i64;
    let steady_from = start + case.steady_after.as_millis() as i64;
    let (mut before, mut events) = (None, 0);
    let Some(schedule) = case.schedule else {
        stage.clock.advance(case.played + MINUTE);
        let before = metered(meter).await;
        loop {
            let summary = stage.run(&store).await;
            events += summary.figures.events_forwarded;
            if summary.figures.events_forwarded == 0 {
                break;
            }
        }
        let (lost, repeated) = stage.lost_and_repeated();
        return Outcome { units: metered(meter).await.since(&before), events, lost, repeated };
    };
    while stage.clock.now_ms() < end {
        if before.is_none() && stage.clock.now_ms() >= steady_from {
            before = Some(metered(meter).await);
        }
        let summary = stage.run(&store).await;
        if before.is_some() {
            events += summary.figures.events_forwarded;
        }
        stage.clock.advance(schedule);
    }
    let units = metered(meter).await.since(&before.unwrap_or_default());
    // The runs after the end catch up with the last events, unmetered, to count losses.
    for _ in 0..3 {
        stage.clock.advance(case.window + MINUTE);
        stage.run(&store).await;
    }
    let (lost, repeated) = stage.lost_and_repeated();
    Outcome { units, events, lost, repeated }
}

#[tokio::main]
async fn main() {
    let Ok(meter) = std::env::var("DYNAMO_METER_URL") else {
        eprintln!("dynamo_cost measures through scripts/dynamo_meter.py inside scripts/with-moto.sh: run `make bench`");
        return;
    };
    let client = aws_sdk_dynamodb::Client::new(&aws::aws().await);
    let cases = [
        Case {
            name: "backlog, 20,000 events over 2h",
            per_hour: 10_000.0,
            schedule: None,
            window: 5 * MINUTE,
            deep_sweep: "1h,6h",
            played: 2 * HOUR,
            steady_after: Duration::ZERO,
        },
        Case {
            name: "live 180,000/h, every 5s, window 25s (1:5, compressed)",
            per_hour: 180_000.0,
            schedule: Some(Duration::from_secs(5)),
            window: Duration::from_secs(25),
            deep_sweep: "5m,30m",
            played: 40 * MINUTE,
            steady_after: 32 * MINUTE,
        },
        Case {
            name: "live 180,000/h, every 1m, window 5m (1:5)",
            per_hour: 180_000.0,
            schedule: Some(MINUTE),
            window: 5 * MINUTE,
            deep_sweep: "1h",
            played: 90 * MINUTE,
            steady_after: 65 * MINUTE,
        },
    ];
    let mut report = format!(
        "DynamoDB request units per 1,000 events delivered, as AWS bills them (moto behind scripts/dynamo_meter.py);\n\
         USD per million events at on-demand prices ({USD_PER_MILLION_WRITES} per million writes, \
         {USD_PER_MILLION_READS} per million reads). Goals at the live rate: <= {WRITE_GOAL} write, <= {READ_GOAL} read.\n\n\
         {:<56} {:>8} {:>8} {:>9} {:>10} {:>8} {:>6} {:>8}\n",
        "case", "writes", "reads", "requests", "USD/M ev", "events", "lost", "repeated"
    );
    // Like libtest: `cargo bench --bench dynamo_cost -- live` plays the cases whose name holds "live".
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for case in cases.iter().filter(|c| filter.iter().all(|f| c.name.contains(f.as_str()))) {
        let outcome = play(case, &client, &meter).await;
        let per_1000 = |units: f64| units * 1000.0 / outcome.events.max(1) as f64;
        let [writes, reads, requests] = outcome.units.total().map(per_1000);
        let usd = (writes * USD_PER_MILLION_WRITES + reads * USD_PER_MILLION_READS) / 1000.0;
        eprintln!("{}: {writes:.1} write and {reads:.1} read units per 1,000 events", case.name);
        let _ = writeln!(
            report,
            "{:<56} {:>8.1} {:>8.1} {:>9.1} {:>10.4} {:>8} {:>6} {:>8}",
            case.name, writes, reads, requests, usd, outcome.events, outcome.lost, outcome.repeated
        );
        for (operation, figures) in outcome.units.0.iter().filter(|(_, f)| f.iter().any(|n| *n > 0.0)) {
            let [writes, reads, requests] = figures.map(per_1000);
            let _ = writeln!(report, "  {operation:<54} {writes:>8.1} {reads:>8.1} {requests:>9.1}");
        }
    }
    publish("dynamo-cost.txt", &report);
}
