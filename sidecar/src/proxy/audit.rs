//! The proxy's side of the audit trail (`docs/audit.md`, "Wiring"): what a POST knows, turned
//! into `AuditEvent`s.
//!
//! ```text
//! refusal (401/403/400/413/…, denied tools/call, throttled) ──► Context::refused ──► Denied
//! allowed tools/call ──► Context::forwarding ──► Forwarding, durable (Err ──► 503 -32603)
//!   ──► upstream ──► Calls: relay's inspector sees the response for the id (answered)
//!                  └─ Audited body: end ──► Answered │ dropped first ──► Disconnected
//!                     upstream unreachable (502) ──► UpstreamFailed │ no headers in time ──► TimedOut
//!   InFlight: (caller, id) ──► Calls, so that the same caller's `notifications/cancelled`
//!   {requestId} marks the call: ended without an answer ──► Cancelled
//! ```
//!
//! Final records are written when the response body ends (or is dropped): nothing is buffered,
//! only the response message of a `tools/call` id is parsed, as `filter` already does.

use super::{
    BoxError, PeerAddr, ProxyBody,
    authorize::{Access, Verdict},
    deny::Denial,
    headers,
    jsonrpc::{Id, Message, Payload},
    session::PrincipalKey,
    upstream::UpstreamError,
};
use crate::{
    audit::{
        AuditEvent, Auditor, ClientInfo, DecisionInfo, DecisionMode, JsonRpcError, Outcome,
        PrincipalInfo, Redaction, ServerInfo, ToolInfo, TransportInfo, new_call_uid,
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
        let tool = message
            .filter(|m| m.method() == Some("tools/call"))
            .and_then(|m| m.param_str("name"))
            .map(|name| ToolInfo {
                name: name.to_owned(),
                mcp_tool: rules.map(|r| r.tool.clone()),
                risk: rules.and_then(|r| r.entry(name)).map(|e| e.risk),
            });
        let arguments = tool
            .as_ref()
            .and(message)
            .and_then(Message::params)
            .and_then(|p| p.get("arguments"))
            .cloned();
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
        }
    }

    /// The redaction for `event`'s tool; `None` when its rules are invalid.
    fn redaction(&self, event: &AuditEvent) -> Option<Arc<Redaction>> {
        self.active
            .as_ref()?
            .audit_redaction(event.tool.as_ref().map(|t| t.name.as_str()))
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

    /// One `Denied` record per `tools/call` of a refused payload, or one for the request when
    /// it holds none (or was never read).
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
            let mut event = self.event(access, Some(m), "tools/call", Outcome::Denied);
            deny_fields(&mut event, decision.clone(), denial);
            self.write(event).await;
        }
    }

    /// `Denied` records for the `tools/call`s of a payload decided message by message:
    /// `denials[i]` is what message `i` was answered (`None`: not a refusal to record).
    pub(super) async fn refused_each(
        &self,
        access: &Access,
        payload: &Payload,
        verdicts: &[Verdict],
        answered: &[Option<(Denial, &str)>],
    ) {
        if !payload.messages().iter().any(is_call) {
            // No tools/call: one record for the refused request, with the first refusal.
            let first = verdicts
                .iter()
                .zip(answered)
                .find(|(v, _)| v.denial.is_some())
                .and_then(|(_, a)| a.as_ref());
            if let Some((denial, _)) = first {
                self.refused(Some(access), Some(payload), denial).await;
            }
            return;
        }
        for ((m, v), a) in payload.messages().iter().zip(verdicts).zip(answered) {
            let Some((denial, reason)) = a else { continue };
            if !is_call(m) {
                continue;
            }
            let decision = DecisionInfo {
                allowed: false,
                reason: (*reason).to_owned(),
                decided_by: Some(v.decided_by.clone()),
                mode: DecisionMode::Enforce,
                detail: match denial {
                    Denial::InsufficientScope { needed, .. } => {
                        Some(format!("needs scopes {}", needed.join(" ")))
                    }
                    _ => None,
                },
            };
            let mut event = self.event(Some(access), Some(m), "tools/call", Outcome::Denied);
            deny_fields(&mut event, decision, denial);
            self.write(event).await;
        }
    }

    /// A `Denied` record per `tools/call` refused by the rate limits with `status`.
    pub(super) async fn throttled(
        &self,
        access: &Access,
        payload: &Payload,
        verdicts: &[Verdict],
        status: u16,
    ) {
        for (m, v) in payload.messages().iter().zip(verdicts) {
            if !is_call(m) {
                continue;
            }
            let mut event = self.event(Some(access), Some(m), "tools/call", Outcome::Denied);
            event.ended = Some(Timestamp::now());
            event.decision = Some(DecisionInfo {
                allowed: false,
                reason: if v.reason == "allowed" {
                    "rate_limited".to_owned()
                } else {
                    v.reason.to_owned()
                },
                decided_by: Some(v.decided_by.clone()),
                mode: DecisionMode::Enforce,
                detail: None,
            });
            event.response.http_status = Some(status);
            self.write(event).await;
        }
    }

    /// The request-phase records of the allowed `tools/call`s, each durable before this
    /// returns; `Err` when one could not be written (the caller answers 503, forwards nothing).
    pub(super) async fn forwarding(
        &self,
        access: &Access,
        payload: &Payload,
        verdicts: &[Verdict],
        in_flight: &Arc<InFlight>,
    ) -> Result<Option<Arc<Calls>>, ()> {
        let mut pending = HashMap::new();
        for (m, v) in payload.messages().iter().zip(verdicts) {
            let (true, Some(id)) = (is_call(m), m.id()) else {
                continue;
            };
            let mut event = self.event(Some(access), Some(m), "tools/call", Outcome::Forwarding);
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
                tracing::error!(tool = ?event.tool.as_ref().map(|t| &t.name), "audit redaction rules invalid: call refused");
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

fn is_call(m: &Message) -> bool {
    matches!(m, Message::Request { .. }) && m.method() == Some("tools/call")
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

#[derive(Debug)]
struct Pending {
    event: AuditEvent,
    redaction: Arc<Redaction>,
    answered: bool,
    cancelled: bool,
}

/// The forwarded `tools/call`s awaiting their final records, by caller and JSON-RPC id, so that
/// a `notifications/cancelled` of the same caller finds them (another caller's cannot).
#[derive(Debug, Default)]
pub(super) struct InFlight(Mutex<HashMap<(PrincipalKey, Id), Weak<Calls>>>);

impl InFlight {
    fn insert(&self, key: &PrincipalKey, ids: Vec<Id>, calls: &Arc<Calls>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            map.insert((key.clone(), id), Arc::downgrade(calls));
        }
    }

    fn remove(&self, key: &PrincipalKey, ids: impl Iterator<Item = Id>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            let entry = (key.clone(), id);
            // A newer call may reuse the id: remove only an entry whose call is gone or ending.
            if map.get(&entry).is_some_and(|w| {
                w.upgrade()
                    .is_none_or(|c| c.finished.load(Ordering::Acquire))
            }) {
                map.remove(&entry);
            }
        }
    }

    /// The caller cancelled its request `id`: its record ends `Cancelled` unless answered.
    pub(super) fn cancel(&self, key: &PrincipalKey, id: &Id) -> bool {
        let calls = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(key.clone(), id.clone()))
            .and_then(Weak::upgrade);
        calls.is_some_and(|c| c.cancelled(id))
    }
}

/// The forwarded `tools/call`s of one POST, awaiting their final records.
#[derive(Debug)]
pub struct Calls {
    auditor: Auditor,
    pending: Mutex<HashMap<Id, Pending>>,
    upstream_status: AtomicU16,
    client_status: AtomicU16,
    bytes_out: AtomicU64,
    finished: AtomicBool,
    in_flight: Option<(Arc<InFlight>, PrincipalKey)>,
}

impl Calls {
    /// The client cancelled `id`; `false` when it is not pending here.
    fn cancelled(&self, id: &Id) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.get_mut(id).map(|p| p.cancelled = true).is_some()
    }

    /// The upstream's status and the one the client gets.
    pub(super) fn set_status(&self, upstream: u16, client: u16) {
        self.upstream_status.store(upstream, Ordering::Relaxed);
        self.client_status.store(client, Ordering::Relaxed);
    }

    /// The response to `id` went by (raw `result` / `error` JSON).
    pub(super) fn answered(&self, id: &Id, result: Option<&str>, error: Option<&str>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = pending.get_mut(id) else {
            return;
        };
        p.answered = true;
        let response = &mut p.event.response;
        if let Some(error) = error.and_then(|e| serde_json::from_str::<Value>(e).ok()) {
            response.jsonrpc_error = Some(JsonRpcError {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
        if let Some(result) = result.and_then(|r| serde_json::from_str::<Value>(r).ok()) {
            response.is_error = Some(
                result
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            );
            if p.redaction.capture_response() {
                response.result = Some(result);
            }
        }
    }

    /// The upstream could not be reached (the proxy answered `denial`).
    pub(super) fn failed(&self, denial: &Denial) {
        let status = denial.status().as_u16();
        self.client_status.store(status, Ordering::Relaxed);
        let outcome = match denial {
            Denial::Upstream(UpstreamError::Timeout(_)) => Outcome::TimedOut,
            _ => Outcome::UpstreamFailed,
        };
        self.finish_with(|p| {
            p.event.outcome = outcome;
            p.event.response.jsonrpc_error = Some(JsonRpcError {
                code: denial.code(),
                message: denial.to_string(),
            });
        });
    }

    /// The response body ended (`complete`) or was dropped before its end.
    fn finish(&self, complete: bool) {
        let upstream = self.upstream_status.load(Ordering::Relaxed);
        let client = self.client_status.load(Ordering::Relaxed);
        self.finish_with(|p| {
            p.event.outcome = if (client == 502 || client == 504) && upstream != client {
                Outcome::UpstreamFailed
            } else if p.answered || (complete && !p.cancelled) {
                Outcome::Answered
            } else if p.cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Disconnected
            };
            if upstream != 0 {
                p.event.response.upstream_status = Some(upstream);
            }
        });
    }

    fn finish_with(&self, mut fill: impl FnMut(&mut Pending)) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let (ids, pending): (Vec<Id>, Vec<Pending>) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .unzip();
        if let Some((in_flight, key)) = &self.in_flight {
            in_flight.remove(key, ids.into_iter());
        }
        let client = self.client_status.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        for mut p in pending {
            fill(&mut p);
            p.event.ended = Some(Timestamp::now());
            if client != 0 {
                p.event.response.http_status = Some(client);
            }
            p.event.transport.bytes_out = bytes_out;
            if let Err(e) = self.auditor.record_final(&p.event, &p.redaction) {
                tracing::warn!(error = %e, "audit final record lost");
            }
        }
    }
}

/// A response body that writes the final records of its calls when it ends or is dropped.
pub(super) struct Audited {
    inner: ProxyBody,
    calls: Arc<Calls>,
    done: bool,
}

impl Audited {
    pub(super) fn wrap(inner: ProxyBody, calls: Arc<Calls>) -> ProxyBody {
        Self {
            inner,
            calls,
            done: false,
        }
        .boxed_unsync()
    }
}

impl Body for Audited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.calls
                        .bytes_out
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if this.inner.is_end_stream() {
                    this.done = true;
                    this.calls.finish(true);
                }
            }
            Poll::Ready(None) => {
                this.done = true;
                this.calls.finish(true);
            }
            Poll::Ready(Some(Err(_))) => {
                this.done = true;
                this.calls.finish(false);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if !self.done {
            let complete = self.inner.is_end_stream();
            self.calls.finish(complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditConfig;
    use mcp_warden_policy::Principal;

    fn key(subject: &str) -> PrincipalKey {
        PrincipalKey::of(&Principal {
            issuer: "https://idp.example".into(),
            subject: Some(subject.into()),
            client_id: None,
            scopes: Default::default(),
            issued_at: None,
        })
    }

    fn calls(
        auditor: &Auditor,
        in_flight: &Arc<InFlight>,
        who: &PrincipalKey,
        id: Id,
    ) -> Arc<Calls> {
        let pending = Pending {
            event: AuditEvent::default(),
            redaction: Arc::new(Redaction::none()),
            answered: false,
            cancelled: false,
        };
        let calls = Arc::new(Calls {
            auditor: auditor.clone(),
            pending: Mutex::new(HashMap::from([(id.clone(), pending)])),
            upstream_status: AtomicU16::new(0),
            client_status: AtomicU16::new(0),
            bytes_out: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            in_flight: Some((in_flight.clone(), who.clone())),
        });
        in_flight.insert(who, vec![id], &calls);
        calls
    }

    #[tokio::test]
    async fn only_the_caller_of_a_call_can_cancel_it_and_ended_calls_leave_the_map() {
        let dir = tempfile::tempdir().unwrap();
        let auditor = Auditor::start(
            &AuditConfig::in_dir(dir.path()),
            &prometheus::Registry::new(),
        )
        .unwrap();
        let in_flight = Arc::new(InFlight::default());
        let (alice, mallory) = (key("alice"), key("mallory"));
        let id = Id::from_value(&serde_json::json!(7)).unwrap();
        let call = calls(&auditor, &in_flight, &alice, id.clone());
        assert!(
            !in_flight.cancel(&mallory, &id),
            "another caller's cancellation"
        );
        assert!(!in_flight.cancel(&alice, &Id::from_value(&serde_json::json!(8)).unwrap()));
        assert!(in_flight.cancel(&alice, &id));
        call.finish(false);
        assert!(
            in_flight.0.lock().unwrap().is_empty(),
            "removed when finished"
        );
        assert!(!in_flight.cancel(&alice, &id), "nothing left to cancel");
    }
}
