//! How audit records end when a call does not simply get its answer, and the refusals that are
//! not readable POSTs: `proxy::serve` in-process with an `--audit-dir` layout, in front of a
//! controllable upstream on 127.0.0.1 (one that never answers, or holds its stream open).
//!
//! - a call its client cancels (`notifications/cancelled`) ends `cancelled` (that another caller
//!   cannot cancel it is a unit test of `proxy::audit::InFlight`);
//! - an upstream that sends no response headers in time ends `timed_out` (504);
//! - GET/DELETE refusals, refusals before any configuration is in force, and lifecycle refusals
//!   (a suspended McpClient, with its name and owner as the actor) each get a `denied` record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_support;
mod proxy_support;

use audit_support::outcome;
use mcp_warden_sidecar::audit::{AuditConfig, Auditor, Outcome};
use mcp_warden_test_support::{eventually_async, server_everything};
use proxy_support::*;
use serde_json::{Value, json};
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

const BETA: &str = "demo/agent-beta";

/// Waits up to 30 s: a tokenless refusal comes with the tally's flush, every 10 s (proxy::tally).
async fn wait_records(dir: &Path, n: usize) -> Vec<Value> {
    let records = eventually_async("the records", Duration::from_secs(30), || {
        let r = audit_support::call_records(dir);
        (r.len() >= n).then_some(r)
    })
    .await;
    for r in &records {
        let errors = audit_support::schema_errors(r);
        assert!(errors.is_empty(), "{errors:?}\n{r:#}");
    }
    records
}

fn auditor(dir: &Path) -> Auditor {
    Auditor::start(&AuditConfig::in_dir(dir), &prometheus::Registry::new()).unwrap()
}

fn call(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "get-sum", "arguments": {"a": 1, "b": 2}}})
    .to_string()
}

fn cancelled(id: u64) -> String {
    json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
           "params": {"requestId": id, "reason": "the user gave up"}})
    .to_string()
}

/// An upstream that holds every `tools/call` open on an SSE stream and accepts notifications.
async fn holding_upstream() -> (
    Mock,
    Arc<Mutex<Vec<futures::channel::mpsc::Sender<bytes::Bytes>>>>,
) {
    let senders: Arc<Mutex<Vec<_>>> = Arc::default();
    let held = senders.clone();
    let mock = Mock::start(move |seen| {
        if String::from_utf8_lossy(&seen.body).contains("notifications/") {
            let mut r = http::Response::new(body(""));
            *r.status_mut() = http::StatusCode::ACCEPTED;
            return r;
        }
        let (tx, body) = channel_body();
        held.lock().unwrap().push(tx);
        let mut r = http::Response::new(body);
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        r
    })
    .await;
    (mock, senders)
}

#[tokio::test]
async fn a_call_its_client_cancels_is_recorded_as_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (mock, _senders) = holding_upstream().await;
    let proxy = Proxy::start_audited(
        settings(&mock.url, BETA),
        Some(everything_rules(|t| t)),
        None,
        Some(auditor(&dir)),
    )
    .await;
    let headers: Vec<(&str, &str)> = POST.to_vec();
    let held = send(http::Method::POST, &proxy.url(), &headers, call(7)).await;
    assert_eq!(held.status(), 200);
    let note = send(http::Method::POST, &proxy.url(), &headers, cancelled(7)).await;
    assert_eq!(note.status(), 202, "the cancellation is forwarded");
    drop(held);
    let records = wait_records(&dir, 2).await;
    assert_eq!(outcome(&records[0]), Outcome::Forwarding.as_str());
    assert_eq!(
        outcome(&records[1]),
        Outcome::Cancelled.as_str(),
        "{:#}",
        records[1]
    );
    assert_eq!(
        records[1]["unmapped"]["mcp_warden"]["call_uid"],
        records[0]["unmapped"]["mcp_warden"]["call_uid"]
    );
}

#[tokio::test]
async fn an_upstream_silent_past_the_timeout_is_recorded_as_timed_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", silent.local_addr().unwrap());
    let held: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            keep.lock().unwrap().push(stream);
        }
    });
    let mut s = settings(&url, BETA);
    s.upstream_timeout = Duration::from_millis(500);
    let proxy =
        Proxy::start_audited(s, Some(everything_rules(|t| t)), None, Some(auditor(&dir))).await;
    let reply = post(&proxy.url(), &[], &call(3)).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    let records = wait_records(&dir, 2).await;
    assert_eq!(
        outcome(&records[1]),
        Outcome::TimedOut.as_str(),
        "{:#}",
        records[1]
    );
    assert_eq!(records[1]["http_response"]["code"], 504);
}

#[tokio::test]
async fn refusals_that_are_not_readable_posts_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let audit = auditor(&dir);
    // Not ready: nothing in force yet.
    let proxy = Proxy::start_audited(
        settings(&everything_url, BETA),
        None,
        None,
        Some(audit.clone()),
    )
    .await;
    assert_eq!(post(&proxy.url(), &[], &call(1)).await.status, 503);
    // GET and DELETE with a token that does not verify.
    proxy.live.install(everything_rules(|t| t));
    let bad = [("authorization", "Bearer not-a-jwt")];
    for method in [http::Method::GET, http::Method::DELETE] {
        let mut headers = bad.to_vec();
        headers.push(("accept", "text/event-stream"));
        let r = send(method, &proxy.url(), &headers, String::new()).await;
        assert_eq!(r.status(), 401);
    }
    // A suspended McpClient: refused, and the record names it and its owner.
    proxy.live.install(everything_rules(|t| {
        t.replace(
            "  owner: bob@example.com\n",
            "  owner: bob@example.com\n  suspended: true\n",
        )
    }));
    let r = post(&proxy.url(), &[], &call(2)).await;
    assert_eq!(r.status, 403, "{}", r.text());

    // The refusals of callers nobody could identify (no configuration yet, or no valid token)
    // are counted, not recorded one by one: one record per reason, with `count`, comes with the
    // tally's next flush (every 10 s).
    let records = wait_records(&dir, 3).await;
    let mcp = |r: &Value, k: &str| r["unmapped"]["mcp_warden"][k].clone();
    assert!(
        records.iter().all(|r| outcome(r) == "denied"),
        "{records:#?}"
    );
    let by_reason = |reason: &str| {
        records
            .iter()
            .find(|r| mcp(r, "decision")["reason"] == reason)
            .unwrap_or_else(|| panic!("no {reason} record: {records:#?}"))
    };
    let not_ready = by_reason("not_ready");
    assert_eq!(not_ready["count"], 1, "{not_ready:#}");
    assert_eq!(not_ready["http_response"]["code"], 503, "{not_ready:#}");
    let suspended = by_reason("suspended");
    let actor = suspended["actor"]["user"]["name"].as_str().unwrap();
    assert!(actor.ends_with("agent-beta"), "{suspended:#}");
    assert_eq!(
        mcp(suspended, "client")["owner"],
        "bob@example.com",
        "{suspended:#}"
    );
    assert_eq!(
        mcp(suspended, "decision")["reason"],
        "suspended",
        "{suspended:#}"
    );
    // One record per HTTP request, its body unread.
    assert_eq!(suspended["api"]["operation"], "POST", "{suspended:#}");
    let tallied = by_reason("unauthenticated");
    assert_eq!(tallied["count"], 2, "{tallied:#}");
    assert_eq!(
        mcp(tallied, "decision")["reason"],
        "unauthenticated",
        "{tallied:#}"
    );
    assert_eq!(tallied["http_response"]["code"], 401, "{tallied:#}");
    assert!(
        mcp(tallied, "decision")["detail"]
            .as_str()
            .is_some_and(|d| d.contains("(invalid)")),
        "{tallied:#}"
    );
}
