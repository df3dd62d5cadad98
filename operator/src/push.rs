//! The push API: each sidecar holds `GET /v1/watch?namespace=…&pod=…` open and receives its
//! Bundle as newline-delimited JSON.
//!
//! ```text
//! sidecar ──GET /v1/watch──► authorize(pod) ──► Index::subscribe ──► stream of lines:
//!     {"type":"bundle","bundle":{…}}      first at once, then whenever the version changes
//!     {"type":"empty","reason":"…"}       nothing governs this pod (yet)
//!     {"type":"heartbeat","version":…}    every heartbeat interval, so dead peers are noticed
//!     {"type":"upstreamAuth",…}           after a bundle whose McpTool has upstreamAuth, and
//!                                         whenever its Secrets or keys change (upstream_auth.rs)
//! upstream ──GET /v1/jwks──► the identity JWT's public keys (unauthenticated)
//! ```
//!
//! Every message is a complete state (Linkerd's model), so a reconnecting sidecar needs no
//! history and any replica can serve it.
//!
//! [`serve_with`] adds HTTPS and `POST /v1/usage` (see `usage`) for the cluster mode.

use crate::{
    index::{BundleRx, Index},
    upstream_auth::UpstreamAuth,
    usage::{MAX_REPORT_BYTES, UsageSink},
};
use bytes::Bytes;
use futures::{StreamExt, future::BoxFuture};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use mcp_warden_wire::{PushMessage, push as push_wire};
use serde_json::json;
use std::borrow::Cow;
use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};
use tokio::net::TcpListener;

/// Why a caller was not admitted. The HTTP status follows the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials, or the API server rejected the token: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not as the pod the request names: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The credentials could not be checked now (API server unreachable, 5xx, timeout): 503 with
    /// `Retry-After`, the caller tries again.
    #[error("{0}")]
    Unavailable(String),
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Who a caller is, as far as its headers alone prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The headers prove the caller is this pod.
    Pod {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
    },
    /// The authorizer cannot tell from the headers alone: [`bind`] asks
    /// [`Authorizer::authorize_async`] once the pod is known.
    Unverified,
}

/// Who may watch which pod's bundle.
pub trait Authorizer: Send + Sync + 'static {
    /// Ok when the caller (its `Authorization` header) may receive the bundle of `namespace/pod`;
    /// the reason of a refusal otherwise (answered 403). Only for checks without I/O.
    fn authorize(
        &self,
        headers: &http::HeaderMap,
        namespace: &str,
        pod: &str,
    ) -> Result<(), String>;

    /// The same check for authorizers that need I/O (TokenReview); the server calls this one.
    /// Defaults to [`Authorizer::authorize`], a refusal being [`AuthError::Forbidden`].
    fn authorize_async<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        namespace: &'a str,
        pod: &'a str,
    ) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(std::future::ready(
            self.authorize(headers, namespace, pod)
                .map_err(AuthError::Forbidden),
        ))
    }

    /// Authenticates the caller from its headers alone, before any body is read
    /// (`POST /v1/usage`). Defaults to [`Caller::Unverified`]: the whole check then happens in
    /// [`bind`], after the body names the pod. Authorizers that can tell who calls from the
    /// headers (TokenReview) override this.
    fn authenticate<'a>(
        &'a self,
        _headers: &'a http::HeaderMap,
    ) -> BoxFuture<'a, Result<Caller, AuthError>> {
        Box::pin(std::future::ready(Ok(Caller::Unverified)))
    }
}

/// Checks that an authenticated `caller` is `namespace/pod` (the pod a usage report names).
pub async fn bind(
    authorizer: &dyn Authorizer,
    caller: &Caller,
    headers: &http::HeaderMap,
    namespace: &str,
    pod: &str,
) -> Result<(), AuthError> {
    match caller {
        Caller::Pod {
            namespace: ns,
            pod: p,
        } => {
            if ns != namespace {
                Err(AuthError::Forbidden(format!(
                    "the caller is pod {ns}/{p}, not a pod of namespace {namespace}"
                )))
            } else if p != pod {
                Err(AuthError::Forbidden(format!(
                    "the token is bound to pod {ns}/{p}, not {namespace}/{pod}"
                )))
            } else {
                Ok(())
            }
        }
        Caller::Unverified => authorizer.authorize_async(headers, namespace, pod).await,
    }
}

/// Lets every caller watch every pod: only for `--source files` (demos and tests) on loopback.
#[derive(Debug, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &http::HeaderMap, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Push API settings.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Interval between heartbeats on idle streams.
    pub heartbeat: Duration,
    /// Accept `labels=` in the query as the pod's labels (files mode, where no Pod objects exist).
    pub labels_from_query: bool,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Optional parts of the API server beyond plain-HTTP `GET /v1/watch`.
#[derive(Clone, Default)]
pub struct Extensions {
    /// Serve HTTPS with this configuration (set ALPN to `h2` and `http/1.1`); plain HTTP when
    /// `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Receives `POST /v1/usage`; 404 when `None`.
    pub usage: Option<Arc<dyn UsageSink>>,
    /// Upstream credentials pushed beside the bundles, and `GET /v1/jwks`; none when `None`.
    pub upstream_auth: Option<Arc<UpstreamAuth>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("tls", &self.tls.is_some())
            .field("usage", &self.usage.is_some())
            .field("upstream_auth", &self.upstream_auth.is_some())
            .finish()
    }
}

/// Serves the push API until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    index: Index,
    settings: PushSettings,
    authorizer: Arc<dyn Authorizer>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(
        listener,
        index,
        settings,
        authorizer,
        Extensions::default(),
        shutdown,
    )
    .await;
}

/// Serves the push API (and the [`Extensions`]) until `shutdown` resolves.
pub async fn serve_with(
    listener: TcpListener,
    index: Index,
    settings: PushSettings,
    authorizer: Arc<dyn Authorizer>,
    extensions: Extensions,
    shutdown: impl Future<Output = ()>,
) {
    let usage = extensions.usage.clone();
    let upstream_auth = extensions.upstream_auth.clone();
    let handler = move |req: Request<Incoming>| {
        let (index, settings, authorizer, usage, upstream_auth) = (
            index.clone(),
            settings.clone(),
            authorizer.clone(),
            usage.clone(),
            upstream_auth.clone(),
        );
        async move {
            let parts = Parts {
                index: &index,
                settings: &settings,
                authorizer: authorizer.as_ref(),
                usage: usage.as_deref(),
                upstream_auth,
            };
            handle(req, parts).await
        }
    };
    crate::serve::connections(listener, extensions.tls.clone(), handler, shutdown).await;
}

/// What a request of the push API may use.
struct Parts<'a> {
    index: &'a Index,
    settings: &'a PushSettings,
    authorizer: &'a dyn Authorizer,
    usage: Option<&'a dyn UsageSink>,
    upstream_auth: Option<Arc<UpstreamAuth>>,
}

async fn handle(req: Request<Incoming>, p: Parts<'_>) -> Response<Body> {
    let Parts {
        index,
        settings,
        authorizer,
        usage,
        upstream_auth,
    } = p;
    if req.method() == Method::GET && req.uri().path() == "/v1/jwks" {
        // Public keys only: anyone may verify an identity JWT.
        let jwks = upstream_auth
            .as_ref()
            .map_or_else(|| json!({"keys": []}), |a| a.jwks());
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "max-age=30")
            .body(BodyExt::boxed_unsync(Full::new(Bytes::from(
                jwks.to_string(),
            ))))
            .expect("static response parts are valid");
    }
    if req.method() == Method::POST && req.uri().path() == "/v1/usage" {
        let Some(usage) = usage else {
            return error(
                StatusCode::NOT_FOUND,
                "this operator does not take usage reports",
            );
        };
        let (parts, body) = req.into_parts();
        // Authenticate from the headers first: an unauthenticated caller's body is never read.
        let caller = match usage.authenticate(&parts.headers).await {
            Ok(caller) => caller,
            Err(e) => return refusal(&e),
        };
        let body = match Limited::new(body, MAX_REPORT_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the usage report is too large or broken",
                );
            }
        };
        let (status, answer) = usage.post(caller, parts.headers, body).await;
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json");
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response = response.header(header::RETRY_AFTER, RETRY_AFTER_SECONDS);
        }
        return response
            .body(BodyExt::boxed_unsync(Full::new(Bytes::from(
                answer.to_string(),
            ))))
            .expect("static response parts are valid");
    }
    if req.method() != Method::GET || req.uri().path() != "/v1/watch" {
        return error(
            StatusCode::NOT_FOUND,
            "the push API serves GET /v1/watch, POST /v1/usage and GET /v1/jwks",
        );
    }
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let (Some(namespace), Some(pod)) = (query.get("namespace"), query.get("pod")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "namespace and pod query parameters are required",
        );
    };
    if let Err(reason) = authorizer
        .authorize_async(req.headers(), namespace, pod)
        .await
    {
        tracing::warn!(%namespace, %pod, %reason, "push watch refused");
        return refusal(&reason);
    }
    let labels = settings
        .labels_from_query
        .then(|| query.get("labels").map(|l| parse_labels(l)))
        .flatten();
    let rx = index.subscribe(namespace, pod, labels);
    tracing::info!(%namespace, %pod, "sidecar connected");
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(BodyExt::boxed_unsync(StreamBody::new(lines(
            rx,
            settings.heartbeat,
            upstream_auth,
        ))))
        .expect("static response parts are valid")
}

/// The stream of NDJSON lines for one watch: the current state at once, then changes and
/// heartbeats; after each state, the pod's upstream credentials when they differ from the ones
/// last sent (`upstream_auth`).
fn lines(
    rx: BundleRx,
    heartbeat: Duration,
    upstream_auth: Option<Arc<UpstreamAuth>>,
) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let credentials = upstream_auth.map(|auth| Credentials {
        changes: auth.subscribe(),
        auth,
        sent: None,
    });
    futures::stream::unfold(
        (rx, ticker, true, credentials, None::<serde_json::Value>),
        |(mut rx, mut ticker, first, mut credentials, pending)| async move {
            let line = if let Some(line) = pending {
                line
            } else if first {
                ticker.reset();
                state_line(&mut rx)
            } else {
                loop {
                    let creds_changed = async {
                        match credentials.as_mut() {
                            Some(c) => c.changes.changed().await.is_ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return None; // the operator is shutting down
                            }
                            break state_line(&mut rx);
                        }
                        true = creds_changed => {
                            let bundle = rx.borrow().clone();
                            if let Some(line) = credentials.as_mut().and_then(|c| c.line(bundle.as_deref())) {
                                break line;
                            }
                        }
                        _ = ticker.tick() => {
                            let version = rx.borrow().as_ref().map(|b| b.version.clone());
                            break serde_json::to_value(PushMessage::Heartbeat { version })
                                .expect("push messages serialize");
                        }
                    }
                }
            };
            // After a state line: the credentials of that state, if they changed.
            let is_state = matches!(
                line.get("type").and_then(serde_json::Value::as_str),
                Some("bundle" | "empty")
            );
            let pending = if is_state {
                let bundle = rx.borrow().clone();
                credentials
                    .as_mut()
                    .and_then(|c| c.line(bundle.as_deref()))
            } else {
                None
            };
            let mut bytes = serde_json::to_vec(&line).expect("JSON values serialize");
            bytes.push(b'\n');
            Some((
                Ok(Frame::data(Bytes::from(bytes))),
                (rx, ticker, false, credentials, pending),
            ))
        },
    )
    .boxed()
}

/// One watch's view of the upstream credentials: what it sent last.
struct Credentials {
    auth: Arc<UpstreamAuth>,
    changes: tokio::sync::watch::Receiver<u64>,
    sent: Option<mcp_warden_wire::UpstreamCredentials>,
}

impl Credentials {
    /// The `upstreamAuth` line for `bundle`, when it differs from the last one sent (an McpTool
    /// without upstreamAuth after one with it gets an empty one: the sidecar drops the values).
    fn line(&mut self, bundle: Option<&mcp_warden_policy::Bundle>) -> Option<serde_json::Value> {
        self.changes.mark_unchanged();
        let now = bundle.and_then(|b| self.auth.for_bundle(b));
        let now = match (now, &self.sent) {
            (None, None) => return None,
            (None, Some(_)) => Some(mcp_warden_wire::UpstreamCredentials::default()),
            (some, _) => some,
        };
        if now == self.sent {
            return None;
        }
        self.sent.clone_from(&now);
        let credentials = now.unwrap_or_default();
        Some(
            serde_json::to_value(PushMessage::UpstreamAuth { credentials })
                .expect("push messages serialize"),
        )
    }
}

/// The current state, marked as seen (a channel created by this watch's subscribe already holds
/// an unseen first value; without marking it the first bundle would be sent twice).
fn state_line(rx: &mut BundleRx) -> serde_json::Value {
    let state = rx.borrow_and_update();
    let message = match state.as_ref() {
        Some(bundle) => PushMessage::Bundle {
            bundle: Cow::Borrowed(bundle.as_ref()),
        },
        None => PushMessage::Empty {
            reason: push_wire::NO_TOOL.to_owned(),
        },
    };
    serde_json::to_value(message).expect("push messages serialize")
}

/// `Retry-After` on a 503 (TokenReview unavailable, not the leader).
pub const RETRY_AFTER_SECONDS: &str = "1";

/// The answer to a refused caller: 401, 403, or 503 with `Retry-After`.
fn refusal(e: &AuthError) -> Response<Body> {
    let mut response = error(e.status(), &e.to_string());
    if matches!(e, AuthError::Unavailable(_)) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(
            json!({"error": message}).to_string(),
        ))))
        .expect("static response parts are valid")
}

/// `k=v,k2=v2` (already percent-decoded).
pub fn parse_labels(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
