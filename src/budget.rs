//! How long this run may keep working.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// A cursor's lease outlives the budget by this much, so the run can still save the batch in
/// flight and release the lease itself, yet a crashed Lambda's lease lapses before its deadline
/// (`lambda::SAFETY_MARGIN` after the budget).
const LEASE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    pub fn lasting(duration: Duration) -> Self {
        Self { deadline: Instant::now() + duration }
    }

    /// Stops `margin` before a Lambda invocation's deadline. A deadline already past is no
    /// deadline at all (`cargo lambda watch` sends one in 1970): `fallback` applies.
    pub fn before_deadline(deadline: SystemTime, margin: Duration, fallback: Duration) -> Self {
        match deadline.duration_since(SystemTime::now()) {
            Ok(left) => Self::lasting(left.saturating_sub(margin)),
            Err(_) => Self::lasting(fallback),
        }
    }

    /// Until when a run with this budget holds its cursor's lease.
    pub fn lease_until(&self) -> SystemTime {
        SystemTime::now() + self.remaining() + LEASE_GRACE
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether `wait` can pass and still leave `reserve` before the deadline.
    pub fn allows(&self, wait: Duration, reserve: Duration) -> bool {
        self.remaining() > wait.saturating_add(reserve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lambda_deadline_leaves_the_safety_margin() {
        let budget = Budget::before_deadline(
            SystemTime::now() + Duration::from_secs(300),
            Duration::from_secs(20),
            Duration::from_secs(5),
        );
        assert!(budget.remaining() <= Duration::from_secs(280));
        assert!(budget.remaining() > Duration::from_secs(270));
    }

    #[test]
    fn a_deadline_in_the_past_falls_back_to_the_configured_budget() {
        let budget = Budget::before_deadline(SystemTime::UNIX_EPOCH, Duration::from_secs(20), Duration::from_secs(42));
        assert!(budget.remaining() > Duration::from_secs(40));
    }
}
