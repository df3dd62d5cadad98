//! Authenticating sidecars with TokenReview: a push-API [`Authorizer`] for projected
//! ServiceAccount tokens.
//!
//! ```text
//! Authorization: Bearer <token> ──► cache hit (same token, not expired)? ──► its pod
//!                                   └─► POST authentication.k8s.io/v1 TokenReview
//!                                         {token, audiences: [<operator audience>]}
//!                                       authenticated, audience echoed,
//!                                       user "system:serviceaccount:<namespace>:…",
//!                                       extra["authentication.kubernetes.io/pod-name"] == [pod]
//!                                       ──► the pod, cached for `cache_ttl`
//!   API server unreachable, 5xx, no answer in 10 s ──► AuthError::Unavailable (503, retry)
//!   token rejected ──► Unauthenticated (401); another pod than asked ──► Forbidden (403)
//! ```
//!
//! The pod binding is what makes a stolen or shared ServiceAccount token useless for another
//! pod's bundle: a token is bound to the pod it was projected into (kubelet), and the operator
//! refuses it for any other pod, even one running under the same ServiceAccount.

use crate::push::{AuthError, Authorizer, Caller};
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;

/// `status.user.extra` key holding the name of the pod a projected token is bound to.
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// Most cached reviews; the cache is cleared when full.
const CACHE_MAX: usize = 10_000;

/// Longest wait for the API server's answer to one TokenReview (then 503, the caller retries).
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// Whom a reviewed token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    username: String,
    namespace: String,
    pod: String,
}

/// Successful reviews by SHA-256 of the token: until when, and whose it is.
type ReviewCache = HashMap<[u8; 32], (Instant, Identity)>;

/// Validates callers' tokens with the TokenReview API.
#[derive(Clone)]
pub struct TokenReviewAuthorizer {
    client: Client,
    audience: String,
    cache_ttl: Duration,
    timeout: Duration,
    /// Successful reviews by SHA-256 of the token: whom it belongs to, until when.
    cache: Arc<Mutex<ReviewCache>>,
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for TokenReviewAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewAuthorizer")
            .field("audience", &self.audience)
            .field("cache_ttl", &self.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenReviewAuthorizer {
    /// An authorizer that asks the API server behind `client`, requiring `audience`.
    pub fn new(client: Client, audience: impl Into<String>) -> Self {
        Self {
            client,
            audience: audience.into(),
            cache_ttl: Duration::from_secs(60),
            timeout: REVIEW_TIMEOUT,
            cache: Arc::default(),
            metrics: None,
        }
    }

    /// How long a successful review is reused for the same token (0: never).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Longest wait for one TokenReview answer (default 10 s); past it the caller gets 503.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Counts TokenReview errors in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn cache_key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Identity> {
        let cache = self.cache.lock().expect("cache lock");
        cache
            .get(key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, who)| who.clone())
    }

    /// Whom `token` belongs to: a pod-bound ServiceAccount token for the operator's audience.
    async fn identify(&self, token: &str) -> Result<Identity, AuthError> {
        let key = Self::cache_key(token);
        if let Some(who) = self.cached(&key) {
            return Ok(who);
        }
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let unavailable = |error: &dyn std::fmt::Display| {
            if let Some(m) = &self.metrics {
                m.error("tokenreview");
            }
            tracing::warn!(%error, "TokenReview failed");
            AuthError::Unavailable("the token could not be reviewed now: try again".to_owned())
        };
        let answer =
            match tokio::time::timeout(self.timeout, api.create(&PostParams::default(), &request))
                .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(unavailable(&e)),
                Err(_) => return Err(unavailable(&"no answer within the timeout")),
            };
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(AuthError::Unauthenticated(format!("token refused: {why}")));
        }
        // The API server answers with the audiences the token is valid for among those asked;
        // an empty answer with audiences asked means the authenticator ignored them.
        if !status
            .audiences
            .unwrap_or_default()
            .contains(&self.audience)
        {
            return Err(AuthError::Unauthenticated(format!(
                "the token is not for audience {}",
                self.audience
            )));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let Some(namespace) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, _)| ns.to_owned())
        else {
            return Err(AuthError::Unauthenticated(format!(
                "the token belongs to {username:?}, not to a ServiceAccount"
            )));
        };
        let bound = user
            .extra
            .unwrap_or_default()
            .remove(POD_NAME_EXTRA)
            .unwrap_or_default();
        let [pod] = bound.as_slice() else {
            return Err(AuthError::Unauthenticated(
                "the token is not bound to a pod (use a projected ServiceAccount token)".to_owned(),
            ));
        };
        let who = Identity {
            username,
            namespace,
            pod: pod.clone(),
        };
        if !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().expect("cache lock");
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now() + self.cache_ttl, who.clone()));
        }
        Ok(who)
    }

    /// Reviews `token` for `namespace/pod`.
    pub async fn review(&self, token: &str, namespace: &str, pod: &str) -> Result<(), AuthError> {
        let who = self.identify(token).await?;
        check(&who, namespace, pod)
    }
}

/// Whether `who` is `namespace/pod`.
fn check(who: &Identity, namespace: &str, pod: &str) -> Result<(), AuthError> {
    if who.namespace != namespace {
        return Err(AuthError::Forbidden(format!(
            "the token belongs to {:?}, not to a ServiceAccount of namespace {namespace}",
            who.username
        )));
    }
    if who.pod != pod {
        return Err(AuthError::Forbidden(format!(
            "the token is bound to pod {namespace}/{}, not {namespace}/{pod}",
            who.pod
        )));
    }
    Ok(())
}

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            AuthError::Unauthenticated(
                "a bearer token (the pod's projected ServiceAccount token) is required".to_owned(),
            )
        })
}

impl Authorizer for TokenReviewAuthorizer {
    /// Without I/O only a cached review can succeed; the push server uses `authorize_async`.
    fn authorize(
        &self,
        headers: &http::HeaderMap,
        namespace: &str,
        pod: &str,
    ) -> Result<(), String> {
        let token = bearer(headers).map_err(|e| e.to_string())?;
        match self.cached(&Self::cache_key(token)) {
            Some(who) => check(&who, namespace, pod).map_err(|e| e.to_string()),
            None => Err("the token has not been reviewed".into()),
        }
    }

    fn authorize_async<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        namespace: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move {
            let token = bearer(headers)?;
            self.review(token, namespace, pod).await
        })
    }

    fn authenticate<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(async move {
            let who = self.identify(bearer(headers)?).await?;
            Ok(Caller::Pod {
                namespace: who.namespace,
                pod: who.pod,
            })
        })
    }
}
