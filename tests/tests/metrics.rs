//! The sidecar's `/metrics` is valid Prometheus exposition that `promtool check metrics`
//! accepts (naming, help, types), and its admin endpoints say when it is ready.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{peer_file, repo_root, server_everything};
use mcp_warden_tests::{mcp::Session, procs::sidecar};
use serde_json::json;
use std::{io::Write, process::Command};

fn get(url: &str) -> (u16, String) {
    let mut response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap(),
    )
}

#[test]
fn metrics_pass_promtool_and_count_decisions() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let config = repo_root().join("examples/everything");
    let (_sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &upstream,
        "--anonymous-client",
        "demo/agent-beta",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&format!("{}/ready", addrs.admin)).0, 200);
    assert_eq!(get(&format!("{}/live", addrs.admin)).0, 200);
    let mut session = Session::connect(&format!("{}/mcp", addrs.base), None).unwrap();
    assert!(
        session
            .call_tool("echo", json!({"message": "hi"}))
            .unwrap()
            .is_success()
    );
    assert!(
        !session
            .call_tool("toggle-simulated-logging", json!({}))
            .unwrap()
            .is_success()
    );

    let (status, text) = get(&format!("{}/metrics", addrs.admin));
    assert_eq!(status, 200);
    for expected in [
        r#"mcp_warden_requests_total{decision="allowed",method="tools/call"} 1"#,
        r#"mcp_warden_requests_total{decision="not_granted",method="tools/call"} 1"#,
        "mcp_warden_ready 1",
        "mcp_warden_upstream_request_duration_seconds_bucket",
        "mcp_warden_config_info{version=\"sha256:",
    ] {
        assert!(
            text.contains(expected),
            "{expected} missing from /metrics:\n{text}"
        );
    }
    let promtool = peer_file("PEERS_PROMTOOL").unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
