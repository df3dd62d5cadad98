//! The one contract between the operator and its sidecars: both binaries serialize and read
//! exactly these types, so neither side can drift from the other.
//!
//! ```text
//! operator ── GET /v1/watch (NDJSON) ──► sidecar      push::PushMessage per line
//!            {"type":"bundle","bundle":{…}} | {"type":"empty","reason":…} | {"type":"heartbeat",…}
//! sidecar  ── POST /v1/usage (JSON) ───► operator     usage::UsageReport
//!            clients' counts, runaway flags, tools seen, the bypass check
//!            {"type":"upstreamAuth","credentials":{…}}  push::UpstreamCredentials (issue 22)
//! upstream ── GET /v1/jwks ────────────► operator     keys::public_jwk of each published key
//! ```
//!
//! Both are versioned by addition: a field is added with a serde default, so an operator and its
//! sidecars one release apart still understand each other (docs/push-protocol.md).

#![forbid(unsafe_code)]

pub mod keys;
pub mod push;
pub mod usage;

pub use push::{PushMessage, UpstreamCredentials};
pub use usage::{BypassReport, ClientUsage, RunawayFlag, ToolsSeen, UsageReport};
