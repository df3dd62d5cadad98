//! The request pipeline of the MCP listener.
//!
//! ```text
//! request ──► live config? ───────────────────────────no──► 503 (everything)
//!   ├─ /.well-known/oauth-protected-resource[/<mcp path>] ──► PRM (unauthenticated, CORS *)
//!   ├─ not the MCP path ──► 404
//!   ├─ Origin/Host ──────────────────────────────────bad──► 403
//!   ├─ POST ──► post.rs: limits, authenticate, parse, check, authorize each message ──►
//!   │           denial (a batch whole) | upstream ──► relay
//!   ├─ GET, DELETE ──► authenticate ──► lifecycle ──► session owner ──► upstream ──► relay
//!   ├─ OPTIONS (CORS preflight, never carries credentials) ──► upstream ──► relay
//!   └─ anything else ──► 405
//! ```

use super::{
    ProxyBody, Shared,
    admission::Admission,
    deny::{self, Denial},
    event_id::{self, EventIds},
    full,
    gate::{self, Event},
    headers,
    origin::HostPolicy,
    relay::{Exchange, relay},
    revoke::Watch,
    server_requests::Replier,
    session::{Ownership, Sessions},
    tally::Tally,
    upstream::Upstream,
};
use crate::{auth::prm, state::Active};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

/// The root PRM path (RFC 9728).
pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct Proxy {
    pub(super) shared: Arc<Shared>,
    pub(super) upstream: Upstream,
    pub(super) sessions: Arc<Sessions>,
    /// Forwarded tool calls awaiting their final audit records.
    pub(super) in_flight: Arc<super::audit::InFlight>,
    /// Request and body budgets.
    pub(super) admission: Admission,
    /// Refusals of callers without a valid token, counted.
    pub(super) tally: Arc<Tally>,
    /// SSE event ids sealed to their caller and session.
    pub(super) event_ids: Arc<EventIds>,
}

/// Where requests go under one configuration: computed once when it is first used
/// (`state::Active::route`), not per request.
#[derive(Debug)]
pub struct Route {
    /// The canonical resource URI (`--public-url`, else the McpTool's `server.resource`).
    pub resource: String,
    /// Its path: the MCP endpoint, without a trailing slash.
    mcp_path: String,
    /// The path-inserted PRM path for it.
    prm_path: String,
    /// DNS-rebinding protection.
    hosts: HostPolicy,
    /// Where the MCP server is (`--upstream`, else the McpTool's `server.upstream`).
    pub upstream: String,
}

impl Route {
    /// The route for `rules` under the process's settings.
    pub fn new(rules: &mcp_warden_policy::RuleSet, settings: &crate::settings::Settings) -> Self {
        let resource = settings
            .public_url
            .clone()
            .unwrap_or_else(|| rules.resource.clone());
        let mcp_path = url::Url::parse(&resource).map_or_else(
            |_| String::new(),
            |u| u.path().trim_end_matches('/').to_owned(),
        );
        Self {
            prm_path: format!("{PRM_PATH}{mcp_path}"),
            hosts: HostPolicy::new(&resource, &settings.allowed_hosts),
            upstream: settings
                .upstream_override
                .clone()
                .unwrap_or_else(|| rules.upstream.clone()),
            resource,
            mcp_path,
        }
    }
}

/// Where one request goes, from the rules in force at its start.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) active: Arc<Active>,
    pub(super) resource: String,
    pub(super) upstream: String,
}

impl Proxy {
    /// A proxy with an upstream client and empty session tables.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            upstream: Upstream::new(shared.settings.upstream_timeout),
            admission: Admission::new(&shared.settings),
            tally: Arc::default(),
            event_ids: Arc::default(),
            shared,
            sessions: Arc::new(Sessions::new()),
            in_flight: Arc::default(),
        }
    }

    /// Answers one request. Never fails: every problem becomes an HTTP answer.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        // Held while the request is decided; a streaming answer's body does not hold it.
        let Some(_slot) = self.admission.request() else {
            self.shared
                .metrics
                .request(req.method().as_str(), "overloaded");
            return deny::answer(&[(None, Denial::Busy)], false, "");
        };
        let settings = &self.shared.settings;
        let Some(active) = self.shared.live.current() else {
            // Nobody can be identified without a configuration: counted like tokenless
            // refusals, so a flood during start-up cannot fill the spool.
            let (parts, _body) = req.into_parts();
            if self.shared.audit.is_some() {
                let source = parts.extensions.get::<super::PeerAddr>().map(|p| p.0.ip());
                self.tally.count(super::tally::NOT_READY, source);
            }
            self.shared
                .metrics
                .request(parts.method.as_str(), Denial::NotReady.reason());
            return super::refuse::closing_unread(
                &parts,
                deny::answer(&[(None, Denial::NotReady)], false, ""),
            );
        };
        let route = active.route(settings);
        let path = req.uri().path();
        if path == PRM_PATH || path == route.prm_path {
            return protected_resource_metadata(req.method(), &active, &route.resource);
        }
        if path.trim_end_matches('/') != route.mcp_path {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if let Err(e) = route.hosts.check(req.headers(), req.uri()) {
            let (parts, _body) = req.into_parts();
            let resource = route.resource.clone();
            return self
                .refuse_request(Some(active), &parts, &resource, None, Denial::Origin(e))
                .await;
        }
        let target = Target {
            resource: route.resource.clone(),
            upstream: route.upstream.clone(),
            active,
        };
        match req.method().clone() {
            Method::POST => self.post(target, req).await,
            m @ (Method::GET | Method::DELETE) => self.session_request(target, m, req).await,
            Method::OPTIONS => self.preflight(target, req).await,
            _ => {
                let (parts, _body) = req.into_parts();
                self.refuse_request(
                    Some(target.active),
                    &parts,
                    &target.resource,
                    None,
                    Denial::MethodNotAllowed,
                )
                .await
            }
        }
    }

    /// Who is calling, once per request, from the head alone (`gate::identify`); a refused
    /// caller is answered (`refuse_caller`) before its body is read.
    pub(super) async fn identify(
        &self,
        t: &Target,
        parts: &http::request::Parts,
    ) -> Result<gate::Access, Response<ProxyBody>> {
        let (shared, now) = (&self.shared, jiff::Timestamp::now());
        let head = (&parts.headers, parts.uri.query());
        match gate::identify(
            &t.active,
            &shared.auth,
            &shared.settings,
            head.0,
            head.1,
            now,
        )
        .await
        {
            Ok(access) => Ok(access),
            Err(refusal) => Err(self.refuse_caller(t, parts, refusal).await),
        }
    }

    /// GET (server stream, resumption) and DELETE (session end): authentication and session
    /// ownership only (ERR-01).
    async fn session_request(
        &self,
        t: Target,
        method: Method,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let (parts, _body) = req.into_parts();
        let label = method.as_str();
        let session = headers::session_id(&parts.headers).map(str::to_owned);
        let sid = session.as_deref();
        let access = match self.identify(&t, &parts).await {
            Ok(access) => access,
            Err(refused) => return refused,
        };
        let ownership = sid.map(|sid| self.sessions.check(sid, &access.key));
        if matches!(ownership, Some(Ownership::Foreign | Ownership::Unknown)) {
            return self
                .refuse_request(
                    Some(t.active.clone()),
                    &parts,
                    &t.resource,
                    Some(&access),
                    Denial::SessionNotFound,
                )
                .await;
        }
        let event = Event {
            method: label,
            used: None,
            client: Some(&access.client),
            reason: "allowed",
            would: None,
            decided_by: Some(&access.client),
            id: None,
            session: sid,
            allowed: true,
        };
        gate::record(&self.shared, event);
        let mut forward = headers::to_upstream(&parts.headers);
        let scope = event_id::scope(&access.key, sid);
        if let Err(denial) = self.event_ids.resume(&mut forward, &scope) {
            let active = Some(t.active.clone());
            return self
                .refuse_request(active, &parts, &t.resource, Some(&access), denial)
                .await;
        }
        let auth = &self.shared.upstream_auth;
        let (authed, _) = auth
            .forward(&access, [].into_iter(), &parts.headers, &mut forward)
            .await;
        let replier = Replier::new(self.upstream.clone(), &t.upstream, &forward);
        let sent = match authed {
            Ok(()) => {
                let query = parts.uri.query();
                (self.upstream)
                    .send(method.clone(), &t.upstream, query, forward, Bytes::new())
                    .await
            }
            Err(e) => Err(e),
        };
        let (response, took) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(method = label, error = %e, "upstream request failed");
                return deny::answer(&[(None, Denial::Upstream(e))], false, &t.resource);
            }
        };
        self.shared.metrics.upstream(label, took.as_secs_f64());
        let audit = self
            .shared
            .audit
            .as_ref()
            .map(|a| super::audit::Context::new(a.clone(), Some(t.active.clone()), &parts));
        let revoke = Watch {
            live: self.shared.live.clone(),
            principal: access.principal.clone(),
            used: None,
            on_revoke: match &audit {
                Some(a) => a.clone().revoked(access.clone()),
                None => Box::new(|_| {}),
            },
        };
        let exchange = Exchange {
            server_audit: audit.map(|a| a.server_requests(&access)),
            revoke: Some(revoke),
            access: Some(access),
            session,
            delete: method == Method::DELETE,
            watch_session: method == Method::GET,
            modern: headers::era(&parts.headers, None) == headers::Era::Modern,
            usage: self.shared.usage.clone(),
            event_ids: Some(self.event_ids.clone()),
            room: Some(self.admission.answer_room()),
            replier: Some(replier),
            ..Exchange::default()
        };
        relay(response, exchange, &self.sessions, &t.resource).await
    }

    /// CORS preflights carry no credentials and no MCP message: the upstream answers them.
    async fn preflight(&self, t: Target, req: Request<Incoming>) -> Response<ProxyBody> {
        let (parts, _body) = req.into_parts();
        let forward = headers::to_upstream(&parts.headers);
        match self
            .upstream
            .send(
                Method::OPTIONS,
                &t.upstream,
                parts.uri.query(),
                forward,
                Bytes::new(),
            )
            .await
        {
            Ok((response, _)) => {
                relay(response, Exchange::default(), &self.sessions, &t.resource).await
            }
            Err(e) => deny::answer(&[(None, Denial::Upstream(e))], false, &t.resource),
        }
    }
}

/// RFC 9728 metadata, for anyone (it is public), with CORS for browser-based clients.
fn protected_resource_metadata(
    method: &Method,
    active: &Active,
    resource: &str,
) -> Response<ProxyBody> {
    let mut response = match *method {
        Method::GET | Method::HEAD => {
            let mut r = Response::new(full(prm::document(&active.rules, resource).to_string()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Method::OPTIONS => {
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            return r;
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
