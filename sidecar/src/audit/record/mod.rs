//! `AuditEvent` → one OCSF 1.8.0 API Activity (class 6003) JSON line, and the record's hash chain.
//!
//! A record is built in two steps so that the serialized part of the pipeline stays small:
//!
//! ```text
//! caller task:  Recorder::prepare(event, redaction) → Prepared { head }       (redact, cap, serialize)
//! spool writer: seal(head, uid, sequence, instance, prev) → line + hash        (memcpy + SHA-256)
//! ```
//!
//! `head` is the whole record up to the inside of `metadata` (which is serialized last); `seal`
//! closes it with `metadata.uid`, `metadata.sequence` and `metadata.tags`:
//!
//! ```text
//! …,"metadata":{…,"correlation_uid":"…","uid":"<uuid>","sequence":N,"tags":[
//!   {"name":"mcp_warden.instance","value":"<instance>"},
//!   {"name":"mcp_warden.chain.prev","value":"sha256:<hash of record N-1>"},
//!   {"name":"mcp_warden.chain.hash","value":"sha256:<hash of this record>"}]}}
//! ```
//!
//! The hash of a record is SHA-256 over its line (without the newline) with the 64 hex digits of
//! its own `chain.hash` replaced by `0`s. It always sits at the very end of the line, so a verifier
//! finds it without re-serializing anything; `chain.prev` links it to the previous record.
//!
//! One concept per file:
//!
//! ```text
//! recorder.rs   Recorder::prepare: redaction, size cap (markers), → render
//! render.rs     AuditEvent → Head (the OCSF shapes of ocsf.rs) → open JSON head
//! fields.rs     the strings a record is made of: clipped text, uid, message, activity, severity
//! ocsf.rs       the OCSF 1.8.0 shapes we emit (field order = output order, `metadata` last)
//! checkpoint.rs CheckpointInfo → a checkpoint head (written by the spool writer)
//! chain.rs      seal (uid, sequence, instance, prev, own hash) and reading a sealed line back
//! ```

mod chain;
mod checkpoint;
mod fields;
mod ocsf;
mod recorder;
mod render;
#[cfg(test)]
mod tests;

pub use chain::{ChainFields, LineError, chain_fields, line_hashes, line_sequence, seal};
pub use checkpoint::{CheckpointInfo, checkpoint_head};
pub use recorder::Recorder;

use serde::Serialize;

/// OCSF schema version of every record.
pub const OCSF_VERSION: &str = "1.8.0";
/// API Activity.
pub const CLASS_UID: u32 = 6003;
/// Application Activity.
pub const CATEGORY_UID: u32 = 6;
/// Profiles whose attributes the records use (`metadata.profiles`).
pub const PROFILES: [&str; 4] = ["ai_operation", "trace", "security_control", "datetime"];
/// `metadata.event_code` of the request-phase record of a forwarded call.
pub const EVENT_REQUEST: &str = "mcp_warden.request";
/// `metadata.event_code` of the final record of a call or refused request.
pub const EVENT_OUTCOME: &str = "mcp_warden.outcome";
/// `metadata.event_code` of a spool checkpoint.
pub const EVENT_CHECKPOINT: &str = "mcp_warden.checkpoint";
/// The tag names written by `seal`.
pub const TAG_INSTANCE: &str = "mcp_warden.instance";
/// See [`TAG_INSTANCE`].
pub const TAG_PREV: &str = "mcp_warden.chain.prev";
/// See [`TAG_INSTANCE`].
pub const TAG_HASH: &str = "mcp_warden.chain.hash";
/// `prev` of the very first record of an instance.
pub const GENESIS: [u8; 32] = [0; 32];

/// An upper bound of what `seal` adds to a head (instance ids are at most 64 bytes).
pub const SEAL_MAX_BYTES: usize = 420;
/// Free-text strings (user agent, error messages, subjects …) are cut to this many bytes.
pub const MAX_TEXT_BYTES: usize = 512;
/// The smallest accepted `maxRecordBytes`.
pub const MIN_RECORD_BYTES: usize = 16 * 1024;

/// Product identification in `metadata.product`.
#[derive(Clone, Debug, Serialize)]
pub struct Product {
    /// `name`.
    pub name: String,
    /// `vendor_name`.
    pub vendor_name: String,
    /// `version`.
    pub version: String,
}

impl Default for Product {
    fn default() -> Self {
        Self {
            name: "mcp-warden".into(),
            vendor_name: "mcp-warden".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// What kind of record a head is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// The request phase of a forwarded call (written before forwarding).
    Request,
    /// The final record of a call, or the only record of a refused request.
    Outcome,
    /// A spool checkpoint.
    Checkpoint,
}

impl RecordKind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Outcome => "outcome",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// A rendered record waiting for its sequence number and chain link.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The record up to the inside of `metadata`.
    pub head: Vec<u8>,
    /// Request, outcome or checkpoint.
    pub kind: RecordKind,
    /// `time` of the record (epoch ms).
    pub time_ms: i64,
}
