//! Admission: what requests may hold before they are decided, so that a flood costs bounded
//! memory and leaves room for good callers.
//!
//! ```text
//! request ──► requests permit (try; none free ──► 503 Retry-After)        held until `handle` answers
//!   ──► identify from the headers (no body read yet)  refused ──► answered, body never read
//!   ──► body permit: PARSED × Content-Length (or the body limit when unknown), in KiB:
//!         the body and what parsing it makes; waits up to body_read_timeout ──► else 503
//!   ──► read ≤ max_body_bytes, parse, decide, forward ──► permits released
//! upstream answer ──► AnswerRoom: PARSED × the bytes held to read it (a JSON answer whole, an
//!         SSE event at a time), grown as they arrive, shrunk when an event has gone out;
//!         JSON waits up to body_read_timeout, SSE does not; no room ──► the answer is withheld
//! ```
//!
//! Both budgets are shared by every request of the listener: what callers send and what the
//! upstream answers cannot make the sidecar hold more than `max_body_bytes_in_flight` +
//! `max_answer_bytes_in_flight` for them.

use crate::settings::Settings;
use std::{sync::Arc, time::Duration};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The request and body budgets of one listener.
#[derive(Debug)]
pub struct Admission {
    requests: Arc<Semaphore>,
    body_kib: Arc<Semaphore>,
    max_body_kib: u32,
    answer_kib: Arc<Semaphore>,
    max_answer_kib: u32,
    answer_wait: Duration,
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
        let max_answer_kib = kib(settings.max_answer_bytes_in_flight).max(PARSED);
        Self {
            requests: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            body_kib: Arc::new(Semaphore::new(total as usize)),
            max_body_kib,
            answer_kib: Arc::new(Semaphore::new(max_answer_kib as usize)),
            max_answer_kib,
            answer_wait: settings.body_read_timeout,
        }
    }

    /// Room for reading one upstream answer, empty until it holds bytes.
    pub fn answer_room(&self) -> AnswerRoom {
        AnswerRoom {
            budget: self.answer_kib.clone(),
            held: None,
            max_kib: self.max_answer_kib,
            wait: self.answer_wait,
        }
    }

    /// KiB of answer budget free now (for tests and metrics).
    pub fn answer_kib_free(&self) -> usize {
        self.answer_kib.available_permits()
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

/// What one upstream answer holds of the shared answer budget; released when dropped.
#[derive(Debug)]
pub struct AnswerRoom {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    max_kib: u32,
    wait: Duration,
}

impl AnswerRoom {
    /// The most bytes one answer (or SSE event) may hold: its share of the whole budget.
    pub fn limit(&self) -> usize {
        self.max_kib as usize / PARSED as usize * KIB
    }

    fn want(bytes: usize) -> usize {
        kib(bytes).saturating_mul(PARSED) as usize
    }

    fn held_kib(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Holds room for `bytes` in all (more or less than before), without waiting; `false`
    /// when the budget has no room for it now (what was held stays held).
    pub fn hold(&mut self, bytes: usize) -> bool {
        let (want, held) = (Self::want(bytes), self.held_kib());
        if want <= held {
            if let Some(permit) = self.held.as_mut() {
                drop(permit.split(held - want));
            }
            return true;
        }
        let more = u32::try_from(want - held).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(more) {
            Ok(permit) => {
                self.take(permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Holds room for `bytes` in all, waiting for it up to the answer wait; `false` when it
    /// did not come (or can never: more than [`Self::limit`]).
    pub async fn hold_waiting(&mut self, bytes: usize) -> bool {
        if bytes > self.limit() {
            return false;
        }
        if self.hold(bytes) {
            return true;
        }
        let more = u32::try_from(Self::want(bytes) - self.held_kib()).unwrap_or(u32::MAX);
        let acquire = self.budget.clone().acquire_many_owned(more);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => {
                self.take(permit);
                true
            }
            _ => false,
        }
    }

    fn take(&mut self, permit: OwnedSemaphorePermit) {
        match self.held.as_mut() {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
    }
}

/// A response body that holds its answer's room until it has gone out (or is dropped).
#[derive(Debug)]
pub struct Held<B> {
    inner: B,
    _room: Option<AnswerRoom>,
}

impl<B> Held<B> {
    /// `inner`, holding `room` while it lives.
    pub fn new(inner: B, room: Option<AnswerRoom>) -> Self {
        Self { inner, _room: room }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Held<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
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
            max_answer_bytes_in_flight: in_flight,
            body_read_timeout: Duration::from_millis(50),
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

    #[tokio::test]
    async fn answers_share_one_budget_grow_shrink_and_wait_for_room() {
        // 32 MiB: one answer may hold 8 MiB (× 4 parsed).
        let a = Admission::new(&settings(8, 32 * KIB * KIB));
        let mut one = a.answer_room();
        assert_eq!(one.limit(), 8 * KIB * KIB);
        assert!(one.hold(6 * KIB * KIB), "6 MiB: 24 MiB of budget");
        assert_eq!(a.answer_kib_free(), 8 * KIB);
        let mut two = a.answer_room();
        assert!(!two.hold(3 * KIB * KIB), "3 MiB more would need 12 MiB");
        assert!(
            !two.hold_waiting(3 * KIB * KIB).await,
            "no room within the wait"
        );
        assert!(two.hold(2 * KIB * KIB), "2 MiB fits");
        assert_eq!(a.answer_kib_free(), 0);
        assert!(one.hold(1024), "an SSE event went out: down to 1 KiB");
        assert_eq!(a.answer_kib_free(), 24 * KIB - 4);
        assert!(
            !two.hold_waiting(9 * KIB * KIB).await,
            "above one answer's share"
        );
        drop((one, two));
        assert_eq!(a.answer_kib_free(), 32 * KIB, "all of it back");
    }
}
