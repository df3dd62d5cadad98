//! The bench upstream: a minimal, fast MCP server (Streamable HTTP, JSON responses, stateless),
//! so that the upstream is never the bottleneck of a measurement.
//!
//! ```text
//! POST /mcp {"jsonrpc":"2.0","id":…,"method":…}
//!   initialize  ──► serverInfo + capabilities {tools:{}}            (no Mcp-Session-Id: stateless)
//!   tools/list  ──► N tools: `echo`, `tool_001` … `tool_{N-1}`     (body built once at start)
//!   tools/call  ──► echo: {"content":[{"type":"text","text":<arguments.message>}]}; other names: "ok"
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

    /// The JSON-RPC answer to one request body; `None` for a notification (answered 202).
    pub fn answer(&self, body: &[u8]) -> Option<String> {
        let Ok(req) = serde_json::from_slice::<Request<'_>>(body) else {
            return Some(
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#
                    .to_owned(),
            );
        };
        let id = req.id?.get();
        let result = match req.method {
            "tools/call" => call(req.params),
            "tools/list" => self.tools_list.clone(),
            "initialize" => json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "bench-upstream", "version": env!("CARGO_PKG_VERSION")},
            })
            .to_string(),
            "ping" => "{}".to_owned(),
            other => {
                return Some(format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"unknown method {}"}}}}"#,
                    Value::from(other)
                ));
            }
        };
        Some(format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
        ))
    }
}

fn call(params: Option<&RawValue>) -> String {
    let parsed = params.and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok());
    let text = match &parsed {
        Some(p) if p.name == "echo" => p
            .arguments
            .as_ref()
            .and_then(|a| a.get("message"))
            .and_then(Value::as_str)
            .unwrap_or(""),
        _ => "ok",
    };
    json!({"content": [{"type": "text", "text": text}], "isError": false}).to_string()
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
    Ok(match up.answer(&body) {
        None => reply(StatusCode::ACCEPTED, Bytes::new()),
        Some(json) => {
            let mut r = reply(StatusCode::OK, Bytes::from(json));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
    })
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
}
