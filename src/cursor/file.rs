//! Checkpoints as files under `STATE_DIR`, one per target, replaced atomically; an OS file lock
//! keeps two runs off the same target.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use super::Checkpoint;
use crate::ports::{CursorError, CursorStore};

pub struct FileCursorStore {
    dir: PathBuf,
    locks: Mutex<HashMap<String, File>>,
}

impl FileCursorStore {
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
}

fn file_stem(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

fn storage_error(what: &str, path: &Path, err: std::io::Error) -> CursorError {
    CursorError::Storage(format!("cannot {what} {}: {err}", path.display()))
}

/// Temp file, fsync, rename, fsync the directory: a kill at any instant leaves the old or the
/// new checkpoint, never a torn one.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), CursorError> {
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp).map_err(|e| storage_error("create", &tmp, e))?;
    file.write_all(contents).map_err(|e| storage_error("write", &tmp, e))?;
    file.sync_all().map_err(|e| storage_error("sync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| storage_error("replace", path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| storage_error("sync", dir, e))?;
    }
    Ok(())
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
        let path = self.path_for(key);
        let checkpoint = match fs::read_to_string(&path) {
            Ok(text) => Some(Checkpoint::from_json(&text).map_err(|problem| {
                CursorError::Storage(format!(
                    "{}: {problem}; fix or delete the file to restart from FIRST_RUN_LOOKBACK",
                    path.display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(storage_error("read", &path, e)),
        };
        self.locks.lock().map_err(|_| CursorError::Storage("lock table poisoned".into()))?.insert(key.to_owned(), lock);
        Ok(checkpoint)
    }

    async fn save(&self, key: &str, checkpoint: &Checkpoint) -> Result<(), CursorError> {
        let path = self.path_for(key);
        let contents = checkpoint.to_json()?;
        tokio::task::spawn_blocking(move || write_atomically(&path, contents.as_bytes()))
            .await
            .map_err(|e| CursorError::Storage(format!("checkpoint writer stopped: {e}")))?
    }

    async fn release(&self, key: &str) -> Result<(), CursorError> {
        // Dropping the handle releases the OS lock.
        self.locks.lock().map_err(|_| CursorError::Storage("lock table poisoned".into()))?.remove(key);
        Ok(())
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
    async fn saved_checkpoint_is_loaded_by_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileCursorStore::new(dir.path());
        let now = SystemTime::now();
        store.acquire("orgs/acme/web", now).await.expect("acquire");
        let cp = Checkpoint::starting_at(1_700_000_000_000);
        store.save("orgs/acme/web", &cp).await.expect("save");
        store.release("orgs/acme/web").await.expect("release");
        assert_eq!(store.acquire("orgs/acme/web", now).await.expect("load"), Some(cp));
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
