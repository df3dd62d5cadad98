//! POST: one JSON-RPC payload (a message, or a 2025-03-26 batch) through the gate.
//!
//! ```text
//! headers ──► authenticate (401, id null) ──► lifecycle (403/401): refused before the body is
//!             read; no valid token ──► counted in the tally, not recorded one by one
//!   ──► Content-Type: application/json (415) ──► Accept allows JSON or SSE, if sent (406)
//!   ──► Content-Length ≤ max_body_bytes (413)
//!   ──► room in the body budget (503 Retry-After) ──► body within body_read_timeout (408)
//!   ──► jsonrpc::parse, one reading only (400 -32700 / -32600)
//!   ──► 2026-07-28: headers::check_mirrored (400 -32020)
//!   ──► Mcp-Session-Id of another principal, or unknown (404 -32001)
//!   ──► authorize::authorize per message, one decision event each
//!         any denied ──► deny::answer for the whole payload (a batch is refused whole)
//!         all allowed ──► upstream, with the body bytes as received ──► relay
//! ```

use super::{
    ProxyBody,
    audit::{Audited, Context},
    authorize::{self, Event, Verdict},
    deny::{self, Denial},
    filter::Expect,
    headers,
    jsonrpc::{self, Id, Message, Payload},
    relay::{Exchange, relay},
    revoke::Watch,
    server_requests::Replier,
    service::{Proxy, Target},
    session::Ownership,
    throttle::Throttle,
};
use bytes::Bytes;
use http::{Method, Request, Response, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::{collections::HashMap, time::Duration};

impl Proxy {
    pub(super) async fn post(&self, t: Target, req: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, body) = req.into_parts();
        let settings = &self.shared.settings;
        let session = headers::session_id(&parts.headers).map(str::to_owned);
        let sid = session.as_deref();
        // Who is calling, from the headers alone: a refused caller's body is never read.
        let auth = &self.shared.auth;
        let access =
            match authorize::identify(&t.active, auth, settings, &parts.headers, parts.uri.query())
                .await
            {
                Ok(access) => access,
                Err(refusal) => return self.refuse_caller(&t, &parts, refusal).await,
            };
        let client = Some(&access.client);
        let mut audit = self
            .shared
            .audit
            .clone()
            .map(|a| Context::new(a, Some(t.active.clone()), &parts));
        let early = if !headers::is_json(&parts.headers) {
            Err(Denial::UnsupportedMediaType)
        } else if !headers::accepts_an_answer(&parts.headers) {
            Err(Denial::NotAcceptable)
        } else {
            let declared = content_length(&parts);
            if declared.is_some_and(|n| n > settings.max_body_bytes as u64) {
                Err(Denial::TooLarge(settings.max_body_bytes))
            } else {
                match self
                    .admission
                    .body(declared, settings.body_read_timeout)
                    .await
                {
                    None => Err(Denial::Busy),
                    Some(permit) => {
                        read_body(body, settings.max_body_bytes, settings.body_read_timeout)
                            .await
                            .map(|body| (permit, body))
                    }
                }
            }
        };
        // Held until the request is forwarded or answered: the body budget.
        let (_room, body) = match early {
            Ok(read) => read,
            Err(denial) => {
                if let Some(a) = audit.as_ref() {
                    a.refused(Some(&access), None, &denial).await;
                }
                let answer = self.refuse(&t.resource, "POST", None, sid, client, denial);
                return super::service::closing_unread(&parts, answer);
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
                let denial = Denial::Parse(e);
                if let Some(a) = audit {
                    a.refused(Some(&access), None, &denial).await;
                }
                return self.refuse(&t.resource, "POST", id.as_ref(), sid, client, denial);
            }
        };
        let era = headers::era(&parts.headers, Some(&payload));
        if let (headers::Era::Modern, Payload::Single(message)) = (era, &payload)
            && let Err(mismatch) = headers::check_mirrored(&parts.headers, message)
        {
            let denial = Denial::HeaderMismatch(mismatch);
            if let Some(a) = audit {
                a.refused(Some(&access), Some(&payload), &denial).await;
            }
            return self.refuse_payload(&t, Some(&payload), sid, client, denial);
        }
        let ownership = sid.map(|sid| self.sessions.check(sid, &access.key));
        if matches!(ownership, Some(Ownership::Foreign | Ownership::Unknown)) {
            // Another principal's session, or one the proxy did not see start (never adopted):
            // the upstream SDK's body for an unknown session, id null: no oracle (HTTP-13).
            if let Some(a) = audit {
                a.refused(Some(&access), Some(&payload), &Denial::SessionNotFound)
                    .await;
            }
            return self.refuse(
                &t.resource,
                payload.label(),
                None,
                sid,
                client,
                Denial::SessionNotFound,
            );
        }
        let mut verdicts: Vec<Verdict> = match access.caller() {
            Ok(caller) => payload
                .messages()
                .iter()
                .map(|m| authorize::authorize(m, &caller, &access, &self.sessions, sid))
                .collect(),
            Err(decision) => {
                let denial = Denial::Client(Box::new(decision));
                if let Some(a) = audit {
                    a.refused(Some(&access), Some(&payload), &denial).await;
                }
                return self.refuse_payload(&t, Some(&payload), sid, client, denial);
            }
        };
        if era == headers::Era::Modern {
            for (message, v) in payload.messages().iter().zip(&mut verdicts) {
                v.modern(message.method());
            }
        }
        let denied = verdicts.iter().any(|v| v.denial.is_some());
        let throttle = if denied {
            Throttle::Pass(Vec::new())
        } else {
            self.throttle(
                &t.active,
                &access.client,
                &access.key,
                &payload,
                &mut verdicts,
                &t.resource,
            )
            .await
        };
        let throttled = matches!(throttle, Throttle::Refuse(_));
        for (message, verdict) in payload.messages().iter().zip(&verdicts) {
            let forwarded_reason =
                if (denied || throttled) && verdict.denial.is_none() && verdict.reason == "allowed"
                {
                    "batch_not_forwarded"
                } else {
                    verdict.reason
                };
            let event = Event {
                method: message.label(),
                used: verdict.used.as_ref().map(|(c, n)| (*c, n.as_str())),
                client,
                reason: forwarded_reason,
                would: verdict.would,
                decided_by: Some(&verdict.decided_by),
                id: message.id(),
                session: sid,
                allowed: !denied && !throttled,
            };
            authorize::record(&self.shared, event);
            if let (Some(usage), Some(client), Some((capability, name))) =
                (&self.shared.usage, client, &verdict.used)
                && *capability != mcp_warden_policy::Capability::Tool
                && crate::quota::COUNTED.contains(&message.label())
            {
                // By the governing entry's pattern, as quotas count it.
                let entry = t.active.rules.entries(*capability).entry(name);
                usage.used(
                    client,
                    *capability,
                    entry.map_or("*", |e| e.pattern.as_str()),
                );
            }
        }
        let rate_headers = match throttle {
            Throttle::Refuse(response) => {
                if let Some(a) = audit {
                    a.throttled(&access, &payload, &verdicts, response.status().as_u16())
                        .await;
                }
                return response;
            }
            Throttle::Pass(headers) => headers,
        };
        if denied {
            if let Some(a) = audit {
                let answered: Vec<Option<(Denial, &str)>> = verdicts
                    .iter()
                    .map(|v| {
                        Some(match &v.denial {
                            Some(d) => (d.clone(), v.reason),
                            None => (Denial::BatchNotForwarded, "batch_not_forwarded"),
                        })
                    })
                    .collect();
                a.refused_each(&access, &payload, &verdicts, &answered)
                    .await;
            }
            let denials: Vec<(Option<Id>, Denial)> = payload
                .messages()
                .iter()
                .zip(verdicts)
                .map(|(m, v)| (request_id(m), v.denial.unwrap_or(Denial::BatchNotForwarded)))
                .collect();
            return deny::answer(&denials, payload.is_batch(), &t.resource);
        }
        // The request-phase records are durable before anything is forwarded.
        let calls = match audit {
            Some(a) => match a
                .forwarding(&access, &payload, &verdicts, &self.in_flight)
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
            .zip(&verdicts)
            .filter_map(|(m, v)| Some((request_id(m)?, v.expect)))
            .collect();
        let mut forward = headers::to_upstream(&parts.headers);
        let scope = super::event_id::scope(&access.key, sid);
        if let Err(denial) = self.event_ids.resume(&mut forward, &scope) {
            return self.refuse(&t.resource, payload.label(), None, sid, client, denial);
        }
        let replier = Replier::new(self.upstream.clone(), &t.upstream, &forward);
        let (response, took) = match self
            .upstream
            .send(Method::POST, &t.upstream, parts.uri.query(), forward, body)
            .await
        {
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
            used: match verdicts.as_slice() {
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

    /// Refuses a whole payload with one denial: each request id of a batch gets the error.
    fn refuse_payload(
        &self,
        t: &Target,
        payload: Option<&Payload>,
        session: Option<&str>,
        client: Option<&mcp_warden_policy::ObjectRef>,
        denial: Denial,
    ) -> Response<ProxyBody> {
        match payload {
            Some(p @ Payload::Batch(messages)) => {
                self.note(p.label(), None, session, client, &denial);
                let denials: Vec<(Option<Id>, Denial)> = messages
                    .iter()
                    .map(|m| (request_id(m), denial.clone()))
                    .collect();
                deny::answer(&denials, true, &t.resource)
            }
            Some(p) => self.refuse(
                &t.resource,
                p.label(),
                p.answer_id().as_ref(),
                session,
                client,
                denial,
            ),
            None => self.refuse(&t.resource, "POST", None, session, client, denial),
        }
    }
}

/// The id of a request (responses and notifications get no answer).
fn request_id(message: &Message) -> Option<Id> {
    match message {
        Message::Request { id, .. } => Some(id.clone()),
        _ => None,
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
