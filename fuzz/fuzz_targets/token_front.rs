//! The bearer-token front of `auth::Authenticator::authenticate`: Authorization header parsing,
//! JWS splitting, JOSE header and claim checks, up to the signature check (never reached with
//! keys: every issuer's keys live at a plain-http, non-loopback URL, which the fetcher refuses
//! without touching the network, so a token that passes every pre-signature check ends as
//! `KeysUnavailable`). `auth::token` is private, so this is the nearest public entry point.
//!
//! Input: byte 0 picks the mode, the rest is split into lines.
//! * `J`: line 1 the JOSE header JSON, line 2 the claims JSON, line 3 (optional) the signature,
//!   line 4 (optional) a query string; the target base64url-encodes them into `Bearer h.c.s`;
//! * otherwise: each line starting with `?` is the query string, every other line one
//!   `Authorization` header value (raw bytes; none: no header).
//!
//! Invariants: never `Ok` (no keys), never a network fetch, and a token refused only at the
//! keys (`KeysUnavailable`) satisfies the header and claim rules, checked here independently.
#![no_main]

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use mcp_warden_crds::{McpTool, McpToolSpec};
use mcp_warden_policy::{Bundle, RuleSet, compile};
use mcp_warden_sidecar::auth::{AuthConfig, AuthError, Authenticator, https_client};
use serde_json::{Map, Value};
use std::{sync::OnceLock, time::Duration};

const OAUTH: &str = "https://idp.example";
const KUBERNETES: &str = "https://kubernetes.default.svc.cluster.local";
/// 2026-06-01T00:00:00Z.
const NOW: i64 = 1_780_272_000;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    rules: RuleSet,
    auth: Authenticator,
    now: Timestamp,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let spec: McpToolSpec = serde_json::from_value(serde_json::json!({
            "owner": "fuzz",
            "server": {"resource": "https://mcp.example/mcp"},
            "authentication": {"issuers": [
                {"issuer": OAUTH, "jwksUri": "http://keys.invalid/oauth", "audiences": ["api://mcp"]},
                {"issuer": KUBERNETES, "jwksUri": "http://keys.invalid/k8s", "kind": "Kubernetes",
                 "algorithms": ["RS256", "PS384", "EdDSA"]},
            ]},
        }))
        .expect("spec");
        let rules = compile(&Bundle::new([McpTool::new("t", spec)], [], [])).expect("rules");
        let tls = no_roots_tls();
        let config = AuthConfig {
            jwks_min_refetch: Duration::ZERO,
            cache_capacity: 0,
            allow_http: false,
            ..AuthConfig::default()
        };
        Fixture {
            runtime: tokio::runtime::Builder::new_current_thread().build().expect("runtime"),
            rules,
            auth: Authenticator::with_http_client(https_client(tls), config),
            now: Timestamp::from_second(NOW).expect("now"),
        }
    })
}

/// A TLS client configuration with no roots (never used: no fetch leaves the process).
fn no_roots_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth()
}

fn decode(part: &str) -> Map<String, Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("a part the sidecar decoded");
    match serde_json::from_slice(&bytes).expect("a part the sidecar read as JSON") {
        Value::Object(map) => map,
        other => panic!("a part the sidecar read as an object: {other}"),
    }
}

/// The rules a token refused only at the keys must satisfy (auth/mod.rs, auth/token.rs).
fn check_passed_front(token: &str) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a non-JWS reached the keys");
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    let alg = header["alg"].as_str().expect("alg");
    let iss = claims["iss"].as_str().expect("iss");
    let allowed: &[&str] = match iss {
        OAUTH => &["RS256", "ES256"],
        KUBERNETES => &["RS256", "PS384", "EdDSA"],
        other => panic!("an untrusted issuer {other:?} reached the keys"),
    };
    assert!(allowed.contains(&alg), "alg {alg:?} reached the keys for {iss}");
    match header.get("typ") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => assert!(
            ["jwt", "at+jwt", "application/jwt", "application/at+jwt"]
                .contains(&t.to_ascii_lowercase().as_str()),
            "typ {t:?} reached the keys"
        ),
        Some(other) => panic!("typ {other} reached the keys"),
    }
    match header.get("crit") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => assert!(list.is_empty(), "crit reached the keys"),
        Some(other) => panic!("crit {other} reached the keys"),
    }
    let exp = claims["exp"].as_f64().expect("exp");
    assert!(exp + 30.0 > NOW as f64, "an expired token (exp {exp}) reached the keys");
    let iat = claims["iat"].as_f64().expect("iat (the lifetime check requires it)");
    assert!(iat <= NOW as f64 + 30.0 && exp > iat && exp - iat <= 3600.0 + 1e-3, "iat {iat} exp {exp}");
    let aud: Vec<&str> = match &claims["aud"] {
        Value::String(a) => vec![a],
        Value::Array(list) => list.iter().map(|a| a.as_str().expect("aud string")).collect(),
        other => panic!("aud {other} reached the keys"),
    };
    assert!(
        aud.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            let a = a.trim_end_matches('/');
            a == "https://mcp.example/mcp" || (iss == OAUTH && a == "api://mcp")
        }),
        "audiences {aud:?} reached the keys"
    );
}

fuzz_target!(|input: &[u8]| {
    let fixture = fixture();
    let [mode, rest @ ..] = input else { return };
    let mut headers = HeaderMap::new();
    let mut query: Option<String> = None;
    let mut lines = rest.split(|&b| b == b'\n');
    if *mode == b'J' {
        let header = lines.next().unwrap_or_default();
        let claims = lines.next().unwrap_or_default();
        let signature = lines.next().map_or("c2ln".into(), String::from_utf8_lossy);
        query = lines.next().map(|q| String::from_utf8_lossy(q).into_owned());
        let token = format!(
            "Bearer {}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let Ok(value) = HeaderValue::from_str(&token) else { return };
        headers.append(AUTHORIZATION, value);
    } else {
        for line in lines {
            if let Some(q) = line.strip_prefix(b"?") {
                query = Some(String::from_utf8_lossy(q).into_owned());
            } else if let Ok(value) = HeaderValue::from_bytes(line) {
                headers.append(AUTHORIZATION, value);
            }
        }
    }
    let before = fixture.auth.stats();
    let result = fixture.runtime.block_on(fixture.auth.authenticate(
        &fixture.rules,
        &headers,
        query.as_deref(),
        fixture.now,
    ));
    if std::env::var_os("MCP_WARDEN_FUZZ_DEBUG").is_some() {
        eprintln!("authenticate: {result:?}");
    }
    let after = fixture.auth.stats();
    assert_eq!(
        after.jwks_fetches - before.jwks_fetches,
        after.jwks_fetch_failures - before.jwks_fetch_failures,
        "a key fetch succeeded"
    );
    match result {
        Ok(verified) => panic!("a token was verified without keys: {verified:?}"),
        Err(AuthError::KeysUnavailable) => {
            let value = headers.get(AUTHORIZATION).expect("one header").to_str().expect("ASCII");
            let token = value.trim_matches([' ', '\t']).split_once([' ', '\t']).expect("scheme").1;
            check_passed_front(token.trim_start_matches([' ', '\t']));
        }
        Err(e) => {
            let _ = (e.kind(), e.token_sent(), e.to_string());
            if e == AuthError::NotInHeader {
                assert!(query.is_some(), "NotInHeader without a query string");
            } else if headers.is_empty() {
                assert_eq!(e, AuthError::Missing);
            }
        }
    }
});
