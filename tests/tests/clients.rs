//! Real clients through the sidecar with real tokens: the Python `mcp` SDK and the Inspector CLI,
//! tokens from a real OIDC provider, the official server-everything upstream, and the demo's
//! policies (`examples/everything`).

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{Idp, Proc, oidc_provider, peer_file, repo_root, server_everything};
use mcp_warden_tests::procs::{SidecarAddrs, sidecar};
use serde_json::Value;
use std::process::Command;

const RESOURCE: &str = "http://127.0.0.1:9401/mcp";

struct Stack {
    _upstream: Proc,
    idp: Idp,
    _sidecar: Proc,
    addrs: SidecarAddrs,
    _dir: tempfile::TempDir,
}

/// server-everything ← sidecar (examples/everything, issuer rewritten to the live IdP) ← clients.
fn stack() -> Stack {
    let (upstream, upstream_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let idp = oidc_provider(RESOURCE, 0).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", &idp.issuer);
    std::fs::write(dir.path().join("everything.yaml"), config).unwrap();
    let (sidecar, addrs) = sidecar(&[
        "--config",
        dir.path().join("everything.yaml").to_str().unwrap(),
        "--upstream",
        &upstream_url,
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    Stack {
        _upstream: upstream,
        idp,
        _sidecar: sidecar,
        addrs,
        _dir: dir,
    }
}

impl Stack {
    fn url(&self) -> String {
        format!("{}/mcp", self.addrs.base)
    }

    fn alpha(&self) -> String {
        self.idp
            .token("agent-alpha", "mcp:tools.list mcp:tools.call")
            .unwrap()
    }

    fn beta(&self) -> String {
        self.idp.token("agent-beta", "mcp:tools.list").unwrap()
    }
}

/// Runs `tests/peers/py_client.py` (the Python SDK) and returns its JSON report.
fn python(url: &str, token: Option<&str>, action: &[&str]) -> Value {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(python)
        .arg(repo_root().join("tests/peers/py_client.py"))
        .args([
            "--token",
            token.unwrap_or("-"),
            "--mode",
            "legacy",
            "--timeout",
            "60",
            url,
        ])
        .args(action)
        .output()
        .expect("python runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "py_client printed no JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn tools(report: &Value) -> Vec<String> {
    report["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {report}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn python_sdk_lists_per_client_and_calls_with_real_tokens() {
    let s = stack();
    let alpha = python(&s.url(), Some(&s.alpha()), &["list"]);
    let beta = python(&s.url(), Some(&s.beta()), &["list"]);
    let (alpha, beta) = (tools(&alpha), tools(&beta));
    assert!(
        alpha.contains(&"get-tiny-image".to_owned()) && alpha.contains(&"echo".to_owned()),
        "{alpha:?}"
    );
    assert!(
        !alpha.contains(&"simulate-research-query".to_owned()),
        "undeclared tools are hidden: {alpha:?}"
    );
    assert!(
        beta.len() < alpha.len() && beta.contains(&"echo".to_owned()),
        "alpha {alpha:?} vs beta {beta:?}"
    );
    assert!(
        !beta.contains(&"toggle-simulated-logging".to_owned()),
        "{beta:?}"
    );

    let sum = python(
        &s.url(),
        Some(&s.alpha()),
        &["call", "get-sum", r#"{"a": 2, "b": 3}"#],
    );
    assert_eq!(sum["ok"], true, "{sum}");
    assert!(sum["result"].to_string().contains('5'), "{sum}");
}

#[test]
fn denials_reach_the_python_sdk_as_json_rpc_errors() {
    let s = stack();
    // A tool beta is not granted: answered as an unknown tool.
    let hidden = python(
        &s.url(),
        Some(&s.beta()),
        &["call", "toggle-simulated-logging", "{}"],
    );
    assert_eq!(hidden["error"]["code"], -32602, "{hidden}");
    // Granted, but the token lacks mcp:tools.call: 403 step-up naming every needed scope.
    let step_up = python(&s.url(), Some(&s.beta()), &["call", "get-tiny-image", "{}"]);
    assert_eq!(step_up["error"]["http_status"], 403, "{step_up}");
    let challenge = step_up["error"]["www_authenticate"]
        .as_str()
        .unwrap_or_default();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("mcp:tools.call"),
        "{step_up}"
    );
    // No token: 401 with the PRM challenge.
    let anonymous = python(&s.url(), None, &["list"]);
    assert_eq!(anonymous["error"]["http_status"], 401, "{anonymous}");
    assert!(
        anonymous["error"]["www_authenticate"]
            .as_str()
            .unwrap_or_default()
            .contains("resource_metadata="),
        "{anonymous}"
    );
    // Suspended and expired clients hold valid IdP tokens and are still refused.
    for client in ["agent-gamma", "agent-delta"] {
        let token = s
            .idp
            .token(client, "mcp:tools.list mcp:tools.call")
            .unwrap();
        let refused = python(&s.url(), Some(&token), &["list"]);
        assert_eq!(refused["ok"], false, "{client}: {refused}");
        assert!(
            refused["error"]["http_status"]
                .as_u64()
                .is_some_and(|s| s == 403 || s == 401),
            "{client}: {refused}"
        );
    }
}

#[test]
fn progress_notifications_stream_through_before_the_result() {
    let s = stack();
    let report = python(
        &s.url(),
        Some(&s.alpha()),
        &[
            "progress",
            "trigger-long-running-operation",
            r#"{"duration": 2, "steps": 4}"#,
        ],
    );
    assert_eq!(report["ok"], true, "{report}");
    let times: Vec<f64> = report["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["t_ms"].as_f64().unwrap())
        .collect();
    let result_at = report["result_t_ms"].as_f64().unwrap();
    assert!(times.len() >= 3, "progress notifications arrive: {report}");
    assert!(
        times.iter().all(|t| *t < result_at),
        "each before the result: {report}"
    );
    // Streamed as they happen (about 500 ms apart), not buffered until the end.
    assert!(
        result_at - times[0] > 1000.0,
        "the first notification arrived long before the result: {report}"
    );
}

#[test]
fn inspector_cli_lists_and_calls() {
    let s = stack();
    let node = peer_file("PEERS_NODE22").unwrap_or_else(|e| panic!("{e}"));
    let inspector = peer_file("PEERS_INSPECTOR_JS").unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&str]| {
        let out = Command::new(&node)
            .arg(&inspector)
            .args(["--cli", &s.url(), "--transport", "http", "--header"])
            .arg(format!("Authorization: Bearer {}", s.alpha()))
            .args(args)
            .output()
            .expect("the Inspector CLI runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, listed) = run(&["--method", "tools/list"]);
    assert_eq!(code, Some(0), "{listed}");
    assert!(
        listed.contains("get-tiny-image") && !listed.contains("simulate-research-query"),
        "{listed}"
    );
    let (code, called) = run(&[
        "--method",
        "tools/call",
        "--tool-name",
        "get-sum",
        "--tool-arg",
        "a=2",
        "b=3",
    ]);
    assert_eq!(code, Some(0), "{called}");
    assert!(called.contains("5"), "{called}");
}
