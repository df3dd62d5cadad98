//! The audit trail wired into the proxy: `proxy::serve` in-process in front of the real
//! `@modelcontextprotocol/server-everything` (or a mock), with the `examples/everything`
//! configuration, anonymous test clients and an `--audit-dir` layout in a tempdir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_support;
mod proxy_support;

use audit_support::outcome;
use mcp_warden_sidecar::audit::{AuditConfig, Auditor, Outcome, Redaction};
use mcp_warden_test_support::{eventually_async, server_everything};
use proxy_support::*;
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

const BETA: &str = "demo/agent-beta";
const SECRET: &str = "top-secret-echo-text-4711";

fn tools_call(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

fn call_uid(r: &Value) -> &str {
    r["unmapped"]["mcp_warden"]["call_uid"].as_str().unwrap()
}

#[tokio::test]
async fn every_call_and_refusal_is_recorded_once_redacted_and_valid() {
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let auditor = Auditor::start(&AuditConfig::in_dir(&dir), &prometheus::Registry::new()).unwrap();
    let proxy = Proxy::start_audited(
        settings(&everything_url, BETA),
        Some(everything_rules(|t| t)),
        None,
        Some(auditor.clone()),
    )
    .await;
    let session = Session::open(&proxy.url(), "2025-11-25").await;
    let mut h = session.headers();
    h.push((
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));

    // Allowed: echo (its /message is redacted) and get-sum.
    let echo = post(
        &proxy.url(),
        &h,
        &tools_call(11, "echo", json!({"message": SECRET})),
    )
    .await;
    assert_eq!(echo.status, 200, "{}", echo.text());
    assert!(
        echo.answer(&11.into())["result"]
            .to_string()
            .contains(SECRET),
        "{}",
        echo.text()
    );
    let sum = post(
        &proxy.url(),
        &h,
        &tools_call(12, "get-sum", json!({"a": 2, "b": 3})),
    )
    .await;
    assert_eq!(sum.status, 200, "{}", sum.text());
    assert!(sum.answer(&12.into()).get("result").is_some());
    // Denied: a tool agent-beta is not granted (answered as an unknown tool).
    let hidden = post(&proxy.url(), &h, &tools_call(13, "get-env", json!({}))).await;
    assert_eq!(hidden.answer(&13.into())["error"]["code"], -32602);
    // Refused: a token the proxy cannot verify.
    let bearer = format!("Bearer {}", audit_support::BEARER);
    let mut with_token = h.clone();
    with_token.push(("authorization", bearer.as_str()));
    let unauth = post(
        &proxy.url(),
        &with_token,
        &tools_call(14, "echo", json!({"message": "x"})),
    )
    .await;
    assert_eq!(unauth.status, 401, "{}", unauth.text());

    // 30 s: the tokenless refusal comes with the tally's flush, every 10 s (proxy::tally).
    let records = eventually_async("6 call records", Duration::from_secs(30), || {
        let r = audit_support::call_records(&dir);
        (r.len() >= 6).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = {
        let again = audit_support::call_records(&dir);
        assert_eq!(again.len(), records.len(), "no extra records: {again:#?}");
        again
    };
    assert_eq!(records.len(), 6, "{records:#?}");
    for r in &records {
        let errors = audit_support::schema_errors(r);
        assert!(errors.is_empty(), "{errors:?}\n{r:#}");
    }

    // One request-phase and one final record per allowed call, sharing the call uid.
    let forwarding: Vec<&Value> = records
        .iter()
        .filter(|r| outcome(r) == Outcome::Forwarding.as_str())
        .collect();
    let finals: Vec<&Value> = records
        .iter()
        .filter(|r| outcome(r) == Outcome::Answered.as_str())
        .collect();
    assert_eq!(forwarding.len(), 2, "{records:#?}");
    assert_eq!(finals.len(), 2, "{records:#?}");
    for (tool, id) in [("echo", "11"), ("get-sum", "12")] {
        let req = forwarding
            .iter()
            .find(|r| r["api"]["request"]["uid"] == id)
            .unwrap_or_else(|| panic!("no request-phase record for {tool}: {records:#?}"));
        let fin: Vec<&&Value> = finals
            .iter()
            .filter(|r| call_uid(r) == call_uid(req))
            .collect();
        assert_eq!(fin.len(), 1, "one final record for {tool}");
        let fin = fin[0];
        for r in [*req, fin] {
            audit_support::assert_good_record(r);
            assert_eq!(r["api"]["operation"], "tools/call");
            assert_eq!(r["resources"][0]["name"], tool);
            assert_eq!(r["actor"]["user"]["name"], "demo/agent-beta", "{r:#}");
            assert_eq!(r["metadata"]["correlation_uid"], session.id.as_str());
            assert_eq!(r["unmapped"]["mcp_warden"]["decision"]["allowed"], true);
        }
        // The request-phase record is compact: transport details, the message context and the
        // top-level policy are in the final record only.
        for key in ["http_request", "dst_endpoint", "message_context", "policy"] {
            assert!(
                req.get(key).is_none(),
                "{key} in the request record: {req:#}"
            );
            assert!(
                fin.get(key).is_some(),
                "no {key} in the final record: {fin:#}"
            );
        }
        assert_eq!(
            req["actor"]["authorizations"][0]["policy"], fin["policy"],
            "the request record names the deciding policy"
        );
        assert_eq!(fin["http_response"]["code"], 200, "{fin:#}");
        // Seen by the relay in the SSE answer for that id.
        assert_eq!(fin["api"]["response"]["data"]["isError"], false, "{fin:#}");
        assert!(
            fin["unmapped"]["mcp_warden"]["bytes_out"].as_u64().unwrap() > 0,
            "{fin:#}"
        );
        assert!(
            fin["metadata"]["sequence"].as_u64() > req["metadata"]["sequence"].as_u64(),
            "the final record comes after the request-phase one"
        );
    }
    // Inputs: echo's message redacted, get-sum's arguments in clear.
    let echo_req = forwarding
        .iter()
        .find(|r| r["api"]["request"]["uid"] == "11")
        .unwrap();
    let message = echo_req["api"]["request"]["data"]["arguments"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{echo_req:#}"));
    assert!(message.starts_with("hmac-sha256:"), "{message}");
    let sum_req = forwarding
        .iter()
        .find(|r| r["api"]["request"]["uid"] == "12")
        .unwrap();
    assert_eq!(sum_req["api"]["request"]["data"]["arguments"]["a"], 2);

    // One Denied record per refusal.
    let denied: Vec<&Value> = records
        .iter()
        .filter(|r| outcome(r) == Outcome::Denied.as_str())
        .collect();
    assert_eq!(denied.len(), 2, "{records:#?}");
    let not_granted = denied
        .iter()
        .find(|r| r["api"]["request"]["uid"] == "13")
        .unwrap();
    audit_support::assert_good_record(not_granted);
    assert_eq!(not_granted["resources"][0]["name"], "get-env");
    assert_eq!(
        not_granted["unmapped"]["mcp_warden"]["decision"]["reason"],
        "not_granted"
    );
    assert_eq!(
        not_granted["unmapped"]["mcp_warden"]["decision"]["allowed"],
        false
    );
    assert_eq!(not_granted["http_response"]["code"], 200);
    assert_eq!(
        not_granted["api"]["response"]["error"], "-32602",
        "{not_granted:#}"
    );
    // The tokenless refusal: counted by the tally (its body never read), flushed as one
    // aggregated record.
    let unauthenticated = denied
        .iter()
        .find(|r| r.get("count").is_some())
        .unwrap_or_else(|| panic!("no tallied record: {denied:#?}"));
    assert_eq!(unauthenticated["count"], 1);
    assert_eq!(
        unauthenticated["unmapped"]["mcp_warden"]["decision"]["reason"],
        "unauthenticated"
    );
    assert_eq!(unauthenticated["http_response"]["code"], 401);

    // Neither the echo's clear text nor the token is anywhere in the trail.
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(!text.contains(SECRET), "the redacted message leaked");
    assert!(!text.contains(audit_support::BEARER), "the token leaked");
    assert!(auditor.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_full_spool_with_block_refuses_tools_call_and_forwards_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    // A sink that never takes anything: the spool only fills.
    let cfg = audit_support::config(
        &spool,
        "  maxBytes: 65536\n  segmentBytes: 8192\n  whenFull: block",
        "\n  - name: hook\n    http: { url: \"http://127.0.0.1:9/ingest\" }",
    );
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let redaction = Redaction::none();
    for i in 1..=5000 {
        let mut ev = audit_support::call_event(i);
        ev.outcome = Outcome::Forwarding;
        if auditor.record(&ev, &redaction).await.is_err() {
            break;
        }
    }
    assert!(auditor.is_full(), "the spool filled");

    let mock = Mock::start(|_| {
        respond(
            200,
            &[("content-type", "application/json")],
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
        )
    })
    .await;
    let proxy = Proxy::start_audited(
        settings(&mock.url, BETA),
        Some(everything_rules(|t| t)),
        None,
        Some(auditor.clone()),
    )
    .await;
    let reply = post(
        &proxy.url(),
        &[],
        &tools_call(1, "echo", json!({"message": "hi"})),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let error = &reply.answer(&1.into())["error"];
    assert_eq!(error["code"], -32603, "{error}");
    assert_eq!(error["data"]["reason"], "audit_unavailable", "{error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        mock.requests().is_empty(),
        "nothing was forwarded upstream: {:?}",
        mock.requests()
    );
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_is_recorded_as_disconnected() {
    type Senders = Arc<Mutex<Vec<futures::channel::mpsc::Sender<bytes::Bytes>>>>;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let auditor = Auditor::start(&AuditConfig::in_dir(&dir), &prometheus::Registry::new()).unwrap();
    // An upstream that opens an SSE stream and never answers.
    let senders: Senders = Arc::default();
    let held = senders.clone();
    let mock = Mock::start(move |_| {
        let (tx, body) = channel_body();
        held.lock().unwrap().push(tx);
        let mut r = http::Response::new(body);
        r.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        r
    })
    .await;
    let proxy = Proxy::start_audited(
        settings(&mock.url, BETA),
        Some(everything_rules(|t| t)),
        None,
        Some(auditor.clone()),
    )
    .await;
    let headers: Vec<(&str, &str)> = POST.to_vec();
    let response = send(
        http::Method::POST,
        &proxy.url(),
        &headers,
        tools_call(7, "get-sum", json!({"a": 1, "b": 2})),
    )
    .await;
    assert_eq!(response.status(), 200);
    drop(response);
    let records = eventually_async("2 call records", Duration::from_secs(15), || {
        let r = audit_support::call_records(&dir);
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(outcome(&records[0]), Outcome::Forwarding.as_str());
    assert_eq!(outcome(&records[1]), Outcome::Disconnected.as_str());
    assert_eq!(call_uid(&records[0]), call_uid(&records[1]));
    for r in &records {
        let errors = audit_support::schema_errors(r);
        assert!(errors.is_empty(), "{errors:?}\n{r:#}");
    }
    assert_eq!(
        senders.lock().unwrap().len(),
        1,
        "the call was forwarded once"
    );
}

/// An upstream for resources, prompts and completions, and a tool whose answer stream carries
/// two server requests (an allowed elicitation and a refused roots/list) before its result.
async fn capability_upstream() -> Mock {
    Mock::start(|seen| {
        let req: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
        let id = req["id"].clone();
        let json = |result: Value| {
            respond(
                200,
                &[("content-type", "application/json")],
                json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
            )
        };
        match req["method"].as_str() {
            Some("resources/read") => json(json!({"contents": [
                {"uri": req["params"]["uri"], "mimeType": "text/markdown", "text": "# design notes"}
            ]})),
            Some("prompts/get") => json(json!({"messages": [
                {"role": "user", "content": {"type": "text", "text": "weather in the city"}}
            ]})),
            Some("completion/complete") => {
                json(json!({"completion": {"values": ["Oslo"], "hasMore": false}}))
            }
            Some("tools/call") => {
                let events = [
                    json!({"jsonrpc": "2.0", "id": 900, "method": "elicitation/create",
                           "params": {"message": "which?", "requestedSchema": {"type": "object", "properties": {}}}}),
                    json!({"jsonrpc": "2.0", "id": 901, "method": "roots/list"}),
                    json!({"jsonrpc": "2.0", "id": id, "result": {"content": []}}),
                ];
                let body: String = events
                    .iter()
                    .map(|e| format!("event: message\ndata: {e}\n\n"))
                    .collect();
                respond(200, &[("content-type", "text/event-stream")], body)
            }
            // The proxy's refusal of roots/list, and anything else: accepted.
            _ => respond(202, &[], ""),
        }
    })
    .await
}

#[tokio::test]
async fn resources_prompts_completions_and_server_requests_are_recorded() {
    let mock = capability_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let auditor = Auditor::start(&AuditConfig::in_dir(&dir), &prometheus::Registry::new()).unwrap();
    let proxy = Proxy::start_audited(
        settings(&mock.url, "demo/agent-alpha"),
        Some(everything_rules(|t| t)),
        None,
        Some(auditor.clone()),
    )
    .await;
    let send = |body: Value| {
        let url = proxy.url();
        async move { post(&url, &[], &body.to_string()).await }
    };
    let architecture = "demo://resource/static/document/architecture.md";
    let read = send(
        json!({"jsonrpc": "2.0", "id": 21, "method": "resources/read",
                           "params": {"uri": architecture}}),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text());
    let get = send(json!({"jsonrpc": "2.0", "id": 22, "method": "prompts/get",
                          "params": {"name": "args-prompt", "arguments": {"city": SECRET}}}))
    .await;
    assert_eq!(get.status, 200, "{}", get.text());
    let complete = send(
        json!({"jsonrpc": "2.0", "id": 23, "method": "completion/complete",
        "params": {"ref": {"type": "ref/prompt", "name": "args-prompt"},
                   "argument": {"name": "city", "value": SECRET}}}),
    )
    .await;
    assert_eq!(complete.status, 200, "{}", complete.text());
    let hidden = send(
        json!({"jsonrpc": "2.0", "id": 24, "method": "resources/read",
                             "params": {"uri": "file:///etc/shadow"}}),
    )
    .await;
    assert!(
        hidden.answer(&24.into()).get("error").is_some(),
        "{}",
        hidden.text()
    );
    let call = send(json!({"jsonrpc": "2.0", "id": 25, "method": "tools/call",
                           "params": {"name": "trigger-elicitation-request", "arguments": {}}}))
    .await;
    assert_eq!(call.status, 200, "{}", call.text());
    assert!(
        call.text().contains("elicitation/create"),
        "{}",
        call.text()
    );
    assert!(!call.text().contains("roots/list"), "{}", call.text());

    // 3 × 2 (resource, prompt, completion) + 1 denial + 2 (tool) + 2 (server requests).
    eventually_async("11 records", Duration::from_secs(15), || {
        let r = audit_support::call_records(&dir);
        (r.len() >= 11).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = audit_support::call_records(&dir);
    assert_eq!(records.len(), 11, "{records:#?}");
    for r in &records {
        let errors = audit_support::schema_errors(r);
        assert!(errors.is_empty(), "{errors:?}\n{r:#}");
        audit_support::assert_good_record(r);
    }
    let of = |uid: &str, phase: Outcome| -> &Value {
        records
            .iter()
            .find(|r| r["api"]["request"]["uid"] == uid && outcome(r) == phase.as_str())
            .unwrap_or_else(|| panic!("no {phase:?} record of {uid}: {records:#?}"))
    };
    // resources/read: request-phase before forwarding, final with the captured contents.
    let (req, fin) = (of("21", Outcome::Forwarding), of("21", Outcome::Answered));
    assert_eq!(call_uid(req), call_uid(fin));
    for r in [req, fin] {
        assert_eq!(r["resources"][0]["type"], "mcp.resource", "{r:#}");
        assert_eq!(r["resources"][0]["name"], architecture);
        assert_eq!(r["risk_level"], "Medium");
    }
    assert_eq!(
        fin["api"]["response"]["data"]["result"]["contents"][0]["text"], "# design notes",
        "captureResponse: {fin:#}"
    );
    // prompts/get and completion/complete: the prompt entry's redaction applies.
    for uid in ["22", "23"] {
        let (req, fin) = (of(uid, Outcome::Forwarding), of(uid, Outcome::Answered));
        assert_eq!(call_uid(req), call_uid(fin));
        assert_eq!(req["resources"][0]["type"], "mcp.prompt", "{req:#}");
        assert_eq!(req["resources"][0]["name"], "args-prompt");
        let city = req["api"]["request"]["data"]["arguments"]["city"]
            .as_str()
            .unwrap_or_else(|| panic!("{req:#}"));
        assert!(city.starts_with("hmac-sha256:"), "{city}");
        assert!(
            fin["api"]["response"]["data"].get("result").is_none(),
            "no capture: {fin:#}"
        );
    }
    // The unreadable resource: one denial.
    let denied = of("24", Outcome::Denied);
    assert_eq!(denied["resources"][0]["type"], "mcp.resource");
    assert_eq!(denied["resources"][0]["name"], "file:///etc/shadow");
    // The server's requests: the elicitation relayed, tied to the call; roots/list refused.
    let relayed = of("900", Outcome::Relayed);
    assert_eq!(relayed["resources"][0]["type"], "mcp.server_request");
    assert_eq!(
        relayed["unmapped"]["mcp_warden"]["server_request"],
        json!({"kind": "Elicitation", "tied_to": "25"})
    );
    assert_eq!(relayed["actor"]["user"]["name"], "demo/agent-alpha");
    let refused = of("901", Outcome::Denied);
    assert_eq!(
        refused["unmapped"]["mcp_warden"]["server_request"]["kind"],
        "Roots"
    );
    assert_eq!(
        refused["unmapped"]["mcp_warden"]["decision"]["reason"],
        "server_request_refused"
    );
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(!text.contains(SECRET), "a redacted prompt argument leaked");
    assert!(auditor.shutdown(Duration::from_secs(5)).await);
    // `mcp-warden audit verify`: the chain holds with the new records in it.
    let report =
        mcp_warden_sidecar::audit::verify::verify(&[dir.join("audit.jsonl")], false).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
