//! The usage report: what a sidecar saw since its previous report (`POST /v1/usage`).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body of `POST /v1/usage` (JSON, camelCase). Version 1.
///
/// ```json
/// {"namespace": "team-a", "pod": "pay-7d9f-x2", "bootId": "4f1c…", "seq": 17,
///  "windowStart": "2026-01-05T10:00:00Z", "windowEnd": "2026-01-05T10:00:10Z",
///  "bundleVersion": "sha256:…",
///  "clients": [{"namespace": "agents", "name": "bot", "calls": 12,
///               "denials": {"not_granted": 2, "rate_limited": 1},
///               "lastSeen": "2026-01-05T10:00:09Z", "tools": {"get_balance": 12},
///               "resources": {"file:///ledger/*": 3}, "prompts": {"summarize": 1}}],
///  "runaway": [{"namespace": "agents", "name": "bot",
///               "flaggedAt": "2026-01-05T09:58:00Z", "suspended": true}],
///  "tools": [{"namespace": "team-a", "name": "pay", "toolsSeen": ["get_balance", "refund"]}],
///  "bypassable": {"namespace": "team-a", "name": "pay", "port": 8080,
///                 "checked": ["10.0.0.5"], "reachable": ["10.0.0.5:8080"]}}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// The reporting sidecar's pod namespace (must be the caller's, see the authorizer).
    pub namespace: String,
    /// The reporting sidecar's pod name.
    pub pod: String,
    /// Random per sidecar process start. With `seq`, lets the operator drop a retried report.
    pub boot_id: String,
    /// Increases by one with every report of the same process.
    pub seq: u64,
    /// Start of the interval the counts cover (sidecar clock; informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Timestamp>,
    /// End of the interval the counts cover (sidecar clock; informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<Timestamp>,
    /// The bundle version the sidecar enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_version: Option<String>,
    /// Per McpClient counts since the previous report; clients with no traffic may be left out.
    #[serde(default)]
    pub clients: Vec<ClientUsage>,
    /// Every client the sidecar currently holds flagged as running away (complete each time).
    #[serde(default)]
    pub runaway: Vec<RunawayFlag>,
    /// The tools each governed upstream lists (latest `tools/list`; may be left out when
    /// unchanged since the previous report).
    #[serde(default)]
    pub tools: Vec<ToolsSeen>,
    /// The sidecar's latest bypass check (sent once per check, see the sidecar's `bypass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypassable: Option<BypassReport>,
}

/// Whether the upstream answers on the pod's own addresses, i.e. around the sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BypassReport {
    /// The McpTool's namespace.
    pub namespace: String,
    /// The McpTool's name.
    pub name: String,
    /// The upstream port tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The pod addresses tried.
    #[serde(default)]
    pub checked: Vec<String>,
    /// The `address:port`s that accepted a connection (non-empty: bypassable).
    #[serde(default)]
    pub reachable: Vec<String>,
    /// Why nothing was checked (an upstream on another host, no pod address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
}

/// What one McpClient did at one sidecar since its previous report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientUsage {
    /// The McpClient's namespace.
    pub namespace: String,
    /// The McpClient's name.
    pub name: String,
    /// Tool calls (allowed or denied).
    #[serde(default)]
    pub calls: u64,
    /// Denied requests, by the sidecar's denial reason (`not_granted`, `rate_limited`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub denials: BTreeMap<String, u64>,
    /// The last request from this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// Tool calls by tool name (as the upstream names it), since the previous report.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, u64>,
    /// Resource reads and completions by the pattern of the McpTool's resource entry that
    /// governs them (`*`: none), since the previous report. Absent from older sidecars.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, u64>,
    /// Prompt gets and completions by the pattern of the prompt entry (`*`: none). Absent
    /// from older sidecars.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, u64>,
}

/// A client a sidecar holds flagged as running away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunawayFlag {
    /// The McpClient's namespace.
    pub namespace: String,
    /// The McpClient's name.
    pub name: String,
    /// When the sidecar flagged it.
    pub flagged_at: Timestamp,
    /// Whether the sidecar suspends it (`quota.suspendOnRunaway`).
    #[serde(default)]
    pub suspended: bool,
}

/// The tools one upstream lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolsSeen {
    /// The McpTool's namespace.
    pub namespace: String,
    /// The McpTool's name.
    pub name: String,
    /// Tool names from the upstream's `tools/list`.
    pub tools_seen: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_camel_case_omit_what_is_empty_and_read_older_ones() {
        let mut c = ClientUsage {
            namespace: "agents".into(),
            name: "bot".into(),
            calls: 3,
            ..ClientUsage::default()
        };
        c.tools.insert("echo".into(), 3);
        c.last_seen = Timestamp::from_second(0).ok();
        let json = serde_json::to_value(&c).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"namespace": "agents", "name": "bot", "calls": 3,
                "tools": {"echo": 3}, "lastSeen": "1970-01-01T00:00:00Z"})
        );
        // A report of a sidecar from before resources, prompts and the bypass check.
        let older: Result<UsageReport, _> = serde_json::from_value(serde_json::json!({
            "namespace": "team", "pod": "p", "bootId": "b", "seq": 1,
            "clients": [json], "runaway": [], "tools": []
        }));
        let older = older.unwrap_or_default();
        assert_eq!(older.clients, [c]);
        assert_eq!(older.bypassable, None);
    }
}
