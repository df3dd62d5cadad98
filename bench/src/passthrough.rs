//! The floor: a bare HTTP/1.1 pass-through proxy with no governance at all, measured the same way
//! as the sidecar, so that the report can say how much of the added latency any proxy in the same
//! place pays on this machine (one more loopback hop each way and two more cross-CPU wake-ups).
//!
//! ```text
//! client ──POST──► passthrough (CPU 0) ──POST──► upstream (CPU 1)
//!         ◄─────── whole body read, headers copied, one pooled keep-alive client ◄──
//! ```
//!
//! It does what every proxy in front of an MCP server must do at least: read the whole request
//! body (the sidecar parses it), forward it with the end-to-end headers, read the whole answer
//! and return it. Nothing else: no parsing, no TLS, no logging.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// Headers that belong to one connection and are not forwarded (RFC 9110, 7.6.1).
const HOP_BY_HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// The end-to-end headers of a message (hyper sets `Host` and `Content-Length` itself).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(k, _)| {
            !HOP_BY_HOP.contains(k) && *k != header::HOST && *k != header::CONTENT_LENGTH
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn forward(
    client: Upstream,
    target: Arc<Uri>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let fail = |status: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        Ok(r)
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return fail(StatusCode::BAD_REQUEST);
    };
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = parts.method;
    *out.uri_mut() = (*target).clone();
    *out.headers_mut() = end_to_end(&parts.headers);
    let Ok(answer) = client.request(out).await else {
        return fail(StatusCode::BAD_GATEWAY);
    };
    let (parts, body) = answer.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return fail(StatusCode::BAD_GATEWAY);
    };
    let mut back = Response::new(Full::new(body));
    *back.status_mut() = parts.status;
    *back.headers_mut() = end_to_end(&parts.headers);
    Ok(back)
}

/// Serves on `listener`, forwarding every request to `target`, until the process ends.
pub async fn serve(listener: TcpListener, target: Uri) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // The sidecar's client settings (`proxy/upstream.rs`), without TLS.
    let client: Upstream = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let target = Arc::new(target);
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (client, target) = (client.clone(), target.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), target.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{self, Upstream as McpUpstream};

    #[tokio::test]
    async fn forwards_a_call_and_its_answer() {
        let up = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let up_addr = up.local_addr().expect("addr");
        tokio::spawn(upstream::serve(up, McpUpstream::new(20)));
        let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy_addr = proxy.local_addr().expect("addr");
        let target: Uri = format!("http://{up_addr}/mcp").parse().expect("uri");
        tokio::spawn(serve(proxy, target));

        let client: Upstream = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"through"}}}"#;
        let req = Request::post(format!("http://{proxy_addr}/mcp"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let answer = client.request(req).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            answer
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let bytes = answer.into_body().collect().await.expect("body").to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["id"], 3);
        assert_eq!(json["result"]["content"][0]["text"], "through");
    }
}
