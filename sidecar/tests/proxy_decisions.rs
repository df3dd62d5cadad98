//! One structured `mcp_warden::decision` event per decision, with the fields audits need and
//! never the token; and the request counter by method and reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use proxy_support::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Collects what the JSON formatter writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn events(&self, target: &str) -> Vec<Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["target"] == target)
            .collect()
    }
}

#[tokio::test]
async fn every_decision_is_logged_once_with_its_fields_and_counted() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(capture.clone())
        .finish();
    // The test runtime is single-threaded, so the proxy's tasks log to this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let mock = Mock::start(|seen| {
        let req: Value = serde_json::from_slice(&seen.body).unwrap();
        respond(
            200,
            &[
                ("content-type", "application/json"),
                ("mcp-session-id", "S-1"),
            ],
            json!({"jsonrpc":"2.0","id":req["id"],"result":{}}).to_string(),
        )
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, "demo/agent-beta").await;
    // The session is the one the upstream issued at initialize (a made-up one is refused).
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    assert_eq!(post(&proxy.url(), &[], init).await.status, 200);
    let session = [("mcp-session-id", "S-1")];
    let call = |tool: &str, id: u32| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        )
    };
    assert_eq!(
        post(&proxy.url(), &session, &call("echo", 1)).await.status,
        200
    );
    assert_eq!(
        post(&proxy.url(), &session, &call("get-env", 2))
            .await
            .json()["error"]["code"],
        -32602
    );
    let unauthenticated = post(
        &proxy.url(),
        &[("authorization", "Bearer secret-token-value")],
        &call("echo", 3),
    )
    .await;
    assert_eq!(unauthenticated.status, 401);

    let events = capture.events("mcp_warden::decision");
    let fields: Vec<&Value> = events.iter().map(|e| &e["fields"]).skip(1).collect();
    assert_eq!(events[0]["fields"]["method"], "initialize");
    assert_eq!(fields.len(), 3, "{fields:#?}");
    assert_eq!(fields[0]["method"], "tools/call");
    assert_eq!(fields[0]["tool"], "echo");
    assert_eq!(fields[0]["client"], "McpClient/demo/agent-beta");
    assert_eq!(fields[0]["reason"], "allowed");
    assert_eq!(fields[0]["decided_by"], "McpPolicy/demo/basic-tools");
    assert_eq!(fields[0]["id"], "1");
    assert_eq!(fields[0]["session"], "S-1");
    assert_eq!(fields[1]["tool"], "get-env");
    assert_eq!(fields[1]["reason"], "not_granted");
    assert_eq!(fields[1]["decided_by"], "McpTool/demo/everything");
    assert_eq!(fields[1]["allowed"], false);
    // A caller without a valid token: its body is never read (no id), and it logs at debug
    // (a flood of them must not flood the log; the tally counts them).
    assert_eq!(fields[2]["reason"], "unauthenticated");
    assert_eq!(fields[2]["kind"], "invalid");
    assert_eq!(fields[2].get("id"), None);
    // Allowed calls are an access log at debug (the audit trail has them); denials warn.
    let levels: Vec<&Value> = events.iter().map(|e| &e["level"]).collect();
    assert_eq!(levels, ["DEBUG", "DEBUG", "WARN", "DEBUG"]);
    let everything_logged = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        !everything_logged.contains("secret-token-value"),
        "the token is never logged"
    );

    let metrics = proxy.metrics.encode();
    for line in [
        r#"mcp_warden_requests_total{decision="allowed",method="tools/call"} 1"#,
        r#"mcp_warden_requests_total{decision="not_granted",method="tools/call"} 1"#,
        // Refused from its headers: the body (and so the method) is never read.
        r#"mcp_warden_requests_total{decision="unauthenticated",method="POST"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.contains(
            "mcp_warden_upstream_request_duration_seconds_count{method=\"tools/call\"} 1"
        ),
        "{metrics}"
    );
}
