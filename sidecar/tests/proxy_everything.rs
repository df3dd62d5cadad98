//! The proxy in front of the official MCP test server, `@modelcontextprotocol/server-everything`
//! (installed by `make peers`), with the `examples/everything` configuration and tokenless test
//! principals (`Settings::anonymous_client`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use http::Method;
use mcp_warden_test_support::server_everything;
use proxy_support::*;
use serde_json::{Value, json};
use std::time::Duration;

const ALPHA: &str = "demo/agent-alpha";
const BETA: &str = "demo/agent-beta";

/// What `examples/everything` grants agent-alpha (full-access) and agent-beta (basic-tools).
fn granted(client: &str, tool: &str) -> bool {
    match client {
        ALPHA => {
            tool == "echo"
                || tool == "gzip-file-as-resource"
                || ["get-", "trigger-", "toggle-"]
                    .iter()
                    .any(|p| tool.starts_with(p))
        }
        _ => ["echo", "get-sum", "get-tiny-image"].contains(&tool),
    }
}

#[tokio::test]
async fn tools_list_is_filtered_per_client_in_upstream_order() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let direct_session = Session::open(&everything_url, "2025-11-25").await;
    let all = tool_names(&everything_url, &direct_session).await;
    assert!(
        all.contains(&"get-env".to_owned()) && all.contains(&"echo".to_owned()),
        "{all:?}"
    );
    for client in [ALPHA, BETA] {
        let proxy = Proxy::anonymous(&everything_url, client).await;
        let session = Session::open(&proxy.url(), "2025-11-25").await;
        let listed = tool_names(&proxy.url(), &session).await;
        let expected: Vec<String> = all.iter().filter(|t| granted(client, t)).cloned().collect();
        assert_eq!(listed, expected, "{client}");
        assert!(
            listed.len() < all.len(),
            "{client} sees fewer tools than exist"
        );
    }
}

#[tokio::test]
async fn the_surviving_tool_objects_are_untouched() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let direct_session = Session::open(&everything_url, "2025-11-25").await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let direct = post(&everything_url, &direct_session.headers(), body)
        .await
        .answer(&1.into());
    let proxy = Proxy::anonymous(&everything_url, BETA).await;
    let session = Session::open(&proxy.url(), "2025-11-25").await;
    let reply = post(&proxy.url(), &session.headers(), body).await;
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    assert_eq!(reply.header("x-accel-buffering"), Some("no"));
    let proxied = reply.answer(&1.into());
    for tool in proxied["result"]["tools"].as_array().unwrap() {
        let original = direct["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == tool["name"])
            .unwrap();
        assert_eq!(tool, original);
    }
}

#[tokio::test]
async fn a_hidden_tool_is_answered_as_an_unknown_tool() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, BETA).await;
    let session = Session::open(&proxy.url(), "2025-11-25").await;
    for tool in ["get-env", "simulate-research-query", "no-such-tool"] {
        let body = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":tool,"arguments":{}}});
        let reply = post(&proxy.url(), &session.headers(), &body.to_string()).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            json!({"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":format!("Unknown tool: {tool}")}})
        );
    }
    // A granted tool goes through.
    let body = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":2,"b":3}}}"#;
    let reply = post(&proxy.url(), &session.headers(), body).await;
    let text = reply.answer(&6.into())["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains('5'), "{text}");
}

#[tokio::test]
async fn progress_notifications_stream_before_the_result() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, ALPHA).await;
    let session = Session::open(&proxy.url(), "2025-11-25").await;
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":2,"steps":4},"_meta":{"progressToken":"p-1"}}}"#;
    let mut headers = POST.to_vec();
    headers.extend(session.headers());
    let response = send(Method::POST, &proxy.url(), &headers, body).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let frames = read_timed(response, Duration::from_secs(20)).await;
    // Message arrival times, from the frames (an event can span frames).
    let mut arrivals = Vec::new();
    let mut pending = String::new();
    for (at, bytes) in &frames {
        pending.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            for data in sse_data(event.as_bytes())
                .into_iter()
                .filter(|d| !d.is_empty())
            {
                arrivals.push((*at, serde_json::from_str::<Value>(&data).unwrap()));
            }
        }
    }
    let progress: Vec<Duration> = arrivals
        .iter()
        .filter(|(_, m)| m["method"] == "notifications/progress")
        .map(|(at, m)| {
            assert_eq!(m["params"]["progressToken"], "p-1");
            *at
        })
        .collect();
    let result_at = arrivals
        .iter()
        .find(|(_, m)| m["id"] == 9 && m.get("result").is_some())
        .map(|(at, _)| *at);
    let result_at = result_at.unwrap_or_else(|| panic!("no result in {arrivals:?}"));
    assert_eq!(progress.len(), 4, "{arrivals:?}");
    assert!(
        progress.iter().all(|p| *p < result_at),
        "progress before the result: {progress:?} vs {result_at:?}"
    );
    // Streamed as they happen (one every ~0.5 s), not buffered until the end.
    assert!(
        result_at - progress[0] >= Duration::from_millis(1200),
        "the first progress event arrived {:?} before the result",
        result_at - progress[0]
    );
    assert!(
        progress[3] - progress[0] >= Duration::from_millis(1000),
        "{progress:?}"
    );
}

#[tokio::test]
async fn a_session_answers_only_its_principal() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, ALPHA).await;
    let session = Session::open(&proxy.url(), "2025-11-25").await;
    assert!(!tool_names(&proxy.url(), &session).await.is_empty());
    // Another principal: same McpClient name, another OAuth client id.
    proxy.live.install(everything_rules(|t| {
        t.replace("clientId: agent-alpha", "clientId: agent-alpha-2")
    }));
    let reply = post(
        &proxy.url(),
        &session.headers(),
        r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#,
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.json(),
        json!({"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}})
    );
    let note = post(
        &proxy.url(),
        &session.headers(),
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
    )
    .await;
    assert_eq!(note.status, 404);
    for method in [Method::GET, Method::DELETE] {
        let mut headers = vec![("accept", "text/event-stream")];
        headers.extend(session.headers());
        let reply = call(method.clone(), &proxy.url(), &headers, "").await;
        assert_eq!(reply.status, 404, "{method}");
        assert_eq!(reply.json()["error"]["code"], -32001);
    }
    // Its owner still has it.
    proxy.live.install(everything_rules(|t| t));
    assert!(!tool_names(&proxy.url(), &session).await.is_empty());
}

#[tokio::test]
async fn get_streams_and_delete_pass_through() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, ALPHA).await;
    let session = Session::open(&proxy.url(), "2025-11-25").await;
    let mut headers = vec![("accept", "text/event-stream")];
    headers.extend(session.headers());
    let stream = send(Method::GET, &proxy.url(), &headers, "").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    assert_eq!(stream.headers()["x-accel-buffering"], "no");
    drop(stream);
    let deleted = call(Method::DELETE, &proxy.url(), &session.headers(), "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    // The session ended: the proxy forgot it too and answers 404 itself, as the spec wants
    // for a terminated session (server-everything answers 400 directly).
    let after = post(
        &proxy.url(),
        &session.headers(),
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(after.status, 404, "{}", after.text());
    assert_eq!(after.json()["error"]["code"], -32001);
}

#[tokio::test]
async fn suspended_and_expired_clients_are_refused_on_every_request() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    for (client, reason) in [
        ("demo/agent-gamma", "suspended"),
        ("demo/agent-delta", "expired"),
    ] {
        let proxy = Proxy::anonymous(&everything_url, client).await;
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let reply = post(&proxy.url(), &[], init).await;
        assert_eq!(reply.status, 403, "{client}");
        assert_eq!(
            reply.header("www-authenticate"),
            None,
            "no step-up: more scope cannot help"
        );
        let body = reply.json();
        assert_eq!(body["id"], Value::Null, "refused before the body is read");
        assert_eq!(body["error"]["code"], -31004);
        assert_eq!(body["error"]["data"]["reason"], reason);
        assert_eq!(
            body["error"]["data"]["client"],
            format!("McpClient/{client}")
        );
        let get = call(
            Method::GET,
            &proxy.url(),
            &[("accept", "text/event-stream")],
            "",
        )
        .await;
        assert_eq!(get.status, 403);
    }
}

#[tokio::test]
async fn a_2025_03_26_batch_with_a_denied_call_is_refused_whole() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, BETA).await;
    let session = Session::open(&proxy.url(), "2025-03-26").await;
    assert_eq!(session.version, "2025-03-26");
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}},
                    {"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"x","progress":1}},
                    {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get-env","arguments":{}}}]"#;
    let reply = post(&proxy.url(), &session.headers(), batch).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!([
            {"jsonrpc":"2.0","id":1,"error":{"code":-31005,"message":"Not forwarded: another request in this batch was denied","data":{"reason":"batch_not_forwarded"}}},
            {"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"Unknown tool: get-env"}}
        ])
    );
    // A batch whose calls are all allowed goes through, every element answered by the upstream.
    let batch = r#"[{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}},
                    {"jsonrpc":"2.0","id":4,"method":"tools/list"}]"#;
    let reply = post(&proxy.url(), &session.headers(), batch).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.answer(&3.into())["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hi")
    );
    let listed: Vec<String> = reply.answer(&4.into())["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!listed.is_empty());
    assert!(
        listed.iter().all(|t| granted(BETA, t)),
        "batched tools/list is filtered too: {listed:?}"
    );
}

#[tokio::test]
async fn rebinding_hosts_and_origins_are_refused_loopback_names_pass() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, ALPHA).await;
    let port = proxy.addr.port();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    for bad in [
        vec![("host", "evil.com".to_owned())],
        vec![("origin", "http://evil.com".to_owned())],
        vec![
            ("host", "evil.com".to_owned()),
            ("origin", "http://evil.com".to_owned()),
        ],
    ] {
        let extra: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = post(&proxy.url(), &extra, init).await;
        assert_eq!(reply.status, 403, "{bad:?}");
        let body = reply.json();
        assert_eq!(body["id"], Value::Null, "{bad:?}");
        assert_eq!(body["error"]["code"], -31002);
    }
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let host = format!("{host}:{port}");
        let origin = format!("http://{host}");
        let reply = post(&proxy.url(), &[("host", &host), ("origin", &origin)], init).await;
        assert_eq!(reply.status, 200, "{host}: {}", reply.text());
    }
}

#[tokio::test]
async fn malformed_requests_get_json_rpc_errors_and_the_proxy_keeps_serving() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, ALPHA).await;
    let url = proxy.url();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5 << 20)
    );
    let reply = post(&url, &[], &big).await;
    assert_eq!(
        (
            reply.status.as_u16(),
            reply.json()["error"]["code"].as_i64()
        ),
        (413, Some(-32600))
    );
    let reply = post(&url, &[], "{not json").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], -32700);
    assert_eq!(reply.json()["id"], Value::Null);
    let reply = post(&url, &[], r#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        (
            reply.json()["error"]["code"].clone(),
            reply.json()["id"].clone()
        ),
        (json!(-32600), json!(5))
    );
    let reply = call(
        Method::POST,
        &url,
        &[
            ("content-type", "text/plain"),
            ("accept", "application/json, text/event-stream"),
        ],
        "{}",
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.json()["error"]["code"], -32600);
    // An Accept that allows no answer the server could give: 406 before the body is read.
    let reply = call(
        Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("accept", "text/html"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 406);
    assert_eq!(reply.json()["error"]["code"], -32600);
    let reply = call(Method::PUT, &url, &[], "").await;
    assert_eq!(reply.status, 405);
    // Modern era: the mirrored headers must match the body.
    let modern = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "get-env"),
    ];
    let reply = post(&url, &headers, modern).await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        (
            reply.json()["error"]["code"].clone(),
            reply.json()["id"].clone()
        ),
        (json!(-32020), json!(7))
    );
    // A missing Accept is the upstream's call (406), passed through.
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let reply = call(
        Method::POST,
        &url,
        &[("content-type", "application/json")],
        init,
    )
    .await;
    assert_eq!(reply.status, 406, "{}", reply.text());
    // And well-formed requests still work.
    let session = Session::open(&url, "2025-11-25").await;
    assert!(!tool_names(&url, &session).await.is_empty());
}

#[tokio::test]
async fn prm_is_public_and_the_mcp_path_needs_a_token() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings(&everything_url, ALPHA);
    settings.anonymous_client = None;
    let proxy = Proxy::start(settings, Some(everything_rules(|t| t))).await;
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let reply = call(Method::GET, &proxy.at(path), &[], "").await;
        assert_eq!(reply.status, 200, "{path}");
        let prm = reply.json();
        assert_eq!(prm["resource"], "http://127.0.0.1:9401/mcp");
        assert_eq!(
            prm["authorization_servers"],
            json!(["http://127.0.0.1:9400"])
        );
        assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
        // get-env's mcp:admin (Critical only) is left out: it comes through step-up.
        assert_eq!(
            prm["scopes_supported"],
            json!(["mcp:tools.call", "mcp:tools.list"])
        );
    }
    let reply = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(reply.status, 401);
    // Refused before its body was read: over HTTP/1.1 the client is told to use a new
    // connection (a reused one would be closed under its next request, e.g. the PRM fetch).
    assert_eq!(reply.header("connection"), Some("close"));
    // The challenge names what every caller asks for to begin (`baseScopes`), so a client
    // that follows the spec's scope selection does not ask for everything in scopes_supported.
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            "Bearer resource_metadata=\"http://127.0.0.1:9401/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools.list\""
        )
    );
    assert_eq!(
        (
            reply.json()["id"].clone(),
            reply.json()["error"]["code"].clone()
        ),
        (json!(null), json!(-31001))
    );
    for method in [Method::GET, Method::DELETE] {
        let reply = call(method, &proxy.url(), &[("accept", "text/event-stream")], "").await;
        assert_eq!(reply.status, 401);
        assert!(reply.header("www-authenticate").is_some());
    }
    assert_eq!(
        call(Method::GET, &proxy.at("/elsewhere"), &[], "")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn without_a_configuration_everything_is_503() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(settings(&everything_url, ALPHA), None).await;
    let reply = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["code"], -32603);
    assert_eq!(reply.header("retry-after"), Some("1"));
    let prm = call(
        Method::GET,
        &proxy.at("/.well-known/oauth-protected-resource"),
        &[],
        "",
    )
    .await;
    assert_eq!(prm.status, 503);
    proxy.live.install(everything_rules(|t| t));
    let reply = post(&proxy.url(), &[], r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).await;
    assert_eq!(reply.status, 200);
}
