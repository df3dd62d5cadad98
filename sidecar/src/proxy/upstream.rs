//! The connection to the governed MCP server.
//!
//! ```text
//! Upstream::send(method, url, query, headers, body)
//!   ──► hyper-util pooled client, rustls (ring; native roots, else webpki roots; ALPN h2/http1)
//!   ──► response headers within `upstream_timeout`, else Timeout (504)
//!   ◄── Response<Incoming>: the body streams with no time limit; dropping it (the client went
//!       away) closes the upstream stream, which a 2026-07-28 server treats as cancellation
//! ```
//!
//! The client's token never goes upstream (AUTH-10): `headers::to_upstream` removed it.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Why the upstream could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The configured URL is not usable.
    #[error("Bad gateway: invalid upstream URL {0:?}")]
    Url(String),
    /// Connecting or sending failed.
    #[error("Bad gateway: the upstream MCP server is unreachable ({0})")]
    Unreachable(String),
    /// The credentials the McpTool's `upstreamAuth` asks for could not be produced: nothing
    /// was sent (`upstream_auth`).
    #[error(
        "Bad gateway: the sidecar cannot authenticate this call to the upstream MCP server: {0}"
    )]
    Auth(String),
    /// No response headers in time.
    #[error("Gateway timeout: the upstream MCP server sent no response within {0:?}")]
    Timeout(Duration),
}

/// A pooled HTTP(S) client for the upstream.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Upstream {
    /// A client whose requests wait at most `timeout` for response headers.
    pub fn new(timeout: Duration) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "no usable system CA certificates; using the webpki roots");
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(provider)
                    .expect("ring supports rustls' default protocol versions")
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(30))));
        let connector = builder
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self { client, timeout }
    }

    /// Sends one request; returns the response once its headers arrived, and how long that took.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(Response<Incoming>, Duration), UpstreamError> {
        let uri = target(url, query)?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(UpstreamError::Unreachable(error_chain(&e))),
            Ok(Ok(response)) => Ok((response, started.elapsed())),
        }
    }
}

/// The upstream URL with the client's query string appended.
fn target(url: &str, query: Option<&str>) -> Result<Uri, UpstreamError> {
    let full = match query.filter(|q| !q.is_empty()) {
        Some(q) if url.contains('?') => format!("{url}&{q}"),
        Some(q) => format!("{url}?{q}"),
        None => url.to_owned(),
    };
    let uri: Uri = full
        .parse()
        .map_err(|_| UpstreamError::Url(url.to_owned()))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(UpstreamError::Url(url.to_owned())),
    }
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_upstream_path_and_add_the_query() {
        assert_eq!(
            target("http://127.0.0.1:3001/mcp", None).unwrap(),
            "http://127.0.0.1:3001/mcp"
        );
        assert_eq!(
            target("http://h/mcp", Some("a=1")).unwrap(),
            "http://h/mcp?a=1"
        );
        assert_eq!(
            target("https://h/mcp?x=y", Some("a=1")).unwrap(),
            "https://h/mcp?x=y&a=1"
        );
        assert!(matches!(
            target("ftp://h/x", None),
            Err(UpstreamError::Url(_))
        ));
        assert!(matches!(
            target("not a url", None),
            Err(UpstreamError::Url(_))
        ));
        assert!(matches!(
            target("/relative", None),
            Err(UpstreamError::Url(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_reported_not_panicked() {
        // Bind then drop a listener: the port is free and refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = Upstream::new(Duration::from_secs(5));
        let url = format!("http://127.0.0.1:{port}/mcp");
        let err = upstream
            .send(Method::GET, &url, None, HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out_on_headers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let upstream = Upstream::new(Duration::from_millis(200));
        let err = upstream
            .send(Method::GET, &url, None, HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err, UpstreamError::Timeout(Duration::from_millis(200)));
        hold.abort();
    }
}
