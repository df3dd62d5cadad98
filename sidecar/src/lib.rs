//! The mcp-warden sidecar: a transparent MCP Streamable HTTP proxy that governs one MCP server.
//!
//! ```text
//!  MCP client ──HTTP──► proxy::serve ─┬─ origin/host check (DNS rebinding)         → 403
//!                                     ├─ auth::Authenticator (JWT, JWKS, cache)   → 401 + PRM challenge
//!                                     ├─ policy::authenticate (McpClient lifecycle) → 403/401 denial
//!                                     ├─ per message: policy Caller::call_tool     → unknown tool / 403 step-up
//!                                     ├─ forward (no Authorization, hop-by-hop stripped) ─► upstream MCP server
//!                                     └─ response: JSON or SSE streamed event by event;
//!                                        tools/list filtered per caller
//!  config: --config file ─► config::load_config ─► state::Live (atomic swap, hot reload)
//!  admin:  /ready /live /metrics
//! ```

// `deny`, not `forbid`: `memory`, `sched` and `audit::pagecache` hold the audited exceptions (FFI
// calls to glibc: `mallopt`, `malloc_trim`, scheduling policy, page-cache hints).
#![deny(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bypass;
pub mod config;
pub mod link;
pub mod memory;
pub mod metrics;
pub mod proxy;
pub mod quota;
pub mod reload;
pub mod runtime;
pub mod sched;
pub mod settings;
pub mod state;
pub mod stream;
pub mod tls;
pub mod usage;
