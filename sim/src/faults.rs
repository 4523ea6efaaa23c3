//! Fault scripts: what the next requests go through, one entry per request.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and nothing else.
    Status(u16),
    /// Answer with this status and `retry-after: seconds`.
    RetryAfter(u16, u64),
    /// GitHub: the hourly allowance is spent until this long from now (403, remaining 0).
    RateLimitExhausted(Duration),
    /// GitHub: a secondary rate limit (403 and GitHub's message, `retry-after` if given).
    SecondaryLimit(Option<u64>),
    /// Answer normally, only this much later.
    Delay(Duration),
    /// A 200 whose body breaks off half-way.
    BrokenBody,
    /// A 200 whose body goes on for this many bytes (an open JSON array, then spaces), streamed
    /// without a length: a broken proxy or a hostile host.
    HugeBody(u64),
    /// GitHub: a normal page whose `rel="next"` link points to another host.
    ForeignNextLink,
    /// GitHub: 403 "API rate limit exceeded" with no rate-limit or retry header at all.
    RateLimitMessageOnly,
    /// GitHub: 403 with `x-ratelimit-remaining: 0`, a reset 20 digits long and a `retry-after`
    /// that is neither seconds nor a date.
    AbsurdRateHeaders,
    /// GitHub: a page with no events that still links to the same next page.
    EmptyPageWithNext,
    /// GitHub going round (as other connectors saw, Azure-Sentinel 9356 and 11404, grove 95): a
    /// normal page whose `next` link is the request's own, leading back to the page just served.
    NextLinkToItself,
    /// GitHub going round: a normal page whose `next` link leads back to its query's first page.
    NextLinkToFirstPage,
    /// GitHub: a normal page that also carries an event from a minute before the range asked
    /// for (`_document_id` `outside-the-range`).
    EventOutsideRange,
    /// Intake: the batch is stored, then the connection drops before any status line.
    StoreThenDrop,
}

/// Faults for the coming requests, in order; `None` answers normally.
#[derive(Debug, Default)]
pub struct FaultScript {
    queue: VecDeque<Option<Fault>>,
}

impl FaultScript {
    pub fn push(&mut self, fault: Option<Fault>) {
        self.queue.push_back(fault);
    }

    /// `requests` entries, each a fault with `probability`, picked from `kinds`. Same seed,
    /// same schedule.
    pub fn random(&mut self, seed: u64, requests: usize, probability: f64, kinds: &[Fault]) {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..requests {
            let fault = (!kinds.is_empty() && rng.random_bool(probability.clamp(0.0, 1.0)))
                .then(|| kinds[rng.random_range(0..kinds.len())].clone());
            self.queue.push_back(fault);
        }
    }

    pub fn take_next(&mut self) -> Option<Fault> {
        self.queue.pop_front().flatten()
    }

    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl Extend<Option<Fault>> for FaultScript {
    fn extend<T: IntoIterator<Item = Option<Fault>>>(&mut self, steps: T) {
        self.queue.extend(steps);
    }
}

/// Ends the request's connection with no answer at all: the server's connection task unwinds
/// (without a panic message), so the client reads no status line.
pub(super) fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("simulated: the connection drops before any answer"))
}

/// A 200 that streams `bytes` of an open JSON array, never held in memory.
pub(super) fn huge_body(headers: HeaderMap, bytes: u64) -> Response {
    static SPACES: [u8; 1 << 20] = [b' '; 1 << 20];
    let chunks = bytes.div_ceil(SPACES.len() as u64);
    let body = std::iter::once(Bytes::from_static(b"["))
        .chain((0..chunks).map(|_| Bytes::from_static(&SPACES)))
        .map(Ok::<_, std::io::Error>);
    (StatusCode::OK, headers, Body::from_stream(tokio_stream::iter(body))).into_response()
}

/// A 200 that sends half of `body`, then breaks the connection.
pub(super) fn broken_body(headers: HeaderMap, body: String) -> Response {
    let body = Bytes::from(body.into_bytes());
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(body.slice(..body.len() / 2)),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated connection reset")),
    ];
    (StatusCode::OK, headers, Body::from_stream(tokio_stream::iter(chunks))).into_response()
}
