//! The bench upstream: a minimal, fast MCP server (Streamable HTTP, JSON responses, stateless),
//! so that the upstream is never the bottleneck of a measurement.
//!
//! ```text
//! POST /mcp {"jsonrpc":"2.0","id":…,"method":…}
//!   initialize  ──► serverInfo + capabilities {tools:{}}            (no Mcp-Session-Id: stateless)
//!   tools/list  ──► N tools: `echo`, `tool_001` … `tool_{N-1}`     (body built once at start)
//!   tools/call  ──► echo: {"content":[{"type":"text","text":<arguments.message>}]}; other names: "ok"
//!               arguments.shape "big":      a 100 KiB text (BIG_TEXT_BYTES)
//!               arguments.shape "progress": an SSE stream, 100 notifications/progress for the
//!                                           request's _meta.progressToken, then the result
//!   ping        ──► {}
//!   notification (no id) ──► 202, anything else ──► -32601
//! ```

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use std::{convert::Infallible, sync::Arc};
use tokio::net::TcpListener;

/// The upstream's fixed answers.
#[derive(Debug)]
pub struct Upstream {
    /// `"result":{…}` of `tools/list`, serialized once.
    tools_list: String,
}

/// The name of the `i`-th tool (0 is `echo`).
pub fn tool_name(i: usize) -> String {
    if i == 0 {
        "echo".to_owned()
    } else {
        format!("tool_{i:03}")
    }
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: &'a str,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    name: &'a str,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default, rename = "_meta")]
    meta: Option<Value>,
}

/// Bytes of text the `big` shape answers (`arguments.shape = "big"`).
pub const BIG_TEXT_BYTES: usize = 100 * 1024;
/// Progress notifications the `progress` shape streams before its result.
pub const PROGRESS_EVENTS: u32 = 100;

/// An answer to a request: a JSON body, or an SSE stream (`text/event-stream`).
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `application/json`.
    Json(String),
    /// `text/event-stream`: progress events, then the answer.
    Sse(String),
}

impl Upstream {
    /// An upstream listing `tools` tools.
    pub fn new(tools: usize) -> Self {
        let list: Vec<Value> = (0..tools.max(1))
            .map(|i| {
                json!({
                    "name": tool_name(i),
                    "description": format!("bench tool {i}"),
                    "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}},
                })
            })
            .collect();
        Self {
            tools_list: json!({"tools": list}).to_string(),
        }
    }

    /// The JSON-RPC answer to one request body (as JSON, or the SSE stream's text for the
    /// `progress` shape); `None` for a notification (answered 202).
    pub fn answer(&self, body: &[u8]) -> Option<String> {
        match self.reply(body)? {
            Reply::Json(s) | Reply::Sse(s) => Some(s),
        }
    }

    /// The answer to one request body; `None` for a notification (answered 202).
    pub fn reply(&self, body: &[u8]) -> Option<Reply> {
        let Ok(req) = serde_json::from_slice::<Request<'_>>(body) else {
            return Some(Reply::Json(
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
                    .to_owned(),
            ));
        };
        let id = req.id?.get();
        let result = match req.method {
            "tools/call" => {
                let (result, progress) = call(req.params);
                if let Some(token) = progress {
                    return Some(Reply::Sse(progress_stream(id, &token, &result)));
                }
                result
            }
            "tools/list" => self.tools_list.clone(),
            "initialize" => json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-upstream", "version": env!("CARGO_PKG_VERSION")},
            })
            .to_string(),
            "ping" => "{}".to_owned(),
            other => {
                return Some(Reply::Json(format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"unknown method {}"}}}}"#,
                    Value::from(other)
                )));
            }
        };
        Some(Reply::Json(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
        )))
    }
}

/// The `progress` shape: [`PROGRESS_EVENTS`] progress notifications, then the answer, as SSE.
fn progress_stream(id: &str, token: &Value, result: &str) -> String {
    let mut out = String::new();
    for i in 1..=PROGRESS_EVENTS {
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": token, "progress": i, "total": PROGRESS_EVENTS},
        });
        out.push_str(&format!("event: message\ndata: {note}\n\n"));
    }
    out.push_str(&format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}\n\n"
    ));
    out
}

/// The result of a `tools/call`, and the progress token when it asks for the `progress` shape.
fn call(params: Option<&RawValue>) -> (String, Option<Value>) {
    let parsed = params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok());
    let arg = |k: &str| {
        parsed
            .as_ref()
            .and_then(|p| p.arguments.as_ref()?.get(k)?.as_str())
    };
    let text = match (&parsed, arg("shape")) {
        (Some(p), Some("big")) if p.name == "echo" => "x".repeat(BIG_TEXT_BYTES),
        (Some(p), _) if p.name == "echo" => arg("message").unwrap_or("").to_owned(),
        _ => "ok".to_owned(),
    };
    let progress = match (&parsed, arg("shape")) {
        (Some(p), Some("progress")) => Some(
            p.meta
                .as_ref()
                .and_then(|m| m.get("progressToken"))
                .cloned()
                .unwrap_or_else(|| json!(1)),
        ),
        _ => None,
    };
    let result = json!({"content": [{"type": "text", "text": text}], "isError": false});
    (result.to_string(), progress)
}

async fn handle(
    up: Arc<Upstream>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST, Bytes::new())),
    };
    let (body, content_type) = match up.reply(&body) {
        None => return Ok(reply(StatusCode::ACCEPTED, Bytes::new())),
        Some(Reply::Json(json)) => (json, "application/json"),
        Some(Reply::Sse(stream)) => (stream, "text/event-stream"),
    };
    let mut r = reply(StatusCode::OK, Bytes::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    Ok(r)
}

/// Serves `upstream` on `listener` until the process ends (HTTP/1.1, keep-alive).
pub async fn serve(listener: TcpListener, upstream: Upstream) {
    let upstream = Arc::new(upstream);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let up = upstream.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(up.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_each_method() {
        let up = Upstream::new(20);
        let list: Value = serde_json::from_str(
            &up.answer(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)
                .expect("answer"),
        )
        .expect("json");
        assert_eq!(list["id"], 7);
        assert_eq!(list["result"]["tools"].as_array().map(Vec::len), Some(20));
        assert_eq!(list["result"]["tools"][19]["name"], "tool_019");
        let echo: Value = serde_json::from_str(
            &up.answer(br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#)
                .expect("answer"),
        )
        .expect("json");
        assert_eq!(echo["id"], "a");
        assert_eq!(echo["result"]["content"][0]["text"], "hi");
        assert!(
            up.answer(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .is_none()
        );
        let err: Value = serde_json::from_str(&up.answer(b"{").expect("answer")).expect("json");
        assert_eq!(err["error"]["code"], -32700);
    }

    #[test]
    fn the_big_and_progress_shapes() {
        let up = Upstream::new(2);
        let big: Value = serde_json::from_str(
            &up.answer(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","shape":"big"}}}"#)
                .expect("answer"),
        )
        .expect("json");
        assert_eq!(
            big["result"]["content"][0]["text"].as_str().map(str::len),
            Some(BIG_TEXT_BYTES)
        );
        let Some(Reply::Sse(stream)) = up.reply(br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi","shape":"progress"},"_meta":{"progressToken":"t"}}}"#) else {
            panic!("an SSE stream");
        };
        let events: Vec<Value> = stream
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).expect("json"))
            .collect();
        assert_eq!(events.len(), PROGRESS_EVENTS as usize + 1);
        assert_eq!(events[0]["params"]["progressToken"], "t");
        assert_eq!(events[99]["params"]["progress"], 100);
        assert_eq!(events[100]["id"], 2);
        assert_eq!(events[100]["result"]["content"][0]["text"], "hi");
    }
}
