//! Quotas on the proxy path: resources, prompts and completions count like tools, keyed by the
//! entry that governs them; subscriptions and lists do not count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_support;
mod proxy_support;

use proxy_support::*;
use serde_json::json;

#[tokio::test]
async fn resource_reads_are_throttled_per_entry_and_subscriptions_are_not_counted() {
    let mock = Mock::empty_results().await;
    // agent-beta's policy (basic-tools): 5 calls a minute per client and tool, resource entry
    // or prompt.
    let proxy = Proxy::anonymous(&mock.url, "demo/agent-beta").await;
    let request = |id: u64, method: &str, params: serde_json::Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    };
    let instructions = json!({"uri": "demo://resource/static/document/instructions.md"});
    for id in 1..=3 {
        let r = post(
            &proxy.url(),
            &[],
            &request(id, "resources/subscribe", instructions.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "subscriptions do not count: {}", r.text());
    }
    for id in 10..15 {
        let r = post(
            &proxy.url(),
            &[],
            &request(id, "resources/read", instructions.clone()),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Another document under the same entry (demo://resource/static/document/*): the same
    // counter.
    let features = json!({"uri": "demo://resource/static/document/features.md"});
    let r = post(&proxy.url(), &[], &request(15, "resources/read", features)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let error = &r.answer(&15.into())["error"];
    assert_eq!(error["code"], -31029, "{error}");
    assert_eq!(error["data"]["reason"], "policy_rate", "{error}");
    assert_eq!(
        error["data"]["tool"], "resource:demo://resource/static/document/*",
        "{error}"
    );
    // A prompt has its own counter.
    let r = post(
        &proxy.url(),
        &[],
        &request(16, "prompts/get", json!({"name": "simple-prompt"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let forwarded = mock.requests().len();
    assert_eq!(forwarded, 3 + 5 + 1, "the throttled read was not forwarded");
}

#[tokio::test]
async fn a_batch_a_quota_refuses_is_refused_whole_and_recorded_call_by_call() {
    let mock = Mock::empty_results().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let config = mcp_warden_sidecar::audit::AuditConfig::in_dir(&dir);
    let auditor =
        mcp_warden_sidecar::audit::Auditor::start(&config, &prometheus::Registry::new()).unwrap();
    let proxy = Proxy::start_audited(
        settings(&mock.url, "demo/agent-beta"),
        Some(everything_rules(|t| t)),
        None,
        Some(auditor),
    )
    .await;
    // basic-tools allows agent-beta 5 calls of a tool a minute: the sixth call of the batch is
    // throttled, so none of the six is forwarded.
    let batch: Vec<serde_json::Value> = (1..=6)
        .map(|id| {
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"message": "hi"}}})
        })
        .collect();
    let r = post(
        &proxy.url(),
        &[("mcp-protocol-version", "2025-03-26")],
        &serde_json::Value::Array(batch).to_string(),
    )
    .await;
    assert_eq!(
        mock.requests().len(),
        0,
        "nothing of the batch was forwarded"
    );
    for id in 1..=5 {
        let error = &r.answer(&id.into())["error"];
        assert_eq!(error["code"], -31005, "{error}");
        assert_eq!(error["data"]["reason"], "batch_not_forwarded", "{error}");
    }
    let throttled = &r.answer(&6.into())["error"];
    assert_eq!(throttled["code"], -31029, "{throttled}");
    // One Denied record per call, each with the status the caller was answered; the throttled
    // call names the quota and its error, the others say they were not forwarded.
    let records = mcp_warden_test_support::eventually_async(
        "6 call records",
        std::time::Duration::from_secs(15),
        || {
            let records = audit_support::call_records(&dir);
            (records.len() >= 6).then_some(records)
        },
    )
    .await;
    assert_eq!(records.len(), 6, "{records:#?}");
    for record in &records {
        assert_eq!(audit_support::outcome(record), "denied", "{record:#}");
        assert_eq!(
            record["http_response"]["code"],
            r.status.as_u16(),
            "{record:#}"
        );
        let reason = &record["unmapped"]["mcp_warden"]["decision"]["reason"];
        match record["api"]["request"]["uid"].as_str() {
            Some("6") => {
                assert_eq!(reason, "policy_rate", "{record:#}");
                assert_eq!(record["api"]["response"]["error"], "-31029", "{record:#}");
            }
            _ => assert_eq!(reason, "batch_not_forwarded", "{record:#}"),
        }
    }
}
