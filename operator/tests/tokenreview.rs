//! The TokenReview authorizer against a scripted TokenReview API (a tower service standing in
//! for the API server), and the push API over real HTTPS on loopback with it: pod A's token gets
//! pod A's stream and usage reports, and is refused for pod B.
//!
//! The real suite (`tests/tests/cluster/`) cannot show: an API server that fails or never answers a
//! TokenReview (503 with Retry-After, not 403), and what is refused before a body is read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use mcp_warden_operator::{
    clock::SystemClock,
    index::Index,
    push::{self, AuthError, Authorizer, Extensions, PushSettings},
    tokenreview::TokenReviewAuthorizer,
    usage::{UsageEndpoint, UsageStore},
};
use mcp_warden_test_support::tls::{SelfSigned, self_signed};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

const AUDIENCE: &str = "mcp-warden-operator";

/// A token the fake API server knows: whose it is and for which audience.
struct Known {
    namespace: &'static str,
    service_account: &'static str,
    pod: Option<&'static str>,
    audience: &'static str,
}

/// A TokenReview API: answers `POST /apis/authentication.k8s.io/v1/tokenreviews` as the API
/// server does for projected tokens, and records every request body.
fn tokenreview_api(tokens: HashMap<&'static str, Known>) -> (kube::Client, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let tokens = Arc::new(tokens);
    let s2 = seen.clone();
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let (tokens, seen) = (tokens.clone(), s2.clone());
        async move {
            assert_eq!(req.method(), http::Method::POST);
            assert_eq!(
                req.uri().path(),
                "/apis/authentication.k8s.io/v1/tokenreviews"
            );
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let review: Value = serde_json::from_slice(&body).unwrap();
            seen.lock().unwrap().push(review.clone());
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            let asked: Vec<&str> = review["spec"]["audiences"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let status = match tokens.get(token) {
                Some(k) if asked.contains(&k.audience) => {
                    let mut extra = json!({});
                    if let Some(pod) = k.pod {
                        extra = json!({
                            "authentication.kubernetes.io/pod-name": [pod],
                            "authentication.kubernetes.io/pod-uid": ["0b6c7c2e-uid"],
                        });
                    }
                    json!({
                        "authenticated": true,
                        "audiences": [k.audience],
                        "user": {
                            "username": format!("system:serviceaccount:{}:{}", k.namespace, k.service_account),
                            "uid": "sa-uid",
                            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", k.namespace)],
                            "extra": extra,
                        }
                    })
                }
                Some(_) => {
                    json!({"authenticated": false, "error": "token audiences are invalid for the target audiences"})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            let answer = json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "metadata": {"creationTimestamp": null},
                "spec": review["spec"], "status": status,
            });
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&answer).unwrap(),
                    ))
                    .unwrap(),
            )
        }
    });
    (kube::Client::new(svc, "default"), seen)
}

fn tokens() -> HashMap<&'static str, Known> {
    HashMap::from([
        (
            "token-a",
            Known {
                namespace: "team",
                service_account: "pay",
                pod: Some("pay-a"),
                audience: AUDIENCE,
            },
        ),
        (
            "token-b",
            Known {
                namespace: "team",
                service_account: "pay",
                pod: Some("pay-b"),
                audience: AUDIENCE,
            },
        ),
        (
            "token-other-audience",
            Known {
                namespace: "team",
                service_account: "pay",
                pod: Some("pay-a"),
                audience: "https://kubernetes.default.svc",
            },
        ),
        (
            "token-no-pod",
            Known {
                namespace: "team",
                service_account: "pay",
                pod: None,
                audience: AUDIENCE,
            },
        ),
    ])
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[tokio::test]
async fn tokenreview_accepts_only_the_pod_the_token_is_bound_to() {
    support::init();
    let (client, seen) = tokenreview_api(tokens());
    let authz = TokenReviewAuthorizer::new(client, AUDIENCE);

    authz
        .authorize_async(&bearer("token-a"), "team", "pay-a")
        .await
        .expect("pod A's own token");
    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(
        body["spec"]["audiences"],
        json!([AUDIENCE]),
        "the operator's audience is asked for"
    );
    assert_eq!(body["kind"], "TokenReview");

    let refused = authz
        .authorize_async(&bearer("token-a"), "team", "pay-b")
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        AuthError::Forbidden("the token is bound to pod team/pay-a, not team/pay-b".into())
    );
    let refused = authz
        .authorize_async(&bearer("token-a"), "other", "pay-a")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AuthError::Forbidden(m)
        if m.contains("not to a ServiceAccount of namespace other")),
        "{refused:?}"
    );
    let refused = authz
        .authorize_async(&bearer("token-other-audience"), "team", "pay-a")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AuthError::Unauthenticated(m) if m.contains("audience")),
        "{refused:?}"
    );
    let refused = authz
        .authorize_async(&bearer("token-no-pod"), "team", "pay-a")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AuthError::Unauthenticated(m) if m.contains("not bound to a pod")),
        "{refused:?}"
    );
    let refused = authz
        .authorize_async(&bearer("forged"), "team", "pay-a")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AuthError::Unauthenticated(m) if m.contains("invalid bearer token")),
        "{refused:?}"
    );
    let refused = authz
        .authorize_async(&HeaderMap::new(), "team", "pay-a")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AuthError::Unauthenticated(m) if m.contains("bearer token")),
        "{refused:?}"
    );

    // A successful review is reused (reconnects do not hit the API server); refusals are not.
    let before = seen.lock().unwrap().len();
    authz
        .authorize_async(&bearer("token-a"), "team", "pay-a")
        .await
        .unwrap();
    assert!(
        authz.authorize(&bearer("token-a"), "team", "pay-a").is_ok(),
        "the sync check sees the cache"
    );
    assert_eq!(seen.lock().unwrap().len(), before, "served from the cache");
    authz
        .authorize_async(&bearer("token-a"), "team", "pay-b")
        .await
        .unwrap_err();
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "a reviewed token is cached with its pod: another pod is refused without a review"
    );
    authz
        .authorize_async(&bearer("forged"), "team", "pay-a")
        .await
        .unwrap_err();
    assert_eq!(
        seen.lock().unwrap().len(),
        before + 1,
        "a token the API server rejects is reviewed again every time"
    );
    assert!(
        authz
            .authorize(&bearer("token-b"), "team", "pay-b")
            .is_err(),
        "never reviewed: no sync success"
    );
}

/// HTTPS to the operator on loopback: one request, the status and (up to) the first line.
async fn https(
    port: u16,
    roots: Arc<rustls::RootCertStore>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut sender = support::tls::connect(port, &roots).await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut text = Vec::new();
    while !text.contains(&b'\n') {
        match tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
        {
            Some(Ok(f)) => {
                text.extend_from_slice(f.data_ref().map(|d| d.as_ref()).unwrap_or_default())
            }
            _ => break,
        }
    }
    (
        status,
        String::from_utf8_lossy(&text)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_api_over_https_refuses_pod_a_token_for_pod_b() {
    support::init();
    let (client, _) = tokenreview_api(tokens());
    let authorizer: Arc<dyn Authorizer> = Arc::new(TokenReviewAuthorizer::new(client, AUDIENCE));
    let SelfSigned { server, roots, .. } = self_signed();

    let index = Index::default();
    index.apply_pod("team", "pay-a", Default::default());
    index.apply_pod("team", "pay-b", Default::default());
    let store = UsageStore::default();
    let usage = UsageEndpoint {
        store: store.clone(),
        authorizer: authorizer.clone(),
        clock: Arc::new(SystemClock),
        metrics: None,
        leading: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = PushSettings {
        heartbeat: Duration::from_secs(10),
        labels_from_query: false,
    };
    let extensions = Extensions {
        tls: Some(server),
        usage: Some(Arc::new(usage)),
        ..Extensions::default()
    };
    tokio::spawn(push::serve_with(
        listener,
        index,
        settings,
        authorizer,
        extensions,
        std::future::pending(),
    ));

    let (status, line) = https(
        port,
        roots.clone(),
        "GET",
        "/v1/watch?namespace=team&pod=pay-a",
        "token-a",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        line.contains(r#""type":"empty""#),
        "pod A's own stream: {line}"
    );
    let (status, line) = https(
        port,
        roots.clone(),
        "GET",
        "/v1/watch?namespace=team&pod=pay-b",
        "token-a",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        line.contains("bound to pod team/pay-a, not team/pay-b"),
        "{line}"
    );

    // Usage reports: the same rule on the report's pod.
    let report = |pod: &str| {
        json!({"namespace": "team", "pod": pod, "bootId": "b", "seq": 1,
               "clients": [{"namespace": "agents", "name": "bot", "calls": 3}]})
    };
    let (status, line) = https(
        port,
        roots.clone(),
        "POST",
        "/v1/usage",
        "token-a",
        Some(report("pay-b")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{line}");
    assert!(store.view(jiff::Timestamp::now()).clients.is_empty());
    let (status, line) = https(
        port,
        roots.clone(),
        "POST",
        "/v1/usage",
        "token-a",
        Some(report("pay-a")),
    )
    .await;
    assert_eq!(
        (status, line.as_str()),
        (StatusCode::OK, r#"{"accepted":true}"#)
    );
    let (status, line) = https(
        port,
        roots.clone(),
        "POST",
        "/v1/usage",
        "token-a",
        Some(report("pay-a")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        line.contains("duplicate"),
        "a retried report is not counted twice: {line}"
    );
    let view = store.view(jiff::Timestamp::now());
    assert_eq!(
        view.clients[&("agents".to_string(), "bot".to_string())].calls_24h,
        3
    );
    let (status, _) = https(
        port,
        roots,
        "POST",
        "/v1/usage",
        "token-a",
        Some(json!({"pod": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The push server with TokenReview over `client` and `/v1/usage` (no leader election).
async fn serve(client: kube::Client) -> (u16, Arc<rustls::RootCertStore>, UsageStore) {
    let authorizer: Arc<dyn Authorizer> = Arc::new(
        TokenReviewAuthorizer::new(client, AUDIENCE).with_timeout(Duration::from_millis(300)),
    );
    let SelfSigned { server, roots, .. } = self_signed();
    let index = Index::default();
    index.apply_pod("team", "pay-a", Default::default());
    let store = UsageStore::default();
    let usage = UsageEndpoint {
        store: store.clone(),
        authorizer: authorizer.clone(),
        clock: Arc::new(SystemClock),
        metrics: None,
        leading: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = PushSettings {
        heartbeat: Duration::from_secs(10),
        labels_from_query: false,
    };
    let extensions = Extensions {
        tls: Some(server),
        usage: Some(Arc::new(usage)),
        ..Extensions::default()
    };
    tokio::spawn(push::serve_with(
        listener,
        index,
        settings,
        authorizer,
        extensions,
        std::future::pending(),
    ));
    (port, roots, store)
}

/// `POST /v1/usage` with `token` and a body of `first` followed by a body that never ends
/// (`endless`) or ends there: the status and the `Retry-After` header, within 5 s.
async fn post_streaming(
    port: u16,
    roots: &Arc<rustls::RootCertStore>,
    token: &str,
    first: Bytes,
    endless: bool,
) -> (StatusCode, Option<String>) {
    use futures::StreamExt;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let tls = support::tls::tls_stream(port, roots, &[]).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let head = futures::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(first))]);
    let body = if endless {
        head.chain(futures::stream::pending()).boxed()
    } else {
        head.boxed()
    };
    let req = Request::builder()
        .method("POST")
        .uri("/v1/usage")
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(StreamBody::new(body))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("an answer without the rest of the body")
        .unwrap();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_authenticates_before_it_reads_the_body() {
    support::init();
    let (client, seen) = tokenreview_api(tokens());
    let (port, roots, store) = serve(client).await;
    let start = Bytes::from_static(br#"{"namespace":"team","pod":"pay-a","#);
    // A forged or missing token: 401 at once, although the body never ends.
    let (status, _) = post_streaming(port, &roots, "forged", start.clone(), true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_streaming(port, &roots, "", start.clone(), true).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.lock().unwrap().len(), 1, "no token, no review");
    // Authenticated: the body limit still holds.
    let big = Bytes::from(vec![b' '; (1 << 20) + 1]);
    let (status, _) = post_streaming(port, &roots, "token-a", big, false).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(store.reporters().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_tokenreview_is_503_with_retry_after_not_403() {
    support::init();
    for failure in ["5xx", "network", "timeout"] {
        let svc = tower::service_fn(move |_: Request<kube::client::Body>| async move {
            match failure {
                "5xx" => Ok(Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(kube::client::Body::from(
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "message": "etcdserver: request timed out", "code": 500})
                        .to_string()
                        .into_bytes(),
                    ))
                    .unwrap()),
                "network" => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                )),
                _ => std::future::pending().await,
            }
        });
        let client = kube::Client::new(svc, "default");
        let direct = TokenReviewAuthorizer::new(client.clone(), AUDIENCE)
            .with_timeout(Duration::from_millis(300))
            .authorize_async(&bearer("token-a"), "team", "pay-a")
            .await
            .unwrap_err();
        assert!(
            matches!(direct, AuthError::Unavailable(_)),
            "{failure}: {direct:?}"
        );
        let (port, roots, _) = serve(client).await;
        let (status, _) = https(
            port,
            roots.clone(),
            "GET",
            "/v1/watch?namespace=team&pod=pay-a",
            "token-a",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{failure}: watch");
        let body = Bytes::from(
            json!({"namespace": "team", "pod": "pay-a", "bootId": "b", "seq": 1}).to_string(),
        );
        let (status, retry) = post_streaming(port, &roots, "token-a", body, false).await;
        assert_eq!(
            (status, retry.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1")),
            "{failure}: usage"
        );
    }
}
