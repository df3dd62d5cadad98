//! The cases on one reading of a request: ids, smuggled keys, batches, sessions, resumptions.

use super::*;

/// A notification's 202 (no body, often no Content-Type) reaches the client unchanged
/// (docs/denials.md: notifications pass; every other upstream status reaches the client).
pub(crate) fn notifications(url: &str, token: String, direct: &str) -> Result<(), String> {
    let upstream = Client::connect(direct, None, VERSION)?;
    let proxied = Client::connect(url, Some(token), VERSION)?;
    ensure!(
        proxied.initialized.starts_with("HTTP 202"),
        "notifications/initialized: the upstream answers {}; through the sidecar: {}",
        upstream.initialized,
        proxied.initialized
    );
    Ok(())
}

/// Ids with a fraction, an exponent or beyond 2^53 − 1 are refused; id 1 lists beta's tools.
pub(crate) fn ids(s: &Stack) -> Result<(), String> {
    let beta = s.connect(BETA, VERSION)?;
    for id in ["1.0", "1e0", "9007199254740992", "-9007199254740992"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
        let r = s.quiet(&format!("tools/list id {id}"), || beta.post(body.clone()))??;
        expect_error(&r, 400, -32600, &format!("tools/list id {id}"))?;
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let mark = s.tap.count();
    let r = beta.post(body)?;
    let got = s.tap.since(mark);
    ensure!(
        got.len() == 1 && got[0].method == "POST" && got[0].body() == body.as_bytes(),
        "tools/list id 1: the upstream should receive exactly this body, byte for byte; it received: {}",
        describe(&got)
    );
    let tools: BTreeSet<String> = r
        .reply(&json!(1))
        .and_then(|m| m.pointer("/result/tools").cloned())
        .and_then(|t| t.as_array().cloned())
        .ok_or_else(|| format!("tools/list id 1: no tool list: {}", r.summary()))?
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        tools == s.kind.beta_tools(),
        "agent-beta's tools/list: expected exactly {:?}, got {tools:?}",
        s.kind.beta_tools()
    );
    Ok(())
}

/// Bodies two JSON readers read differently (mcp-go folds keys and keeps the last duplicate).
pub(crate) const SMUGGLED: &[(&str, &str, i64)] = &[
    (
        "name + Name",
        r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","Name":"get-env","arguments":{"message":"x"}}}"#,
        -32600,
    ),
    (
        "name + NAME",
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","NAME":"get-env"}}"#,
        -32600,
    ),
    (
        "name + nAme",
        r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"echo","nAme":"get-env"}}"#,
        -32600,
    ),
    (
        "only NAME",
        r#"{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"NAME":"get-env"}}"#,
        -32600,
    ),
    (
        "name + N\\u0061me (escaped)",
        r#"{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"echo","N\u0061me":"get-env"}}"#,
        -32600,
    ),
    (
        "taſkId (U+017F) on tasks/get",
        "{\"jsonrpc\":\"2.0\",\"id\":16,\"method\":\"tasks/get\",\"params\":{\"ta\u{17F}kId\":\"task-1\"}}",
        -32600,
    ),
    (
        "ta\\u017fkId (escaped) on tasks/get",
        r#"{"jsonrpc":"2.0","id":17,"method":"tasks/get","params":{"ta\u017fkId":"task-1"}}"#,
        -32600,
    ),
    (
        "tasK (U+212A Kelvin) in params",
        "{\"jsonrpc\":\"2.0\",\"id\":18,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"x\"},\"tas\u{212A}\":{\"ttl\":60000}}}",
        -32600,
    ),
    (
        "params + paramſ (message level)",
        "{\"jsonrpc\":\"2.0\",\"id\":19,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"x\"}},\"param\u{17F}\":{\"name\":\"get-env\"}}",
        -32600,
    ),
    (
        "params + PARAMS",
        r#"{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"PARAMS":{"name":"get-env"}}"#,
        -32600,
    ),
    (
        "jſonrpc (U+017F) + jsonrpc",
        "{\"j\u{17F}onrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"id\":21,\"method\":\"tools/call\",\"params\":{\"name\":\"get-env\"}}",
        -32600,
    ),
    (
        "method + METHOD (tools/call last)",
        r#"{"jsonrpc":"2.0","id":22,"method":"tools/list","METHOD":"tools/call","params":{"name":"get-env"}}"#,
        -32600,
    ),
    (
        "METHOD + method (tools/call first)",
        r#"{"jsonrpc":"2.0","id":23,"METHOD":"tools/call","method":"tools/list","params":{"name":"get-env"}}"#,
        -32600,
    ),
    (
        "id + ID",
        r#"{"jsonrpc":"2.0","id":24,"ID":25,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}"#,
        -32600,
    ),
    (
        "_meta keys folding alike",
        r#"{"jsonrpc":"2.0","id":26,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"progressToken":1,"progresstoken":2}}}"#,
        -32600,
    ),
    (
        "duplicate name",
        r#"{"jsonrpc":"2.0","id":27,"method":"tools/call","params":{"name":"echo","name":"get-env"}}"#,
        -32700,
    ),
    (
        "duplicate name, escaped n\\u0061me",
        r#"{"jsonrpc":"2.0","id":28,"method":"tools/call","params":{"name":"echo","n\u0061me":"get-env"}}"#,
        -32700,
    ),
    (
        "duplicate method",
        r#"{"jsonrpc":"2.0","id":29,"method":"tools/list","method":"tools/call","params":{"name":"get-env"}}"#,
        -32700,
    ),
    (
        "duplicate params",
        r#"{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"params":{"name":"get-env"}}"#,
        -32700,
    ),
    (
        "name: 1",
        r#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":1}}"#,
        -32600,
    ),
    (
        "name: [\"get-env\"]",
        r#"{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":["get-env"]}}"#,
        -32600,
    ),
    (
        "taskId: 7",
        r#"{"jsonrpc":"2.0","id":33,"method":"tasks/get","params":{"taskId":7}}"#,
        -32600,
    ),
];

pub(crate) fn smuggling(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, VERSION)?;
    let mut failures = Vec::new();
    for (label, body, code) in SMUGGLED {
        let outcome = s
            .quiet(label, || alpha.post(*body))
            .and_then(|r| r)
            .and_then(|r| expect_error(&r, 400, *code, label));
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    // Control: the same session's plain call runs (the refusals are not a broken session).
    let (tool, args) = s.kind.good_call();
    let r = alpha.call(40, tool, &args)?;
    if !succeeded(&r, 40) {
        failures.push(format!("control call {tool}: {}", r.summary()));
    }
    if s.kind == Kind::Go {
        let ran = s.ran();
        if ran.iter().any(|t| t == "get-env") {
            failures.push(format!(
                "the Go upstream RAN get-env: its record says {ran:?}"
            ));
        }
        if !ran.iter().any(|t| t == "echo") {
            failures.push(format!(
                "the control echo did not run on the Go upstream: {ran:?}"
            ));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

pub(crate) fn batches(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, "2025-03-26")?;
    let same_id = r#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get-env","arguments":{}}}]"#;
    let r = s.quiet("batch with id 5 twice", || alpha.post(same_id))??;
    expect_error(&r, 400, -32600, "batch with id 5 twice")?;
    let same_value = r#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]"#;
    let r = s.quiet("batch with id \"a\" and \"\\u0061\"", || {
        alpha.post(same_value)
    })??;
    expect_error(&r, 400, -32600, "batch with id \"a\" and \"\\u0061\"")?;
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/list"}))
        .collect();
    let many = Value::Array(many).to_string();
    let r = s.quiet("batch of 101", || alpha.post(many.clone()))??;
    expect_error(&r, 400, -32600, "batch of 101 messages")?;
    Ok(())
}

pub(crate) fn fixation(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, VERSION)?;
    let beta = s.connect(BETA, VERSION)?;
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let expect_404 = |r: &Resp, what: &str| -> Result<(), String> {
        expect_error(r, 404, -32001, what)?;
        let m = r.messages();
        ensure!(
            m.first().and_then(|m| m.get("id")) == Some(&Value::Null),
            "{what}: the id must be null (no oracle): {}",
            r.summary()
        );
        Ok(())
    };
    // An id the sidecar never saw.
    let made_up = "7c1e5f0e-0000-4000-8000-000000000001";
    let r = s.quiet("POST with a made-up session", || {
        beta.post_with(list, &[("mcp-session-id", made_up)])
    })??;
    expect_404(&r, "POST with a made-up Mcp-Session-Id")?;
    // A session the upstream really issued, but not through the sidecar (fixation).
    let direct = Client::connect(&s.upstream.url, None, VERSION)?;
    if let Some(real) = direct.session.as_deref() {
        let r = s.quiet("POST with an upstream-issued session", || {
            beta.post_with(list, &[("mcp-session-id", real)])
        })??;
        expect_404(&r, "POST with a session the upstream issued directly")?;
    }
    // Another principal's session.
    let theirs = alpha.session.clone().ok_or("alpha has no session")?;
    let r = s.quiet("POST with alpha's session as beta", || {
        beta.post_with(list, &[("mcp-session-id", &theirs)])
    })??;
    expect_404(&r, "POST with agent-alpha's session as agent-beta")?;
    let note = r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#;
    let r = s.quiet("notification with a made-up session", || {
        beta.post_with(note, &[("mcp-session-id", made_up)])
    })??;
    expect_error(&r, 404, -32001, "notification with a made-up session")?;
    let r = s.quiet("GET with a made-up session", || {
        beta.bodiless(
            "GET",
            &[("mcp-session-id", made_up), ("accept", "text/event-stream")],
        )
    })??;
    expect_error(&r, 404, -32001, "GET with a made-up session")?;
    let r = s.quiet("DELETE of a made-up session", || {
        beta.bodiless("DELETE", &[("mcp-session-id", made_up)])
    })??;
    expect_error(&r, 404, -32001, "DELETE of a made-up session")?;
    let r = s.quiet("DELETE of alpha's session by beta", || {
        beta.bodiless("DELETE", &[("mcp-session-id", &theirs)])
    })??;
    expect_error(
        &r,
        404,
        -32001,
        "DELETE of agent-alpha's session by agent-beta",
    )?;
    // alpha's session survived.
    let r = alpha.post(list)?;
    ensure!(
        r.status == 200
            && r.reply(&json!(3))
                .is_some_and(|m| m.get("result").is_some()),
        "agent-alpha's session after beta's attempts: {}",
        r.summary()
    );
    Ok(())
}

pub(crate) fn last_event_id(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, VERSION)?;
    let other = s.connect(ALPHA, VERSION)?;
    let beta = s.connect(BETA, VERSION)?;
    let (tool, args) = s.kind.good_call();
    let r = alpha.call(7, tool, &args)?;
    ensure!(succeeded(&r, 7), "{tool} call: {}", r.summary());
    let sealed = r.events().into_iter().find_map(|e| e.id);
    let get = |c: &Client, id: &str| {
        c.bodiless(
            "GET",
            &[("accept", "text/event-stream"), ("last-event-id", id)],
        )
    };
    let mut bad: Vec<(String, &Client)> = vec![
        ("0~0000000000000000".to_owned(), &alpha),
        ("not-issued".to_owned(), &alpha),
    ];
    match &sealed {
        Some(sealed) => {
            let (raw, tag) = sealed.rsplit_once('~').ok_or_else(|| {
                format!("event id {sealed:?} is not sealed (<upstream id>~<MAC>)")
            })?;
            ensure!(
                tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
                "event id {sealed:?}: the MAC is not 16 hex digits"
            );
            bad.push((raw.to_owned(), &alpha));
            bad.push((sealed.clone(), &other));
            bad.push((sealed.clone(), &beta));
            bad.push((format!("{raw}~{}", "0".repeat(16)), &alpha));
        }
        None => eprintln!(
            "[{}] the upstream issues no SSE event ids: only made-up Last-Event-IDs are tried",
            s.kind.name()
        ),
    }
    for (id, client) in &bad {
        let what = format!("GET with Last-Event-ID {id:?}");
        let r = s.quiet(&what, || get(client, id))??;
        expect_error(&r, 400, -32600, &what)?;
    }
    // Control: the session's own sealed id is accepted, and the upstream gets its own id back.
    if let Some(sealed) = &sealed {
        let raw = sealed.rsplit_once('~').unwrap().0;
        let mark = s.tap.count();
        let opened = alpha.open(
            "GET",
            None,
            &[("accept", "text/event-stream"), ("last-event-id", sealed)],
            Some(Duration::from_secs(20)),
        );
        let got = poll(Duration::from_secs(10), || {
            let got = s.tap.since(mark);
            (!got.is_empty()).then_some(got)
        })
        .unwrap_or_default();
        drop(opened);
        ensure!(
            got.iter()
                .any(|g| g.method == "GET" && g.header("last-event-id") == Some(raw)),
            "resuming with the session's own id {sealed:?}: the upstream should get GET with \
             Last-Event-ID {raw:?}; it received: {}",
            describe(&got)
        );
    }
    Ok(())
}

/// A response that answers nothing the server asked this caller, on its session or without
/// one, is refused and never forwarded: no caller answers another's elicitation or sampling.
pub(crate) fn responses(s: &Stack) -> Result<(), String> {
    let beta = s.connect(BETA, VERSION)?;
    let forged =
        r#"{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept","content":{"ok":true}}}"#;
    let sessionless = [("mcp-session-id", ""), ("mcp-protocol-version", "")];
    for (what, extra) in [
        ("a response on beta's session", &[][..]),
        ("a response without a session", &sessionless[..]),
    ] {
        let r = s.quiet(what, || beta.post_with(forged, extra))??;
        expect_error(&r, 400, -32600, what)?;
        ensure!(
            r.text().contains("unsolicited_response"),
            "{what}: the error should say why: {}",
            r.summary()
        );
    }
    Ok(())
}
