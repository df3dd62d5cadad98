//! The sidecar's token verification against real peers, all on 127.0.0.1:
//!
//! * the REAL OIDC provider (npm `oidc-provider`, `tests/peers/oidc-provider/op.mjs`, run with
//!   `$PEERS_NODE22`): client_credentials tokens for a resource, discovery, JWKS, key rotation by
//!   SIGHUP;
//! * an issuer we control (a tiny hyper server serving discovery and a JWKS with a test key) for
//!   the attacks that need forged tokens: `alg: none`, HS256 signed with the public key, `nbf`
//!   in the future, a lifetime over the maximum, unknown `kid`s.
//!
//! Without `make peers` (node 22 + oidc-provider) these tests fail and say so.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header::AUTHORIZATION};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_warden_crds::{IssuerKind, McpTool, McpToolSpec, SigningAlgorithm};
use mcp_warden_policy::{Bundle, RuleSet, compile, compile::Issuer};
use mcp_warden_sidecar::auth::{AuthConfig, AuthError, Authenticator, Verified};
use mcp_warden_test_support::{Idp, IdpOptions, oidc::gen_keys, peer};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

const RESOURCE: &str = "http://127.0.0.1:9401/mcp";
const OPAQUE_RESOURCE: &str = "http://127.0.0.1:9401/mcp-opaque";

// ---------------------------------------------------------------------------------------------
// The real IdP (`mcp_warden_test_support::oidc`).

/// op.mjs for [`RESOURCE`] (JWTs) and [`OPAQUE_RESOURCE`], with the keys `kids` (the first
/// signs) and an access-token TTL.
fn start_idp(ttl_secs: u64, kids: &[&str]) -> Idp {
    IdpOptions::new(RESOURCE)
        .opaque_resource(OPAQUE_RESOURCE)
        .ttl_secs(ttl_secs)
        .kids(kids)
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// An issuer we control: discovery + JWKS on 127.0.0.1, and a signing key.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Discovery {
    /// `/.well-known/openid-configuration` (and RFC 8414).
    Oidc,
    /// Only `/.well-known/oauth-authorization-server`.
    Rfc8414Only,
    /// Discovery names another issuer.
    WrongIssuer,
}

struct TestIssuer {
    issuer: String,
    jwks: Mutex<Value>,
    discovery: Mutex<Discovery>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    /// Added to every JWKS answer, to make concurrent requests overlap.
    delay: Mutex<Duration>,
}

/// An RSA key made by node: PEMs and the public JWK.
struct TestKey {
    kid: String,
    private_pem: String,
    public_pem: String,
    jwk: Value,
}

fn test_key(kid: &str) -> TestKey {
    let node = peer("PEERS_NODE22");
    let script = r#"
const { generateKeyPairSync: g } = require('crypto');
const kid = process.argv[1];
const { privateKey, publicKey } = g('rsa', { modulusLength: 2048 });
process.stdout.write(JSON.stringify({
  private_pem: privateKey.export({ format: 'pem', type: 'pkcs1' }),
  public_pem: publicKey.export({ format: 'pem', type: 'spki' }),
  jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' },
}));"#;
    let out = Command::new(node)
        .args(["-e", script, kid])
        .output()
        .expect("node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    TestKey {
        kid: kid.to_owned(),
        private_pem: v["private_pem"].as_str().expect("pem").to_owned(),
        public_pem: v["public_pem"].as_str().expect("pem").to_owned(),
        jwk: v["jwk"].clone(),
    }
}

impl TestKey {
    fn sign(&self, header: Header, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).expect("RSA PEM");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    fn header(&self) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(self.kid.clone());
        h.typ = Some("at+jwt".into());
        h
    }
}

impl TestIssuer {
    async fn start(keys: &[&TestKey]) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Self {
            issuer: format!("http://{addr}"),
            jwks: Mutex::new(
                json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}),
            ),
            discovery: Mutex::new(Discovery::Oidc),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
        });
        let served = state.clone();
        // Runs until the test's runtime shuts down.
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(state.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        state
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let json = |status: u16, v: Value| {
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(v.to_string())))
                .expect("response")
        };
        let mode = *self.discovery.lock().expect("lock");
        let metadata =
            |issuer: &str| json!({"issuer": issuer, "jwks_uri": format!("{}/jwks", self.issuer)});
        match req.uri().path() {
            "/jwks" => {
                self.jwks_hits.fetch_add(1, Ordering::SeqCst);
                let delay = *self.delay.lock().expect("lock");
                tokio::time::sleep(delay).await;
                let jwks = self.jwks.lock().expect("lock").clone();
                json(200, jwks)
            }
            "/.well-known/openid-configuration" => {
                self.discovery_hits.fetch_add(1, Ordering::SeqCst);
                match mode {
                    Discovery::Oidc => json(200, metadata(&self.issuer)),
                    Discovery::Rfc8414Only => json(404, json!({"error": "not_found"})),
                    Discovery::WrongIssuer => json(200, metadata("https://evil.example")),
                }
            }
            "/.well-known/oauth-authorization-server" => {
                self.discovery_hits.fetch_add(1, Ordering::SeqCst);
                match mode {
                    Discovery::WrongIssuer => json(200, metadata("https://evil.example")),
                    _ => json(200, metadata(&self.issuer)),
                }
            }
            _ => json(404, json!({"error": "not_found"})),
        }
    }

    fn claims(&self, now: i64) -> Value {
        json!({
            "iss": self.issuer, "aud": RESOURCE, "sub": "forged-sub", "client_id": "agent-forged",
            "iat": now, "exp": now + 300, "jti": "forged-1", "scope": "mcp:tools.list",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Rules and requests.

fn oauth_issuer(issuer: &str) -> Issuer {
    Issuer {
        issuer: issuer.to_owned(),
        jwks_uri: None,
        audiences: vec![RESOURCE.to_owned()],
        algorithms: vec![SigningAlgorithm::RS256],
        kind: IssuerKind::OAuth,
    }
}

/// A RuleSet compiled from an McpTool for `RESOURCE`, with `issuers`, a 1 h maximum lifetime and
/// 30 s of clock skew.
fn rules(issuers: Vec<Issuer>) -> RuleSet {
    let spec: McpToolSpec = serde_json::from_value(json!({
        "owner": "team-test",
        "server": {"resource": RESOURCE, "upstream": "http://127.0.0.1:9/mcp"},
        "authentication": {
            "issuers": [{"issuer": "http://127.0.0.1:1"}],
            "maxTokenLifetime": "1h",
            "clockSkew": "30s",
        },
    }))
    .expect("McpTool spec");
    let mut tool = McpTool::new("auth-test", spec);
    tool.metadata.namespace = Some("default".into());
    let mut rules = compile(&Bundle::new([tool], [], [])).expect("compile");
    assert_eq!(rules.max_token_lifetime, Duration::from_secs(3600));
    assert_eq!(rules.clock_skew, Duration::from_secs(30));
    rules.issuers = issuers;
    rules
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

async fn auth(a: &Authenticator, rules: &RuleSet, token: &str) -> Result<Verified, AuthError> {
    a.authenticate(rules, &bearer(token), None, Timestamp::now())
        .await
        .map(Arc::unwrap_or_clone)
}

/// The reason a token is refused (and that it is refused as a presented token).
async fn refused(a: &Authenticator, rules: &RuleSet, token: &str) -> String {
    let e = auth(a, rules, token)
        .await
        .expect_err("the token must be refused");
    assert!(e.token_sent());
    e.to_string()
}

fn test_config() -> AuthConfig {
    AuthConfig {
        jwks_min_refetch: Duration::from_millis(300),
        fetch_timeout: Duration::from_secs(5),
        ..AuthConfig::default()
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn now_secs() -> i64 {
    Timestamp::now().as_second()
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("JSON")
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().expect("JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("JSON")
}

// ---------------------------------------------------------------------------------------------
// Tests.

mod forged;
mod keys;
mod real_idp;
