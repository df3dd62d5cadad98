//! Builders for quota tests: whole CRs as JSON, compiled exactly as the sidecar compiles them,
//! and a manual clock.
#![allow(dead_code)]

use jiff::{Timestamp, ToSpan};
use mcp_warden_crds::{McpClient, McpPolicy, McpTool};
use mcp_warden_policy::{Bundle, Kind, ObjectRef, RuleSet, compile};
use serde_json::{Value, json};
use std::time::Duration;

pub const TOOL_NS: &str = "payments";
pub const CLIENT_NS: &str = "agents";

/// `{requests, period, burst}`.
pub fn rate(requests: u32, period: &str, burst: u32) -> Value {
    json!({"requests": requests, "period": period, "burst": burst})
}

/// The McpTool: `(name, rateLimit)` entries and an optional tool-wide rate.
pub fn tool(entries: &[(&str, Option<Value>)], tool_wide: Option<Value>) -> McpTool {
    let tools: Vec<Value> = entries
        .iter()
        .map(|(name, rate)| match rate {
            Some(r) => json!({"name": name, "rateLimit": r}),
            None => json!({"name": name}),
        })
        .collect();
    let mut spec = json!({
        "owner": "team-payments",
        "server": {
            "selector": {"matchLabels": {"app": "payments-mcp"}},
            "resource": "https://payments.example.com/mcp",
            "upstream": "http://127.0.0.1:8080/mcp",
        },
        "authentication": {
            "issuers": [{"issuer": "https://idp.example.com", "algorithms": ["RS256"]}],
            "maxTokenLifetime": "1h",
            "clockSkew": "30s",
        },
        "defaultAction": "Allow",
        "tools": tools,
    });
    if let Some(r) = tool_wide {
        spec["rateLimit"] = r;
    }
    serde_json::from_value(json!({
        "apiVersion": "mcpwarden.io/v1alpha1",
        "kind": "McpTool",
        "metadata": {"name": "payments-api", "namespace": TOOL_NS},
        "spec": spec,
    }))
    .expect("valid McpTool")
}

/// An McpClient with `quota` (JSON, or null) and optional annotations.
pub fn client(name: &str, quota: Value, annotations: &[(&str, &str)]) -> McpClient {
    let mut spec = json!({
        "owner": "alice@example.com",
        "identity": {"issuer": "https://idp.example.com", "clientId": name},
    });
    if !quota.is_null() {
        spec["quota"] = quota;
    }
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "mcpwarden.io/v1alpha1",
        "kind": "McpClient",
        "metadata": {"name": name, "namespace": CLIENT_NS, "annotations": annotations},
        "spec": spec,
    }))
    .expect("valid McpClient")
}

/// An McpPolicy granting `tools` (names or globs) of the McpTool to `clients`.
pub fn policy(
    name: &str,
    clients: &[&str],
    tools: &[&str],
    rate: Option<Value>,
    daily: Option<u64>,
) -> McpPolicy {
    let mut spec = json!({
        "clients": clients.iter().map(|c| json!({"name": c, "namespace": CLIENT_NS})).collect::<Vec<_>>(),
        "tools": [{"toolRef": "payments-api", "names": tools}],
    });
    if let Some(r) = rate {
        spec["rateLimit"] = r;
    }
    if let Some(d) = daily {
        spec["dailyQuota"] = json!(d);
    }
    serde_json::from_value(json!({
        "apiVersion": "mcpwarden.io/v1alpha1",
        "kind": "McpPolicy",
        "metadata": {"name": name, "namespace": TOOL_NS},
        "spec": spec,
    }))
    .expect("valid McpPolicy")
}

pub fn rules(tool: McpTool, clients: Vec<McpClient>, policies: Vec<McpPolicy>) -> RuleSet {
    compile(&Bundle::new([tool], clients, policies)).expect("compiles")
}

pub fn client_ref(name: &str) -> ObjectRef {
    ObjectRef::new(Kind::McpClient, CLIENT_NS, name)
}

pub fn policy_ref(name: &str) -> ObjectRef {
    ObjectRef::new(Kind::McpPolicy, TOOL_NS, name)
}

pub fn tool_ref() -> ObjectRef {
    ObjectRef::new(Kind::McpTool, TOOL_NS, "payments-api")
}

/// A manual clock (the `now` every check takes).
#[derive(Clone, Copy, Debug)]
pub struct Clock(pub Timestamp);

impl Clock {
    pub fn at(text: &str) -> Self {
        Self(text.parse().expect("timestamp"))
    }

    pub fn now(&self) -> Timestamp {
        self.0
    }

    pub fn advance(&mut self, d: Duration) {
        let nanos = i64::try_from(d.as_nanos()).expect("small duration");
        self.0 = self.0.checked_add(nanos.nanoseconds()).expect("in range");
    }
}
