//! Admission: what requests may hold before they are decided, so that a flood costs bounded
//! memory and leaves room for good callers.
//!
//! ```text
//! request ──► requests permit (try; none free ──► 503 Retry-After)        held until `handle` answers
//!   ──► identify from the headers (no body read yet)  refused ──► answered, body never read
//!   ──► body permit: PARSED × Content-Length (or the body limit when unknown), in KiB:
//!         the body and what parsing it makes; waits up to body_read_timeout ──► else 503
//!   ──► read ≤ max_body_bytes, parse, decide, forward ──► permits released
//! ```

use crate::settings::Settings;
use std::{sync::Arc, time::Duration};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The request and body budgets of one listener.
#[derive(Debug)]
pub struct Admission {
    requests: Arc<Semaphore>,
    body_kib: Arc<Semaphore>,
    max_body_kib: u32,
}

/// Budgets are counted in KiB so that a permit count fits a `u32`.
const KIB: usize = 1024;

/// What one byte of body costs while it is decided: the bytes, and the parsed JSON (a
/// `serde_json::Value` takes about three times its text).
pub const PARSED: u32 = 4;

impl Admission {
    /// Budgets from the settings.
    pub fn new(settings: &Settings) -> Self {
        let max_body_kib = kib(settings.max_body_bytes).saturating_mul(PARSED);
        let total = kib(settings.max_body_bytes_in_flight).max(max_body_kib);
        Self {
            requests: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            body_kib: Arc::new(Semaphore::new(total as usize)),
            max_body_kib,
        }
    }

    /// A slot for one request being decided, when one is free.
    pub fn request(&self) -> Option<OwnedSemaphorePermit> {
        self.requests.clone().try_acquire_owned().ok()
    }

    /// Room for a body of `declared` bytes (its `Content-Length`; the body limit when
    /// unknown), waiting at most `wait`.
    pub async fn body(
        &self,
        declared: Option<u64>,
        wait: Duration,
    ) -> Option<OwnedSemaphorePermit> {
        let want = declared.map_or(self.max_body_kib, |n| {
            kib(usize::try_from(n).unwrap_or(usize::MAX))
                .saturating_mul(PARSED)
                .min(self.max_body_kib)
        });
        tokio::time::timeout(wait, self.body_kib.clone().acquire_many_owned(want.max(1)))
            .await
            .ok()?
            .ok()
    }

    /// KiB of body budget free now (for tests and metrics).
    pub fn body_kib_free(&self) -> usize {
        self.body_kib.available_permits()
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(KIB)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(requests: usize, in_flight: usize) -> Settings {
        Settings {
            max_body_bytes: 4 * KIB * KIB,
            max_body_bytes_in_flight: in_flight,
            max_concurrent_requests: requests,
            ..Settings::default()
        }
    }

    #[test]
    fn requests_above_the_limit_are_refused_until_one_ends() {
        let a = Admission::new(&settings(2, 64 * KIB * KIB));
        let one = a.request().unwrap();
        let _two = a.request().unwrap();
        assert!(a.request().is_none());
        drop(one);
        assert!(a.request().is_some());
    }

    #[tokio::test]
    async fn bodies_share_one_budget_and_wait_for_room() {
        // 4 MiB bodies cost 16 MiB each (parsed): two fit in 32 MiB.
        let a = Admission::new(&settings(8, 32 * KIB * KIB));
        let wait = Duration::from_millis(50);
        // An unknown length reserves the whole body limit.
        let first = a.body(None, wait).await.unwrap();
        let _second = a.body(Some(4 * (KIB * KIB) as u64), wait).await.unwrap();
        assert!(a.body(Some(1), wait).await.is_none(), "the budget is spent");
        drop(first);
        assert!(
            a.body(Some(10 * (KIB * KIB) as u64), wait).await.is_some(),
            "capped at the body limit"
        );
        assert_eq!(a.body_kib_free(), 16 * KIB);
        // Small bodies cost little: a 1 KiB request reserves 4 KiB.
        let small = a.body(Some(1024), wait).await.unwrap();
        assert_eq!(a.body_kib_free(), 16 * KIB - 4);
        drop(small);
    }
}
