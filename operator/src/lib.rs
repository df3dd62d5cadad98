//! The mcp-warden operator.
//!
//! ```text
//! CR + Pod watches (watch) or --source files ──► index::Index (Inventory + pods) ──► per-pod Bundle channels
//!                                                     │                                   │
//!            sidecars ◄── push::serve  GET /v1/watch (NDJSON: bundle / empty / heartbeat) ◄┘
//!            sidecars ──► POST /v1/usage ──► usage::UsageStore (24 h window)
//!                                                     │
//!   leader::run (Lease) ──leader?──► status_writer ◄──┴── status::compute (pure) + clock::Clock
//!                                         │ server-side apply, field manager mcp-warden-operator
//!                                         ▼
//!                             McpTool / McpClient / McpPolicy status
//!
//!   leader ──► netpol: one NetworkPolicy per McpTool (selector → only the sidecar's ports)
//!
//! kube-apiserver ──POST /mutate──► webhook ──► inject::inject (pure) ──► JSONPatch adding the sidecar
//!                        `inject -f` ──────────┘  (serve: the HTTPS connection loop push/webhook/admin share)
//! ```
//!
//! Every replica watches, indexes and serves the push API; only the Lease holder writes status
//! (Linkerd's index/status split). Callers of the push API are authenticated with TokenReview
//! (`tokenreview`): the projected token's pod must be the pod asked about.

#![forbid(unsafe_code)]

pub mod admin;
pub mod clock;
pub mod files;
pub mod index;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod netpol;
pub mod push;
pub mod review;
pub mod run;
pub mod serve;
pub mod status;
pub mod status_writer;
pub mod tls;
pub mod tokenreview;
pub mod tool_usage;
pub mod upstream_auth;
pub mod usage;
pub mod watch;
pub mod webhook;
