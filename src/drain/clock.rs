//! GitHub's clock, as its answers tell it. Events carry GitHub's timestamps, so the drain
//! reckons "now" (how old a stretch is, where a fresh read ends) by GitHub's clock: this host's
//! corrected by the offset the latest answers' `Date` headers show. A host without NTP, or a VM
//! resumed from a snapshot, is off by minutes to hours; reckoned by its own clock, a connector
//! ahead of GitHub would move its fresh read past events GitHub has yet to stamp.

use std::collections::VecDeque;

/// Answers remembered: the median of five shrugs off one odd `Date` header.
const SAMPLES: usize = 5;

/// Offsets (GitHub's time less this host's, ms) of the latest answers.
#[derive(Debug, Default)]
pub struct GitHubClock {
    samples: VecDeque<i64>,
}

impl GitHubClock {
    /// An answer stamped `server_ms` (its `Date`, whole seconds) arrived at `local_ms`.
    pub fn observe(&mut self, server_ms: i64, local_ms: i64) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(server_ms.saturating_sub(local_ms));
    }

    /// How far GitHub's clock is ahead of this host's (negative: behind); `None` before any
    /// answer. A `Date` is the second the answer left, so the offset errs by up to a second
    /// on the side of an earlier "now": fresh reads end a little short, sweeps come a little
    /// late, neither loses anything.
    pub fn offset_ms(&self) -> Option<i64> {
        offset_of(self.samples.iter().copied().collect())
    }

    /// GitHub's "now", for this host's `local_ms`.
    pub fn now_ms(&self, local_ms: i64) -> i64 {
        local_ms.saturating_add(self.offset_ms().unwrap_or(0))
    }
}

/// The median offset; of two, the smaller in size (one odd header is not believed over one
/// that says the clocks agree better).
fn offset_of(mut samples: Vec<i64>) -> Option<i64> {
    samples.sort_unstable();
    match samples.len() {
        0 => None,
        2 => samples.iter().copied().min_by_key(|offset| offset.unsigned_abs()),
        n => Some(samples[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_the_median_of_the_latest_answers_and_one_odd_header_does_not_move_it() {
        let mut clock = GitHubClock::default();
        assert_eq!((clock.offset_ms(), clock.now_ms(1_000)), (None, 1_000));
        clock.observe(3_600_000, 0);
        assert_eq!(clock.offset_ms(), Some(3_600_000));
        clock.observe(-5_000_000_000, 0);
        assert_eq!(clock.offset_ms(), Some(3_600_000), "of two, the one closer to agreement");
        for _ in 0..3 {
            clock.observe(3_600_500, 500);
        }
        clock.observe(i64::MAX, 0);
        assert_eq!(clock.offset_ms(), Some(3_600_000));
        assert_eq!(clock.now_ms(10), 3_600_010);
    }

    proptest::proptest! {
        #[test]
        fn any_dates_give_an_offset_without_overflow(dates in proptest::collection::vec(proptest::num::i64::ANY, 0..12), local in proptest::num::i64::ANY) {
            let mut clock = GitHubClock::default();
            for date in dates {
                clock.observe(date, local);
            }
            let _ = clock.now_ms(local);
        }
    }
}
