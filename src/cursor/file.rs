//! Checkpoints as files under `STATE_DIR`: one per target, and beside it a folder with one file
//! per bucket of its delivered record, each replaced atomically; an OS file lock keeps two runs
//! off the same target.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::checkpoint::delivered::DeliveredSet;
use crate::checkpoint::{Checkpoint, Style};
use crate::ports::{CheckpointSave, CursorError, CursorState, CursorStore, ObjectLedger, ObjectRecord};

pub struct FileCursorStore {
    dir: PathBuf,
    locks: Mutex<HashMap<String, File>>,
}

impl FileCursorStore {
    fn read_checkpoint(&self, key: &str) -> Result<Option<Checkpoint>, CursorError> {
        let path = self.path_for(key);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(Checkpoint::from_json(&text).map_err(|problem| {
                CursorError::Storage(format!(
                    "{}: {problem}; fix or delete the file (and its .delivered folder) to restart from FIRST_RUN_LOOKBACK",
                    path.display()
                ))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage_error("read", &path, e)),
        }
    }

    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), locks: Mutex::new(HashMap::new()) }
    }

    /// `orgs/acme/web` → `STATE_DIR/orgs_acme_web.json`
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(key)))
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.lock", file_stem(key)))
    }

    /// `STATE_DIR/orgs_acme_web.delivered/`
    pub fn buckets_dir(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.delivered", file_stem(key)))
    }
}

/// `STATE_DIR/s3_BUCKET.objects/<hash of the object key>.json`
fn object_path(dir: &Path, key: &str, object: &str) -> PathBuf {
    dir.join(format!("{}.objects", file_stem(key)))
        .join(format!("{:016x}.json", xxhash_rust::xxh3::xxh3_64(object.as_bytes())))
}

/// An object's record as a file: its key beside the record, as the file name is a hash.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredObject {
    object: String,
    #[serde(flatten)]
    record: ObjectRecord,
}

fn bucket_path(dir: &Path, start: i64) -> PathBuf {
    dir.join(format!("{start}.bin"))
}

/// Buckets first (each replaced whole, their folder synced once for all), then the checkpoint
/// that lists them, then the buckets it no longer lists.
fn write_save(
    path: &Path,
    buckets: &Path,
    checkpoint: &str,
    changed: &[(i64, Vec<u8>)],
    removed: &[i64],
) -> Result<(), CursorError> {
    if !changed.is_empty() {
        match fs::create_dir(buckets) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                fs::create_dir_all(buckets).map_err(|e| storage_error("create", buckets, e))?
            }
            _ => {}
        }
        for (start, bytes) in changed {
            replace_file(&bucket_path(buckets, *start), bytes)?;
        }
        sync_dir(buckets)?;
    }
    replace_file(path, checkpoint.as_bytes())?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    for start in removed {
        let bucket = bucket_path(buckets, *start);
        match fs::remove_file(&bucket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(storage_error("remove", &bucket, e)),
            _ => {}
        }
    }
    Ok(())
}

fn file_stem(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

fn storage_error(what: &str, path: &Path, err: std::io::Error) -> CursorError {
    CursorError::Storage(format!("cannot {what} {}: {err}", path.display()))
}

/// Temp file, fsync, rename: a kill at any instant leaves the old or the new file, never a
/// torn one. The caller syncs the directory, which makes the rename durable.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), CursorError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| storage_error("create", &tmp, e))?;
    file.write_all(contents).map_err(|e| storage_error("write", &tmp, e))?;
    file.sync_all().map_err(|e| storage_error("sync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| storage_error("replace", path, e))
}

fn sync_dir(dir: &Path) -> Result<(), CursorError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| storage_error("sync", dir, e))
}

#[async_trait]
impl CursorStore for FileCursorStore {
    async fn acquire(&self, key: &str, _held_until: SystemTime) -> Result<Option<Checkpoint>, CursorError> {
        fs::create_dir_all(&self.dir).map_err(|e| storage_error("create", &self.dir, e))?;
        let lock_path = self.lock_path(key);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| storage_error("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(CursorError::Busy { key: key.to_owned() });
            }
            Err(TryLockError::Error(e)) => return Err(storage_error("lock", &lock_path, e)),
        }
        let checkpoint = self.read_checkpoint(key)?;
        self.locks.lock().map_err(|_| CursorError::Storage("lock table poisoned".into()))?.insert(key.to_owned(), lock);
        Ok(checkpoint)
    }

    async fn load_buckets(&self, key: &str, starts: &[i64]) -> Result<Vec<(i64, DeliveredSet)>, CursorError> {
        let dir = self.buckets_dir(key);
        let mut buckets = Vec::with_capacity(starts.len());
        for &start in starts {
            let path = bucket_path(&dir, start);
            match fs::read(&path) {
                Ok(bytes) => buckets.push((
                    start,
                    DeliveredSet::decode(&bytes).map_err(|problem| {
                        CursorError::Storage(format!(
                            "{}: {problem}; delete it (events of its minute may be sent again) or the whole state of this target",
                            path.display()
                        ))
                    })?,
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(storage_error("read", &path, e)),
            }
        }
        Ok(buckets)
    }

    async fn save(&self, key: &str, save: &CheckpointSave<'_>) -> Result<(), CursorError> {
        let path = self.path_for(key);
        let buckets = self.buckets_dir(key);
        let checkpoint = save.checkpoint.to_json(Style::Readable).map_err(|e| CursorError::Storage(e.to_string()))?;
        let changed: Vec<(i64, Vec<u8>)> = save.changed.iter().map(|(start, set)| (*start, set.encode())).collect();
        let removed: Vec<i64> = save.removed.iter().chain(&save.deleted).copied().collect();
        tokio::task::spawn_blocking(move || write_save(&path, &buckets, &checkpoint, &changed, &removed))
            .await
            .map_err(|e| CursorError::Storage(format!("checkpoint writer stopped: {e}")))??;
        if save.releases {
            self.release(key).await?;
        }
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), CursorError> {
        // Dropping the handle releases the OS lock.
        self.locks.lock().map_err(|_| CursorError::Storage("lock table poisoned".into()))?.remove(key);
        Ok(())
    }

    async fn peek(&self, key: &str) -> Result<CursorState, CursorError> {
        let held_here =
            self.locks.lock().map_err(|_| CursorError::Storage("lock table poisoned".into()))?.contains_key(key);
        let lock_path = self.lock_path(key);
        let held = held_here
            || match File::open(&lock_path) {
                Ok(lock) => matches!(lock.try_lock_shared(), Err(TryLockError::WouldBlock)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(storage_error("open", &lock_path, e)),
            };
        Ok(CursorState { checkpoint: self.read_checkpoint(key)?, held })
    }
}

#[async_trait]
impl ObjectLedger for FileCursorStore {
    async fn load_object(&self, key: &str, object: &str) -> Result<Option<ObjectRecord>, CursorError> {
        let path = object_path(&self.dir, key, object);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage_error("read", &path, e)),
        };
        let stored: StoredObject = serde_json::from_str(&text).map_err(|e| {
            CursorError::Storage(format!("{}: {e}; delete it to forward the object again", path.display()))
        })?;
        // Another key with the same hash: this one has no record.
        Ok((stored.object == object).then_some(stored.record))
    }

    async fn save_object(&self, key: &str, object: &str, record: &ObjectRecord) -> Result<(), CursorError> {
        let path = object_path(&self.dir, key, object);
        let text = serde_json::to_vec(&StoredObject { object: object.to_owned(), record: record.clone() })
            .map_err(|e| CursorError::Storage(format!("cannot encode the record of {object}: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir).map_err(|e| storage_error("create", dir, e))?;
            replace_file(&path, &text)?;
            sync_dir(dir)
        })
        .await
        .map_err(|e| CursorError::Storage(format!("object record writer stopped: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_is_refused_until_the_first_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = FileCursorStore::new(dir.path());
        let second = FileCursorStore::new(dir.path());
        let now = SystemTime::now();
        assert!(first.acquire("orgs/acme/web", now).await.expect("first").is_none());
        assert!(matches!(second.acquire("orgs/acme/web", now).await, Err(CursorError::Busy { .. })));
        first.release("orgs/acme/web").await.expect("release");
        assert!(second.acquire("orgs/acme/web", now).await.is_ok());
    }

    #[tokio::test]
    async fn a_peek_tells_whether_another_holds_the_cursor_and_takes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (holder, onlooker) = (FileCursorStore::new(dir.path()), FileCursorStore::new(dir.path()));
        let key = "backfill/orgs/acme/web/2026-11-01T00:00:00Z..2026-11-02T00:00:00Z";
        let never = onlooker.peek(key).await.expect("peek");
        assert!(!never.held && never.checkpoint.is_none());
        holder.acquire(key, SystemTime::now()).await.expect("acquire");
        assert!(onlooker.peek(key).await.expect("peek").held);
        holder.release(key).await.expect("release");
        assert!(!onlooker.peek(key).await.expect("peek").held);
        assert!(holder.acquire(key, SystemTime::now()).await.is_ok(), "the peek left no hold behind");
    }

    #[tokio::test]
    async fn saved_checkpoint_is_loaded_by_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileCursorStore::new(dir.path());
        let now = SystemTime::now();
        store.acquire("orgs/acme/web", now).await.expect("acquire");
        let mut cp = Checkpoint::starting_at(1_700_000_000_000);
        let mut bucket = DeliveredSet::default();
        let event = crate::event::AuditEvent::from_raw(
            serde_json::value::RawValue::from_string(r#"{"@timestamp":1700000000500,"_document_id":"a"}"#.into())
                .expect("json"),
        );
        bucket.insert(1_700_000_000_500, &event);
        cp.delivered_buckets = vec![1_699_999_980_000];
        let save = CheckpointSave {
            checkpoint: &cp,
            changed: vec![(1_699_999_980_000, &bucket)],
            removed: vec![],
            deleted: vec![],
            releases: true,
        };
        store.save("orgs/acme/web", &save).await.expect("save, giving the hold back");
        assert_eq!(store.acquire("orgs/acme/web", now).await.expect("load"), Some(cp.clone()));
        let loaded = store.load_buckets("orgs/acme/web", &[1_699_999_980_000, 5]).await.expect("buckets");
        assert_eq!(loaded, vec![(1_699_999_980_000, bucket.clone())]);

        cp.delivered_buckets.clear();
        let save = CheckpointSave {
            checkpoint: &cp,
            changed: vec![],
            removed: vec![1_699_999_980_000],
            deleted: vec![],
            releases: false,
        };
        store.save("orgs/acme/web", &save).await.expect("save");
        assert!(store.load_buckets("orgs/acme/web", &[1_699_999_980_000]).await.expect("buckets").is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn any_bytes_in_the_state_file_load_or_fail_naming_the_file(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = FileCursorStore::new(dir.path());
            fs::write(store.path_for("orgs/acme/web"), &bytes).expect("write");
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            match runtime.block_on(store.acquire("orgs/acme/web", SystemTime::now())) {
                Ok(loaded) => proptest::prop_assert!(loaded.is_some(), "a file that is there never reads as a first run"),
                Err(err) => proptest::prop_assert!(err.to_string().contains("orgs_acme_web.json"), "{err}"),
            }
        }
    }

    #[tokio::test]
    async fn a_corrupt_file_is_a_clear_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileCursorStore::new(dir.path());
        fs::write(store.path_for("orgs/acme/web"), "{not json").expect("write");
        let err = store.acquire("orgs/acme/web", SystemTime::now()).await.expect_err("corrupt");
        assert!(err.to_string().contains("delete the file"), "{err}");
    }
}
