//! Authentication: the sidecar is the OAuth 2.1 resource server of the MCP server it guards.
//!
//! ```text
//! Authorization: Bearer <jwt> ──► Authenticator::authenticate(rules, headers, query)
//!     ├─ only the Authorization header (a token in the query string is refused)
//!     ├─ verified-token cache (by SHA-256 of the token, bounded, never past `exp`)
//!     ├─ header: alg allow-list (never `none`, never HS*), kid ──► JWKS of the issuer
//!     │          (OIDC / RFC 8414 discovery or jwks_uri; cached; re-fetched on unknown kid, rate limited)
//!     └─ claims: iss, aud ∋ resource, exp/nbf/iat with leeway, exp - iat ≤ maxTokenLifetime
//!                ──► Verified { principal: policy::Principal, token_id (jti), expires_at }
//! ```
//!
//! `prm` serves RFC 9728 Protected Resource Metadata and builds the `WWW-Authenticate`
//! challenges. The token itself is never logged, stored in clear, or forwarded.

pub mod prm;

use http::HeaderMap;
use jiff::Timestamp;
use mcp_warden_policy::{Principal, RuleSet};

/// A caller whose token was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Who is calling, for `policy::authenticate`.
    pub principal: Principal,
    /// The token's `jti`, for audit records.
    pub token_id: Option<String>,
    /// The token's `exp`.
    pub expires_at: Option<Timestamp>,
}

/// Why a request is unauthenticated (answered 401 with a challenge).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no bearer token")]
    Missing,
    /// A token was sent somewhere other than the `Authorization` header.
    #[error("tokens are accepted only in the Authorization header")]
    NotInHeader,
    /// The token was presented but is not acceptable; the text says why (never the token).
    #[error("{0}")]
    Invalid(String),
}

impl AuthError {
    /// Whether a token was presented (then the challenge carries `error="invalid_token"`).
    pub fn token_sent(&self) -> bool {
        !matches!(self, Self::Missing)
    }
}

/// Verifies bearer tokens against the issuers of the rules in force.
#[derive(Debug, Default)]
pub struct Authenticator {}

impl Authenticator {
    /// A new authenticator with empty caches.
    pub fn new() -> Self {
        Self {}
    }

    /// Authenticates one request from its headers (and query string, which must not carry a
    /// token).
    pub async fn authenticate(
        &self,
        _rules: &RuleSet,
        headers: &HeaderMap,
        _query: Option<&str>,
        _now: Timestamp,
    ) -> Result<Verified, AuthError> {
        if headers.get(http::header::AUTHORIZATION).is_none() {
            return Err(AuthError::Missing);
        }
        Err(AuthError::Invalid("token verification is not available yet".into()))
    }
}

/// The principal of `--anonymous-client`: the named McpClient's identity, holding every scope
/// the rules mention. `name` is `namespace/name` or a bare name (any namespace). `None` when no
/// such client (with a clientId identity) exists.
pub fn anonymous_principal(rules: &RuleSet, name: &str) -> Option<Principal> {
    let (ns, name) = match name.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, name),
    };
    let client = rules
        .clients
        .iter()
        .find(|c| c.object.name == name && ns.is_none_or(|ns| c.object.namespace == ns))?;
    let scopes = rules
        .entries
        .iter()
        .flat_map(|e| e.scopes.iter())
        .chain(rules.policies.iter().flat_map(|p| p.scopes.iter()))
        .cloned()
        .collect();
    Some(Principal {
        issuer: client.issuer.clone()?,
        subject: client.subject.clone(),
        client_id: client.client_id.clone(),
        scopes,
        issued_at: Some(Timestamp::now()),
    })
}
