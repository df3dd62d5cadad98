//! Every answer the proxy makes up itself: status, headers and a JSON-RPC error body
//! (reference §8.3; the table is in `docs/denials.md`).
//!
//! ```text
//! Denial ──status(), code(), message(), data()──► answer(&[(id, Denial)], batch, resource)
//!   single message ──► {"jsonrpc":"2.0","id":<id|null>,"error":{code,message,data}}
//!   2025-03-26 batch ──► [ one error per request id ] (the denied ones say why, the others
//!                        that they were not forwarded); 403 + one step-up challenge with the
//!                        union of needed scopes if any element lacks scope, else the status
//!                        of the denial
//! ```
//!
//! Application codes stay outside −32768…−32000 (ERR-04): −31001 unauthenticated, −31002
//! forbidden origin, −31003 insufficient scope, −31004 client not permitted, −31005 batch not
//! forwarded. Spec-defined answers keep their spec codes (−32602 unknown tool or task, −32020
//! header mismatch, −32001 session not found as the upstream SDK answers it).

use super::{
    ProxyBody, full,
    headers::Mismatch,
    jsonrpc::{Id, ParseError, code},
    origin::OriginError,
    upstream::UpstreamError,
};
use crate::auth::{AuthError, prm};
use http::{HeaderValue, Response, StatusCode, header};
use mcp_warden_policy::Decision;
use serde_json::{Value, json};
use std::sync::Arc;

/// Unauthenticated (401).
pub const UNAUTHENTICATED: i64 = -31001;
/// `Origin`/`Host` refused (403).
pub const FORBIDDEN_ORIGIN: i64 = -31002;
/// The token lacks scopes the call needs (403 + `insufficient_scope`).
pub const INSUFFICIENT_SCOPE: i64 = -31003;
/// The McpClient may not call at all: suspended, expired, review overdue, unknown.
pub const CLIENT_NOT_PERMITTED: i64 = -31004;
/// A batch element that was fine but not forwarded because another one was denied.
pub const BATCH_NOT_FORWARDED: i64 = -31005;

/// Why the proxy answers instead of the upstream.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Denial {
    /// No valid token; with the `scope` the challenge names (`auth::prm::challenge_scopes`).
    #[error("Unauthenticated: {0}")]
    Unauthenticated(AuthError, Arc<str>),
    /// The client's identity or lifecycle refuses every request (policy `authenticate`).
    #[error("{}", lifecycle_message(.0))]
    Client(Box<Decision>),
    /// `tools/call` of a tool this caller cannot see.
    #[error("Unknown tool: {0}")]
    HiddenTool(String),
    /// `tools/call` granted, but the token lacks scopes.
    #[error("Insufficient scope for tool {tool}: requires {}", needed.join(" "))]
    InsufficientScope {
        /// The tool.
        tool: String,
        /// Every scope the call requires.
        needed: Vec<String>,
        /// The McpPolicy whose requirement is reported.
        policy: String,
    },
    /// A task id of another principal (or unknown to the proxy).
    #[error("Unknown task: {0}")]
    ForeignTask(String),
    /// A session id bound to another principal.
    #[error("Session not found")]
    SessionNotFound,
    /// DNS-rebinding protection.
    #[error("{0}")]
    Origin(OriginError),
    /// Modern-era mirrored headers disagree with the body.
    #[error("{0}")]
    HeaderMismatch(Mismatch),
    /// Not JSON or not JSON-RPC.
    #[error("{0}")]
    Parse(ParseError),
    /// A governed method sent as a notification (it would run without an answer).
    #[error("Invalid Request: {0} must be a request with an id")]
    NotARequest(String),
    /// The request body is over the limit.
    #[error("Request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The request body did not arrive in time.
    #[error("Request body not received within {0} s")]
    BodyTimeout(u64),
    /// POST without `Content-Type: application/json`.
    #[error("Unsupported Media Type: Content-Type must be application/json")]
    UnsupportedMediaType,
    /// Not POST, GET, DELETE (or OPTIONS).
    #[error("Method not allowed on the MCP endpoint")]
    MethodNotAllowed,
    /// No configuration in force.
    #[error("Not ready: no valid configuration is in force")]
    NotReady,
    /// The upstream could not be used.
    #[error("{0}")]
    Upstream(UpstreamError),
    /// The upstream refused the proxy itself (its 401 is not passed on, AUTH-11).
    #[error("Bad gateway: the upstream MCP server refused the proxy's credentials")]
    UpstreamUnauthorized,
    /// A batch element not forwarded because of another element's denial.
    #[error("Not forwarded: another request in this batch was denied")]
    BatchNotForwarded,
    /// The audit trail could not make the call's record durable (spool full, policy `block`).
    #[error("Service unavailable: the audit trail cannot record the call; retry later")]
    AuditUnavailable,
    /// A method without a rule (`methods.rs`), or one only a server sends.
    #[error("Method not found: {method}")]
    UnknownMethod {
        /// The method.
        method: String,
        /// Sent as a notification (answered 400: a notification has no JSON-RPC answer).
        notification: bool,
        /// A 2026-07-28 request: answered 404, as that revision requires (SEP-2575); earlier
        /// revisions get 200 (a 404 there means "session not found" to clients).
        modern: bool,
    },
    /// Too many requests being decided, or no room for the body (`admission.rs`).
    #[error("Service unavailable: the proxy is at its request or body budget; retry later")]
    Busy,
}

fn lifecycle_message(d: &Decision) -> String {
    let why = match d {
        Decision::DenyTokenRevoked { .. } => {
            return "Unauthenticated: the token was issued before the client's revocation cut-off"
                .into();
        }
        Decision::DenySuspended { .. } => "the MCP client is suspended".into(),
        Decision::DenyExpired { .. } => "the MCP client's access has expired".into(),
        Decision::DenyReviewOverdue { .. } => "the MCP client's access review is overdue".into(),
        Decision::DenyUnknownClient { .. } => {
            "no MCP client is registered for this identity".into()
        }
        other => format!("denied ({})", other.reason()),
    };
    format!("Forbidden: {why}")
}

impl Denial {
    /// The denial for a policy decision, `None` when it allows. `tool` names a `tools/call`.
    pub fn from_decision(decision: &Decision, tool: Option<&str>) -> Option<Self> {
        match decision {
            Decision::Allow { .. } | Decision::WouldDeny { .. } => None,
            Decision::DenyNotGranted { .. } => {
                Some(Self::HiddenTool(tool.unwrap_or_default().to_owned()))
            }
            Decision::DenyInsufficientScope { needed, policy, .. } => {
                Some(Self::InsufficientScope {
                    tool: tool.unwrap_or_default().to_owned(),
                    needed: needed.clone(),
                    policy: policy.to_string(),
                })
            }
            lifecycle => Some(Self::Client(Box::new(lifecycle.clone()))),
        }
    }

    /// The stable reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated(..) => "unauthenticated",
            Self::Client(d) => d.reason(),
            Self::HiddenTool(_) => "not_granted",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::ForeignTask(_) => "foreign_task",
            Self::SessionNotFound => "foreign_session",
            Self::Origin(_) => "forbidden_origin",
            Self::HeaderMismatch(_) => "header_mismatch",
            Self::Parse(ParseError::Json(_)) => "parse_error",
            Self::Parse(_) | Self::NotARequest(_) => "invalid_request",
            Self::TooLarge(_) => "body_too_large",
            Self::BodyTimeout(_) => "body_timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotReady => "not_ready",
            Self::Upstream(UpstreamError::Timeout(_)) => "upstream_timeout",
            Self::Upstream(_) | Self::UpstreamUnauthorized => "upstream_error",
            Self::BatchNotForwarded => "batch_not_forwarded",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Busy => "overloaded",
            Self::UnknownMethod { .. } => "unknown_method",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
            // A token from before the cut-off is a revoked token: a new one cures it (RFC 6750).
            Self::Client(d) if matches!(**d, Decision::DenyTokenRevoked { .. }) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Client(_) | Self::Origin(_) | Self::InsufficientScope { .. } => {
                StatusCode::FORBIDDEN
            }
            Self::HiddenTool(_) | Self::ForeignTask(_) | Self::BatchNotForwarded => StatusCode::OK,
            Self::UnknownMethod {
                notification,
                modern,
                ..
            } => match (notification, modern) {
                (true, _) => StatusCode::BAD_REQUEST,
                (false, true) => StatusCode::NOT_FOUND,
                (false, false) => StatusCode::OK,
            },
            Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::HeaderMismatch(_) | Self::Parse(_) | Self::NotARequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotReady | Self::AuditUnavailable | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) | Self::UpstreamUnauthorized => StatusCode::BAD_GATEWAY,
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            Self::Unauthenticated(..) => UNAUTHENTICATED,
            Self::Client(d) if matches!(**d, Decision::DenyTokenRevoked { .. }) => UNAUTHENTICATED,
            Self::Client(_) => CLIENT_NOT_PERMITTED,
            Self::Origin(_) => FORBIDDEN_ORIGIN,
            Self::InsufficientScope { .. } => INSUFFICIENT_SCOPE,
            Self::HiddenTool(_) | Self::ForeignTask(_) => code::INVALID_PARAMS,
            Self::BatchNotForwarded => BATCH_NOT_FORWARDED,
            Self::UnknownMethod { .. } => code::METHOD_NOT_FOUND,
            Self::SessionNotFound => code::SESSION_NOT_FOUND,
            Self::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Self::Parse(e) => e.code(),
            Self::NotARequest(_)
            | Self::TooLarge(_)
            | Self::BodyTimeout(_)
            | Self::UnsupportedMediaType
            | Self::MethodNotAllowed => code::INVALID_REQUEST,
            Self::NotReady
            | Self::Upstream(_)
            | Self::UpstreamUnauthorized
            | Self::AuditUnavailable
            | Self::Busy => code::INTERNAL_ERROR,
        }
    }

    /// `error.data`: machine-readable details (ERR-05). Hidden tools and the session answer
    /// carry none, so they look exactly like a missing tool or session.
    pub fn data(&self) -> Option<Value> {
        let mut data = json!({ "reason": self.reason() });
        match self {
            Self::HiddenTool(_) | Self::SessionNotFound | Self::ForeignTask(_) => return None,
            Self::InsufficientScope {
                tool,
                needed,
                policy,
            } => {
                data["tool"] = json!(tool);
                data["scopes"] = json!(needed);
                data["policyId"] = json!(policy);
            }
            Self::Client(d) => {
                if let Some(client) = d.client() {
                    data["client"] = json!(client.to_string());
                }
                if let Decision::DenySuspended {
                    reason: Some(r), ..
                } = &**d
                {
                    data["detail"] = json!(r);
                }
            }
            _ => {}
        }
        Some(data)
    }

    /// The error object.
    pub fn error(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(data) = self.data() {
            error["data"] = data;
        }
        error
    }
}

/// The answer for a refused request: `denials` pairs each request id (or `None`) with its
/// denial; `batch` answers with an array.
pub fn answer(
    denials: &[(Option<Id>, Denial)],
    batch: bool,
    resource: &str,
) -> Response<ProxyBody> {
    let envelope = |id: &Option<Id>, d: &Denial| json!({"jsonrpc": "2.0", "id": id.as_ref().map_or(Value::Null, Id::to_value), "error": d.error()});
    let primary = denials
        .iter()
        .position(|(_, d)| matches!(d, Denial::InsufficientScope { .. }))
        .or_else(|| {
            denials
                .iter()
                .position(|(_, d)| !matches!(d, Denial::BatchNotForwarded))
        })
        .unwrap_or(0);
    let Some((primary_id, primary)) = denials.get(primary) else {
        return answer(&[(None, Denial::NotReady)], false, resource);
    };
    let body = if batch && denials.iter().any(|(id, _)| id.is_some()) {
        Value::Array(
            denials
                .iter()
                .filter(|(id, _)| id.is_some())
                .map(|(id, d)| envelope(id, d))
                .collect(),
        )
    } else {
        envelope(primary_id, primary)
    };
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = primary.status();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let challenge = match primary {
        Denial::InsufficientScope { .. } => {
            let mut needed: Vec<String> = denials
                .iter()
                .filter_map(|(_, d)| match d {
                    Denial::InsufficientScope { needed, .. } => Some(needed.iter().cloned()),
                    _ => None,
                })
                .flatten()
                .collect();
            needed.sort();
            needed.dedup();
            Some(prm::insufficient_scope(resource, &needed))
        }
        Denial::Unauthenticated(e, scope) => Some(prm::challenge_with_scope(
            resource,
            scope,
            e.token_sent().then(|| e.to_string()).as_deref(),
        )),
        Denial::Client(d) if matches!(**d, Decision::DenyTokenRevoked { .. }) => {
            Some(prm::challenge(
                resource,
                Some("the token was issued before the client's revocation cut-off"),
            ))
        }
        _ => None,
    };
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::WWW_AUTHENTICATE, value);
    }
    match primary {
        Denial::NotReady | Denial::AuditUnavailable | Denial::Busy => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Denial::MethodNotAllowed => {
            h.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use mcp_warden_policy::{Kind, ObjectRef};

    const RESOURCE: &str = "https://mcp.example.com/mcp";

    fn client() -> ObjectRef {
        ObjectRef::new(Kind::McpClient, "demo", "agent-beta")
    }

    async fn parts(r: Response<ProxyBody>) -> (StatusCode, http::HeaderMap, Value) {
        let (parts, body) = r.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    fn id(n: u64) -> Option<Id> {
        Id::from_value(&n.into())
    }

    #[tokio::test]
    async fn unauthenticated_is_401_with_a_challenge_and_the_request_id() {
        let (status, h, body) = parts(answer(
            &[(
                id(3),
                Denial::Unauthenticated(AuthError::Missing, "".into()),
            )],
            false,
            RESOURCE,
        ))
        .await;
        assert_eq!(status, 401);
        assert_eq!(
            h["www-authenticate"],
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(body["id"], 3);
        assert_eq!(body["error"]["code"], -31001);
        let (_, h, _) = parts(answer(
            &[(
                None,
                Denial::Unauthenticated(AuthError::Invalid("expired".into()), "".into()),
            )],
            false,
            RESOURCE,
        ))
        .await;
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\", error_description=\"expired\"")
        );
    }

    #[tokio::test]
    async fn hidden_tools_look_like_unknown_tools() {
        let decision = Decision::DenyNotGranted {
            client: client(),
            tool: ObjectRef::new(Kind::McpTool, "demo", "everything"),
        };
        let denial = Denial::from_decision(&decision, Some("get-env")).unwrap();
        let (status, h, body) = parts(answer(&[(id(1), denial)], false, RESOURCE)).await;
        assert_eq!(status, 200);
        assert!(!h.contains_key("www-authenticate"));
        assert_eq!(
            body,
            json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: get-env"}})
        );
    }

    #[tokio::test]
    async fn missing_scope_is_a_step_up_challenge_with_every_needed_scope() {
        let decision = Decision::DenyInsufficientScope {
            client: client(),
            policy: ObjectRef::new(Kind::McpPolicy, "demo", "basic-tools"),
            needed: vec!["mcp:admin".into(), "mcp:tools.call".into()],
        };
        let denial = Denial::from_decision(&decision, Some("get-env")).unwrap();
        let (status, h, body) = parts(answer(&[(id(2), denial)], false, RESOURCE)).await;
        assert_eq!(status, 403);
        assert_eq!(
            h["www-authenticate"],
            "Bearer error=\"insufficient_scope\", scope=\"mcp:admin mcp:tools.call\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        assert_eq!(body["error"]["code"], -31003);
        assert_eq!(
            body["error"]["data"]["scopes"],
            json!(["mcp:admin", "mcp:tools.call"])
        );
        assert_eq!(body["error"]["data"]["tool"], "get-env");
    }

    #[tokio::test]
    async fn lifecycle_denials_are_403_without_step_up_except_revoked_tokens() {
        let at = jiff::Timestamp::UNIX_EPOCH;
        let cases = [
            (
                Decision::DenySuspended {
                    client: client(),
                    reason: Some("runaway".into()),
                },
                403,
                -31004,
                "suspended",
            ),
            (
                Decision::DenyExpired {
                    client: client(),
                    at,
                },
                403,
                -31004,
                "expired",
            ),
            (
                Decision::DenyReviewOverdue {
                    client: client(),
                    due: at,
                },
                403,
                -31004,
                "review_overdue",
            ),
            (
                Decision::DenyUnknownClient {
                    tool: ObjectRef::new(Kind::McpTool, "demo", "everything"),
                    detail: "x".into(),
                },
                403,
                -31004,
                "unknown_client",
            ),
            (
                Decision::DenyTokenRevoked {
                    client: client(),
                    cutoff: at,
                },
                401,
                -31001,
                "token_revoked",
            ),
        ];
        for (decision, status, code, reason) in cases {
            let denial = Denial::from_decision(&decision, None).unwrap();
            let (s, h, body) = parts(answer(&[(id(9), denial)], false, RESOURCE)).await;
            assert_eq!(s, status, "{reason}");
            assert_eq!(body["error"]["code"], code, "{reason}");
            assert_eq!(body["error"]["data"]["reason"], reason);
            let challenge = h
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            if status == 401 {
                assert!(challenge.unwrap().contains("invalid_token"));
            } else {
                assert_eq!(
                    challenge, None,
                    "{reason}: no step-up for what scope cannot cure"
                );
            }
        }
        assert!(
            Denial::from_decision(
                &Decision::Allow {
                    client: client(),
                    policy: None,
                    audit: false
                },
                None
            )
            .is_none()
        );
    }

    #[tokio::test]
    async fn a_denied_batch_answers_every_request_id() {
        let denials = [
            (id(1), Denial::BatchNotForwarded),
            (None, Denial::BatchNotForwarded),
            (
                id(2),
                Denial::InsufficientScope {
                    tool: "a".into(),
                    needed: vec!["s2".into(), "s1".into()],
                    policy: "p".into(),
                },
            ),
            (id(3), Denial::HiddenTool("b".into())),
            (
                id(4),
                Denial::InsufficientScope {
                    tool: "c".into(),
                    needed: vec!["s1".into(), "s3".into()],
                    policy: "p".into(),
                },
            ),
        ];
        let (status, h, body) = parts(answer(&denials, true, RESOURCE)).await;
        assert_eq!(status, 403);
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("scope=\"s1 s2 s3\"")
        );
        let codes: Vec<(i64, i64)> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["id"].as_i64().unwrap(),
                    e["error"]["code"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(codes, [(1, -31005), (2, -31003), (3, -32602), (4, -31003)]);
        let (status, _, body) = parts(answer(
            &[
                (id(7), Denial::BatchNotForwarded),
                (id(8), Denial::HiddenTool("x".into())),
            ],
            true,
            RESOURCE,
        ))
        .await;
        assert_eq!(status, 200);
        assert_eq!(body.as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn transport_level_answers() {
        let cases: Vec<(Denial, u16, i64)> = vec![
            (
                Denial::Origin(OriginError::Host("evil.com".into())),
                403,
                -31002,
            ),
            (Denial::SessionNotFound, 404, -32001),
            (Denial::HeaderMismatch(Mismatch("x".into())), 400, -32020),
            (Denial::Parse(ParseError::Json("eof".into())), 400, -32700),
            (
                Denial::Parse(ParseError::Invalid {
                    reason: "x".into(),
                    id: None,
                }),
                400,
                -32600,
            ),
            (Denial::TooLarge(10), 413, -32600),
            (Denial::UnsupportedMediaType, 415, -32600),
            (Denial::MethodNotAllowed, 405, -32600),
            (Denial::NotReady, 503, -32603),
            (Denial::UpstreamUnauthorized, 502, -32603),
            (
                Denial::Upstream(UpstreamError::Timeout(std::time::Duration::from_secs(1))),
                504,
                -32603,
            ),
        ];
        for (denial, status, code) in cases {
            let reason = denial.reason();
            let (s, h, body) = parts(answer(&[(None, denial)], false, RESOURCE)).await;
            assert_eq!(
                (s.as_u16(), body["error"]["code"].as_i64().unwrap()),
                (status, code),
                "{reason}"
            );
            assert_eq!(body["id"], Value::Null);
            assert!(!h.contains_key("www-authenticate"), "{reason}");
            if status == 503 {
                assert_eq!(h["retry-after"], "1");
            }
        }
        let (_, _, body) = parts(answer(&[(None, Denial::SessionNotFound)], false, RESOURCE)).await;
        assert_eq!(
            body,
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}})
        );
    }
}
