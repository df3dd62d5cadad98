//! HTTPS on loopback for tests: an HTTP/1.1 client connection to 127.0.0.1 that trusts only the
//! certificate of `mcp_warden_test_support::tls::self_signed`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use std::sync::Arc;

/// A TLS connection to `127.0.0.1:<port>`, verified as `localhost`, offering `alpn`.
pub async fn tls_stream(
    port: u16,
    roots: &Arc<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// An HTTP/1.1 connection over TLS to `127.0.0.1:<port>`, verified as `localhost`.
pub async fn connect(port: u16, roots: &Arc<rustls::RootCertStore>) -> SendRequest<Full<Bytes>> {
    let tls = tls_stream(port, roots, &[]).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}
