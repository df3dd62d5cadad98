//! Signing keys of the trusted issuers: where they are (the issuer's `jwks_uri`, OIDC / RFC 8414
//! discovery, or the local Kubernetes API server), fetching them, and parsing a JWKS into keys.
//!
//! ```text
//! Issuer{jwks_uri}            ──GET jwks_uri──────────────────────────────► JWKS
//! Issuer{no jwks_uri}         ──GET {iss}/.well-known/openid-configuration──┐ (issuer must equal iss)
//!                             ──GET {origin}/.well-known/oauth-authorization-server{path} (fallback)
//!                                                                           └─► jwks_uri ──► JWKS
//! Kubernetes, in a pod, no jwks_uri, the issuer is the pod's own token's `iss`
//!                             ──GET https://$KUBERNETES_SERVICE_HOST/openid/v1/jwks
//!                               (cluster CA, the pod's own ServiceAccount token) ──► JWKS
//!   (another cluster's issuer without jwks_uri is discovered like any other)
//! ```
//!
//! Only `https` URLs are fetched, plus `http` to loopback hosts (tests, local IdPs) unless
//! `AuthConfig::allow_http` is set. Each fetch is bounded in time and size; redirects are not
//! followed.

use bytes::Bytes;
use http::{
    Request,
    header::{ACCEPT, AUTHORIZATION, USER_AGENT},
};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use mcp_warden_crds::IssuerKind;
use mcp_warden_policy::compile::Issuer;
use serde_json::Value;
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// The HTTP(S) client used to fetch discovery documents and JWKS.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The largest discovery document or JWKS accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Keys read from one JWKS at most.
const MAX_KEYS: usize = 64;
/// The smallest RSA modulus accepted (bits).
const MIN_RSA_BITS: usize = 2048;

/// An HTTP(S) client trusting `tls`'s roots (HTTP/1.1, plain `http` allowed at this level).
pub fn https_client(tls: rustls::ClientConfig) -> HttpClient {
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The default client: the platform's trust store, else the Mozilla roots (webpki-roots).
pub fn default_http_client() -> HttpClient {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(builder) => builder,
        Err(_) => {
            match HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider.clone()) {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::warn!(error = %e, "no TLS roots for fetching signing keys: only http issuers will work");
                    HttpsConnectorBuilder::new().with_tls_config(empty_roots(provider))
                }
            }
        }
    };
    let connector = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(connector)
}

fn empty_roots(provider: Arc<rustls::crypto::CryptoProvider>) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

/// The local Kubernetes API server, when running in a pod: its JWKS signs the cluster's
/// ServiceAccount tokens.
struct InCluster {
    client: HttpClient,
    jwks_url: String,
    token_path: PathBuf,
    /// The local cluster's issuer (`iss` of the pod's own token): only it gets the local keys.
    issuer: Option<String>,
}

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl InCluster {
    fn detect() -> Option<Self> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        let token_path = dir.join("token");
        if !token_path.is_file() {
            return None;
        }
        let ca = dir.join("ca.crt");
        let tls = match cluster_tls(&ca) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::warn!(error = %e, "cannot trust the cluster CA: Kubernetes ServiceAccount tokens need an explicit jwksUri");
                return None;
            }
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let issuer = std::fs::read_to_string(&token_path)
            .ok()
            .and_then(|token| token_issuer(token.trim()));
        Some(Self {
            client: https_client(tls),
            jwks_url: format!("https://{host}:{port}/openid/v1/jwks"),
            token_path,
            issuer,
        })
    }
}

/// The `iss` claim of a JWT, read without verifying it (the pod's own token, from its file).
fn token_issuer(token: &str) -> Option<String> {
    unverified_claims(token)?
        .get("iss")?
        .as_str()
        .map(str::to_owned)
}

/// A JWT's claims, read WITHOUT verifying it: only for tokens verified before or trusted
/// otherwise (the pod's own token; the caller's, after `Authenticator::verify`).
pub fn unverified_claims(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn cluster_tls(ca: &Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Fetches the keys of issuers.
pub(crate) struct Fetcher {
    client: HttpClient,
    in_cluster: Option<InCluster>,
    timeout: Duration,
    allow_http: bool,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("in_cluster", &self.in_cluster.as_ref().map(|c| &c.jwks_url))
            .field("timeout", &self.timeout)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// A fetched key set: its keys and a digest of the document they came from.
pub(crate) struct Fetched {
    pub keys: Vec<Key>,
    pub digest: [u8; 32],
}

impl Fetcher {
    pub fn new(client: HttpClient, timeout: Duration, allow_http: bool) -> Self {
        Self {
            client,
            in_cluster: InCluster::detect(),
            timeout,
            allow_http,
        }
    }

    /// The issuer's current keys. The error says what failed (for the log, not for clients).
    pub async fn fetch(&self, issuer: &Issuer) -> Result<Fetched, String> {
        let body = match (&issuer.jwks_uri, issuer.kind, &self.in_cluster) {
            (Some(uri), _, _) => self.get(&self.client, uri, None).await?,
            // The local API server's keys sign the local cluster's tokens only: another
            // cluster's issuer without `jwksUri` is discovered like any other.
            (None, IssuerKind::Kubernetes, Some(cluster))
                if cluster.issuer.as_deref() == Some(issuer.issuer.as_str()) =>
            {
                let token = std::fs::read_to_string(&cluster.token_path)
                    .map_err(|e| format!("{}: {e}", cluster.token_path.display()))?;
                self.get(&cluster.client, &cluster.jwks_url, Some(token.trim()))
                    .await?
            }
            (None, _, _) => {
                let uri = self.discover(&issuer.issuer).await?;
                self.get(&self.client, &uri, None).await?
            }
        };
        let keys = parse_jwks(&body)?;
        use sha2::Digest as _;
        Ok(Fetched {
            keys,
            digest: sha2::Sha256::digest(&body).into(),
        })
    }

    /// The `jwks_uri` from the issuer's OIDC discovery document, else from its RFC 8414
    /// metadata; the document's `issuer` must be exactly `issuer`.
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        let mut errors = Vec::new();
        for url in discovery_urls(issuer)? {
            let doc = match self.get(&self.client, &url, None).await {
                Ok(body) => body,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let doc: Value = match serde_json::from_slice(&doc) {
                Ok(doc) => doc,
                Err(e) => {
                    errors.push(format!("{url}: not JSON: {e}"));
                    continue;
                }
            };
            if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                errors.push(format!("{url}: the document's issuer is not {issuer}"));
                continue;
            }
            match doc.get("jwks_uri").and_then(Value::as_str) {
                Some(uri) => return Ok(uri.to_owned()),
                None => errors.push(format!("{url}: no jwks_uri")),
            }
        }
        Err(format!("discovery failed: {}", errors.join("; ")))
    }

    /// GETs a document (200 only, bounded in size and time).
    async fn get(
        &self,
        client: &HttpClient,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<Bytes, String> {
        check_url(url, self.allow_http)?;
        let mut request = Request::get(url)
            .header(ACCEPT, "application/json, application/jwk-set+json")
            .header(
                USER_AGENT,
                concat!("mcp-warden-sidecar/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| format!("{url}: {}", chain(&e)))?;
            if response.status() != http::StatusCode::OK {
                return Err(format!("{url}: HTTP {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("{url}: {e}"))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
    }
}

/// An error and its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    for _ in 0..8 {
        let Some(s) = source else { break };
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `https` anywhere; `http` only to loopback hosts unless `allow_http`.
fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(&parsed) => Ok(()),
        "http" => Err(format!(
            "{url}: plain http is refused except to loopback addresses"
        )),
        other => Err(format!("{url}: unsupported scheme {other}")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// OIDC discovery (`{issuer}/.well-known/openid-configuration`), then RFC 8414 (path inserted
/// after the origin).
fn discovery_urls(issuer: &str) -> Result<[String; 2], String> {
    let parsed = url::Url::parse(issuer).map_err(|e| format!("issuer {issuer}: {e}"))?;
    let base = issuer.trim_end_matches('/');
    let path = parsed.path().trim_end_matches('/');
    let origin = parsed.origin().ascii_serialization();
    Ok([
        format!("{base}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ])
}

/// The key type of a JWK, as far as picking it for an algorithm goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One verification key.
pub(crate) struct Key {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    pub alg: Option<String>,
    pub kind: KeyType,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Whether this key can verify `alg` (key type, curve, and the JWK's own `alg`).
    pub fn fits(&self, alg: Algorithm) -> bool {
        let kind = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyType::Rsa,
            Algorithm::ES256 => KeyType::P256,
            Algorithm::ES384 => KeyType::P384,
            Algorithm::EdDSA => KeyType::Ed25519,
            _ => return false,
        };
        kind == self.kind && self.alg.as_deref().is_none_or(|a| a == format!("{alg:?}"))
    }
}

/// The usable signature keys of a JWKS document. Keys for encryption, symmetric keys, unknown
/// types and short RSA keys are skipped.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no keys array")?;
    Ok(list.iter().take(MAX_KEYS).filter_map(parse_jwk).collect())
}

fn parse_jwk(jwk: &Value) -> Option<Key> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|o| o.as_str() == Some("verify"))
    {
        return None;
    }
    let (kind, key) = match (text("kty")?, text("crv")) {
        ("RSA", _) => {
            let n = text("n")?;
            let bits = n.trim_end_matches('=').len() * 6;
            if bits < MIN_RSA_BITS - 6 {
                return None;
            }
            (
                KeyType::Rsa,
                DecodingKey::from_rsa_components(n, text("e")?).ok()?,
            )
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let kind = if crv == "P-256" {
                KeyType::P256
            } else {
                KeyType::P384
            };
            (
                kind,
                DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?,
            )
        }
        ("OKP", Some("Ed25519")) => (
            KeyType::Ed25519,
            DecodingKey::from_ed_components(text("x")?).ok()?,
        ),
        _ => return None,
    };
    Some(Key {
        kid: text("kid").map(str::to_owned),
        alg: text("alg").map(str::to_owned),
        kind,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_local_issuer_is_read_from_the_pods_token() {
        use base64::Engine as _;
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let token = format!(
            "{}.{}.sig",
            b64(&json!({"alg": "RS256"})),
            b64(&json!({"iss": "https://kubernetes.default.svc.cluster.local", "sub": "x"}))
        );
        assert_eq!(
            token_issuer(&token).as_deref(),
            Some("https://kubernetes.default.svc.cluster.local")
        );
        for bad in [
            "",
            "a.b",
            "a.!!.c",
            &format!("x.{}.y", b64(&json!({"sub": "x"}))),
        ] {
            assert_eq!(token_issuer(bad), None, "{bad}");
        }
    }

    #[test]
    fn discovery_url_forms() {
        assert_eq!(
            discovery_urls("https://idp.example").unwrap(),
            [
                "https://idp.example/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server"
            ]
        );
        assert_eq!(
            discovery_urls("https://idp.example/realms/a/").unwrap(),
            [
                "https://idp.example/realms/a/.well-known/openid-configuration",
                "https://idp.example/.well-known/oauth-authorization-server/realms/a"
            ]
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url("https://idp.example/jwks", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/jwks", false).is_ok());
        assert!(check_url("http://[::1]:9/jwks", false).is_ok());
        assert!(check_url("http://localhost/jwks", false).is_ok());
        assert!(check_url("http://idp.example/jwks", false).is_err());
        assert!(check_url("http://idp.example/jwks", true).is_ok());
        assert!(check_url("file:///etc/passwd", true).is_err());
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let n = format!("{}A", "x".repeat(341)); // 2048 bits
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "r", "n": n, "e": "AQAB", "use": "sig", "alg": "RS256"},
            {"kty": "RSA", "kid": "enc", "n": n, "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "short", "n": format!("{}A", "x".repeat(170)), "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "ops", "n": n, "e": "AQAB", "key_ops": ["encrypt"]},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            "junk"
        ]});
        let keys = parse_jwks(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["r", "ed"]);
        assert!(keys[0].fits(Algorithm::RS256));
        assert!(!keys[0].fits(Algorithm::PS256), "the JWK's alg pins it");
        assert!(!keys[0].fits(Algorithm::HS256));
        assert!(keys[1].fits(Algorithm::EdDSA));
        assert!(!keys[1].fits(Algorithm::ES256));
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(b"{\"keys\": []}").unwrap().is_empty());
    }
}
