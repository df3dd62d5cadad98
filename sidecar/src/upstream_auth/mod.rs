//! What the upstream learns about each call, since the caller's token never reaches it
//! (`McpTool.spec.upstreamAuth`, issue 22; design in `docs/upstream-auth.md`).
//!
//! ```text
//! proxy (post.rs, service.rs) ──► UpstreamAuth::apply(rules, call, &mut headers)
//!   ├─ identity       mint.rs: a JWT per call (iss McpTool, aud upstream, sub caller, client,
//!   │                 scope, grants, act), ≤ 60 s, signed with the current key of keys.rs
//!   ├─ credentials    secret.rs: Secret values (operator push) or files (standalone, polled
//!   │                 every 200 ms), one header each
//!   └─ tokenExchange  exchange.rs: RFC 8693 at the IdP, cached per caller, one exchange for
//!                     concurrent callers
//!   every configured part produces its header, or the call is refused (502) and nothing is sent
//! ```
//!
//! Values are never logged, never in metrics, never in audit records: the audit records only
//! which parts were applied and the exchange's issuer, audience and outcome.

pub mod exchange;
pub mod keys;
pub mod mint;
pub mod secret;

use http::{HeaderMap, HeaderName, HeaderValue};
use mcp_warden_policy::{ObjectRef, Principal, RuleSet};
use std::sync::Arc;

pub use exchange::Exchanger;
pub use keys::{KeyMaterial, Keys};
pub use secret::Secrets;

/// The upstream credentials of one sidecar: signing keys, Secret values, exchanged tokens.
#[derive(Debug, Default)]
pub struct UpstreamAuth {
    /// Signing keys of the identity JWT (and the JWKS the admin port serves).
    pub keys: Arc<Keys>,
    /// Secret values by `name/key`.
    pub secrets: Arc<Secrets>,
    /// RFC 8693 exchanges and their cache.
    pub exchanger: Exchanger,
}

/// One call as the upstream is told about it.
#[derive(Debug)]
pub struct Call<'a> {
    /// The verified caller.
    pub principal: &'a Principal,
    /// Its McpClient.
    pub client: &'a ObjectRef,
    /// The McpPolicies that allowed the call's messages (none for GET/DELETE).
    pub grants: Vec<&'a ObjectRef>,
    /// The caller's request headers (its `Authorization` is the exchange's subject token and
    /// carries the caller's own `act` chain).
    pub caller_headers: &'a HeaderMap,
}

/// Why the upstream cannot be told: the call is refused, the upstream gets nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No signing key yet (standalone: `--upstream-identity-key`; operator: not pushed yet).
    #[error("no identity signing key is available")]
    NoKey,
    /// Signing failed.
    #[error("the identity token could not be signed ({0})")]
    Sign(String),
    /// A Secret (or its file) is missing.
    #[error("the credential {0} is not available")]
    MissingSecret(String),
    /// A value cannot be sent as a header.
    #[error("the value for header {0} is not a valid header value")]
    BadValue(String),
    /// The token exchange failed.
    #[error("the token exchange at {issuer} failed: {reason}")]
    Exchange {
        /// The token endpoint.
        issuer: String,
        /// Why (never a token).
        reason: String,
    },
}

/// What was applied to one call, for its audit record
/// (`unmapped.mcp_warden.upstream_auth`; never a value).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// An identity JWT was sent: its `jti`.
    #[serde(rename = "identity_jti", skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The Secret refs sent (`name/key`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
    /// The token exchange, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<exchange::Note>,
}

impl UpstreamAuth {
    /// Sets the headers `rules.upstream_auth` asks for on a request to the upstream. `Ok(None)`
    /// when nothing is configured. Every part must succeed, or nothing is set.
    pub async fn apply(
        &self,
        rules: &RuleSet,
        call: &Call<'_>,
        headers: &mut HeaderMap,
    ) -> Result<Option<Applied>, (AuthError, Applied)> {
        let Some(spec) = &rules.upstream_auth else {
            return Ok(None);
        };
        let mut applied = Applied::default();
        let mut set: Vec<(HeaderName, HeaderValue)> = Vec::new();
        if let Some(identity) = &spec.identity {
            let (jwt, jti) =
                mint::mint(&self.keys, rules, identity, call).map_err(|e| (e, applied.clone()))?;
            set.push(
                header(&identity.header, &identity.prefix, &jwt)
                    .map_err(|e| (e, applied.clone()))?,
            );
            applied.identity = Some(jti);
        }
        for c in &spec.credentials {
            let name = secret::ref_name(&c.secret_ref);
            let value = self
                .secrets
                .get(&name)
                .ok_or_else(|| (AuthError::MissingSecret(name.clone()), applied.clone()))?;
            set.push(header(&c.header, &c.prefix, &value).map_err(|e| (e, applied.clone()))?);
            applied.credentials.push(name);
        }
        if let Some(x) = &spec.token_exchange {
            let (result, note) = self.exchanger.token(x, &self.secrets, call).await;
            applied.exchange = Some(note);
            let token = result.map_err(|e| (e, applied.clone()))?;
            set.push(header(&x.header, &x.prefix, &token).map_err(|e| (e, applied.clone()))?);
        }
        for (name, value) in set {
            headers.insert(name, value);
        }
        Ok(Some(applied))
    }
}

impl UpstreamAuth {
    /// The proxy's one call, where it sends to the upstream: sets the headers of the McpTool's
    /// `upstreamAuth` on `forward` for `access`, with the McpPolicies among `decided_by` as the
    /// grants. An error refuses the request (502, the upstream gets nothing); the `Applied` is
    /// for the audit record either way.
    pub async fn forward<'a>(
        &self,
        access: &'a crate::proxy::gate::Access,
        decided_by: impl Iterator<Item = &'a ObjectRef>,
        caller_headers: &HeaderMap,
        forward: &mut HeaderMap,
    ) -> (
        Result<(), crate::proxy::upstream::UpstreamError>,
        Option<Applied>,
    ) {
        let call = Call {
            principal: &access.principal,
            client: &access.client,
            grants: decided_by
                .filter(|o| o.kind == mcp_warden_policy::Kind::McpPolicy)
                .collect(),
            caller_headers,
        };
        match self.apply(&access.active.rules, &call, forward).await {
            Ok(applied) => (Ok(()), applied),
            Err((e, applied)) => {
                tracing::warn!(client = %access.client.ns_name(), error = %e, "refused: the upstream's credentials could not be produced");
                (
                    Err(crate::proxy::upstream::UpstreamError::Auth(e.to_string())),
                    Some(applied),
                )
            }
        }
    }
}

/// One header, `prefix` + `value`, marked sensitive (never printed by `Debug`, never indexed
/// by HPACK).
fn header(name: &str, prefix: &str, value: &str) -> Result<(HeaderName, HeaderValue), AuthError> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| AuthError::BadValue(name.to_owned()))?;
    let mut value = HeaderValue::from_str(&format!("{prefix}{value}"))
        .map_err(|_| AuthError::BadValue(name.to_string()))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Runs `read` every `every`, forever; an error keeps what is in force and is logged once per
/// different error (the standalone key file and Secret folder).
async fn poll<F, Fut>(every: std::time::Duration, what: &'static str, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last_error: Option<String> = None;
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match read().await {
            Ok(()) => last_error = None,
            Err(e) if last_error.as_ref() != Some(&e) => {
                tracing::warn!(error = %e, "{what} not (re)loaded; what is in force stays");
                last_error = Some(e);
            }
            Err(_) => {}
        }
    }
}

/// The caller's bearer token (`Authorization: Bearer …`), as the sidecar verified it.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
