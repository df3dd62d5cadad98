//! The MCP Streamable HTTP proxy: to MCP clients it is the MCP server and its OAuth resource
//! server; to the upstream it is a client without the callers' tokens.
//!
//! ```text
//! Shared.live: state::Live ◄── source/ (file + reload, standalone │ operator push stream)
//!   every request takes an Arc<Active> snapshot at its start; open streams re-check on installs
//! serve(listener, tls, Shared, shutdown)                                   server.rs
//!   │  tally flusher: tokenless refusals ──every 10 s──► aggregated audit records   tally.rs
//!   └─ Proxy::handle(request)                                              service.rs
//!        ├─ admission: a request slot (503 when full)                      admission.rs
//!        ├─ PRM (RFC 9728), 404 elsewhere, 503 until a config is live
//!        ├─ origin::HostPolicy        Origin/Host vs public URL + loopback → 403
//!        ├─ gate::identify           once, from the headers only: token → Principal →
//!        │                            McpClient lifecycle; refused callers' bodies are never
//!        │                            read (no valid token ──► tally, not one record each)
//!        ├─ POST                                                           post.rs
//!        │    ├─ Content-Type, Accept, Content-Length, body budget (admission), body read
//!        │    ├─ jsonrpc::parse       one reading only: keys once, no folded variants of
//!        │    │                       governed keys, typed governed values, safe ids (strict.rs)
//!        │    ├─ headers              era, 2026-07-28 mirrored headers (-32020)
//!        │    ├─ session::Sessions    Mcp-Session-Id: own session only (never adopted)
//!        │    ├─ gate::decide         pure: one Outcome per message (tools, resources, prompts,
//!        │    │                       completions via policy; responses, tasks via gate::Facts)
//!        │    ├─ throttle             quotas (quota::Quotas), MRTR retries by issued requestState
//!        │    ├─ gate::observe        decision log, metrics, usage: one event per message
//!        │    ├─ refuse               every refusal: audit record(s) + deny::answer
//!        │    └─ audit                request-phase records durable before forwarding
//!        ├─ GET, DELETE               identify, own session, Last-Event-ID unsealed
//!        ├─ upstream::Upstream        pooled hyper client (rustls), header timeout only
//!        └─ relay                     every 2xx answer read before the client sees it
//!             ├─ sse::RewriteBody     event by event; ids sealed to caller+session (event_id.rs)
//!             ├─ filter               answers only to the caller's own request ids; lists per
//!             │                       caller; unreadable answers withheld; task ids, versions
//!             ├─ server_requests      sampling/elicitation/roots as the McpTool allows, tied
//!             │                       to a pending request; resource updates if readable
//!             ├─ revoke::Revocable    open streams end when their caller is revoked
//!             └─ audit::Audited       final records; usage (operator mode) observes each call
//! ```

pub mod admission;
mod audit;
pub mod deny;
pub mod event_id;
pub mod filter;
pub mod gate;
pub mod headers;
pub mod jsonrpc;
pub mod methods;
pub mod origin;
mod post;
mod refuse;
pub mod relay;
pub mod revoke;
mod server;
pub mod server_requests;
pub mod service;
pub mod session;
pub mod sse;
pub mod tally;
mod throttle;
pub mod upstream;

pub use server::{HEADER_READ_TIMEOUT, serve};

use crate::{auth, metrics, settings, state};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use std::sync::Arc;

/// What every request of the MCP listener reads.
#[derive(Debug)]
pub struct Shared {
    /// The rules in force (hot reloaded).
    pub live: Arc<state::Live>,
    /// Bearer token verification.
    pub auth: auth::Authenticator,
    /// Command-line settings.
    pub settings: settings::Settings,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// Rate limits and quotas on tools/call.
    pub quotas: crate::quota::Quotas,
    /// The audit trail (`None`: no audit records).
    pub audit: Option<crate::audit::Auditor>,
    /// What is reported to the operator (`None`: standalone, nothing reported).
    pub usage: Option<Arc<crate::usage::Usage>>,
    /// What the upstream is told about each call (`McpTool.spec.upstreamAuth`).
    pub upstream_auth: Arc<crate::upstream_auth::UpstreamAuth>,
}

/// The client's address, a request extension set by `serve`.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Errors of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
