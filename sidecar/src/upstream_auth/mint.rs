//! The identity JWT: who calls, for the upstream's own per-user logic and logs.
//!
//! ```text
//! header  {"alg": "ES256" | "EdDSA", "typ": "JWT", "kid": <RFC 7638 thumbprint>}
//! claims  iss        identity.issuer, else the McpTool's server.resource
//!         aud        identity.audience, else the McpTool's server.upstream
//!         sub        the caller's subject (else its client id, else the McpClient)
//!         iat, nbf, exp = iat + lifetimeSeconds (≤ 60), jti (random, also in the audit record)
//!         client_id  the caller's OAuth client;  mcp_client  the McpClient (namespace/name)
//!         mcp_tool   the McpTool;  scope  the caller's scopes;  grants  the McpPolicies
//!         act        {"sub": client id, "iss": caller's issuer}, wrapping the caller's own act
//! ```
//!
//! Never the caller's token: only claims the sidecar verified or decided.

use super::{AuthError, Call, keys::Keys};
use base64::Engine as _;
use jiff::Timestamp;
use jsonwebtoken::Header;
use mcp_warden_crds::UpstreamIdentitySpec;
use mcp_warden_policy::RuleSet;
use serde_json::{Map, Value, json};

/// Mints the identity JWT of one call; returns it and its `jti`.
pub(crate) fn mint(
    keys: &Keys,
    rules: &RuleSet,
    spec: &UpstreamIdentitySpec,
    call: &Call<'_>,
) -> Result<(String, String), AuthError> {
    let signing = keys.current().ok_or(AuthError::NoKey)?;
    let now = Timestamp::now().as_second();
    let jti = {
        let bytes: [u8; 16] = rand::random();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let p = call.principal;
    let subject = (p.subject.clone())
        .or_else(|| p.client_id.clone())
        .unwrap_or_else(|| call.client.ns_name().to_string());
    let mut actor = Map::new();
    if let Some(client_id) = &p.client_id {
        actor.insert("sub".into(), json!(client_id));
    }
    actor.insert("iss".into(), json!(p.issuer));
    if let Some(prior) = super::bearer(call.caller_headers).and_then(caller_act) {
        actor.insert("act".into(), prior);
    }
    let mut grants: Vec<String> = call
        .grants
        .iter()
        .map(|g| g.ns_name().to_string())
        .collect();
    grants.sort();
    grants.dedup();
    let claims = json!({
        "iss": spec.issuer.as_deref().unwrap_or(&rules.resource),
        "aud": spec.audience.as_deref().unwrap_or(&rules.upstream),
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + i64::from(spec.lifetime_seconds.clamp(1, 60)),
        "jti": jti,
        "client_id": p.client_id,
        "mcp_client": call.client.ns_name().to_string(),
        "mcp_tool": rules.tool.ns_name().to_string(),
        "scope": p.scopes.iter().map(String::as_str).collect::<Vec<_>>().join(" "),
        "grants": grants,
        "act": Value::Object(actor),
    });
    let mut header = Header::new(signing.alg);
    header.kid = Some(signing.kid.clone());
    header.typ = Some("JWT".into());
    let jwt = jsonwebtoken::encode(&header, &claims, &signing.key)
        .map_err(|e| AuthError::Sign(e.to_string()))?;
    Ok((jwt, jti))
}

/// The `act` claim of the caller's token (verified by the sidecar before this runs).
fn caller_act(token: &str) -> Option<Value> {
    let claims = crate::auth::unverified_claims(token)?;
    claims.get("act").filter(|a| a.is_object()).cloned()
}
