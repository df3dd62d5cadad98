//! Where the configuration comes from. Each source compiles CRs with the same
//! `policy::compile` and installs the result into the one installed state (`state::Live`);
//! requests read only that state.
//!
//! ```text
//! standalone:  --config file/folder ──file::load_config──► Active ─┐
//!              reload: poll stamps (200 ms), content changed ──────┤
//!                                                                  ├─► state::Live::install
//! operator:    link (HTTPS, projected token, operator CA)          │   (atomic swap; open
//!                └─ operator: GET /v1/watch, wire::PushMessage ────┘    streams re-check)
//!                   bundle ─► compile ─► install (+ --state-dir copy for restarts)
//!                   empty  ─► Live::clear (deny all)
//! ```
//!
//! The same link carries the usage reports back (`usage.rs`).

pub mod file;
pub mod link;
pub mod operator;
pub mod reload;
