//! A tiny static OIDC issuer on 127.0.0.1: discovery and the JWKS, nothing else (the tokens are
//! minted offline by [`crate::fixture`]).
//!
//! ```text
//! issuers.json [{issuer: "http://127.0.0.1:<port>", jwks}] ──► one listener per issuer port
//!   GET /.well-known/openid-configuration | /.well-known/oauth-authorization-server
//!       ──► {"issuer": …, "jwks_uri": "<issuer>/jwks"}
//!   GET /jwks ──► the public JWKS
//! ```

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::{convert::Infallible, net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

/// One issuer's two documents.
#[derive(Debug)]
struct Documents {
    discovery: Bytes,
    jwks: Bytes,
}

fn answer(docs: &Documents, path: &str) -> Response<Full<Bytes>> {
    let body = match path {
        "/.well-known/openid-configuration" | "/.well-known/oauth-authorization-server" => {
            docs.discovery.clone()
        }
        "/jwks" => docs.jwks.clone(),
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves every issuer of `issuers` (the `issuers.json` array) on its own loopback port, until
/// the process ends. Fails when an issuer is not `http://127.0.0.1:<port>`.
pub async fn serve(issuers: &Value) -> Result<(), String> {
    let list = issuers.as_array().ok_or("issuers.json is not an array")?;
    let mut tasks = Vec::new();
    for entry in list {
        let issuer = entry["issuer"]
            .as_str()
            .ok_or("an issuer without `issuer`")?;
        let addr: SocketAddr = issuer
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .filter(|a: &SocketAddr| a.ip().is_loopback())
            .ok_or_else(|| format!("{issuer} is not http://127.0.0.1:<port>"))?;
        let docs = Arc::new(Documents {
            discovery: Bytes::from(
                json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string(),
            ),
            jwks: Bytes::from(entry["jwks"].to_string()),
        });
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let docs = docs.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<Incoming>| {
                        let r = answer(&docs, req.uri().path());
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
