//! Wall-clock time for status computation, behind a trait so tests can move it.
//!
//! Lifecycle transitions (expiry, review due) happen at instants named in the CRs, days or months
//! away. The status loop sleeps until the next one with [`Clock::sleep_until`]; a test holding a
//! [`ManualClock`] wakes it by setting the time, without waiting real days.

use futures::future::BoxFuture;
use jiff::Timestamp;
use std::{fmt, sync::Arc, time::Duration};
use tokio::sync::watch;

/// A source of wall-clock time that can also wait for an instant.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Resolves at (or soon after) `at`.
    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Longest single sleep: the wall clock may jump (NTP, suspend), so long waits re-check.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            loop {
                let left = at.duration_since(Timestamp::now());
                if left.is_negative() || left.is_zero() {
                    return;
                }
                let left = Duration::try_from(left).unwrap_or(MAX_SLEEP).min(MAX_SLEEP);
                // Round up so we wake at or after `at`, never a hair before.
                tokio::time::sleep(left + Duration::from_millis(1)).await;
            }
        })
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock to `at` (also backwards), waking the sleepers that are due.
    pub fn set(&self, at: Timestamp) {
        self.now.send_replace(at);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: jiff::SignedDuration) {
        self.now
            .send_modify(|t| *t = t.saturating_add(by).unwrap_or(Timestamp::MAX));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone nobody can wake us.
            if rx.wait_for(|now| *now >= at).await.is_err() {
                futures::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_set() {
        let start: Timestamp = "2030-01-01T00:00:00Z".parse().expect("timestamp");
        let clock = ManualClock::new(start);
        let due = start + jiff::SignedDuration::from_hours(24 * 30);
        let sleeper = tokio::spawn(clock.sleep_until(due));
        tokio::task::yield_now().await;
        clock.advance(jiff::SignedDuration::from_hours(24));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sleeper.is_finished());
        clock.set(due);
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(clock.now(), due);
    }
}
