//! Upstream response ──► client: status and headers kept, sessions bookkept, bodies streamed, and
//! read only where the proxy must (`tools/list`, `tasks/list`, task creation, `initialize`).
//!
//! ```text
//! Response<Incoming> ──► 401 from upstream ──► 502 JSON-RPC error (AUTH-11)
//!   ├─ headers::to_client (hop-by-hop, WWW-Authenticate out; X-Accel-Buffering: no on SSE)
//!   ├─ sessions: initialize 2xx + Mcp-Session-Id ──► bind;  404 ──► forget;  DELETE 2xx ──► forget;
//!   │            an unknown session the upstream accepted ──► adopted by the presenter
//!   └─ body: nothing to read ──► passed through as it streams
//!            text/event-stream ──► sse::RewriteBody + filter::rewrite, event by event
//!            application/json  ──► collected (bounded), filter::rewrite, new Content-Length
//! ```

use super::{
    BoxError, ProxyBody,
    authorize::Access,
    deny::{self, Denial},
    filter::{self, Expect, Inspector},
    headers,
    jsonrpc::Id,
    session::{Ownership, Sessions},
    sse::RewriteBody,
};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use std::{collections::HashMap, sync::Arc};

/// The most bytes of one JSON response or one SSE event the proxy holds to read it.
pub const MAX_INSPECTED_BYTES: usize = 64 * 1024 * 1024;

/// What the proxy knows about the request a response answers.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The caller (absent for CORS preflights).
    pub access: Option<Access>,
    /// Responses to read, by request id.
    pub expects: HashMap<Id, Expect>,
    /// The request's `Mcp-Session-Id`.
    pub session: Option<String>,
    /// How the session stood when the request came.
    pub ownership: Option<Ownership>,
    /// A DELETE.
    pub delete: bool,
    /// A GET stream: responses to earlier `tools/list` requests of the session may arrive on it.
    pub watch_session: bool,
    /// 2026-07-28 or later.
    pub modern: bool,
    /// The id for a proxy-made answer.
    pub answer_id: Option<Id>,
    /// The forwarded `tools/call`s awaiting their final audit records.
    pub audit: Option<Arc<super::audit::Calls>>,
    /// Where the tools the upstream lists are reported (operator mode).
    pub usage: Option<Arc<crate::usage::Usage>>,
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
    if let (Some(sid), Some(access)) = (&exchange.session, &exchange.access) {
        if status == StatusCode::NOT_FOUND || (exchange.delete && status.is_success()) {
            sessions.forget(sid);
        } else if status.is_success() && exchange.ownership == Some(Ownership::Unknown) {
            tracing::info!(session = %sid, client = %access.client, "adopting a session the proxy did not see start");
            sessions.bind(sid, &access.key);
        }
    }
    let initialize = exchange.expects.values().any(|e| *e == Expect::Initialize);
    if let (true, true, Some(access)) = (initialize, status.is_success(), &exchange.access)
        && let Some(sid) = headers::session_id(&parts.headers)
    {
        sessions.bind(sid, &access.key);
        session = Some(sid.to_owned());
    }
    if let Some(sid) = &session {
        for (id, _) in exchange
            .expects
            .iter()
            .filter(|(_, e)| **e == Expect::ToolsList)
        {
            sessions.expect_list(sid, id);
        }
    }
    parts.headers = headers::to_client(&parts.headers);
    let Some(access) = exchange.access else {
        return Response::from_parts(parts, passthrough(body));
    };
    let watch = exchange.watch_session && session.is_some();
    if !status.is_success() || (exchange.expects.is_empty() && !watch) {
        return Response::from_parts(parts, passthrough(body));
    }
    let mut inspector = ResponseInspector {
        sessions: sessions.clone(),
        expects: exchange.expects,
        session,
        watch,
        access,
        modern: exchange.modern,
        audit: exchange.audit,
        usage: exchange.usage,
        listed: Vec::new(),
    };
    if headers::is_event_stream(&parts.headers) {
        parts.headers.remove(header::CONTENT_LENGTH);
        let body = RewriteBody::new(body, MAX_INSPECTED_BYTES, move |data: &[u8]| {
            filter::rewrite(data, &mut inspector)
        });
        return Response::from_parts(parts, body.boxed_unsync());
    }
    if !headers::is_json(&parts.headers) {
        return Response::from_parts(parts, passthrough(body));
    }
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e.as_bytes() != b"identity")
    {
        return bad_gateway(
            "a compressed JSON response cannot be filtered",
            exchange.answer_id,
            resource,
        );
    }
    let bytes = match Limited::new(body, MAX_INSPECTED_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return bad_gateway(
                &format!("reading the upstream response failed: {e}"),
                exchange.answer_id,
                resource,
            );
        }
    };
    let bytes = filter::rewrite(&bytes, &mut inspector).map_or(bytes, Bytes::from);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Response::from_parts(
        parts,
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

fn passthrough(body: Incoming) -> ProxyBody {
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}

fn bad_gateway(why: &str, id: Option<Id>, resource: &str) -> Response<ProxyBody> {
    tracing::warn!("{why}");
    let error = super::upstream::UpstreamError::Unreachable(why.to_owned());
    deny::answer(&[(id, Denial::Upstream(error))], false, resource)
}

/// Reads responses for one exchange.
#[derive(Debug)]
struct ResponseInspector {
    sessions: Arc<Sessions>,
    expects: HashMap<Id, Expect>,
    session: Option<String>,
    watch: bool,
    access: Access,
    modern: bool,
    audit: Option<Arc<super::audit::Calls>>,
    usage: Option<Arc<crate::usage::Usage>>,
    /// Tool names the upstream listed, reported to `usage` when the exchange ends.
    listed: Vec<String>,
}

impl Drop for ResponseInspector {
    fn drop(&mut self) {
        if let Some(usage) = &self.usage
            && !self.listed.is_empty()
        {
            usage.listed(self.listed.iter().map(String::as_str));
        }
    }
}

impl Inspector for ResponseInspector {
    fn expect(&mut self, id: &Id) -> Option<Expect> {
        if let Some(expect) = self.expects.get(id) {
            return Some(*expect);
        }
        let sid = self.session.as_deref().filter(|_| self.watch)?;
        self.sessions.is_list(sid, id).then_some(Expect::ToolsList)
    }

    fn tool_filter(&mut self) -> impl FnMut(&str) -> bool + '_ {
        let caller = self.access.caller().ok();
        let mut listed = self.usage.is_some().then_some(&mut self.listed);
        move |name| {
            if let Some(listed) = &mut listed {
                listed.push(name.to_owned());
            }
            caller.as_ref().is_some_and(|c| c.lists(name))
        }
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
}
