//! The admin port: `/metrics` (Prometheus text), `/ready` (every watch listed once), `/live`.

use crate::{index::Index, metrics::Metrics, watch::InvalidObjects};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;

/// Whether the operator is ready to serve (the push API answers from a complete index).
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    ready: ReadyCheck,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |req: Request<hyper::body::Incoming>| {
        let response = answer(&req, &metrics, &ready);
        async move { response }
    };
    crate::serve::connections(listener, None, handler, shutdown).await;
}

fn answer<B>(req: &Request<B>, metrics: &Metrics, ready: &ReadyCheck) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("static response parts are valid")
    };
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        "/live" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" if ready() => text(StatusCode::OK, "text/plain", "ready\n".into()),
        "/ready" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "waiting for the first list of every watch\n".into(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "serves /metrics, /ready, /live\n".into(),
        ),
    }
}

/// Every `period`: refreshes the gauges read from the index (objects by kind, connected
/// sidecars, bundles pushed, invalid objects) and drops channels nobody listens to any more.
pub async fn refresh(index: Index, invalid: InvalidObjects, metrics: Metrics, period: Duration) {
    let mut published = 0;
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        index.prune();
        let ((tools, clients, policies), connected) = index.counts();
        let pods = index.pods().len();
        for (kind, n) in [
            ("McpTool", tools),
            ("McpClient", clients),
            ("McpPolicy", policies),
            ("Pod", pods),
        ] {
            metrics
                .watched_objects
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        metrics
            .connected_sidecars
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
        let now = index.published();
        metrics.bundles_pushed.inc_by(now.saturating_sub(published));
        published = now;
        let invalid = invalid.snapshot();
        for kind in ["McpTool", "McpClient", "McpPolicy"] {
            let n = invalid.keys().filter(|r| r.kind.as_str() == kind).count();
            metrics
                .invalid_objects
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
