//! The stores that keep a target's checkpoint and delivered record between runs.

mod dynamodb;
mod file;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

pub use dynamodb::{DynamoCursorStore, PARTITION_KEY};
pub use file::FileCursorStore;

use crate::checkpoint::Checkpoint;
use crate::checkpoint::delivered::DeliveredSet;
use crate::ports::{CheckpointSave, CursorError, CursorState, CursorStore, ObjectLedger};

/// A store that keeps both checkpoints and the record of forwarded objects.
pub trait StateStore: CursorStore + ObjectLedger {
    fn as_cursor_store(&self) -> &dyn CursorStore;
    fn as_ledger(&self) -> &dyn ObjectLedger;
}

impl<T: CursorStore + ObjectLedger> StateStore for T {
    fn as_cursor_store(&self) -> &dyn CursorStore {
        self
    }

    fn as_ledger(&self) -> &dyn ObjectLedger {
        self
    }
}

/// Loads like the store it wraps and writes nothing: `--dry-run` leaves the cursor where it
/// was. What the run would have saved stays in memory, so its later reads still recognise what
/// its earlier reads printed.
pub struct ReadOnlyStore<'a> {
    inner: &'a dyn CursorStore,
    unsaved: Mutex<HashMap<i64, DeliveredSet>>,
}

impl<'a> ReadOnlyStore<'a> {
    pub fn new(inner: &'a dyn CursorStore) -> Self {
        Self { inner, unsaved: Mutex::new(HashMap::new()) }
    }

    fn unsaved(&self) -> Result<std::sync::MutexGuard<'_, HashMap<i64, DeliveredSet>>, CursorError> {
        self.unsaved.lock().map_err(|_| CursorError::Storage("dry-run record poisoned".into()))
    }
}

#[async_trait]
impl CursorStore for ReadOnlyStore<'_> {
    async fn acquire(&self, key: &str, held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError> {
        self.inner.acquire(key, held_until).await
    }

    async fn load_buckets(&self, key: &str, starts: &[i64]) -> Result<Vec<(i64, DeliveredSet)>, CursorError> {
        let mut buckets = self.inner.load_buckets(key, starts).await?;
        let unsaved = self.unsaved()?;
        buckets.retain(|(start, _)| !unsaved.contains_key(start));
        buckets.extend(starts.iter().filter_map(|s| unsaved.get(s).map(|set| (*s, set.clone()))));
        Ok(buckets)
    }

    async fn save(&self, _key: &str, save: &CheckpointSave<'_>) -> Result<(), CursorError> {
        let mut unsaved = self.unsaved()?;
        for (start, set) in &save.changed {
            unsaved.insert(*start, (*set).clone());
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CursorError> {
        self.inner.release(key).await
    }

    async fn peek(&self, key: &str) -> Result<CursorState, CursorError> {
        self.inner.peek(key).await
    }
}
