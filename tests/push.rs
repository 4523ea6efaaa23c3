//! Push mode end to end: files as GitHub's stream writes them, in moto's S3, forwarded to the
//! simulated intake by `forward-s3` and by the Lambda handler fed the queue's S3 notifications.
//! Asserted by `_document_id`. Run through `scripts/with-moto.sh` (as `make test` does).

mod common;

use std::time::Duration;

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use common::aws::{aws, create_bucket, create_secret, create_table, invocation, moto_env, put, s3, unique};
use common::{Harness, events_between};
use github_audit_sekoia::config::PushConfig;
use github_audit_sekoia::forwarder::Forwarder;
use github_audit_sekoia::lambda::{Function, dispatch};
use github_audit_sekoia::push::{CHUNK_BYTES, PushSummary};
use github_audit_sekoia_sim::{SimEvent, SimOptions, streamed_file, streamed_file_key};
use serde_json::{Value, json};

fn ids(events: &[SimEvent]) -> Vec<String> {
    events.iter().map(|e| e.document_id.clone()).collect()
}

fn ndjson(events: &[SimEvent]) -> Vec<u8> {
    events.iter().map(|e| format!("{}\n", e.json)).collect::<String>().into_bytes()
}

fn json_array(events: &[SimEvent]) -> Vec<u8> {
    format!("[{}]", events.iter().map(|e| e.json.as_str()).collect::<Vec<_>>().join(",\n")).into_bytes()
}

/// A harness whose CLI reaches moto for S3 (and keeps its files under the harness's state folder).
async fn push_harness(options: SimOptions) -> Harness {
    let mut h = Harness::with_options(options).await;
    h.extra_env.extend(moto_env());
    h.extra_env.push(("LOG_LEVEL".into(), "warn".into()));
    h
}

/// `forward-s3` through the CLI.
async fn forward_s3(h: &Harness, bucket: &str) -> (std::process::ExitStatus, PushSummary) {
    let output = h.run_cli(&["forward-s3", "--bucket", bucket], &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().last().and_then(|line| serde_json::from_str(line).ok()).unwrap_or_else(|| {
        panic!("no summary; stderr: {}", String::from_utf8_lossy(&output.stderr));
    });
    (output.status, summary)
}

#[tokio::test]
async fn forward_s3_sends_every_event_once_from_overlapping_files_and_nothing_the_second_time() {
    let h = push_harness(SimOptions::default()).await;
    let bucket = create_bucket().await;
    let events = events_between(600, Duration::from_secs(7_200), Duration::from_secs(3_600), 11);
    let start = events[0].timestamp_ms;
    put(&bucket, &streamed_file_key(start, 1), streamed_file(&events[..300])).await;
    // At least once: part of the first file again beside new events, plain NDJSON and an array.
    put(&bucket, &streamed_file_key(start + 60_000, 2), ndjson(&events[250..450])).await;
    put(&bucket, &streamed_file_key(start + 120_000, 3), json_array(&events[450..])).await;
    // The whole first file delivered a second time under another key.
    put(&bucket, &streamed_file_key(start + 180_000, 4), streamed_file(&events[..300])).await;
    // What GitHub's endpoint check may leave behind.
    put(&bucket, "github-audit-log-stream-check.json", br#"{"message":"endpoint check"}"#.to_vec()).await;

    let (status, first) = forward_s3(&h, &bucket).await;
    assert!(status.success(), "{first:?}");
    h.assert_exactly(&ids(&events));
    assert_eq!((first.objects_forwarded, first.objects_skipped, first.objects_failed), (4, 1, 0), "{first:?}");
    assert_eq!((first.figures.events_forwarded, first.figures.duplicates_skipped), (600, 350));
    assert_eq!(first.figures.target, format!("s3/{bucket}"));

    let (status, second) = forward_s3(&h, &bucket).await;
    assert!(status.success());
    assert_eq!((second.objects_already_forwarded, second.figures.events_forwarded), (5, 0), "{second:?}");
    h.assert_exactly(&ids(&events));
}

/// A queue the bucket notifies of every object created, as the template wires them.
async fn notifying_queue(bucket: &str) -> String {
    let sdk = aws().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs.create_queue().queue_name(unique("stream-objects")).send().await.expect("queue");
    let url = url.queue_url().expect("queue url").to_owned();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes");
    let arn = attributes.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)).cloned();
    let queue = QueueConfiguration::builder()
        .queue_arn(arn.expect("queue arn"))
        .events(Event::S3ObjectCreated)
        .build()
        .expect("queue configuration");
    s3(&sdk)
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(NotificationConfiguration::builder().queue_configurations(queue).build())
        .send()
        .await
        .expect("notification");
    url
}

/// Every message waiting in the queue, as Lambda's event source mapping hands them over.
async fn sqs_batch(queue_url: &str, expected: usize) -> Value {
    let sqs = aws_sdk_sqs::Client::new(&aws().await);
    let mut records = Vec::new();
    for _ in 0..20 {
        let answer =
            sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await.expect("received");
        for message in answer.messages() {
            let body = message.body().unwrap_or_default();
            // S3 announces the notification's set-up with a test event of its own.
            if !body.contains("ObjectCreated") {
                continue;
            }
            records.push(json!({
                "messageId": message.message_id(), "receiptHandle": message.receipt_handle(), "body": body,
                "attributes": {}, "messageAttributes": {}, "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:stream-objects",
                "awsRegion": "us-east-1",
            }));
        }
        if records.len() >= expected {
            break;
        }
    }
    assert_eq!(records.len(), expected, "notifications in the queue");
    json!({ "Records": records })
}

fn failed_messages(answer: &Value) -> Vec<String> {
    let failures = answer["batchItemFailures"].as_array().cloned().unwrap_or_default();
    failures.iter().filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned)).collect()
}

fn message_id_of(batch: &Value, key_part: &str) -> String {
    let records = batch["Records"].as_array().expect("records");
    let record = records.iter().find(|r| r["body"].as_str().is_some_and(|b| b.contains(key_part))).expect("message");
    record["messageId"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn the_function_fed_by_the_queue_forwards_each_object_once_and_hands_back_only_a_corrupt_one() {
    let h = Harness::start().await;
    let bucket = create_bucket().await;
    let queue = notifying_queue(&bucket).await;
    let table = create_table().await;
    // A push-only deployment's secret: the intake key and nothing of GitHub.
    let secret = create_secret(json!({"sekoia_intake_key": SimOptions::default().intake_key})).await;
    let vars = [
        ("SEKOIA_INTAKE_URL", h.sim.intake_url.clone()),
        ("SECRET_ID", secret),
        ("CURSOR_TABLE", table),
        ("STREAM_BUCKET", bucket.clone()),
    ];
    let config =
        PushConfig::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).expect("config");
    let function = Function { pull: None, push: Forwarder::new(config).await.expect("forwarder") };

    let events = events_between(400, Duration::from_secs(3_600), Duration::from_secs(600), 12);
    let start = events[0].timestamp_ms;
    put(&bucket, &streamed_file_key(start, 1), streamed_file(&events[..250])).await;
    put(&bucket, &streamed_file_key(start + 60_000, 2), ndjson(&events[200..])).await;
    let mut corrupt = streamed_file(&events[..50]);
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x5a;
    put(&bucket, &streamed_file_key(start + 120_000, 3), corrupt).await;
    let batch = sqs_batch(&queue, 3).await;

    let answer = dispatch(&function, invocation(batch.clone(), Duration::from_secs(120))).await.expect("handled");
    // The file name of the third object (keys come URL-encoded in notifications).
    assert_eq!(failed_messages(&answer), vec![message_id_of(&batch, "00000003-0000-4000")]);
    h.assert_exactly(&ids(&events));

    // The queue hands the same messages over again (a visibility timeout ran out).
    let again = dispatch(&function, invocation(batch.clone(), Duration::from_secs(120))).await.expect("handled");
    assert_eq!(failed_messages(&again).len(), 1, "only the corrupt object fails again");
    h.assert_exactly(&ids(&events));
}

#[tokio::test]
async fn a_kill_mid_object_repeats_at_most_the_body_in_flight() {
    let h = push_harness(SimOptions { intake_latency: Duration::from_millis(400), ..SimOptions::default() }).await;
    let bucket = create_bucket().await;
    let events = events_between(30_000, Duration::from_secs(7_200), Duration::from_secs(600), 13);
    put(&bucket, &streamed_file_key(events[0].timestamp_ms, 1), streamed_file(&events)).await;
    let smallest = events.iter().map(|e| e.json.len()).min().expect("events");
    let per_body = CHUNK_BYTES / smallest + 1;

    let mut rng = fastrand::Rng::with_seed(13);
    let mut kills = 0;
    for _ in 0..3 {
        let before = h.received().values().sum::<u32>();
        let mut child = h
            .cli(&["forward-s3", "--bucket", &bucket], &[])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawned");
        // Once a body went through, at a random instant of the next ones.
        while h.received().values().sum::<u32>() == before && child.try_wait().expect("status").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
        if child.try_wait().expect("status").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reaped");
    }
    let (status, last) = forward_s3(&h, &bucket).await;

    assert!(status.success(), "{last:?}");
    assert!(kills >= 2, "the runs should be killed mid-object ({kills})");
    let (missing, repeated) = h.missing_and_repeated(&ids(&events));
    assert_eq!(missing, 0, "nothing lost after {kills} kills");
    assert!(repeated as usize <= kills * per_body, "{repeated} repeats after {kills} kills, {per_body} events a body");
}

#[tokio::test]
async fn forward_s3_longer_than_its_time_budget_goes_on_in_passes_and_counts_each_object_once() {
    let h = push_harness(SimOptions { intake_latency: Duration::from_millis(300), ..SimOptions::default() }).await;
    let bucket = create_bucket().await;
    let events = events_between(45_000, Duration::from_secs(7_200), Duration::from_secs(600), 14);
    for (n, part) in events.chunks(15_000).enumerate() {
        put(&bucket, &streamed_file_key(part[0].timestamp_ms, n as u64), streamed_file(part)).await;
    }

    let output = h.run_cli(&["forward-s3", "--bucket", &bucket], &[("MAX_RUN_SECONDS", "1")]).await;

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: PushSummary =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default())
            .expect("summary");
    assert_eq!(
        (summary.objects_forwarded, summary.objects_failed, summary.figures.events_forwarded),
        (3, 0, 45_000),
        "{summary:?}"
    );
    h.assert_exactly(&ids(&events));
}

#[tokio::test]
async fn forward_s3_whose_passes_get_nowhere_stops_saying_so_instead_of_looping() {
    // An intake slower than a whole pass: no body is ever acknowledged within one.
    let h = push_harness(SimOptions { intake_latency: Duration::from_secs(20), ..SimOptions::default() }).await;
    let bucket = create_bucket().await;
    let events = events_between(100, Duration::from_secs(600), Duration::from_secs(60), 15);
    put(&bucket, &streamed_file_key(events[0].timestamp_ms, 1), streamed_file(&events)).await;

    let output = h.run_cli(&["forward-s3", "--bucket", &bucket], &[("MAX_RUN_SECONDS", "1")]).await;

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("forwarded nothing before its time ran out: raise MAX_RUN_SECONDS"), "{stderr}");
}

#[tokio::test]
async fn streamed_git_events_arrive_dated_and_excluded_actions_never_reach_the_intake() {
    let now = github_audit_sekoia::timefmt::now_ms();
    let events = github_audit_sekoia_sim::generate_events(400, now - 7_200_000, now - 3_600_000, 0.5, "acme", 53);
    let (git, web): (Vec<SimEvent>, Vec<SimEvent>) = events.iter().cloned().partition(|e| e.git);
    let mut h = push_harness(SimOptions::default()).await;
    let bucket = create_bucket().await;
    put(&bucket, &streamed_file_key(events[0].timestamp_ms, 1), streamed_file(&events)).await;

    let (status, dated) = forward_s3(&h, &bucket).await;
    assert!(status.success(), "{dated:?}");
    h.assert_exactly(&ids(&events));
    for (text, event) in h.sim.intake().texts.iter().zip(&events) {
        let expected = match event.git {
            true => format!(r#"{{"created_at":{},{}"#, event.timestamp_ms, &event.json[1..]),
            false => event.json.clone(),
        };
        assert_eq!(*text, expected, "git events dated by their @timestamp, web events byte for byte");
    }

    // Another bucket, git.* excluded: counted, never sent, and nothing posted the second time.
    let other = create_bucket().await;
    put(&other, &streamed_file_key(events[0].timestamp_ms, 2), streamed_file(&events)).await;
    h.extra_env.push(("EXCLUDE_ACTIONS".into(), "git.*".into()));
    let (status, filtered) = forward_s3(&h, &other).await;
    assert!(status.success(), "{filtered:?}");
    assert_eq!(
        (filtered.figures.events_forwarded, filtered.figures.events_filtered),
        (web.len() as u64, git.len() as u64)
    );
    assert!(h.received().iter().all(|(id, n)| *n == if web.iter().any(|e| &e.document_id == id) { 2 } else { 1 }));
    let batches = h.sim.intake().stats.batches;
    let (_, again) = forward_s3(&h, &other).await;
    assert_eq!(again.figures.events_forwarded + again.figures.events_filtered, 0);
    assert_eq!(h.sim.intake().stats.batches, batches, "the second run posts nothing");
}

#[tokio::test]
async fn a_push_only_deployment_passes_check_from_the_cli_and_the_function() {
    let h = push_harness(SimOptions::default()).await;
    let bucket = create_bucket().await;
    // The CLI: no pull target, a bucket.
    let output = h.run_cli(&["check", "--json"], &[("GITHUB_ORG", ""), ("STREAM_BUCKET", &bucket)]).await;
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("a report ({e}): {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["ok"], true, "{report}");
    let checks: Vec<&str> =
        report["targets"][0]["checks"].as_array().into_iter().flatten().filter_map(|c| c["check"].as_str()).collect();
    assert_eq!(checks, ["secret", "intake", "bucket", "cursor store"]);
    assert_eq!(output.status.code(), Some(0));

    // The function: a push-only stack answers {"check": true}, and a wrong bucket fails its line.
    let table = create_table().await;
    let secret = create_secret(json!({"sekoia_intake_key": SimOptions::default().intake_key})).await;
    let answer = |stream_bucket: String| {
        let vars = [
            ("SEKOIA_INTAKE_URL", h.sim.intake_url.clone()),
            ("SECRET_ID", secret.clone()),
            ("CURSOR_TABLE", table.clone()),
            ("STREAM_BUCKET", stream_bucket),
        ];
        async move {
            let config = PushConfig::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()));
            let function =
                Function { pull: None, push: Forwarder::new(config.expect("config")).await.expect("forwarder") };
            dispatch(&function, invocation(json!({"check": true}), Duration::from_secs(60))).await.expect("an answer")
        }
    };
    let good = answer(bucket.clone()).await;
    assert_eq!(good["ok"], true, "{good}");
    let wrong = answer("no-such-bucket-here".into()).await;
    let failed: Vec<&str> = wrong["targets"][0]["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "fail")
        .filter_map(|c| c["check"].as_str())
        .collect();
    assert_eq!(failed, ["bucket"], "{wrong}");
    assert!(h.received().is_empty(), "the doctor sent no event");
}
