//! How long this run may keep working.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    pub fn lasting(duration: Duration) -> Self {
        Self {
            deadline: Instant::now() + duration,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether `wait` can pass and still leave `reserve` before the deadline.
    pub fn allows(&self, wait: Duration, reserve: Duration) -> bool {
        self.remaining() > wait + reserve
    }
}
