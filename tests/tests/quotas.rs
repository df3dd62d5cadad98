//! Quotas end to end through the sidecar binary: a real client sees the 429 as a JSON-RPC
//! error while tools/list keeps working, and two sidecar replicas share one daily budget
//! through a real Redis exactly, following the configured fail mode when Redis dies.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{Proc, free_port, peer_file, repo_root, server_everything};
use mcp_warden_tests::{mcp::Session, procs::sidecar};
use serde_json::{Value, json};
use std::{
    process::Command,
    time::{Duration, Instant},
};

fn config() -> String {
    repo_root()
        .join("tests/fixtures/configs/quota.yaml")
        .display()
        .to_string()
}

fn redis(port: u16) -> Proc {
    let bin = peer_file("PEERS_REDIS_SERVER").unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    Proc::spawn("redis-server", cmd, Duration::from_secs(20), |l| {
        l.contains("Ready to accept connections").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .0
}

fn python(url: &str, action: &[&str]) -> Value {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(python)
        .arg(repo_root().join("tests/peers/py_client.py"))
        .args(["--token", "-", "--mode", "legacy", url])
        .args(action)
        .output()
        .expect("python runs");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_python_sdk_sees_the_429_and_tools_list_is_never_throttled() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let (_sidecar, addrs) = sidecar(&[
        "--config",
        &config(),
        "--upstream",
        &upstream,
        "--anonymous-client",
        "test/slow",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}/mcp", addrs.base);
    for i in 0..3 {
        let ok = python(&url, &["call", "echo", r#"{"message": "hi"}"#]);
        assert_eq!(ok["ok"], true, "call {i} is within the limit: {ok}");
    }
    let throttled = python(&url, &["call", "echo", r#"{"message": "hi"}"#]);
    let error = &throttled["error"];
    assert_eq!(error["http_status"], 429, "{throttled}");
    assert_eq!(
        error["code"], -31029,
        "an application code outside the JSON-RPC range: {throttled}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{throttled}"
    );
    assert!(
        error["retry_after"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "{throttled}"
    );
    assert_eq!(error["data"]["reason"], "client_rate", "{throttled}");
    // initialize, notifications/initialized and tools/list still go through.
    let listed = python(&url, &["list"]);
    assert_eq!(listed["ok"], true, "{listed}");
    assert_eq!(listed["tools"], json!(["echo"]));
}

#[test]
fn two_replicas_share_one_daily_budget_through_redis_and_follow_the_fail_mode() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let redis_port = free_port();
    let mut redis_proc = redis(redis_port);
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let replica = |client: &str| {
        sidecar(&[
            "--config",
            &config(),
            "--upstream",
            &upstream,
            "--anonymous-client",
            client,
            "--redis-url",
            &redis_url,
        ])
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let (_a, a) = replica("test/budgeted");
    let (_b, b) = replica("test/budgeted");

    // 2 × 60 concurrent attempts against a budget of 40: exactly 40 succeed.
    let drive = |base: String| {
        std::thread::spawn(move || {
            let mut session = Session::connect(&format!("{base}/mcp"), None).unwrap();
            let mut allowed = 0;
            for _ in 0..60 {
                let reply = session.call_tool("echo", json!({"message": "x"})).unwrap();
                if reply.is_success() {
                    allowed += 1;
                } else {
                    assert_eq!(reply.status, 429, "{reply:?}");
                }
            }
            allowed
        })
    };
    let (ta, tb) = (drive(a.base.clone()), drive(b.base.clone()));
    let total = ta.join().unwrap() + tb.join().unwrap();
    assert_eq!(
        total, 40,
        "exactly the shared daily budget is allowed across both replicas"
    );

    // Redis dies: fail-closed answers 503; Redis returns: calls go through again by themselves.
    let (_c, c) = replica("test/roomy");
    let mut session = Session::connect(&format!("{}/mcp", c.base), None).unwrap();
    assert!(
        session
            .call_tool("echo", json!({"message": "x"}))
            .unwrap()
            .is_success()
    );
    redis_proc.kill();
    let reply = session.call_tool("echo", json!({"message": "x"})).unwrap();
    assert_eq!(
        reply.status, 503,
        "fail-closed while Redis is down: {reply:?}"
    );
    let _redis_again = redis(redis_port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !session
        .call_tool("echo", json!({"message": "x"}))
        .unwrap()
        .is_success()
    {
        assert!(
            Instant::now() < deadline,
            "no recovery within 10 s of Redis coming back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
