//! POST: one JSON-RPC payload (a message, or a 2025-03-26 batch) through the gate.
//!
//! ```text
//! body ≤ max_body_bytes (Content-Length, then counted; 413), within body_read_timeout (408)
//!   ──► authenticate (401, with the request id when the body is readable) ──► lifecycle (403/401)
//!   ──► Content-Type: application/json (415) ──► jsonrpc::parse (400 -32700 / -32600)
//!   ──► 2026-07-28: headers::check_mirrored (400 -32020)
//!   ──► Mcp-Session-Id of another principal (404 -32001)
//!   ──► authorize::authorize per message, one decision event each
//!         any denied ──► deny::answer for the whole payload (a batch is refused whole)
//!         all allowed ──► upstream, with the body bytes as received ──► relay
//! ```

use super::{
    ProxyBody,
    authorize::{self, Event, Verdict},
    deny::{self, Denial},
    filter::Expect,
    headers,
    jsonrpc::{self, Id, Message, Payload},
    relay::{Exchange, relay},
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
        let body = match read_body(
            &parts,
            body,
            settings.max_body_bytes,
            settings.body_read_timeout,
        )
        .await
        {
            Ok(body) => body,
            Err(denial) => return self.refuse(&t.resource, "POST", None, sid, None, denial),
        };
        let parsed = jsonrpc::parse(&body);
        let auth = &self.shared.auth;
        let access =
            match authorize::identify(&t.active, auth, settings, &parts.headers, parts.uri.query())
                .await
            {
                Ok(access) => access,
                Err(denial) => {
                    return self.refuse_payload(&t, parsed.as_ref().ok(), sid, None, denial);
                }
            };
        let client = Some(&access.client);
        if !headers::is_json(&parts.headers) {
            let label = parsed.as_ref().map_or("POST", |p| p.label());
            let id = parsed.as_ref().ok().and_then(Payload::answer_id);
            return self.refuse(
                &t.resource,
                label,
                id.as_ref(),
                sid,
                client,
                Denial::UnsupportedMediaType,
            );
        }
        let payload = match parsed {
            Ok(payload) => payload,
            Err(e) => {
                return self.refuse(
                    &t.resource,
                    "POST",
                    e.id().cloned().as_ref(),
                    sid,
                    client,
                    Denial::Parse(e),
                );
            }
        };
        let era = headers::era(&parts.headers, Some(&payload));
        if let (headers::Era::Modern, Payload::Single(message)) = (era, &payload)
            && let Err(mismatch) = headers::check_mirrored(&parts.headers, message)
        {
            return self.refuse_payload(
                &t,
                Some(&payload),
                sid,
                client,
                Denial::HeaderMismatch(mismatch),
            );
        }
        let ownership = sid.map(|sid| self.sessions.check(sid, &access.key));
        if ownership == Some(Ownership::Foreign) {
            // The upstream SDK's body for an unknown session, id null: no oracle (HTTP-13).
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
                .map(|m| authorize::authorize(m, &caller, &access, &self.sessions))
                .collect(),
            Err(decision) => {
                return self.refuse_payload(
                    &t,
                    Some(&payload),
                    sid,
                    client,
                    Denial::Client(Box::new(decision)),
                );
            }
        };
        let denied = verdicts.iter().any(|v| v.denial.is_some());
        let throttle = if denied {
            Throttle::Pass(Vec::new())
        } else {
            self.throttle(&t.active, &access.client, &payload, &mut verdicts)
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
                tool: verdict.tool.as_deref(),
                client,
                reason: forwarded_reason,
                would: verdict.would,
                decided_by: Some(&verdict.decided_by),
                id: message.id(),
                session: sid,
                allowed: !denied && !throttled,
            };
            authorize::record(&self.shared.metrics, event);
        }
        let rate_headers = match throttle {
            Throttle::Refuse(response) => return response,
            Throttle::Pass(headers) => headers,
        };
        if denied {
            let denials: Vec<(Option<Id>, Denial)> = payload
                .messages()
                .iter()
                .zip(verdicts)
                .map(|(m, v)| (request_id(m), v.denial.unwrap_or(Denial::BatchNotForwarded)))
                .collect();
            return deny::answer(&denials, payload.is_batch(), &t.resource);
        }
        let expects: HashMap<Id, Expect> = payload
            .messages()
            .iter()
            .zip(&verdicts)
            .filter_map(|(m, v)| Some((request_id(m)?, v.expect?)))
            .collect();
        let forward = headers::to_upstream(&parts.headers);
        let (response, took) = match self
            .upstream
            .send(Method::POST, &t.upstream, parts.uri.query(), forward, body)
            .await
        {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(method = payload.label(), error = %e, "upstream request failed");
                return deny::answer(
                    &[(payload.answer_id(), Denial::Upstream(e))],
                    false,
                    &t.resource,
                );
            }
        };
        self.shared
            .metrics
            .upstream(payload.label(), took.as_secs_f64());
        let exchange = Exchange {
            answer_id: payload.answer_id(),
            access: Some(access),
            expects,
            session,
            ownership,
            modern: era == headers::Era::Modern,
            ..Exchange::default()
        };
        let mut answer = relay(response, exchange, &self.sessions, &t.resource).await;
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

/// Reads a request body: refused above `limit` (by Content-Length, or while counting) and when
/// it does not arrive within `timeout`.
async fn read_body(
    parts: &Parts,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Denial> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Denial::TooLarge(limit));
    }
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
