//! Authentication: the sidecar is the OAuth 2.1 resource server of the MCP server it guards.
//!
//! ```text
//! Authorization: Bearer <jwt> ──► Authenticator::authenticate(rules, headers, query, now)
//!     ├─ token::bearer: only one Authorization: Bearer header (`access_token` in the query → NotInHeader)
//!     ├─ cache: SHA-256(token) → Verified (LRU, never past exp, only while the issuer's config
//!     │         and key set are the ones it was verified with)
//!     ├─ token::Jwt + check_header: JWS only; alg on the issuer's allow-list (never none, never
//!     │         HS*); typ absent / at+jwt / JWT; no crit; issuer picked by the unverified iss
//!     ├─ token::validate_claims: iss exact; aud ∋ an accepted audience (scheme/host any case);
//!     │         exp required, nbf, iat with clock_skew leeway; exp - iat ≤ maxTokenLifetime
//!     └─ signature against the issuer's JWKS (jwks::Fetcher: jwks_uri, OIDC / RFC 8414
//!               discovery, or the in-cluster API server), cached per issuer:
//!               refreshed when older than `jwks_refresh` (by the request that notices),
//!               re-fetched on an unknown kid at most once per `jwks_min_refetch`,
//!               concurrent requests share one fetch
//!        ──► Verified { principal: policy::Principal, token_id (jti), expires_at }
//! ```
//!
//! `prm` serves RFC 9728 Protected Resource Metadata and builds the `WWW-Authenticate`
//! challenges. The token itself is never logged, stored in clear, or forwarded: the cache and the
//! logs only see its SHA-256.
//!
//! Decisions worth knowing:
//! * a `max_token_lifetime` of zero disables the lifetime check; otherwise a token without
//!   `iat` is refused (its lifetime cannot be checked);
//! * when an issuer's keys cannot be refreshed, the last keys fetched stay in use for
//!   `jwks_max_stale`, then its tokens are refused with [`AuthError::KeysUnavailable`];
//! * a Kubernetes issuer without `jwksUri`, in a pod, takes its keys from the local API server
//!   (`/openid/v1/jwks`, cluster CA, the pod's ServiceAccount token) only when it is the local
//!   cluster's issuer (the `iss` of the pod's own token); elsewhere, or for another cluster's
//!   issuer, discovery or `jwksUri` apply as for OAuth issuers.

mod cache;
mod jwks;
pub mod prm;
mod token;

pub use jwks::{HttpClient, default_http_client, https_client, unverified_claims};

use arc_swap::ArcSwap;
use cache::{Basis, TokenCache, TokenHash};
use http::HeaderMap;
use jiff::Timestamp;
use jsonwebtoken::Algorithm;
use jwks::{Fetcher, Key};
use mcp_warden_crds::IssuerKind;
use mcp_warden_policy::{Principal, RuleSet, compile::Issuer};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use token::{Jwt, Limits};

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

/// Why a request is unauthenticated (answered 401 with a challenge). The text (`Display`) is
/// short, never contains the token, and is meant for `error_description`.
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
    /// The token's issuer is trusted but its signing keys could not be fetched (and no recent
    /// copy is at hand), so the token cannot be checked. Details are in the log.
    #[error("the issuer's signing keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// Whether a token was presented (then the challenge carries `error="invalid_token"`).
    pub fn token_sent(&self) -> bool {
        !matches!(self, Self::Missing)
    }

    /// A stable label for metrics and logs: `missing`, `not_in_header`, `invalid`,
    /// `keys_unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::NotInHeader => "not_in_header",
            Self::Invalid(_) => "invalid",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Tunables of an [`Authenticator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Keys older than this are re-fetched by the next request that needs them (default 5 min).
    pub jwks_refresh: Duration,
    /// At most one fetch per issuer within this period, whatever triggers it (an unknown `kid`,
    /// a failed fetch); default 10 s.
    pub jwks_min_refetch: Duration,
    /// How long the last keys fetched stay usable while the issuer cannot be reached (default
    /// 24 h).
    pub jwks_max_stale: Duration,
    /// Time limit of one HTTP fetch (default 5 s).
    pub fetch_timeout: Duration,
    /// Verified tokens remembered at most (default 10,000; 0 disables the cache).
    pub cache_capacity: usize,
    /// Fetch keys over plain `http` from non-loopback hosts too (default false).
    pub allow_http: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
            jwks_max_stale: Duration::from_secs(24 * 3600),
            fetch_timeout: Duration::from_secs(5),
            cache_capacity: 10_000,
            allow_http: false,
        }
    }
}

/// Counters, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Requests answered from the verified-token cache.
    pub cache_hits: u64,
    /// Tokens verified in full.
    pub cache_misses: u64,
    /// Key fetches (discovery + JWKS count as one).
    pub jwks_fetches: u64,
    /// Key fetches that failed.
    pub jwks_fetch_failures: u64,
    /// Tokens in the cache now.
    pub cached_tokens: u64,
}

#[derive(Debug, Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    jwks_fetches: AtomicU64,
    jwks_fetch_failures: AtomicU64,
}

/// The keys of one issuer as last fetched.
#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<Key>,
    /// Changes whenever the fetched document changes (0: never fetched).
    generation: u64,
    digest: [u8; 32],
    fetched_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct FetchState {
    last_attempt: Option<Instant>,
}

/// The keys of one issuer, and the lock that makes concurrent requests share one fetch.
#[derive(Debug, Default)]
struct IssuerKeys {
    current: ArcSwap<KeySet>,
    fetch: tokio::sync::Mutex<FetchState>,
}

/// Identifies an issuer's key source: the same `iss` with another `jwks_uri` or kind gets its
/// own keys.
type IssuerId = (String, Option<String>, bool);

fn issuer_id(issuer: &Issuer) -> IssuerId {
    (
        issuer.issuer.clone(),
        issuer.jwks_uri.clone(),
        issuer.kind == IssuerKind::Kubernetes,
    )
}

/// Verifies bearer tokens against the issuers of the rules in force. Shared by all requests.
pub struct Authenticator {
    config: AuthConfig,
    fetcher: Fetcher,
    issuers: Mutex<HashMap<IssuerId, Arc<IssuerKeys>>>,
    cache: Mutex<TokenCache>,
    generations: AtomicU64,
    counters: Counters,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("fetcher", &self.fetcher)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    /// A new authenticator with empty caches, the default settings and the default HTTP client.
    pub fn new() -> Self {
        Self::with_config(AuthConfig::default())
    }

    /// A new authenticator with these settings and the default HTTP client.
    pub fn with_config(config: AuthConfig) -> Self {
        Self::with_http_client(default_http_client(), config)
    }

    /// A new authenticator fetching keys with `client` (e.g. one trusting a private CA, see
    /// [`https_client`]).
    pub fn with_http_client(client: HttpClient, config: AuthConfig) -> Self {
        Self {
            fetcher: Fetcher::new(client, config.fetch_timeout, config.allow_http),
            cache: Mutex::new(TokenCache::new(config.cache_capacity)),
            issuers: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(0),
            counters: Counters::default(),
            config,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> AuthStats {
        let c = &self.counters;
        AuthStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            jwks_fetches: c.jwks_fetches.load(Ordering::Relaxed),
            jwks_fetch_failures: c.jwks_fetch_failures.load(Ordering::Relaxed),
            cached_tokens: self.lock_cache().len() as u64,
        }
    }

    /// Forgets every verified token (e.g. after a revocation the rules cannot express).
    pub fn clear_cache(&self) {
        self.lock_cache().clear();
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Authenticates one request from its headers (and query string, which must not carry a
    /// token).
    pub async fn authenticate(
        &self,
        rules: &RuleSet,
        headers: &HeaderMap,
        query: Option<&str>,
        now: Timestamp,
    ) -> Result<Arc<Verified>, AuthError> {
        let token = token::bearer(headers, query)?;
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        let result = self.verify(rules, token, &hash, now).await;
        if let Err(e) = &result {
            tracing::debug!(token_sha256 = %hex::encode(&hash[..6]), reason = %e, "bearer token refused");
        }
        result
    }

    async fn verify(
        &self,
        rules: &RuleSet,
        token: &str,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Arc<Verified>, AuthError> {
        let limits = Limits {
            clock_skew: rules.clock_skew,
            max_token_lifetime: rules.max_token_lifetime,
        };
        if let Some(verified) = self.cached(rules, limits, hash, now).await {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(verified);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);

        let jwt = Jwt::parse(token)?;
        let (alg, issuer) =
            token::check_header(&jwt, |iss| rules.issuers.iter().find(|i| i.issuer == iss))?;
        let claims = token::validate_claims(&jwt.claims, issuer, limits, now)?;
        let keys = self.issuer_keys(rules, issuer);
        let generation = self.verify_signature(&keys, issuer, &jwt, alg).await?;

        let verified = Arc::new(Verified {
            principal: Principal {
                issuer: claims.issuer,
                subject: claims.subject,
                client_id: claims.client_id,
                scopes: claims.scopes,
                issued_at: claims.issued_at,
            },
            token_id: claims.token_id,
            expires_at: Some(claims.expires_at),
        });
        let basis = Basis {
            issuer: issuer.issuer.as_str().into(),
            config: fingerprint(issuer, limits),
            keys: generation,
        };
        self.lock_cache()
            .insert(*hash, verified.clone(), claims.expires_at, basis);
        Ok(verified)
    }

    /// A cached verification still valid at `now` for these rules and the issuer's current keys
    /// (refreshing the keys first when they are due).
    async fn cached(
        &self,
        rules: &RuleSet,
        limits: Limits,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Option<Arc<Verified>> {
        let issuer_name = self.lock_cache().issuer_of(hash)?;
        let issuer = rules.issuers.iter().find(|i| *i.issuer == *issuer_name);
        let keys = match issuer {
            Some(issuer) => {
                let keys = self.issuer_keys(rules, issuer);
                // Refresh when due, so that a retired key stops being accepted from the cache.
                if keys.current.load().fetched_at.is_some() {
                    let _ = self.current_keys(&keys, issuer).await;
                }
                Some((issuer, keys))
            }
            None => None,
        };
        self.lock_cache().get(hash, now, |name| {
            let (issuer, keys) = keys.as_ref()?;
            Some(Basis {
                issuer: name.clone(),
                config: fingerprint(issuer, limits),
                keys: keys.current.load().generation,
            })
        })
    }

    /// The key store of `issuer` (created on first use; stores of issuers no longer configured
    /// are dropped then).
    fn issuer_keys(&self, rules: &RuleSet, issuer: &Issuer) -> Arc<IssuerKeys> {
        let id = issuer_id(issuer);
        let mut map = self.issuers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(keys) = map.get(&id) {
            return keys.clone();
        }
        map.retain(|id, _| rules.issuers.iter().any(|i| issuer_id(i) == *id));
        map.entry(id).or_default().clone()
    }

    /// Verifies the signature with the issuer's keys; on an unknown `kid` (or no fitting key)
    /// the keys are re-fetched once (rate limited). Returns the key set generation used.
    async fn verify_signature(
        &self,
        keys: &IssuerKeys,
        issuer: &Issuer,
        jwt: &Jwt<'_>,
        alg: Algorithm,
    ) -> Result<u64, AuthError> {
        let mut set = self.current_keys(keys, issuer).await?;
        for attempt in 0..2 {
            let candidates: Vec<&Key> = set
                .keys
                .iter()
                .filter(|k| jwt.kid.is_none() || k.kid == jwt.kid)
                .filter(|k| k.fits(alg))
                .take(8)
                .collect();
            if !candidates.is_empty() {
                let valid = candidates.iter().any(|k| {
                    jsonwebtoken::crypto::verify(
                        jwt.signature,
                        jwt.signing_input.as_bytes(),
                        &k.key,
                        alg,
                    )
                    .unwrap_or(false)
                });
                return if valid {
                    Ok(set.generation)
                } else {
                    Err(AuthError::Invalid("invalid signature".into()))
                };
            }
            if attempt == 0 {
                set = self.refetch(keys, issuer, &set).await;
            }
        }
        Err(AuthError::Invalid(
            if jwt.kid.is_some() {
                "unknown signing key (kid)"
            } else {
                "no signing key of the issuer fits the token"
            }
            .into(),
        ))
    }

    /// The issuer's keys, fetched on first use and refreshed when older than `jwks_refresh`.
    async fn current_keys(
        &self,
        keys: &IssuerKeys,
        issuer: &Issuer,
    ) -> Result<Arc<KeySet>, AuthError> {
        let set = keys.current.load_full();
        match set.fetched_at {
            None => {
                // First use: wait for (or do) the one fetch.
                let mut state = keys.fetch.lock().await;
                let set = keys.current.load_full();
                if set.fetched_at.is_none() {
                    self.fetch_locked(keys, issuer, &mut state).await;
                }
            }
            Some(at) if at.elapsed() >= self.config.jwks_refresh => {
                // Due: the request that notices refreshes; others use the current keys meanwhile.
                if let Ok(mut state) = keys.fetch.try_lock() {
                    let set = keys.current.load_full();
                    if set
                        .fetched_at
                        .is_some_and(|at| at.elapsed() >= self.config.jwks_refresh)
                    {
                        self.fetch_locked(keys, issuer, &mut state).await;
                    }
                }
            }
            Some(_) => return Ok(set),
        }
        let set = keys.current.load_full();
        match set.fetched_at {
            Some(at) if at.elapsed() < self.config.jwks_max_stale => Ok(set),
            _ => Err(AuthError::KeysUnavailable),
        }
    }

    /// Re-fetches after an unknown `kid`, unless another request did since `seen` was read, or
    /// the issuer was fetched less than `jwks_min_refetch` ago.
    async fn refetch(&self, keys: &IssuerKeys, issuer: &Issuer, seen: &Arc<KeySet>) -> Arc<KeySet> {
        let mut state = keys.fetch.lock().await;
        let set = keys.current.load_full();
        if set.fetched_at != seen.fetched_at {
            return set;
        }
        self.fetch_locked(keys, issuer, &mut state).await;
        keys.current.load_full()
    }

    /// Fetches the issuer's keys (rate limited), holding its fetch lock. A failure keeps the
    /// previous keys.
    async fn fetch_locked(&self, keys: &IssuerKeys, issuer: &Issuer, state: &mut FetchState) {
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.config.jwks_min_refetch)
        {
            return;
        }
        self.counters.jwks_fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetcher.fetch(issuer).await;
        // The limit counts from the end of a fetch, so a slow issuer is not fetched back to back.
        state.last_attempt = Some(Instant::now());
        match result {
            Ok(fetched) => {
                let old = keys.current.load_full();
                let generation = if old.generation != 0 && old.digest == fetched.digest {
                    old.generation
                } else {
                    self.generations.fetch_add(1, Ordering::Relaxed) + 1
                };
                if generation != old.generation {
                    let kids: Vec<&str> = fetched
                        .keys
                        .iter()
                        .filter_map(|k| k.kid.as_deref())
                        .collect();
                    tracing::info!(issuer = %issuer.issuer, keys = ?kids, "signing keys loaded");
                }
                keys.current.store(Arc::new(KeySet {
                    keys: fetched.keys,
                    generation,
                    digest: fetched.digest,
                    fetched_at: Some(Instant::now()),
                }));
            }
            Err(error) => {
                self.counters
                    .jwks_fetch_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(issuer = %issuer.issuer, %error, "cannot fetch the issuer's signing keys");
            }
        }
    }
}

/// What a verification depends on besides the keys: the issuer's configuration and the limits.
fn fingerprint(issuer: &Issuer, limits: Limits) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    issuer.issuer.hash(&mut h);
    issuer.jwks_uri.hash(&mut h);
    issuer.audiences.hash(&mut h);
    issuer.algorithms.hash(&mut h);
    (issuer.kind == IssuerKind::Kubernetes).hash(&mut h);
    limits.clock_skew.hash(&mut h);
    limits.max_token_lifetime.hash(&mut h);
    h.finish()
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
    let scopes = [&rules.tools, &rules.resources, &rules.prompts]
        .into_iter()
        .flat_map(|entries| &entries.list)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use mcp_warden_crds::{McpTool, McpToolSpec};
    use mcp_warden_policy::{Bundle, compile};

    fn rules() -> RuleSet {
        let spec: McpToolSpec = serde_json::from_value(serde_json::json!({
            "owner": "t",
            "server": {"resource": "https://mcp.example/mcp"},
            "authentication": {"issuers": [{"issuer": "https://idp.example"}]},
        }))
        .unwrap();
        compile(&Bundle::new([McpTool::new("t", spec)], [], [])).unwrap()
    }

    #[test]
    fn shared_by_all_requests() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let a = Authenticator::new();
        send_sync(&a);
        let rules = rules();
        let headers = HeaderMap::new();
        send(&a.authenticate(&rules, &headers, None, Timestamp::now()));
    }

    #[tokio::test]
    async fn refusals_before_any_fetch() {
        let a = Authenticator::new();
        let rules = rules();
        let now = Timestamp::now();
        let mut headers = HeaderMap::new();
        assert_eq!(
            a.authenticate(&rules, &headers, None, now).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            a.authenticate(&rules, &headers, Some("access_token=x.y.z"), now)
                .await,
            Err(AuthError::NotInHeader)
        );
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer x.y.z"),
        );
        let e = a
            .authenticate(&rules, &headers, None, now)
            .await
            .unwrap_err();
        assert_eq!(e, AuthError::Invalid("malformed token header".into()));
        assert_eq!((e.kind(), e.token_sent()), ("invalid", true));
        assert_eq!(AuthError::Missing.kind(), "missing");
        assert_eq!(AuthError::KeysUnavailable.kind(), "keys_unavailable");
        assert_eq!(a.stats().jwks_fetches, 0);
        assert!(!format!("{a:?}").contains("x.y.z"));
    }
}
