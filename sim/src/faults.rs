//! Fault scripts: what the next requests go through, one entry per request.

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
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
    /// GitHub (or a proxy before it): a 200 whose gzip body (`content-encoding: gzip`) is small
    /// on the wire and inflates to this many bytes of an open JSON array: a decompression bomb.
    GzipBomb(u64),
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

/// What the endless answers are made of, a mebibyte at a time.
static SPACES: [u8; 1 << 20] = [b' '; 1 << 20];

/// A 200 that streams `bytes` of an open JSON array, never held in memory.
pub(super) fn huge_body(headers: HeaderMap, bytes: u64) -> Response {
    let chunks = bytes.div_ceil(SPACES.len() as u64);
    let body = std::iter::once(Bytes::from_static(b"["))
        .chain((0..chunks).map(|_| Bytes::from_static(&SPACES)))
        .map(Ok::<_, std::io::Error>);
    (StatusCode::OK, headers, Body::from_stream(tokio_stream::iter(body))).into_response()
}

/// `body` gzipped, as GitHub answers a client that accepts it.
pub(super) fn gzipped(headers: HeaderMap, body: &[u8]) -> Response {
    gzip_answer(headers, [body], Compression::fast())
}

/// A 200 of `bytes` of an open JSON array once inflated, sent gzipped: about a thousandth of
/// it on the wire.
pub(super) fn gzip_bomb(headers: HeaderMap, bytes: u64) -> Response {
    let spaces = (0..bytes.div_ceil(SPACES.len() as u64)).map(|_| &SPACES[..]);
    gzip_answer(headers, std::iter::once(&b"["[..]).chain(spaces), Compression::best())
}

/// A 200 whose body is `parts` gzipped (`content-encoding: gzip`).
fn gzip_answer<'a>(mut headers: HeaderMap, parts: impl IntoIterator<Item = &'a [u8]>, level: Compression) -> Response {
    let mut encoder = GzEncoder::new(Vec::new(), level);
    let written = parts.into_iter().try_for_each(|part| encoder.write_all(part));
    match written.and_then(|()| encoder.finish()) {
        Ok(compressed) => {
            headers.insert("content-encoding", HeaderValue::from_static("gzip"));
            (StatusCode::OK, headers, compressed).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
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
