//! TLS for tests on loopback: a fresh self-signed certificate for `localhost` (or other names).

use std::sync::Arc;

/// A server configuration (ALPN h2 and http/1.1) and the roots that trust it.
#[derive(Debug)]
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
    self_signed_for(&["localhost"])
}

/// A new self-signed certificate for the DNS `names` (installs ring as rustls' provider first).
pub fn self_signed_for(names: &[&str]) -> SelfSigned {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.cert.der().clone())
        .expect("the certificate is a root");
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()).into();
    let mut server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("a server configuration");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    SelfSigned {
        server: Arc::new(server),
        roots: Arc::new(roots),
        cert_pem: cert.cert.pem(),
        key_pem: cert.signing_key.serialize_pem(),
    }
}
