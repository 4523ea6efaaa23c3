//! The push mode against in-memory objects, intake and store: what arrives, how often.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;
use crate::ports::{ObjectBody, ObjectError, ObjectListing};
use crate::shaping::Shaping;
use crate::testing::{FakeClock, MemoryStore, RecordingSink};

const T0: i64 = 1_790_000_000_000;
const BUCKET: &str = "audit-stream";

#[derive(Default)]
struct FakeObjects {
    objects: Mutex<HashMap<String, (String, Vec<u8>)>>,
    opened: Mutex<Vec<String>>,
}

impl FakeObjects {
    fn put(&self, key: &str, bytes: Vec<u8>) {
        let etag = format!("\"{:x}\"", xxh3_64(&bytes));
        self.objects.lock().expect("objects").insert(key.to_owned(), (etag, bytes));
    }

    /// As a listing or a notification gives it.
    fn etag(&self, key: &str) -> Option<String> {
        self.objects.lock().expect("objects").get(key).map(|(etag, _)| etag.clone())
    }

    fn opened(&self, key: &str) -> usize {
        self.opened.lock().expect("opened").iter().filter(|k| *k == key).count()
    }
}

#[async_trait]
impl ObjectSource for FakeObjects {
    async fn open(&self, object: &ObjectRef) -> Result<ObjectBody, ObjectError> {
        self.opened.lock().expect("opened").push(object.key.clone());
        let (etag, bytes) = self
            .objects
            .lock()
            .expect("objects")
            .get(&object.key)
            .cloned()
            .ok_or_else(|| ObjectError::Unreadable(format!("NoSuchKey: {}", object.key)))?;
        Ok(ObjectBody { etag, bytes: Box::new(std::io::Cursor::new(bytes)) })
    }

    async fn list(
        &self,
        _bucket: &str,
        _prefix: Option<&str>,
        _next: Option<String>,
    ) -> Result<ObjectListing, ObjectError> {
        let mut objects: Vec<(String, Option<String>)> = self
            .objects
            .lock()
            .expect("objects")
            .iter()
            .map(|(k, (etag, _))| (k.clone(), Some(etag.clone())))
            .collect();
        objects.sort();
        Ok(ObjectListing { objects, next: None })
    }
}

fn event(i: u64) -> String {
    format!(
        r#"{{"@timestamp":{},"_document_id":"doc-{i}","action":"repo.create","actor":"octocat","repo":"acme/r{i}"}}"#,
        T0 + i as i64 * 10
    )
}

fn ndjson(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(|i| event(i) + "\n").collect::<String>().into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

struct World {
    objects: FakeObjects,
    sink: RecordingSink,
    store: MemoryStore,
    clock: FakeClock,
}

impl World {
    fn new() -> Self {
        Self {
            objects: FakeObjects::default(),
            sink: RecordingSink::default(),
            store: MemoryStore::default(),
            clock: FakeClock::at(T0 + 3_600_000),
        }
    }

    async fn forward(&self, keys: &[&str], settings: &PushSettings) -> Result<(PushSummary, Vec<usize>), PushError> {
        let edges = PushEdges {
            objects: &self.objects,
            sink: &self.sink,
            store: &self.store,
            ledger: &self.store,
            clock: &self.clock,
            progress: None,
        };
        let objects: Vec<ObjectRef> = keys
            .iter()
            .map(|k| ObjectRef { bucket: BUCKET.into(), key: (*k).into(), etag: self.objects.etag(k) })
            .collect();
        forward_objects(&edges, BUCKET, &objects, settings, &Budget::lasting(Duration::from_secs(30))).await
    }

    /// (events never received, extra copies received) of `doc-0 .. doc-n`.
    fn missing_and_repeated(&self, n: u64) -> (usize, u32) {
        let received = self.sink.received.lock().expect("received");
        let missing = (0..n).filter(|i| !received.contains_key(&format!("doc-{i}"))).count();
        let repeated = received.values().map(|c| c - 1).sum();
        (missing, repeated)
    }
}

fn settings() -> PushSettings {
    PushSettings::new(Duration::from_secs(3_600), Shaping::default())
}

#[tokio::test]
async fn the_same_events_in_two_objects_arrive_once_and_count_as_duplicates() {
    let world = World::new();
    world.objects.put("2026/11/22/10/00/a.json.gz", gzip(&ndjson(0..300)));
    // GitHub retried part of a delivery: 200..300 again, beside new events, as a JSON array.
    let array = format!("[{}]", (200..500).map(event).collect::<Vec<_>>().join(","));
    world.objects.put("2026/11/22/10/01/b.json", array.into_bytes());

    let (summary, failed) =
        world.forward(&["2026/11/22/10/00/a.json.gz", "2026/11/22/10/01/b.json"], &settings()).await.expect("run");

    assert!(failed.is_empty(), "{summary:?}");
    assert_eq!(world.missing_and_repeated(500), (0, 0));
    assert_eq!(
        (summary.objects_forwarded, summary.figures.events_forwarded, summary.figures.duplicates_skipped),
        (2, 500, 100)
    );
    assert_eq!(summary.figures.newest_event.as_deref(), Some(crate::timefmt::rfc3339_ms(T0 + 4_990).as_str()));
}

#[tokio::test]
async fn a_redelivered_object_is_not_read_again_and_a_rewritten_one_is() {
    let world = World::new();
    world.objects.put("a.json.gz", gzip(&ndjson(0..50)));
    world.forward(&["a.json.gz"], &settings()).await.expect("first");
    let opened = world.objects.opened("a.json.gz");
    let (again, _) = world.forward(&["a.json.gz"], &settings()).await.expect("redelivered");
    assert_eq!((again.objects_already_forwarded, again.figures.events_forwarded), (1, 0));
    assert_eq!(world.objects.opened("a.json.gz"), opened, "its ETag is recorded complete: not opened again");

    // The same key written again with other content is another object.
    world.objects.put("a.json.gz", gzip(&ndjson(40..60)));
    let (rewritten, _) = world.forward(&["a.json.gz"], &settings()).await.expect("rewritten");
    assert_eq!(
        (rewritten.objects_forwarded, rewritten.figures.events_forwarded, rewritten.figures.duplicates_skipped),
        (1, 10, 10)
    );
    assert_eq!(world.missing_and_repeated(60), (0, 0));
}

#[tokio::test]
async fn a_damaged_gzip_fails_alone_and_sends_nothing_it_decoded() {
    let world = World::new();
    world.objects.put("a.json.gz", gzip(&ndjson(0..100)));
    let mut flipped = gzip(&ndjson(100..2_100));
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    world.objects.put("b.json.gz", flipped);
    let mut cut = gzip(&ndjson(2_100..4_100));
    cut.truncate(cut.len() * 3 / 4);
    world.objects.put("c.json.gz", cut);
    world.objects.put("d.json.gz", gzip(&ndjson(4_100..4_200)));
    let small = PushSettings { chunk_bytes: 10_000, ..settings() };

    let keys = ["a.json.gz", "b.json.gz", "c.json.gz", "d.json.gz"];
    let (summary, failed) = world.forward(&keys, &small).await.expect("run");

    assert_eq!(failed, vec![1, 2]);
    assert_eq!((summary.objects_forwarded, summary.objects_failed, summary.figures.events_forwarded), (2, 2, 200));
    assert!(summary.failures[0].error.contains("s3://audit-stream/b.json.gz"), "{:?}", summary.failures);
    let mut received: Vec<String> = world.sink.received.lock().expect("received").keys().cloned().collect();
    received.sort();
    let mut expected: Vec<String> = (0..100).chain(4_100..4_200).map(|i| format!("doc-{i}")).collect();
    expected.sort();
    assert_eq!(received, expected, "only a and d arrived");
}

#[tokio::test]
async fn a_plain_file_cut_off_is_retried_from_what_it_sent() {
    let world = World::new();
    let mut cut = ndjson(0..2_000);
    cut.truncate(cut.len() * 3 / 4 + 7);
    world.objects.put("a.json", cut);
    let small = PushSettings { chunk_bytes: 10_000, ..settings() };

    let (summary, failed) = world.forward(&["a.json"], &small).await.expect("run");
    assert_eq!((failed.len(), summary.objects_failed), (1, 1));
    let received = world.sink.received.lock().expect("received").len();
    assert!(received > 1_000, "the events before the cut were sent: {received}");

    // Written whole again under the same key: another ETag, so read again from its start, and
    // what was sent is recognised.
    world.objects.put("a.json", ndjson(0..2_000));
    let (retry, _) = world.forward(&["a.json"], &small).await.expect("retry");
    assert_eq!((retry.objects_forwarded, retry.figures.duplicates_skipped as usize), (1, received));
    assert_eq!(world.missing_and_repeated(2_000), (0, 0));
}

#[tokio::test]
async fn files_that_hold_no_audit_events_are_skipped_once_and_never_retried() {
    let world = World::new();
    world.objects.put("check.txt", b"GitHub audit log streaming test".to_vec());
    world.objects.put("check.json", br#"{"message":"test"}"#.to_vec());
    world.objects.put("empty.json.gz", gzip(b""));
    let keys = ["check.txt", "check.json", "empty.json.gz"];

    let (first, failed) = world.forward(&keys, &settings()).await.expect("run");
    let (second, _) = world.forward(&keys, &settings()).await.expect("again");

    assert!(failed.is_empty(), "{first:?}");
    assert_eq!(first.objects_skipped, 3);
    assert_eq!(second.objects_already_forwarded, 3);
    assert!(world.sink.received.lock().expect("received").is_empty());
}

#[tokio::test]
async fn a_crash_between_a_body_and_its_save_repeats_that_body_at_most() {
    let world = World::new();
    world.objects.put("a.json.gz", gzip(&ndjson(0..1_000)));
    let small = PushSettings { chunk_bytes: 5_000, ..settings() };
    let per_body = 5_000 / event(999).len() + 1;
    *world.store.fail_at_save.lock().expect("fail") = Some(4);

    let (crashed, failed) = world.forward(&["a.json.gz"], &small).await.expect("run");
    assert_eq!((crashed.objects_failed, failed.len()), (1, 1));
    world.forward(&["a.json.gz"], &small).await.expect("rerun");

    // The run saves once more as it closes, which may record the body the failed save left.
    let (missing, repeated) = world.missing_and_repeated(1_000);
    assert_eq!(missing, 0);
    assert!(repeated as usize <= per_body, "{repeated} repeated, a body holds {per_body}");
}

#[tokio::test]
async fn events_older_than_the_dedupe_window_are_no_longer_looked_for() {
    let world = World::new();
    world.objects.put("a.json", ndjson(0..10));
    // Two hours of newer events later, the first ten come again.
    let later: String = (0..10).map(|i| event(720_000 + i) + "\n").collect();
    world.objects.put("b.json", later.into_bytes());
    world.objects.put("c.json", ndjson(0..10));
    let window = PushSettings::new(Duration::from_secs(3_600), Shaping::default());

    let (summary, _) = world.forward(&["a.json", "b.json", "c.json"], &window).await.expect("run");

    assert_eq!(summary.figures.duplicates_skipped, 0);
    assert_eq!(world.missing_and_repeated(10).1, 10, "outside the window, by design");
}

#[tokio::test]
async fn an_event_that_is_not_json_fails_its_file_after_the_events_before_it_are_sent() {
    let world = World::new();
    let mut text = String::from_utf8(ndjson(0..10)).expect("text");
    text.push_str("{\"action\":\"repo.create\",}\n");
    text.push_str(&String::from_utf8(ndjson(10..20)).expect("text"));
    world.objects.put("a.json", text.into_bytes());

    let (summary, failed) = world.forward(&["a.json"], &settings()).await.expect("run");

    assert_eq!(failed, vec![0]);
    assert!(summary.failures[0].error.contains("event 11 is not valid JSON"), "{:?}", summary.failures);
    assert_eq!(world.missing_and_repeated(10), (0, 0));
    assert_eq!(world.sink.received.lock().expect("received").len(), 10);
}

#[tokio::test]
async fn a_bucket_the_checkpoint_lists_but_the_store_lacks_is_empty_and_asked_for_once() {
    let world = World::new();
    // A save cut short: the checkpoint names the minute's bucket, the store never got it.
    let minute = T0 - T0.rem_euclid(crate::checkpoint::delivered::BUCKET_SPAN_MS);
    let mut checkpoint = Checkpoint::starting_at(T0);
    checkpoint.delivered_buckets = vec![minute];
    world.store.put(checkpoint);
    world.objects.put("a.json.gz", gzip(&ndjson(0..300)));

    let (summary, _) = world.forward(&["a.json.gz"], &settings()).await.expect("run");

    assert_eq!(summary.figures.events_forwarded, 300);
    assert_eq!(world.missing_and_repeated(300), (0, 0));
    let asked = world.store.buckets_asked.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(asked, 1, "the missing bucket is asked for once, not once per event of its minute");
}

/// S3 at its slowest: answers after `delay`, then sends `head` and nothing more, ever.
struct SlowObjects {
    delay: Duration,
    head: Vec<u8>,
}

/// A download that stalls: no byte, no end.
struct Stalled;

impl tokio::io::AsyncRead for Stalled {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

#[async_trait]
impl ObjectSource for SlowObjects {
    async fn open(&self, _: &ObjectRef) -> Result<ObjectBody, ObjectError> {
        tokio::time::sleep(self.delay).await;
        let bytes = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(self.head.clone()), Stalled);
        Ok(ObjectBody { etag: "\"slow\"".into(), bytes: Box::new(bytes) })
    }

    async fn list(&self, _: &str, _: Option<&str>, _: Option<String>) -> Result<ObjectListing, ObjectError> {
        Ok(ObjectListing::default())
    }
}

/// Forwards `a` and `b` from `objects` within a budget of 1.5 s: the summary, the objects
/// handed back, and how long it took.
async fn forward_slowly(objects: &SlowObjects) -> (PushSummary, Vec<usize>, Duration) {
    let world = World::new();
    let edges = PushEdges {
        objects,
        sink: &world.sink,
        store: &world.store,
        ledger: &world.store,
        clock: &world.clock,
        progress: None,
    };
    let refs: Vec<ObjectRef> = ["a.json", "b.json"]
        .iter()
        .map(|k| ObjectRef { bucket: BUCKET.into(), key: (*k).into(), etag: None })
        .collect();
    let started = Instant::now();
    let budget = Budget::lasting(Duration::from_millis(1_500));
    let (summary, failed) = forward_objects(&edges, BUCKET, &refs, &settings(), &budget).await.expect("run");
    (summary, failed, started.elapsed())
}

#[tokio::test]
async fn a_slow_s3_stops_the_run_on_its_budget_as_a_stop_not_a_failure() {
    for (what, objects) in [
        ("an answer that never comes in time", SlowObjects { delay: Duration::from_secs(30), head: Vec::new() }),
        ("a download that stalls", SlowObjects { delay: Duration::ZERO, head: ndjson(0..20) }),
    ] {
        let (summary, failed, took) = forward_slowly(&objects).await;

        assert_eq!(summary.figures.stop_reason, StopReason::Budget, "{what}");
        assert_eq!((summary.objects_failed, summary.objects_forwarded), (0, 0), "{what}: {summary:?}");
        assert_eq!(failed, vec![0, 1], "{what}: both objects are handed back to be tried again");
        assert!(took < Duration::from_millis(2_500), "{what}: the run took {took:?} on a 1.5 s budget");
    }
}
