//! Push mode's memory stays flat whatever the object's size: one object of 200,000 events
//! (about 120 MB of JSON) is forwarded by `forward-s3` in about the memory of one of 20,000.
//! The peak is the child's own high-water mark (`VmHWM`), read while it runs. Run through
//! `scripts/with-moto.sh` (as `make test` does).

mod common;

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use common::aws::{aws, moto_env, unique};
use common::{Harness, events_between};
use github_audit_sekoia_sim::{streamed_file, streamed_file_key};

/// A process's peak resident set so far, in KiB (Linux: `VmHWM`, reset by `exec`).
fn high_water_mark_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
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
    let mut child = h
        .cli(&["forward-s3", "--bucket", &bucket], &[("LOG_LEVEL", "warn")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawned");
    let mut peak = 0;
    let status = loop {
        // Read before the exit check: the last reading is taken while the process still runs.
        peak = peak.max(high_water_mark_kib(child.id()).unwrap_or(0));
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
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
