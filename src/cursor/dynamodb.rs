//! Checkpoints as DynamoDB items, one per cursor key. Every write is conditional on this run
//! holding the lease and on the version it read, so a run that lost a race cannot move the
//! cursor; the lease expires, so a crashed run never blocks the next one for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{Checkpoint, Resume};
use crate::aws::aws_error;
use crate::dedupe::DeliveredSet;
use crate::ports::{CursorError, CursorStore};
use crate::timefmt::{now_ms, rfc3339_ms, to_ms};

/// The table's partition key (a string): the cursor key, e.g. `orgs/acme/web`.
pub const PARTITION_KEY: &str = "target";

pub struct DynamoCursorStore {
    client: Client,
    table: String,
    /// Per key this store holds: (lease owner, version read or last written).
    held: Mutex<HashMap<String, (String, i64)>>,
}

impl DynamoCursorStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), held: Mutex::new(HashMap::new()) }
    }

    fn held(&self, key: &str) -> Result<(String, i64), CursorError> {
        let held = self.held.lock().map_err(|_| CursorError::Storage("lease table poisoned".into()))?;
        held.get(key).cloned().ok_or_else(|| CursorError::Storage(format!("{key} is not held by this run")))
    }

    fn storage_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        what: &str,
        err: aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> CursorError {
        CursorError::Storage(format!("cannot {what} in DynamoDB table {}: {}", self.table, aws_error(&err)))
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> Result<Option<i64>, String> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::N(text)) => text.parse().map(Some).map_err(|_| format!("{name} is not a whole number")),
        Some(_) => Err(format!("{name} is not a number")),
    }
}

fn checkpoint_from_item(item: &HashMap<String, AttributeValue>) -> Result<Option<Checkpoint>, String> {
    let Some(settled_before_ms) = number(item, "settled_before_ms")? else { return Ok(None) };
    let delivered = match item.get("delivered") {
        Some(AttributeValue::B(bytes)) => DeliveredSet::decode(bytes.as_ref()).map_err(|e| e.to_string())?,
        None => DeliveredSet::default(),
        Some(_) => return Err("delivered is not binary".into()),
    };
    let resume = match item.get("resume_next_page") {
        Some(AttributeValue::S(next_page)) => Some(Resume {
            next_page: next_page.clone(),
            settled_frozen: matches!(item.get("resume_settled_frozen"), Some(AttributeValue::Bool(true))),
        }),
        _ => None,
    };
    Ok(Some(Checkpoint { settled_before_ms, delivered, newest_event_ms: number(item, "newest_event_ms")?, resume }))
}

fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
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
                "SET lease_owner = :owner, lease_until_ms = :until, version = if_not_exists(version, :zero)",
            )
            .condition_expression("attribute_not_exists(lease_until_ms) OR lease_until_ms < :now")
            .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
            .expression_attribute_values(":until", AttributeValue::N(to_ms(held_until).to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms().to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match answer {
            Ok(output) => output.attributes.unwrap_or_default(),
            Err(err) if is_condition_failure(&err) => return Err(CursorError::Busy { key: key.to_owned() }),
            Err(err) => return Err(self.storage_error("take the lease", err)),
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

    async fn save(&self, key: &str, checkpoint: &Checkpoint) -> Result<(), CursorError> {
        let (owner, version) = self.held(key)?;
        let mut set = vec![
            "settled_before_ms = :settled",
            "settled_before = :settled_text",
            "delivered = :delivered",
            "delivered_count = :count",
            "version = :next",
            "updated_at = :now",
        ];
        let mut remove = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(key.to_owned()))
            .condition_expression("lease_owner = :owner AND version = :version")
            .expression_attribute_values(":owner", AttributeValue::S(owner.clone()))
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":next", AttributeValue::N((version + 1).to_string()))
            .expression_attribute_values(":settled", AttributeValue::N(checkpoint.settled_before_ms.to_string()))
            .expression_attribute_values(":settled_text", AttributeValue::S(rfc3339_ms(checkpoint.settled_before_ms)))
            .expression_attribute_values(":delivered", AttributeValue::B(Blob::new(checkpoint.delivered.encode())))
            .expression_attribute_values(":count", AttributeValue::N(checkpoint.delivered.len().to_string()))
            .expression_attribute_values(":now", AttributeValue::S(rfc3339_ms(now_ms())));
        match checkpoint.newest_event_ms {
            Some(ms) => {
                set.push("newest_event_ms = :newest");
                request = request.expression_attribute_values(":newest", AttributeValue::N(ms.to_string()));
            }
            None => remove.push("newest_event_ms"),
        }
        match &checkpoint.resume {
            Some(resume) => {
                set.push("resume_next_page = :next_page");
                set.push("resume_settled_frozen = :frozen");
                request = request
                    .expression_attribute_values(":next_page", AttributeValue::S(resume.next_page.clone()))
                    .expression_attribute_values(":frozen", AttributeValue::Bool(resume.settled_frozen));
            }
            None => remove.extend(["resume_next_page", "resume_settled_frozen"]),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match request.update_expression(expression).send().await {
            Ok(_) => {}
            Err(err) if is_condition_failure(&err) => return Err(CursorError::Conflict { key: key.to_owned() }),
            Err(err) => return Err(self.storage_error("save the cursor", err)),
        }
        self.held
            .lock()
            .map_err(|_| CursorError::Storage("lease table poisoned".into()))?
            .insert(key.to_owned(), (owner, version + 1));
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
            Err(err) => Err(self.storage_error("release the lease", err)),
            Ok(_) => Ok(()),
        }
    }
}
