//! Every refusal of the MCP listener, answered in one place: logged and counted (the decision
//! log, `mcp_warden_requests_total`, usage), audited, and encoded by `deny::answer`.
//!
//! ```text
//! no valid token, or no config yet ──► refuse_caller: tally (one aggregated record per reason
//!                                      and source per interval), debug log, answer
//! a known McpClient its lifecycle refuses, a bad Origin, a bad head, an unreadable body,
//! another's session                ──► refuse_request: one Denied record for the request
//! a payload decided message by message (gate, quotas)
//!                                  ──► refuse_outcomes: a Denied record per call; the batch
//!                                      refused whole (allowed messages: not forwarded)
//! ```

use super::{
    ProxyBody,
    audit::Context,
    deny::{self, Denial},
    gate::{self, Access, Event, Outcome},
    headers,
    jsonrpc::{Id, Message, Payload},
    service::{Proxy, Target},
};
use crate::state::Active;
use http::{HeaderValue, Response, header};
use std::sync::Arc;

impl Proxy {
    /// Refuses a caller that identification turned away, before its body is read. Without a
    /// valid token (or McpClient) it is counted in the tally, one aggregated audit record per
    /// reason and source per interval, and logged at `debug`: nobody without a token can fill
    /// the spool or the log. A known McpClient that is refused gets one record per request.
    pub(super) async fn refuse_caller(
        &self,
        t: &Target,
        parts: &http::request::Parts,
        refusal: gate::Refusal,
    ) -> Response<ProxyBody> {
        let gate::Refusal { denial, who } = refusal;
        if let Some(access) = who {
            let active = Some(t.active.clone());
            let answer = self
                .refuse_request(active, parts, &t.resource, Some(&access), denial)
                .await;
            return closing_unread(parts, answer);
        }
        let kind = match &denial {
            Denial::Unauthenticated(e, _) => e.kind(),
            other => other.reason(),
        };
        if self.shared.audit.is_some() {
            let source = parts.extensions.get::<super::PeerAddr>().map(|p| p.0.ip());
            self.tally.count(kind, source);
        }
        self.shared
            .metrics
            .request(parts.method.as_str(), denial.reason());
        tracing::debug!(
            target: "mcp_warden::decision",
            method = parts.method.as_str(), reason = denial.reason(), kind, allowed = false,
            "denied: no valid token"
        );
        closing_unread(parts, deny::answer(&[(None, denial)], false, &t.resource))
    }

    /// Refuses a request that is not a readable POST (those record their own refusals): logs,
    /// counts, answers, and writes its audit record.
    pub(super) async fn refuse_request(
        &self,
        active: Option<Arc<Active>>,
        parts: &http::request::Parts,
        resource: &str,
        access: Option<&Access>,
        denial: Denial,
    ) -> Response<ProxyBody> {
        if let Some(auditor) = &self.shared.audit {
            Context::new(auditor.clone(), active, parts)
                .refused(access, None, &denial)
                .await;
        }
        let session = headers::session_id(&parts.headers);
        let client = access.map(|a| &a.client);
        self.refuse(
            resource,
            parts.method.as_str(),
            None,
            session,
            client,
            denial,
        )
    }

    /// Refuses a POST whose payload was not read (its head or body refused) or could not be
    /// parsed: one `Denied` record for the request, answered with `id` when the parser found one.
    pub(super) async fn refuse_unread(
        &self,
        t: &Target,
        audit: Option<&Context>,
        access: &Access,
        id: Option<&Id>,
        session: Option<&str>,
        denial: Denial,
    ) -> Response<ProxyBody> {
        if let Some(a) = audit {
            a.refused(Some(access), None, &denial).await;
        }
        let client = Some(&access.client);
        self.refuse(&t.resource, "POST", id, session, client, denial)
    }

    /// Refuses a payload some of whose messages the gate or the quotas refused: refused whole.
    /// Each call gets its `Denied` record (with the answer's HTTP status); each request id of
    /// the answer its refusal, the allowed ones `BatchNotForwarded`. The decision events were
    /// already observed (`gate::observe::outcomes`).
    pub(super) async fn refuse_outcomes(
        &self,
        t: &Target,
        audit: Option<&Context>,
        access: &Access,
        payload: &Payload,
        outcomes: &[Outcome],
    ) -> Response<ProxyBody> {
        let answered: Vec<Denial> = outcomes
            .iter()
            .map(|o| o.denial.clone().unwrap_or(Denial::BatchNotForwarded))
            .collect();
        let denials: Vec<(Option<Id>, Denial)> = payload
            .messages()
            .iter()
            .zip(&answered)
            .map(|(m, d)| (request_id(m), d.clone()))
            .collect();
        let answer = deny::answer(&denials, payload.is_batch(), &t.resource);
        if let Some(a) = audit {
            let status = answer.status().as_u16();
            a.refused_each(access, payload, outcomes, &answered, status)
                .await;
        }
        answer
    }

    /// Refuses a whole payload with one denial (one decision event, `Denied` records): each
    /// request id of a batch gets the error.
    pub(super) async fn refuse_payload(
        &self,
        t: &Target,
        audit: Option<&Context>,
        access: &Access,
        payload: &Payload,
        session: Option<&str>,
        denial: Denial,
    ) -> Response<ProxyBody> {
        if let Some(a) = audit {
            a.refused(Some(access), Some(payload), &denial).await;
        }
        let client = Some(&access.client);
        match payload {
            Payload::Batch(messages) => {
                self.note(payload.label(), None, session, client, &denial);
                let denials: Vec<(Option<Id>, Denial)> = messages
                    .iter()
                    .map(|m| (request_id(m), denial.clone()))
                    .collect();
                deny::answer(&denials, true, &t.resource)
            }
            Payload::Single(_) => {
                let id = payload.answer_id();
                self.refuse(
                    &t.resource,
                    payload.label(),
                    id.as_ref(),
                    session,
                    client,
                    denial,
                )
            }
        }
    }

    /// Logs, counts and answers a refusal of one request.
    pub(super) fn refuse(
        &self,
        resource: &str,
        method: &str,
        id: Option<&Id>,
        session: Option<&str>,
        client: Option<&mcp_warden_policy::ObjectRef>,
        denial: Denial,
    ) -> Response<ProxyBody> {
        self.note(method, id, session, client, &denial);
        deny::answer(&[(id.cloned(), denial)], false, resource)
    }

    /// Logs and counts a refusal.
    pub(super) fn note(
        &self,
        method: &str,
        id: Option<&Id>,
        session: Option<&str>,
        client: Option<&mcp_warden_policy::ObjectRef>,
        denial: &Denial,
    ) {
        let decided_by = match denial {
            Denial::Client(d) => Some(d.decided_by().clone()),
            _ => client.cloned(),
        };
        let client = match denial {
            Denial::Client(d) => d.client().cloned(),
            _ => client.cloned(),
        };
        let event = Event {
            method,
            used: None,
            client: client.as_ref(),
            reason: denial.reason(),
            would: None,
            decided_by: decided_by.as_ref(),
            id,
            session,
            allowed: false,
        };
        gate::record(&self.shared, event);
    }
}

/// The id of a request (responses and notifications get no answer).
pub(super) fn request_id(message: &Message) -> Option<Id> {
    match message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    }
}

/// An answer given without reading the request's body: over HTTP/1.1 the connection cannot
/// carry another request (the unread body is still on it), so the client is told to open a new
/// one (`Connection: close`) instead of finding it closed under its next request.
pub(super) fn closing_unread(
    parts: &http::request::Parts,
    mut answer: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let has_body = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && parts.version <= http::Version::HTTP_11 {
        answer
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}
