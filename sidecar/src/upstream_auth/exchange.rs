//! RFC 8693 token exchange: the caller's token (`subject_token`) for one meant for the upstream.
//!
//! ```text
//! token(spec, caller) ──► key = SHA-256(subject token, endpoint, audience, resource, scope)
//!   ──► cell of the key (one async lock: concurrent callers wait for one exchange)
//!         fresh entry (until REFRESH_BEFORE its expiry, never past the subject token's exp)
//!           ──► cached
//!         else POST token_endpoint (https, or http on loopback), client_secret_basic:
//!           grant_type=urn:ietf:params:oauth:grant-type:token-exchange, subject_token,
//!           subject_token_type=…:access_token, audience, resource, scope
//!           200 + access_token ──► exchanged (cached)     anything else ──► failed (closed)
//! ```
//!
//! At most [`MAX_ENTRIES`] cached tokens; the subject token is sent to the IdP only, and no
//! token is ever logged or recorded (the audit gets issuer, audience and outcome).

use super::{AuthError, Call, secret::Secrets};
use crate::proxy::upstream::Upstream;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::{BodyExt, Limited};
use mcp_warden_crds::TokenExchangeSpec;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Most exchanged tokens cached at once.
pub const MAX_ENTRIES: usize = 10_000;
/// A cached token is replaced this long before it expires.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(30);
/// The lifetime assumed when the IdP sends no `expires_in`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Longest wait for the IdP.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// What the audit record says about one call's exchange (never a token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// The token endpoint.
    pub issuer: String,
    /// The audience (else resource) asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// `exchanged`, `cached` or `failed`.
    pub outcome: &'static str,
}

#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
}

type Cell = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The exchanges of one sidecar and their cache.
#[derive(Default)]
pub struct Exchanger {
    cells: Mutex<HashMap<[u8; 32], Cell>>,
    client: std::sync::OnceLock<Upstream>,
    /// Exchanges sent to the IdP (for tests and metrics).
    pub sent: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.cells.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("Exchanger").field("cached", &n).finish()
    }
}

impl Exchanger {
    /// The upstream token for this call's caller, and what to record.
    pub(crate) async fn token(
        &self,
        spec: &TokenExchangeSpec,
        secrets: &Secrets,
        call: &Call<'_>,
    ) -> (Result<String, AuthError>, Note) {
        let mut note = Note {
            issuer: spec.token_endpoint.clone(),
            audience: spec.audience.clone().or_else(|| spec.resource.clone()),
            outcome: "failed",
        };
        let fail = |reason: String| AuthError::Exchange {
            issuer: spec.token_endpoint.clone(),
            reason,
        };
        let Some(subject) = super::bearer(call.caller_headers) else {
            return (
                Err(fail("the caller has no bearer token to exchange".into())),
                note,
            );
        };
        if let Err(e) = endpoint_allowed(&spec.token_endpoint) {
            return (Err(fail(e)), note);
        }
        let cell = self.cell(key(spec, subject));
        let mut entry = cell.lock().await;
        let now = Instant::now();
        if let Some(c) = entry.as_ref().filter(|c| c.refresh_at > now) {
            note.outcome = "cached";
            return (Ok(c.token.to_string()), note);
        }
        let secret_name = super::secret::ref_name(&spec.client_secret_ref);
        let Some(secret) = secrets.get(&secret_name) else {
            *entry = None;
            return (
                Err(fail(format!(
                    "the client secret {secret_name} is not available"
                ))),
                note,
            );
        };
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.exchange(spec, subject, &secret).await {
            Ok((token, lifetime)) => {
                let token: Arc<str> = Arc::from(token);
                // Never past the subject token's own expiry.
                let subject_left = subject_expiry(subject).unwrap_or(lifetime);
                let keep = lifetime.min(subject_left).saturating_sub(REFRESH_BEFORE);
                *entry = Some(Cached {
                    token: token.clone(),
                    refresh_at: Instant::now() + keep,
                });
                note.outcome = "exchanged";
                (Ok(token.to_string()), note)
            }
            Err(reason) => {
                *entry = None;
                (Err(fail(reason)), note)
            }
        }
    }

    /// The cell of `key`, made room for (expired and idle entries go first; a full cache of
    /// fresh ones gets an uncached cell).
    fn cell(&self, key: [u8; 32]) -> Cell {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cells.get(&key) {
            return c.clone();
        }
        if cells.len() >= MAX_ENTRIES {
            let now = Instant::now();
            cells.retain(|_, c| {
                Arc::strong_count(c) > 1
                    || c.try_lock()
                        .map(|e| e.as_ref().is_some_and(|e| e.refresh_at > now))
                        .unwrap_or(true)
            });
            if cells.len() >= MAX_ENTRIES {
                return Cell::default();
            }
        }
        cells.entry(key).or_default().clone()
    }

    /// One exchange at the IdP: the token and its lifetime, or why not (never a token).
    async fn exchange(
        &self,
        spec: &TokenExchangeSpec,
        subject: &str,
        secret: &str,
    ) -> Result<(String, Duration), String> {
        // The serializer is not `Send`: it ends before the first await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", subject)
            .append_pair(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            )
            .append_pair(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            );
            if let Some(a) = &spec.audience {
                form.append_pair("audience", a);
            }
            if let Some(r) = &spec.resource {
                form.append_pair("resource", r);
            }
            if let Some(s) = &spec.scope {
                form.append_pair("scope", s);
            }
            form.finish()
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        // RFC 6749 §2.3.1: form-urlencoded id and secret, then Basic.
        let basic = format!("{}:{}", form_encode(&spec.client_id), form_encode(secret));
        let mut auth = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(basic)
        ))
        .map_err(|_| "the client credentials are not a valid header value".to_owned())?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        let client = self.client.get_or_init(|| Upstream::new(TIMEOUT));
        let (response, _) = client
            .send(
                Method::POST,
                &spec.token_endpoint,
                None,
                headers,
                Bytes::from(body),
            )
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = tokio::time::timeout(
            TIMEOUT,
            Limited::new(response.into_body(), MAX_RESPONSE).collect(),
        )
        .await
        .map_err(|_| "the IdP's answer did not arrive in time".to_owned())?
        .map_err(|e| format!("the IdP's answer could not be read: {e}"))?
        .to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            // RFC 6749 §5.2: `error` and `error_description` name no token.
            let error = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no error code");
            let description = answer
                .get("error_description")
                .and_then(Value::as_str)
                .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            return Err(format!("HTTP {} {error}{description}", status.as_u16()));
        }
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or("the IdP's answer has no access_token")?;
        let lifetime = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((token.to_owned(), lifetime))
    }
}

/// The cache key: the subject token and what is asked for, hashed (no token kept as a key).
fn key(spec: &TokenExchangeSpec, subject: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        subject,
        &spec.token_endpoint,
        spec.audience.as_deref().unwrap_or(""),
        spec.resource.as_deref().unwrap_or(""),
        spec.scope.as_deref().unwrap_or(""),
        &spec.client_id,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// https anywhere; http only to a loopback host (the subject token must not cross a network
/// in clear).
fn endpoint_allowed(endpoint: &str) -> Result<(), String> {
    let url =
        url::Url::parse(endpoint).map_err(|_| format!("invalid token endpoint {endpoint}"))?;
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => Ok(()),
        ("http", Some(url::Host::Ipv4(ip))) if ip.is_loopback() => Ok(()),
        ("http", Some(url::Host::Ipv6(ip))) if ip.is_loopback() => Ok(()),
        ("http", Some(url::Host::Domain("localhost"))) => Ok(()),
        _ => Err(format!(
            "the token endpoint {endpoint} must be https (http only on loopback)"
        )),
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// How long the subject token (already verified) has left, from its `exp`.
fn subject_expiry(token: &str) -> Option<Duration> {
    let exp = crate::auth::unverified_claims(token)?
        .get("exp")?
        .as_i64()?;
    let left = exp - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_endpoints() {
        assert!(endpoint_allowed("https://idp.example/token").is_ok());
        assert!(endpoint_allowed("http://127.0.0.1:9000/token").is_ok());
        assert!(endpoint_allowed("http://[::1]:9000/token").is_ok());
        assert!(endpoint_allowed("http://localhost/token").is_ok());
        assert!(endpoint_allowed("http://idp.example/token").is_err());
        assert!(endpoint_allowed("http://10.0.0.1/token").is_err());
        assert!(endpoint_allowed("ftp://idp.example/token").is_err());
    }

    #[test]
    fn keys_differ_by_token_and_audience() {
        let spec = TokenExchangeSpec {
            token_endpoint: "https://idp/token".into(),
            audience: Some("a".into()),
            ..TokenExchangeSpec::default()
        };
        let other = TokenExchangeSpec {
            audience: Some("b".into()),
            ..spec.clone()
        };
        assert_ne!(key(&spec, "t1"), key(&spec, "t2"));
        assert_ne!(key(&spec, "t1"), key(&other, "t1"));
        assert_eq!(key(&spec, "t1"), key(&spec, "t1"));
    }
}
