//! Smoke test of the bench pieces together, in a few seconds: the `bench-upstream` binary, the
//! static issuer, a small generated policy set with RS256 and ES256 tokens, and the sidecar's
//! proxy (in process, audit on) in front: calls with both tokens go through, a forged one does
//! not, the audit file sink gets the records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_warden_bench::{audit_load, fixture, issuer, upstream};
use mcp_warden_sidecar::{
    audit::{AuditConfig, Auditor},
    auth::Authenticator,
    metrics::Metrics,
    proxy::{self, Shared},
    quota::Quotas,
    settings::Settings,
    source::file::{Selection, load_config},
    state::{Active, Live},
};
use mcp_warden_test_support::Proc;
use serde_json::Value;
use std::{process::Command, sync::Arc, time::Duration};

/// The upstream binary (killed on drop) and its MCP URL, once it printed its address.
fn start_upstream() -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench-upstream"));
    cmd.args(["--listen", "127.0.0.1:0", "--tools", "20"]);
    let (proc, addr) = Proc::spawn("bench-upstream", cmd, Duration::from_secs(30), |line| {
        line.trim().strip_prefix("listening ").map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (proc, format!("http://{addr}/mcp"))
}

/// POSTs `body` with `token` (blocking; run it off the runtime). Status and body text.
fn post_text(url: &str, token: &str, body: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut reply = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .send(body)
        .unwrap();
    let status = reply.status().as_u16();
    let text = reply
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

/// As [`post_text`], the body read as JSON.
fn post(url: &str, token: &str, body: &str) -> (u16, Value) {
    let (status, text) = post_text(url, token, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_issuers_tokens_go_through_the_full_chain_to_the_bench_upstream() {
    let (_upstream, upstream_url) = start_upstream();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let params = fixture::Params::on_free_ports(10, 20, 20, &url, &upstream_url);
    fixture::generate(dir.path(), &params).unwrap();
    let issuers: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("issuers.json")).unwrap())
            .unwrap();
    tokio::spawn(async move { issuer::serve(&issuers).await.unwrap() });

    let (bundle, rules) = load_config(&dir.path().join("config"), &Selection::OnlyTool).unwrap();
    assert_eq!(rules.clients.len(), 10);
    let live = Arc::new(Live::default());
    live.install(Active::new(rules, bundle));
    let audit_cfg = audit_load::write_config(&dir.path().join("audit"), "durable").unwrap();
    let audit_cfg = AuditConfig::from_yaml(&std::fs::read_to_string(audit_cfg).unwrap()).unwrap();
    let metrics = Metrics::new();
    let shared = Arc::new(Shared {
        live,
        auth: Authenticator::new(),
        settings: Settings::default(),
        quotas: Quotas::new(Default::default(), metrics.registry()).unwrap(),
        audit: Some(Auditor::start(&audit_cfg, metrics.registry()).unwrap()),
        metrics,
        usage: None,
        upstream_auth: Default::default(),
    });
    tokio::spawn(proxy::serve(listener, None, shared, std::future::pending()));

    let tokens: Vec<String> = std::fs::read_to_string(dir.path().join("tokens.txt"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"smoke"}}}"#;
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    // The two shapes of issue #21: a 100 KiB result, and 100 progress events before the answer.
    let big = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"smoke","shape":"big"}}}"#;
    let progress = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"message":"smoke","shape":"progress"},"_meta":{"progressToken":"p4"}}}"#;
    let forged = format!("{}x", tokens[0]);
    let (rs, es, listed, bad, (big, progress)) = tokio::task::spawn_blocking(move || {
        (
            post(&url, &tokens[0], call),
            post(&url, &tokens[1], call),
            post(&url, &tokens[0], list),
            post(&url, &forged, call),
            (
                post(&url, &tokens[0], big),
                post_text(&url, &tokens[0], progress),
            ),
        )
    })
    .await
    .unwrap();
    for (alg, (status, body)) in [("RS256", &rs), ("ES256", &es)] {
        assert_eq!(*status, 200, "{alg}: {body}");
        assert_eq!(
            body["result"]["content"][0]["text"], "smoke",
            "{alg}: {body}"
        );
    }
    assert_eq!(listed.0, 200, "{}", listed.1);
    let names: Vec<&str> = listed.1["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(
        names.len() < 20,
        "tools/list is filtered to the client's grants: {names:?}"
    );
    assert_eq!(bad.0, 401, "a forged signature is refused: {}", bad.1);
    assert_eq!(big.0, 200);
    assert_eq!(
        big.1["result"]["content"][0]["text"].as_str().map(str::len),
        Some(upstream::BIG_TEXT_BYTES),
        "the 100 KiB result arrives whole"
    );
    assert_eq!(progress.0, 200, "{}", progress.1);
    let events: Vec<Value> = progress
        .1
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let notes = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress" && e["params"]["progressToken"] == "p4")
        .count();
    assert_eq!(notes, upstream::PROGRESS_EVENTS as usize, "{}", progress.1);
    assert_eq!(events.last().unwrap()["id"], 4, "the answer comes last");

    let sink = dir.path().join("audit/sink");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let records = std::fs::read_dir(&sink)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|t| t.matches("\"echo\"").count())
            .sum::<usize>();
        if records >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit file sink has no records of the two calls"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
