//! Checkpoints as DynamoDB items: one per cursor key, and one per bucket of its delivered
//! record (`<key>#delivered#<start>`, each well under the 400 KB item limit). Every write is
//! conditional on the lease: the checkpoint on this run holding it at the version it read, so a
//! run that lost a race cannot move the cursor; a bucket on no later holder having written it,
//! so a run that lost a race cannot undo a later one's record (what it may still write lists
//! events it did deliver). The lease expires, so a crashed run never blocks the next one for long.
//!
//! Cost, as DynamoDB bills by the KB written: a bucket is a plain conditional put (a transaction
//! costs twice, and its check of the lease as much again), and buckets no read needs are left to
//! expire (`expires_at`, the table's time to live) rather than deleted, which costs a write each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
};

use crate::aws::aws_error;
use crate::aws_calls::{
    AwsCall, DYNAMODB_BATCH_GET_ITEM, DYNAMODB_GET_ITEM, DYNAMODB_PUT_ITEM, DYNAMODB_TRANSACT_WRITE_ITEMS,
    DYNAMODB_UPDATE_ITEM,
};
use crate::checkpoint::delivered::DeliveredSet;
use crate::checkpoint::{Checkpoint, FORMAT, Style};
use crate::ports::{CheckpointSave, CursorError, CursorState, CursorStore, ObjectLedger, ObjectRecord};
use crate::timefmt::{now_ms, rfc3339_ms, to_ms};

/// The table's partition key (a string): the cursor key, e.g. `orgs/acme/web`.
pub const PARTITION_KEY: &str = "target";
/// DynamoDB's limits on one transaction (100 items, 4 MB) and one batch read (100 keys), with room.
const MAX_TRANSACTION_ITEMS: usize = 99;
const MAX_TRANSACTION_BYTES: usize = 3_500_000;
const MAX_BATCH_KEYS: usize = 100;
/// Unprocessed keys of a batch read are asked for again this many times.
const MAX_BATCH_ROUNDS: usize = 8;
/// What version 1 stored on the checkpoint item; removed when it is first saved as version 2.
const V1_ATTRIBUTES: [&str; 7] = [
    "settled_before_ms",
    "settled_before",
    "delivered",
    "delivered_count",
    "newest_event_ms",
    "resume_next_page",
    "resume_settled_frozen",
];

pub struct DynamoCursorStore {
    client: Client,
    table: String,
    /// Per key this store holds: (lease owner, version read or last written).
    held: Mutex<HashMap<String, (String, i64)>>,
}

fn bucket_key(key: &str, start: i64) -> String {
    format!("{key}#delivered#{start}")
}

fn object_key(key: &str, object: &str) -> String {
    format!("{key}#object#{object}")
}

/// Object records outlive any sensible lifecycle of the stream's bucket; DynamoDB's time to
/// live (attribute `expires_at`) then removes them.
const OBJECT_RECORD_SECONDS: i64 = 400 * 86_400;
/// A bucket is kept this long after it was last written: far beyond the deepest sweep, so
/// that a connector stopped for weeks still recognises what it delivered when it resumes.
const BUCKET_SECONDS: i64 = 30 * 86_400;

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<i64>, String> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(text)) => text.parse().map(Some).map_err(|_| format!("{name} is not a whole number")),
        Some(_) => Err(format!("{name} is not a number")),
    }
}

fn delivered_set(item: &HashMap<String, AttributeValue>) -> Result<DeliveredSet, String> {
    match item.get("delivered") {
        Some(AttributeValue::B(bytes)) => DeliveredSet::decode(bytes.as_ref()).map_err(|e| e.to_string()),
        None => Ok(DeliveredSet::default()),
        Some(_) => Err("delivered is not binary".into()),
    }
}

/// A version 2 item keeps the checkpoint as JSON; a version 1 item as attributes of its own.
fn checkpoint_from_item(item: &HashMap<String, AttributeValue>) -> Result<Option<Checkpoint>, String> {
    match item.get("checkpoint") {
        Some(AttributeValue::S(json)) => return Checkpoint::from_json(json).map(Some).map_err(|e| e.to_string()),
        Some(_) => return Err("checkpoint is not a string".into()),
        None => {}
    }
    let Some(settled_before_ms) = number(item, "settled_before_ms")? else { return Ok(None) };
    Ok(Some(Checkpoint::from_v1(settled_before_ms, number(item, "newest_event_ms")?, delivered_set(item)?)))
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool {
    matches!(
        err.as_service_error().and_then(|e| e.code()),
        Some("ConditionalCheckFailedException" | "TransactionCanceledException")
    )
}

impl DynamoCursorStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), held: Mutex::new(HashMap::new()) }
    }

    /// One item, read consistently (after the last write); `what` names the read in an error.
    async fn get_item(&self, key: &str, what: &str) -> Result<Option<HashMap<String, AttributeValue>>, CursorError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.storage_error(&DYNAMODB_GET_ITEM, what, e))?;
        Ok(answer.item)
    }

    fn held(&self, key: &str) -> Result<(String, i64), CursorError> {
        let held = self.held.lock().map_err(|_| CursorError::Storage("lease table poisoned".into()))?;
        held.get(key).cloned().ok_or_else(|| CursorError::Storage(format!("{key} is not held by this run")))
    }

    fn storage_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        call: &AwsCall,
        what: &str,
        err: aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> CursorError {
        CursorError::Storage(format!("cannot {what} in DynamoDB table {}: {}", self.table, aws_error(call, &err)))
    }

    fn build_error(&self, err: impl std::fmt::Display) -> CursorError {
        CursorError::Storage(format!("cannot build a DynamoDB request for table {}: {err}", self.table))
    }

    /// Writes `items` in transactions that each also check that `owner` still holds `key`.
    async fn fenced_writes(
        &self,
        key: &str,
        owner: &str,
        items: Vec<(TransactWriteItem, usize)>,
    ) -> Result<(), CursorError> {
        let lease_check = || -> Result<TransactWriteItem, CursorError> {
            let check = ConditionCheck::builder()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
                .condition_expression("lease_owner = :owner")
                .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
                .build()
                .map_err(|e| self.build_error(e))?;
            Ok(TransactWriteItem::builder().condition_check(check).build())
        };
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let mut batch = vec![lease_check()?];
            let mut bytes = 0;
            while let Some((_, size)) = items.peek() {
                if batch.len() > MAX_TRANSACTION_ITEMS || (batch.len() > 1 && bytes + size > MAX_TRANSACTION_BYTES) {
                    break;
                }
                bytes += size;
                batch.extend(items.next().map(|(item, _)| item));
            }
            match self.client.transact_write_items().set_transact_items(Some(batch)).send().await {
                Ok(_) => {}
                Err(err) if is_condition_failure(&err) => return Err(CursorError::Conflict { key: key.to_owned() }),
                Err(err) => {
                    return Err(self.storage_error(&DYNAMODB_TRANSACT_WRITE_ITEMS, "write the delivered record", err));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl CursorStore for DynamoCursorStore {
    async fn acquire(&self, key: &str, held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError> {
        let owner = format!("{:016x}", fastrand::u64(..));
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
            .update_expression(
                "SET lease_owner = :owner, lease_until_ms = :until, version = if_not_exists(version, :zero) + :one",
            )
            .condition_expression("attribute_not_exists(lease_until_ms) OR lease_until_ms < :now")
            .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
            .expression_attribute_values(":until", AttributeValue::N(to_ms(held_until).to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match answer {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(err) if is_condition_failure(&err) => return Err(CursorError::Busy { key: key.to_owned() }),
            Err(err) => return Err(self.storage_error(&DYNAMODB_UPDATE_ITEM, "take the lease", err)),
        };
        let problem = |p: String| {
            CursorError::Storage(format!(
                "item {key} in {}: {p}; fix or delete the item to restart from FIRST_RUN_LOOKBACK",
                self.table
            ))
        };
        let version = number(&item, "version").map_err(problem)?.unwrap_or(0);
        let checkpoint = checkpoint_from_item(&item).map_err(problem)?;
        self.held
            .lock()
            .map_err(|_| CursorError::Storage("lease table poisoned".into()))?
            .insert(key.to_owned(), (owner, version));
        Ok(checkpoint)
    }

    async fn load_buckets(&self, key: &str, starts: &[i64]) -> Result<Vec<(i64, DeliveredSet)>, CursorError> {
        let by_key: HashMap<String, i64> = starts.iter().map(|&s| (bucket_key(key, s), s)).collect();
        let mut buckets = Vec::with_capacity(starts.len());
        for chunk in starts.chunks(MAX_BATCH_KEYS) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for &start in chunk {
                keys =
                    keys.keys(HashMap::from([(PARTITION_KEY.to_owned(), AttributeValue::S(bucket_key(key, start)))]));
            }
            let mut request = Some(keys.build().map_err(|e| self.build_error(e))?);
            for _ in 0..MAX_BATCH_ROUNDS {
                let Some(keys) = request.take() else { break };
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| self.storage_error(&DYNAMODB_BATCH_GET_ITEM, "read the delivered record", e))?;
                for item in output.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let Some(AttributeValue::S(item_key)) = item.get(PARTITION_KEY) else { continue };
                    let Some(&start) = by_key.get(item_key) else { continue };
                    let set = delivered_set(&item).map_err(|p| {
                        CursorError::Storage(format!(
                            "item {item_key} in {}: {p}; delete it (events of its minute may be sent again)",
                            self.table
                        ))
                    })?;
                    buckets.push((start, set));
                }
                request =
                    output.unprocessed_keys.unwrap_or_default().remove(&self.table).filter(|k| !k.keys().is_empty());
            }
            if request.is_some() {
                return Err(CursorError::Storage(format!(
                    "DynamoDB table {} kept throttling the read of the delivered record; the next run tries again",
                    self.table
                )));
            }
        }
        Ok(buckets)
    }

    /// Buckets first, then the checkpoint that lists them: a crash in between leaves buckets
    /// the checkpoint does not list yet, and the page is read again and recognised. Pruned
    /// buckets expire; those a format 2 checkpoint wrote, which would not, are deleted (while
    /// the lease is held, so a last save with deletes gives it back on its own).
    async fn save(&self, key: &str, save: &CheckpointSave<'_>) -> Result<(), CursorError> {
        let (owner, version) = self.held(key)?;
        for (start, set) in &save.changed {
            self.put_bucket(key, version, *start, set).await?;
        }
        let releases = save.releases && save.deleted.is_empty();
        self.update_checkpoint(key, &owner, version, save.checkpoint, releases).await?;
        {
            let mut held = self.held.lock().map_err(|_| CursorError::Storage("lease table poisoned".into()))?;
            if releases {
                held.remove(key);
                return Ok(());
            }
            held.insert(key.to_owned(), (owner.clone(), version + 1));
        }
        self.delete_buckets(key, &owner, &save.deleted).await?;
        if save.releases {
            self.release(key).await?;
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CursorError> {
        let (owner, _) = self.held(key)?;
        self.held.lock().map_err(|_| CursorError::Storage("lease table poisoned".into()))?.remove(key);
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
            .update_expression("REMOVE lease_owner, lease_until_ms")
            .condition_expression("lease_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner))
            .send()
            .await;
        match answer {
            // Someone took over an expired lease: it is theirs now.
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(self.storage_error(&DYNAMODB_UPDATE_ITEM, "release the lease", err)),
            Ok(_) => Ok(()),
        }
    }

    async fn peek(&self, key: &str) -> Result<CursorState, CursorError> {
        let item = self.get_item(key, "read the cursor").await?.unwrap_or_default();
        let problem = |p: String| CursorError::Storage(format!("item {key} in {}: {p}", self.table));
        let held = number(&item, "lease_until_ms").map_err(problem)?.is_some_and(|until| until >= now_ms());
        Ok(CursorState { checkpoint: checkpoint_from_item(&item).map_err(problem)?, held })
    }
}

impl DynamoCursorStore {
    /// One bucket whole, unless a later holder of the lease wrote it (versions grow with each
    /// lease taken and each save).
    async fn put_bucket(&self, key: &str, version: i64, start: i64, set: &DeliveredSet) -> Result<(), CursorError> {
        let answer = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(bucket_key(key, start)))
            .item("delivered", AttributeValue::B(Blob::new(set.encode())))
            .item("entries", AttributeValue::N(set.len().to_string()))
            .item("starts_at", AttributeValue::S(rfc3339_ms(start)))
            .item("version", AttributeValue::N(version.to_string()))
            .item("expires_at", AttributeValue::N((now_ms() / 1000 + BUCKET_SECONDS).to_string()))
            .condition_expression("attribute_not_exists(version) OR version <= :version")
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(CursorError::Conflict { key: key.to_owned() }),
            Err(err) => Err(self.storage_error(&DYNAMODB_PUT_ITEM, "write the delivered record", err)),
        }
    }

    /// Format 2's buckets, which have no expiry, deleted once no read needs them.
    async fn delete_buckets(&self, key: &str, owner: &str, starts: &[i64]) -> Result<(), CursorError> {
        let mut deletes = Vec::with_capacity(starts.len());
        for start in starts {
            let delete = Delete::builder()
                .table_name(&self.table)
                .key(PARTITION_KEY, AttributeValue::S(bucket_key(key, *start)))
                .build()
                .map_err(|e| self.build_error(e))?;
            deletes.push((TransactWriteItem::builder().delete(delete).build(), 100));
        }
        self.fenced_writes(key, owner, deletes).await
    }

    /// The checkpoint, written only while this run holds the lease at `version`, giving the
    /// lease back with it when `releases`; the attributes of a v1 record go.
    async fn update_checkpoint(
        &self,
        key: &str,
        owner: &str,
        version: i64,
        checkpoint: &Checkpoint,
        releases: bool,
    ) -> Result<(), CursorError> {
        let json = checkpoint.to_json(Style::Compact).map_err(|e| CursorError::Storage(e.to_string()))?;
        // Names through placeholders: FORMAT and others are reserved words in expressions.
        let mut removed: Vec<String> = (0..V1_ATTRIBUTES.len()).map(|i| format!("#v1_{i}")).collect();
        if releases {
            removed.extend(["#owner".to_owned(), "#until".to_owned()]);
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
            .update_expression(format!(
                "SET #format = :format, #checkpoint = :checkpoint, #version = :next, #updated = :now REMOVE {}",
                removed.join(", ")
            ))
            .condition_expression("#owner = :owner AND #version = :version")
            .expression_attribute_names("#format", "format")
            .expression_attribute_names("#checkpoint", "checkpoint")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_names("#owner", "lease_owner")
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .expression_attribute_values(":format", AttributeValue::N(FORMAT.to_string()))
            .expression_attribute_values(":checkpoint", AttributeValue::S(json))
            .expression_attribute_values(":now", AttributeValue::S(rfc3339_ms(now_ms())));
        if releases {
            request = request.expression_attribute_names("#until", "lease_until_ms");
        }
        for (placeholder, name) in removed.iter().zip(V1_ATTRIBUTES) {
            request = request.expression_attribute_names(placeholder, name);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(CursorError::Conflict { key: key.to_owned() }),
            Err(err) => Err(self.storage_error(&DYNAMODB_UPDATE_ITEM, "save the cursor", err)),
        }
    }
}

#[async_trait]
impl ObjectLedger for DynamoCursorStore {
    async fn load_object(&self, key: &str, object: &str) -> Result<Option<ObjectRecord>, CursorError> {
        let item_key = object_key(key, object);
        let Some(item) = self.get_item(&item_key, "read the record of an object").await? else { return Ok(None) };
        let problem = |p: String| {
            CursorError::Storage(format!(
                "item {item_key} in {}: {p}; delete it to forward the object again",
                self.table
            ))
        };
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(text)) => Ok(text.clone()),
            _ => Err(problem(format!("{name} is missing or not a string"))),
        };
        let flag = |name: &str| matches!(item.get(name), Some(AttributeValue::Bool(true)));
        let events_done = number(&item, "events_done").map_err(problem)?.unwrap_or(0);
        Ok(Some(ObjectRecord {
            etag: text("etag")?,
            events_done: u64::try_from(events_done).map_err(|_| problem("events_done is negative".into()))?,
            complete: flag("complete"),
            not_audit_events: flag("not_audit_events"),
        }))
    }

    async fn save_object(&self, key: &str, object: &str, record: &ObjectRecord) -> Result<(), CursorError> {
        let (owner, _) = self.held(key)?;
        let put = Put::builder()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(object_key(key, object)))
            .item("etag", AttributeValue::S(record.etag.clone()))
            .item("events_done", AttributeValue::N(record.events_done.to_string()))
            .item("complete", AttributeValue::Bool(record.complete))
            .item("not_audit_events", AttributeValue::Bool(record.not_audit_events))
            .item("updated_at", AttributeValue::S(rfc3339_ms(now_ms())))
            .item("expires_at", AttributeValue::N((now_ms() / 1000 + OBJECT_RECORD_SECONDS).to_string()))
            .build()
            .map_err(|e| self.build_error(e))?;
        self.fenced_writes(key, &owner, vec![(TransactWriteItem::builder().put(put).build(), 300)]).await
    }
}
