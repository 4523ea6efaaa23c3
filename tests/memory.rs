//! Memory stays flat whatever comes in: push mode forwards one object of 200,000 events (about
//! 120 MB of JSON) in about the memory of one of 20,000, and a drain whose GitHub answers a
//! page with a gigabyte, plain or gzipped, takes no more than twice a normal drain's. The peak is the child's own
//! high-water mark (`VmHWM`), read while it runs. Run through `scripts/with-moto.sh` (as
//! `make test` does).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use common::aws::{aws, moto_env, unique};
use common::{Harness, events_between};
use github_audit_sekoia_sim::{Fault, streamed_file, streamed_file_key};

/// A process's peak resident set so far, in KiB (Linux: `VmHWM`, reset by `exec`).
fn high_water_mark_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `command` to its end: its exit status and peak resident set, in KiB.
async fn run_measuring_peak(mut command: std::process::Command) -> (std::process::ExitStatus, u64) {
    let mut child = command.stdout(std::process::Stdio::null()).spawn().expect("spawned");
    let mut peak = 0;
    let status = loop {
        // Read before the exit check: the last reading is taken while the process still runs.
        peak = peak.max(high_water_mark_kib(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    (status, peak)
}

/// One bucket holding one object of `count` events; forwarded, then its (events/s, peak KiB).
async fn forward_one_object(h: &Harness, count: usize, seed: u64) -> (f64, u64) {
    let sdk = aws().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = unique("audit-stream");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let events = events_between(count, Duration::from_secs(6 * 3_600), Duration::from_secs(600), seed);
    let key = streamed_file_key(events[0].timestamp_ms, seed);
    s3.put_object().bucket(&bucket).key(&key).body(ByteStream::from(streamed_file(&events))).send().await.expect("put");
    let ids: Vec<String> = events.iter().map(|e| e.document_id.clone()).collect();
    drop(events);

    let started = Instant::now();
    let (status, peak) =
        run_measuring_peak(h.cli(&["forward-s3", "--bucket", &bucket], &[("LOG_LEVEL", "warn")])).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "forward-s3 failed");
    let received = h.received();
    let missing = ids.iter().filter(|id| !received.contains_key(*id)).count();
    let repeated = ids.iter().filter(|id| received.get(*id).is_some_and(|n| *n > 1)).count();
    assert_eq!((missing, repeated), (0, 0), "(missing, repeated) of {count}");
    (count as f64 / seconds, peak)
}

#[tokio::test]
async fn an_object_ten_times_larger_takes_no_more_memory() {
    let mut h = Harness::start().await;
    h.extra_env.extend(moto_env());
    let (_, small_peak) = forward_one_object(&h, 20_000, 31).await;
    let (rate, large_peak) = forward_one_object(&h, 200_000, 32).await;
    eprintln!(
        "push mode, one object of 200,000 events: {rate:.0} events/s, peak {} MiB (20,000 events: {} MiB; debug build)",
        large_peak / 1024,
        small_peak / 1024
    );
    assert!(large_peak < small_peak + 16 * 1024, "peak {large_peak} KiB against {small_peak} KiB for a tenth of it");
}

/// A CLI drain of 3,000 events with `faults` scripted on GitHub: its peak KiB, once every
/// event arrived exactly once.
async fn drain_measuring_peak(faults: Vec<Option<Fault>>) -> u64 {
    let h = Harness::start().await;
    h.add(events_between(3_000, Duration::from_secs(6 * 3_600), Duration::from_secs(1), 41));
    h.sim.github().faults.extend(faults);
    let (status, peak) = run_measuring_peak(h.cli(&["run"], &[("LOG_LEVEL", "warn")])).await;
    assert!(status.success(), "the drain failed");
    assert_eq!(h.sim.github().faults.remaining(), 0, "every scripted fault was met");
    h.assert_exactly_once();
    peak
}

#[tokio::test]
async fn a_gigabyte_page_plain_or_gzipped_is_dropped_at_its_cap_and_the_drain_goes_on() {
    let normal = drain_measuring_peak(vec![]).await;
    for (what, fault) in [
        ("a 1 GiB page answered once", Fault::HugeBody(1 << 30)),
        ("a page of 1 MiB inflating to 1 GiB", Fault::GzipBomb(1 << 30)),
    ] {
        let flooded = drain_measuring_peak(vec![None, Some(fault), None]).await;
        eprintln!("drain of 3,000 events: peak {} MiB; with {what}: {} MiB", normal / 1024, flooded / 1024);
        assert!(flooded < 2 * normal, "peak {flooded} KiB with {what} against {normal} KiB without");
    }
}
