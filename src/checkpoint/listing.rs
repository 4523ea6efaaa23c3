//! The checkpoint's list of bucket starts, kept short: DynamoDB bills every save of the item
//! holding it by the KB. Starts on slots are written as runs of consecutive slots (a busy
//! target: hours in a few bytes) or as a bitmap of slots (a bit a slot), each deflated when
//! that is shorter (a bucket every few slots, as a moderately busy target has, is a near
//! periodic bitmap), whichever is shortest; starts inside a slot (a split past
//! `MAX_BUCKET_ENTRIES`) one by one.

use std::cell::RefCell;
use std::io::Read;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::read::DeflateDecoder;
use flate2::{Compress, Compression};
use integer_encoding::VarInt;
use serde::{Deserialize, Serialize};

use super::delivered::BUCKET_SPAN_MS;
use crate::compression::compress_all;

/// More than half a year of five-second buckets is not a record.
const MAX_LISTED_BUCKETS: u64 = 4_000_000;
/// The most a listing's bytes can be: a full bitmap, or a varint pair for each bucket.
const MAX_LISTING_BYTES: u64 = MAX_LISTED_BUCKETS * 4;
const RUNS: char = 'r';
const BITMAP: char = 'b';
const DEFLATED_RUNS: char = 'R';
const DEFLATED_BITMAP: char = 'B';
/// Deflate's own header and block codes take about this much: a listing this short stays raw.
const DEFLATE_ABOVE_BYTES: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The first slot's start (epoch ms).
    from: i64,
    /// `r` and base64 varint pairs (slots skipped, slots in a row), or `b` and a base64 bitmap
    /// (bit n: the slot n slots after `from`, least significant bit first); `R` and `B` the
    /// same deflated (RFC 1951).
    slots: String,
    /// Starts inside a slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inside: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buckets: {0}")]
pub struct ListingError(&'static str);

/// Sorted starts as a listing; `None` when there are none.
pub fn listing(starts: &[i64]) -> Option<Listing> {
    let (aligned, inside): (Vec<i64>, Vec<i64>) = starts.iter().partition(|s| s.rem_euclid(BUCKET_SPAN_MS) == 0);
    let from = aligned.first().or(inside.first()).copied()?;
    let from = from - from.rem_euclid(BUCKET_SPAN_MS);
    let offsets: Vec<u64> = aligned.iter().map(|s| ((s - from) / BUCKET_SPAN_MS) as u64).collect();
    let (runs, bitmap) = (runs_of(&offsets), bitmap_of(&offsets));
    // Deflating resets a compressor, zeroing its hash table, on every save: not for the few
    // bytes it could not shorten anyway.
    let worth_deflating = runs.len().min(bitmap.len()) > DEFLATE_ABOVE_BYTES;
    let deflated: Vec<(char, Vec<u8>)> = [(DEFLATED_RUNS, &runs), (DEFLATED_BITMAP, &bitmap)]
        .into_iter()
        .filter(|_| worth_deflating)
        .filter_map(|(kind, raw)| Some((kind, deflated(raw)?)))
        .collect();
    let (kind, bytes) = [(RUNS, runs), (BITMAP, bitmap)].into_iter().chain(deflated).min_by_key(|(_, b)| b.len())?;
    Some(Listing { from, slots: format!("{kind}{}", BASE64.encode(bytes)), inside })
}

thread_local! {
    /// Every save lists its buckets: one compressor a thread serves them all
    /// ([`crate::compression`]).
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::best(), false));
}

/// `None` should deflating in memory ever fail: the raw bytes serve.
fn deflated(bytes: &[u8]) -> Option<Vec<u8>> {
    DEFLATE.with_borrow_mut(|compressor| compress_all(compressor, bytes).ok())
}

fn inflated(bytes: &[u8]) -> Result<Vec<u8>, ListingError> {
    let mut out = Vec::new();
    DeflateDecoder::new(bytes)
        .take(MAX_LISTING_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|_| ListingError("not deflated"))?;
    if out.len() as u64 > MAX_LISTING_BYTES {
        return Err(ListingError("more buckets than a record holds"));
    }
    Ok(out)
}

fn runs_of(offsets: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut end = 0;
    for &offset in offsets {
        match runs.last_mut() {
            Some((_, count)) if offset == end => *count += 1,
            _ => runs.push((offset - end, 1)),
        }
        end = offset + 1;
    }
    for (skipped, count) in runs {
        out.extend(skipped.encode_var_vec());
        out.extend(count.encode_var_vec());
    }
    out
}

fn bitmap_of(offsets: &[u64]) -> Vec<u8> {
    let mut bits = vec![0u8; offsets.last().map_or(0, |last| last / 8 + 1) as usize];
    for &offset in offsets {
        bits[(offset / 8) as usize] |= 1 << (offset % 8);
    }
    bits
}

/// The starts a listing holds, sorted; refuses one no record could be.
pub fn starts(listing: &Listing) -> Result<Vec<i64>, ListingError> {
    let mut kind = listing.slots.chars();
    let bytes = BASE64.decode(kind.as_str().get(1..).unwrap_or_default()).map_err(|_| ListingError("not base64"))?;
    let offsets = match kind.next() {
        Some(RUNS) => offsets_of_runs(&bytes)?,
        Some(BITMAP) => offsets_of_bitmap(&bytes)?,
        Some(DEFLATED_RUNS) => offsets_of_runs(&inflated(&bytes)?)?,
        Some(DEFLATED_BITMAP) => offsets_of_bitmap(&inflated(&bytes)?)?,
        _ => return Err(ListingError("unknown kind of listing")),
    };
    let out_of_range = || ListingError("a start out of range");
    let mut starts = Vec::with_capacity(offsets.len() + listing.inside.len());
    for offset in offsets {
        let ms = i64::try_from(offset).ok().and_then(|n| n.checked_mul(BUCKET_SPAN_MS)).ok_or_else(out_of_range)?;
        starts.push(listing.from.checked_add(ms).ok_or_else(out_of_range)?);
    }
    starts.extend(&listing.inside);
    starts.sort_unstable();
    starts.dedup();
    Ok(starts)
}

fn take(bytes: &mut &[u8]) -> Result<u64, ListingError> {
    let (value, used) = u64::decode_var(bytes).ok_or(ListingError("truncated runs"))?;
    *bytes = bytes.get(used..).ok_or(ListingError("truncated runs"))?;
    Ok(value)
}

fn offsets_of_runs(mut bytes: &[u8]) -> Result<Vec<u64>, ListingError> {
    let mut offsets = Vec::new();
    let mut end: u64 = 0;
    while !bytes.is_empty() {
        let (skipped, count) = (take(&mut bytes)?, take(&mut bytes)?);
        let start = end.checked_add(skipped).ok_or(ListingError("runs out of range"))?;
        end = start.checked_add(count).ok_or(ListingError("runs out of range"))?;
        if end > MAX_LISTED_BUCKETS {
            return Err(ListingError("more buckets than a record holds"));
        }
        offsets.extend(start..end);
    }
    Ok(offsets)
}

fn offsets_of_bitmap(bytes: &[u8]) -> Result<Vec<u64>, ListingError> {
    if bytes.len() as u64 * 8 > MAX_LISTED_BUCKETS {
        return Err(ListingError("more buckets than a record holds"));
    }
    Ok((0..bytes.len() as u64 * 8).filter(|n| bytes[(n / 8) as usize] & (1 << (n % 8)) != 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: i64 = 1_700_000_000_000;

    #[test]
    fn hours_of_consecutive_buckets_take_a_few_bytes() {
        let busy: Vec<i64> = (0..2_340).map(|n| T + n * BUCKET_SPAN_MS).collect();
        let listed = listing(&busy).expect("a listing");
        assert!(listed.slots.starts_with('r') && listed.slots.len() < 10, "{listed:?}");
        assert_eq!(starts(&listed), Ok(busy));
    }

    #[test]
    fn a_bucket_a_minute_for_hours_takes_a_few_hundred_bytes() {
        let slots_a_minute = 60_000 / BUCKET_SPAN_MS;
        let mut rng = fastrand::Rng::with_seed(7);
        let quiet: Vec<i64> = (0..390).map(|n| T + n * 60_000 + rng.i64(0..slots_a_minute) * BUCKET_SPAN_MS).collect();
        let listed = listing(&quiet).expect("a listing");
        assert!(listed.slots.len() < 450, "{} bytes", listed.slots.len());
        assert_eq!(starts(&listed), Ok(quiet));
    }

    #[test]
    fn a_listing_of_a_few_bytes_stays_raw_and_a_longer_periodic_one_is_deflated() {
        let every_twelfth = |slots: i64| (0..slots).step_by(12).map(|n| T + n * BUCKET_SPAN_MS).collect::<Vec<_>>();
        let short = listing(&every_twelfth(160)).expect("a listing");
        assert!(short.slots.starts_with(['r', 'b']), "{short:?}");
        let long = listing(&every_twelfth(4_000)).expect("a listing");
        assert!(long.slots.starts_with(['R', 'B']) && long.slots.len() < 40, "{long:?}");
        assert_eq!(starts(&long), Ok(every_twelfth(4_000)));
    }

    #[test]
    fn starts_inside_a_slot_are_listed_one_by_one() {
        let split = vec![T, T + 3_217, T + BUCKET_SPAN_MS, T + BUCKET_SPAN_MS + 5];
        let listed = listing(&split).expect("a listing");
        assert_eq!(listed.inside, vec![T + 3_217, T + BUCKET_SPAN_MS + 5]);
        assert_eq!(starts(&listed), Ok(split));
        assert_eq!(listing(&[]), None);
        assert_eq!(starts(&listing(&[T + 1]).expect("one")), Ok(vec![T + 1]));
    }

    #[test]
    fn listings_no_record_could_have_are_refused() {
        let listed = |slots: &str| Listing { from: T, slots: slots.into(), inside: Vec::new() };
        let huge_run = format!("r{}", BASE64.encode([0u64.encode_var_vec(), 5_000_000u64.encode_var_vec()].concat()));
        for (slots, problem) in [
            ("x", "unknown kind"),
            ("r!!", "not base64"),
            ("r/w==", "truncated runs"),
            (huge_run.as_str(), "more buckets"),
            (&format!("B{}", BASE64.encode(b"plain bytes")), "not deflated"),
            (&format!("B{}", BASE64.encode(deflated(&vec![1u8; 600_000]).expect("deflates"))), "more buckets"),
            (&format!("b{}", BASE64.encode(vec![1u8; 600_000])), "more buckets"),
        ] {
            let err = starts(&listed(slots)).expect_err(slots);
            assert!(err.to_string().contains(problem), "{slots}: {err}");
        }
        let far = Listing { from: i64::MAX - 5, slots: "rAAI=".into(), inside: Vec::new() };
        assert!(starts(&far).is_err());
    }

    proptest! {
        #[test]
        fn any_sorted_starts_round_trip(offsets in proptest::collection::btree_set(0i64..100_000, 0..200), inside in proptest::collection::btree_set(1i64..9_999, 0..3)) {
            let mut all: Vec<i64> = offsets.iter().map(|n| T + n * BUCKET_SPAN_MS).collect();
            all.extend(inside.iter().map(|n| T + n));
            all.sort_unstable();
            all.dedup();
            match listing(&all) {
                Some(listed) => prop_assert_eq!(starts(&listed), Ok(all)),
                None => prop_assert!(all.is_empty()),
            }
        }

        #[test]
        fn any_listing_loads_or_is_refused(from in any::<i64>(), slots in "[rbRBx][A-Za-z0-9+/=]{0,24}", inside in proptest::collection::vec(any::<i64>(), 0..3)) {
            let _ = starts(&Listing { from, slots, inside });
        }
    }
}
