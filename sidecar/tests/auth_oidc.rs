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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_idp_tokens_are_accepted_with_the_right_principal() {
    let idp = start_idp(300, &["k1"]);
    let rules = rules(vec![oauth_issuer(&idp.issuer)]);
    let a = Authenticator::with_config(test_config());

    let token = idp
        .token_with(
            "agent-alpha",
            "alpha-secret",
            "mcp:tools.list mcp:tools.call",
            RESOURCE,
        )
        .expect("a token");
    assert_eq!(header_of(&token)["typ"], "at+jwt");
    assert_eq!(header_of(&token)["kid"], "k1");
    let claims = claims_of(&token);
    let v = auth(&a, &rules, &token)
        .await
        .expect("a real token is accepted");
    assert_eq!(v.principal.issuer, idp.issuer);
    assert_eq!(v.principal.client_id.as_deref(), Some("agent-alpha"));
    assert_eq!(v.principal.subject.as_deref(), claims["sub"].as_str());
    assert_eq!(
        v.principal.scopes,
        BTreeSet::from(["mcp:tools.list".to_owned(), "mcp:tools.call".to_owned()])
    );
    let iat = claims["iat"].as_i64().expect("iat");
    assert_eq!(
        v.principal.issued_at,
        Some(Timestamp::from_second(iat).expect("ts"))
    );
    assert_eq!(
        v.expires_at,
        Some(Timestamp::from_second(iat + 300).expect("ts"))
    );
    assert_eq!(v.token_id.as_deref(), claims["jti"].as_str());
    assert!(v.token_id.is_some());

    // The second time comes from the cache; the keys were fetched once (discovery + JWKS).
    let again = auth(&a, &rules, &token).await.expect("cached");
    assert_eq!(again, v);
    let stats = a.stats();
    assert_eq!(
        (stats.cache_hits, stats.cache_misses, stats.jwks_fetches),
        (1, 1, 1)
    );

    // Another agent, fewer scopes; scheme and host of the audience in another case.
    let beta = idp
        .token_with("agent-beta", "beta-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    let mut upper = rules.clone();
    upper.issuers[0].audiences = vec!["HTTP://127.0.0.1:9401/mcp".into()];
    let v = auth(&a, &upper, &beta).await.expect("agent-beta");
    assert_eq!(v.principal.client_id.as_deref(), Some("agent-beta"));
    assert_eq!(
        v.principal.scopes,
        BTreeSet::from(["mcp:tools.list".to_owned()])
    );
    assert_eq!(a.stats().jwks_fetches, 1, "the keys are reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_idp_token_attacks_are_refused() {
    let idp = start_idp(300, &["k1"]);
    let trusted = rules(vec![oauth_issuer(&idp.issuer)]);
    let a = Authenticator::with_config(test_config());
    let token = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");

    // No token.
    let e = a
        .authenticate(&trusted, &HeaderMap::new(), None, Timestamp::now())
        .await
        .expect_err("no token");
    assert_eq!(e, AuthError::Missing);
    assert!(!e.token_sent());
    assert_eq!(e.to_string(), "no bearer token");

    // A valid token, but in the query string.
    let query = format!("access_token={token}");
    let e = a
        .authenticate(&trusted, &HeaderMap::new(), Some(&query), Timestamp::now())
        .await
        .expect_err("query token");
    assert_eq!(e, AuthError::NotInHeader);
    assert_eq!(
        e.to_string(),
        "tokens are accepted only in the Authorization header"
    );
    let e = a
        .authenticate(&trusted, &bearer(&token), Some(&query), Timestamp::now())
        .await
        .expect_err("query token next to a header token");
    assert_eq!(e, AuthError::NotInHeader);

    // Wrong issuer: the same real token, but this server trusts another issuer only.
    let other = rules(vec![oauth_issuer("http://127.0.0.1:1/other-idp")]);
    assert_eq!(
        refused(&a, &other, &token).await,
        "the token's issuer is not trusted"
    );

    // Wrong audience: a server with another resource URI.
    let mut elsewhere = trusted.clone();
    elsewhere.issuers[0].audiences = vec!["http://127.0.0.1:9401/other-mcp".into()];
    assert_eq!(
        refused(&a, &elsewhere, &token).await,
        "the token's audience does not include this resource"
    );

    // Lifetime over the maximum: the IdP issues 300 s tokens, this server accepts 60 s at most.
    let mut strict = trusted.clone();
    strict.max_token_lifetime = Duration::from_secs(60);
    assert_eq!(
        refused(&a, &strict, &token).await,
        "the token's lifetime exceeds the maximum of 60s"
    );

    // Garbage, and the IdP's own opaque token (not a JWT).
    assert_eq!(
        refused(&a, &trusted, "garbage").await,
        "the token is not a JWT"
    );
    assert_eq!(
        refused(&a, &trusted, "a.b.c").await,
        "malformed token header"
    );
    let opaque = idp
        .token_with(
            "agent-alpha",
            "alpha-secret",
            "mcp:tools.list",
            OPAQUE_RESOURCE,
        )
        .expect("a token");
    assert_eq!(
        refused(&a, &trusted, &opaque).await,
        "the token is not a JWT"
    );

    // A real token with a claim changed (scope escalation): the signature no longer matches.
    let mut claims = claims_of(&token);
    claims["scope"] = json!("mcp:tools.list mcp:admin");
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_eq!(refused(&a, &trusted, &tampered).await, "invalid signature");

    // Expired: the same real token, seen after exp + clock skew.
    let exp = claims_of(&token)["exp"].as_i64().expect("exp");
    let later = Timestamp::from_second(exp + 30).expect("ts");
    let e = a
        .authenticate(&trusted, &bearer(&token), None, later)
        .await
        .expect_err("expired");
    assert_eq!(e.to_string(), "the token has expired");

    // Forged with another key but claiming the IdP and its kid, or an unknown kid.
    let key = test_key("k1");
    let mut forged_claims = claims_of(&token);
    forged_claims["client_id"] = json!("agent-forged");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &forged_claims)).await,
        "invalid signature"
    );
    let mut header = key.header();
    header.kid = Some("not-a-key-of-the-idp".into());
    assert_eq!(
        refused(&a, &trusted, &key.sign(header, &forged_claims)).await,
        "unknown signing key (kid)"
    );

    // The genuine token is still fine.
    assert!(auth(&a, &trusted, &token).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_real_tokens_expire() {
    // The IdP issues 3 s tokens; the server tolerates no clock skew.
    let idp = start_idp(3, &["k1"]);
    let mut rules = rules(vec![oauth_issuer(&idp.issuer)]);
    rules.clock_skew = Duration::ZERO;
    let a = Authenticator::with_config(test_config());
    let token = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    let exp = claims_of(&token)["exp"].as_i64().expect("exp");
    let v = auth(&a, &rules, &token).await.expect("fresh token");
    assert_eq!(v.expires_at, Some(Timestamp::from_second(exp).expect("ts")));

    // Wait (bounded) until the wall clock passes exp.
    for _ in 0..50 {
        if now_secs() >= exp {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(now_secs() >= exp, "exp passed");
    // The cache entry ends at exp: the token is verified again and refused.
    assert_eq!(refused(&a, &rules, &token).await, "the token has expired");

    // With 30 s of clock skew the same token is still accepted.
    rules.clock_skew = Duration::from_secs(30);
    assert!(auth(&a, &rules, &token).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_are_refused() {
    let key = test_key("t1");
    let stranger = test_key("t1"); // same kid, different key
    let issuer = TestIssuer::start(&[&key]).await;
    let trusted = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(test_config());
    let now = now_secs();

    // Sanity: a well-formed token of this issuer is accepted (keys found by discovery).
    let v = auth(&a, &trusted, &key.sign(key.header(), &issuer.claims(now)))
        .await
        .expect("a good token of the test issuer");
    assert_eq!(v.principal.client_id.as_deref(), Some("agent-forged"));
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "t1"})),
        b64(&issuer.claims(now))
    );
    assert_eq!(
        refused(&a, &trusted, &none).await,
        "unsigned tokens (alg none) are not accepted"
    );

    // HS256 with the issuer's public key (PEM) as the HMAC secret.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("t1".into());
    let hmac = jsonwebtoken::encode(
        &hs,
        &issuer.claims(now),
        &EncodingKey::from_secret(key.public_pem.as_bytes()),
    )
    .expect("HS256");
    assert_eq!(
        refused(&a, &trusted, &hmac).await,
        "symmetric algorithm HS256 is not accepted"
    );
    // ... also with the JWK's modulus bytes as the secret.
    let n = URL_SAFE_NO_PAD
        .decode(key.jwk["n"].as_str().expect("n"))
        .expect("n");
    let hmac = jsonwebtoken::encode(&hs, &issuer.claims(now), &EncodingKey::from_secret(&n))
        .expect("HS256");
    assert_eq!(
        refused(&a, &trusted, &hmac).await,
        "symmetric algorithm HS256 is not accepted"
    );

    // Not valid yet: nbf two minutes ahead (30 s of skew).
    let mut c = issuer.claims(now);
    c["nbf"] = json!(now + 120);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token is not valid yet (nbf)"
    );
    // ... while nbf within the skew is fine.
    c["nbf"] = json!(now + 20);
    assert!(
        auth(&a, &trusted, &key.sign(key.header(), &c))
            .await
            .is_ok()
    );

    // Issued in the future.
    let mut c = issuer.claims(now);
    c["iat"] = json!(now + 120);
    c["exp"] = json!(now + 400);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token was issued in the future (iat)"
    );

    // Lifetime over the maximum (2 h against 1 h), and no iat at all.
    let mut c = issuer.claims(now);
    c["exp"] = json!(now + 7200);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token's lifetime exceeds the maximum of 3600s"
    );
    let mut c = issuer.claims(now);
    c.as_object_mut().expect("object").remove("iat");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token has no iat, which the maximum token lifetime requires"
    );
    // No exp.
    let mut c = issuer.claims(now);
    c.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token has no exp"
    );

    // Wrong audience, wrong issuer (iss of nobody we trust).
    let mut c = issuer.claims(now);
    c["aud"] = json!(["http://127.0.0.1:9401/other"]);
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token's audience does not include this resource"
    );
    let mut c = issuer.claims(now);
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        refused(&a, &trusted, &key.sign(key.header(), &c)).await,
        "the token's issuer is not trusted"
    );

    // Unknown kid; same kid but another key.
    let mut h = key.header();
    h.kid = Some("t9".into());
    assert_eq!(
        refused(&a, &trusted, &key.sign(h, &issuer.claims(now))).await,
        "unknown signing key (kid)"
    );
    assert_eq!(
        refused(
            &a,
            &trusted,
            &stranger.sign(stranger.header(), &issuer.claims(now))
        )
        .await,
        "invalid signature"
    );

    // typ other than at+jwt / JWT; an algorithm this issuer does not allow.
    let mut h = key.header();
    h.typ = Some("id+jwt".into());
    assert_eq!(
        refused(&a, &trusted, &key.sign(h, &issuer.claims(now))).await,
        "token type (typ) is not at+jwt or JWT"
    );
    let mut es_only = trusted.clone();
    es_only.issuers[0].algorithms = vec![SigningAlgorithm::ES256];
    assert_eq!(
        refused(&a, &es_only, &key.sign(key.header(), &issuer.claims(now))).await,
        "algorithm RS256 is not accepted for this issuer"
    );
    // PS256 with the same RSA key is refused when the JWK pins RS256 and PS256 is not allowed.
    let mut h = key.header();
    h.alg = Algorithm::PS256;
    assert_eq!(
        refused(&a, &trusted, &key.sign(h, &issuer.claims(now))).await,
        "algorithm PS256 is not accepted for this issuer"
    );

    // A Kubernetes ServiceAccount token from an issuer of kind Kubernetes.
    let mut k8s_rules = trusted.clone();
    k8s_rules.issuers[0].kind = IssuerKind::Kubernetes;
    k8s_rules.issuers[0].audiences.push("mcp-warden".into());
    let sa = json!({
        "iss": issuer.issuer, "aud": ["mcp-warden"], "sub": "system:serviceaccount:team-a:agent",
        "iat": now, "exp": now + 600, "nbf": now,
        "kubernetes.io": {"namespace": "team-a", "serviceaccount": {"name": "agent", "uid": "u-1"}},
    });
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("t1".into());
    h.typ = None;
    let v = auth(&a, &k8s_rules, &key.sign(h.clone(), &sa))
        .await
        .expect("a ServiceAccount token");
    assert_eq!(
        v.principal.subject.as_deref(),
        Some("system:serviceaccount:team-a:agent")
    );
    assert_eq!(v.principal.client_id, None);
    let mut not_sa = sa.clone();
    not_sa["sub"] = json!("someone");
    assert_eq!(
        refused(&a, &k8s_rules, &key.sign(h, &not_sa)).await,
        "the token's subject is not a ServiceAccount"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_at_the_idp_is_picked_up_without_restart() {
    let mut idp = start_idp(300, &["k1"]);
    let rules = rules(vec![oauth_issuer(&idp.issuer)]);
    let a = Authenticator::with_config(AuthConfig {
        jwks_refresh: Duration::from_secs(1),
        jwks_min_refetch: Duration::from_millis(300),
        ..AuthConfig::default()
    });
    let t1 = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    assert_eq!(header_of(&t1)["kid"], "k1");
    auth(&a, &rules, &t1).await.expect("k1 token");
    assert_eq!(a.stats().jwks_fetches, 1);

    // Overlap: k2 signs, k1 still published.
    let k1 = idp.keys().expect("the keys")["keys"][0].clone();
    let k2 = gen_keys(&["k2"]).expect("a key")["keys"][0].clone();
    idp.rotate(&json!({"keys": [k2, k1]}))
        .expect("op.mjs reloads its keys");
    tokio::time::sleep(Duration::from_millis(400)).await; // past jwks_min_refetch
    let t2 = idp
        .token_with("agent-alpha", "alpha-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    assert_eq!(header_of(&t2)["kid"], "k2");
    auth(&a, &rules, &t2)
        .await
        .expect("the new kid triggers a re-fetch");
    assert_eq!(a.stats().jwks_fetches, 2);
    auth(&a, &rules, &t1)
        .await
        .expect("k1 tokens stay valid during the overlap");

    // k1 retired: once the keys are refreshed, k1 tokens are refused, even cached ones.
    idp.rotate(&json!({"keys": [k2]}))
        .expect("op.mjs reloads its keys");
    tokio::time::sleep(Duration::from_millis(1100)).await; // past jwks_refresh
    assert_eq!(refused(&a, &rules, &t1).await, "unknown signing key (kid)");
    // The refresh, and at most one re-fetch for the unknown kid (if the machine is slow).
    assert!((3..=4).contains(&a.stats().jwks_fetches), "{:?}", a.stats());
    auth(&a, &rules, &t2)
        .await
        .expect("k2 tokens are still fine");
    let t3 = idp
        .token_with("agent-beta", "beta-secret", "mcp:tools.list", RESOURCE)
        .expect("a token");
    auth(&a, &rules, &t3).await.expect("new tokens are fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_fetches_are_shared_and_rate_limited() {
    let key = test_key("t1");
    let issuer = TestIssuer::start(&[&key]).await;
    *issuer.delay.lock().expect("lock") = Duration::from_millis(200);
    let rules = Arc::new(rules(vec![oauth_issuer(&issuer.issuer)]));
    let a = Arc::new(Authenticator::with_config(AuthConfig {
        jwks_min_refetch: Duration::from_secs(600),
        ..test_config()
    }));
    let now = now_secs();

    // 16 concurrent requests on a cold authenticator: one discovery, one JWKS fetch.
    let tokens: Vec<String> = (0..16)
        .map(|i| {
            let mut c = issuer.claims(now);
            c["jti"] = json!(format!("j{i}"));
            key.sign(key.header(), &c)
        })
        .collect();
    let mut tasks = Vec::new();
    for token in tokens {
        let (a, rules) = (a.clone(), rules.clone());
        tasks.push(tokio::spawn(async move { auth(&a, &rules, &token).await }));
    }
    for t in tasks {
        t.await.expect("task").expect("accepted");
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);

    // Unknown kids right after a fetch: refused without hammering the issuer.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (a, rules) = (a.clone(), rules.clone());
        let mut h = key.header();
        h.kid = Some(format!("unknown-{i}"));
        let token = key.sign(h, &issuer.claims(now));
        tasks.push(tokio::spawn(async move { auth(&a, &rules, &token).await }));
    }
    for t in tasks {
        let e = t.await.expect("task").expect_err("unknown kid");
        assert_eq!(e.to_string(), "unknown signing key (kid)");
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1, "rate limited");

    // With a short limit: concurrent unknown kids share a single re-fetch.
    let b = Arc::new(Authenticator::with_config(AuthConfig {
        jwks_min_refetch: Duration::from_secs(1),
        ..test_config()
    }));
    auth(&b, &rules, &key.sign(key.header(), &issuer.claims(now)))
        .await
        .expect("warm up");
    let before = issuer.jwks_hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past jwks_min_refetch
    let tokens: Vec<String> = (0..10)
        .map(|i| {
            let mut h = key.header();
            h.kid = Some(format!("unknown-{i}"));
            key.sign(h, &issuer.claims(now))
        })
        .collect();
    let mut tasks = Vec::new();
    for token in tokens {
        let (b, rules) = (b.clone(), rules.clone());
        tasks.push(tokio::spawn(async move { auth(&b, &rules, &token).await }));
    }
    for t in tasks {
        assert!(t.await.expect("task").is_err());
    }
    assert_eq!(
        issuer.jwks_hits.load(Ordering::SeqCst),
        before + 1,
        "one shared re-fetch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_forms_and_unreachable_keys() {
    let key = test_key("t1");
    let now = now_secs();

    // RFC 8414 metadata when there is no OIDC discovery document.
    let issuer = TestIssuer::start(&[&key]).await;
    *issuer.discovery.lock().expect("lock") = Discovery::Rfc8414Only;
    let rules_8414 = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(test_config());
    auth(
        &a,
        &rules_8414,
        &key.sign(key.header(), &issuer.claims(now)),
    )
    .await
    .expect("keys found through RFC 8414");
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 2);

    // A discovery document naming another issuer is not trusted.
    let issuer = TestIssuer::start(&[&key]).await;
    *issuer.discovery.lock().expect("lock") = Discovery::WrongIssuer;
    let rules_wrong = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(test_config());
    let e = auth(
        &a,
        &rules_wrong,
        &key.sign(key.header(), &issuer.claims(now)),
    )
    .await
    .expect_err("discovery names another issuer");
    assert_eq!(e, AuthError::KeysUnavailable);
    assert_eq!(e.to_string(), "the issuer's signing keys are unavailable");
    assert!(e.token_sent());
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 0);

    // An explicit jwks_uri skips discovery.
    let mut explicit = rules_wrong.clone();
    explicit.issuers[0].jwks_uri = Some(format!("{}/jwks", issuer.issuer));
    let before = issuer.discovery_hits.load(Ordering::SeqCst);
    auth(&a, &explicit, &key.sign(key.header(), &issuer.claims(now)))
        .await
        .expect("keys from jwks_uri");
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), before);

    // Keys unreachable (closed port): refused at once, and the failure is rate limited.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut down = explicit.clone();
    down.issuers[0].issuer = format!("http://127.0.0.1:{closed}");
    down.issuers[0].jwks_uri = Some(format!("http://127.0.0.1:{closed}/jwks"));
    let mut c = issuer.claims(now);
    c["iss"] = json!(down.issuers[0].issuer);
    let token = key.sign(key.header(), &c);
    let b = Authenticator::with_config(AuthConfig {
        jwks_min_refetch: Duration::from_secs(600),
        ..test_config()
    });
    for _ in 0..3 {
        assert_eq!(
            auth(&b, &down, &token).await,
            Err(AuthError::KeysUnavailable)
        );
    }
    let stats = b.stats();
    assert_eq!((stats.jwks_fetches, stats.jwks_fetch_failures), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_token_cache_is_bounded_and_follows_the_issuer_set() {
    let key = test_key("t1");
    let issuer = TestIssuer::start(&[&key]).await;
    let trusted = rules(vec![oauth_issuer(&issuer.issuer)]);
    let a = Authenticator::with_config(AuthConfig {
        cache_capacity: 2,
        ..test_config()
    });
    let now = now_secs();
    let tokens: Vec<String> = (0..3)
        .map(|i| {
            let mut c = issuer.claims(now);
            c["jti"] = json!(format!("j{i}"));
            key.sign(key.header(), &c)
        })
        .collect();
    for t in &tokens {
        auth(&a, &trusted, t).await.expect("accepted");
    }
    assert_eq!(a.stats().cached_tokens, 2, "bounded");
    auth(&a, &trusted, &tokens[2]).await.expect("cached");
    assert_eq!(a.stats().cache_hits, 1);

    // The issuer is no longer trusted: the cached token is refused.
    let other = rules(vec![oauth_issuer("http://127.0.0.1:1/other")]);
    assert_eq!(
        refused(&a, &other, &tokens[2]).await,
        "the token's issuer is not trusted"
    );
    // The issuer's audiences change: verified again, and refused.
    auth(&a, &trusted, &tokens[1]).await.expect("cached again");
    let mut moved = trusted.clone();
    moved.issuers[0].audiences = vec!["http://127.0.0.1:9401/elsewhere".into()];
    assert_eq!(
        refused(&a, &moved, &tokens[1]).await,
        "the token's audience does not include this resource"
    );
    // A shorter maximum lifetime applies to cached tokens too.
    auth(&a, &trusted, &tokens[1]).await.expect("cached again");
    let mut strict = trusted.clone();
    strict.max_token_lifetime = Duration::from_secs(60);
    assert_eq!(
        refused(&a, &strict, &tokens[1]).await,
        "the token's lifetime exceeds the maximum of 60s"
    );
    // Cached entries end at exp.
    let exp = Timestamp::from_second(now + 300).expect("ts");
    let e = a
        .authenticate(&trusted, &bearer(&tokens[1]), None, exp)
        .await
        .expect("within the skew after exp");
    assert_eq!(e.expires_at, Some(exp));
    let e = a
        .authenticate(
            &trusted,
            &bearer(&tokens[1]),
            None,
            Timestamp::from_second(now + 330).expect("ts"),
        )
        .await
        .expect_err("expired");
    assert_eq!(e.to_string(), "the token has expired");
    a.clear_cache();
    assert_eq!(a.stats().cached_tokens, 0);
}
