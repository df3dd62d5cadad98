//! The mutating admission webhook: `POST /mutate` over HTTPS, `admission.k8s.io/v1`.
//!
//! ```text
//! kube-apiserver ──POST /mutate (AdmissionReview v1, ≤ MAX_REVIEW_BYTES)──► review()
//!    unreadable body / not a v1 AdmissionReview ──► allowed:false, InvalidRequest (uid echoed if found)
//!    UPDATE / DELETE / CONNECT, subresources     ──► allowed, no patch
//!    CREATE of anything but a v1 Pod             ──► denied (the webhook's rules are wrong)
//!    CREATE Pod ──► inject::inject(pod, None, cfg)
//!                     Skip(reason) ──► allowed, no patch
//!                     Patch        ──► allowed, patchType JSONPatch, patch (base64), warnings
//!                     Err(e)       ──► denied with e (it names the annotation to set)
//! ◄── HTTP 200 AdmissionReview { response }       metrics: admission_requests_total{operation,result}
//! ```
//!
//! Dry-run requests get the same answer: the webhook has no side effects (`sideEffects: None`).
//! The namespace-level opt-in is the webhook configuration's `namespaceSelector` (see
//! `inject`), so the webhook never reads Namespaces. Request bodies are never logged (they may
//! hold Secrets' worth of env values); only uid, operation, namespace, name and the outcome are.

use crate::{
    inject::{self, InjectConfig, Injection},
    metrics::Metrics,
};
use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The largest AdmissionReview read (a Pod is at most ~1.5 MB in etcd; UPDATE carries two).
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// The webhook's path.
pub const PATH: &str = "/mutate";

/// How long a request body may take to arrive (the API server's own timeout is at most 30 s).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The answer to one AdmissionReview, with its labels for the metrics.
#[derive(Debug)]
pub struct Outcome {
    /// The response to wrap in an AdmissionReview.
    pub response: AdmissionResponse,
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `unknown`.
    pub operation: &'static str,
    /// `injected`, `skipped`, `allowed`, `denied` or `invalid`.
    pub result: &'static str,
    /// `namespace/name` (or `namespace/generateName*`) for the log; empty when unreadable.
    pub subject: String,
    /// What the log says about the outcome: never a value taken from the object (a parser's
    /// message can quote one, e.g. an env value), unlike the response's message to the client.
    pub log: String,
}

/// Where a parser failed, without the value it quotes.
fn parse_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn invalid(uid: Option<&str>, message: String, log: String) -> Outcome {
    let mut response = AdmissionResponse::invalid(message);
    response.uid = uid.unwrap_or_default().to_owned();
    Outcome {
        response,
        operation: "unknown",
        result: "invalid",
        subject: String::new(),
        log,
    }
}

/// `what` failed to parse: the client gets the parser's message, the log only where it failed.
fn unparsable(uid: Option<&str>, what: &str, e: &serde_json::Error) -> Outcome {
    invalid(
        uid,
        format!("{what}: {e}"),
        format!("{what}: {}", parse_error(e)),
    )
}

/// Answers the AdmissionReview in `body`. Pure: no I/O, never panics on input.
pub fn review(body: &[u8], cfg: &InjectConfig) -> Outcome {
    let raw: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return unparsable(None, "the request body is not JSON", &e),
    };
    let uid = raw.pointer("/request/uid").and_then(Value::as_str);
    if raw.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || raw.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        let message =
            "expected an admission.k8s.io/v1 AdmissionReview (set admissionReviewVersions: [v1])";
        return invalid(uid, message.into(), message.into());
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_value(raw.clone()) {
        Ok(r) => r,
        Err(e) => return unparsable(uid, "unreadable AdmissionReview", &e),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => {
            let message = "the AdmissionReview has no request";
            return invalid(uid, message.into(), message.into());
        }
    };
    admit(&request, cfg)
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The decision for one readable request.
pub fn admit(request: &AdmissionRequest<DynamicObject>, cfg: &InjectConfig) -> Outcome {
    let operation = operation_name(&request.operation);
    let allowed = AdmissionResponse::from(request);
    let generate_name = request
        .object
        .as_ref()
        .and_then(|o| o.metadata.generate_name.as_deref())
        .map(|g| format!("{g}*"));
    let subject = format!(
        "{}/{}",
        request.namespace.as_deref().unwrap_or_default(),
        generate_name
            .filter(|_| request.name.is_empty())
            .unwrap_or_else(|| request.name.clone())
    );
    let outcome = |response, result, log: String| Outcome {
        response,
        operation,
        result,
        subject: subject.clone(),
        log,
    };
    if !matches!(request.operation, Operation::Create) || request.sub_resource.is_some() {
        return outcome(allowed, "allowed", "not a pod creation".into());
    }
    let kind = &request.kind;
    if !(kind.group.is_empty() && kind.version == "v1" && kind.kind == "Pod") {
        let message = format!(
            "the mcp-warden injector only handles v1 Pods, not {}/{} {}: fix the \
             MutatingWebhookConfiguration's rules",
            kind.group, kind.version, kind.kind
        );
        return outcome(allowed.deny(&message), "denied", message);
    }
    let Some(object) = &request.object else {
        let message = "the CREATE request has no object";
        return outcome(allowed.deny(message), "denied", message.into());
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            return outcome(
                allowed.deny(format!("the object is not a valid v1 Pod: {e}")),
                "denied",
                format!("the object is not a valid v1 Pod: {}", parse_error(&e)),
            );
        }
    };
    match inject::inject(&pod, None, cfg) {
        Ok(Injection::Skip(reason)) => outcome(allowed, "skipped", reason.to_string()),
        Ok(Injection::Patch {
            patch,
            warnings,
            upstream,
        }) => match allowed.clone().with_patch(patch) {
            Ok(mut response) => {
                response.warnings = (!warnings.is_empty()).then_some(warnings);
                outcome(response, "injected", format!("upstream {upstream}"))
            }
            Err(e) => outcome(allowed.deny(&e), "denied", e.to_string()),
        },
        Err(e) => outcome(allowed.deny(&e), "denied", e.to_string()),
    }
}

/// The AdmissionReview JSON for `response`, with the patch as base64 (what Go's `[]byte`
/// expects; kube serializes `Vec<u8>` as a number array).
pub fn review_json(response: AdmissionResponse) -> Value {
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_else(|e| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": "", "allowed": false,
                            "status": {"message": format!("cannot serialize the response: {e}")}}})
    });
    if let Some(patch) = review.pointer_mut("/response/patch")
        && let Some(bytes) = patch.as_array().map(|a| {
            a.iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect::<Vec<u8>>()
        })
    {
        *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    review
}

/// The webhook's state: the injector configuration and the metrics.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// What the injector puts in pods.
    pub config: Arc<InjectConfig>,
    /// Where requests are counted.
    pub metrics: Metrics,
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts are valid")
}

async fn handle(req: Request<Incoming>, webhook: &Webhook) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "the admission webhook serves POST /mutate"}),
        );
    }
    if req.method() != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "POST an admission.k8s.io/v1 AdmissionReview"}),
        );
    }
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_REVIEW_BYTES).collect(),
    )
    .await;
    let outcome = match body {
        Ok(Ok(body)) => review(&body.to_bytes(), &webhook.config),
        Ok(Err(e)) => {
            let message = format!(
                "the request body is unreadable or larger than {MAX_REVIEW_BYTES} bytes: {e}"
            );
            invalid(None, message.clone(), message)
        }
        Err(_) => {
            let message = format!("the request body did not arrive within {BODY_TIMEOUT:?}");
            invalid(None, message.clone(), message)
        }
    };
    webhook
        .metrics
        .admission_requests
        .with_label_values(&[outcome.operation, outcome.result])
        .inc();
    let response = outcome.response;
    tracing::info!(
        uid = %response.uid,
        operation = outcome.operation,
        result = outcome.result,
        object = %outcome.subject,
        outcome = %outcome.log,
        "admission review"
    );
    reply(StatusCode::OK, &review_json(response))
}

/// Serves `POST /mutate` on `listener` (HTTPS with `tls`) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    webhook: Webhook,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |req: Request<Incoming>| {
        let webhook = webhook.clone();
        async move { handle(req, &webhook).await }
    };
    crate::serve::connections(listener, Some(tls), handler, shutdown).await;
}
