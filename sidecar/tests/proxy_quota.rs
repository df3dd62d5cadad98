//! Quotas on the proxy path: resources, prompts and completions count like tools, keyed by the
//! entry that governs them; subscriptions and lists do not count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
