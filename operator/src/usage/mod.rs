//! `POST /v1/usage`: what the sidecars saw, folded into a 24-hour window that McpClient and
//! McpTool status are computed from.
//!
//! ```text
//! sidecar ──POST /v1/usage (UsageReport, Bearer: projected SA token)──► authorize(report's pod)
//!                                                   endpoint.rs; report.rs: validate, scope
//!    every few seconds, counts since its previous report                 │ drop a retried report
//!                                                                        ▼ (same bootId, seq ≤ last)
//!   UsageStore (store.rs) { per McpClient: 10-minute buckets over 24 h (calls, denials, calls per
//!                  reporting pod and tool), last seen, last use of each tool;
//!                per reporting pod: runaway flags, tools its upstream lists, latest bypass check }
//!        │ view(now)
//!        ▼
//!   status::compute ── calls24h, denials24h, lastSeen, RunawayDetected, toolsSeen,
//!                      toolUsage (the reporting pod resolved to the McpTool that selects it),
//!                      McpTool Bypassable (the pods' latest bypass checks)
//! ```
//!
//! Counts are deltas (what happened since the previous report of the same sidecar process), so
//! a sidecar keeps no window of its own. Runaway flags and tool lists are complete states: each
//! report carries every client the sidecar currently holds flagged, and the latest `tools/list`
//! of its upstream. A bypass check comes once per check (every 30 s by default) and replaces the
//! pod's previous one; it counts while its reporter is fresh ([`REPORTER_TTL`]).
//!
//! Only the leader takes reports (it alone writes status): a follower answers 503 and the sidecar
//! sends the report again on a new connection, which the Service balances to another replica.
//! A new leader starts with an empty window (the 24 h counts restart; `lastSeen` and per-tool
//! last use are kept in status).

use crate::{
    clock::Clock,
    index::Index,
    push::{self, AuthError, Authorizer, Caller},
};
use bytes::Bytes;
use futures::future::BoxFuture;
use http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use mcp_warden_policy::{Bundle, Capability};
pub use mcp_warden_wire::usage::{BypassReport, ClientUsage, RunawayFlag, ToolsSeen, UsageReport};
use serde_json::json;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

/// `(namespace, name)` of an object, or of a pod.
pub type Key = (String, String);

/// Largest accepted report body.
pub const MAX_REPORT_BYTES: usize = 1 << 20;
/// Most clients (and tools) in one report.
const MAX_ENTRIES: usize = 20_000;
/// Width of one bucket of the 24-hour window.
const BUCKET: SignedDuration = SignedDuration::from_mins(10);
/// The window `calls24h` and `denials24h` cover.
const WINDOW: SignedDuration = SignedDuration::from_hours(24);
/// A reporter silent for longer no longer holds clients flagged (its pod is gone, or its flags
/// would have been re-sent).
pub const REPORTER_TTL: SignedDuration = SignedDuration::from_mins(10);

/// What happened to a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Folded in.
    Accepted,
    /// Already seen (same `bootId`, `seq` not newer): ignored.
    Duplicate,
}

/// The usage of one McpClient as status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientView {
    /// Tool calls over the window.
    pub calls_24h: u64,
    /// Denials over the window.
    pub denials_24h: u64,
    /// Denials over the window by reason.
    pub denials_by_reason: BTreeMap<String, u64>,
    /// The last request any sidecar reported.
    pub last_seen: Option<Timestamp>,
    /// Current runaway flags, by reporting pod.
    pub runaway: Vec<(Key, RunawayFlag)>,
    /// Per reporting pod and tool name: calls over the window and the last use (uses older
    /// than the window are left out; status keeps them). `status::compute` resolves each pod
    /// to the McpTool that selects it.
    pub tools: BTreeMap<(Key, String), ToolView>,
    /// The same for resources and prompts, by reporting pod, capability and entry pattern.
    pub uses: BTreeMap<(Key, Capability, String), ToolView>,
}

/// The usage of one tool by one McpClient, as seen by one sidecar.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolView {
    /// Calls over the window.
    pub calls_24h: u64,
    /// The last report of a call (the client's `lastSeen` in that report, or its receipt time).
    pub last_used: Option<Timestamp>,
}

/// A snapshot of the store for status computation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageView {
    /// Per McpClient key.
    pub clients: HashMap<Key, ClientView>,
    /// Per McpTool key: the union of the tools its sidecars saw over the window.
    pub tools: HashMap<Key, BTreeSet<String>>,
    /// Per McpTool key: the latest bypass check of each of its pods (reporters heard from
    /// within [`REPORTER_TTL`]), sorted by pod.
    pub bypass: HashMap<Key, Vec<(Key, BypassReport)>>,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Bucket number (`seconds since epoch / BUCKET`).
    index: i64,
    calls: u64,
    denials: BTreeMap<String, u64>,
    /// Calls by (reporting pod, tool name).
    tools: BTreeMap<(Key, String), u64>,
    /// Resource and prompt uses by (reporting pod, capability, entry pattern).
    uses: BTreeMap<(Key, Capability, String), u64>,
}

#[derive(Clone, Debug, Default)]
struct ClientWindow {
    buckets: VecDeque<Bucket>,
    last_seen: Option<Timestamp>,
    /// Last use by (reporting pod, tool name), within the window.
    tools_last_used: BTreeMap<(Key, String), Timestamp>,
    /// Last use by (reporting pod, capability, entry pattern), within the window.
    uses_last_used: BTreeMap<(Key, Capability, String), Timestamp>,
}

#[derive(Clone, Debug, Default)]
struct Reporter {
    boot_id: String,
    seq: u64,
    last_report: Option<Timestamp>,
    bundle_version: Option<String>,
    runaway: BTreeMap<Key, RunawayFlag>,
    tools: BTreeMap<Key, (Timestamp, Vec<String>)>,
    bypass: Option<BypassReport>,
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<Key, ClientWindow>,
    reporters: HashMap<Key, Reporter>,
}

/// The in-memory usage window. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct UsageStore {
    state: Arc<Mutex<State>>,
    /// Bumped on every accepted report.
    changes: Arc<watch::Sender<u64>>,
    /// Bumped when runaway flags or tool lists change (status should follow at once).
    urgent: Arc<watch::Sender<u64>>,
}

fn bucket_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(BUCKET.as_secs())
}

mod endpoint;
mod report;
mod store;
#[cfg(test)]
mod tests;

pub use endpoint::{ScopedUsage, UsageEndpoint, UsageSink};
pub use report::{scope, validate};
