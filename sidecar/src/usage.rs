//! Usage reports: what this sidecar saw, per McpClient, sent to the operator every few seconds
//! so that McpClient status (last seen, calls and denials over 24 h, runaway) and McpTool status
//! (the tools the upstream lists) reflect real traffic.
//!
//! ```text
//! every decision (proxy::gate::record) ──► Usage::observe   calls, tools, denials by
//!                                                                 reason, last seen (per client)
//! every resources/read, prompts/get,        ──► Usage::used      by the governing entry's
//!   completion/complete (proxy::post)                             pattern (resources, prompts)
//! every tools/list answer (proxy::relay)    ──► Usage::listed    the names the upstream lists
//! every interval ──► Usage::take ──► UsageReport { bootId, seq, window, bundleVersion, clients,
//!                                     runaway: Quotas::runaway_flags (complete), tools }
//!   ──POST {operator}/v1/usage (Bearer: projected SA token, a new connection each time)──►
//!        2xx: sent │ 503 (a follower: only the leader takes reports): again at once, at most 4
//!                    times, each on a new connection the Service balances to some replica
//!                  │ otherwise: kept with its seq and sent again first next time
//!                                  (the operator drops a report it already has: same bootId,
//!                                  seq not newer), at most MAX_QUEUED kept
//! ```
//!
//! Counts are deltas since the previous report, so the sidecar keeps no window of its own, and
//! bounded: at most [`MAX_CLIENTS`] clients and [`MAX_TOOLS`] tool names per client between two
//! reports (a caller cycling through invented names cannot grow memory).

use crate::{proxy::Shared, source::link::Link};
use bytes::Bytes;
use http::Method;
use jiff::Timestamp;
use mcp_warden_policy::{Capability, ObjectRef};
use mcp_warden_wire::usage::{ClientUsage, RunawayFlag, ToolsSeen, UsageReport};
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

/// Most distinct clients counted between two reports.
pub const MAX_CLIENTS: usize = 10_000;
/// Most distinct tool names counted per client between two reports.
pub const MAX_TOOLS: usize = 256;
/// Most unsent reports kept while the operator is unreachable (the oldest go first).
pub const MAX_QUEUED: usize = 60;
/// Most tool names reported for the upstream.
const MAX_LISTED: usize = 5_000;

#[derive(Debug, Default)]
struct Pending {
    clients: HashMap<ObjectRef, ClientUsage>,
    listed: BTreeSet<String>,
    listed_changed: bool,
}

/// What the proxy saw since the previous report. Cheap to call on every request.
#[derive(Debug, Default)]
pub struct Usage {
    pending: Mutex<Pending>,
}

fn lock(m: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Usage {
    /// Counts one decision about a request of `client`: a tool call (of `tool`) when the method
    /// is `tools/call`, a denial when `denied_reason` is set.
    pub fn observe(
        &self,
        client: &ObjectRef,
        method: &str,
        tool: Option<&str>,
        denied_reason: Option<&str>,
        now: Timestamp,
    ) {
        let mut pending = lock(&self.pending);
        let full = pending.clients.len() >= MAX_CLIENTS;
        let entry = match pending.clients.get_mut(client) {
            Some(e) => e,
            None if full => return,
            None => pending
                .clients
                .entry(client.clone())
                .or_insert_with(|| ClientUsage {
                    namespace: client.namespace.clone(),
                    name: client.name.clone(),
                    ..ClientUsage::default()
                }),
        };
        entry.last_seen = Some(now);
        if method == "tools/call" {
            entry.calls += 1;
            if let Some(tool) = tool
                && (entry.tools.len() < MAX_TOOLS || entry.tools.contains_key(tool))
            {
                *entry.tools.entry(tool.to_owned()).or_default() += 1;
            }
        }
        if let Some(reason) = denied_reason {
            *entry.denials.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Counts one use of a resource or prompt by `client`, under `pattern`: the pattern of the
    /// entry that governs it (`*` when none does), so that invented URIs cannot grow memory.
    /// Tools are counted by [`Self::observe`].
    pub fn used(&self, client: &ObjectRef, capability: Capability, pattern: &str) {
        let mut pending = lock(&self.pending);
        let Some(entry) = pending.clients.get_mut(client) else {
            // `observe` of the same decision made the client's entry (or the table is full).
            return;
        };
        let map = match capability {
            Capability::Resource => &mut entry.resources,
            Capability::Prompt => &mut entry.prompts,
            Capability::Tool => return,
        };
        if map.len() < MAX_TOOLS || map.contains_key(pattern) {
            *map.entry(pattern.to_owned()).or_default() += 1;
        }
    }

    /// The upstream listed these tools (one page of a `tools/list` answer).
    pub fn listed<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut pending = lock(&self.pending);
        for name in names {
            if pending.listed.len() >= MAX_LISTED {
                break;
            }
            if pending.listed.insert(name.to_owned()) {
                pending.listed_changed = true;
            }
        }
    }

    /// Takes the counts (clients sorted) and, when it changed, the set of listed tools.
    fn take(&self) -> (Vec<ClientUsage>, Option<Vec<String>>) {
        let mut pending = lock(&self.pending);
        let mut clients: Vec<ClientUsage> = pending.clients.drain().map(|(_, c)| c).collect();
        clients.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let listed = std::mem::take(&mut pending.listed_changed)
            .then(|| pending.listed.iter().cloned().collect());
        (clients, listed)
    }
}

/// Where and how often to report.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// The operator.
    pub link: Link,
    /// This pod's namespace.
    pub namespace: String,
    /// This pod's name.
    pub pod: String,
    /// Time between reports.
    pub interval: Duration,
    /// Where bypass check outcomes come from (`None`: no checks).
    pub bypass: Option<Arc<crate::bypass::Bypass>>,
}

/// Reports forever (until the task is aborted).
pub async fn run(reporter: Reporter, shared: Arc<Shared>) {
    let boot_id = format!("{:032x}", rand::random::<u128>());
    let mut seq = 0_u64;
    let mut queue: VecDeque<(u64, Bytes)> = VecDeque::new();
    let mut window_start = Timestamp::now();
    let mut ticker = tokio::time::interval(reporter.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = Timestamp::now();
        if let Some(report) = build(&reporter, &shared, &boot_id, seq + 1, window_start, now) {
            seq += 1;
            window_start = now;
            match serde_json::to_vec(&report) {
                Ok(body) => queue.push_back((seq, Bytes::from(body))),
                Err(e) => tracing::error!("cannot encode a usage report: {e}"),
            }
            if queue.len() > MAX_QUEUED {
                queue.pop_front();
                shared.metrics.usage_report("dropped");
                tracing::warn!(
                    "the operator has been unreachable for long: the oldest usage report is dropped"
                );
            }
        }
        let mut follower_answers = 0;
        while let Some((seq, body)) = queue.front() {
            match send(&reporter.link, body.clone()).await {
                Ok(()) => {
                    shared.metrics.usage_report("sent");
                    queue.pop_front();
                }
                // A follower: a new connection may reach the leader (a few tries now, the rest
                // at the next tick).
                Err(Failure::NotLeader) if follower_answers < 4 => {
                    shared.metrics.usage_report("not_leader");
                    follower_answers += 1;
                }
                Err(e) => {
                    shared.metrics.usage_report("failed");
                    tracing::warn!(seq, operator = %reporter.link.base(), "usage report not delivered, kept for the next attempt: {e}");
                    break;
                }
            }
        }
    }
}

/// The next report, or `None` when there is nothing to say (no traffic, no flags, nothing new
/// listed).
fn build(
    reporter: &Reporter,
    shared: &Shared,
    boot_id: &str,
    seq: u64,
    window_start: Timestamp,
    now: Timestamp,
) -> Option<UsageReport> {
    let (clients, listed) = shared.usage.as_ref()?.take();
    let runaway: Vec<RunawayFlag> = shared
        .quotas
        .runaway_flags(now)
        .into_iter()
        .map(|f| RunawayFlag {
            namespace: f.client.namespace,
            name: f.client.name,
            flagged_at: f.since,
            suspended: f.suspended,
        })
        .collect();
    let active = shared.live.current();
    let tools = match (listed, &active) {
        (Some(names), Some(active)) => vec![ToolsSeen {
            namespace: active.rules.tool.namespace.clone(),
            name: active.rules.tool.name.clone(),
            tools_seen: names,
        }],
        _ => Vec::new(),
    };
    let bypassable = reporter.bypass.as_ref().and_then(|b| b.take());
    if clients.is_empty() && runaway.is_empty() && tools.is_empty() && bypassable.is_none() {
        return None;
    }
    Some(UsageReport {
        namespace: reporter.namespace.clone(),
        pod: reporter.pod.clone(),
        boot_id: boot_id.to_owned(),
        seq,
        window_start: Some(window_start),
        window_end: Some(now),
        bundle_version: active.map(|a| a.version.clone()),
        clients,
        runaway,
        tools,
        bypassable,
    })
}

/// Why a report did not arrive.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The replica reached does not lead (503): another may.
    #[error("the replica reached does not lead")]
    NotLeader,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

async fn send(link: &Link, body: Bytes) -> Result<(), Failure> {
    let url = link.url("v1/usage", &[]);
    let request = link
        .request(Method::POST, &url, Some("application/json"), body)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(10), link.send(request))
        .await
        .map_err(|_| Failure::Other("the operator did not answer in 10 s".to_owned()))?
        .map_err(Failure::Other)?;
    match response.status() {
        status if status.is_success() => Ok(()),
        http::StatusCode::SERVICE_UNAVAILABLE => Err(Failure::NotLeader),
        status => Err(Failure::Other(format!("the operator answered {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn client(name: &str) -> ObjectRef {
        ObjectRef::new(mcp_warden_policy::Kind::McpClient, "agents", name)
    }

    #[test]
    fn calls_tools_denials_and_last_seen_are_counted_per_client() {
        let usage = Usage::default();
        let (t1, t2) = (
            Timestamp::from_second(1).unwrap(),
            Timestamp::from_second(2).unwrap(),
        );
        usage.observe(&client("a"), "tools/call", Some("echo"), None, t1);
        usage.observe(
            &client("a"),
            "tools/call",
            Some("echo"),
            Some("rate_limited"),
            t2,
        );
        usage.observe(&client("a"), "tools/list", None, None, t2);
        usage.observe(
            &client("b"),
            "tools/call",
            Some("refund"),
            Some("not_granted"),
            t1,
        );
        let (clients, listed) = usage.take();
        assert_eq!(listed, None);
        assert_eq!(clients.len(), 2);
        let a = &clients[0];
        assert_eq!((a.name.as_str(), a.calls, a.last_seen), ("a", 2, Some(t2)));
        assert_eq!(a.tools, BTreeMap::from([("echo".to_owned(), 2)]));
        assert_eq!(a.denials, BTreeMap::from([("rate_limited".to_owned(), 1)]));
        assert_eq!(clients[1].denials["not_granted"], 1);
        assert!(usage.take().0.is_empty(), "counts are deltas");
    }

    #[test]
    fn invented_names_cannot_grow_memory() {
        let usage = Usage::default();
        let now = Timestamp::now();
        for i in 0..MAX_TOOLS + 50 {
            usage.observe(
                &client("a"),
                "tools/call",
                Some(&format!("t{i}")),
                None,
                now,
            );
        }
        let (clients, _) = usage.take();
        assert_eq!(
            clients[0].calls,
            (MAX_TOOLS + 50) as u64,
            "every call counts"
        );
        assert_eq!(clients[0].tools.len(), MAX_TOOLS);
        for i in 0..MAX_CLIENTS + 5 {
            usage.observe(&client(&format!("c{i}")), "ping", None, None, now);
        }
        assert_eq!(usage.take().0.len(), MAX_CLIENTS);
    }

    #[test]
    fn resources_and_prompts_are_counted_by_entry_pattern_and_stay_optional_on_the_wire() {
        let usage = Usage::default();
        let now = Timestamp::from_second(0).unwrap();
        usage.observe(&client("a"), "resources/read", None, None, now);
        usage.used(&client("a"), Capability::Resource, "file:///docs/*");
        usage.observe(&client("a"), "resources/read", None, None, now);
        usage.used(&client("a"), Capability::Resource, "file:///docs/*");
        usage.observe(&client("a"), "prompts/get", None, None, now);
        usage.used(&client("a"), Capability::Prompt, "summarize");
        for i in 0..MAX_TOOLS + 5 {
            usage.used(&client("a"), Capability::Prompt, &format!("p{i}"));
        }
        let (clients, _) = usage.take();
        let a = &clients[0];
        assert_eq!(
            a.resources,
            BTreeMap::from([("file:///docs/*".to_owned(), 2)])
        );
        assert_eq!(a.prompts["summarize"], 1);
        assert_eq!(a.prompts.len(), MAX_TOOLS, "bounded");
        let wire = serde_json::to_value(a).unwrap();
        assert_eq!(wire["resources"], serde_json::json!({"file:///docs/*": 2}));
        // Without them, the report is what an older operator reads.
        usage.observe(&client("b"), "tools/call", Some("echo"), None, now);
        let wire = serde_json::to_value(&usage.take().0[0]).unwrap();
        assert!(wire.get("resources").is_none() && wire.get("prompts").is_none());
    }

    #[test]
    fn listed_tools_are_reported_when_they_change() {
        let usage = Usage::default();
        usage.listed(["b", "a"]);
        assert_eq!(usage.take().1, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(usage.take().1, None);
        usage.listed(["a"]);
        assert_eq!(usage.take().1, None, "nothing new");
        usage.listed(["c"]);
        assert_eq!(usage.take().1.unwrap().len(), 3);
    }
}
