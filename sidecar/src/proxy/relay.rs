//! Upstream response ──► client: status and headers kept, sessions bookkept, bodies streamed, and
//! every 2xx body of a caller's exchange read (`filter`): answers only to the caller's own
//! requests, lists filtered, unreadable answers withheld.
//!
//! ```text
//! Response<Incoming> ──► 401 from upstream ──► 502 JSON-RPC error (AUTH-11)
//!   ├─ headers::to_client (hop-by-hop, WWW-Authenticate out; X-Accel-Buffering: no on SSE)
//!   ├─ sessions: initialize 2xx + Mcp-Session-Id ──► bind;  404 ──► forget;  DELETE 2xx ──► forget
//!   │            (an unknown session never reaches the upstream: service.rs, post.rs)
//!   └─ body: non-2xx, 202, 204, DELETE ──► passed through as it streams (clients read none)
//!            compressed, or neither JSON nor SSE ──► withheld (errors for pending answers)
//!            text/event-stream ──► sse::RewriteBody + filter::rewrite, event by event, ids
//!                                  sealed, revoke::Revocable; the server's own requests and
//!                                  notifications decided by server_requests::decide
//!            application/json  ──► collected (bounded), filter::rewrite, new Content-Length;
//!                                  pending answers missing ──► withheld
//! ```

use super::{
    BoxError, ProxyBody,
    admission::{AnswerRoom, Held},
    deny::{self, Denial},
    event_id::{self, EventIds},
    filter::{self, Answer, Expect, Inspector},
    gate::Access,
    headers,
    jsonrpc::Id,
    revoke::{self, Revocable},
    server_requests::{self, Fate, Replier},
    session::{Ownership, Sessions},
    sse::{Events, RewriteBody},
};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use mcp_warden_crds::ServerRequest;
use mcp_warden_policy::Capability;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

/// The most bytes of one JSON response or one SSE event the proxy holds to read it.
pub const MAX_INSPECTED_BYTES: usize = 64 * 1024 * 1024;

/// What the proxy knows about the request a response answers.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The caller (absent for CORS preflights).
    pub access: Option<Access>,
    /// Every request id of the payload, with what the proxy must read in its answer. An answer
    /// under any other id is dropped.
    pub answers: HashMap<Id, Option<Expect>>,
    /// The request's `Mcp-Session-Id`.
    pub session: Option<String>,
    /// A DELETE.
    pub delete: bool,
    /// A GET stream: answers to the session's earlier requests may arrive on it (a resumed
    /// stream replays them); they are read as the session remembers them.
    pub watch_session: bool,
    /// 2026-07-28 or later.
    pub modern: bool,
    /// The id for a proxy-made answer.
    pub answer_id: Option<Id>,
    /// The forwarded `tools/call`s awaiting their final audit records.
    pub audit: Option<Arc<super::audit::Calls>>,
    /// Where the tools the upstream lists are reported (operator mode).
    pub usage: Option<Arc<crate::usage::Usage>>,
    /// Seals the SSE event ids the client sees to its caller and session.
    pub event_ids: Option<Arc<EventIds>>,
    /// Ends a streaming answer when its caller is revoked.
    pub revoke: Option<revoke::Watch>,
    /// Answers the server's refused requests on the caller's session.
    pub replier: Option<Replier>,
    /// Records the server's requests (relayed or refused).
    pub server_audit: Option<super::audit::ServerRequests>,
    /// The room this answer may hold of the listener's answer budget (`None`: only
    /// [`MAX_INSPECTED_BYTES`] bounds it).
    pub room: Option<AnswerRoom>,
}

/// Turns the upstream's response into the client's.
pub async fn relay(
    response: Response<Incoming>,
    exchange: Exchange,
    sessions: &Arc<Sessions>,
    resource: &str,
) -> Response<ProxyBody> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        tracing::error!(
            "the upstream MCP server answered 401: it must not require the clients' tokens; \
             give the proxy its own upstream credentials"
        );
        return deny::answer(
            &[(exchange.answer_id, Denial::UpstreamUnauthorized)],
            false,
            resource,
        );
    }
    let (mut parts, body) = response.into_parts();
    let mut session = exchange.session.clone();
    if let (Some(sid), Some(_)) = (&exchange.session, &exchange.access)
        && (status == StatusCode::NOT_FOUND || (exchange.delete && status.is_success()))
    {
        sessions.forget(sid);
    }
    let initialize = exchange
        .answers
        .values()
        .any(|e| *e == Some(Expect::Initialize));
    if let (true, true, Some(access)) = (initialize, status.is_success(), &exchange.access)
        && let Some(sid) = headers::session_id(&parts.headers)
    {
        sessions.bind(sid, &access.key);
        session = Some(sid.to_owned());
    }
    if let Some(sid) = &session {
        sessions.remember(sid, &exchange.answers);
    }
    parts.headers = headers::to_client(&parts.headers);
    let Some(access) = exchange.access else {
        return Response::from_parts(parts, passthrough(body));
    };
    // Every 2xx body of a caller's exchange is read: an answer may only reach the client as the
    // answer to one of its own requests (a notification's 202 has no body to read).
    let watch = exchange.watch_session && session.is_some();
    // Clients read no body of a non-2xx, 202 (a notification or response accepted), 204, or a
    // DELETE's answer.
    let unread = exchange.delete
        || matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0");
    if !status.is_success() || unread {
        return Response::from_parts(parts, passthrough(body));
    }
    let mut inspector = ResponseInspector {
        sessions: sessions.clone(),
        answers: exchange.answers,
        settled: HashSet::new(),
        session,
        watch,
        access,
        modern: exchange.modern,
        audit: exchange.audit,
        usage: exchange.usage,
        replier: exchange.replier,
        server_audit: exchange.server_audit,
        listed: Vec::new(),
    };
    // Fail closed: what the proxy must read arrives uncompressed (it asks for identity) as JSON
    // or SSE; anything else is withheld as a JSON-RPC error (or a 502 when nothing is pending).
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
    let sse = headers::is_event_stream(&parts.headers);
    if encoded || !(sse || headers::is_json(&parts.headers)) {
        let why = if encoded {
            "it is compressed"
        } else {
            "it is neither JSON nor an event stream"
        };
        return withheld_answer(parts, &mut inspector, why, exchange.answer_id, resource);
    }
    let mut room = exchange.room;
    if sse {
        parts.headers.remove(header::CONTENT_LENGTH);
        let seal = exchange.event_ids.map(|ids| {
            let scope = event_id::scope(&inspector.access.key, inspector.session.as_deref());
            (ids, scope)
        });
        let events = SseEvents { inspector, seal };
        let limit = room.as_ref().map_or(MAX_INSPECTED_BYTES, AnswerRoom::limit);
        let body = RewriteBody::new(body, limit, events)
            .holding(room)
            .boxed_unsync();
        let body = match exchange.revoke {
            Some(watch) => Revocable::wrap(body, watch),
            None => body,
        };
        return Response::from_parts(parts, body);
    }
    let bytes = match read_answer(body, room.as_mut()).await {
        Ok(bytes) => bytes,
        Err(Unread::NoRoom(why)) => {
            return withheld_answer(parts, &mut inspector, &why, exchange.answer_id, resource);
        }
        Err(Unread::Failed(e)) => {
            return bad_gateway(
                &format!("reading the upstream response failed: {e}"),
                exchange.answer_id,
                resource,
            );
        }
    };
    let mut bytes = filter::rewrite(&bytes, &mut inspector).map_or(bytes, Bytes::from);
    // A JSON answer must answer every request the proxy must read: one carrying another id, or
    // none, is replaced by errors for those requests.
    let errors = filter::withhold_pending(&mut inspector, "it does not answer the request");
    if !errors.is_empty() {
        bytes = Bytes::from(errors);
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    // The room is held until the answer has gone out.
    let body = Full::new(bytes).map_err(|never| match never {});
    Response::from_parts(parts, Held::new(body, room).boxed_unsync())
}

/// Why a JSON answer was not read.
enum Unread {
    /// It does not fit the room answers may hold (now, or ever).
    NoRoom(String),
    /// The upstream's body failed.
    Failed(String),
}

/// Reads a JSON answer whole, holding room for it in `room` as it arrives.
async fn read_answer(
    mut body: Incoming,
    mut room: Option<&mut AnswerRoom>,
) -> Result<Bytes, Unread> {
    let limit = room.as_ref().map_or(MAX_INSPECTED_BYTES, |r| r.limit());
    let too_large = || {
        Unread::NoRoom(format!(
            "it is larger than the {limit} bytes the sidecar holds to inspect an answer"
        ))
    };
    let declared = body
        .size_hint()
        .exact()
        .and_then(|n| usize::try_from(n).ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut read = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(64 * 1024));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Unread::Failed(e.to_string()))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if read.len() + chunk.len() > limit {
            return Err(too_large());
        }
        if let Some(room) = room.as_deref_mut()
            && !room.hold_waiting(read.len() + chunk.len()).await
        {
            return Err(Unread::NoRoom(
                "the sidecar has no room to inspect it now (too many large answers at once)"
                    .to_owned(),
            ));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

/// The answer when the upstream's body cannot be inspected: JSON-RPC errors for what was
/// pending, or a 502.
fn withheld_answer(
    mut parts: http::response::Parts,
    inspector: &mut ResponseInspector,
    why: &str,
    id: Option<Id>,
    resource: &str,
) -> Response<ProxyBody> {
    let errors = filter::withhold_pending(inspector, why);
    if errors.is_empty() {
        return bad_gateway(
            &format!("the upstream's answer cannot be inspected: {why}"),
            id,
            resource,
        );
    }
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(errors.len()));
    Response::from_parts(parts, super::full(errors))
}

fn passthrough(body: Incoming) -> ProxyBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}

fn bad_gateway(why: &str, id: Option<Id>, resource: &str) -> Response<ProxyBody> {
    tracing::warn!("{why}");
    let error = super::upstream::UpstreamError::Unreachable(why.to_owned());
    deny::answer(&[(id, Denial::Upstream(error))], false, resource)
}

/// An SSE answer's events: data read by the inspector, ids sealed to the caller and session.
#[derive(Debug)]
struct SseEvents {
    inspector: ResponseInspector,
    seal: Option<(Arc<EventIds>, String)>,
}

impl Events for SseEvents {
    fn data(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        filter::rewrite(data, &mut self.inspector)
    }

    fn id(&mut self, id: &[u8]) -> Option<Vec<u8>> {
        let (ids, scope) = self.seal.as_ref()?;
        (!id.is_empty()).then(|| ids.seal(scope, id))
    }
}

/// Reads responses for one exchange.
#[derive(Debug)]
struct ResponseInspector {
    sessions: Arc<Sessions>,
    answers: HashMap<Id, Option<Expect>>,
    /// Expected answers that came (or were withheld).
    settled: HashSet<Id>,
    session: Option<String>,
    watch: bool,
    access: Access,
    modern: bool,
    audit: Option<Arc<super::audit::Calls>>,
    usage: Option<Arc<crate::usage::Usage>>,
    replier: Option<Replier>,
    server_audit: Option<super::audit::ServerRequests>,
    /// Tool names the upstream listed, reported to `usage` when the exchange ends.
    listed: Vec<String>,
}

impl Drop for ResponseInspector {
    fn drop(&mut self) {
        if let Some(sid) = &self.session
            && !self.settled.is_empty()
        {
            self.sessions.answered(sid, &self.settled);
        }
        if let Some(usage) = &self.usage
            && !self.listed.is_empty()
        {
            usage.listed(self.listed.iter().map(String::as_str));
        }
    }
}

impl Inspector for ResponseInspector {
    fn expect(&mut self, id: &Id) -> Answer {
        let known = match self.answers.get(id) {
            Some(expect) => {
                self.settled.insert(id.clone());
                Some(*expect)
            }
            None => self
                .session
                .as_deref()
                .filter(|_| self.watch)
                .and_then(|sid| self.sessions.recall(sid, id)),
        };
        match known {
            Some(Some(expect)) => Answer::Inspect(expect),
            Some(None) => Answer::Pass,
            None => Answer::Drop,
        }
    }

    fn list_filter(&mut self, capability: Capability) -> impl FnMut(&str) -> bool + '_ {
        let caller = self.access.caller();
        let report = self.usage.is_some() && capability == Capability::Tool;
        let mut listed = report.then_some(&mut self.listed);
        move |name| {
            if let Some(listed) = &mut listed {
                listed.push(name.to_owned());
            }
            caller
                .as_ref()
                .is_some_and(|c| c.may_list(capability, name))
        }
    }

    fn server_message(&mut self, method: &str, id: Option<&Id>, params: Option<&str>) -> bool {
        let caller = self.access.caller();
        // The caller's pending request the server's request arrived with (the least id, when
        // a batch has several pending).
        let tied_to = self
            .answers
            .keys()
            .filter(|id| !self.settled.contains(*id))
            .min_by_key(|id| id.as_json());
        let tied = tied_to.is_some();
        let fate = server_requests::decide(
            &self.access.active.rules,
            caller.as_ref(),
            method,
            params,
            tied,
        );
        let kind = ServerRequest::of(method);
        if let (Some(audit), Some(kind)) = (&self.server_audit, kind) {
            match &fate {
                Fate::Relay => audit.relayed(method, kind, id, tied_to),
                Fate::Refuse(why) => audit.refused(method, kind, id, why),
                Fate::Drop => {}
            }
        }
        match &fate {
            Fate::Relay => {
                if let Some(id) = id {
                    let session = self.session.as_deref();
                    self.sessions.relayed(session, &self.access.key, id);
                }
                return true;
            }
            Fate::Drop => tracing::debug!(
                target: "mcp_warden::decision",
                method, client = %self.access.client, "a resource update the caller may not read: dropped"
            ),
            Fate::Refuse(why) => {
                tracing::warn!(
                    target: "mcp_warden::decision",
                    method, client = %self.access.client, reason = %why, "server request refused"
                );
                if let (Some(id), Some(replier)) = (id, &self.replier) {
                    replier.refuse(id, why);
                }
            }
        }
        false
    }

    fn input_requests(&mut self, result: &str) -> Option<String> {
        let caller = self.access.caller();
        server_requests::input_requests(&self.access.active.rules, caller.as_ref(), result)
    }

    fn owns_task(&self, task_id: &str) -> bool {
        self.sessions.task(task_id, &self.access.key) == Ownership::Owned
    }

    fn created_task(&mut self, task_id: &str) {
        self.sessions.bind_task(task_id, &self.access.key);
        tracing::info!(
            target: "mcp_warden::task",
            method = "tasks/create", task = task_id, client = %self.access.client,
            session = self.session.as_deref(), "task bound to its creator"
        );
    }

    fn issued_request_state(&mut self, state: &str) {
        self.sessions.issue_request_state(state, &self.access.key);
    }

    fn initialized(&mut self, protocol_version: &str) {
        if let Some(sid) = &self.session {
            self.sessions.set_version(sid, protocol_version);
        }
    }

    fn modern(&self) -> bool {
        self.modern
    }

    fn answered(&mut self, id: &Id, result: Option<&str>, error: Option<&str>) {
        if let Some(calls) = &self.audit {
            calls.answered(id, result, error);
        }
    }

    fn unreadable(&mut self) -> Vec<(Id, Expect)> {
        let pending: Vec<(Id, Expect)> = self
            .answers
            .iter()
            .filter_map(|(id, e)| Some((id, (*e)?)))
            .filter(|(id, e)| e.must_read() && !self.settled.contains(*id))
            .map(|(id, e)| (id.clone(), e))
            .collect();
        for (id, expect) in &pending {
            self.settled.insert(id.clone());
            if *expect == Expect::CreateTask
                && let Some(calls) = &self.audit
            {
                calls.answered(id, None, Some(r#"{"code":-32603,"message":"withheld"}"#));
            }
        }
        pending
    }
}
