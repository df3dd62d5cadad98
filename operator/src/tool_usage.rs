//! `McpClient.status.toolUsage`: which tools each client called, when last, how often in 24 h;
//! `resourceUsage` and `promptUsage` the same per resource and prompt entry (the sidecar
//! reports those by the entry's pattern).
//!
//! ```text
//! UsageView (per client: (reporting pod, tool name) → calls 24 h, last use)
//!   │ Attribution::new: each reporting pod → the one McpTool in its namespace whose
//!   │   server.selector matches its labels (as `select` picks it)
//!   ▼ resolve: `<ns>/<McpTool>/<tool>`, only names the McpTool declares (or any name under
//!   │   defaultAction Allow): a client calling made-up names cannot fill its status
//!   ▼ merge with the current status: lastUsed kept after the window, for TOOL_USAGE_RETENTION
//! Vec<ToolUsage>, sorted by tool, at most MAX_TOOL_USAGE (the most recently used)
//! ```
//!
//! Use reported by a pod that is gone, or that no single McpTool selects, cannot be attributed
//! and is left out (it still counts in `calls24h`).

use crate::{
    index::PodKey,
    status::{Pods, time},
    usage::{ClientView, ToolView, UsageView},
};
use jiff::{SignedDuration, Timestamp};
use mcp_warden_crds::{DefaultAction, McpClient, PromptUsage, ResourceUsage, ToolUsage};
use mcp_warden_policy::{Capability, Inventory, glob::Glob, selector};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How long `toolUsage[].lastUsed` is kept after the last use.
pub const TOOL_USAGE_RETENTION: SignedDuration = SignedDuration::from_hours(24 * 90);
/// Most `toolUsage` entries per McpClient (the most recently used are kept).
pub const MAX_TOOL_USAGE: usize = 256;

/// The McpTool each reporting pod serves, with what it declares.
#[derive(Debug, Default)]
pub struct Attribution {
    by_pod: HashMap<PodKey, Governed>,
}

#[derive(Debug)]
struct Governed {
    prefix: String,
    declared: Vec<Glob>,
    allow_undeclared: bool,
    /// The resource and prompt entries' patterns as written, and whether undeclared ones
    /// (reported as `*`) are allowed.
    resources: (Vec<String>, bool),
    prompts: (Vec<String>, bool),
}

impl Governed {
    fn accepts(&self, tool: &str) -> bool {
        self.allow_undeclared || self.declared.iter().any(|g| g.matches(tool))
    }

    /// Whether `pattern` is one of the McpTool's entries of `capability` (the sidecar reports
    /// a use by its entry's pattern), or `*` when undeclared ones are allowed.
    fn accepts_entry(&self, capability: Capability, pattern: &str) -> bool {
        let (declared, allow) = match capability {
            Capability::Tool => return self.accepts(pattern),
            Capability::Resource => &self.resources,
            Capability::Prompt => &self.prompts,
        };
        if pattern == "*" {
            *allow
        } else {
            declared.iter().any(|d| d == pattern)
        }
    }
}

impl Attribution {
    /// Finds the McpTool of every pod that reported tool use in `usage`.
    pub fn new(inventory: &Inventory, pods: &Pods, usage: &UsageView) -> Self {
        let reporting: BTreeSet<&PodKey> = usage
            .clients
            .values()
            .flat_map(|c| {
                let tools = c.tools.keys().map(|(pod, _)| pod);
                tools.chain(c.uses.keys().map(|(pod, _, _)| pod))
            })
            .collect();
        let mut by_pod = HashMap::new();
        for pod in reporting {
            let Some(labels) = pods.get(pod) else {
                continue;
            };
            let mut matching = inventory
                .tools()
                .range((pod.0.clone(), String::new())..)
                .take_while(|((ns, _), _)| *ns == pod.0)
                .filter(|(_, t)| {
                    t.spec
                        .server
                        .selector
                        .as_ref()
                        .is_some_and(|s| selector::matches(s, labels))
                });
            if let (Some(((ns, name), tool)), None) = (matching.next(), matching.next()) {
                let governed = Governed {
                    prefix: format!("{ns}/{name}/"),
                    declared: tool.spec.tools.iter().map(|t| Glob::new(&t.name)).collect(),
                    allow_undeclared: tool.spec.default_action == DefaultAction::Allow,
                    resources: (
                        tool.spec.resources.iter().map(|r| r.uri.clone()).collect(),
                        tool.spec.default_resource_action == DefaultAction::Allow,
                    ),
                    prompts: (
                        tool.spec.prompts.iter().map(|p| p.name.clone()).collect(),
                        tool.spec.default_prompt_action == DefaultAction::Allow,
                    ),
                };
                by_pod.insert(pod.clone(), governed);
            }
        }
        Self { by_pod }
    }

    /// One client's use keyed by `<ns>/<McpTool>/<tool>`, summed over its reporting pods.
    pub fn resolve(&self, usage: Option<&ClientView>) -> BTreeMap<String, ToolView> {
        let mut out: BTreeMap<String, ToolView> = BTreeMap::new();
        for ((pod, tool), view) in usage.map(|u| &u.tools).into_iter().flatten() {
            let Some(governed) = self.by_pod.get(pod).filter(|g| g.accepts(tool)) else {
                continue;
            };
            let t = out.entry(format!("{}{tool}", governed.prefix)).or_default();
            t.calls_24h = t.calls_24h.saturating_add(view.calls_24h);
            t.last_used = t.last_used.max(view.last_used);
        }
        out
    }

    /// One client's use of resource or prompt entries keyed by `<ns>/<McpTool>/<pattern>`,
    /// summed over its reporting pods; only the McpTool's own entries (and `*` under an Allow
    /// default action).
    pub fn resolve_uses(
        &self,
        usage: Option<&ClientView>,
        capability: Capability,
    ) -> BTreeMap<String, ToolView> {
        let mut out: BTreeMap<String, ToolView> = BTreeMap::new();
        for ((pod, cap, pattern), view) in usage.map(|u| &u.uses).into_iter().flatten() {
            if *cap != capability {
                continue;
            }
            let Some(governed) = self
                .by_pod
                .get(pod)
                .filter(|g| g.accepts_entry(capability, pattern))
            else {
                continue;
            };
            let t = out
                .entry(format!("{}{pattern}", governed.prefix))
                .or_default();
            t.calls_24h = t.calls_24h.saturating_add(view.calls_24h);
            t.last_used = t.last_used.max(view.last_used);
        }
        out
    }
}

/// `status.toolUsage` of one McpClient: the tools `used` in the window (calls over 24 h, last
/// use), merged with the current status's entries (their `lastUsed` kept, calls back to 0) until
/// [`TOOL_USAGE_RETENTION`] after their last use; at most [`MAX_TOOL_USAGE`], the most recently
/// used; sorted by tool.
pub fn merge(
    client: &McpClient,
    used: &BTreeMap<String, ToolView>,
    now: Timestamp,
) -> Vec<ToolUsage> {
    let previous = client.status.iter().flat_map(|s| &s.tool_usage);
    let previous = previous.map(|u| (u.tool.clone(), u.last_used.as_ref().map(|t| t.0)));
    merge_views(previous, used, now)
        .into_iter()
        .map(|(tool, last, calls)| ToolUsage {
            tool,
            last_used: last.map(time),
            calls_24h: calls,
        })
        .collect()
}

/// `status.resourceUsage`, merged as [`merge`] does `toolUsage`.
pub fn merge_resources(
    client: &McpClient,
    used: &BTreeMap<String, ToolView>,
    now: Timestamp,
) -> Vec<ResourceUsage> {
    let previous = client.status.iter().flat_map(|s| &s.resource_usage);
    let previous = previous.map(|u| (u.resource.clone(), u.last_used.as_ref().map(|t| t.0)));
    merge_views(previous, used, now)
        .into_iter()
        .map(|(resource, last, calls)| ResourceUsage {
            resource,
            last_used: last.map(time),
            calls_24h: calls,
        })
        .collect()
}

/// `status.promptUsage`, merged as [`merge`] does `toolUsage`.
pub fn merge_prompts(
    client: &McpClient,
    used: &BTreeMap<String, ToolView>,
    now: Timestamp,
) -> Vec<PromptUsage> {
    let previous = client.status.iter().flat_map(|s| &s.prompt_usage);
    let previous = previous.map(|u| (u.prompt.clone(), u.last_used.as_ref().map(|t| t.0)));
    merge_views(previous, used, now)
        .into_iter()
        .map(|(prompt, last, calls)| PromptUsage {
            prompt,
            last_used: last.map(time),
            calls_24h: calls,
        })
        .collect()
}

/// `(key, last use, calls over 24 h)`: the window's use over the previous entries (their last
/// use kept, calls back to 0), those used within the retention, at most [`MAX_TOOL_USAGE`] (the
/// most recently used), sorted by key.
fn merge_views(
    previous: impl Iterator<Item = (String, Option<Timestamp>)>,
    used: &BTreeMap<String, ToolView>,
    now: Timestamp,
) -> Vec<(String, Option<Timestamp>, u64)> {
    let mut merged: BTreeMap<String, (Option<Timestamp>, u64)> = BTreeMap::new();
    for (key, last) in previous {
        merged.insert(key, (last, 0));
    }
    for (key, view) in used {
        let entry = merged.entry(key.clone()).or_default();
        entry.0 = entry.0.max(view.last_used);
        entry.1 = view.calls_24h;
    }
    let mut entries: Vec<(String, Option<Timestamp>, u64)> = merged
        .into_iter()
        .filter(|(_, (last, calls))| {
            *calls > 0 || last.is_some_and(|t| now.duration_since(t) <= TOOL_USAGE_RETENTION)
        })
        .map(|(key, (last, calls))| (key, last, calls))
        .collect();
    if entries.len() > MAX_TOOL_USAGE {
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        entries.truncate(MAX_TOOL_USAGE);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{client_status, compute};
    use mcp_warden_policy::{Resource, load};

    const CRS: &str = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: pay, namespace: team}
spec:
  owner: team
  server: {selector: {matchLabels: {app: pay}}, resource: "https://pay.example/mcp"}
  authentication: {issuers: [{issuer: "https://idp.example"}]}
  tools: [{name: "get_*"}]
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: bot, namespace: agents}
spec: {owner: me, identity: {issuer: "https://idp.example", clientId: bot}}
"#;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn use_is_attributed_to_the_pods_mcptool_and_outlives_the_window() {
        let inv = Inventory::from_resources(load("t.yaml", CRS).expect("valid"));
        let key = ("agents".to_string(), "bot".to_string());
        let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        let pods: Pods = BTreeMap::from([
            (("team".into(), "pay-0".into()), labels("pay")),
            (("team".into(), "web-0".into()), labels("web")),
        ]);
        let used = |pod: &str, tool: &str, at: &str, calls| {
            (
                (("team".to_string(), pod.to_string()), tool.to_string()),
                ToolView {
                    calls_24h: calls,
                    last_used: Some(t(at)),
                },
            )
        };
        let mut usage = UsageView::default();
        usage.clients.insert(
            key.clone(),
            ClientView {
                tools: BTreeMap::from([
                    used("pay-0", "get_balance", "2030-01-31T10:00:00Z", 4),
                    // Not declared by pay (defaultAction Deny): not recorded.
                    used("pay-0", "drop_tables", "2030-01-31T10:30:00Z", 9),
                    // web-0 is governed by no McpTool: its use cannot be attributed.
                    used("web-0", "get_balance", "2030-01-31T11:00:00Z", 1),
                ]),
                ..ClientView::default()
            },
        );
        let now = t("2030-02-01T00:00:00Z");
        let s = &compute(&inv, &pods, &usage, now).clients[&key];
        assert_eq!(
            s.tool_usage,
            vec![ToolUsage {
                tool: "team/pay/get_balance".into(),
                last_used: Some(time(t("2030-01-31T10:00:00Z"))),
                calls_24h: 4,
            }]
        );
        // A day later the window is empty: lastUsed stays, calls go back to 0.
        let mut client = inv.clients()[&key].clone();
        client.status = Some(s.clone());
        let mut inv2 = inv.clone();
        inv2.apply(Resource::Client(client.clone()));
        let later = t("2030-02-02T12:00:00Z");
        let s2 = &compute(&inv2, &pods, &UsageView::default(), later).clients[&key];
        assert_eq!(s2.tool_usage[0].calls_24h, 0);
        assert_eq!(s2.tool_usage[0].last_used, s.tool_usage[0].last_used);
        // client_status alone carries the entries over too.
        assert_eq!(
            client_status(&client, None, None, later).tool_usage,
            s2.tool_usage
        );
        // After the retention the entry is dropped.
        let gone = t("2030-05-01T10:00:01Z");
        assert!(merge(&client, &BTreeMap::new(), gone).is_empty());
    }

    #[test]
    fn resource_and_prompt_use_is_attributed_by_entry_pattern() {
        let crs = CRS.replace(
            "  tools: [{name: \"get_*\"}]\n",
            "  tools: [{name: \"get_*\"}]\n  resources: [{uri: \"file:///ledger/*\"}]\n  prompts: [{name: summarize}]\n  defaultPromptAction: Allow\n",
        );
        assert_ne!(crs, CRS);
        let inv = Inventory::from_resources(load("t.yaml", &crs).expect("valid"));
        let key = ("agents".to_string(), "bot".to_string());
        let pods: Pods = BTreeMap::from([(
            ("team".into(), "pay-0".into()),
            BTreeMap::from([("app".to_string(), "pay".to_string())]),
        )]);
        // As the operator receives it from a sidecar (the wire format).
        let store = crate::usage::UsageStore::default();
        let report: crate::usage::UsageReport = serde_json::from_value(serde_json::json!({
            "namespace": "team", "pod": "pay-0", "bootId": "b", "seq": 1,
            "clients": [{"namespace": "agents", "name": "bot", "calls": 6,
                         "lastSeen": "2030-01-31T10:00:00Z",
                         "resources": {"file:///ledger/*": 3, "*": 1, "file:///other/*": 1},
                         "prompts": {"summarize": 1, "*": 2}}],
        }))
        .expect("a report with resources and prompts");
        let now = t("2030-01-31T10:00:05Z");
        store.record(report, now);
        let s = &compute(&inv, &pods, &store.view(now), now).clients[&key];
        // `*` is not kept for resources (defaultResourceAction Deny), nor an entry pay lacks.
        assert_eq!(
            s.resource_usage,
            vec![ResourceUsage {
                resource: "team/pay/file:///ledger/*".into(),
                last_used: Some(time(t("2030-01-31T10:00:00Z"))),
                calls_24h: 3,
            }]
        );
        let prompts: Vec<(&str, u64)> = s
            .prompt_usage
            .iter()
            .map(|p| (p.prompt.as_str(), p.calls_24h))
            .collect();
        assert_eq!(prompts, [("team/pay/*", 2), ("team/pay/summarize", 1)]);
        assert!(s.tool_usage.is_empty());
        // A report of an older sidecar, without them, still reads.
        let old: crate::usage::UsageReport = serde_json::from_value(serde_json::json!({
            "namespace": "team", "pod": "pay-0", "bootId": "b", "seq": 2,
            "clients": [{"namespace": "agents", "name": "bot", "calls": 1, "tools": {"get_x": 1}}],
        }))
        .expect("an older report");
        assert!(old.clients[0].resources.is_empty() && old.clients[0].prompts.is_empty());
    }

    #[test]
    fn at_most_the_most_recently_used_entries_are_kept() {
        let now = t("2030-02-01T00:00:00Z");
        let used: BTreeMap<String, ToolView> = (0..MAX_TOOL_USAGE + 10)
            .map(|i| {
                let view = ToolView {
                    calls_24h: 1,
                    last_used: Some(now - SignedDuration::from_mins(i as i64)),
                };
                (format!("team/pay/tool-{i:04}"), view)
            })
            .collect();
        let entries = merge(&McpClient::default(), &used, now);
        assert_eq!(entries.len(), MAX_TOOL_USAGE);
        assert_eq!(entries[0].tool, "team/pay/tool-0000");
        assert!(
            entries
                .iter()
                .all(|e| e.tool < format!("team/pay/tool-{MAX_TOOL_USAGE:04}"))
        );
    }
}
