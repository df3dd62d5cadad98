//! The MCP Streamable HTTP proxy: to MCP clients it is the MCP server and its OAuth resource
//! server; to the upstream it is a client without the callers' tokens.
//!
//! ```text
//! serve(listener, tls, Shared, shutdown)                                   server.rs
//!   └─ Proxy::handle(request)                                              service.rs
//!        ├─ POST: body limits, parse, authorize each message                post.rs
//!        ├─ PRM (RFC 9728), 404 elsewhere, 503 until a config is live
//!        ├─ origin::HostPolicy        Origin/Host vs public URL + loopback → 403
//!        ├─ jsonrpc::parse            single | 2025-03-26 batch; -32700 / -32600
//!        ├─ headers                   era, 2026-07-28 mirrored headers (-32020), hop-by-hop,
//!        │                            no Authorization upstream
//!        ├─ authorize                 token → Principal → McpClient lifecycle → per message
//!        │                            (tools/call via policy, task ownership); decision log
//!        ├─ session::Sessions         Mcp-Session-Id and task ids bound to the principal
//!        ├─ deny                      every refusal → status + headers + JSON-RPC error
//!        ├─ upstream::Upstream        pooled hyper client (rustls), header timeout only
//!        └─ relay                     response back: JSON or SSE, streamed; read only when
//!             ├─ sse::RewriteBody     needed, event by event, byte for byte
//!             └─ filter               tools/list and tasks/list per caller, task ids, versions
//! ```

mod audit;
pub mod authorize;
pub mod deny;
pub mod filter;
pub mod headers;
pub mod jsonrpc;
pub mod origin;
mod post;
pub mod relay;
mod server;
pub mod service;
pub mod session;
pub mod sse;
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
