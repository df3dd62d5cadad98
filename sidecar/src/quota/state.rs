//! Compiled limits (one [`Index`] per RuleSet, swapped atomically) and the limit state they
//! point at (kept across reloads).
//!
//! A client's state ([`ClientLive`]: its limit cells, runaway detector and `allowed` counter)
//! is created on its first `tools/call`, not when the rules are installed: most of a large
//! policy set's clients are idle at any time, and the state of 1,000 clients was 2 MiB.

use super::{
    LimitKind,
    gcra::{Cell, DayCount, day_of},
    runaway::Detector,
};
use jiff::Timestamp;
use mcp_warden_policy::{ObjectRef, compile::Rate};
use prometheus::IntCounter;
use std::{
    collections::HashMap,
    ops::Deref,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

/// A client's limits in one [`Index`], and its state once it has called.
#[derive(Debug)]
pub(crate) struct ClientSlot {
    /// The same `Arc` as the slot's key in [`Index::clients`].
    pub(crate) object: Arc<ObjectRef>,
    pub(crate) rate: Option<Rate>,
    pub(crate) daily: Option<u64>,
    pub(crate) suspend_on_runaway: bool,
    pub(crate) cleared_at: Option<Timestamp>,
    /// Set on the client's first call (under the update lock), carried to the next Index.
    pub(crate) live: OnceLock<Arc<ClientLive>>,
}

/// What a client that has called keeps across reloads.
#[derive(Debug)]
pub(crate) struct ClientLive {
    pub(crate) allowed: IntCounter,
    pub(crate) state: Mutex<ClientState>,
}

/// A calling client: its slot in the Index of the call and its state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot<'a> {
    pub(crate) def: &'a ClientSlot,
    pub(crate) live: &'a ClientLive,
}

impl Deref for Slot<'_> {
    type Target = ClientSlot;

    fn deref(&self) -> &ClientSlot {
        self.def
    }
}

#[derive(Debug)]
pub(crate) struct PolicyDef {
    /// The same `Arc` as the definition's key in [`Index::policies`].
    pub(crate) object: Arc<ObjectRef>,
    pub(crate) rate: Option<Rate>,
    pub(crate) daily: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Index {
    pub(crate) initialized: bool,
    pub(crate) tool: Arc<ObjectRef>,
    pub(crate) clients: HashMap<Arc<ObjectRef>, ClientSlot>,
    pub(crate) policies: HashMap<Arc<ObjectRef>, PolicyDef>,
}

#[derive(Debug, Default)]
pub(crate) struct ClientState {
    pub(crate) rate: Option<Cell>,
    /// The client rate divided among replicas, for the outage numbered `.0`.
    pub(crate) degraded: Option<(u64, Cell)>,
    pub(crate) daily: DayCount,
    pub(crate) pairs: HashMap<String, Vec<PairState>>,
    pub(crate) prune_at: usize,
    pub(crate) runaway: Detector,
}

#[derive(Debug)]
pub(crate) struct PairState {
    pub(crate) policy: Arc<ObjectRef>,
    pub(crate) rate: Option<Cell>,
    pub(crate) daily: DayCount,
}

impl PairState {
    pub(crate) fn idle(&self, now: i64) -> bool {
        self.rate.is_none_or(|c| c.idle(now)) && self.daily.idle(day_of(now))
    }
}

pub(crate) const TOOL_SHARDS: usize = 16;
pub(crate) const PRUNE_FLOOR: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct ToolShard {
    pub(crate) cells: HashMap<String, Cell>,
    pub(crate) prune_at: usize,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a quota lock leaves consistent numbers: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn nanos(now: Timestamp) -> i64 {
    i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX)
}

pub(crate) fn dur(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

pub(crate) const ONE_DAY: Duration = Duration::from_secs(86_400);

/// One call being checked.
pub(crate) struct Call<'a> {
    pub(crate) index: &'a Index,
    pub(crate) slot: Option<Slot<'a>>,
    /// The granting policy, when it has a per client × tool limit.
    pub(crate) policy: Option<&'a PolicyDef>,
    pub(crate) tool: &'a str,
    pub(crate) tool_rate: Option<Rate>,
    pub(crate) now: Timestamp,
    pub(crate) now_ns: i64,
}

impl Call<'_> {
    pub(crate) fn limit_object(&self, kind: LimitKind) -> Arc<ObjectRef> {
        match kind {
            LimitKind::ClientRate | LimitKind::ClientDaily => self
                .slot
                .map_or_else(|| self.index.tool.clone(), |s| s.object.clone()),
            LimitKind::PolicyRate | LimitKind::PolicyDaily => self
                .policy
                .map_or_else(|| self.index.tool.clone(), |p| p.object.clone()),
            LimitKind::ToolRate => self.index.tool.clone(),
        }
    }
}
