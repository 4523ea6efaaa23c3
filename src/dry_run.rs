//! `--dry-run`: events go to stdout as NDJSON instead of the intake.

use std::io::Write;

use async_trait::async_trait;

use crate::budget::Budget;
use crate::ports::{AuditEvent, IntakeSink, SinkError};
use crate::sekoia::MAX_EVENT_BYTES;

pub struct NdjsonStdout;

#[async_trait]
impl IntakeSink for NdjsonStdout {
    fn max_event_bytes(&self) -> usize {
        MAX_EVENT_BYTES
    }

    async fn send(&self, events: &[&AuditEvent], _budget: &Budget) -> Result<usize, SinkError> {
        let mut out = std::io::stdout().lock();
        for event in events {
            writeln!(out, "{}", event.json()).map_err(|e| SinkError::Fatal(format!("cannot write to stdout: {e}")))?;
        }
        out.flush().map_err(|e| SinkError::Fatal(format!("cannot write to stdout: {e}")))?;
        Ok(0)
    }
}
