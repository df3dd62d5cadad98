//! The cases on what a caller asks: lists, reads, prompts, completions, subscriptions, smuggled keys.

use super::*;

pub(crate) fn list_all(
    send: &dyn Fn(u64, &str, Value) -> Result<Resp, String>,
    list: List,
    check: &dyn Fn(&Resp, &Value) -> Result<(), String>,
) -> Result<(Vec<String>, Pages), String> {
    let (member, key) = list.keys();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for id in 1..=20 {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let r = send(id, list.method(), params)?;
        let result = r.result(id)?;
        check(&r, &result)?;
        let entries: Vec<String> = result[member]
            .as_array()
            .ok_or_else(|| format!("{}: no {member}: {}", list.method(), r.summary()))?
            .iter()
            .filter_map(|e| e[key].as_str().map(str::to_owned))
            .collect();
        cursor = result["nextCursor"].as_str().map(str::to_owned);
        pages.push((entries, cursor.clone()));
        if cursor.is_none() {
            let all = pages.iter().flat_map(|(e, _)| e.clone()).collect();
            return Ok((all, pages));
        }
    }
    Err(format!("{}: more than 20 pages", list.method()))
}

/// resources/list, resources/templates/list, prompts/list: agent-beta sees exactly its grants
/// (fewer than exist), agent-alpha everything the McpTool declares, in upstream order, with
/// every page's cursor kept (the Python fixture pages two by two). `modern`: 2026-07-28
/// requests, answered as JSON, must come back `cacheScope: private`.
pub(crate) fn lists(s: &Stack, modern: bool) -> Result<(), String> {
    let direct = Client {
        url: s.upstream.clone(),
        token: None,
        session: None,
    };
    let direct = if modern {
        direct
    } else {
        Client::connect(&s.upstream, None, json!({}))?
    };
    let beta = s.connect(BETA, json!({}))?;
    let alpha = s.connect(ALPHA, json!({}))?;
    let send = |c: &Client| {
        let c = c.clone();
        move |id: u64, method: &str, params: Value| {
            if modern {
                c.modern(id, method, params)
            } else {
                c.request(id, method, params)
            }
        }
    };
    let format = |r: &Resp, result: &Value| -> Result<(), String> {
        if modern {
            ensure!(
                !r.is_sse() && result["cacheScope"] == "private",
                "a 2026-07-28 list answer must be JSON and cacheScope private: {}",
                r.summary()
            );
        } else {
            ensure!(r.is_sse(), "expected an SSE answer: {}", r.summary());
        }
        Ok(())
    };
    let any = |_: &Resp, _: &Value| Ok(());
    for list in List::ALL {
        let (all, direct_pages) = list_all(&send(&direct), list, &any)?;
        let (seen, pages) = list_all(&send(&beta), list, &format)?;
        let expected: Vec<String> = all
            .iter()
            .filter(|n| s.kind.beta_sees(list, n))
            .cloned()
            .collect();
        ensure!(
            seen == expected,
            "agent-beta's {}: expected {expected:?} (of {all:?}), got {seen:?}",
            list.method()
        );
        // The Python fixture has one template, which beta is granted.
        let proves =
            expected.len() < all.len() || (list, s.kind) == (List::Templates, Kind::Python);
        ensure!(
            !expected.is_empty() && proves,
            "the {} case proves nothing: beta is to see fewer than {all:?}",
            list.method()
        );
        let cursors = |p: &Pages| p.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>();
        ensure!(
            cursors(&pages) == cursors(&direct_pages),
            "agent-beta's {} pages lost their cursors: {pages:?}, upstream {direct_pages:?}",
            list.method()
        );
        let (alpha_seen, _) = list_all(&send(&alpha), list, &format)?;
        ensure!(
            alpha_seen == all,
            "agent-alpha's {}: expected all of {all:?}, got {alpha_seen:?}",
            list.method()
        );
    }
    Ok(())
}

/// resources/read: beta's grants are read; another resource is answered as not found (HTTP
/// 200, −32602 "Resource not found: <uri>") and never reaches the upstream; a granted resource
/// whose entry needs a scope the token lacks is a 403 step-up; subscribe follows read.
pub(crate) fn resources(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    for (i, uri) in n.readable.iter().enumerate() {
        let id = 10 + i as u64;
        let r = beta.request(id, "resources/read", json!({"uri": uri}))?;
        let result = r.result(id)?;
        ensure!(
            result["contents"][0]["uri"] == *uri,
            "beta reads {uri}: {}",
            r.summary()
        );
    }
    for (id, uri) in [
        (20, n.unreadable),
        (21, "file:///etc/passwd"),
        (22, n.scoped),
    ] {
        let r = s.quiet(uri, || {
            beta.request(id, "resources/read", json!({"uri": uri}))
        })??;
        expect_error(&r, id, 200, -32602, &format!("Resource not found: {uri}"))
            .map_err(|e| format!("beta reads {uri}: {e}"))?;
    }
    // The direct answer, for contrast: the upstream has it.
    let direct = Client::connect(&s.upstream, None, json!({}))?;
    direct
        .request(23, "resources/read", json!({"uri": n.unreadable}))?
        .result(23)
        .map_err(|e| format!("the upstream itself should serve {}: {e}", n.unreadable))?;
    // alpha without mcp:tools.call: granted, but the entry needs it.
    let alpha_list_only =
        Client::connect(&s.url(), Some(s.token(ALPHA, "mcp:tools.list")), json!({}))?;
    let r = s.quiet("step-up read", || {
        alpha_list_only.request(24, "resources/read", json!({"uri": n.scoped}))
    })??;
    let challenge = r.header("www-authenticate").unwrap_or("");
    ensure!(
        r.status == 403
            && challenge.contains("insufficient_scope")
            && challenge.contains("mcp:tools.call")
            && r.reply(24)
                .is_some_and(|m| m.pointer("/error/code") == Some(&json!(-31003))),
        "alpha (list scope only) reads {}: expected 403 insufficient_scope -31003, got {} ({challenge})",
        n.scoped,
        r.summary()
    );
    // Subscribe: a readable URI goes through, an unreadable one is not found.
    let r = beta.request(25, "resources/subscribe", json!({"uri": n.readable[0]}))?;
    r.result(25)
        .map_err(|e| format!("beta subscribes to {}: {e}", n.readable[0]))?;
    let r = s.quiet("subscribe", || {
        beta.request(26, "resources/subscribe", json!({"uri": n.unreadable}))
    })??;
    expect_error(
        &r,
        26,
        200,
        -32602,
        &format!("Resource not found: {}", n.unreadable),
    )
    .map_err(|e| format!("beta subscribes to {}: {e}", n.unreadable))?;
    // Lessening methods pass for an identified caller.
    let r = beta.request(27, "resources/unsubscribe", json!({"uri": n.readable[0]}))?;
    r.result(27).map_err(|e| format!("unsubscribe: {e}"))?;
    let r = beta.request(28, "logging/setLevel", json!({"level": "error"}))?;
    r.result(28).map_err(|e| format!("logging/setLevel: {e}"))?;
    Ok(())
}

/// prompts/get and completion/complete: granted ones answered by the upstream, others
/// "Unknown prompt" / "Resource not found" (HTTP 200, −32602), never forwarded; a ref of
/// another type is −32602 invalid params.
pub(crate) fn prompts_and_completions(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let r = beta.request(30, "prompts/get", json!({"name": n.prompt}))?;
    ensure!(
        r.result(30)?["messages"].is_array(),
        "beta gets {}: {}",
        n.prompt,
        r.summary()
    );
    let r = s.quiet("hidden prompt", || {
        beta.request(31, "prompts/get", json!({"name": n.hidden_prompt}))
    })??;
    expect_error(
        &r,
        31,
        200,
        -32602,
        &format!("Unknown prompt: {}", n.hidden_prompt),
    )
    .map_err(|e| format!("beta gets {}: {e}", n.hidden_prompt))?;
    let (prompt, argument) = n.completion;
    let complete = |id: u64, reference: Value, argument: &str| {
        beta.request(
            id,
            "completion/complete",
            json!({"ref": reference, "argument": {"name": argument, "value": ""}}),
        )
    };
    let r = complete(32, json!({"type": "ref/prompt", "name": prompt}), argument)?;
    ensure!(
        r.result(32)?["completion"]["values"].is_array(),
        "beta completes {prompt}: {}",
        r.summary()
    );
    let r = s.quiet("completion of a hidden prompt", || {
        complete(
            33,
            json!({"type": "ref/prompt", "name": n.hidden_prompt}),
            "x",
        )
    })??;
    expect_error(
        &r,
        33,
        200,
        -32602,
        &format!("Unknown prompt: {}", n.hidden_prompt),
    )?;
    let r = complete(
        34,
        json!({"type": "ref/resource", "uri": n.template}),
        n.template_argument,
    )?;
    r.result(34)
        .map_err(|e| format!("beta completes template {}: {e}", n.template))?;
    if let Some(hidden) = n.hidden_template {
        let r = s.quiet("completion of a hidden template", || {
            complete(
                35,
                json!({"type": "ref/resource", "uri": hidden}),
                "resourceId",
            )
        })??;
        expect_error(
            &r,
            35,
            200,
            -32602,
            &format!("Resource not found: {hidden}"),
        )?;
    }
    let r = s.quiet("completion of a tool ref", || {
        complete(36, json!({"type": "ref/tool", "name": "echo"}), "x")
    })??;
    ensure!(
        r.status == 200
            && r.reply(36)
                .is_some_and(|m| m.pointer("/error/code") == Some(&json!(-32602))),
        "a ref/tool completion: expected 200 -32602, got {}",
        r.summary()
    );
    Ok(())
}

/// subscriptions/listen (2026-07-28): every resourceSubscriptions URI must be readable; the
/// first unreadable one is answered as not found and nothing is forwarded.
pub(crate) fn listen(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let params = |uris: &[&str]| json!({"notifications": {"resourceSubscriptions": uris}});
    let r = s.quiet("listen to an unreadable URI", || {
        beta.modern(
            70,
            "subscriptions/listen",
            params(&[n.readable[0], n.unreadable]),
        )
    })??;
    expect_error(
        &r,
        70,
        200,
        -32602,
        &format!("Resource not found: {}", n.unreadable),
    )?;
    let stream = beta.stream_modern(71, "subscriptions/listen", params(&[n.readable[0]]))?;
    ensure!(
        stream.status == 200,
        "listen to {}: HTTP {}",
        n.readable[0],
        stream.status
    );
    let (seen, acknowledged) = stream.until(Duration::from_secs(10), |m| {
        m["method"] == "notifications/subscriptions/acknowledged"
    });
    ensure!(
        acknowledged,
        "listen to {}: no acknowledgement: {seen:?}",
        n.readable[0]
    );
    Ok(())
}

/// Bodies two readers could read differently around the new governed keys: 400 −32600, never
/// forwarded.
pub(crate) fn smuggling(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let cases = [
        (
            "ref.type + ref.Type",
            json!({"jsonrpc": "2.0", "id": 40, "method": "completion/complete", "params": {
                "ref": {"type": "ref/prompt", "Type": "ref/resource", "name": n.prompt,
                        "uri": n.hidden_template.unwrap_or(n.template)},
                "argument": {"name": "a", "value": ""}}}),
        ),
        (
            "ref.name + ref.NAME",
            json!({"jsonrpc": "2.0", "id": 41, "method": "completion/complete", "params": {
                "ref": {"type": "ref/prompt", "name": n.prompt, "NAME": n.hidden_prompt},
                "argument": {"name": "a", "value": ""}}}),
        ),
        (
            "uri + URI",
            json!({"jsonrpc": "2.0", "id": 42, "method": "resources/read", "params": {
                "uri": n.readable[0], "URI": n.unreadable}}),
        ),
        (
            "only Uri",
            json!({"jsonrpc": "2.0", "id": 43, "method": "resources/read", "params": {
                "Uri": n.unreadable}}),
        ),
        (
            "uri: 1",
            json!({"jsonrpc": "2.0", "id": 44, "method": "resources/read", "params": {"uri": 1}}),
        ),
        (
            "uri: [..]",
            json!({"jsonrpc": "2.0", "id": 45, "method": "resources/subscribe", "params": {
                "uri": [n.unreadable]}}),
        ),
        (
            "ref.type: 1",
            json!({"jsonrpc": "2.0", "id": 46, "method": "completion/complete", "params": {
                "ref": {"type": 1, "name": n.hidden_prompt}, "argument": {"name": "a", "value": ""}}}),
        ),
    ];
    let mut failures = Vec::new();
    for (label, body) in cases {
        let id = body["id"].as_u64().unwrap();
        let outcome = s
            .quiet(label, || beta.post(body.to_string()))
            .and_then(|r| r)
            .and_then(|r| {
                ensure!(
                    r.status == 400
                        && r.reply(id)
                            .is_some_and(|m| m.pointer("/error/code") == Some(&json!(-32600))),
                    "{label}: expected 400 -32600, got {}",
                    r.summary()
                );
                Ok(())
            });
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}
