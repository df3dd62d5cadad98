//! Every request and notification method of the MCP schemas has a rule in the gate
//! (`proxy::methods`): read from the schema code the SDK packages ship, not from a hand-written
//! list, so a method a new revision adds fails here until it gets a rule.
//!
//! | revision | source |
//! | --- | --- |
//! | 2025-06-18 | Python `mcp/types.py` of `mcp==1.22.0` (source only, `$PEERS_MCP_2025_06_18`) |
//! | 2025-11-25 | Python `mcp_types/_v2025_11_25` (`mcp==2.3.0`) |
//! | 2026-07-28 | Python `mcp_types/_v2026_07_28` |
//! | the TypeScript SDK's current draft | `@modelcontextprotocol/sdk` 1.32.2 `spec.types.d.ts` |

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use mcp_warden_sidecar::proxy::methods::Rule;
use proxy_support::peer;
use std::{collections::BTreeSet, path::Path};

/// Every `method` literal of a schema source: `method: Literal["x"]` (Python) or
/// `method: "x"` (TypeScript declarations).
fn methods(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make peers`)", path.display()));
    let mut found = BTreeSet::new();
    for prefix in ["method: Literal[\"", "method: \""] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let end = rest.find('"').expect("a closing quote");
            found.insert(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    found
}

#[test]
fn every_schema_method_has_a_rule() {
    let venv = peer("PEERS_VENV");
    let site = std::fs::read_dir(venv.join("lib"))
        .expect("the venv's lib")
        .filter_map(Result::ok)
        .map(|d| d.path().join("site-packages/mcp_types"))
        .find(|p| p.is_dir())
        .expect("mcp_types in the peers' venv (pip install mcp==2.3.0: run `make peers`)");
    // mcp 1.x's types.py is one revision's schema; 1.23.0 still declares 2025-06-18 but adds
    // 2025-11-25's tasks, so a pin past 1.22.0 fails on them.
    let v2025_06_18 = peer("PEERS_MCP_2025_06_18").join("mcp/types.py");
    let text = std::fs::read_to_string(&v2025_06_18)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make peers`)", v2025_06_18.display()));
    assert!(
        text.contains("\nLATEST_PROTOCOL_VERSION = \"2025-06-18\"\n"),
        "{}: not the 2025-06-18 schema",
        v2025_06_18.display()
    );
    let later: Vec<String> = methods(&v2025_06_18)
        .into_iter()
        .filter(|m| m.starts_with("tasks/") || m.contains("/tasks/"))
        .collect();
    assert!(
        later.is_empty(),
        "{}: has 2025-11-25's {later:?}",
        v2025_06_18.display()
    );
    let node_modules = peer("PEERS_NODE_MODULES");
    let sources = [
        v2025_06_18,
        site.join("_v2025_11_25/__init__.py"),
        site.join("_v2026_07_28/__init__.py"),
        node_modules.join("@modelcontextprotocol/sdk/dist/esm/spec.types.d.ts"),
    ];
    let mut all = BTreeSet::new();
    for source in &sources {
        let found = methods(source);
        assert!(
            found.len() >= 20 && found.contains("tools/call"),
            "{}: only {found:?}: the schema source changed shape",
            source.display()
        );
        all.extend(found);
    }
    let without: Vec<&String> = all.iter().filter(|m| !Rule::is_known(m)).collect();
    assert!(without.is_empty(), "methods without a rule: {without:?}");
    // Spot checks that the reading found what the revisions define.
    for m in [
        "initialize",
        "resources/subscribe",
        "tasks/result",
        "notifications/tasks/status",
        "server/discover",
        "subscriptions/listen",
        "notifications/subscriptions/acknowledged",
    ] {
        assert!(all.contains(m), "{m} not read from {sources:?}");
    }
}

/// A method without a rule, or a server's method sent by a client, is answered −32601 and never
/// forwarded; `unknownMethods: Allow` forwards it.
#[tokio::test]
async fn unknown_and_server_only_methods_are_refused_unless_allowed() {
    use proxy_support::{Mock, Proxy, everything_rules, post, settings};
    let mock = Mock::empty_results().await;
    let proxy = Proxy::anonymous(&mock.url, "demo/agent-alpha").await;
    for (body, status) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"vendor/exfiltrate"}"#,
            200,
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"method":"sampling/createMessage","params":{}}"#,
            200,
        ),
        (
            r#"{"jsonrpc":"2.0","id":3,"method":"Tools/Call","params":{"name":"echo"}}"#,
            200,
        ),
        (r#"{"jsonrpc":"2.0","method":"notifications/vendor"}"#, 400),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            400,
        ),
    ] {
        let reply = post(&proxy.url(), &[], body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.text());
        assert_eq!(reply.json()["error"]["code"], -32601, "{body}");
    }
    assert!(
        mock.requests().is_empty(),
        "nothing undecided was forwarded"
    );
    let ping = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
    )
    .await;
    assert_eq!(ping.status, 200);
    assert_eq!(mock.requests().len(), 1);

    let allowing = Proxy::start(
        settings(&mock.url, "demo/agent-alpha"),
        Some(everything_rules(|t| {
            t.replace(
                "  defaultAction: Deny\n",
                "  defaultAction: Deny\n  unknownMethods: Allow\n",
            )
        })),
    )
    .await;
    let reply = post(
        &allowing.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":5,"method":"vendor/extension"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["result"], serde_json::json!({}));
    assert_eq!(mock.requests().len(), 2);
}
