//! An object's bytes as events: gunzipped when they start with gzip's magic bytes (GitHub
//! writes `.json.gz`; anything else is read as it is), then split into objects.
//!
//! Gzip checks its data only at the end of each member (CRC-32 and length): a damaged file can
//! decode to plausible but altered events before the fault shows. So a gzip file is read through
//! once, its events discarded, before it is read again for them ([`check`]): a corrupt one
//! sends nothing, and the SIEM never receives an event the stream did not write.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::split::{Piece, Splitter};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const READ_BYTES: usize = 64 * 1024;

/// Why an object's events cannot be read further.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the object: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Split(#[from] super::split::SplitError),
}

/// An object's bytes that stop at `deadline`: a read still waiting then fails (`TimedOut`), so a
/// slow or stalled download never outlives the run's budget.
pub fn until(bytes: Box<dyn AsyncRead + Send + Unpin>, deadline: Instant) -> Box<dyn AsyncRead + Send + Unpin> {
    Box::new(UntilDeadline { bytes, deadline: Box::pin(tokio::time::sleep_until(deadline)) })
}

struct UntilDeadline {
    bytes: Box<dyn AsyncRead + Send + Unpin>,
    deadline: Pin<Box<Sleep>>,
}

impl AsyncRead for UntilDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            let out_of_time = std::io::Error::new(std::io::ErrorKind::TimedOut, "the run's time budget ran out");
            return Poll::Ready(Err(out_of_time));
        }
        Pin::new(&mut self.bytes).poll_read(cx, buf)
    }
}

/// Concatenated gzip members are one file to gunzip too.
fn gunzip<R: tokio::io::AsyncBufRead>(compressed: R) -> GzipDecoder<R> {
    let mut decoder = GzipDecoder::new(compressed);
    decoder.multiple_members(true);
    decoder
}

/// What [`check`] found.
pub enum Checked {
    /// Gzip, whole and sound: open the object again to read its events.
    SoundGzip,
    /// Not gzip: its events are read from these bytes, nothing of them consumed.
    Plain(Box<dyn AsyncRead + Send + Unpin>),
}

/// Reads a gzip file through, checking every member; hands a plain file back untouched.
pub async fn check(bytes: Box<dyn AsyncRead + Send + Unpin>) -> Result<Checked, ReadError> {
    let mut buffered = BufReader::with_capacity(READ_BYTES, bytes);
    if !buffered.fill_buf().await?.starts_with(&GZIP_MAGIC) {
        return Ok(Checked::Plain(Box::new(buffered)));
    }
    tokio::io::copy(&mut gunzip(buffered), &mut tokio::io::sink()).await?;
    Ok(Checked::SoundGzip)
}

/// The events of one object, in file order.
pub struct Events {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    splitter: Splitter,
    ready: VecDeque<Piece>,
    buffer: Vec<u8>,
    ended: bool,
}

impl Events {
    /// `max_event_bytes`: longer events come out as [`Piece::Oversize`], never held whole.
    pub async fn open(bytes: Box<dyn AsyncRead + Send + Unpin>, max_event_bytes: usize) -> Result<Self, ReadError> {
        let mut buffered = BufReader::with_capacity(READ_BYTES, bytes);
        let head = buffered.fill_buf().await?;
        let reader: Box<dyn AsyncRead + Send + Unpin> =
            if head.starts_with(&GZIP_MAGIC) { Box::new(gunzip(buffered)) } else { Box::new(buffered) };
        Ok(Self {
            reader,
            splitter: Splitter::new(max_event_bytes),
            ready: VecDeque::new(),
            buffer: vec![0; READ_BYTES],
            ended: false,
        })
    }

    /// The next event, or `None` at the end of a well-formed object.
    pub async fn next(&mut self) -> Result<Option<Piece>, ReadError> {
        loop {
            if let Some(piece) = self.ready.pop_front() {
                return Ok(Some(piece));
            }
            if self.ended {
                return Ok(None);
            }
            let read = self.reader.read(&mut self.buffer).await?;
            let mut out = Vec::new();
            if read == 0 {
                self.ended = true;
                self.splitter.finish()?;
            } else {
                self.splitter.feed(&self.buffer[..read], &mut out)?;
            }
            self.ready.extend(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    async fn all(bytes: Vec<u8>) -> Result<Vec<Piece>, ReadError> {
        let mut events = Events::open(Box::new(std::io::Cursor::new(bytes)), 1_000).await?;
        let mut pieces = Vec::new();
        while let Some(piece) = events.next().await? {
            pieces.push(piece);
        }
        Ok(pieces)
    }

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text).expect("gzip");
        encoder.finish().expect("gzip")
    }

    #[tokio::test]
    async fn gzip_plain_and_multi_member_gzip_read_alike() {
        let text = b"{\"a\":1}\n{\"b\":2}\n".to_vec();
        let expected = vec![Piece::Object(r#"{"a":1}"#.into()), Piece::Object(r#"{"b":2}"#.into())];
        assert_eq!(all(text.clone()).await.expect("plain"), expected);
        assert_eq!(all(gzip(&text)).await.expect("gzip"), expected);
        let mut two_members = gzip(b"{\"a\":1}\n");
        two_members.extend(gzip(b"{\"b\":2}\n"));
        assert_eq!(all(two_members).await.expect("members"), expected);
        assert!(all(Vec::new()).await.expect("empty").is_empty());
    }

    #[tokio::test]
    async fn the_check_reads_gzip_through_and_hands_plain_bytes_back_whole() {
        let text = b"{\"a\":1}\n".to_vec();
        assert!(matches!(check(Box::new(std::io::Cursor::new(gzip(&text)))).await, Ok(Checked::SoundGzip)));
        let Ok(Checked::Plain(bytes)) = check(Box::new(std::io::Cursor::new(text))).await else {
            panic!("plain bytes come back")
        };
        let mut events = Events::open(bytes, 100).await.expect("open");
        assert_eq!(events.next().await.expect("read"), Some(Piece::Object(r#"{"a":1}"#.into())));
        let mut flipped = gzip(&b"{\"a\":1}\n".repeat(1_000));
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x01;
        assert!(check(Box::new(std::io::Cursor::new(flipped))).await.is_err(), "one flipped bit fails the check");
    }

    #[tokio::test]
    async fn a_corrupt_or_cut_gzip_is_an_error_not_an_end() {
        let mut bytes = gzip(&b"{\"a\":1}\n".repeat(1_000));
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        assert!(all(bytes.clone()).await.is_err());
        bytes.truncate(middle);
        assert!(all(bytes).await.is_err());
    }
}
