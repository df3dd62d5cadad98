//! The proxy in front of a small hyper upstream written here, for scenarios that need exact
//! bytes, exact headers or upstream misbehaviour: SSE pass-through byte for byte, filtering of
//! JSON pages, header forwarding, task ownership, stream ends and disconnects, upstream errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use bytes::Bytes;
use http::Method;
use proxy_support::*;
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const ALPHA: &str = "demo/agent-alpha";
const BETA: &str = "demo/agent-beta";

fn request(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body).unwrap_or(Value::Null)
}

/// An SSE body sent in 7-byte chunks, 2 ms apart.
fn sse_in_chunks(text: String) -> Response {
    let (mut tx, body) = channel_body();
    tokio::spawn(async move {
        for chunk in text.into_bytes().chunks(7) {
            if futures::SinkExt::send(&mut tx, Bytes::copy_from_slice(chunk))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut r = http::Response::new(body);
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

type Response = http::Response<MockBody>;

/// Every SSE feature around a final response event.
fn stream_around(response: &str) -> String {
    [
        "id: prime-0\ndata:\n\n",
        "retry: 1500\n\n",
        ": keep-alive comment\n\n",
        "event: message\r\nid: e-1\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\r\n\r\n",
        "data: {\"jsonrpc\":\"2.0\",\n",
        "data:  \"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"two lines\"}}\n\n",
        "id\nevent\r\r",
        &format!("id: e-2\nevent: message\ndata: {response}\n\n"),
    ]
    .concat()
}

/// The stream as the upstream sent it: every non-empty `id:` value the client got is sealed
/// (`<upstream id>~<16 hex>`, bound to the caller and session); the seal is checked and removed.
fn unsealed(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("id: ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let value = &rest[..end];
        let (raw, tag) = value
            .rsplit_once('~')
            .unwrap_or_else(|| panic!("an event id reached the client unsealed: {value:?}"));
        assert!(
            tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
            "{value:?}"
        );
        out.push_str(raw);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The sealed id the client got for the upstream's event id `raw`.
fn sealed_id(text: &str, raw: &str) -> String {
    let at = text.find(&format!("id: {raw}~")).expect("the sealed id") + 4;
    text[at..at + raw.len() + 17].to_owned()
}

const TOOLS_PAGE: &str = r#"{"jsonrpc":"2.0","id":8,"result":{"tools":[{"name":"get-env","inputSchema":{"type":"object"}},{"name":"echo", "inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"annotations":{"readOnlyHint":true},"_meta":{"z":1,"a":0}}],"nextCursor":"c2"}}"#;

#[tokio::test]
async fn sse_streams_pass_byte_for_byte_and_only_the_list_response_changes() {
    let mock = Mock::start(|seen| {
        let req = request(&seen);
        let response = match req["method"].as_str() {
            Some("tools/list") => TOOLS_PAGE.to_owned(),
            _ => format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, req["id"]),
        };
        sse_in_chunks(stream_around(&response))
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, BETA).await;
    let ping = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    )
    .await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("x-accel-buffering"), Some("no"));
    assert_eq!(
        unsealed(&ping.text()),
        stream_around(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#)
    );
    let list = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#,
    )
    .await;
    let filtered = r#"{"jsonrpc":"2.0","id":8,"result":{"tools":[{"name":"echo", "inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"annotations":{"readOnlyHint":true},"_meta":{"z":1,"a":0}}],"nextCursor":"c2"}}"#;
    assert_eq!(unsealed(&list.text()), stream_around(filtered));
}

#[tokio::test]
async fn json_pages_are_filtered_cursors_kept_and_modern_lists_marked_private() {
    let mock = Mock::start(|seen| {
        let req = request(&seen);
        let (tools, next) = match req["params"]["cursor"].as_str() {
            None => (json!([{"name":"get-env"},{"name":"echo"}]), json!("p2")),
            Some("p2") => (
                json!([{"name":"simulate-research-query"},{"name":"get-env"}]),
                json!("p3"),
            ),
            Some(_) => (
                json!([{"name":"get-sum"},{"name":"x"},{"name":"get-tiny-image"}]),
                Value::Null,
            ),
        };
        let mut result = json!({"tools": tools});
        if !next.is_null() {
            result["nextCursor"] = next;
        }
        if req["params"]["_meta"].is_object() {
            result["ttlMs"] = json!(3_600_000);
            result["cacheScope"] = json!("public");
            result["resultType"] = json!("complete");
        }
        let body = json!({"jsonrpc":"2.0","id":req["id"],"result":result}).to_string();
        respond(200, &[("content-type", "application/json")], body)
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, BETA).await;
    let page = |cursor: Option<&str>| match cursor {
        None => r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_owned(),
        Some(c) => format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"cursor":"{c}"}}}}"#
        ),
    };
    let reply = post(&proxy.url(), &[], &page(None)).await;
    assert_eq!(
        reply.json()["result"],
        json!({"tools":[{"name":"echo"}],"nextCursor":"p2"})
    );
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    let reply = post(&proxy.url(), &[], &page(Some("p2"))).await;
    assert_eq!(
        reply.json()["result"],
        json!({"tools":[],"nextCursor":"p3"}),
        "an emptied page keeps its cursor"
    );
    let reply = post(&proxy.url(), &[], &page(Some("p3"))).await;
    assert_eq!(
        reply.json()["result"],
        json!({"tools":[{"name":"get-sum"},{"name":"get-tiny-image"}]})
    );
    let cursors: Vec<Value> = mock
        .requests()
        .iter()
        .map(|s| request(s)["params"]["cursor"].clone())
        .collect();
    assert_eq!(
        cursors,
        [Value::Null, json!("p2"), json!("p3")],
        "cursors are forwarded as they are"
    );
    let modern = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let reply = post(
        &proxy.url(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        modern,
    )
    .await;
    assert_eq!(
        reply.json()["result"],
        json!({"tools":[{"name":"echo"}],"nextCursor":"p2","ttlMs":60000,"cacheScope":"private","resultType":"complete"})
    );
}

#[tokio::test]
async fn mcp_headers_are_forwarded_hop_by_hop_and_upstream_challenges_are_not() {
    let mock = Mock::start(|seen| match request(&seen)["method"].as_str() {
        Some("tools/call") => respond(
            403,
            &[
                (
                    "www-authenticate",
                    "Bearer resource_metadata=\"http://upstream/prm\"",
                ),
                ("content-type", "application/json"),
            ],
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"upstream says no"}}"#,
        ),
        Some("ping") => respond(
            401,
            &[("www-authenticate", "Bearer realm=\"upstream\"")],
            "",
        ),
        _ => respond(
            200,
            &[
                ("content-type", "text/event-stream"),
                ("x-upstream", "kept"),
                ("mcp-session-id", "s-9"),
            ],
            "",
        ),
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, ALPHA).await;
    let headers = [
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-method", "tools/list"),
        ("mcp-param-region", "=?base64?SGk=?="),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ("accept-encoding", "gzip"),
    ];
    let reply = post(
        &proxy.url(),
        &headers,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("kept"));
    assert_eq!(reply.header("mcp-session-id"), Some("s-9"));
    let seen = mock.requests().pop().unwrap();
    for (name, value) in &headers[..4] {
        assert_eq!(
            seen.headers.get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{name}"
        );
    }
    assert_eq!(
        seen.headers["accept"],
        "application/json, text/event-stream"
    );
    for name in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "accept-encoding",
        "authorization",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} must not reach the upstream"
        );
    }
    assert_eq!(
        seen.headers["host"],
        mock.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
    );
    // GET resumption: a Last-Event-ID the sidecar did not seal for this caller is refused
    // (400) and not forwarded (sealed ids: a_list_response_replayed_on_the_get_stream_…).
    let before = mock.requests().len();
    let get = call(
        Method::GET,
        &proxy.url(),
        &[
            ("accept", "text/event-stream"),
            ("last-event-id", "ev/42:x"),
        ],
        "",
    )
    .await;
    assert_eq!(get.status, 400);
    assert_eq!(mock.requests().len(), before);
    // An upstream 403 keeps its status and body, not its challenge; an upstream 401 is a 502.
    let call_tool =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let reply = post(&proxy.url(), &[], call_tool).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("www-authenticate"), None);
    assert_eq!(reply.json()["error"]["message"], "upstream says no");
    let reply = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("www-authenticate"), None);
    assert_eq!(
        (
            reply.json()["id"].clone(),
            reply.json()["error"]["code"].clone()
        ),
        (json!(2), json!(-32603))
    );
}

#[tokio::test]
async fn tasks_belong_to_the_principal_that_created_them() {
    let mock = Mock::start(|seen| {
        let req = request(&seen);
        let result = match req["method"].as_str().unwrap_or_default() {
            "tools/call" => json!({"task":{"taskId":"task-A","status":"working","ttl":60000}}),
            "tasks/list" => json!({"tasks":[{"taskId":"task-A","status":"working"},{"taskId":"task-X","status":"completed"}],"nextCursor":"n"}),
            "tasks/get" => json!({"taskId":req["params"]["taskId"],"status":"working"}),
            _ => json!({}),
        };
        respond(200, &[("content-type", "application/json")], json!({"jsonrpc":"2.0","id":req["id"],"result":result}).to_string())
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, ALPHA).await;
    let url = proxy.url();
    let create = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"},"task":{"ttl":60000}}}"#;
    assert_eq!(
        post(&url, &[], create).await.json()["result"]["task"]["taskId"],
        "task-A"
    );
    let get = |task: &str, id: u32, method: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{{"taskId":"{task}"}}}}"#
        )
    };
    assert_eq!(
        post(&url, &[], &get("task-A", 2, "tasks/get")).await.json()["result"]["taskId"],
        "task-A"
    );
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tasks/list"}"#;
    assert_eq!(
        post(&url, &[], list).await.json()["result"],
        json!({"tasks":[{"taskId":"task-A","status":"working"}],"nextCursor":"n"})
    );
    let unknown = post(&url, &[], &get("task-X", 4, "tasks/get")).await;
    assert_eq!(
        unknown.json(),
        json!({"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"Unknown task: task-X"}})
    );
    let forwarded = mock.requests().len();
    // Another principal.
    proxy.live.install(everything_rules(|t| {
        t.replace("clientId: agent-alpha", "clientId: agent-alpha-2")
    }));
    for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
        let reply = post(&url, &[], &get("task-A", 5, method)).await;
        assert_eq!(
            (reply.status.as_u16(), reply.json()["error"]["code"].clone()),
            (200, json!(-32602)),
            "{method}"
        );
    }
    assert_eq!(
        mock.requests().len(),
        forwarded,
        "foreign task requests never reach the upstream"
    );
    assert_eq!(
        post(&url, &[], list).await.json()["result"],
        json!({"tasks":[],"nextCursor":"n"})
    );
    // As a notification, a task method would run unanswered: refused.
    let note = post(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","method":"tasks/cancel","params":{"taskId":"task-A"}}"#,
    )
    .await;
    assert_eq!(note.status, 400);
}

/// An SSE response that sends an event every 50 ms (for at most 20 s) and notes when the proxy
/// stops reading it.
fn endless(closed: Arc<Mutex<Option<Instant>>>) -> Response {
    let (mut tx, body) = channel_body();
    tokio::spawn(async move {
        for n in 0..400 {
            let event = format!(
                "id: {n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"n\":{n}}}}}\n\n"
            );
            if futures::SinkExt::send(&mut tx, Bytes::from(event))
                .await
                .is_err()
            {
                *closed.lock().unwrap() = Some(Instant::now());
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut r = http::Response::new(body);
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

#[tokio::test]
async fn a_client_disconnect_closes_the_upstream_stream() {
    let closed = Arc::new(Mutex::new(None));
    let flag = closed.clone();
    let mock = Mock::start(move |_| endless(flag.clone())).await;
    let proxy = Proxy::anonymous(&mock.url, ALPHA).await;
    // Passed through untouched (tools/call) and read event by event (tools/list).
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ] {
        *closed.lock().unwrap() = None;
        let response = send(Method::POST, &proxy.url(), &POST, body).await;
        let frames = read_timed(response, Duration::from_millis(400)).await;
        assert!(frames.len() >= 2, "events stream in: {frames:?}");
        let dropped = Instant::now();
        let deadline = dropped + Duration::from_secs(5);
        while closed.lock().unwrap().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let at = closed
            .lock()
            .unwrap()
            .expect("the upstream stream was closed");
        assert!(
            at - dropped < Duration::from_secs(2),
            "closed after {:?}",
            at - dropped
        );
    }
}

#[tokio::test]
async fn an_upstream_that_ends_its_stream_early_ends_the_clients() {
    let mock = Mock::start(|_| {
        respond(
            200,
            &[("content-type", "text/event-stream")],
            "id: p-1\ndata:\n\nretry: 500\n\n",
        )
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, ALPHA).await;
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ] {
        let reply = post(&proxy.url(), &[], body).await;
        assert_eq!(
            unsealed(&reply.text()),
            "id: p-1\ndata:\n\nretry: 500\n\n",
            "nothing is synthesized"
        );
    }
}

#[tokio::test]
async fn a_list_response_replayed_on_the_get_stream_is_filtered_too() {
    let sessions = Arc::new(Mutex::new(0));
    let counter = sessions.clone();
    let mock = Mock::start(move |seen| {
        let req = request(&seen);
        match (seen.method.as_str(), req["method"].as_str()) {
            ("POST", Some("initialize")) => {
                *counter.lock().unwrap() += 1;
                let sid = format!("sess-{}", counter.lock().unwrap());
                let body = json!({"jsonrpc":"2.0","id":req["id"],"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"m","version":"1"}}});
                respond(200, &[("content-type", "application/json"), ("mcp-session-id", &sid)], body.to_string())
            }
            // The POST stream closes after its priming event (polling); the answer comes later.
            ("POST", Some("tools/list")) => respond(200, &[("content-type", "text/event-stream")], "id: 1\ndata:\n\n"),
            ("GET", _) => respond(
                200,
                &[("content-type", "text/event-stream")],
                "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":11,\"result\":{\"tools\":[{\"name\":\"get-env\"},{\"name\":\"echo\"}]}}\n\n",
            ),
            _ => respond(404, &[("content-type", "application/json")], r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#),
        }
    })
    .await;
    let proxy = Proxy::anonymous(&mock.url, BETA).await;
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let reply = post(&proxy.url(), &[], init).await;
    let sid = reply.header("mcp-session-id").unwrap().to_owned();
    let session = [("mcp-session-id", sid.as_str())];
    let list = post(
        &proxy.url(),
        &session,
        r#"{"jsonrpc":"2.0","id":11,"method":"tools/list"}"#,
    )
    .await;
    let text = list.text();
    assert_eq!(unsealed(&text), "id: 1\ndata:\n\n");
    // Resumed with the id the client got: the upstream gets its own id back, and the replayed
    // answer (id 11, remembered by the session as a tools/list) is filtered.
    let last = sealed_id(&text, "1");
    let resumed = call(
        Method::GET,
        &proxy.url(),
        &[
            ("accept", "text/event-stream"),
            ("last-event-id", &last),
            ("mcp-session-id", &sid),
        ],
        "",
    )
    .await;
    assert_eq!(mock.requests().pop().unwrap().headers["last-event-id"], "1");
    // The raw upstream id, or another session's, is refused and not forwarded.
    let forwarded = mock.requests().len();
    for forged in ["1", last.replace("1~", "2~").as_str()] {
        let refused = call(
            Method::GET,
            &proxy.url(),
            &[
                ("accept", "text/event-stream"),
                ("last-event-id", forged),
                ("mcp-session-id", &sid),
            ],
            "",
        )
        .await;
        assert_eq!(refused.status, 400, "{forged}");
    }
    assert_eq!(mock.requests().len(), forwarded);
    assert_eq!(
        unsealed(&resumed.text()),
        "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":11,\"result\":{\"tools\":[{\"name\":\"echo\"}]}}\n\n"
    );
    // The upstream's 404 ends the binding: the proxy no longer answers for that session.
    let gone = post(
        &proxy.url(),
        &session,
        r#"{"jsonrpc":"2.0","id":12,"method":"ping"}"#,
    )
    .await;
    assert_eq!(gone.status, 404);
    proxy.live.install(everything_rules(|t| {
        t.replace("clientId: agent-beta", "clientId: agent-beta-2")
    }));
    let before = mock.requests().len();
    let other = post(
        &proxy.url(),
        &session,
        r#"{"jsonrpc":"2.0","id":13,"method":"ping"}"#,
    )
    .await;
    // A session the sidecar does not know for this caller is never forwarded (not adopted).
    assert_eq!(other.status, 404);
    assert_eq!(mock.requests().len(), before, "the proxy answered");
}

#[tokio::test]
async fn upstream_failures_are_json_rpc_errors() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/mcp", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut s = settings(&silent_url, ALPHA);
    s.upstream_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(s, Some(everything_rules(|t| t))).await;
    let started = Instant::now();
    let reply = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 504);
    assert_eq!(
        (
            reply.json()["id"].clone(),
            reply.json()["error"]["code"].clone()
        ),
        (json!(1), json!(-32603))
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
    // A port bound but not listening: connections are refused, and no other test can take it
    // (a merely free port could be, and answer for it).
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let proxy = Proxy::anonymous(&format!("http://127.0.0.1:{port}/mcp"), ALPHA).await;
    let reply = post(
        &proxy.url(),
        &[],
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"]["code"], -32603);
}

#[tokio::test]
async fn an_oversized_chunked_body_is_refused_while_it_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mock = Mock::start(|_| respond(200, &[("content-type", "application/json")], "{}")).await;
    let mut s = settings(&mock.url, ALPHA);
    s.max_body_bytes = 1000;
    let proxy = Proxy::start(s, Some(everything_rules(|t| t))).await;
    let mut socket = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..3 {
        let chunk = format!("{:x}\r\n{}\r\n", 600, "a".repeat(600));
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":-32600"), "{answer}");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_open_streams_after_the_grace_period() {
    use http_body_util::BodyExt;
    use mcp_warden_sidecar::{auth::Authenticator, metrics::Metrics, proxy, state::Live};
    let closed = Arc::new(Mutex::new(None));
    let flag = closed.clone();
    let mock = Mock::start(move |_| endless(flag.clone())).await;
    let live = Arc::new(Live::default());
    live.install(everything_rules(|t| t));
    let mut settings = settings(&mock.url, ALPHA);
    settings.shutdown_grace = Duration::from_millis(500);
    let shared = Arc::new(proxy::Shared {
        live,
        auth: Authenticator::new(),
        settings,
        quotas: mcp_warden_sidecar::quota::Quotas::new(
            Default::default(),
            &prometheus::Registry::new(),
        )
        .unwrap(),
        metrics: Metrics::new(),
        audit: None,
        usage: None,
        upstream_auth: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(proxy::serve(listener, None, shared, async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/mcp");
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let mut stream = send(Method::POST, &url, &POST, body).await.into_body();
    assert!(stream.frame().await.is_some());
    let asked = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns")
        .unwrap()
        .unwrap();
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = stream.frame().await {}
    })
    .await;
    assert!(ended.is_ok(), "the open stream is closed");
}

#[tokio::test]
async fn upstream_answers_share_a_bounded_room_and_what_does_not_fit_is_withheld() {
    const MIB: usize = 1024 * 1024;
    // The upstream answers each tools/call with a result of `size` bytes; `slow` answers send
    // their last byte only when the test says so.
    let held: Arc<Mutex<Vec<futures::channel::mpsc::Sender<Bytes>>>> = Arc::default();
    let senders = held.clone();
    let mock = Mock::start(move |seen| {
        let req = request(&seen);
        let size = req["params"]["arguments"]["size"].as_u64().unwrap_or(0) as usize;
        let text = json!({"jsonrpc": "2.0", "id": req["id"],
                          "result": {"content": [{"type": "text", "text": "x".repeat(size)}]}})
        .to_string();
        if req["params"]["arguments"]["slow"] != json!(true) {
            return respond(200, &[("content-type", "application/json")], text);
        }
        let (tx, body) = channel_body();
        // All but the closing brace now; the test sends that.
        let head = Bytes::from(text[..text.len() - 1].to_owned());
        let mut first = tx.clone();
        tokio::spawn(async move {
            let _ = futures::SinkExt::send(&mut first, head).await;
        });
        senders.lock().unwrap().push(tx);
        let mut r = http::Response::new(body);
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
    .await;
    // 8 MiB for all answers: one answer may hold 2 MiB (each byte counted 4 times).
    let mut s = settings(&mock.url, ALPHA);
    s.max_answer_bytes_in_flight = 8 * MIB;
    s.body_read_timeout = Duration::from_millis(300);
    let proxy = Proxy::start(s, Some(everything_rules(|t| t))).await;
    let call = |id: u64, size: usize, slow: bool| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"size": size, "slow": slow}}})
        .to_string()
    };
    // Within its share: passes whole.
    let small = post(&proxy.url(), &[], &call(1, MIB, false)).await;
    assert_eq!(small.status, 200);
    assert_eq!(
        small.answer(&1.into())["result"]["content"][0]["text"]
            .as_str()
            .map(str::len),
        Some(MIB)
    );
    // Above one answer's share: withheld, the caller told why, nothing of it passed on.
    let large = post(&proxy.url(), &[], &call(2, 3 * MIB, false)).await;
    let error = &large.answer(&2.into())["error"];
    assert_eq!(error["code"], -32603, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("larger than the 2097152 bytes"),
        "{message}"
    );
    assert!(large.body.len() < 4096, "{} bytes", large.body.len());
    // Two answers of 1.5 MiB (6 MiB of room each) do not fit at once: while the first is still
    // arriving, the second waits, finds no room within the wait, and is withheld.
    let url = proxy.url();
    let first = tokio::spawn({
        let url = url.clone();
        let body = call(3, 3 * MIB / 2, true);
        async move { post(&url, &[], &body).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the first answer never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = post(&url, &[], &call(4, 3 * MIB / 2, false)).await;
    let error = &second.answer(&4.into())["error"];
    assert_eq!(error["code"], -32603, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("no room to inspect it now"), "{message}");
    // The first completes, and its room is given back: the same answer now passes.
    let mut tx = held.lock().unwrap().pop().unwrap();
    futures::SinkExt::send(&mut tx, Bytes::from_static(b"}"))
        .await
        .unwrap();
    drop(tx);
    let first = first.await.unwrap();
    assert!(
        first.answer(&3.into()).get("result").is_some(),
        "{}",
        first.text()
    );
    let again = post(&url, &[], &call(5, 3 * MIB / 2, false)).await;
    assert!(
        again.answer(&5.into()).get("result").is_some(),
        "{}",
        again.text()
    );
}
