//! AdmissionReview round trips for tests: the fixtures in `tests/fixtures/admission/`, the
//! injector configuration they are checked against, an HTTPS POST, and reading the answer (the
//! patch as base64 or as a number array).

use super::tls;
use base64::Engine;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::{Container, Pod};
use mcp_warden_operator::inject::{InjectConfig, cli::DEFAULT_SIDECAR_IMAGE};
use serde_json::Value;
use std::{path::PathBuf, sync::Arc, time::Duration};

pub const AUDIENCE: &str = "mcp-warden-operator";
pub const OPERATOR_URL: &str = "https://mcp-warden-operator.mcp-warden.svc:8443";

/// The text of `tests/fixtures/admission/<name>`.
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The injector configuration with the contract's defaults.
pub fn config() -> InjectConfig {
    InjectConfig {
        image: DEFAULT_SIDECAR_IMAGE.into(),
        image_pull_policy: "IfNotPresent".into(),
        operator_url: OPERATOR_URL.into(),
        operator_ca: None,
        audience: AUDIENCE.into(),
        cpu_request: "50m".into(),
        memory_request: "32Mi".into(),
        memory_limit: "128Mi".into(),
    }
}

/// POSTs `body` to `https://localhost:<port><path>`; the status and the JSON answer.
pub async fn post(
    port: u16,
    roots: &Arc<rustls::RootCertStore>,
    path: &str,
    body: String,
) -> (StatusCode, Value) {
    let mut sender = tls::connect(port, roots).await;
    let req = Request::post(format!("{path}?timeout=10s"))
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("the webhook answers within 10 s")
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// The AdmissionReview's `response`, after the checks every answer must pass.
pub fn response_of(status: StatusCode, review: &Value, uid: &str) -> Value {
    assert_eq!(status, StatusCode::OK, "{review}");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    assert_eq!(
        review["response"]["uid"], uid,
        "the uid is echoed: {review}"
    );
    review["response"].clone()
}

/// The patch, accepted as base64 (what the apiserver's Go `[]byte` expects) or a number array.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let bytes: Vec<u8> = match response.get("patch")? {
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64 patch"),
        Value::Array(a) => a.iter().map(|v| v.as_u64().unwrap() as u8).collect(),
        other => panic!("unexpected patch {other}"),
    };
    Some(serde_json::from_slice(&bytes).expect("the patch is a JSONPatch"))
}

/// The first init container (where the injector puts the sidecar).
pub fn sidecar(pod: &Pod) -> &Container {
    let init = pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap();
    &init[0]
}
