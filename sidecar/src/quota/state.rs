//! Compiled limits (one [`Index`] per RuleSet, swapped atomically) and the limit state they
//! point at (kept across reloads).

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
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

#[derive(Debug)]
pub(crate) struct ClientSlot {
    pub(crate) object: Arc<ObjectRef>,
    pub(crate) rate: Option<Rate>,
    pub(crate) daily: Option<u64>,
    pub(crate) suspend_on_runaway: bool,
    pub(crate) cleared_at: Option<Timestamp>,
    /// `<prefix>:{<tool>/<client>}`.
    pub(crate) key: String,
    pub(crate) allowed: IntCounter,
    pub(crate) state: Arc<Mutex<ClientState>>,
}

#[derive(Debug)]
pub(crate) struct PolicyDef {
    pub(crate) object: Arc<ObjectRef>,
    pub(crate) rate: Option<Rate>,
    pub(crate) daily: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Index {
    pub(crate) initialized: bool,
    pub(crate) tool: Arc<ObjectRef>,
    pub(crate) clients: HashMap<ObjectRef, ClientSlot>,
    pub(crate) policies: HashMap<ObjectRef, PolicyDef>,
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
    pub(crate) slot: Option<&'a ClientSlot>,
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
