//! The one step both data paths take with a batch of events, pull and push alike: where an
//! acknowledged batch becomes a checkpoint.
//!
//! [`Ledger::deliver`] posts the batch, counts what the intake acknowledged, records the events
//! as delivered, moves the positions (the caller says how), prunes the record, saves, and unloads
//! what is behind: in that order, once, here. Nothing is recorded and no position moves unless
//! the intake answered for the batch, so a crash between the post and the save sends the batch
//! again and never loses it. Push mode saves its object's progress after this step returns.
//!
//! Every save costs DynamoDB write units by the size of what it writes, so batches that bring
//! little (a sweep re-reading what was delivered, finding a few late events) are saved
//! together: a save waits while the events delivered since the last one are fewer than
//! [`MAX_UNSAVED_EVENTS`] (a page), for at most [`MAX_UNSAVED_BATCHES`] batches, or until
//! [`Ledger::close`] at the end of the run. A batch that would take them past a page has them
//! saved before it is posted, so a crash sends again at most a page of events, as it would
//! with a save every batch, and never loses one.

use std::collections::HashMap;

use crate::budget::Budget;
use crate::checkpoint::Checkpoint;
use crate::checkpoint::delivered::DeliveredRecord;
use crate::ports::{AuditEvent, CheckpointSave, CursorError, CursorStore, IntakeSink, SinkError};
use crate::shaping::Shaping;

/// A cursor held by a run: its checkpoint and the delivered record beside it.
pub struct Ledger<'a> {
    key: String,
    store: &'a dyn CursorStore,
    /// What is sent of a batch, and how ([`crate::shaping`]).
    shaping: Shaping,
    pub checkpoint: Checkpoint,
    pub record: DeliveredRecord,
    /// Batches since the last save, and the events they recorded.
    unsaved_batches: u32,
    unsaved_events: usize,
}

/// Batches saved together at most.
pub const MAX_UNSAVED_BATCHES: u32 = 20;
/// Events recorded but not saved at most, the batch being posted included: a page.
pub const MAX_UNSAVED_EVENTS: usize = 100;

/// One batch: the events to post, and every event newly seen with its `@timestamp` (those
/// posted, and those set aside, such as oversize ones, which are recorded all the same).
pub struct Batch<'e> {
    pub send: &'e [&'e AuditEvent],
    pub seen: Vec<(i64, &'e AuditEvent)>,
}

/// Where the record may forget and unload, once the positions moved.
pub struct Floors {
    /// Nothing older is looked for again: pruned from the store.
    pub prune_before_ms: i64,
    /// Nothing older is looked for by this run: dropped from memory.
    pub unload_before_ms: i64,
}

/// What the intake made of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub acknowledged: u64,
    /// Taken in the batch but not acknowledged (refused inside it): never sent again.
    pub unacknowledged: u64,
    /// Kept from the intake by the action filters: recorded as delivered, never sent.
    pub filtered: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] CursorError),
}

impl<'a> Ledger<'a> {
    /// The record knows which buckets the store holds; a v1 checkpoint's single set is carried on.
    pub fn open(key: &str, store: &'a dyn CursorStore, mut checkpoint: Checkpoint, shaping: Shaping) -> Self {
        let record = DeliveredRecord::new(
            &checkpoint.delivered_buckets,
            &checkpoint.buckets_without_expiry,
            checkpoint.legacy_delivered.take(),
        );
        Self { key: key.to_owned(), store, shaping, checkpoint, record, unsaved_batches: 0, unsaved_events: 0 }
    }

    /// Brings the record's buckets for `[from_ms, to_ms]` into memory. A bucket the store lacks
    /// (a save cut short, an item deleted or expired) is empty, and is not asked for again.
    pub async fn ensure_loaded(&mut self, from_ms: i64, to_ms: i64) -> Result<(), CursorError> {
        let missing = self.record.unloaded_between(from_ms, to_ms);
        if missing.is_empty() {
            return Ok(());
        }
        let mut found: HashMap<i64, _> = self.store.load_buckets(&self.key, &missing).await?.into_iter().collect();
        for start in missing {
            self.record.add_loaded(start, found.remove(&start).unwrap_or_default());
        }
        Ok(())
    }

    /// Saves what waits, if anything does: push mode's record goes before its file's progress.
    pub async fn save_pending(&mut self) -> Result<(), CursorError> {
        if self.nothing_pending() { Ok(()) } else { self.save(false).await }
    }

    fn nothing_pending(&self) -> bool {
        self.unsaved_batches == 0 && self.record.unchanged()
    }

    /// The end of a run: saves what the last batches left unsaved and gives the hold back with
    /// that save (one write), or alone. A failed save is the run's error; a
    /// hold not given back expires by itself.
    pub async fn close(mut self) -> (Checkpoint, Result<(), CursorError>) {
        let saved = if self.nothing_pending() { Ok(false) } else { self.save(true).await.map(|()| true) };
        if !matches!(saved, Ok(true))
            && let Err(err) = self.store.release(&self.key).await
        {
            tracing::warn!("could not release the hold on {}: {err}", self.key);
        }
        (self.checkpoint, saved.map(|_| ()))
    }

    async fn save(&mut self, releases: bool) -> Result<(), CursorError> {
        self.checkpoint.delivered_buckets = self.record.starts();
        self.checkpoint.buckets_without_expiry = self.record.without_expiry();
        let changes = self.record.changes();
        let save = CheckpointSave {
            checkpoint: &self.checkpoint,
            changed: changes.changed,
            removed: changes.removed,
            deleted: changes.deleted,
            releases,
        };
        self.store.save(&self.key, &save).await?;
        self.record.saved();
        (self.unsaved_batches, self.unsaved_events) = (0, 0);
        Ok(())
    }

    /// Posts, counts, records, moves the positions with `move_positions` (which says where the
    /// record may forget), prunes, saves (or leaves the save to a later batch, see the module),
    /// unloads. Any error leaves the stored checkpoint as it was before the batch.
    pub async fn deliver(
        &mut self,
        sink: &dyn IntakeSink,
        budget: &Budget,
        batch: Batch<'_>,
        move_positions: impl FnOnce(&mut Checkpoint) -> Floors,
    ) -> Result<Delivered, DeliverError> {
        let news = batch.seen.len();
        if self.unsaved_events > 0 && self.unsaved_events + news > MAX_UNSAVED_EVENTS {
            self.save(false).await?;
        }
        let outgoing = Outgoing::of(&self.shaping, batch.send, sink.max_event_bytes());
        let send = outgoing.events();
        let unacknowledged = sink.send(&send, budget).await?.min(send.len());
        let delivered = Delivered {
            acknowledged: (send.len() - unacknowledged) as u64,
            unacknowledged: unacknowledged as u64,
            filtered: (batch.send.len() - send.len()) as u64,
        };
        self.checkpoint.events_forwarded += delivered.acknowledged;
        let positions = &mut self.checkpoint.positions;
        for (ts, event) in batch.seen {
            self.record.insert(ts, event);
            positions.newest_event_ms = positions.newest_event_ms.max(Some(ts));
        }
        let floors = move_positions(&mut self.checkpoint);
        self.record.prune_before(floors.prune_before_ms);
        self.unsaved_events += news;
        if self.unsaved_events < MAX_UNSAVED_EVENTS && self.unsaved_batches < MAX_UNSAVED_BATCHES {
            self.unsaved_batches += 1;
        } else {
            self.save(false).await?;
        }
        self.record.unload_before(floors.unload_before_ms);
        Ok(delivered)
    }
}

/// A batch's events as they go to the intake: those the filters admit, each shaped or as it is.
struct Outgoing<'e> {
    admitted: Vec<&'e AuditEvent>,
    shaped: Vec<Option<AuditEvent>>,
}

impl<'e> Outgoing<'e> {
    fn of(shaping: &Shaping, events: &[&'e AuditEvent], max_event_bytes: usize) -> Self {
        let admitted: Vec<&AuditEvent> =
            events.iter().copied().filter(|event| shaping.filter.admits(event.action.as_deref())).collect();
        let shaped = admitted.iter().map(|event| shaping.shaped(event, max_event_bytes)).collect();
        Self { admitted, shaped }
    }

    fn events(&self) -> Vec<&AuditEvent> {
        self.admitted.iter().zip(&self.shaped).map(|(event, shaped)| shaped.as_ref().unwrap_or(event)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::value::RawValue;

    use super::*;
    use crate::testing::{MemoryStore, RecordingSink};

    const MINUTE: i64 = 60_000;

    fn event(id: &str, ts: i64) -> AuditEvent {
        let text = format!(r#"{{"_document_id":"{id}","@timestamp":{ts},"action":"repo.create"}}"#);
        AuditEvent::from_raw(RawValue::from_string(text).expect("JSON"))
    }

    /// Stores every batch, then answers with an error: what a lost answer looks like.
    #[derive(Default)]
    struct StoresThenFails(Mutex<usize>);

    #[async_trait]
    impl IntakeSink for StoresThenFails {
        async fn send(&self, events: &[&AuditEvent], _: &Budget) -> Result<usize, SinkError> {
            *self.0.lock().expect("lock") += events.len();
            Err(SinkError::Fatal("the answer was lost".into()))
        }

        fn max_event_bytes(&self) -> usize {
            250_000
        }
    }

    fn to(ms: i64) -> impl FnOnce(&mut Checkpoint) -> Floors {
        move |checkpoint| {
            checkpoint.positions.fresh_read_to_ms = ms;
            Floors { prune_before_ms: 0, unload_before_ms: 0 }
        }
    }

    #[tokio::test]
    async fn an_acknowledged_batch_is_recorded_and_its_checkpoint_saved() {
        let store = MemoryStore::default();
        let mut ledger = Ledger::open("orgs/acme/web", &store, Checkpoint::starting_at(0), Shaping::default());
        let (a, b) = (event("a", 10 * MINUTE), event("b", 11 * MINUTE));
        let batch = Batch { send: &[&a], seen: vec![(10 * MINUTE, &a), (11 * MINUTE, &b)] };

        let (sink, budget) = (RecordingSink::default(), Budget::lasting(Duration::from_secs(5)));

        let delivered = ledger.deliver(&sink, &budget, batch, to(12 * MINUTE)).await.expect("delivered");

        assert_eq!(delivered, Delivered { acknowledged: 1, unacknowledged: 0, filtered: 0 });
        assert!(ledger.record.contains(11 * MINUTE, &b), "recorded though not sent");
        ledger.close().await.1.expect("saved at the end of the run");
        let saved = store.checkpoint().expect("saved");
        assert_eq!(saved.positions.fresh_read_to_ms, 12 * MINUTE);
        assert_eq!(saved.positions.newest_event_ms, Some(11 * MINUTE), "the set-aside event counts as seen");
        assert_eq!(saved.events_forwarded, 1, "the cursor's running count of acknowledged events");
    }

    #[tokio::test]
    async fn batches_that_bring_little_are_saved_together_never_leaving_more_than_a_page_unsaved() {
        let store = MemoryStore::default();
        let mut ledger = Ledger::open("orgs/acme/web", &store, Checkpoint::starting_at(0), Shaping::default());
        let (sink, budget) = (RecordingSink::default(), Budget::lasting(Duration::from_secs(5)));
        let events: Vec<AuditEvent> = (0..220).map(|n| event(&format!("e{n}"), 10 * MINUTE + n)).collect();
        let mut position = 10 * MINUTE;
        let mut deliver = async |ledger: &mut Ledger<'_>, range: std::ops::Range<usize>| {
            let send: Vec<&AuditEvent> = events[range.clone()].iter().collect();
            let seen = range.map(|n| (10 * MINUTE + n as i64, &events[n])).collect();
            position += 1;
            ledger.deliver(&sink, &budget, Batch { send: &send, seen }, to(position)).await.expect("delivered");
        };

        deliver(&mut ledger, 0..60).await;
        deliver(&mut ledger, 60..90).await;
        assert_eq!(store.save_count(), 0, "90 events wait");
        deliver(&mut ledger, 90..120).await;
        assert_eq!(store.save_count(), 1, "saved before a batch that would leave more than a page unsaved");
        let stored = store.checkpoint().expect("saved");
        assert_eq!(stored.positions.fresh_read_to_ms, 10 * MINUTE + 2, "the 90, not the batch after them");
        deliver(&mut ledger, 120..220).await;
        assert_eq!(store.save_count(), 3, "the 30 before a full page, and the page at once");

        for _ in 0..MAX_UNSAVED_BATCHES {
            deliver(&mut ledger, 0..0).await;
        }
        assert_eq!(store.save_count(), 3, "batches that bring nothing wait");
        deliver(&mut ledger, 0..0).await;
        assert_eq!(store.save_count(), 4, "the batch after the most that wait is saved with them");

        deliver(&mut ledger, 0..0).await;
        ledger.close().await.1.expect("closed");
        assert_eq!(store.checkpoint().expect("saved").positions.fresh_read_to_ms, position, "saved at the end");
        assert_eq!((store.save_count(), store.releases()), (5, 1), "the hold given back with the last save");
        let reopened = Ledger::open("orgs/acme/web", &store, store.checkpoint().expect("saved"), Shaping::default());
        reopened.close().await.1.expect("closed");
        assert_eq!((store.save_count(), store.releases()), (5, 2), "nothing left to save: the hold alone");
    }

    #[tokio::test]
    async fn a_batch_the_intake_did_not_answer_for_moves_nothing() {
        let store = MemoryStore::default();
        let mut ledger = Ledger::open("orgs/acme/web", &store, Checkpoint::starting_at(0), Shaping::default());
        let a = event("a", 10 * MINUTE);
        let sink = StoresThenFails::default();
        let batch = Batch { send: &[&a], seen: vec![(10 * MINUTE, &a)] };

        let outcome = ledger.deliver(&sink, &Budget::lasting(Duration::from_secs(5)), batch, to(12 * MINUTE)).await;

        assert!(matches!(outcome, Err(DeliverError::Sink(SinkError::Fatal(_)))));
        assert_eq!(*sink.0.lock().expect("lock"), 1, "the intake stored it");
        assert!(store.checkpoint().is_none(), "no checkpoint was saved: the next run sends it again");
        assert!(!ledger.record.contains(10 * MINUTE, &a), "not recorded: it is not skipped as delivered");
        assert_eq!(ledger.checkpoint.positions.fresh_read_to_ms, 0);
    }

    #[tokio::test]
    async fn a_save_that_fails_is_an_error_and_the_stored_checkpoint_stays() {
        let store = MemoryStore::default();
        *store.fail_at_save.lock().expect("lock") = Some(1);
        let mut ledger = Ledger::open("orgs/acme/web", &store, Checkpoint::starting_at(0), Shaping::default());
        let a = event("a", 10 * MINUTE);
        let batch = Batch { send: &[&a], seen: vec![(10 * MINUTE, &a)] };

        ledger
            .deliver(&RecordingSink::default(), &Budget::lasting(Duration::from_secs(5)), batch, to(12 * MINUTE))
            .await
            .expect("delivered; its save waits");

        assert!(matches!(ledger.close().await.1, Err(CursorError::Storage(_))));
        assert!(store.checkpoint().is_none());
    }

    #[tokio::test]
    async fn a_bucket_the_store_lacks_is_empty_and_not_asked_for_again() {
        let store = MemoryStore::default();
        let mut checkpoint = Checkpoint::starting_at(0);
        checkpoint.delivered_buckets = vec![10 * MINUTE];
        let mut ledger = Ledger::open("s3/audit-stream", &store, checkpoint, Shaping::default());

        ledger.ensure_loaded(10 * MINUTE, 10 * MINUTE + 1).await.expect("loaded");

        assert!(!ledger.record.contains(10 * MINUTE, &event("a", 10 * MINUTE)));
        assert!(ledger.record.unloaded_between(10 * MINUTE, 10 * MINUTE + 1).is_empty());
    }

    #[tokio::test]
    async fn a_batch_goes_out_filtered_and_dated_and_is_recorded_whole() {
        let store = MemoryStore::default();
        let exclude = crate::shaping::action_patterns("git.fetch").expect("valid");
        let shaping = Shaping { filter: crate::shaping::ActionFilter::new(Vec::new(), exclude), ..Shaping::default() };
        let mut ledger = Ledger::open("orgs/acme/all", &store, Checkpoint::starting_at(0), shaping);
        let text = |id: &str, action: &str| {
            format!(r#"{{"@timestamp":{},"_document_id":"{id}","action":"{action}"}}"#, MINUTE)
        };
        let parse = |text: String| AuditEvent::from_raw(RawValue::from_string(text).expect("JSON"));
        let web =
            format!(r#"{{"@timestamp":{MINUTE},"created_at":{MINUTE},"_document_id":"w","action":"repo.create"}}"#);
        let (clone, fetch, web_event) =
            (parse(text("c", "git.clone")), parse(text("f", "git.fetch")), parse(web.clone()));
        let send = [&clone, &fetch, &web_event];
        let batch = Batch { send: &send, seen: send.iter().map(|e| (MINUTE, *e)).collect() };
        let sink = RecordingSink::default();

        let delivered = ledger.deliver(&sink, &Budget::lasting(Duration::from_secs(5)), batch, to(2 * MINUTE)).await;

        assert_eq!(delivered.expect("delivered"), Delivered { acknowledged: 2, unacknowledged: 0, filtered: 1 });
        let dated = format!(r#"{{"created_at":{MINUTE},{}"#, &text("c", "git.clone")[1..]);
        assert_eq!(*sink.texts.lock().expect("texts"), [dated, web], "git dated, web byte for byte, fetch kept back");
        assert!(
            ledger.record.contains(MINUTE, &fetch),
            "the filtered event counts as delivered: never asked for again"
        );
    }
}
