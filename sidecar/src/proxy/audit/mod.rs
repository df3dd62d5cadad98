//! The proxy's side of the audit trail (`docs/audit.md`, "Wiring"): what a POST knows, turned
//! into `AuditEvent`s.
//!
//! A *call* is a `tools/call`, `resources/read`, `resources/subscribe`, `prompts/get` or
//! `completion/complete` request (`used`: what it uses, and the arguments it records).
//!
//! ```text
//! refusal (401/403/400/413/…, denied call, throttled) ──► Context::refused ──► Denied
//! allowed call ──► Context::forwarding ──► Forwarding, durable (Err ──► 503 -32603)
//!   ──► upstream ──► Calls: relay's inspector sees the response for the id (answered)
//!                  └─ Audited body: end ──► Answered │ dropped first ──► Disconnected
//!                     upstream unreachable (502) ──► UpstreamFailed │ no headers in time ──► TimedOut
//!   InFlight: (caller, id) ──► Calls, so that the same caller's `notifications/cancelled`
//!   {requestId} marks the call: ended without an answer ──► Cancelled
//! server's request on the answer (or a GET stream) ──► ServerRequests ──► Relayed │ Denied
//! ```
//!
//! Final records are written when the response body ends (or is dropped): nothing is buffered,
//! only the response message of a call's id is parsed, as `filter` already does.

use super::{
    BoxError, PeerAddr, ProxyBody,
    deny::Denial,
    gate::{Access, Outcome as Decided},
    headers,
    jsonrpc::{Id, Message, Payload},
    session::PrincipalKey,
    upstream::UpstreamError,
};
use crate::{
    audit::{
        AuditEvent, Auditor, ClientInfo, DecisionInfo, DecisionMode, JsonRpcError, Outcome,
        PrincipalInfo, Redaction, ServerInfo, ServerRequestInfo, ToolInfo, TransportInfo,
        new_call_uid,
    },
    state::Active,
};
use bytes::Bytes;
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use jiff::Timestamp;
use serde_json::Value;
use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering},
    },
    task::{Context as TaskContext, Poll},
};

/// What one POST knows for its audit records.
#[derive(Clone, Debug)]
pub(super) struct Context {
    auditor: Auditor,
    /// The rules in force (`None`: refused before any configuration was in force).
    active: Option<Arc<Active>>,
    started: Timestamp,
    transport: TransportInfo,
    server: ServerInfo,
}

impl Context {
    /// At the start of a request.
    pub(super) fn new(auditor: Auditor, active: Option<Arc<Active>>, parts: &Parts) -> Self {
        let h = &parts.headers;
        let transport = TransportInfo {
            src: parts.extensions.get::<PeerAddr>().map(|p| p.0),
            session_id: headers::session_id(h).map(str::to_owned),
            protocol_version: headers::text(h, "mcp-protocol-version").map(str::to_owned),
            traceparent: headers::text(h, "traceparent").map(str::to_owned),
            http_method: Some(parts.method.as_str().to_owned()),
            path: Some(parts.uri.path().to_owned()),
            user_agent: headers::text(h, "user-agent").map(str::to_owned),
            ..TransportInfo::default()
        };
        let server = ServerInfo {
            name: active
                .as_ref()
                .map_or_else(String::new, |a| a.rules.tool.name.clone()),
            resource: active.as_ref().map(|a| a.rules.resource.clone()),
            upstream: None,
        };
        Self {
            auditor,
            active,
            started: Timestamp::now(),
            transport,
            server,
        }
    }

    /// Writes the record of an open stream closed by revocation, in the background.
    pub(super) fn revoked(self, access: Access) -> Box<dyn FnOnce(Denial) + Send> {
        Box::new(move |denial| {
            tokio::spawn(async move { self.refused(Some(&access), None, &denial).await });
        })
    }

    /// The request body's size, once read.
    pub(super) fn set_bytes_in(&mut self, n: usize) {
        self.transport.bytes_in = n as u64;
    }

    /// An event for `message` (or for the request as a whole).
    fn event(
        &self,
        access: Option<&Access>,
        message: Option<&Message>,
        method: &str,
        outcome: Outcome,
    ) -> AuditEvent {
        let rules = self.active.as_ref().map(|a| &a.rules);
        let used = message.and_then(used::of);
        let tool = used.map(|(capability, name)| ToolInfo {
            capability,
            name: name.to_owned(),
            mcp_tool: rules.map(|r| r.tool.clone()),
            risk: rules
                .and_then(|r| r.entries(capability).entry(name))
                .map(|e| e.risk),
        });
        let arguments = message.filter(|_| used.is_some()).and_then(used::arguments);
        AuditEvent {
            call_uid: new_call_uid(),
            started: self.started,
            ended: None,
            method: message
                .and_then(Message::method)
                .unwrap_or(method)
                .to_owned(),
            jsonrpc_id: message.and_then(Message::id).map(id_text),
            tool,
            arguments,
            principal: access
                .map(|a| PrincipalInfo::from_policy(&a.principal, a.token_id.as_deref())),
            client: access.map(|a| ClientInfo {
                object: a.client.clone(),
                owner: a.owner.clone(),
            }),
            decision: None,
            outcome,
            response: Default::default(),
            transport: self.transport.clone(),
            server: self.server.clone(),
            count: None,
            server_request: None,
            upstream_auth: None,
        }
    }

    /// The redaction for what `event` uses (its tool, resource or prompt entry); `None` when
    /// its rules are invalid.
    fn redaction(&self, event: &AuditEvent) -> Option<Arc<Redaction>> {
        self.active
            .as_ref()?
            .audit_redaction(event.tool.as_ref().map(|t| (t.capability, t.name.as_str())))
    }

    async fn write(&self, mut event: AuditEvent) {
        let redaction = match self.redaction(&event) {
            Some(r) => r,
            None => {
                // Invalid rules: never record the arguments in clear.
                event.arguments = None;
                Arc::new(Redaction::none())
            }
        };
        if let Err(e) = self.auditor.record(&event, &redaction).await {
            tracing::warn!(error = %e, outcome = event.outcome.as_str(), "audit record lost");
        }
    }

    /// One `Denied` record per call of a refused payload, or one for the request when it holds
    /// none (or was never read).
    pub(super) async fn refused(
        &self,
        access: Option<&Access>,
        payload: Option<&Payload>,
        denial: &Denial,
    ) {
        let calls: Vec<&Message> = payload
            .map(|p| {
                p.messages()
                    .iter()
                    .filter(|m| is_call(m))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let decision = decision_of(denial, access.map(|a| a.client.clone()));
        if calls.is_empty() {
            let single = match payload {
                Some(Payload::Single(m)) => Some(m),
                _ => None,
            };
            let label = payload.map_or_else(
                || self.transport.http_method.as_deref().unwrap_or(""),
                Payload::label,
            );
            let mut event = self.event(access, single, label, Outcome::Denied);
            deny_fields(&mut event, decision, denial);
            self.write(event).await;
            return;
        }
        for m in calls {
            let mut event = self.event(access, Some(m), "call", Outcome::Denied);
            deny_fields(&mut event, decision.clone(), denial);
            self.write(event).await;
        }
    }

    /// `Denied` records for the calls of a payload decided message by message and refused
    /// whole with HTTP `status`: `answered[i]` is what message `i` was answered (its refusal,
    /// or `BatchNotForwarded`).
    pub(super) async fn refused_each(
        &self,
        access: &Access,
        payload: &Payload,
        outcomes: &[Decided],
        answered: &[Denial],
        status: u16,
    ) {
        if !payload.messages().iter().any(is_call) {
            // No call: one record for the refused request, with the first refusal.
            if let Some(denial) = outcomes.iter().find_map(|o| o.denial.as_ref()) {
                self.refused(Some(access), Some(payload), denial).await;
            }
            return;
        }
        for ((m, o), denial) in payload.messages().iter().zip(outcomes).zip(answered) {
            if !is_call(m) {
                continue;
            }
            let decision = DecisionInfo {
                allowed: false,
                reason: if o.denial.is_some() {
                    o.reason
                } else {
                    denial.reason()
                }
                .to_owned(),
                decided_by: Some(o.decided_by.clone()),
                mode: DecisionMode::Enforce,
                detail: match denial {
                    Denial::InsufficientScope { needed, .. } => {
                        Some(format!("needs scopes {}", needed.join(" ")))
                    }
                    _ => None,
                },
            };
            let mut event = self.event(Some(access), Some(m), "call", Outcome::Denied);
            deny_fields(&mut event, decision, denial);
            event.response.http_status = Some(status);
            self.write(event).await;
        }
    }

    /// The request-phase records of the allowed calls, each durable before this
    /// returns; `Err` when one could not be written (the caller answers 503, forwards nothing).
    pub(super) async fn forwarding(
        &self,
        access: &Access,
        payload: &Payload,
        outcomes: &[Decided],
        in_flight: &Arc<InFlight>,
    ) -> Result<Option<Arc<Calls>>, ()> {
        let mut pending = HashMap::new();
        for (m, v) in payload.messages().iter().zip(outcomes) {
            let (true, Some(id)) = (is_call(m), m.id()) else {
                continue;
            };
            let mut event = self.event(Some(access), Some(m), "call", Outcome::Forwarding);
            event.decision = Some(DecisionInfo {
                allowed: true,
                reason: v.reason.to_owned(),
                decided_by: Some(v.decided_by.clone()),
                mode: if v.would.is_some() {
                    DecisionMode::Audit
                } else {
                    DecisionMode::Enforce
                },
                detail: v.would.map(|w| format!("enforcing would answer {w}")),
            });
            let Some(redaction) = self.redaction(&event) else {
                tracing::error!(used = ?event.tool.as_ref().map(|t| &t.name), "audit redaction rules invalid: call refused");
                return Err(());
            };
            if let Err(e) = self.auditor.record(&event, &redaction).await {
                tracing::warn!(error = %e, full = e.is_full(), "audit trail unavailable: call refused");
                return Err(());
            }
            pending.insert(
                id.clone(),
                Pending {
                    event,
                    redaction,
                    answered: false,
                    cancelled: false,
                },
            );
        }
        if pending.is_empty() {
            return Ok(None);
        }
        let ids: Vec<Id> = pending.keys().cloned().collect();
        let calls = Arc::new(Calls {
            auditor: self.auditor.clone(),
            pending: Mutex::new(pending),
            upstream_status: AtomicU16::new(0),
            client_status: AtomicU16::new(0),
            bytes_out: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            in_flight: Some((in_flight.clone(), access.key.clone())),
        });
        in_flight.insert(&access.key, ids, &calls);
        Ok(Some(calls))
    }
}

/// A request that gets call records: `tools/call`, `resources/read`, `resources/subscribe`,
/// `prompts/get`, `completion/complete`.
fn is_call(m: &Message) -> bool {
    used::audited(m)
}

/// A JSON-RPC id as text: numbers as written, strings without quotes.
fn id_text(id: &Id) -> String {
    match id.to_value() {
        Value::String(s) => s,
        v => v.to_string(),
    }
}

fn decision_of(denial: &Denial, decided_by: Option<mcp_warden_policy::ObjectRef>) -> DecisionInfo {
    match denial {
        Denial::Client(d) => DecisionInfo::from_decision(d),
        _ => DecisionInfo {
            allowed: false,
            reason: denial.reason().to_owned(),
            decided_by,
            mode: DecisionMode::Enforce,
            detail: None,
        },
    }
}

fn deny_fields(event: &mut AuditEvent, decision: DecisionInfo, denial: &Denial) {
    event.ended = Some(Timestamp::now());
    event.decision = Some(decision);
    event.response.http_status = Some(denial.status().as_u16());
    event.response.jsonrpc_error = Some(JsonRpcError {
        code: denial.code(),
        message: denial.to_string(),
    });
}

mod calls;
mod server;
mod used;
use calls::Pending;
pub(super) use calls::{Audited, Calls, InFlight};
pub(super) use server::ServerRequests;
