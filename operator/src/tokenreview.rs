//! Authenticating sidecars with TokenReview: a push-API [`Authorizer`] for projected
//! ServiceAccount tokens.
//!
//! ```text
//! Authorization: Bearer <token> ──► cache hit (same token, same pod, not expired)? ──► ok
//!                                   └─► POST authentication.k8s.io/v1 TokenReview
//!                                         {token, audiences: [<operator audience>]}
//!                                       authenticated, audience echoed,
//!                                       user "system:serviceaccount:<namespace>:…",
//!                                       extra["authentication.kubernetes.io/pod-name"] == [pod]
//!                                       ──► ok, cached for `cache_ttl`
//! ```
//!
//! The pod binding is what makes a stolen or shared ServiceAccount token useless for another
//! pod's bundle: a token is bound to the pod it was projected into (kubelet), and the operator
//! refuses it for any other pod, even one running under the same ServiceAccount.

use crate::push::Authorizer;
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

/// Validates callers' tokens with the TokenReview API.
#[derive(Clone)]
pub struct TokenReviewAuthorizer {
    client: Client,
    audience: String,
    cache_ttl: Duration,
    cache: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
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
            cache: Arc::default(),
            metrics: None,
        }
    }

    /// How long a successful review is reused for the same token and pod (0: never).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Counts TokenReview errors in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn cache_key(token: &str, namespace: &str, pod: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [token, namespace, pod] {
            h.update(part.len().to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().expect("cache lock");
        cache.get(key).is_some_and(|until| Instant::now() < *until)
    }

    /// Reviews `token` for `namespace/pod`.
    pub async fn review(&self, token: &str, namespace: &str, pod: &str) -> Result<(), String> {
        let key = Self::cache_key(token, namespace, pod);
        if self.cached(&key) {
            return Ok(());
        }
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &request)
            .await
            .map_err(|e| {
                if let Some(m) = &self.metrics {
                    m.error("tokenreview");
                }
                tracing::warn!(error = %e, "TokenReview failed");
                "the token could not be reviewed".to_owned()
            })?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(format!("token refused: {why}"));
        }
        // The API server answers with the audiences the token is valid for among those asked;
        // an empty answer with audiences asked means the authenticator ignored them.
        if !status
            .audiences
            .unwrap_or_default()
            .contains(&self.audience)
        {
            return Err(format!("the token is not for audience {}", self.audience));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let prefix = format!("system:serviceaccount:{namespace}:");
        if !username.starts_with(&prefix) {
            return Err(format!(
                "the token belongs to {username:?}, not to a ServiceAccount of namespace {namespace}"
            ));
        }
        let bound = user
            .extra
            .unwrap_or_default()
            .remove(POD_NAME_EXTRA)
            .unwrap_or_default();
        if bound.as_slice() != [pod.to_owned()] {
            return Err(match bound.first() {
                Some(other) => {
                    format!("the token is bound to pod {namespace}/{other}, not {namespace}/{pod}")
                }
                None => "the token is not bound to a pod (use a projected ServiceAccount token)"
                    .to_owned(),
            });
        }
        if !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().expect("cache lock");
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, Instant::now() + self.cache_ttl);
        }
        Ok(())
    }
}

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &http::HeaderMap) -> Result<&str, String> {
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
            "a bearer token (the pod's projected ServiceAccount token) is required".to_owned()
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
        let token = bearer(headers)?;
        if self.cached(&Self::cache_key(token, namespace, pod)) {
            Ok(())
        } else {
            Err("the token has not been reviewed".into())
        }
    }

    fn authorize_async<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        namespace: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let token = bearer(headers)?;
            self.review(token, namespace, pod).await
        })
    }
}
