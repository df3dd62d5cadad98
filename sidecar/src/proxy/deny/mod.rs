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
use crate::{
    auth::{AuthError, prm},
    quota::QuotaOutcome,
};
use http::{HeaderValue, Response, StatusCode, header};
use mcp_warden_policy::{Capability, Decision};
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
    /// A tool, resource or prompt this caller cannot see: answered as the SDKs answer one that
    /// does not exist.
    #[error("{}", hidden_message(*.0, .1))]
    Hidden(Capability, String),
    /// Granted, but the token lacks scopes.
    #[error("Insufficient scope for {capability} {name}: requires {}", needed.join(" "))]
    InsufficientScope {
        /// What is used.
        capability: Capability,
        /// The tool or prompt name, or the resource URI.
        name: String,
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
    /// Parameters the gate cannot decide on (a completion `ref` of an unknown type, a
    /// subscription URI that is not a string).
    #[error("Invalid params: {0}")]
    InvalidParams(String),
    /// A client's response to no request the server sent it on this session (or one it
    /// already answered).
    #[error("Invalid Request: response {0} answers no request the server sent on this session")]
    UnsolicitedResponse(String),
    /// A governed method sent as a notification (it would run without an answer).
    #[error("Invalid Request: {0} must be a request with an id")]
    NotARequest(String),
    /// The request body is over the limit.
    #[error("Request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The request body did not arrive in time.
    #[error("Request body not received within {0} s")]
    BodyTimeout(u64),
    /// An `Accept` that names neither JSON nor an event stream: no answer could be given.
    #[error("Not Acceptable: Accept must allow application/json or text/event-stream")]
    NotAcceptable,
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
    /// Refused by a quota or rate limit (or a runaway suspension, or a quota store that cannot
    /// answer): the quota's answer (429 with `Retry-After` and `RateLimit` headers, 503), or a
    /// tool result with `isError` when the granting policy asks for `throttleResponse: ToolError`.
    #[error("{}", .outcome.message())]
    Throttled {
        /// The quota's verdict.
        outcome: Arc<QuotaOutcome>,
        /// Answer a lone `tools/call` as a tool result the model reads.
        as_tool_result: bool,
    },
    /// Too many requests being decided, or no room for the body (`admission.rs`).
    #[error("Service unavailable: the proxy is at its request or body budget; retry later")]
    Busy,
}

fn hidden_message(capability: Capability, name: &str) -> String {
    match capability {
        Capability::Tool => format!("Unknown tool: {name}"),
        Capability::Resource => format!("Resource not found: {name}"),
        Capability::Prompt => format!("Unknown prompt: {name}"),
    }
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
    /// The denial for a policy decision about `name` (a tool, resource or prompt), `None` when
    /// it allows.
    pub fn from_decision(decision: &Decision, capability: Capability, name: &str) -> Option<Self> {
        match decision {
            Decision::Allow { .. } | Decision::WouldDeny { .. } => None,
            Decision::DenyNotGranted { .. } => Some(Self::Hidden(capability, name.to_owned())),
            Decision::DenyInsufficientScope { needed, policy, .. } => {
                Some(Self::InsufficientScope {
                    capability,
                    name: name.to_owned(),
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
            Self::Hidden(..) => "not_granted",
            Self::InvalidParams(_) => "invalid_params",
            Self::UnsolicitedResponse(_) => "unsolicited_response",
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
            Self::NotAcceptable => "not_acceptable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotReady => "not_ready",
            Self::Upstream(UpstreamError::Timeout(_)) => "upstream_timeout",
            Self::Upstream(UpstreamError::Auth(_)) => "upstream_auth_failed",
            Self::Upstream(_) | Self::UpstreamUnauthorized => "upstream_error",
            Self::BatchNotForwarded => "batch_not_forwarded",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Busy => "overloaded",
            Self::UnknownMethod { .. } => "unknown_method",
            Self::Throttled { outcome, .. } => outcome.reason(),
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
            Self::Hidden(..)
            | Self::ForeignTask(_)
            | Self::InvalidParams(_)
            | Self::BatchNotForwarded => StatusCode::OK,
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
            Self::HeaderMismatch(_)
            | Self::Parse(_)
            | Self::NotARequest(_)
            | Self::UnsolicitedResponse(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotReady | Self::AuditUnavailable | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) | Self::UpstreamUnauthorized => StatusCode::BAD_GATEWAY,
            Self::Throttled { outcome, .. } => outcome
                .http_answer(&Value::Null)
                .map_or(StatusCode::OK, |a| a.status),
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
            Self::Hidden(..) | Self::ForeignTask(_) | Self::InvalidParams(_) => {
                code::INVALID_PARAMS
            }
            Self::BatchNotForwarded => BATCH_NOT_FORWARDED,
            Self::UnknownMethod { .. } => code::METHOD_NOT_FOUND,
            Self::Throttled { outcome, .. } => match &**outcome {
                QuotaOutcome::Unavailable(_) => crate::quota::QUOTA_UNAVAILABLE_CODE,
                _ => crate::quota::RATE_LIMITED_CODE,
            },
            Self::SessionNotFound => code::SESSION_NOT_FOUND,
            Self::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Self::Parse(e) => e.code(),
            Self::NotARequest(_)
            | Self::UnsolicitedResponse(_)
            | Self::TooLarge(_)
            | Self::BodyTimeout(_)
            | Self::UnsupportedMediaType
            | Self::NotAcceptable
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
            Self::Throttled { outcome, .. } => return Some(outcome.error_data()),
            Self::Hidden(..) | Self::SessionNotFound | Self::ForeignTask(_) => return None,
            Self::InsufficientScope {
                capability,
                name,
                needed,
                policy,
            } => {
                data[capability.as_str()] = json!(name);
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
    // A lone throttled call gets the quota's own answer: its status, headers and body (a tool
    // result when the policy asks for one).
    if let (
        false,
        Denial::Throttled {
            outcome,
            as_tool_result,
        },
    ) = (batch, primary)
    {
        let id = primary_id.as_ref().map_or(Value::Null, Id::to_value);
        let quota = if *as_tool_result {
            outcome.tool_error_answer(&id)
        } else {
            outcome.http_answer(&id)
        };
        if let Some(quota) = quota {
            let mut response = Response::new(full(quota.body.to_string()));
            *response.status_mut() = quota.status;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            for (name, value) in quota.headers {
                h.append(name, value);
            }
            return response;
        }
    }
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
        Denial::Throttled { outcome, .. } => {
            for (name, value) in outcome
                .http_answer(&Value::Null)
                .map(|a| a.headers)
                .unwrap_or_default()
            {
                h.append(name, value);
            }
        }
        Denial::MethodNotAllowed => {
            h.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests;
