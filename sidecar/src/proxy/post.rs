//! POST: one JSON-RPC payload (a message, or a 2025-03-26 batch) through the gate.
//!
//! ```text
//! head ──► gate::identify, once (401, id null; lifecycle 403/401): refused before the body is
//!          read; no valid token ──► counted in the tally, not recorded one by one
//!   ──► Content-Type: application/json (415) ──► Accept allows JSON or SSE, if sent (406)
//!   ──► Content-Length ≤ max_body_bytes (413)
//!   ──► room in the body budget (503 Retry-After) ──► body within body_read_timeout (408)
//!   ──► jsonrpc::parse, one reading only (400 -32700 / -32600)
//!   ──► 2026-07-28: headers::check_mirrored (400 -32020)
//!   ──► Mcp-Session-Id of another principal, or unknown (404 -32001)
//!         (each of these: refuse.rs, one Denied record for the request)
//!   ──► gate::Facts::gather ──► gate::decide: one Outcome per message (pure)
//!   ──► all allowed: throttle (quotas may refuse a call: Denial::Throttled)
//!   ──► gate::observe::outcomes: one decision event per message
//!         any refused ──► refuse_outcomes: deny::answer, the payload refused whole
//!         all allowed ──► audit Forwarding records, durable ──► upstream, the body bytes as
//!                         received ──► relay
//! ```

use super::{
    ProxyBody,
    audit::{Audited, Context},
    deny::{self, Denial},
    filter::Expect,
    gate::{self, Facts},
    headers,
    jsonrpc::{self, Id},
    refuse::{closing_unread, request_id},
    relay::{Exchange, relay},
    revoke::Watch,
    server_requests::Replier,
    service::{Proxy, Target},
    session::Ownership,
};
use bytes::Bytes;
use http::{Method, Request, Response, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::{collections::HashMap, time::Duration};

impl Proxy {
    pub(super) async fn post(&self, t: Target, req: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let session = headers::session_id(&parts.headers).map(str::to_owned);
        let sid = session.as_deref();
        // Who is calling, from the headers alone: a refused caller's body is never read.
        let access = match self.identify(&t, &parts).await {
            Ok(access) => access,
            Err(refused) => return refused,
        };
        let mut audit = self
            .shared
            .audit
            .clone()
            .map(|a| Context::new(a, Some(t.active.clone()), &parts));
        // Held until the request is forwarded or answered: the body budget.
        let (_room, body) = match self.read(&parts, body).await {
            Ok(read) => read,
            Err(denial) => {
                let answer = self
                    .refuse_unread(&t, audit.as_ref(), &access, None, sid, denial)
                    .await;
                return closing_unread(&parts, answer);
            }
        };
        if let Some(a) = audit.as_mut() {
            a.set_bytes_in(body.len());
        }
        let audit = audit.as_ref();
        let payload = match jsonrpc::parse(&body) {
            Ok(payload) => payload,
            Err(e) => {
                let id = e.id().cloned();
                return self
                    .refuse_unread(&t, audit, &access, id.as_ref(), sid, Denial::Parse(e))
                    .await;
            }
        };
        let era = headers::era(&parts.headers, Some(&payload));
        if let (headers::Era::Modern, jsonrpc::Payload::Single(message)) = (era, &payload)
            && let Err(mismatch) = headers::check_mirrored(&parts.headers, message)
        {
            let denial = Denial::HeaderMismatch(mismatch);
            return self
                .refuse_payload(&t, audit, &access, &payload, sid, denial)
                .await;
        }
        let ownership = sid.map(|sid| self.sessions.check(sid, &access.key));
        if matches!(ownership, Some(Ownership::Foreign | Ownership::Unknown)) {
            // Another principal's session, or one the proxy did not see start (never adopted):
            // the upstream SDK's body for an unknown session, id null: no oracle (HTTP-13).
            let denial = Denial::SessionNotFound;
            if let Some(a) = audit {
                a.refused(Some(&access), Some(&payload), &denial).await;
            }
            let client = Some(&access.client);
            return self.refuse(&t.resource, payload.label(), None, sid, client, denial);
        }
        // A Last-Event-ID must be one of this caller's sealed ids on this session.
        let mut forward = headers::to_upstream(&parts.headers);
        let scope = super::event_id::scope(&access.key, sid);
        if let Err(denial) = self.event_ids.resume(&mut forward, &scope) {
            return self
                .refuse_payload(&t, audit, &access, &payload, sid, denial)
                .await;
        }
        // The decision: one outcome per message, from what the request and the sessions say.
        let messages = payload.messages();
        let Some(caller) = access.caller() else {
            // `identify` admitted this caller: unreachable, refused (fail closed) all the same.
            tracing::error!("an admitted caller without its McpClient: refused");
            return deny::answer(&[(None, Denial::NotReady)], false, &t.resource);
        };
        let facts = Facts::gather(&self.sessions, sid, &access.key, messages);
        let mut outcomes = gate::decide(messages, era, &caller, &t.active.rules, &facts);
        let allowed = |outcomes: &[gate::Outcome]| outcomes.iter().all(|o| o.denial.is_none());
        let rate_headers = if allowed(&outcomes) {
            self.throttle(&access, messages, payload.is_batch(), &mut outcomes)
                .await
        } else {
            Vec::new()
        };
        let forwarded = allowed(&outcomes);
        let client = &access.client;
        gate::observe::outcomes(
            &self.shared,
            &t.active,
            messages,
            &outcomes,
            client,
            sid,
            forwarded,
        );
        if !forwarded {
            return self
                .refuse_outcomes(&t, audit, &access, &payload, &outcomes)
                .await;
        }
        // The request-phase records are durable before anything is forwarded.
        let calls = match audit {
            Some(a) => match a
                .forwarding(&access, &payload, &outcomes, &self.in_flight)
                .await
            {
                Ok(calls) => calls,
                Err(()) => {
                    let denials: Vec<(Option<Id>, Denial)> = payload
                        .messages()
                        .iter()
                        .filter_map(request_id)
                        .map(|id| (Some(id), Denial::AuditUnavailable))
                        .collect();
                    let denials = if denials.is_empty() {
                        vec![(None, Denial::AuditUnavailable)]
                    } else {
                        denials
                    };
                    return deny::answer(&denials, payload.is_batch(), &t.resource);
                }
            },
            None => None,
        };
        if audit.is_some() {
            for m in payload.messages() {
                if m.method() == Some("notifications/cancelled")
                    && let Some(id) = m
                        .params()
                        .and_then(|p| p.get("requestId"))
                        .and_then(Id::from_value)
                {
                    self.in_flight.cancel(&access.key, &id);
                }
            }
        }
        let answers: HashMap<Id, Option<Expect>> = payload
            .messages()
            .iter()
            .zip(&outcomes)
            .filter_map(|(m, v)| Some((request_id(m)?, v.expect)))
            .collect();
        let grants = outcomes.iter().map(|o| &o.decided_by);
        let auth = &self.shared.upstream_auth;
        let (authed, applied) = auth
            .forward(&access, grants, &parts.headers, &mut forward)
            .await;
        if let (Some(calls), Some(applied)) = (&calls, applied) {
            calls.set_upstream_auth(applied);
        }
        let replier = Replier::new(self.upstream.clone(), &t.upstream, &forward);
        let sent = match authed {
            Ok(()) => {
                (self.upstream)
                    .send(Method::POST, &t.upstream, parts.uri.query(), forward, body)
                    .await
            }
            Err(e) => Err(e),
        };
        let (response, took) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(method = payload.label(), error = %e, "upstream request failed");
                let denial = Denial::Upstream(e);
                if let Some(calls) = &calls {
                    calls.failed(&denial);
                }
                return deny::answer(&[(payload.answer_id(), denial)], false, &t.resource);
            }
        };
        self.shared
            .metrics
            .upstream(payload.label(), took.as_secs_f64());
        let revoke = Watch {
            live: self.shared.live.clone(),
            principal: access.principal.clone(),
            used: match outcomes.as_slice() {
                [one] => one.used.clone(),
                _ => None,
            },
            on_revoke: match audit {
                Some(a) => a.clone().revoked(access.clone()),
                None => Box::new(|_| {}),
            },
        };
        let server_audit = audit.map(|a| a.server_requests(&access));
        let exchange = Exchange {
            replier: Some(replier),
            answer_id: payload.answer_id(),
            revoke: Some(revoke),
            access: Some(access),
            answers,
            session,
            modern: era == headers::Era::Modern,
            audit: calls.clone(),
            server_audit,
            usage: self.shared.usage.clone(),
            event_ids: Some(self.event_ids.clone()),
            room: Some(self.admission.answer_room()),
            ..Exchange::default()
        };
        let upstream_status = response.status().as_u16();
        let mut answer = relay(response, exchange, &self.sessions, &t.resource).await;
        if let Some(calls) = calls {
            calls.set_status(upstream_status, answer.status().as_u16());
            answer = answer.map(|body| Audited::wrap(body, calls));
        }
        for (name, value) in rate_headers {
            answer.headers_mut().append(name, value);
        }
        answer
    }

    /// The head's checks, then the body: Content-Type (415), Accept (406), Content-Length (413),
    /// room in the body budget (503), the body within its time (408) and size (413). The permit
    /// is the body's share of the budget, held until the request is forwarded or answered.
    async fn read(
        &self,
        parts: &Parts,
        body: Incoming,
    ) -> Result<(tokio::sync::OwnedSemaphorePermit, Bytes), Denial> {
        let settings = &self.shared.settings;
        if !headers::is_json(&parts.headers) {
            return Err(Denial::UnsupportedMediaType);
        }
        if !headers::accepts_an_answer(&parts.headers) {
            return Err(Denial::NotAcceptable);
        }
        let declared = content_length(parts);
        if declared.is_some_and(|n| n > settings.max_body_bytes as u64) {
            return Err(Denial::TooLarge(settings.max_body_bytes));
        }
        let permit = self
            .admission
            .body(declared, settings.body_read_timeout)
            .await
            .ok_or(Denial::Busy)?;
        let body = read_body(body, settings.max_body_bytes, settings.body_read_timeout).await?;
        Ok((permit, body))
    }
}

/// The declared `Content-Length`.
fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads a request body: refused above `limit` (while counting) and when it does not arrive
/// within `timeout`.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, Denial> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Denial::BodyTimeout(timeout.as_secs())),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Denial::TooLarge(limit))
        }
        Ok(Err(e)) => Err(Denial::Parse(jsonrpc::ParseError::Json(format!(
            "the request body could not be read: {e}"
        )))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
