//! Wires push mode's adapters (S3, the intake, the store) for its two entry points: a bucket's
//! whole listing (`forward-s3`) and the S3 notifications an SQS batch carries (Lambda).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use crate::budget::Budget;
use crate::config::{ConfigError, IntakeKeyConfig, PushConfig, problem};
use crate::connector::load_aws;
use crate::credentials::{CredentialCache, CredentialError, Credentials, SecretsManagerCredentials, StaticCredentials};
use crate::cursor::{DynamoCursorStore, FileCursorStore, StateStore};
use crate::http::{self, ClientError};
use crate::metrics::emf_line;
use crate::ports::{ObjectRef, ObjectSource, SystemClock};
use crate::push::{PushEdges, PushError, PushProgress, PushSettings, PushSummary, forward_objects};
use crate::s3::S3Objects;
use crate::sekoia::SekoiaIntake;
use crate::timefmt::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("{0}")]
    Listing(String),
    #[error("a pass of {0} s (MAX_RUN_SECONDS) forwarded nothing before its time ran out: raise MAX_RUN_SECONDS")]
    NoProgress(u64),
}

pub struct Forwarder {
    config: PushConfig,
    client: reqwest::Client,
    objects: S3Objects,
    store: Box<dyn StateStore>,
    credentials: Arc<CredentialCache>,
}

/// One pass over a bucket: what it did, and what stopped it before the end of the listing.
#[derive(Debug)]
pub struct BucketPass {
    pub summary: PushSummary,
    pub stopped: Option<ForwardError>,
}

impl BucketPass {
    /// Stopped by the run's time budget alone: a new pass goes on where this one stopped.
    pub fn out_of_time(&self) -> bool {
        self.summary.figures.stop_reason == crate::summary::StopReason::Budget
    }

    /// Whether the pass got anywhere: an event sent, or an object done with.
    pub fn made_progress(&self) -> bool {
        let s = &self.summary;
        s.figures.events_forwarded + s.objects_forwarded + s.objects_already_forwarded + s.objects_skipped > 0
    }
}

/// What an SQS batch came to: the messages to hand back to the queue, and a summary per bucket.
#[derive(Debug)]
pub struct BatchOutcome {
    pub response: SqsBatchResponse,
    pub summaries: Vec<PushSummary>,
}

impl Forwarder {
    /// AWS is always needed here (S3); the store is DynamoDB with `CURSOR_TABLE`, else files.
    pub async fn new(config: PushConfig) -> Result<Self, ClientError> {
        let sdk = load_aws(&config.shared.extra_roots).await;
        let store: Box<dyn StateStore> = match &config.shared.cursor_table {
            Some(table) => Box::new(DynamoCursorStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)),
            None => Box::new(FileCursorStore::new(&config.shared.state_dir)),
        };
        let credentials = Arc::new(CredentialCache::new(match &config.intake_key {
            IntakeKeyConfig::SecretsManager { secret_id } => {
                Box::new(SecretsManagerCredentials::new(aws_sdk_secretsmanager::Client::new(&sdk), secret_id))
            }
            IntakeKeyConfig::Environment(key) => {
                Box::new(StaticCredentials(Credentials { github: None, intake_key: key.clone() }))
            }
        }));
        Ok(Self {
            objects: S3Objects::new(&sdk),
            client: http::client(&config.shared.extra_roots)?,
            store,
            credentials,
            config,
        })
    }

    pub fn config(&self) -> &PushConfig {
        &self.config
    }

    /// The intake's client and key, for `check`.
    pub(crate) fn intake_parts(&self) -> (&reqwest::Client, &Arc<CredentialCache>) {
        (&self.client, &self.credentials)
    }

    pub(crate) fn objects(&self) -> &dyn ObjectSource {
        &self.objects
    }

    pub(crate) fn store(&self) -> &dyn crate::ports::CursorStore {
        self.store.as_cursor_store()
    }

    async fn check_intake_key(&self) -> Result<(), ForwardError> {
        match self.credentials.get().await?.intake_key {
            Some(_) => Ok(()),
            None => Err(problem("SEKOIA_INTAKE_KEY", "is required: the key of the Sekoia.io intake to post to").into()),
        }
    }

    fn edges<'a>(&'a self, sink: &'a SekoiaIntake, progress: Option<&'a PushProgress>) -> PushEdges<'a> {
        PushEdges {
            objects: &self.objects,
            sink,
            store: self.store.as_cursor_store(),
            ledger: self.store.as_ledger(),
            clock: &SystemClock,
            progress,
        }
    }

    fn sink(&self) -> SekoiaIntake {
        SekoiaIntake::new(self.client.clone(), &self.config.shared.intake_url, self.credentials.clone())
    }

    /// Every object of `bucket` (under `prefix`) not forwarded yet, in key order (GitHub's
    /// keys start with the time), a page of the listing at a time. An error before the first
    /// object (configuration, the bucket's lease) is an error; one later stops the pass.
    pub async fn forward_bucket(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        budget: &Budget,
        progress: Option<&PushProgress>,
    ) -> Result<BucketPass, ForwardError> {
        self.check_intake_key().await?;
        let sink = self.sink();
        let edges = self.edges(&sink, progress);
        let settings = PushSettings::new(self.config.dedupe_window, self.config.shared.shaping.clone());
        let mut run = crate::push::BucketRun::open(&edges, bucket, &settings, budget).await?;
        let mut next = None;
        let outcome = loop {
            let page = match self.objects.list(bucket, prefix, next.take()).await {
                Ok(page) => page,
                Err(err) => break Err(ForwardError::Listing(err.to_string())),
            };
            let mut stopped = None;
            for (key, etag) in page.objects {
                let object = ObjectRef { bucket: bucket.to_owned(), key, etag };
                if let Err(err) = run.forward(&object, budget).await
                    && !err.is_object_only()
                {
                    stopped = Some(err);
                    break;
                }
            }
            match (stopped, page.next) {
                (Some(err), _) => break Err(err.into()),
                (None, Some(token)) => next = Some(token),
                (None, None) => break Ok(()),
            }
        };
        Ok(BucketPass { summary: run.close().await, stopped: outcome.err() })
    }

    /// The objects an SQS batch of S3 notifications names, bucket by bucket; a message fails
    /// (and returns to the queue) when one of its objects failed or it is not understood.
    pub async fn forward_notifications(&self, event: SqsEvent, budget: &Budget) -> Result<BatchOutcome, ForwardError> {
        self.check_intake_key().await?;
        let mut failures: Vec<String> = Vec::new();
        // Per bucket, in arrival order: (message id, object).
        let mut by_bucket: Vec<(String, Vec<(String, ObjectRef)>)> = Vec::new();
        for message in event.records {
            let id = message.message_id.unwrap_or_default();
            match notified_objects(message.body.as_deref().unwrap_or_default()) {
                Ok(objects) => {
                    for object in objects {
                        match by_bucket.iter_mut().find(|(bucket, _)| *bucket == object.bucket) {
                            Some((_, list)) => list.push((id.clone(), object)),
                            None => by_bucket.push((object.bucket.clone(), vec![(id.clone(), object)])),
                        }
                    }
                }
                Err(problem) => {
                    tracing::warn!(message = %id, problem, "not an S3 notification; left to the dead-letter queue");
                    failures.push(id);
                }
            }
        }
        let sink = self.sink();
        let edges = self.edges(&sink, None);
        let settings = PushSettings::new(self.config.dedupe_window, self.config.shared.shaping.clone());
        let mut summaries = Vec::new();
        for (bucket, entries) in by_bucket {
            let objects: Vec<ObjectRef> = entries.iter().map(|(_, object)| object.clone()).collect();
            match forward_objects(&edges, &bucket, &objects, &settings, budget).await {
                Ok((summary, failed)) => {
                    failures.extend(failed.into_iter().map(|i| entries[i].0.clone()));
                    println!("{}", emf_line(&summary, now_ms()));
                    summaries.push(summary);
                }
                Err(err) => {
                    tracing::warn!(bucket, error = %err, "the bucket's objects were not forwarded");
                    failures.extend(entries.into_iter().map(|(id, _)| id));
                }
            }
        }
        failures.sort();
        failures.dedup();
        let batch_item_failures = failures
            .into_iter()
            .map(|item_identifier| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = item_identifier;
                failure
            })
            .collect();
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = batch_item_failures;
        Ok(BatchOutcome { response, summaries })
    }
}

/// The fields of an S3 event notification this reads; the others (times among them, whose
/// format varies between S3 and its stand-ins) are left alone.
#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
}

/// S3 sends this once when a notification is set up; it names no object.
#[derive(Deserialize)]
struct TestEvent {
    #[serde(rename = "Event")]
    event: String,
}

/// The objects one message's S3 notification names ("object created" only); none for S3's
/// test event.
pub fn notified_objects(body: &str) -> Result<Vec<ObjectRef>, String> {
    if let Ok(test) = serde_json::from_str::<TestEvent>(body)
        && test.event == "s3:TestEvent"
    {
        return Ok(Vec::new());
    }
    let event: S3Notification =
        serde_json::from_str(body).map_err(|e| format!("the body is not an S3 event notification ({e})"))?;
    let mut objects = Vec::new();
    for record in event.records {
        if !record.event_name.starts_with("ObjectCreated:") {
            continue;
        }
        let object = record.s3.object;
        objects.push(ObjectRef {
            bucket: record.s3.bucket.name,
            key: decode_key(&object.key)?,
            etag: object.e_tag.filter(|e| !e.is_empty()),
        });
    }
    Ok(objects)
}

/// Notifications carry keys URL-encoded, spaces as '+'.
fn decode_key(key: &str) -> Result<String, String> {
    percent_decode_str(&key.replace('+', " "))
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| format!("the key {key:?} does not decode to UTF-8"))
}

/// Whether a Lambda payload is an SQS batch (the event source mapping's).
pub fn is_sqs_batch(payload: &serde_json::Value) -> bool {
    payload["Records"].as_array().and_then(|records| records.first()).is_some_and(|r| r["eventSource"] == "aws:sqs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn notification(event_name: &str, key: &str) -> String {
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-3",
            "eventTime": "2026-11-22T10:00:00.000Z", "eventName": event_name,
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
                   "bucket": {"name": "audit-stream", "arn": "arn:aws:s3:::audit-stream"},
                   "object": {"key": key, "size": 10, "eTag": "0123abcd", "sequencer": "0A"}}
        }]})
        .to_string()
    }

    #[test]
    fn a_created_object_is_named_with_its_key_decoded() {
        let objects =
            notified_objects(&notification("ObjectCreated:Put", "2026/11/22/10/00/a+b%3Dc.json.gz")).expect("read");
        assert_eq!(
            objects,
            vec![ObjectRef {
                bucket: "audit-stream".into(),
                key: "2026/11/22/10/00/a b=c.json.gz".into(),
                etag: Some("0123abcd".into())
            }]
        );
        assert!(notified_objects(&notification("ObjectRemoved:Delete", "a.json.gz")).expect("read").is_empty());
    }

    #[test]
    fn the_test_event_names_nothing_and_other_bodies_are_refused() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-22T10:00:00.000Z","Bucket":"audit-stream","RequestId":"r","HostId":"h"}"#;
        assert!(notified_objects(test).expect("test event").is_empty());
        for body in ["", "hello", "{}", r#"{"Records": 7}"#] {
            assert!(notified_objects(body).is_err() || notified_objects(body).is_ok_and(|o| o.is_empty()), "{body}");
        }
        assert!(notified_objects("hello").is_err());
    }

    #[test]
    fn only_sqs_batches_are_taken_for_push_mode() {
        assert!(is_sqs_batch(&json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]})));
        assert!(!is_sqs_batch(&json!({"target": "org:acme"})));
        assert!(!is_sqs_batch(&json!({"Records": [{"eventSource": "aws:s3"}]})));
    }
}
