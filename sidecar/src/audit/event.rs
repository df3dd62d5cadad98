//! `AuditEvent`: what the proxy knows about one call (`tools/call`, `resources/read`,
//! `resources/subscribe`, `prompts/get`, `completion/complete`), one refused request or one
//! request of the server to a client, in the proxy's own terms. `record` turns it into OCSF;
//! nothing here knows about OCSF.
//!
//! A call the proxy forwards produces two events with the same `call_uid`:
//!
//! ```text
//! decision allowed ──► Outcome::Forwarding  ── append().await (durable) ──► forward upstream
//! response / cancel / disconnect / timeout ──► Outcome::{Answered, Cancelled, …} ── append()
//! decision denied / unauthenticated         ──► Outcome::Denied (one event, nothing forwarded)
//! server request (elicitation, sampling, roots) ──► Outcome::Relayed │ Outcome::Denied (one event)
//! ```

use jiff::Timestamp;
use mcp_warden_crds::Risk;
use mcp_warden_policy::{Capability, Decision, ObjectRef, Principal};
use serde_json::Value;
use std::net::SocketAddr;

/// One audited request: a call of a tool, resource or prompt (request or final phase), a
/// request the proxy refused, or a request of the server to the client.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    /// The proxy's id for this call; the request-phase and final records share it
    /// (`http_request.uid`). Generate it with [`new_call_uid`].
    pub call_uid: String,
    /// When the request arrived.
    pub started: Timestamp,
    /// When the outcome was known; `None` for [`Outcome::Forwarding`] (then `started` is used).
    pub ended: Option<Timestamp>,
    /// The JSON-RPC method (`tools/call`, `resources/read`, …, or the server's
    /// `elicitation/create`, …); empty when the body was never read (e.g. a 401).
    pub method: String,
    /// The JSON-RPC `id`, as text (`42`, `"abc"` without quotes); `None` for notifications or an
    /// unread body.
    pub jsonrpc_id: Option<String>,
    /// What is called: the tool of a `tools/call`, the resource of a `resources/read`, the
    /// prompt of a `prompts/get`, the prompt or resource template of a `completion/complete`.
    pub tool: Option<ToolInfo>,
    /// `params.arguments` of the call (of a `prompts/get` too; for a `completion/complete`,
    /// `params.context.arguments` with the completed `params.argument`), before redaction (the
    /// recorder redacts).
    pub arguments: Option<Value>,
    /// Who called, from the verified token; `None` when unauthenticated.
    pub principal: Option<PrincipalInfo>,
    /// The McpClient the token maps to, when one was identified.
    pub client: Option<ClientInfo>,
    /// The policy decision; `None` when no decision was made (e.g. unauthenticated).
    pub decision: Option<DecisionInfo>,
    /// What happened.
    pub outcome: Outcome,
    /// Status and result details (final phase).
    pub response: ResponseInfo,
    /// Transport and correlation details.
    pub transport: TransportInfo,
    /// The MCP server this sidecar guards.
    pub server: ServerInfo,
    /// How many requests this record stands for (OCSF `count`): set on the aggregated records
    /// of tokenless refusals, `None` (one) otherwise.
    pub count: Option<u64>,
    /// A request of the server to the client (then `method` is the server's method and
    /// `jsonrpc_id` the server's id).
    pub server_request: Option<ServerRequestInfo>,
    /// What the upstream was told about the call (`McpTool.spec.upstreamAuth`): the identity
    /// JWT's `jti`, the Secret refs sent, the token exchange's issuer, audience and outcome.
    /// Never a value.
    pub upstream_auth: Option<crate::upstream_auth::Applied>,
}

/// The tool, resource or prompt being called.
#[derive(Clone, Debug)]
pub struct ToolInfo {
    /// What it is.
    pub capability: Capability,
    /// The tool or prompt name (`params.name`), or the resource URI (`params.uri`; the
    /// template text of a `completion/complete` `ref/resource`).
    pub name: String,
    /// The McpTool that governs the server.
    pub mcp_tool: Option<ObjectRef>,
    /// The declared risk of the matching entry.
    pub risk: Option<Risk>,
}

impl Default for ToolInfo {
    fn default() -> Self {
        Self {
            capability: Capability::Tool,
            name: String::new(),
            mcp_tool: None,
            risk: None,
        }
    }
}

/// A request of the server to the client, and what the proxy did with it.
#[derive(Clone, Debug, Default)]
pub struct ServerRequestInfo {
    /// The kind, as `McpTool.spec.serverRequests` names it (`Elicitation`, `Sampling`,
    /// `Roots`).
    pub kind: String,
    /// The client's pending request it arrived with (relayed ones), its JSON-RPC id as text.
    pub tied_to: Option<String>,
}

/// The caller's verified identity. Never holds the token itself.
#[derive(Clone, Debug, Default)]
pub struct PrincipalInfo {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: Option<String>,
    /// `client_id` (or `azp`).
    pub client_id: Option<String>,
    /// The token's `jti`.
    pub token_id: Option<String>,
    /// The token's scopes.
    pub scopes: Vec<String>,
}

impl PrincipalInfo {
    /// From the policy engine's principal and the token's `jti` (`auth::Verified::token_id`).
    pub fn from_policy(principal: &Principal, token_id: Option<&str>) -> Self {
        Self {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
            client_id: principal.client_id.clone(),
            token_id: token_id.map(str::to_owned),
            scopes: principal.scopes.iter().cloned().collect(),
        }
    }
}

/// The McpClient a request was attributed to.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The McpClient.
    pub object: ObjectRef,
    /// Its accountable owner (`spec.owner`).
    pub owner: String,
}

/// The policy decision in audit terms.
#[derive(Clone, Debug, Default)]
pub struct DecisionInfo {
    /// Whether the request went through (an audit-mode would-deny goes through).
    pub allowed: bool,
    /// `Decision::reason()`: `allowed`, `would_deny`, `not_granted`, … (or the proxy's own
    /// reason for refusals outside the policy engine: `unauthenticated`, `rate_limited`, …).
    pub reason: String,
    /// The CR that decided.
    pub decided_by: Option<ObjectRef>,
    /// Enforced, or observed only (audit-mode policy).
    pub mode: DecisionMode,
    /// Free text, e.g. the scopes that were missing. Never a token.
    pub detail: Option<String>,
}

/// Whether the deciding policy was enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DecisionMode {
    /// The decision was applied.
    #[default]
    Enforce,
    /// An Audit-mode policy: allowed, and the record says what enforcing would have answered.
    Audit,
}

impl DecisionInfo {
    /// From the policy engine's decision.
    pub fn from_decision(decision: &Decision) -> Self {
        let (mode, detail) = match decision {
            Decision::Allow { audit, .. } => (
                if *audit {
                    DecisionMode::Audit
                } else {
                    DecisionMode::Enforce
                },
                None,
            ),
            Decision::WouldDeny { would, .. } => (
                DecisionMode::Audit,
                Some(format!("enforcing would answer {}", would.reason())),
            ),
            Decision::DenyUnknownClient { detail, .. } => {
                (DecisionMode::Enforce, Some(detail.clone()))
            }
            Decision::DenySuspended { reason, .. } => (DecisionMode::Enforce, reason.clone()),
            Decision::DenyExpired { at, .. } => {
                (DecisionMode::Enforce, Some(format!("expired at {at}")))
            }
            Decision::DenyReviewOverdue { due, .. } => (
                DecisionMode::Enforce,
                Some(format!("access review due {due}")),
            ),
            Decision::DenyTokenRevoked { cutoff, .. } => (
                DecisionMode::Enforce,
                Some(format!("tokens issued before {cutoff} are revoked")),
            ),
            Decision::DenyNotGranted { .. } => (DecisionMode::Enforce, None),
            Decision::DenyInsufficientScope { needed, .. } => (
                DecisionMode::Enforce,
                Some(format!("needs scopes {}", needed.join(" "))),
            ),
        };
        Self {
            allowed: decision.is_allowed(),
            reason: decision.reason().to_owned(),
            decided_by: Some(decision.decided_by().clone()),
            mode,
            detail,
        }
    }
}

/// What happened to the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Outcome {
    /// Request phase: allowed, about to be forwarded upstream. The proxy forwards only after
    /// `append` of this event resolved.
    #[default]
    Forwarding,
    /// The proxy answered itself (denied, unauthenticated, throttled, spool full …);
    /// `response.http_status` and `response.jsonrpc_error` say how.
    Denied,
    /// The upstream answered (a result, possibly `isError`, or a JSON-RPC error).
    Answered,
    /// The client cancelled (`notifications/cancelled`).
    Cancelled,
    /// The client went away before the response.
    Disconnected,
    /// A request of the server, passed on to the client.
    Relayed,
    /// No response within the proxy's timeout.
    TimedOut,
    /// The upstream could not be reached or sent garbage (the proxy answered 502/504).
    UpstreamFailed,
}

impl Outcome {
    /// Stable snake_case name (`unmapped.mcp_warden.outcome`, `status_code` for non-answers).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forwarding => "forwarding",
            Self::Denied => "denied",
            Self::Answered => "answered",
            Self::Cancelled => "cancelled",
            Self::Disconnected => "disconnected",
            Self::Relayed => "relayed",
            Self::TimedOut => "timed_out",
            Self::UpstreamFailed => "upstream_failed",
        }
    }
}

/// The response side.
#[derive(Clone, Debug, Default)]
pub struct ResponseInfo {
    /// The HTTP status the proxy returned to the client.
    pub http_status: Option<u16>,
    /// The upstream's HTTP status.
    pub upstream_status: Option<u16>,
    /// `result.isError` (of a `tools/call`).
    pub is_error: Option<bool>,
    /// The JSON-RPC error, when the answer was one.
    pub jsonrpc_error: Option<JsonRpcError>,
    /// The `result` object (the tool result, the resource contents, the prompt messages),
    /// recorded only when the entry's redaction asks for response capture (and then redacted
    /// with the same rules).
    pub result: Option<Value>,
    /// Server-sent progress notifications seen for this call.
    pub progress_events: u32,
    /// The task id of a task-augmented call.
    pub task_id: Option<String>,
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JsonRpcError {
    /// `code`.
    pub code: i64,
    /// `message`.
    pub message: String,
}

/// Transport, session and trace context.
#[derive(Clone, Debug, Default)]
pub struct TransportInfo {
    /// The client's address.
    pub src: Option<SocketAddr>,
    /// `Mcp-Session-Id`.
    pub session_id: Option<String>,
    /// `MCP-Protocol-Version` (or the negotiated version).
    pub protocol_version: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// HTTP method of the request (`POST`).
    pub http_method: Option<String>,
    /// Request path (`/mcp`).
    pub path: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `clientInfo` name/version from `initialize` (or `_meta`), e.g. `claude-code/1.2`.
    pub client_software: Option<String>,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// The MCP server behind this sidecar.
#[derive(Clone, Debug, Default)]
pub struct ServerInfo {
    /// A short service name (the McpTool name, or the upstream host).
    pub name: String,
    /// The protected resource URI (`McpTool.spec.resource`).
    pub resource: Option<String>,
    /// The upstream address, when known.
    pub upstream: Option<SocketAddr>,
}

/// A fresh call id: UUIDv7 text (time-ordered, 74 random bits).
pub fn new_call_uid() -> String {
    uuid_v7(Timestamp::now())
}

/// UUIDv7 (RFC 9562) for `at`.
pub(crate) fn uuid_v7(at: Timestamp) -> String {
    let ms = u64::try_from(at.as_millisecond()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let r: u128 = rand::random();
    let mut v: u128 = (u128::from(ms) << 80) | (r & ((1u128 << 80) - 1));
    v = (v & !(0xF << 76)) | (0x7 << 76); // version 7
    v = (v & !(0x3 << 62)) | (0x2 << 62); // variant 10
    // Written digit by digit: `format!` of the pieces cost 9 allocations per id.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for i in 0..32 {
        if matches!(i, 8 | 12 | 16 | 20) {
            id.push('-');
        }
        id.push(char::from(HEX[((v >> (124 - 4 * i)) & 0xF) as usize]));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_map_to_reason_cr_and_mode() {
        use mcp_warden_policy::Kind;
        let client = ObjectRef::new(Kind::McpClient, "ns", "agent");
        let policy = ObjectRef::new(Kind::McpPolicy, "ns", "p");
        let d = DecisionInfo::from_decision(&Decision::WouldDeny {
            client: client.clone(),
            policy: policy.clone(),
            would: Box::new(Decision::DenyNotGranted {
                client: client.clone(),
                tool: ObjectRef::new(Kind::McpTool, "ns", "t"),
            }),
        });
        assert!(d.allowed);
        assert_eq!(
            (d.reason.as_str(), d.mode),
            ("would_deny", DecisionMode::Audit)
        );
        assert_eq!(d.decided_by.as_ref(), Some(&policy));
        assert_eq!(
            d.detail.as_deref(),
            Some("enforcing would answer not_granted")
        );
        let d = DecisionInfo::from_decision(&Decision::DenyInsufficientScope {
            client,
            policy,
            needed: vec!["a".into(), "b".into()],
        });
        assert!(!d.allowed);
        assert_eq!(
            (d.reason.as_str(), d.mode),
            ("insufficient_scope", DecisionMode::Enforce)
        );
        assert_eq!(d.detail.as_deref(), Some("needs scopes a b"));
    }

    #[test]
    fn uuid_v7_has_version_variant_and_time() {
        let at = Timestamp::from_millisecond(1_795_506_591_123).unwrap();
        let u = uuid_v7(at);
        assert_eq!(u.len(), 36);
        for (i, c) in u.char_indices() {
            match i {
                8 | 13 | 18 | 23 => assert_eq!(c, '-', "{u}"),
                _ => assert!(matches!(c, '0'..='9' | 'a'..='f'), "{u}"),
            }
        }
        assert_eq!(&u[14..15], "7");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        let ms = u64::from_str_radix(&u.replace('-', "")[..12], 16).unwrap();
        assert_eq!(ms, 1_795_506_591_123);
        assert_ne!(uuid_v7(at), u);
    }
}
