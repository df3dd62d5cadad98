//! The MCP listener over TLS (rustls), HTTP/2 by ALPN and HTTP/1.1, with the certificate in
//! `tests/fixtures/proxy-tls` (a test CA, `localhost` and 127.0.0.1, valid until 2126).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use mcp_warden_test_support::repo_root;
use proxy_support::*;
use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::sync::Arc;

fn fixture(name: &str) -> std::path::PathBuf {
    repo_root()
        .join("sidecar/tests/fixtures/proxy-tls")
        .join(name)
}

#[tokio::test]
async fn the_listener_serves_tls_with_http2_and_http1() {
    let mock = Mock::empty_results().await;
    let tls =
        mcp_warden_sidecar::tls::server_config(&fixture("server.pem"), &fixture("server.key"))
            .unwrap();
    let proxy = Proxy::start_with_tls(
        settings(&mock.url, "demo/agent-alpha"),
        Some(everything_rules(|t| t)),
        Some(tls),
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(fixture("ca.pem")).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    for (h2, version) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        let connector = if h2 {
            builder.enable_http2().build()
        } else {
            builder.enable_http1().build()
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(h2)
            .build(connector);
        let request = Request::post(format!("https://localhost:{}/mcp", proxy.addr.port()))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"jsonrpc":"2.0","id":1,"result":{}})
        );
    }
}
