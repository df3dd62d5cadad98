//! HTTPS on loopback for tests: a fresh self-signed certificate for `localhost`, and an
//! HTTP/1.1 client connection to 127.0.0.1 that trusts only it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use std::sync::Arc;

/// A server configuration (ALPN h2 and http/1.1) and the roots that trust it.
pub struct SelfSigned {
    /// For the server under test.
    pub server: Arc<rustls::ServerConfig>,
    /// For the client.
    pub roots: Arc<rustls::RootCertStore>,
    /// The certificate, PEM (for `--tls-cert`, or as a CA file).
    pub cert_pem: String,
    /// The private key, PEM (for `--tls-key`).
    pub key_pem: String,
}

/// A new self-signed certificate for `localhost` (installs ring as rustls' provider first).
pub fn self_signed() -> SelfSigned {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()).into();
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    SelfSigned {
        server: Arc::new(server),
        roots: Arc::new(roots),
        cert_pem: cert.cert.pem(),
        key_pem: cert.signing_key.serialize_pem(),
    }
}

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
