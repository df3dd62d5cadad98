//! Runaway detection: telling an agent stuck in a loop from a legitimate spike.
//!
//! A client is **running away** at a call when, over the last `window` (default 60 s):
//!
//! 1. it made at least `min_calls` tool calls (default 20),
//! 2. more than `fraction` of them (default 0.9) were refused by its own limits (client and
//!    policy limits; the per-tool cap shared by all callers does not count), and
//! 3. the refusals are **sustained**: the window is cut in [`SLOTS`] sub-windows (10 s by
//!    default), and the current one and the `SLOTS` before it each saw a refusal, so the
//!    refusals span at least the whole window.
//!
//! A spike inside the burst is never refused, so it is never flagged; a spike past the burst
//! that lasts less than the window is not sustained. When the condition holds, the client is
//! flagged `RunawayDetected`. With `suspendOnRunaway` the flag is sticky and denies every call
//! until a person clears it (annotation `mcpwarden.io/runaway-cleared-at` newer than the flag);
//! without it, the flag is reported only and lifts once a whole window passes without the
//! condition.

use jiff::Timestamp;
use std::time::Duration;

/// Sub-windows of the detection window.
pub const SLOTS: usize = 6;
/// Sub-windows kept: the current one and a whole window before it.
const RING: usize = SLOTS + 1;

/// Detection settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunawayConfig {
    /// Refused fraction above which calls count as running away (0.0–1.0).
    pub fraction: f64,
    /// How long the refusals must be sustained.
    pub window: Duration,
    /// Fewest calls in the window for a verdict.
    pub min_calls: u32,
}

impl Default for RunawayConfig {
    fn default() -> Self {
        Self {
            fraction: 0.9,
            window: Duration::from_secs(60),
            min_calls: 20,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    index: i64,
    calls: u32,
    refused: u32,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            index: i64::MIN,
            calls: 0,
            refused: 0,
        }
    }
}

/// Per-client detector state.
#[derive(Clone, Debug, Default)]
pub(crate) struct Detector {
    slots: [Slot; RING],
    /// When the client was flagged, while it is.
    pub(crate) flagged: Option<Timestamp>,
    /// The last call at which the condition held (ns).
    pub(crate) last_hot: i64,
}

/// A change of the flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    Flagged(Timestamp),
    Lifted,
}

impl Detector {
    /// Whether a flag that is not sticky has gone a whole window without the condition.
    pub(crate) fn stale(&self, cfg: &RunawayConfig, now_ns: i64) -> bool {
        now_ns.saturating_sub(self.last_hot) >= Self::slot_ns(cfg).saturating_mul(SLOTS as i64)
    }

    fn slot_ns(cfg: &RunawayConfig) -> i64 {
        (i64::try_from(cfg.window.as_nanos()).unwrap_or(i64::MAX) / SLOTS as i64).max(1)
    }

    /// Records one call's outcome at `now`; `sticky` keeps a flag until it is cleared.
    pub(crate) fn record(
        &mut self,
        cfg: &RunawayConfig,
        now: Timestamp,
        now_ns: i64,
        refused: bool,
        sticky: bool,
    ) -> Option<Change> {
        let width = Self::slot_ns(cfg);
        let index = now_ns.div_euclid(width);
        let slot = &mut self.slots[index.rem_euclid(RING as i64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot.calls = slot.calls.saturating_add(1);
        slot.refused = slot.refused.saturating_add(u32::from(refused));

        let live = || {
            self.slots
                .iter()
                .filter(move |s| s.index >= index - SLOTS as i64 && s.index <= index)
        };
        let sustained = live().filter(|s| s.refused > 0).count() == RING;
        let calls: u64 = live().map(|s| u64::from(s.calls)).sum();
        let refused_calls: u64 = live().map(|s| u64::from(s.refused)).sum();
        let hot = sustained
            && calls >= u64::from(cfg.min_calls)
            && refused_calls as f64 > cfg.fraction * calls as f64;
        if hot {
            self.last_hot = now_ns;
            if self.flagged.is_none() {
                self.flagged = Some(now);
                return Some(Change::Flagged(now));
            }
        } else if self.flagged.is_some() && !sticky && self.stale(cfg, now_ns) {
            self.flagged = None;
            return Some(Change::Lifted);
        }
        None
    }

    /// Lifts the flag when a person cleared it after it was raised; forgets the window so the
    /// client starts over.
    pub(crate) fn clear_if(&mut self, cleared_at: Option<Timestamp>) -> bool {
        match (self.flagged, cleared_at) {
            (Some(since), Some(cleared)) if cleared > since => {
                *self = Self::default();
                true
            }
            _ => false,
        }
    }
}
