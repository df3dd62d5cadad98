//! Revocation reaches open streams: an SSE answer (a POST's stream or a GET stream) ends when
//! its caller may no longer have it.
//!
//! ```text
//! relay ──► Revocable(body, Watch { live, principal, used })
//!   each configuration change (state::Live::subscribe), and every TICK (expiry is a time)
//!     ──► policy::authenticate(principal, now)          refused (suspended, expired, token
//!                                                        cut-off, unknown) ──► revoked
//!     ──► what the stream uses: Caller::call(capability,  no longer allowed ──► revoked
//!         name) (a tools/call, resources/read, prompts/get, subscriptions/listen …)
//!   revoked ──► the stream ends cleanly; on_revoke(denial) writes the audit record
//! ```
//!
//! With a reload taking ~100 ms and TICK at 250 ms, an open stream ends well within the
//! revocation target of 1 s.

use super::{BoxError, ProxyBody, deny::Denial};
use crate::state::Live;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use jiff::Timestamp;
use mcp_warden_policy::{Capability, Decision, Principal};
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

/// How often an open stream re-checks its caller besides configuration changes.
pub const TICK: Duration = Duration::from_millis(250);

/// What an open stream re-checks.
pub struct Watch {
    /// The configuration in force.
    pub live: Arc<Live>,
    /// Who holds the stream.
    pub principal: Principal,
    /// The tool, resource or prompt of the stream's request.
    pub used: Option<(Capability, String)>,
    /// Called once when the stream is revoked (writes the audit record).
    pub on_revoke: Box<dyn FnOnce(Denial) + Send>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("principal", &self.principal)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

/// Why the caller may no longer hold the stream, under the configuration in force now.
pub fn revoked(
    live: &Live,
    principal: &Principal,
    used: Option<&(Capability, String)>,
) -> Option<Denial> {
    let Some(active) = live.current() else {
        return Some(Denial::NotReady);
    };
    let caller = match mcp_warden_policy::authenticate(&active.rules, principal, Timestamp::now()) {
        Ok(caller) => caller,
        Err(decision) => return Some(Denial::Client(Box::new(decision))),
    };
    let (capability, name) = used?;
    match caller.call(*capability, name) {
        Decision::Allow { .. } | Decision::WouldDeny { .. } => None,
        decision => Denial::from_decision(&decision, *capability, name),
    }
}

/// A streaming body that ends when its caller is revoked.
pub struct Revocable {
    inner: ProxyBody,
    watch: Pin<Box<dyn Future<Output = Denial> + Send>>,
    done: bool,
}

impl std::fmt::Debug for Revocable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocable")
            .field("done", &self.done)
            .finish()
    }
}

impl Revocable {
    /// Wraps a streaming answer.
    pub fn wrap(inner: ProxyBody, w: Watch) -> ProxyBody {
        let Watch {
            live,
            principal,
            used,
            on_revoke,
        } = w;
        let mut changes = live.subscribe();
        let watch = async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() {
                        // The proxy is shutting down: only the ticks are left.
                        tick.tick().await;
                    },
                    _ = tick.tick() => {}
                }
                if let Some(denial) = revoked(&live, &principal, used.as_ref()) {
                    tracing::warn!(
                        target: "mcp_warden::decision",
                        reason = denial.reason(), used = ?used.as_ref().map(|(_, name)| name),
                        "an open stream's caller was revoked: the stream ends"
                    );
                    on_revoke(denial.clone());
                    return denial;
                }
            }
        };
        Self {
            inner,
            watch: Box::pin(watch),
            done: false,
        }
        .boxed_unsync()
    }
}

impl Body for Revocable {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.watch.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
