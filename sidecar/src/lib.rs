//! The mcp-warden sidecar: a transparent MCP Streamable HTTP proxy that governs one MCP server.
//!
//! ```text
//!  MCP client ──HTTP──► proxy::serve ─┬─ origin/host check (DNS rebinding)          → 403
//!                                     ├─ auth::Authenticator (JWT, JWKS, cache)    → 401 + PRM challenge
//!                                     ├─ policy::authenticate (McpClient lifecycle) → 403/401 denial
//!                                     ├─ per message: policy Caller::call(tool, resource, prompt)
//!                                     │     → hidden as unknown / 403 step-up; quotas; audit
//!                                     ├─ forward (no Authorization, hop-by-hop stripped) ─► upstream MCP server
//!                                     └─ response: JSON or SSE read event by event; lists filtered
//!                                        per caller; server requests decided (proxy::server_requests)
//!  config: source::{file, reload} (standalone) | source::{link, operator} (pushed)
//!          ─► state::Live (atomic swap; open streams re-check their caller)
//!  reports: usage (to the operator), bypass (is the upstream reachable around the sidecar?)
//!  upstream_auth: identity JWT, Secret credentials, RFC 8693 exchange on requests to the upstream
//!  admin:  /ready /live /metrics (/.well-known/jwks.json: the identity JWT's keys)
//! ```

// `deny`, not `forbid`: `memory`, `sched` and `audit::pagecache` hold the audited exceptions (FFI
// calls to glibc: `mallopt`, `malloc_trim`, scheduling policy, page-cache hints).
#![deny(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bypass;
pub mod memory;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod runtime;
pub mod sched;
pub mod settings;
pub mod source;
pub mod state;
pub mod tls;
pub mod upstream_auth;
pub mod usage;
