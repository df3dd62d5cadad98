//! The sidecar's HTTPS connection to the operator, shared by the bundle stream and the usage
//! reports.
//!
//! ```text
//! --operator https://mcp-warden-operator.mcp-warden.svc:8443
//! --operator-ca <pem file> | MCP_WARDEN_OPERATOR_CA=<pem> ──► trust exactly that CA
//!                            (neither)                    ──► the system's roots
//! --token-file <projected SA token> ──► re-read for every request (the kubelet rotates it)
//!                                       ──► Authorization: Bearer … (never logged)
//! --operator-connect-to <ip:port>    ──► TCP to that address instead of the URL's host and
//!                                       port; TLS still verifies the URL's host name (curl's
//!                                       --connect-to): for a test playing the kubelet on a
//!                                       host that cannot resolve the Service's name
//! ```

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
};

/// Why the link to the operator cannot be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The CA given to trust is not usable.
    #[error("the operator CA is unusable: {0}")]
    Ca(String),
    /// `--operator` is not an http(s) URL.
    #[error("bad --operator URL {url:?}: {message}")]
    Url {
        /// What was given.
        url: String,
        /// Why it does not parse.
        message: String,
    },
    /// The request cannot be built (a header the token file holds is not valid).
    #[error("cannot build the request: {0}")]
    Request(String),
    /// `--operator-connect-to` would send the token in clear off the host.
    #[error(
        "--operator-connect-to {0}: an http operator URL may only be redirected to a loopback address"
    )]
    ConnectTo(SocketAddr),
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {message}")]
    Token {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// The certificates the operator's serving certificate must chain to.
#[derive(Clone, Debug, Default)]
pub enum Trust {
    /// The system's roots (native, else the Mozilla bundle).
    #[default]
    System,
    /// Exactly these PEM CA certificates.
    Pem(Vec<u8>),
}

type HttpsClient = Client<HttpsConnector<Dial>, Full<Bytes>>;

/// A client of one operator.
#[derive(Clone, Debug)]
pub struct Link {
    base: url::Url,
    token_file: Option<PathBuf>,
    client: HttpsClient,
    trust: Trust,
    connect_to: Option<SocketAddr>,
}

/// The TCP connections under the TLS layer: to the URL's host and port, or to one fixed address
/// (`--operator-connect-to`). The TLS layer above still gets the URL and checks its host name.
#[derive(Clone, Debug)]
struct Dial {
    tcp: HttpConnector,
    /// `http://<--operator-connect-to>/`, when given.
    to: Option<Uri>,
}

impl Dial {
    fn new(connect_to: Option<SocketAddr>) -> Self {
        let mut tcp = HttpConnector::new();
        // The TLS layer decides the scheme; this one only dials.
        tcp.enforce_http(false);
        Self {
            tcp,
            to: connect_to.and_then(|addr| format!("http://{addr}/").parse().ok()),
        }
    }
}

impl tower::Service<Uri> for Dial {
    type Response = <HttpConnector as tower::Service<Uri>>::Response;
    type Error = <HttpConnector as tower::Service<Uri>>::Error;
    type Future = <HttpConnector as tower::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        self.tcp.call(self.to.clone().unwrap_or(dst))
    }
}

impl Link {
    /// A link to the operator at `base`, trusting `trust`, authenticating with the token in
    /// `token_file` when given.
    pub fn new(base: &str, trust: &Trust, token_file: Option<PathBuf>) -> Result<Self, LinkError> {
        let url_error = |message: String| LinkError::Url {
            url: base.to_owned(),
            message,
        };
        let parsed = url::Url::parse(base).map_err(|e| url_error(e.to_string()))?;
        match parsed.scheme() {
            "https" => {}
            // The token and every bundle would cross the network in clear: only a loopback
            // operator (a test, or a node-local proxy) may be reached over http.
            "http" if is_loopback(&parsed) => {}
            "http" => {
                return Err(url_error(
                    "http is allowed only for a loopback operator (127.0.0.0/8, ::1, localhost); use https"
                        .into(),
                ));
            }
            _ => return Err(url_error("the scheme must be https".into())),
        }
        let connector = connector(trust, None)?;
        Ok(Self {
            base: parsed,
            token_file,
            client: Client::builder(TokioExecutor::new()).build(connector),
            trust: trust.clone(),
            connect_to: None,
        })
    }

    /// The same operator, reached at `addr` instead of the URL's host and port; the operator's
    /// certificate is still checked for the URL's host name (`--operator-connect-to`, like curl's
    /// `--connect-to`). An http URL may only be redirected to a loopback address.
    pub fn connecting_to(self, addr: SocketAddr) -> Result<Self, LinkError> {
        if self.base.scheme() == "http" && !addr.ip().is_loopback() {
            return Err(LinkError::ConnectTo(addr));
        }
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .build(connector(&self.trust, Some(addr))?),
            connect_to: Some(addr),
            ..self
        })
    }

    /// The same operator, with a new connection for every request (no pooling): each request is
    /// balanced anew across the operator's replicas by its Service. For usage reports, which
    /// only the leader takes.
    pub fn unpooled(&self) -> Result<Self, LinkError> {
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(connector(&self.trust, self.connect_to)?),
            ..self.clone()
        })
    }

    /// `{base}/{path}` with the query pairs.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> url::Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A request with the bearer token (read now), ready for [`Link::send`].
    pub fn request(
        &self,
        method: Method,
        url: &url::Url,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, LinkError> {
        let mut request = Request::builder().method(method).uri(url.as_str());
        if let Some(file) = &self.token_file {
            let token = std::fs::read_to_string(file).map_err(|e| LinkError::Token {
                path: file.display().to_string(),
                message: e.to_string(),
            })?;
            request = request.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.trim()),
            );
        }
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        request
            .body(Full::new(body))
            .map_err(|e| LinkError::Request(e.to_string()))
    }

    /// Sends a request.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        self.client.request(request).await.map_err(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e).map_or_else(String::new, ToString::to_string)
            )
        })
    }

    /// The operator's base URL (for logs).
    pub fn base(&self) -> &str {
        self.base.as_str()
    }
}

fn connector(
    trust: &Trust,
    connect_to: Option<SocketAddr>,
) -> Result<HttpsConnector<Dial>, LinkError> {
    let ring = || rustls::crypto::ring::default_provider();
    let builder = match trust {
        Trust::System => HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(ring())
            .or_else(|_| HttpsConnectorBuilder::new().with_provider_and_webpki_roots(ring()))
            .map_err(|e| LinkError::Ca(e.to_string()))?,
        Trust::Pem(pem) => HttpsConnectorBuilder::new().with_tls_config(client_config(pem)?),
    };
    Ok(builder
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(Dial::new(connect_to)))
}

/// A rustls client configuration trusting exactly the CA certificates in `pem`.
fn client_config(pem: &[u8]) -> Result<rustls::ClientConfig, LinkError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| LinkError::Ca(e.to_string()))?;
    if certs.is_empty() {
        return Err(LinkError::Ca("no CERTIFICATE block in the PEM".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| LinkError::Ca(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LinkError::Ca(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config) // ALPN: set by the connector (h2, http/1.1)
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_paths_and_queries() {
        let link = Link::new("https://op.example:8443/base/", &Trust::System, None).unwrap();
        let url = link.url("v1/watch", &[("namespace", "a b"), ("pod", "p")]);
        assert_eq!(
            url.as_str(),
            "https://op.example:8443/base/v1/watch?namespace=a+b&pod=p"
        );
        for remote in [
            "http://op.example:8443",
            "http://10.0.0.1",
            "http://[fe80::1]",
            "ftp://127.0.0.1",
        ] {
            let err = Link::new(remote, &Trust::System, None).unwrap_err();
            assert!(err.to_string().contains("https"), "{remote}: {err}");
        }
        for local in ["http://localhost:1", "http://[::1]:1", "http://127.0.0.2:1"] {
            assert!(Link::new(local, &Trust::System, None).is_ok(), "{local}");
        }
        let link = Link::new("http://127.0.0.1:1", &Trust::System, None).unwrap();
        assert_eq!(
            link.url("v1/usage", &[]).as_str(),
            "http://127.0.0.1:1/v1/usage"
        );
    }

    #[test]
    fn bad_urls_and_cas_are_refused_with_the_reason() {
        let err = Link::new("ftp://x", &Trust::System, None).unwrap_err();
        assert!(err.to_string().contains("scheme"), "{err}");
        let err = Link::new("not a url", &Trust::System, None).unwrap_err();
        assert!(err.to_string().contains("bad --operator URL"), "{err}");
        let err = Link::new("https://x", &Trust::Pem(b"garbage".to_vec()), None).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    }

    #[test]
    fn the_token_is_read_for_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "one\n").unwrap();
        let link = Link::new("http://127.0.0.1:1", &Trust::System, Some(file.clone())).unwrap();
        let url = link.url("v1/usage", &[]);
        let auth = |link: &Link| {
            link.request(Method::POST, &url, None, Bytes::new())
                .unwrap()
                .headers()[http::header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(auth(&link), "Bearer one");
        std::fs::write(&file, "two").unwrap();
        assert_eq!(auth(&link), "Bearer two");
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(
            link.request(Method::GET, &url, None, Bytes::new()),
            Err(LinkError::Token { .. })
        ));
    }

    /// A TLS server on 127.0.0.1 with a certificate for `name` that answers one HTTP/1.1 `ok`
    /// per connection; its address.
    async fn tls_server(name: &str) -> (SocketAddr, Vec<u8>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let cert = mcp_warden_test_support::tls::self_signed_for(&[name]);
        let mut config = (*cert.server).clone();
        config.alpn_protocols.clear(); // HTTP/1.1 only: the answer below is written by hand
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0; 4096];
                    let mut read = Vec::new();
                    while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (addr, cert.cert_pem.into_bytes())
    }

    async fn get(link: &Link) -> Result<u16, String> {
        let url = link.url("v1/watch", &[]);
        let request = link
            .request(Method::GET, &url, None, Bytes::new())
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), link.send(request))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())??;
        Ok(answer.status().as_u16())
    }

    #[tokio::test]
    async fn connect_to_dials_elsewhere_and_still_verifies_the_urls_name() {
        const NAME: &str = "mcp-warden-operator.mcp-warden.svc";
        let base = format!("https://{NAME}:8443");
        let (addr, ca) = tls_server(NAME).await;
        let link = Link::new(&base, &Trust::Pem(ca.clone()), None).unwrap();
        // The name does not resolve here: without the override there is no connection.
        assert!(get(&link).await.is_err());
        let redirected = link.connecting_to(addr).unwrap();
        assert_eq!(get(&redirected).await, Ok(200));
        assert_eq!(get(&redirected.unpooled().unwrap()).await, Ok(200));
        // A certificate for another name, from a trusted CA, is refused: the name checked is the
        // URL's, not the address dialled.
        let (other, other_ca) = tls_server("someone-else.example").await;
        let link = Link::new(&base, &Trust::Pem(other_ca), None)
            .unwrap()
            .connecting_to(other)
            .unwrap();
        let err = get(&link).await.unwrap_err();
        assert!(err.contains("certificate"), "{err}");
        // An http URL may not be redirected off the host (the token would travel in clear).
        let http = Link::new("http://127.0.0.1:1", &Trust::System, None).unwrap();
        let off_host: SocketAddr = "10.0.0.1:8443".parse().unwrap();
        assert!(matches!(
            http.connecting_to(off_host),
            Err(LinkError::ConnectTo(_))
        ));
    }
}
