//! The 2026-07-28 era through the proxy, in front of a Python `mcp` SDK fixture that serves both
//! eras: mirrored headers validated, per-caller lists marked `cacheScope: "private"`, hidden
//! tools unknown, and the Python client's `auto` negotiation (`server/discover`) ending modern.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use mcp_warden_test_support::{peer, repo_root};
use proxy_support::*;
use serde_json::json;
use std::{process::Stdio, time::Duration};

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}"#;

fn modern(method: &str, name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", method.to_owned()),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name.to_owned()));
    }
    headers
}

async fn post_modern(url: &str, headers: &[(&'static str, String)], body: &str) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(url, &headers, body).await
}

#[tokio::test]
async fn modern_requests_are_validated_filtered_and_marked_private() {
    let fixture = PyFixture::start();
    let proxy = Proxy::anonymous(&fixture.url, "demo/agent-beta").await;
    let url = proxy.url();
    let list = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#);
    let reply = post_modern(&url, &modern("tools/list", None), &list).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let result = &reply.answer(&1.into())["result"];
    let names: Vec<&str> = result["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "get-sum"]);
    assert_eq!(result["cacheScope"], "private");
    assert_eq!(result["resultType"], "complete");
    let call = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"a":2,"b":3}},{META}}}}}"#
        )
    };
    let reply = post_modern(
        &url,
        &modern("tools/call", Some("get-sum")),
        &call("get-sum"),
    )
    .await;
    assert_eq!(
        reply.answer(&2.into())["result"]["content"][0]["text"],
        "The sum of 2 and 3 is 5."
    );
    let reply = post_modern(
        &url,
        &modern("tools/call", Some("get-env")),
        &call("get-env"),
    )
    .await;
    assert_eq!(
        reply.json()["error"],
        json!({"code":-32602,"message":"Unknown tool: get-env"})
    );
    // A header that names another tool than the body: refused before any policy decision.
    let reply = post_modern(
        &url,
        &modern("tools/call", Some("get-sum")),
        &call("get-env"),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()["error"]["code"].clone()),
        (400, json!(-32020))
    );
    let reply = post_modern(&url, &modern("tools/call", None), &call("get-sum")).await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()["error"]["code"].clone()),
        (400, json!(-32020))
    );
    // server/discover goes through to the upstream.
    let discover =
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"server/discover","params":{{{META}}}}}"#);
    let reply = post_modern(&url, &modern("server/discover", None), &discover).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.answer(&3.into())["result"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_negotiates_the_modern_era_through_the_proxy() {
    let python = peer("PEERS_PYTHON");
    let client = repo_root().join("tests/peers/reference/mcp-peers/py_client.py");
    let fixture = PyFixture::start();
    let proxy = Proxy::anonymous(&fixture.url, "demo/agent-beta").await;
    let run = tokio::process::Command::new(python)
        .arg(client)
        .args([
            proxy.url().as_str(),
            "-",
            "get-sum",
            r#"{"a":2,"b":3}"#,
            "auto",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("protocol_version: 2026-07-28"), "{out}");
    assert!(out.contains("tools: ['echo', 'get-sum']"), "{out}");
    assert!(out.contains("The sum of 2 and 3 is 5."), "{out}");
}
