//! The admission webhook over real HTTPS on 127.0.0.1 (rcgen certificate, rustls client), fed
//! real `admission.k8s.io/v1` AdmissionReview bodies (`tests/fixtures/admission/`): every
//! answer echoes the uid; each returned JSONPatch is applied with `json_patch::patch` and the
//! result must deserialize as a `k8s_openapi` Pod carrying the sidecar exactly as the install
//! contract says. The real binary is in `webhook_binary.rs`.
//!
//! The real suite (`tests/tests/cluster/`) cannot show: AdmissionReviews the API server never sends
//! (malformed, wrong kinds), nor every pod shape; it shows one injected and one opted-out Pod.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::Pod;
use mcp_warden_operator::{
    inject::cli::DEFAULT_SIDECAR_IMAGE,
    metrics::Metrics,
    webhook::{self, Webhook},
};
use mcp_warden_test_support::tls::self_signed;
use serde_json::Value;
use std::sync::Arc;
use support::admission::{
    AUDIENCE, OPERATOR_URL, config, fixture, patch_of, post, response_of, sidecar,
};

struct Server {
    port: u16,
    roots: Arc<rustls::RootCertStore>,
    metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The webhook on 127.0.0.1 with a fresh self-signed certificate for `localhost`.
async fn server() -> Server {
    let tls = self_signed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let metrics = Metrics::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let webhook = Webhook {
        config: Arc::new(config()),
        metrics: metrics.clone(),
    };
    tokio::spawn(webhook::serve(listener, tls.server, webhook, async {
        let _ = stopped.await;
    }));
    Server {
        port,
        roots: tls.roots,
        metrics,
        stop: Some(stop),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Posts a fixture; the request, the response and (when patched) the patched Pod.
async fn admit(server: &Server, name: &str) -> (Value, Value, Option<Pod>) {
    let body = fixture(name);
    let request: Value = serde_json::from_str(&body).unwrap();
    let uid = request["request"]["uid"].as_str().unwrap().to_owned();
    let (status, review) = post(server.port, &server.roots, "/mutate", body).await;
    let response = response_of(status, &review, &uid);
    let pod = patch_of(&response).map(|patch| {
        assert_eq!(response["patchType"], "JSONPatch", "{response}");
        let mut object = request["request"]["object"].clone();
        json_patch::patch(&mut object, &patch).unwrap();
        serde_json::from_value::<Pod>(object).expect("the patched object is a valid Pod")
    });
    (request, response, pod)
}

/// The sidecar is exactly what the install contract specifies.
fn assert_sidecar(pod: &Pod, upstream: &str, proxy_port: i32) {
    let c = sidecar(pod);
    assert_eq!(
        c.name, "mcp-warden-sidecar",
        "the sidecar is the first init container"
    );
    assert_eq!(
        c.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    assert_eq!(c.image.as_deref(), Some(DEFAULT_SIDECAR_IMAGE));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let listen = format!("0.0.0.0:{proxy_port}");
    let expected_args = [
        "run",
        "--operator",
        OPERATOR_URL,
        "--token-file",
        "/var/run/secrets/mcpwarden.io/serviceaccount/token",
        "--state-dir",
        "/var/run/mcp-warden/state",
        "--listen",
        &listen,
        "--admin-listen",
        "0.0.0.0:9901",
        "--upstream",
        upstream,
        "--log-format",
        "json",
    ];
    assert_eq!(c.args.as_deref().unwrap(), expected_args);
    let env = serde_json::to_value(c.env.as_ref().unwrap()).unwrap();
    assert_eq!(
        env,
        serde_json::json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_IPS", "valueFrom": {"fieldRef": {"fieldPath": "status.podIPs"}}},
        ])
    );
    let ports = serde_json::to_value(c.ports.as_ref().unwrap()).unwrap();
    assert_eq!(
        ports,
        serde_json::json!([
            {"name": "mcp", "containerPort": proxy_port, "protocol": "TCP"},
            {"name": "mcpwarden-admin", "containerPort": 9901, "protocol": "TCP"},
        ])
    );
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| serde_json::to_value(p).unwrap();
    assert_eq!(
        probe(&c.startup_probe),
        serde_json::json!({"httpGet": {"path": "/ready", "port": 9901}, "periodSeconds": 1, "failureThreshold": 120})
    );
    assert_eq!(probe(&c.readiness_probe)["httpGet"]["path"], "/ready");
    assert_eq!(probe(&c.liveness_probe)["httpGet"]["path"], "/live");
    assert_eq!(
        serde_json::to_value(&c.resources).unwrap(),
        serde_json::json!({"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}})
    );
    assert_eq!(
        serde_json::to_value(&c.security_context).unwrap(),
        serde_json::json!({
            "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
            "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert_eq!(
        serde_json::to_value(&c.volume_mounts).unwrap(),
        serde_json::json!([
            {"name": "mcp-warden-state", "mountPath": "/var/run/mcp-warden/state"},
            {"name": "mcp-warden-token", "mountPath": "/var/run/secrets/mcpwarden.io/serviceaccount", "readOnly": true},
        ])
    );
    let volumes = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    let volume = |name: &str| {
        serde_json::to_value(volumes.iter().find(|v| v.name == name).unwrap()).unwrap()
    };
    assert_eq!(
        volume("mcp-warden-state"),
        serde_json::json!({"name": "mcp-warden-state", "emptyDir": {}})
    );
    assert_eq!(
        volume("mcp-warden-token"),
        serde_json::json!({"name": "mcp-warden-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}})
    );
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["mcpwarden.io/governed"], "true");
    let annotations = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations["mcpwarden.io/injected-version"],
        env!("CARGO_PKG_VERSION")
    );
}

/// The patched pod, posted again as if the API server reinvoked the webhook: no patch.
async fn assert_idempotent(server: &Server, request: &Value, pod: &Pod) {
    let mut again = request.clone();
    again["request"]["object"] = serde_json::to_value(pod).unwrap();
    again["request"]["uid"] = "11111111-2222-4333-8444-555555555555".into();
    let (status, review) = post(server.port, &server.roots, "/mutate", again.to_string()).await;
    let response = response_of(status, &review, "11111111-2222-4333-8444-555555555555");
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "re-injected: {response}");
}

#[tokio::test]
async fn replicaset_pod_with_generate_name_gets_the_sidecar() {
    let server = server().await;
    let (request, response, pod) = admit(&server, "create-replicaset-pod.json").await;
    assert_eq!(response["allowed"], true, "{response}");
    let pod = pod.expect("a patch");
    assert_sidecar(&pod, "http://127.0.0.1:8080/mcp", 9080);
    // Nothing of the app's spec is lost: the container, the kube-api-access volume, the owner.
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.containers.len(), 1);
    assert_eq!(spec.containers[0].name, "server");
    let volumes: Vec<_> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(
        volumes,
        [
            "kube-api-access-x7k2p",
            "mcp-warden-state",
            "mcp-warden-token"
        ]
    );
    assert_eq!(spec.init_containers.as_ref().unwrap().len(), 1);
    assert_eq!(
        pod.metadata.generate_name.as_deref(),
        Some("weather-7d9f8c6b5-")
    );
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["app"], "weather");
    // The existing labels map is patched key by key, the key escaped as a JSON pointer token.
    let patch = serde_json::to_string(&patch_of(&response).unwrap()).unwrap();
    assert!(
        patch.contains("/metadata/labels/mcpwarden.io~1governed"),
        "{patch}"
    );
    assert_idempotent(&server, &request, &pod).await;
}

#[tokio::test]
async fn existing_init_containers_stay_after_the_sidecar() {
    let server = server().await;
    let (request, response, pod) = admit(&server, "create-with-init-containers.json").await;
    assert_eq!(response["allowed"], true, "{response}");
    let pod = pod.expect("a patch");
    // upstream-port 3001, upstream-path "/", proxy-port 9443 from the annotations.
    assert_sidecar(&pod, "http://127.0.0.1:3001/", 9443);
    let init: Vec<_> = pod
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(init, ["mcp-warden-sidecar", "migrate"]);
    assert_idempotent(&server, &request, &pod).await;
}

#[tokio::test]
async fn upstream_port_by_name_resolves_and_warns_about_the_port_name() {
    let server = server().await;
    let (_, response, pod) = admit(&server, "create-upstream-port-by-name.json").await;
    // The annotation names the second container's port `mcp` (3001), not the first port (9100).
    assert_sidecar(&pod.expect("a patch"), "http://127.0.0.1:3001/mcp", 9080);
    let warnings = response["warnings"].as_array().expect("warnings");
    assert!(
        warnings[0].as_str().unwrap().contains("named \"mcp\""),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn pod_without_labels_annotations_or_volumes_gets_whole_maps() {
    let server = server().await;
    let (request, response, pod) = admit(&server, "create-bare-pod.json").await;
    let patch = serde_json::to_value(patch_of(&response).unwrap()).unwrap();
    let paths: Vec<_> = patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/metadata/labels",
            "/metadata/annotations",
            "/spec/initContainers",
            "/spec/volumes"
        ]
    );
    let pod = pod.expect("a patch");
    assert_sidecar(&pod, "http://127.0.0.1:3000/mcp", 9080);
    assert_idempotent(&server, &request, &pod).await;
}

#[tokio::test]
async fn already_injected_and_opted_out_pods_are_allowed_unchanged() {
    let server = server().await;
    for name in [
        "create-already-injected.json",
        "create-opted-out-annotation.json",
        "create-opted-out-label.json",
    ] {
        let (_, response, pod) = admit(&server, name).await;
        assert_eq!(response["allowed"], true, "{name}: {response}");
        assert!(pod.is_none(), "{name} was patched: {response}");
        assert!(response.get("patchType").is_none(), "{name}: {response}");
    }
}

#[tokio::test]
async fn pod_without_any_port_is_denied_with_the_annotation_to_set() {
    let server = server().await;
    let (_, response, pod) = admit(&server, "create-no-port.json").await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(pod.is_none());
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("mcpwarden.io/upstream-port"),
        "the message names the annotation: {message}"
    );
}

#[tokio::test]
async fn update_and_delete_are_allowed_without_a_patch() {
    let server = server().await;
    for name in ["update.json", "delete.json"] {
        let (_, response, pod) = admit(&server, name).await;
        assert_eq!(response["allowed"], true, "{name}: {response}");
        assert!(pod.is_none(), "{name}: {response}");
    }
}

#[tokio::test]
async fn dry_run_gets_the_same_answer_as_a_real_create() {
    let server = server().await;
    let (_, dry, dry_pod) = admit(&server, "create-dry-run.json").await;
    let (_, real, real_pod) = admit(&server, "create-replicaset-pod.json").await;
    assert_eq!(dry["allowed"], true);
    assert_eq!(dry["patch"], real["patch"]);
    assert_eq!(dry_pod, real_pod);
}

#[tokio::test]
async fn malformed_and_wrong_requests_are_denied_with_a_reason_never_a_crash() {
    let server = server().await;
    // Half a JSON document: no uid can be read.
    let (status, review) = post(
        server.port,
        &server.roots,
        "/mutate",
        fixture("malformed.json"),
    )
    .await;
    let response = response_of(status, &review, "");
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{response}"
    );
    // A Deployment sent to the pod injector: the rules are wrong; denied, uid echoed.
    let (_, response, pod) = admit(&server, "wrong-kind.json").await;
    assert_eq!(response["allowed"], false);
    assert!(pod.is_none());
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("only handles v1 Pods"),
        "{response}"
    );
    // An admission.k8s.io/v1beta1 review, and a review with a broken object: the uid is echoed.
    let mut v1beta1: Value = serde_json::from_str(&fixture("create-replicaset-pod.json")).unwrap();
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let uid = v1beta1["request"]["uid"].as_str().unwrap().to_owned();
    let (status, review) = post(server.port, &server.roots, "/mutate", v1beta1.to_string()).await;
    let response = response_of(status, &review, &uid);
    assert_eq!(response["allowed"], false, "{response}");
    let mut broken = serde_json::from_str::<Value>(&fixture("create-replicaset-pod.json")).unwrap();
    broken["request"]["object"]["spec"]["containers"] = "not a list".into();
    let (status, review) = post(server.port, &server.roots, "/mutate", broken.to_string()).await;
    let response = response_of(status, &review, &uid);
    assert_eq!(response["allowed"], false, "{response}");
    // Not JSON at all, and an oversized body.
    for body in [
        "\u{0}\u{1}binary".to_owned(),
        "x".repeat(webhook::MAX_REVIEW_BYTES + 1),
    ] {
        let (status, review) = post(server.port, &server.roots, "/mutate", body).await;
        assert_eq!(response_of(status, &review, "")["allowed"], false);
    }
    // Another path is not the webhook.
    let (status, _) = post(server.port, &server.roots, "/validate", "{}".into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Still serving after all that, and every request counted.
    let (_, response, _) = admit(&server, "create-replicaset-pod.json").await;
    assert_eq!(response["allowed"], true);
    let metrics = server.metrics.render();
    assert!(
        metrics.contains(
            "mcp_warden_operator_admission_requests_total{operation=\"unknown\",result=\"invalid\"} 4"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "mcp_warden_operator_admission_requests_total{operation=\"CREATE\",result=\"denied\"} 2"
        ),
        "{metrics}"
    );
}

#[test]
fn the_log_line_never_quotes_the_object() {
    // A pod whose env value has the wrong type: serde's message quotes the value.
    let mut review: Value = serde_json::from_str(&fixture("create-replicaset-pod.json")).unwrap();
    review["request"]["object"]["spec"]["containers"][0]["env"] = "API_TOKEN=hunter2-secret".into();
    let outcome = webhook::review(review.to_string().as_bytes(), &config());
    assert_eq!(outcome.result, "denied");
    assert!(
        outcome
            .response
            .result
            .message
            .contains("not a valid v1 Pod"),
        "{:?}",
        outcome.response
    );
    assert!(!outcome.log.contains("hunter2"), "{}", outcome.log);
    assert!(!format!("{:?}", outcome.subject).contains("hunter2"));
    // The same for a body that is not JSON at all.
    let outcome = webhook::review(b"{\"token\": \"hunter2-secret\" oops", &config());
    assert_eq!(outcome.result, "invalid");
    assert!(!outcome.log.contains("hunter2"), "{}", outcome.log);
}

#[tokio::test]
async fn http2_like_the_api_server() {
    let server = server().await;
    let tls = support::tls::tls_stream(server.port, &server.roots, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post("https://localhost/mutate?timeout=10s")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(fixture(
            "create-replicaset-pod.json",
        ))))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&body).unwrap();
    let response = response_of(
        StatusCode::OK,
        &review,
        "5f3c1a52-7b0e-4d1e-9a55-0d2f7e1c9b01",
    );
    assert!(patch_of(&response).is_some());
}
