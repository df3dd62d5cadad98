//! The cases on what the server sends: resource updates and its own requests.

use super::*;

/// notifications/resources/updated reaches a caller only for URIs it may read.
/// server-everything sends its updates on the session's GET stream every 5 s for the session's
/// subscriptions: beta subscribes to a readable URI through the sidecar, and — as if it had
/// subscribed before it lost the grant — to an unreadable one at the upstream itself. The
/// Python fixture sends them on the calling request's stream.
pub(crate) fn updates(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let updated = |m: &Value| {
        (m["method"] == "notifications/resources/updated").then(|| {
            m.pointer("/params/uri")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
    };
    let uris: BTreeSet<String> = match s.kind {
        Kind::Everything => {
            let behind = beta.at(&s.upstream);
            beta.request(50, "resources/subscribe", json!({"uri": n.readable[0]}))?
                .result(50)?;
            behind
                .request(51, "resources/subscribe", json!({"uri": n.unreadable}))?
                .result(51)?;
            let stream = beta.stream_get(Duration::from_secs(20))?;
            ensure!(
                stream.status == 200,
                "beta's GET stream: HTTP {}",
                stream.status
            );
            thread::sleep(Duration::from_millis(300));
            behind
                .request(
                    52,
                    "tools/call",
                    json!({"name": "toggle-subscriber-updates", "arguments": {}}),
                )?
                .result(52)?;
            // The first updates go out at once, the next 5 s later: wait for two rounds.
            let (seen, _) = stream.until(Duration::from_secs(7), |_| false);
            behind
                .request(
                    53,
                    "tools/call",
                    json!({"name": "toggle-subscriber-updates", "arguments": {}}),
                )?
                .result(53)?;
            seen.iter().filter_map(updated).collect()
        }
        Kind::Python => {
            let uris = [n.readable[0], n.unreadable, n.scoped];
            let stream = beta.stream_post(&json!({"jsonrpc": "2.0", "id": 54,
                "method": "tools/call", "params": {"name": "test_resource_updated",
                "arguments": {"uris": uris}}}))?;
            let (seen, done) = stream.until(Duration::from_secs(20), |m| m["id"] == 54);
            ensure!(done, "test_resource_updated did not answer: {seen:?}");
            let answer = seen.last().unwrap();
            ensure!(
                answer.pointer("/result/content/0/text")
                    == Some(&json!("Sent 3 resource update(s)")),
                "test_resource_updated: {answer}"
            );
            seen.iter().filter_map(updated).collect()
        }
    };
    let expected: BTreeSet<String> = [n.readable[0].to_owned()].into();
    ensure!(
        uris == expected,
        "beta received updates for {uris:?}; expected only {expected:?}"
    );
    Ok(())
}

/// The sampling answer a client gives.
pub(crate) fn sampled(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant",
        "content": {"type": "text", "text": "warden-sampled"}, "model": "test-model",
        "stopReason": "endTurn"}})
}

/// With `serverRequests: [Elicitation, Sampling]` the server's sampling/createMessage reaches
/// the caller on its tools/call stream; the caller's answer reaches the tool.
pub(crate) fn sampling_relayed(s: &Stack) -> Result<(), String> {
    let (tool, args) = s.kind.names().sampling;
    let alpha = s.connect(ALPHA, json!({"sampling": {}}))?;
    let stream = alpha.stream_post(&json!({"jsonrpc": "2.0", "id": 60, "method": "tools/call",
        "params": {"name": tool, "arguments": args()}}))?;
    ensure!(stream.status == 200, "{tool}: HTTP {}", stream.status);
    let (seen, asked) = stream.until(Duration::from_secs(20), |m| {
        m["method"] == "sampling/createMessage"
    });
    ensure!(
        asked,
        "{tool}: no sampling/createMessage reached the caller: {seen:?}"
    );
    let id = seen.last().unwrap()["id"].clone();
    let r = alpha.post(sampled(&id).to_string())?;
    ensure!(r.status == 202, "the sampling answer: {}", r.summary());
    let (seen, done) = stream.until(Duration::from_secs(20), |m| m["id"] == 60);
    ensure!(
        done,
        "{tool} did not answer after the sampling answer: {seen:?}"
    );
    let text = seen.last().unwrap().to_string();
    ensure!(
        text.contains("warden-sampled"),
        "{tool}'s result does not carry the caller's answer: {text}"
    );
    Ok(())
}

/// The refusals the upstream received since `mark`: JSON-RPC errors −32601 naming `why`.
pub(crate) fn refusals(s: &Stack, mark: usize, why: &str) -> Vec<Value> {
    s.tap
        .since(mark)
        .iter()
        .filter(|r| r.method == "POST")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body()).ok())
        .filter(|m| {
            m.get("method").is_none()
                && m.pointer("/error/code") == Some(&json!(-32601))
                && m.pointer("/error/message")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.contains(why))
        })
        .collect()
}

/// With `serverRequests: [Elicitation, Roots]`: the server's sampling/createMessage never
/// reaches the caller, the upstream gets a −32601 answer for it, and the tool call ends (with
/// the server's error) instead of hanging.
pub(crate) fn sampling_refused(s: &Stack) -> Result<(), String> {
    let (tool, args) = s.kind.names().sampling;
    let alpha = s.connect(ALPHA, json!({"sampling": {}}))?;
    let mark = s.tap.count();
    let started = Instant::now();
    let stream = alpha.stream_post(&json!({"jsonrpc": "2.0", "id": 61, "method": "tools/call",
        "params": {"name": tool, "arguments": args()}}))?;
    let (seen, done) = stream.until(Duration::from_secs(20), |m| m["id"] == 61);
    ensure!(
        !seen.iter().any(|m| m["method"] == "sampling/createMessage"),
        "{tool}: the refused sampling/createMessage reached the caller: {seen:?}"
    );
    ensure!(
        done,
        "{tool} did not end within 20 s (the upstream never got its refusal?): {seen:?}"
    );
    let answer = seen.last().unwrap();
    let text = answer.to_string();
    ensure!(
        answer.get("error").is_some() || answer.pointer("/result/isError") == Some(&json!(true)),
        "{tool} should end in an error: {text}"
    );
    let sent = refusals(s, mark, "spec.serverRequests");
    ensure!(
        sent.len() == 1,
        "the upstream should receive one -32601 answer for its sampling request, got {}: {}",
        sent.len(),
        describe(&s.tap.since(mark))
    );
    eprintln!(
        "[{}] refused sampling: the tool ended after {:?}: {}",
        s.kind.name(),
        started.elapsed(),
        clip(&text, 200)
    );
    Ok(())
}

/// A server request of an allowed kind tied to no pending request (the session's GET stream)
/// is refused: never shown, answered −32601 to the upstream.
pub(crate) fn detached_refused(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(
        ALPHA,
        json!({"roots": {"listChanged": true}, "elicitation": {}}),
    )?;
    let stream = alpha.stream_get(Duration::from_secs(25))?;
    ensure!(
        stream.status == 200,
        "alpha's GET stream: HTTP {}",
        stream.status
    );
    thread::sleep(Duration::from_millis(500));
    let mark = s.tap.count();
    let (method, why) = match s.kind {
        Kind::Everything => {
            // Its roots/list follows the client's roots/list_changed, on the GET stream.
            let r = alpha.post(
                json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}).to_string(),
            )?;
            ensure!(r.status == 202, "roots/list_changed: {}", r.summary());
            ("roots/list", "pending request")
        }
        Kind::Python => {
            let r = alpha.request(
                62,
                "tools/call",
                json!({"name": "test_detached_request", "arguments": {"kind": "elicitation"}}),
            )?;
            let text = r
                .result(62)?
                .pointer("/content/0/text")
                .cloned()
                .unwrap_or_default();
            ensure!(
                text.as_str().is_some_and(|t| t
                    .starts_with("elicitation refused by the client: -32601")
                    && t.contains("pending request")),
                "test_detached_request: the server should learn of the refusal, got {text}"
            );
            ("elicitation/create", "pending request")
        }
    };
    let sent = poll(Duration::from_secs(10), || {
        let sent = refusals(s, mark, why);
        (!sent.is_empty()).then_some(sent)
    })
    .ok_or_else(|| {
        format!(
            "the upstream got no -32601 answer for its {method} on the GET stream: {}",
            describe(&s.tap.since(mark))
        )
    })?;
    let (seen, _) = stream.until(Duration::from_millis(500), |_| false);
    ensure!(
        !seen.iter().any(|m| m["method"] == method),
        "the {method} on the GET stream reached the caller: {seen:?}"
    );
    eprintln!(
        "[{}] refused {method} on the GET stream: {sent:?}",
        s.kind.name()
    );
    Ok(())
}
