//! Admin endpoints on their own port: `/ready` (200 once a valid configuration is in force),
//! `/live` (200 while the process serves), `/metrics` (Prometheus text format),
//! `/.well-known/jwks.json` (the public keys of the upstream identity JWT, for the upstream).

use crate::{metrics::Metrics, state::Live, upstream_auth::Keys};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::{convert::Infallible, sync::Arc};
use tokio::net::TcpListener;

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, live: Arc<Live>, metrics: Metrics, keys: Arc<Keys>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (live, metrics, keys) = (live.clone(), metrics.clone(), keys.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = respond(&req, &live, &metrics, &keys);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    req: &Request<Incoming>,
    live: &Live,
    metrics: &Metrics,
    keys: &Keys,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, content_type: &'static str| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n".into(),
            "text/plain",
        );
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n".into(), "text/plain"),
        "/ready" if live.is_ready() => text(StatusCode::OK, "ready\n".into(), "text/plain"),
        "/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no valid configuration yet\n".into(),
            "text/plain",
        ),
        "/metrics" => text(
            StatusCode::OK,
            metrics.encode(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/.well-known/jwks.json" => {
            let mut r = text(StatusCode::OK, keys.jwks().to_string(), "application/json");
            // Short: a rotated key must be fetched within the overlap (upstream_auth::keys).
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("max-age=30"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}
