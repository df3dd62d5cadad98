//! The mcp-warden operator.
//!
//! ```text
//! CR watches (or --source files) ──► index::Index (Inventory + pods) ──► per-pod Bundle channels
//!                                                                            │
//!            sidecars ◄── push::serve  GET /v1/watch (NDJSON: bundle / empty / heartbeat) ◄┘
//! ```

#![forbid(unsafe_code)]

pub mod files;
pub mod index;
pub mod push;
