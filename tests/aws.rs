//! The Lambda side against moto's server (DynamoDB, Secrets Manager) and the simulator.
//! Run through `scripts/with-moto.sh` (as `make test` does), which sets `AWS_ENDPOINT_URL`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use common::aws::{aws, create_bucket, create_secret, create_table, invocation, moto_env, put};
use common::network::{LoopbackProxy, PrivateCa};
use common::{Harness, events_between};
use github_audit_sekoia::checkpoint::delivered::{BUCKET_SPAN_MS, DeliveredRecord, DeliveredSet};
use github_audit_sekoia::checkpoint::{Checkpoint, FORMAT};
use github_audit_sekoia::config::Config;
use github_audit_sekoia::connector::{Connector, RunError};
use github_audit_sekoia::cursor::{DynamoCursorStore, PARTITION_KEY};
use github_audit_sekoia::drain::Summary;
use github_audit_sekoia::lambda::{SAFETY_MARGIN, handle};
use github_audit_sekoia::ports::{AuditEvent, CheckpointSave, CursorError, CursorStore};
use github_audit_sekoia::summary::StopReason;
use github_audit_sekoia::timefmt::to_ms;
use github_audit_sekoia_sim::{SimOptions, streamed_file, streamed_file_key};
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

const DAY: Duration = Duration::from_secs(86_400);

async fn rotate_secret(secret_id: &str, value: Value) {
    aws_sdk_secretsmanager::Client::new(&aws().await)
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("rotated");
}

fn secret_value(token: &str) -> Value {
    json!({"github_token": token, "sekoia_intake_key": SimOptions::default().intake_key})
}

/// The function's configuration: the simulator for GitHub and the intake, AWS for the rest.
fn lambda_config(h: &Harness, secret_id: &str, table: &str) -> Config {
    let vars = [
        ("GITHUB_ORG", common::ORG.to_owned()),
        ("GITHUB_API_URL", h.sim.github_url.clone()),
        ("SEKOIA_INTAKE_URL", h.sim.intake_url.clone()),
        ("SECRET_ID", secret_id.to_owned()),
        ("CURSOR_TABLE", table.to_owned()),
        ("FIRST_RUN_LOOKBACK", "7d".to_owned()),
        ("MAX_RUN_SECONDS", "60".to_owned()),
    ];
    Config::load(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).expect("config")
}

/// The handler's answer to a drain, read back as the summary it is.
async fn handled(connector: &Connector, event: LambdaEvent<Value>) -> Result<Summary, RunError> {
    handle(connector, event).await.map(|answer| serde_json::from_value(answer).expect("a drain answers its summary"))
}

async fn item_exists(table: &str, key: &str) -> bool {
    aws_sdk_dynamodb::Client::new(&aws().await)
        .get_item()
        .table_name(table)
        .key(PARTITION_KEY, aws_sdk_dynamodb::types::AttributeValue::S(key.to_owned()))
        .send()
        .await
        .expect("get_item")
        .item
        .is_some()
}

#[tokio::test]
async fn a_scheduled_invocation_drains_into_the_intake_and_keeps_its_cursor_in_dynamodb() {
    let h = Harness::start().await;
    h.add(events_between(3_000, DAY, Duration::from_secs(1), 31));
    let table = create_table().await;
    let connector =
        Connector::new(lambda_config(&h, &create_secret(secret_value(&SimOptions::default().token)).await, &table))
            .await
            .expect("the connector starts");

    let first = handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("first invocation");
    assert_eq!(first.figures.stop_reason, StopReason::Drained);
    assert_eq!(first.figures.events_forwarded, 3_000);
    assert!(item_exists(&table, "orgs/acme/web").await);

    let rule_envelope = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let second =
        handled(&connector, invocation(rule_envelope, Duration::from_secs(120))).await.expect("second invocation");
    assert_eq!(second.figures.events_forwarded, 0);
    assert!(second.figures.duplicates_skipped > 0, "the window was re-read from the DynamoDB checkpoint");
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_when_github_rejects_the_cached_token() {
    let h = Harness::start().await;
    h.add(events_between(500, DAY, Duration::from_secs(600), 32));
    let secret_id = create_secret(secret_value(&SimOptions::default().token)).await;
    let connector =
        Connector::new(lambda_config(&h, &secret_id, &create_table().await)).await.expect("the connector starts");
    handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("first invocation");

    // Rotation: GitHub only takes the new token, and the secret holds it.
    h.sim.github().set_token("ghp_rotated_token");
    rotate_secret(&secret_id, secret_value("ghp_rotated_token")).await;
    h.add(events_between(200, Duration::from_secs(250), Duration::from_secs(1), 33));

    let second = handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("second invocation");
    assert_eq!(second.figures.events_forwarded, 200);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_rotated_intake_key_is_read_again_when_the_intake_rejects_the_cached_one() {
    let h = Harness::start().await;
    h.add(events_between(300, DAY, Duration::from_secs(600), 37));
    let secret_id = create_secret(secret_value(&SimOptions::default().token)).await;
    let connector =
        Connector::new(lambda_config(&h, &secret_id, &create_table().await)).await.expect("the connector starts");
    handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("first invocation");

    h.sim.intake().set_key("rotated-intake-key");
    rotate_secret(
        &secret_id,
        json!({"github_token": SimOptions::default().token, "sekoia_intake_key": "rotated-intake-key"}),
    )
    .await;
    h.add(events_between(150, Duration::from_secs(250), Duration::from_secs(1), 38));

    let second = handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("second invocation");
    assert_eq!(second.figures.events_forwarded, 150);
    h.assert_exactly_once();
}

#[tokio::test]
async fn a_secret_missing_a_key_stops_before_anything_is_fetched_or_sent() {
    let h = Harness::start().await;
    h.add(events_between(50, DAY, Duration::from_secs(1), 34));
    let secret_id = create_secret(json!({"github_token": "ghp_secret_value"})).await;
    let connector =
        Connector::new(lambda_config(&h, &secret_id, &create_table().await)).await.expect("the connector starts");

    let err = handled(&connector, invocation(json!({}), Duration::from_secs(60))).await.expect_err("refused");
    assert!(matches!(err, RunError::Credentials(_)));
    let message = err.to_string();
    assert!(message.contains("sekoia_intake_key") && message.contains(&secret_id), "{message}");
    assert!(!message.contains("ghp_secret_value"));
    assert_eq!(h.sim.github().requests, 0);
    assert!(h.received().is_empty());
}

fn plain(checkpoint: &Checkpoint) -> CheckpointSave<'_> {
    CheckpointSave { checkpoint, changed: Vec::new(), removed: Vec::new(), deleted: Vec::new(), releases: false }
}

fn event(id: &str, ts: i64) -> AuditEvent {
    let text = format!(r#"{{"@timestamp":{ts},"_document_id":"{id}"}}"#);
    AuditEvent::from_raw(serde_json::value::RawValue::from_string(text).expect("json"))
}

#[tokio::test]
async fn the_lease_refuses_a_second_run_until_it_expires_and_a_stale_writer_loses() {
    let table = create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&aws().await);
    let first = DynamoCursorStore::new(client.clone(), &table);
    let second = DynamoCursorStore::new(client, &table);
    let key = "orgs/acme/web";
    let soon = SystemTime::now() + Duration::from_secs(2);

    assert_eq!(first.acquire(key, soon).await.expect("first holds"), None);
    let mut checkpoint = Checkpoint::starting_at(1_700_000_000_000);
    first.save(key, &plain(&checkpoint)).await.expect("the holder saves");
    assert!(matches!(second.acquire(key, soon).await, Err(CursorError::Busy { .. })), "two runs at once");

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let taken_over =
        second.acquire(key, SystemTime::now() + Duration::from_secs(60)).await.expect("expired lease taken over");
    assert_eq!(taken_over, Some(checkpoint.clone()));

    // The stale holder can neither move the cursor nor undo the new holder's record.
    checkpoint.positions.fresh_read_to_ms += 60_000;
    assert!(matches!(first.save(key, &plain(&checkpoint)).await, Err(CursorError::Conflict { .. })));
    let bucket_start = 1_700_000_000_000;
    let with = |id: &str| {
        let mut bucket = DeliveredSet::default();
        bucket.insert(bucket_start + 500, &event(id, bucket_start + 500));
        bucket
    };
    let (new_holders, stale_ones) = (with("fresh"), with("stale"));
    let taken_over_checkpoint = Checkpoint::starting_at(1_700_000_000_000);
    let saving = |bucket| CheckpointSave {
        checkpoint: &taken_over_checkpoint,
        changed: vec![(bucket_start, bucket)],
        removed: vec![],
        deleted: vec![],
        releases: false,
    };
    second.save(key, &saving(&new_holders)).await.expect("the new holder saves");
    assert!(matches!(first.save(key, &saving(&stale_ones)).await, Err(CursorError::Conflict { .. })));
    let stored = second.load_buckets(key, &[bucket_start]).await.expect("bucket");
    assert_eq!(stored, vec![(bucket_start, new_holders.clone())], "the stale writer did not overwrite it");
    assert!(item_exists(&table, "orgs/acme/web#delivered#1700000000000").await);
    second.release(key).await.expect("release");
    assert_eq!(
        first.acquire(key, SystemTime::now()).await.expect("reload"),
        Some(Checkpoint::starting_at(1_700_000_000_000))
    );
}

#[tokio::test]
async fn an_hour_at_two_hundred_thousand_events_an_hour_is_stored_in_small_items_and_read_back() {
    let table = create_table().await;
    let store = DynamoCursorStore::new(aws_sdk_dynamodb::Client::new(&aws().await), &table);
    let key = "orgs/acme/web";
    let start = 1_700_000_040_000;
    let mut record = DeliveredRecord::new(&[], &[], None);
    for i in 0..200_000i64 {
        let ts = start + i * 18;
        record.insert(ts, &event(&format!("doc-{i:08}"), ts));
    }
    let mut checkpoint = Checkpoint::starting_at(start);
    checkpoint.delivered_buckets = record.starts();
    assert_eq!(checkpoint.delivered_buckets.len() as i64, 3_600_000 / BUCKET_SPAN_MS);

    store.acquire(key, SystemTime::now() + Duration::from_secs(60)).await.expect("lease");
    let changes = record.changes();
    let save = CheckpointSave {
        checkpoint: &checkpoint,
        changed: changes.changed,
        removed: changes.removed,
        deleted: changes.deleted,
        releases: true,
    };
    store.save(key, &save).await.expect("saved, giving the lease back");

    let reloaded = store.acquire(key, SystemTime::now()).await.expect("reload").expect("a checkpoint");
    assert_eq!(reloaded.delivered_buckets, checkpoint.delivered_buckets);
    let mut later = DeliveredRecord::new(&reloaded.delivered_buckets, &[], None);
    let minutes_11_to_13 = later.unloaded_between(start + 11 * 60_000, start + 14 * 60_000 - 1);
    assert_eq!(minutes_11_to_13.len() as i64, 3 * 60_000 / BUCKET_SPAN_MS);
    for (bucket_start, set) in store.load_buckets(key, &minutes_11_to_13).await.expect("buckets") {
        later.add_loaded(bucket_start, set);
    }
    assert_eq!(later.loaded_entries(), 3 * 200_000 / 60, "three minutes' buckets, and only those, loaded");
    let ts = start + 12 * 60_000 + 18 * 3;
    let probe = (ts - start) / 18;
    assert!(later.contains(ts, &event(&format!("doc-{probe:08}"), ts)));
    assert!(!later.contains(ts, &event("never-delivered", ts)));
}

#[tokio::test]
async fn a_version_1_item_is_carried_on_without_resending_and_rewritten_in_the_current_format() {
    let h = Harness::start().await;
    let table = create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&aws().await);
    // What version 1 left: everything up to two minutes ago delivered, the window's events
    // in its single set.
    let events = events_between(400, Duration::from_secs(3_600), Duration::from_secs(120), 39);
    let settled = events[300].timestamp_ms;
    let mut delivered = DeliveredSet::default();
    for e in events.iter().filter(|e| e.timestamp_ms >= settled / 1000 * 1000) {
        delivered.insert(e.timestamp_ms, &event(&e.document_id, e.timestamp_ms));
    }
    let newest = events.last().map(|e| e.timestamp_ms).expect("events");
    client
        .put_item()
        .table_name(&table)
        .item(PARTITION_KEY, AttributeValue::S("orgs/acme/web".into()))
        .item("settled_before_ms", AttributeValue::N(settled.to_string()))
        .item("newest_event_ms", AttributeValue::N(newest.to_string()))
        .item("delivered", AttributeValue::B(Blob::new(delivered.encode())))
        .item("version", AttributeValue::N("7".into()))
        .send()
        .await
        .expect("v1 item");
    h.add(events);
    let late = events_between(50, Duration::from_secs(110), Duration::from_secs(1), 40);
    let late_ids: Vec<String> = late.iter().map(|e| e.document_id.clone()).collect();
    h.add(late);

    let connector =
        Connector::new(lambda_config(&h, &create_secret(secret_value(&SimOptions::default().token)).await, &table))
            .await
            .expect("the connector starts");
    let summary = handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("invocation");

    assert_eq!(summary.figures.events_forwarded, 50, "only what version 1 had not delivered");
    h.assert_exactly(&late_ids);
    let item = client
        .get_item()
        .table_name(&table)
        .key(PARTITION_KEY, AttributeValue::S("orgs/acme/web".into()))
        .send()
        .await
        .expect("get_item")
        .item
        .expect("the item");
    assert!(
        item.contains_key("checkpoint") && !item.contains_key("delivered") && !item.contains_key("settled_before_ms")
    );
    assert_eq!(item.get("format"), Some(&AttributeValue::N(FORMAT.to_string())), "the item says its format");
}

#[tokio::test]
async fn a_format_2_record_of_minute_items_is_carried_on_without_resending() {
    let h = Harness::start().await;
    let table = create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&aws().await);
    let key = "orgs/acme/web";
    // What format 2 left: an hour delivered up to two minutes ago, one item per minute, and a
    // window sweep that still has most of the hour to read again.
    let events = events_between(400, Duration::from_secs(3_600), Duration::from_secs(120), 41);
    let mut minutes: BTreeMap<i64, DeliveredSet> = BTreeMap::new();
    for e in &events {
        let minute = e.timestamp_ms - e.timestamp_ms.rem_euclid(60_000);
        minutes.entry(minute).or_default().insert(e.timestamp_ms, &event(&e.document_id, e.timestamp_ms));
    }
    for (minute, set) in &minutes {
        client
            .put_item()
            .table_name(&table)
            .item(PARTITION_KEY, AttributeValue::S(format!("{key}#delivered#{minute}")))
            .item("delivered", AttributeValue::B(Blob::new(set.encode())))
            .send()
            .await
            .expect("minute item");
    }
    let newest = events.last().map(|e| e.timestamp_ms).expect("events");
    let first = events[0].timestamp_ms - 1_000;
    let format_2 = json!({
        "format": 2, "newest_event_ms": newest, "fresh_read_to_ms": newest + 1, "window_swept_to_ms": first,
        "deep_swept_to_ms": first, "delivered_buckets": minutes.keys().collect::<Vec<_>>(), "events_forwarded": 400,
    });
    client
        .put_item()
        .table_name(&table)
        .item(PARTITION_KEY, AttributeValue::S(key.into()))
        .item("checkpoint", AttributeValue::S(format_2.to_string()))
        .item("version", AttributeValue::N("12".into()))
        .send()
        .await
        .expect("format 2 item");
    h.add(events);
    let late = events_between(30, Duration::from_secs(1_800), Duration::from_secs(600), 42);
    let late_ids: Vec<String> = late.iter().map(|e| e.document_id.clone()).collect();
    let late_minutes: BTreeSet<i64> = late.iter().map(|e| e.timestamp_ms - e.timestamp_ms.rem_euclid(60_000)).collect();
    h.add(late);

    let connector =
        Connector::new(lambda_config(&h, &create_secret(secret_value(&SimOptions::default().token)).await, &table))
            .await
            .expect("the connector starts");
    // The window sweep reads a few pages a run: two runs read the hour again.
    let mut forwarded = 0;
    for _ in 0..2 {
        let summary = handled(&connector, invocation(json!({}), Duration::from_secs(120))).await.expect("invocation");
        forwarded += summary.figures.events_forwarded;
    }

    assert_eq!(forwarded, 30, "only the late events the window sweep found");
    h.assert_exactly(&late_ids);
    // The minute items are read as they are; those that took a late event were written anew,
    // with an expiry, and the others are still listed as stored without one.
    let stored = connector.store().peek(key).await.expect("peek").checkpoint.expect("a checkpoint");
    for minute in minutes.keys() {
        let item = client
            .get_item()
            .table_name(&table)
            .key(PARTITION_KEY, AttributeValue::S(format!("{key}#delivered#{minute}")))
            .send()
            .await
            .expect("get_item")
            .item
            .expect("still stored");
        let rewritten = late_minutes.contains(minute);
        assert_eq!(item.contains_key("expires_at"), rewritten, "minute {minute}");
        assert_eq!(stored.buckets_without_expiry.contains(minute), !rewritten, "minute {minute}");
    }
}

#[tokio::test]
async fn a_concurrent_invocation_on_the_same_org_stops_cleanly_without_sending() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(50), ..SimOptions::default() }).await;
    h.add(events_between(2_000, DAY, Duration::from_secs(1), 35));
    let table = create_table().await;
    let secret_id = create_secret(secret_value(&SimOptions::default().token)).await;
    let busy = Connector::new(lambda_config(&h, &secret_id, &table)).await.expect("the connector starts");
    let other = Connector::new(lambda_config(&h, &secret_id, &table)).await.expect("the connector starts");

    let (a, b) = tokio::join!(handled(&busy, invocation(json!({}), Duration::from_secs(120))), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        handled(&other, invocation(json!({}), Duration::from_secs(120))).await
    });
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.figures.stop_reason, StopReason::Drained);
    assert_eq!(b.figures.stop_reason, StopReason::TargetBusy);
    assert_eq!(b.figures.events_forwarded, 0);
    h.assert_exactly_once();
}

/// Where a backfill stands, as the function answers the payload with `"status": true`.
async fn backfill_status(connector: &Connector, payload: &Value) -> Value {
    let mut question = payload.clone();
    question["status"] = json!(true);
    handle(connector, invocation(question, Duration::from_secs(30))).await.expect("a status")
}

#[tokio::test]
async fn a_backfill_split_across_invocations_ends_complete_without_loss_or_duplicates() {
    let h = Harness::with_options(SimOptions { latency: Duration::from_millis(120), ..SimOptions::default() }).await;
    h.add(events_between(6_000, 3 * DAY, Duration::from_secs(1), 36));
    let table = create_table().await;
    let connector =
        Connector::new(lambda_config(&h, &create_secret(secret_value(&SimOptions::default().token)).await, &table))
            .await
            .expect("the connector starts");
    let now = SystemTime::now();
    let (since, until) = (now - 2 * DAY, now - DAY);
    let payload = json!({"backfill": {
        "since": humantime::format_rfc3339_seconds(since).to_string(),
        "until": humantime::format_rfc3339_seconds(until).to_string(),
    }});

    let before = backfill_status(&connector, &payload).await;
    assert_eq!((before["percent"].as_f64(), before["events_forwarded"].as_u64()), (Some(0.0), Some(0)), "{before}");

    let mut summaries: Vec<Summary> = Vec::new();
    for _ in 0..30 {
        // Each invocation gets about a second and a half of work before its safety margin.
        let summary = handled(&connector, invocation(payload.clone(), SAFETY_MARGIN + Duration::from_millis(1_500)))
            .await
            .expect("invocation");
        let complete = summary.backfill.as_ref().is_some_and(|b| b.complete);
        summaries.push(summary);
        if complete {
            break;
        }
    }
    let progress: Vec<f64> = summaries.iter().filter_map(|s| s.backfill.as_ref().map(|b| b.percent)).collect();
    assert!(summaries.len() > 1, "the backfill should need several invocations: {progress:?}");
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "progress only grows: {progress:?}");
    assert_eq!(progress.last(), Some(&100.0));

    let (since_ms, until_ms) = (to_ms(since) / 1000 * 1000, to_ms(until) / 1000 * 1000);
    let expected = h.ids_created_in(since_ms, until_ms);
    let received = h.received();
    assert!(expected.len() > 1_000);
    assert_eq!(received.len(), expected.len(), "only the range's events arrive");
    assert!(expected.iter().all(|id| received.get(id) == Some(&1)), "each exactly once");
    assert!(!item_exists(&table, "orgs/acme/web").await, "the scheduled cursor was not touched");

    let after = backfill_status(&connector, &payload).await;
    assert_eq!(after["complete"], true, "{after}");
    assert_eq!(after["running"], false, "{after}");
    assert_eq!(after["events_forwarded"].as_u64(), Some(expected.len() as u64), "all runs together");
    let refused = handle(&connector, invocation(json!({"status": true}), Duration::from_secs(30))).await;
    assert!(refused.expect("answered, not failed")["error"].as_str().is_some_and(|e| e.contains("backfill")));

    let again = handled(&connector, invocation(payload, Duration::from_secs(60))).await.expect("after completion");
    assert_eq!((again.pages, again.figures.events_forwarded), (0, 0), "a complete backfill reads nothing");
    assert_eq!(again.backfill.map(|b| b.complete), Some(true));
}

#[tokio::test]
async fn behind_a_proxy_and_a_private_ca_every_client_reaches_its_service() {
    let mut h = Harness::with_options(SimOptions { behind_tls: true, ..SimOptions::default() }).await;
    let pulled = events_between(300, DAY, Duration::from_secs(1), 41);
    let streamed = events_between(50, DAY, Duration::from_secs(1), 42);
    h.add(pulled.clone());
    h.extra_env.extend(moto_env());
    let bucket = create_bucket().await;
    put(&bucket, &streamed_file_key(streamed[0].timestamp_ms, 1), streamed_file(&streamed)).await;
    let (secret, table) = (create_secret(secret_value(&SimOptions::default().token)).await, create_table().await);
    // Each service on a TLS front of its own, signed by a CA only EXTRA_CA_BUNDLE names.
    let ca = PrivateCa::new();
    let moto = &moto_env()[0].1;
    let fronts = [
        ("GitHub", "GITHUB_API_URL", ca.front(&h.sim.github_url).await),
        ("the intake", "SEKOIA_INTAKE_URL", ca.front(&h.sim.intake_url).await),
        ("Secrets Manager", "AWS_ENDPOINT_URL_SECRETS_MANAGER", ca.front(moto).await),
        ("DynamoDB", "AWS_ENDPOINT_URL_DYNAMODB", ca.front(moto).await),
        ("S3", "AWS_ENDPOINT_URL", ca.front(moto).await),
    ];
    let bundle = h.state.path().join("ca.pem");
    std::fs::write(&bundle, &ca.ca_pem).expect("bundle written");
    let proxy = LoopbackProxy::start().await;
    let mut env: Vec<(&str, &str)> = fronts.iter().map(|(_, variable, url)| (*variable, url.as_str())).collect();
    let bundle = bundle.display().to_string();
    env.extend([("HTTPS_PROXY", proxy.url.as_str()), ("EXTRA_CA_BUNDLE", &bundle), ("SECRET_ID", &secret)]);
    env.extend([("CURSOR_TABLE", table.as_str()), ("GITHUB_TOKEN", ""), ("SEKOIA_INTAKE_KEY", "")]);

    for args in [&["run"][..], &["forward-s3", "--bucket", &bucket]] {
        let output = h.run_cli(args, &env).await;
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let expected: Vec<String> = pulled.iter().chain(&streamed).map(|e| e.document_id.clone()).collect();
    h.assert_exactly(&expected);
    let tunnels = proxy.seen();
    for (service, _, url) in &fronts {
        assert!(
            tunnels.iter().any(|t| url.ends_with(t.as_str())),
            "{service} not reached through the proxy: {tunnels:?}"
        );
    }
}
