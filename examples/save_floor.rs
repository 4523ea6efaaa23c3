//! The least a save per page costs the DynamoDB store, for `make bench`: SAVES saves through
//! the connector's own store and AWS client, each as small as a page's can be (one bucket of
//! 100 new events, and the checkpoint that lists it: two requests), and nothing else. Against a
//! DynamoDB that answers at once, this is the CPU that saving every page adds to any drain, the
//! SDK's part of it included.
//!
//!     save_floor SAVES     (the connector's environment: GITHUB_ORG, CURSOR_TABLE, AWS_ENDPOINT_URL…)
//!
//! It writes made-up buckets under a key of its own, so it runs only against a DynamoDB on this
//! machine (`AWS_ENDPOINT_URL` on the loopback), never a real table.

use std::time::{Duration, SystemTime};

use github_audit_sekoia::checkpoint::Checkpoint;
use github_audit_sekoia::checkpoint::delivered::DeliveredSet;
use github_audit_sekoia::config::{Config, is_loopback};
use github_audit_sekoia::connector::Connector;
use github_audit_sekoia::event::AuditEvent;
use github_audit_sekoia::ports::CheckpointSave;
use serde_json::value::RawValue;
use url::Url;

type Error = Box<dyn std::error::Error>;

/// No cursor of a real target is ever named so.
const KEY: &str = "save-floor-bench";
const EVENTS_A_PAGE: i64 = 100;
/// A backlog's page: 100 events over about 26 s.
const PAGE_MS: i64 = 26_000;

/// A page's events in one bucket of their own (made once: what a save costs is measured, not
/// how a page is read).
fn page_bucket(start_ms: i64) -> Result<DeliveredSet, Error> {
    let mut bucket = DeliveredSet::default();
    for n in 0..EVENTS_A_PAGE {
        let at = start_ms + n * PAGE_MS / EVENTS_A_PAGE;
        let raw = RawValue::from_string(format!(r#"{{"@timestamp":{at},"_document_id":"event-{n}"}}"#))?;
        bucket.insert(at, &AuditEvent::from_raw(raw));
    }
    Ok(bucket)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let saves: i64 = std::env::args().nth(1).ok_or("usage: save_floor SAVES")?.parse()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok().and_then(|url| Url::parse(&url).ok());
    if !endpoint.is_some_and(|url| is_loopback(&url)) {
        return Err("save_floor writes made-up buckets: set AWS_ENDPOINT_URL to a DynamoDB on the loopback".into());
    }
    let connector = Connector::new(Config::from_env()?).await?;
    let store = connector.store();
    let started_ms = 1_700_000_000_000;
    let stored = store.acquire(KEY, SystemTime::now() + Duration::from_secs(3600)).await?;
    let mut checkpoint = stored.unwrap_or_else(|| Checkpoint::starting_at(started_ms));
    let bucket = page_bucket(started_ms)?;
    for page in 0..saves {
        let start_ms = started_ms + page * PAGE_MS;
        checkpoint.delivered_buckets = vec![start_ms];
        let save = CheckpointSave {
            checkpoint: &checkpoint,
            changed: vec![(start_ms, &bucket)],
            removed: vec![start_ms - PAGE_MS],
            deleted: vec![],
            releases: false,
        };
        store.save(KEY, &save).await?;
    }
    println!("{saves}");
    Ok(())
}
