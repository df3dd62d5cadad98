//! Builders for policy tests (Linkerd's `mk_*` style): small functions that make whole objects.
#![allow(dead_code)]

use jiff::Timestamp;
use mcp_warden_crds::*;
use mcp_warden_policy::{Bundle, Principal, RuleSet, compile};
use std::collections::BTreeMap;

pub const ISSUER: &str = "https://idp.example.com";
pub const RESOURCE: &str = "https://payments.example.com/mcp";

pub fn meta(ns: &str, name: &str) -> kube::core::ObjectMeta {
    kube::core::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

pub fn mk_tool(ns: &str, name: &str, tools: &[(&str, &[&str])]) -> McpTool {
    McpTool {
        metadata: meta(ns, name),
        spec: McpToolSpec {
            owner: "team-payments".into(),
            server: ServerSpec {
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                    ..Default::default()
                }),
                resource: RESOURCE.into(),
                upstream: "http://127.0.0.1:8080/mcp".into(),
            },
            authentication: AuthenticationSpec {
                issuers: vec![IssuerSpec {
                    issuer: ISSUER.into(),
                    algorithms: vec![SigningAlgorithm::RS256],
                    ..Default::default()
                }],
                max_token_lifetime: "1h".into(),
                clock_skew: "30s".into(),
                ..Default::default()
            },
            tools: tools
                .iter()
                .map(|(n, scopes)| ToolSpec {
                    name: n.to_string(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        status: None,
    }
}

pub fn mk_client(ns: &str, name: &str) -> McpClient {
    McpClient {
        metadata: meta(ns, name),
        spec: McpClientSpec {
            owner: "alice@example.com".into(),
            identity: ClientIdentity {
                issuer: Some(ISSUER.into()),
                client_id: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        },
        status: None,
    }
}

pub fn mk_policy(ns: &str, name: &str, clients: &[&str], tool: &str, names: &[&str]) -> McpPolicy {
    McpPolicy {
        metadata: meta(ns, name),
        spec: McpPolicySpec {
            clients: clients
                .iter()
                .map(|c| match c.split_once('/') {
                    Some((ns, n)) => ClientRef {
                        name: n.into(),
                        namespace: Some(ns.into()),
                    },
                    None => ClientRef {
                        name: c.to_string(),
                        namespace: None,
                    },
                })
                .collect(),
            tools: vec![ToolGrant {
                tool_ref: tool.into(),
                names: Some(names.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    }
}

pub fn principal(client_id: &str, scopes: &[&str]) -> Principal {
    Principal {
        issuer: ISSUER.into(),
        subject: Some(format!("sub-{client_id}")),
        client_id: Some(client_id.into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        issued_at: Some(ts("2026-11-24T10:00:00Z")),
    }
}

pub fn rules(tools: Vec<McpTool>, clients: Vec<McpClient>, policies: Vec<McpPolicy>) -> RuleSet {
    compile(&Bundle::new(tools, clients, policies)).expect("compiles")
}
