//! `POST /v1/usage`: what the sidecars saw, folded into a 24-hour window that McpClient and
//! McpTool status are computed from.
//!
//! ```text
//! sidecar ──POST /v1/usage (UsageReport, Bearer: projected SA token)──► authorize(report's pod)
//!    every few seconds, counts since its previous report                 │ drop a retried report
//!                                                                        ▼ (same bootId, seq ≤ last)
//!   UsageStore { per McpClient: 10-minute buckets over 24 h (calls, denials, calls per
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

impl UsageStore {
    /// Folds a report in, received at `now` (the operator's clock: sidecar clocks only bound
    /// `lastSeen`).
    pub fn record(&self, report: UsageReport, now: Timestamp) -> Recorded {
        let mut state = self.state.lock().expect("usage lock");
        let pod = (report.namespace.clone(), report.pod.clone());
        let reporter = state.reporters.entry(pod.clone()).or_default();
        if reporter.boot_id == report.boot_id
            && report.seq <= reporter.seq
            && reporter.last_report.is_some()
        {
            return Recorded::Duplicate;
        }
        reporter.boot_id = report.boot_id;
        reporter.seq = report.seq;
        reporter.last_report = Some(now);
        reporter.bundle_version = report.bundle_version;
        let runaway: BTreeMap<Key, RunawayFlag> = report
            .runaway
            .into_iter()
            .map(|f| ((f.namespace.clone(), f.name.clone()), f))
            .collect();
        let mut urgent = runaway != reporter.runaway;
        reporter.runaway = runaway;
        for seen in report.tools {
            let mut names = seen.tools_seen;
            names.sort();
            names.dedup();
            let key = (seen.namespace, seen.name);
            if reporter.tools.get(&key).map(|(_, n)| n) != Some(&names) {
                urgent = true;
            }
            reporter.tools.insert(key, (now, names));
        }
        if let Some(bypass) = report.bypassable {
            urgent |= reporter.bypass.as_ref() != Some(&bypass);
            reporter.bypass = Some(bypass);
        }
        let index = bucket_of(now);
        for usage in report.clients {
            let window = state
                .clients
                .entry((usage.namespace, usage.name))
                .or_default();
            if window.buckets.back().is_none_or(|b| b.index != index) {
                window.buckets.push_back(Bucket {
                    index,
                    ..Bucket::default()
                });
            }
            let bucket = window.buckets.back_mut().expect("just pushed");
            bucket.calls = bucket.calls.saturating_add(usage.calls);
            for (reason, n) in usage.denials {
                let slot = bucket.denials.entry(reason).or_default();
                *slot = slot.saturating_add(n);
            }
            // A sidecar clock ahead of ours must not put lastSeen in the future.
            let seen = usage.last_seen.map(|t| t.min(now));
            if let Some(seen) = seen {
                window.last_seen = Some(window.last_seen.map_or(seen, |l| l.max(seen)));
            }
            for (tool, n) in usage.tools {
                let key = (pod.clone(), tool);
                let used = seen.unwrap_or(now);
                let last = window.tools_last_used.entry(key.clone()).or_insert(used);
                *last = (*last).max(used);
                let slot = bucket.tools.entry(key).or_default();
                *slot = slot.saturating_add(n);
            }
            let uses = [
                (Capability::Resource, usage.resources),
                (Capability::Prompt, usage.prompts),
            ];
            for (capability, map) in uses {
                for (pattern, n) in map {
                    let key = (pod.clone(), capability, pattern);
                    let used = seen.unwrap_or(now);
                    let last = window.uses_last_used.entry(key.clone()).or_insert(used);
                    *last = (*last).max(used);
                    let slot = bucket.uses.entry(key).or_default();
                    *slot = slot.saturating_add(n);
                }
            }
            let oldest = bucket_of(now - WINDOW);
            while window.buckets.front().is_some_and(|b| b.index <= oldest) {
                window.buckets.pop_front();
            }
            window
                .tools_last_used
                .retain(|_, t| now.duration_since(*t) <= WINDOW);
            window
                .uses_last_used
                .retain(|_, t| now.duration_since(*t) <= WINDOW);
        }
        drop(state);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        if urgent {
            self.urgent.send_modify(|n| *n = n.wrapping_add(1));
        }
        Recorded::Accepted
    }

    /// The usage as of `now`: counts over the last 24 hours, runaway flags of reporters heard
    /// from within [`REPORTER_TTL`], tools seen within the window.
    pub fn view(&self, now: Timestamp) -> UsageView {
        let state = self.state.lock().expect("usage lock");
        let oldest = bucket_of(now - WINDOW);
        let mut view = UsageView::default();
        for (key, window) in &state.clients {
            let mut c = ClientView {
                last_seen: window.last_seen,
                ..ClientView::default()
            };
            for b in window.buckets.iter().filter(|b| b.index > oldest) {
                c.calls_24h = c.calls_24h.saturating_add(b.calls);
                for (reason, n) in &b.denials {
                    c.denials_24h = c.denials_24h.saturating_add(*n);
                    *c.denials_by_reason.entry(reason.clone()).or_default() += n;
                }
                for (tool, n) in &b.tools {
                    let t = c.tools.entry(tool.clone()).or_default();
                    t.calls_24h = t.calls_24h.saturating_add(*n);
                }
                for (used, n) in &b.uses {
                    let u = c.uses.entry(used.clone()).or_default();
                    u.calls_24h = u.calls_24h.saturating_add(*n);
                }
            }
            for (tool, at) in &window.tools_last_used {
                if now.duration_since(*at) <= WINDOW {
                    c.tools.entry(tool.clone()).or_default().last_used = Some(*at);
                }
            }
            for (used, at) in &window.uses_last_used {
                if now.duration_since(*at) <= WINDOW {
                    c.uses.entry(used.clone()).or_default().last_used = Some(*at);
                }
            }
            view.clients.insert(key.clone(), c);
        }
        for (pod, reporter) in &state.reporters {
            let fresh = reporter
                .last_report
                .is_some_and(|t| now.duration_since(t) <= REPORTER_TTL);
            if let Some(b) = reporter.bypass.as_ref().filter(|_| fresh) {
                view.bypass
                    .entry((b.namespace.clone(), b.name.clone()))
                    .or_default()
                    .push((pod.clone(), b.clone()));
            }
            if fresh {
                for (client, flag) in &reporter.runaway {
                    view.clients
                        .entry(client.clone())
                        .or_default()
                        .runaway
                        .push((pod.clone(), flag.clone()));
                }
            }
            for (tool, (at, names)) in &reporter.tools {
                if now.duration_since(*at) <= WINDOW {
                    view.tools
                        .entry(tool.clone())
                        .or_default()
                        .extend(names.iter().cloned());
                }
            }
        }
        for c in view.clients.values_mut() {
            c.runaway.sort_by(|a, b| a.0.cmp(&b.0));
        }
        for pods in view.bypass.values_mut() {
            pods.sort_by(|a, b| a.0.cmp(&b.0));
        }
        view
    }

    /// Drops what a deleted pod reported (its flags and tool lists; counts stay in the window).
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        let removed = self
            .state
            .lock()
            .expect("usage lock")
            .reporters
            .remove(&(namespace.to_owned(), pod.to_owned()));
        if removed
            .is_some_and(|r| !r.runaway.is_empty() || !r.tools.is_empty() || r.bypass.is_some())
        {
            self.urgent.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Sees a new value after every accepted report.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Sees a new value when runaway flags or tool lists change.
    pub fn urgent(&self) -> watch::Receiver<u64> {
        self.urgent.subscribe()
    }

    /// The pods that reported, with the bundle version each said it enforces.
    pub fn reporters(&self) -> BTreeMap<Key, Option<String>> {
        let state = self.state.lock().expect("usage lock");
        state
            .reporters
            .iter()
            .map(|(k, r)| (k.clone(), r.bundle_version.clone()))
            .collect()
    }
}

/// Checks a report's envelope (namespace, pod, bootId, entry count): an error refuses the whole
/// report. Then drops each malformed entry (a client, runaway flag or tool list without a
/// bounded namespace and name, a client with a bad denial reason, tool name or entry pattern)
/// and keeps the
/// rest; returns how many were dropped.
pub fn validate(report: &mut UsageReport) -> Result<usize, String> {
    let name_ok = |s: &str| !s.is_empty() && s.len() <= 253;
    if !name_ok(&report.namespace) || !name_ok(&report.pod) {
        return Err("namespace and pod are required".into());
    }
    if report.boot_id.is_empty() || report.boot_id.len() > 128 {
        return Err("bootId is required (at most 128 characters)".into());
    }
    let tool_counts: usize = report
        .clients
        .iter()
        .map(|c| c.tools.len() + c.resources.len() + c.prompts.len())
        .sum();
    if report.clients.len() + report.runaway.len() + report.tools.len() + tool_counts > MAX_ENTRIES
    {
        return Err(format!("at most {MAX_ENTRIES} entries per report"));
    }
    let before = report.clients.len() + report.runaway.len() + report.tools.len();
    report.clients.retain(|c| {
        name_ok(&c.namespace)
            && name_ok(&c.name)
            && c.denials.keys().all(|r| !r.is_empty() && r.len() <= 64)
            && c.tools
                .keys()
                .all(|t| !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control))
            // Entry patterns: a name glob, or a URI pattern (as McpTool allows, ≤ 2048).
            && c.resources
                .keys()
                .chain(c.prompts.keys())
                .all(|p| !p.is_empty() && p.len() <= 2048 && !p.chars().any(char::is_control))
    });
    report
        .runaway
        .retain(|f| name_ok(&f.namespace) && name_ok(&f.name));
    report
        .tools
        .retain(|t| name_ok(&t.namespace) && name_ok(&t.name));
    let mut dropped = before - (report.clients.len() + report.runaway.len() + report.tools.len());
    let text_ok = |s: &str| s.len() <= 64 && !s.chars().any(char::is_control);
    if report.bypassable.as_ref().is_some_and(|b| {
        !name_ok(&b.namespace)
            || !name_ok(&b.name)
            || b.checked.len() > 16
            || b.reachable.len() > 16
            || !b.checked.iter().chain(&b.reachable).all(|a| text_ok(a))
            || b.not_checked.as_ref().is_some_and(|w| w.len() > 1024)
    }) {
        report.bypassable = None;
        dropped += 1;
    }
    Ok(dropped)
}

/// Receives `POST /v1/usage` bodies for the push API server.
pub trait UsageSink: Send + Sync + 'static {
    /// Authenticates the caller from its headers, before the body is read.
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>>;

    /// Handles one report of an authenticated `caller`: its headers and the (size-limited)
    /// body. A 503 answer gets `Retry-After`.
    fn post(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)>;
}

/// `POST /v1/usage`: authenticates the caller (headers), checks that the report's pod is the
/// caller's (body), drops malformed entries, then records the report.
#[derive(Clone)]
pub struct UsageEndpoint {
    /// Where reports go.
    pub store: UsageStore,
    /// Who may report for which pod (the same check as the watch stream).
    pub authorizer: Arc<dyn Authorizer>,
    /// Receipt time.
    pub clock: Arc<dyn Clock>,
    /// Counts reports (`accepted`, `duplicate`, `invalid`, `refused`, `not_leader`).
    pub metrics: Option<crate::metrics::Metrics>,
    /// With leader election: whether this replica leads. A follower answers 503 so that the
    /// sidecar sends the report again (on a new connection, so through the Service to another
    /// replica) until the leader, the only one writing status, has it. `None`: every report is
    /// taken (files mode, a single replica).
    pub leading: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for UsageEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageEndpoint").finish_non_exhaustive()
    }
}

impl UsageEndpoint {
    fn count(&self, result: &str) {
        if let Some(m) = &self.metrics {
            m.usage_reports.with_label_values(&[result]).inc();
        }
    }
}

/// The JSON answer to a refused caller.
fn refused(e: &AuthError) -> (StatusCode, serde_json::Value) {
    (e.status(), json!({"error": e.to_string()}))
}

impl UsageSink for UsageEndpoint {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let caller = self.authorizer.authenticate(headers).await;
            if let Err(reason) = &caller {
                self.count("refused");
                tracing::warn!(%reason, "usage report refused before its body was read");
            }
            caller
        })
    }

    fn post(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)> {
        self.handle(caller, headers, body, None)
    }
}

/// A [`UsageEndpoint`] that keeps only what the reporting pod's McpTool could observe: entries
/// for McpClients or McpTools outside the pod's current bundle (as [`Index`] computes it for
/// its sidecar) are dropped, so a pod cannot mark another team's client runaway or move its
/// last seen. For the cluster mode, where the index knows every Pod.
#[derive(Clone, Debug)]
pub struct ScopedUsage {
    /// The endpoint proper.
    pub endpoint: UsageEndpoint,
    /// Where pods' bundles come from.
    pub index: Index,
}

impl UsageSink for ScopedUsage {
    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        self.endpoint.authenticate(headers)
    }

    fn post(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)> {
        self.endpoint
            .handle(caller, headers, body, Some(self.index.clone()))
    }
}

/// Drops the entries of `report` outside `bundle` (all of them without a bundle); returns how
/// many.
pub fn scope(report: &mut UsageReport, bundle: Option<&Bundle>) -> usize {
    let key = |m: &kube::api::ObjectMeta| {
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    };
    let clients: BTreeSet<Key> = bundle
        .map(|b| b.clients.iter().map(|c| key(&c.metadata)).collect())
        .unwrap_or_default();
    let tools: BTreeSet<Key> = bundle
        .map(|b| b.tools.iter().map(|t| key(&t.metadata)).collect())
        .unwrap_or_default();
    let before = report.clients.len() + report.runaway.len() + report.tools.len();
    let known =
        |ns: &str, name: &str, set: &BTreeSet<Key>| set.contains(&(ns.to_owned(), name.to_owned()));
    report
        .clients
        .retain(|c| known(&c.namespace, &c.name, &clients));
    report
        .runaway
        .retain(|f| known(&f.namespace, &f.name, &clients));
    report
        .tools
        .retain(|t| known(&t.namespace, &t.name, &tools));
    let mut dropped = before - (report.clients.len() + report.runaway.len() + report.tools.len());
    if report
        .bypassable
        .as_ref()
        .is_some_and(|b| !known(&b.namespace, &b.name, &tools))
    {
        report.bypassable = None;
        dropped += 1;
    }
    dropped
}

impl UsageEndpoint {
    /// One report: parse, check the envelope, drop malformed entries (and, with `index`, those
    /// outside the pod's bundle), bind to the caller, record.
    fn handle(
        &self,
        caller: Caller,
        headers: http::HeaderMap,
        body: Bytes,
        index: Option<Index>,
    ) -> BoxFuture<'static, (StatusCode, serde_json::Value)> {
        let this = self.clone();
        Box::pin(async move {
            let mut report: UsageReport = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    this.count("invalid");
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({"error": format!("not a usage report: {e}")}),
                    );
                }
            };
            let dropped = match validate(&mut report) {
                Ok(n) => n,
                Err(e) => {
                    this.count("invalid");
                    return (StatusCode::BAD_REQUEST, json!({"error": e}));
                }
            };
            if this.leading.as_ref().is_some_and(|l| !*l.borrow()) {
                this.count("not_leader");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "this replica does not lead: send the report again"}),
                );
            }
            if let Err(reason) = push::bind(
                this.authorizer.as_ref(),
                &caller,
                &headers,
                &report.namespace,
                &report.pod,
            )
            .await
            {
                this.count("refused");
                tracing::warn!(namespace = %report.namespace, pod = %report.pod, %reason, "usage report refused");
                return refused(&reason);
            }
            let out_of_scope = index.map_or(0, |index| {
                let bundle = index.bundle_of(&report.namespace, &report.pod);
                scope(&mut report, bundle.as_deref())
            });
            let dropped = dropped + out_of_scope;
            if dropped > 0 {
                tracing::warn!(namespace = %report.namespace, pod = %report.pod, dropped, out_of_scope, "usage report: malformed entries or entries outside the pod's bundle dropped");
            }
            let mut answer = match this.store.record(report, this.clock.now()) {
                Recorded::Accepted => {
                    this.count("accepted");
                    json!({"accepted": true})
                }
                Recorded::Duplicate => {
                    this.count("duplicate");
                    json!({"accepted": false, "duplicate": true})
                }
            };
            if dropped > 0 {
                answer["dropped"] = json!(dropped);
            }
            (StatusCode::OK, answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn report(seq: u64, calls: u64) -> UsageReport {
        UsageReport {
            namespace: "team".into(),
            pod: "pay-0".into(),
            boot_id: "b1".into(),
            seq,
            clients: vec![ClientUsage {
                namespace: "agents".into(),
                name: "bot".into(),
                calls,
                denials: BTreeMap::from([("not_granted".into(), 1)]),
                last_seen: Some(t("2030-01-01T00:00:00Z")),
                ..ClientUsage::default()
            }],
            ..UsageReport::default()
        }
    }

    #[test]
    fn per_tool_calls_and_last_use_are_kept_per_reporting_pod() {
        let store = UsageStore::default();
        let key = ("agents".to_string(), "bot".to_string());
        let pod = ("team".to_string(), "pay-0".to_string());
        let t0 = t("2030-01-01T00:00:05Z");
        let mut r = report(1, 3);
        r.clients[0].tools = BTreeMap::from([("get_balance".into(), 2), ("refund".into(), 1)]);
        store.record(r, t0);
        let mut r = report(2, 4);
        r.clients[0].tools = BTreeMap::from([("get_balance".into(), 4)]);
        r.clients[0].last_seen = Some(t0 + SignedDuration::from_hours(2));
        store.record(r, t0 + SignedDuration::from_hours(3));
        let v = store.view(t0 + SignedDuration::from_hours(3));
        let tools = &v.clients[&key].tools;
        let balance = tools[&(pod.clone(), "get_balance".to_string())];
        assert_eq!(balance.calls_24h, 6);
        assert_eq!(
            balance.last_used,
            Some(t0 + SignedDuration::from_hours(2)),
            "the client's lastSeen in the report"
        );
        let refund = tools[&(pod.clone(), "refund".to_string())];
        assert_eq!(
            (refund.calls_24h, refund.last_used),
            (1, Some(t("2030-01-01T00:00:00Z")))
        );
        // Past the window both fall out of the view (status keeps lastUsed).
        let v = store.view(t0 + SignedDuration::from_hours(30));
        assert!(
            v.clients[&key].tools.is_empty(),
            "{:?}",
            v.clients[&key].tools
        );
        let mut bad = report(3, 1);
        bad.clients[0].tools = BTreeMap::from([(String::new(), 1)]);
        assert_eq!(validate(&mut bad), Ok(1), "the entry is dropped");
        assert!(bad.clients.is_empty());
    }

    #[test]
    fn counts_fold_into_a_24_hour_window_and_retries_are_dropped() {
        let store = UsageStore::default();
        let key = ("agents".to_string(), "bot".to_string());
        let t0 = t("2030-01-01T00:00:05Z");
        assert_eq!(store.record(report(1, 10), t0), Recorded::Accepted);
        assert_eq!(store.record(report(1, 10), t0), Recorded::Duplicate);
        assert_eq!(
            store.record(report(2, 5), t0 + SignedDuration::from_hours(1)),
            Recorded::Accepted
        );
        let v = store.view(t0 + SignedDuration::from_hours(2));
        assert_eq!(v.clients[&key].calls_24h, 15);
        assert_eq!(v.clients[&key].denials_24h, 2);
        assert_eq!(v.clients[&key].denials_by_reason["not_granted"], 2);
        // 24 h after the first report only the second is in the window.
        let v = store.view(t0 + SignedDuration::from_hours(24) + SignedDuration::from_mins(10));
        assert_eq!(v.clients[&key].calls_24h, 5);
        let v = store.view(t0 + SignedDuration::from_hours(26));
        assert_eq!(v.clients[&key].calls_24h, 0);
        assert_eq!(
            v.clients[&key].last_seen,
            Some(t("2030-01-01T00:00:00Z")),
            "lastSeen outlives the window"
        );
        // A restarted sidecar (new bootId) starts at seq 1 again.
        let mut r = report(1, 1);
        r.boot_id = "b2".into();
        assert_eq!(
            store.record(r, t0 + SignedDuration::from_hours(26)),
            Recorded::Accepted
        );
    }

    #[test]
    fn runaway_flags_are_complete_states_and_expire_with_their_reporter() {
        let store = UsageStore::default();
        let urgent = store.urgent();
        let key = ("agents".to_string(), "bot".to_string());
        let t0 = t("2030-01-01T00:00:00Z");
        let mut r = report(1, 1);
        r.runaway = vec![RunawayFlag {
            namespace: "agents".into(),
            name: "bot".into(),
            flagged_at: t0,
            suspended: true,
        }];
        store.record(r, t0);
        assert!(urgent.has_changed().expect("open"));
        assert_eq!(store.view(t0).clients[&key].runaway.len(), 1);
        assert!(
            store
                .view(t0 + REPORTER_TTL + SignedDuration::from_secs(1))
                .clients[&key]
                .runaway
                .is_empty()
        );
        store.record(report(2, 1), t0 + SignedDuration::from_secs(10));
        assert!(
            store.view(t0 + SignedDuration::from_secs(10)).clients[&key]
                .runaway
                .is_empty()
        );
    }

    #[tokio::test]
    async fn only_the_leader_takes_reports() {
        let (lead, leading) = watch::channel(false);
        let endpoint = UsageEndpoint {
            store: UsageStore::default(),
            authorizer: Arc::new(push::AllowAll),
            clock: Arc::new(crate::clock::SystemClock),
            metrics: None,
            leading: Some(leading),
        };
        let body = Bytes::from(serde_json::to_vec(&report(1, 3)).unwrap());
        let (status, _) = endpoint
            .post(Caller::Unverified, http::HeaderMap::new(), body.clone())
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a follower");
        assert!(endpoint.store.reporters().is_empty(), "and it kept nothing");
        lead.send(true).unwrap();
        let (status, answer) = endpoint
            .post(Caller::Unverified, http::HeaderMap::new(), body)
            .await;
        assert_eq!(
            (status, answer["accepted"].as_bool()),
            (StatusCode::OK, Some(true))
        );
    }

    #[tokio::test]
    async fn a_malformed_entry_is_dropped_and_the_rest_recorded() {
        let endpoint = UsageEndpoint {
            store: UsageStore::default(),
            authorizer: Arc::new(push::AllowAll),
            clock: Arc::new(crate::clock::SystemClock),
            metrics: None,
            leading: None,
        };
        let mut r = report(1, 3);
        let mut bad_tool = r.clients[0].clone();
        bad_tool.name = "other".into();
        bad_tool.tools = BTreeMap::from([("bad\u{7}".into(), 1)]);
        let mut bad_name = r.clients[0].clone();
        bad_name.namespace.clear();
        r.clients.extend([bad_tool, bad_name]);
        r.runaway.push(RunawayFlag {
            namespace: "agents".into(),
            name: String::new(),
            flagged_at: t("2030-01-01T00:00:00Z"),
            suspended: false,
        });
        let body = Bytes::from(serde_json::to_vec(&r).unwrap());
        let (status, answer) = endpoint
            .post(Caller::Unverified, http::HeaderMap::new(), body)
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer, json!({"accepted": true, "dropped": 3}));
        let view = endpoint.store.view(Timestamp::now());
        let keys: Vec<_> = view.clients.keys().cloned().collect();
        assert_eq!(keys, vec![("agents".to_string(), "bot".to_string())]);
        assert_eq!(view.clients[&keys[0]].calls_24h, 3);
        assert!(view.clients[&keys[0]].runaway.is_empty());
        // A bad envelope still refuses the whole report.
        let mut r = report(2, 1);
        r.boot_id.clear();
        let body = Bytes::from(serde_json::to_vec(&r).unwrap());
        let (status, _) = endpoint
            .post(Caller::Unverified, http::HeaderMap::new(), body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn entries_outside_the_pods_bundle_are_dropped() {
        let index = Index::default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/everything");
        index.replace_all(crate::files::read_dir(&dir).expect("examples"));
        let labels = BTreeMap::from([("app".to_string(), "server-everything".to_string())]);
        index.apply_pod("demo", "ev-0", labels);
        let bundle = index
            .bundle_of("demo", "ev-0")
            .expect("the example governs the pod");
        let mine = &bundle.clients[0].metadata;
        let mine = (
            mine.namespace.clone().unwrap_or_default(),
            mine.name.clone().unwrap_or_default(),
        );
        let endpoint = ScopedUsage {
            endpoint: UsageEndpoint {
                store: UsageStore::default(),
                authorizer: Arc::new(push::AllowAll),
                clock: Arc::new(crate::clock::SystemClock),
                metrics: None,
                leading: None,
            },
            index,
        };
        let entry = |(namespace, name): &Key| ClientUsage {
            namespace: namespace.clone(),
            name: name.clone(),
            calls: 2,
            last_seen: Some(t("2030-01-01T00:00:00Z")),
            ..ClientUsage::default()
        };
        let theirs = ("other-team".to_string(), "their-bot".to_string());
        let flag = |(namespace, name): &Key| RunawayFlag {
            namespace: namespace.clone(),
            name: name.clone(),
            flagged_at: t("2030-01-01T00:00:00Z"),
            suspended: true,
        };
        let r = UsageReport {
            namespace: "demo".into(),
            pod: "ev-0".into(),
            boot_id: "b".into(),
            seq: 1,
            clients: vec![entry(&mine), entry(&theirs)],
            runaway: vec![flag(&mine), flag(&theirs)],
            tools: vec![
                ToolsSeen {
                    namespace: "demo".into(),
                    name: "everything".into(),
                    tools_seen: vec!["echo".into()],
                },
                ToolsSeen {
                    namespace: "other-team".into(),
                    name: "their-tool".into(),
                    tools_seen: vec!["x".into()],
                },
            ],
            ..UsageReport::default()
        };
        let body = Bytes::from(serde_json::to_vec(&r).unwrap());
        let (status, answer) = endpoint
            .post(Caller::Unverified, http::HeaderMap::new(), body)
            .await;
        assert_eq!(
            (status, answer),
            (StatusCode::OK, json!({"accepted": true, "dropped": 3}))
        );
        let view = endpoint.endpoint.store.view(Timestamp::now());
        assert!(!view.clients.contains_key(&theirs), "{view:?}");
        assert_eq!(view.clients[&mine].calls_24h, 2);
        assert_eq!(view.clients[&mine].runaway.len(), 1);
        assert_eq!(
            view.tools.keys().cloned().collect::<Vec<_>>(),
            vec![("demo".to_string(), "everything".to_string())]
        );
        // A pod nothing governs observes nothing.
        let mut r = r;
        r.pod = "stranger".into();
        let body = Bytes::from(serde_json::to_vec(&r).unwrap());
        let (_, answer) = endpoint
            .post(Caller::Unverified, http::HeaderMap::new(), body)
            .await;
        assert_eq!(answer["dropped"], 6);
    }

    #[tokio::test]
    async fn a_report_for_another_pod_than_the_callers_is_refused() {
        let endpoint = UsageEndpoint {
            store: UsageStore::default(),
            authorizer: Arc::new(push::AllowAll),
            clock: Arc::new(crate::clock::SystemClock),
            metrics: None,
            leading: None,
        };
        let caller = Caller::Pod {
            namespace: "team".into(),
            pod: "pay-1".into(),
        };
        let body = Bytes::from(serde_json::to_vec(&report(1, 3)).unwrap());
        let (status, answer) = endpoint.post(caller, http::HeaderMap::new(), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(endpoint.store.reporters().is_empty());
    }

    #[test]
    fn report_schema_round_trips() {
        let text = r#"{"namespace":"team-a","pod":"pay-0","bootId":"x","seq":3,
            "clients":[{"namespace":"agents","name":"bot","calls":2,"denials":{"rate_limited":1},"lastSeen":"2030-01-01T00:00:00Z","tools":{"get_balance":2}}],
            "runaway":[{"namespace":"agents","name":"bot","flaggedAt":"2030-01-01T00:00:00Z","suspended":true}],
            "tools":[{"namespace":"team-a","name":"pay","toolsSeen":["b","a"]}]}"#;
        let r: UsageReport = serde_json::from_str(text).expect("parses");
        assert_eq!(r.clients[0].denials["rate_limited"], 1);
        assert_eq!(r.clients[0].tools["get_balance"], 2);
        assert_eq!(validate(&mut r.clone()), Ok(0));
        let again: UsageReport =
            serde_json::from_value(serde_json::to_value(&r).expect("ser")).expect("de");
        assert_eq!(again, r);
        let mut bad = r.clone();
        bad.pod.clear();
        assert!(validate(&mut bad).is_err());
    }
}
