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

use super::event::{AuditEvent, DecisionMode, Outcome};
use super::redact::{HmacKey, Redaction};
use jiff::Timestamp;
use mcp_warden_crds::Risk;
use mcp_warden_policy::{Capability, ObjectRef};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{borrow::Cow, fmt, net::IpAddr};

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

const HASH_PREFIX: &[u8] = b"{\"name\":\"mcp_warden.chain.hash\",\"value\":\"sha256:";
const HASH_SUFFIX: &[u8] = b"\"}]}}";
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

/// Renders events: redaction key, sidecar-wide redaction, size cap and product.
#[derive(Clone, Debug)]
pub struct Recorder {
    key: HmacKey,
    always: Redaction,
    max_record_bytes: usize,
    product: Product,
}

impl Recorder {
    /// A recorder. `always` is applied to every call on top of the tool's own rules;
    /// `max_record_bytes` is raised to [`MIN_RECORD_BYTES`] if lower.
    pub fn new(key: HmacKey, always: Redaction, max_record_bytes: usize, product: Product) -> Self {
        Self {
            key,
            always,
            max_record_bytes: max_record_bytes.max(MIN_RECORD_BYTES),
            product,
        }
    }

    /// The size cap of one line, newline included.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// The product in `metadata.product`.
    pub fn product(&self) -> &Product {
        &self.product
    }

    /// The redaction key.
    pub fn key(&self) -> &HmacKey {
        &self.key
    }

    /// Renders one event with the tool's redaction rules.
    pub fn prepare(&self, ev: &AuditEvent, redaction: &Redaction) -> Prepared {
        let kind = if ev.outcome == Outcome::Forwarding {
            RecordKind::Request
        } else {
            RecordKind::Outcome
        };
        // Redact a copy of the arguments (only when a rule finds something) and of the result.
        let mut redacted = 0;
        const NULL: &Value = &Value::Null;
        let mut arguments = Cow::Borrowed(ev.arguments.as_ref().unwrap_or(NULL));
        if redaction.finds(&arguments) || self.always.finds(&arguments) {
            let owned = arguments.to_mut();
            redacted += redaction.apply(owned, &self.key);
            redacted += self.always.apply(owned, &self.key);
        }
        let mut result = match (&ev.response.result, redaction.capture_response()) {
            (Some(r), true) if kind == RecordKind::Outcome => {
                let mut r = r.clone();
                redacted += redaction.apply(&mut r, &self.key);
                redacted += self.always.apply(&mut r, &self.key);
                Some(r)
            }
            _ => None,
        };
        let budget = self.max_record_bytes - SEAL_MAX_BYTES;
        let mut truncated: Option<usize> = None;
        loop {
            let head = render(
                ev,
                kind,
                &self.product,
                &arguments,
                result.as_ref(),
                redacted,
                truncated,
            );
            if head.len() <= budget {
                return Prepared {
                    head,
                    kind,
                    time_ms: record_time(ev).as_millisecond(),
                };
            }
            let untruncated = *truncated.get_or_insert(head.len() + SEAL_MAX_BYTES);
            // Shrink the biggest payload first: captured result, then arguments.
            if let Some(r) = result.as_ref().filter(|r| !is_marker(r)) {
                result = Some(marker(r));
            } else if !is_marker(&arguments) && !arguments.is_null() {
                arguments = Cow::Owned(marker(&arguments));
            } else {
                // Both payloads are markers and the record is still too big: impossible with the
                // text caps and MIN_RECORD_BYTES, but never loop forever.
                let head = render(
                    ev,
                    kind,
                    &self.product,
                    &Value::Null,
                    None,
                    redacted,
                    Some(untruncated),
                );
                return Prepared {
                    head,
                    kind,
                    time_ms: record_time(ev).as_millisecond(),
                };
            }
        }
    }
}

/// The marker that replaces a payload too big for the record.
fn marker(v: &Value) -> Value {
    let mut buf = Vec::new();
    super::redact::canonical_json(v, &mut buf);
    let mut m = json!({
        "mcp_warden_truncated": true,
        "original_bytes": buf.len(),
        "sha256": hex::encode(Sha256::digest(&buf)),
    });
    if let Value::Object(map) = v {
        m["keys"] = Value::Array(
            map.keys()
                .take(64)
                .map(|k| Value::String(clip(k).into()))
                .collect(),
        );
    }
    m
}

fn is_marker(v: &Value) -> bool {
    v.get("mcp_warden_truncated") == Some(&Value::Bool(true))
}

fn record_time(ev: &AuditEvent) -> Timestamp {
    ev.ended.unwrap_or(ev.started)
}

/// Cuts free text to [`MAX_TEXT_BYTES`] on a char boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT_BYTES {
        return s;
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn clip_opt(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(clip)
}

/// `2026-11-25T02:47:00.123Z`.
struct Rfc3339Ms(Timestamp);

impl fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

/// A string field written straight from its `Display` into the record: no `String` per field.
#[derive(Clone, Copy)]
struct Shown<'a>(&'a dyn fmt::Display);

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// `resources[0].uid`: `<McpTool namespace>/<McpTool name>/<tool>`, or `<server>/<tool>`; for
/// a resource, prompt or server request the name has its kind in front (`resource:<uri>`,
/// `prompt:<name>`, `server_request:<kind>`), so that equal names of different kinds differ.
struct ToolUid<'a> {
    mcp_tool: Option<&'a ObjectRef>,
    server: &'a str,
    kind: Option<&'static str>,
    tool: &'a str,
}

impl fmt::Display for ToolUid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mcp_tool {
            Some(t) => write!(f, "{}/{}/", t.namespace, t.name)?,
            None => write!(f, "{}/", self.server)?,
        }
        match self.kind {
            Some(kind) => write!(f, "{kind}:{}", self.tool),
            None => f.write_str(self.tool),
        }
    }
}

/// `resources[0].type`, the kind in its uid, and the verb of `message`, by what is used.
fn used_kind(ev: &AuditEvent) -> (&'static str, Option<&'static str>, &'static str) {
    if ev.server_request.is_some() {
        return ("mcp.server_request", Some("server_request"), "was asked");
    }
    let capability = ev.tool.as_ref().map_or(Capability::Tool, |t| t.capability);
    match (capability, ev.method.as_str()) {
        (Capability::Tool, "tools/call") => ("mcp.tool", None, "called tool"),
        (Capability::Tool, _) => ("mcp.tool", None, "requested"),
        (Capability::Resource, "resources/subscribe") => {
            ("mcp.resource", Some("resource"), "subscribed to resource")
        }
        (Capability::Resource, "completion/complete") => (
            "mcp.resource",
            Some("resource"),
            "asked completions for resource",
        ),
        (Capability::Resource, _) => ("mcp.resource", Some("resource"), "read resource"),
        (Capability::Prompt, "completion/complete") => {
            ("mcp.prompt", Some("prompt"), "asked completions for prompt")
        }
        (Capability::Prompt, _) => ("mcp.prompt", Some("prompt"), "got prompt"),
    }
}

/// `message`: `<who> called tool <tool> on <server>: <reason>, <phase>` (`read resource <uri>`,
/// `got prompt <name>`, …; `was asked <method>` for a server request).
struct Message<'a> {
    who: &'a dyn fmt::Display,
    verb: &'static str,
    what: &'a str,
    server: &'a str,
    reason: &'a str,
    phase: &'static str,
}

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            who,
            verb,
            what,
            server,
            reason,
            phase,
        } = self;
        write!(f, "{who} {verb} {what} on {server}: {reason}, {phase}")
    }
}

/// The principal's scopes, each clipped.
struct Scopes<'a>(&'a [String]);

impl Serialize for Scopes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| clip(x)))
    }
}

impl Scopes<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---- OCSF shapes (only what we emit; field order = output order, `metadata` last) ----

/// One record before its seal. `D` is the request's `api.request.data`, `U` the `unmapped`
/// object: typed for calls (no intermediate `Value` per record), `Value` for checkpoints.
#[derive(Serialize)]
struct Head<'a, D = Value, U = Value> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'a str,
    type_uid: u32,
    type_name: &'static str,
    time: i64,
    time_dt: Shown<'a>,
    start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    /// OCSF `count`: the requests an aggregated record stands for.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    severity_id: u32,
    severity: &'static str,
    status_id: u32,
    status: &'static str,
    status_code: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_detail: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disposition_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disposition: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk_level_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk_level: Option<&'static str>,
    message: Shown<'a>,
    actor: Actor<'a>,
    src_endpoint: Endpoint<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_endpoint: Option<Endpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_request: Option<HttpRequest<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_response: Option<HttpResponse>,
    api: Api<'a, D>,
    resources: [Resource<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Policy<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_context: Option<MessageContext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<Trace<'a>>,
    unmapped: U,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Actor<'a> {
    user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_name: Option<Shown<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<Idp<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizations: Option<[Authorization<'a>; 1]>,
}

#[derive(Serialize)]
struct User<'a> {
    uid: &'a str,
    name: Shown<'a>,
    type_id: u32,
    #[serde(rename = "type")]
    type_: &'static str,
}

#[derive(Serialize)]
struct Idp<'a> {
    uid: &'a str,
    issuer: &'a str,
}

#[derive(Serialize)]
struct Session<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_uid: Option<&'a str>,
}

#[derive(Serialize)]
struct Authorization<'a> {
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<Policy<'a>>,
}

#[derive(Serialize, Clone, Copy)]
struct Policy<'a> {
    name: Shown<'a>,
    uid: Shown<'a>,
    #[serde(rename = "type")]
    type_: &'static str,
    is_applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    svc_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    /// Set when nothing else is known (the schema needs one identifying field).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Url<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    body_length: u64,
}

#[derive(Serialize)]
struct Url<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url_string: Option<&'a str>,
}

#[derive(Serialize)]
struct HttpResponse {
    code: u16,
    body_length: u64,
}

#[derive(Serialize)]
struct Api<'a, D> {
    operation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    service: Service<'a>,
    request: ApiRequest<'a, D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ApiResponse<'a>>,
}

#[derive(Serialize)]
struct Service<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct ApiRequest<'a, D> {
    uid: &'a str,
    data: D,
}

/// `api.request.data` of a call (fields in key order, as a JSON object would sort them).
#[derive(Serialize)]
struct CallData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a Value>,
    name: &'a str,
}

/// `unmapped`: the product's own fields.
#[derive(Serialize)]
struct Unmapped<T> {
    mcp_warden: T,
}

/// `unmapped.mcp_warden` of a call (fields in key order).
#[derive(Serialize)]
struct CallExt<'a> {
    bytes_in: u64,
    bytes_out: u64,
    call_uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<ClientExt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_software: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<DecisionExt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mcp_tool: Option<Shown<'a>>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress_events: Option<u32>,
    redacted_values: usize,
    #[serde(skip_serializing_if = "Scopes::is_empty")]
    scopes: Scopes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_request: Option<ServerRequestExt<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_auth: Option<&'a crate::upstream_auth::Applied>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
}

/// `unmapped.mcp_warden.server_request`: the kind, and the client's request it came with.
#[derive(Serialize)]
struct ServerRequestExt<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tied_to: Option<&'a str>,
}

#[derive(Serialize)]
struct ClientExt<'a> {
    name: &'a str,
    namespace: &'a str,
    owner: &'a str,
}

#[derive(Serialize)]
struct DecisionExt<'a> {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    decided_by: Option<Shown<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    mode: &'static str,
    reason: &'a str,
}

/// `api.response.data` of a call.
#[derive(Serialize)]
struct ResultData<'a> {
    #[serde(rename = "isError", skip_serializing_if = "Option::is_none")]
    is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
}

#[derive(Serialize)]
struct ApiResponse<'a> {
    code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
    data: ResultData<'a>,
}

#[derive(Serialize)]
struct Resource<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    type_: &'static str,
    uid: Shown<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    criticality: Option<&'static str>,
}

#[derive(Serialize)]
struct MessageContext<'a> {
    uid: &'a str,
    name: &'static str,
    ai_role_id: u32,
    ai_role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<Named<'a>>,
    service: Service<'a>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: Shown<'a>,
}

#[derive(Serialize)]
struct Trace<'a> {
    uid: &'a str,
    span: Span<'a>,
}

#[derive(Serialize)]
struct Span<'a> {
    uid: &'a str,
    start_time: i64,
    end_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    operation: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    product: &'a Product,
    profiles: [&'static str; 4],
    log_name: &'static str,
    event_code: &'static str,
    logged_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    untruncated_size: Option<usize>,
    correlation_uid: &'a str,
}

/// Parses `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) into trace and span ids.
fn parse_traceparent(tp: &str) -> Option<(&str, &str)> {
    let mut it = tp.trim().split('-');
    let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2)).then_some((trace, span))
}

fn risk_level(r: Risk) -> (u32, &'static str) {
    match r {
        Risk::Low => (1, "Low"),
        Risk::Medium => (2, "Medium"),
        Risk::High => (3, "High"),
        Risk::Critical => (4, "Critical"),
    }
}

fn severity(id: u32) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        4 => "High",
        5 => "Critical",
        _ => "Unknown",
    }
}

/// `activity_id`, `activity_name` and `type_name` of a method.
fn activity(method: &str) -> (u32, &'static str, &'static str) {
    match method {
        "tools/call" => (99, "Call", "API Activity: Call"),
        "" => (0, "Unknown", "API Activity: Unknown"),
        m if m.ends_with("/list") || m.ends_with("/get") || m.ends_with("/read") => {
            (2, "Read", "API Activity: Read")
        }
        _ => (99, "Other", "API Activity: Other"),
    }
}

fn render(
    ev: &AuditEvent,
    kind: RecordKind,
    product: &Product,
    arguments: &Value,
    result: Option<&Value>,
    redacted: usize,
    truncated: Option<usize>,
) -> Vec<u8> {
    let time = record_time(ev);
    let time_ms = time.as_millisecond();
    let start_ms = ev.started.as_millisecond();
    let end_ms = ev.ended.map(|t| t.as_millisecond());
    let duration = end_ms.map(|e| (e - start_ms).max(0));
    let method = if ev.method.is_empty() {
        "unknown"
    } else {
        ev.method.as_str()
    };
    let (activity_id, activity_name, type_name) = activity(&ev.method);
    let trace = ev
        .transport
        .traceparent
        .as_deref()
        .and_then(parse_traceparent);
    let correlation = ev
        .transport
        .session_id
        .as_deref()
        .map(clip)
        .or(trace.map(|t| t.0))
        .unwrap_or(&ev.call_uid);
    let tool_name = ev.tool.as_ref().map_or("unknown", |t| clip(&t.name));
    // What `resources[0]` names: the tool, resource or prompt, or the kind of a server request.
    let used_name = match &ev.server_request {
        Some(r) => clip(&r.kind),
        None => tool_name,
    };
    let server = if ev.server.name.is_empty() {
        "unknown"
    } else {
        clip(&ev.server.name)
    };
    let principal = ev.principal.as_ref();
    let client_name = ev.client.as_ref().map(|c| c.object.ns_name());
    let subject = principal.and_then(|p| clip_opt(&p.subject));
    let client_id = principal.and_then(|p| clip_opt(&p.client_id));
    let user_uid = subject.or(client_id).unwrap_or("anonymous");
    let user_name: &dyn fmt::Display = match (&client_name, &client_id) {
        (Some(c), _) => c,
        (None, Some(id)) => id,
        (None, None) => &user_uid,
    };
    let anonymous = principal.is_none();
    let decision = ev.decision.as_ref();
    let allowed = decision.is_none_or(|d| d.allowed) && ev.outcome != Outcome::Denied;
    let would_deny =
        decision.is_some_and(|d| d.mode == DecisionMode::Audit && d.reason == "would_deny");
    let risk = ev.tool.as_ref().and_then(|t| t.risk);
    let resp = &ev.response;

    // Status.
    let (status_id, status, status_code, status_detail): (
        u32,
        &str,
        Cow<'_, str>,
        Option<Cow<'_, str>>,
    ) = match ev.outcome {
        Outcome::Forwarding => (0, "Unknown", "pending".into(), None),
        Outcome::Answered => match (&resp.jsonrpc_error, resp.is_error) {
            (Some(e), _) => (
                2,
                "Failure",
                e.code.to_string().into(),
                Some(clip(&e.message).into()),
            ),
            (None, Some(true)) => (
                2,
                "Failure",
                "0".into(),
                Some("the tool result has isError: true".into()),
            ),
            (None, _) => (1, "Success", "0".into(), None),
        },
        Outcome::Denied => (
            2,
            "Failure",
            resp.jsonrpc_error
                .as_ref()
                .map(|e| e.code.to_string().into())
                .or(resp.http_status.map(|s| s.to_string().into()))
                .unwrap_or("denied".into()),
            Some(decision.map_or("unauthenticated".into(), |d| d.reason.as_str().into())),
        ),
        Outcome::Relayed => (1, "Success", "0".into(), None),
        other => (2, "Failure", other.as_str().into(), None),
    };
    let (disposition_id, disposition, action_id, action) = if !allowed {
        if anonymous && resp.http_status == Some(401) {
            (26, "Unauthorized", 2, "Denied")
        } else {
            (2, "Blocked", 2, "Denied")
        }
    } else if would_deny {
        (15, "Detected", 3, "Observed")
    } else {
        (1, "Allowed", 1, "Allowed")
    };
    let severity_id = if !allowed {
        if matches!(risk, Some(Risk::High | Risk::Critical)) {
            3
        } else {
            2
        }
    } else if would_deny {
        2
    } else {
        1
    };
    let decision_word = if !allowed {
        "deny"
    } else if would_deny {
        "would_deny"
    } else {
        "allow"
    };
    let decided_by = decision.and_then(|d| d.decided_by.as_ref().map(|o| (d, o, o.ns_name())));
    let policy = decided_by.as_ref().map(|(d, o, name)| Policy {
        name: Shown(name),
        uid: Shown(*o),
        type_: o.kind.as_str(),
        is_applied: d.mode == DecisionMode::Enforce,
        desc: Some(&d.reason),
    });
    let authorizations = (decision.is_some() || !allowed).then_some([Authorization {
        decision: decision_word,
        policy,
    }]);

    let (resource_type, uid_kind, verb) = used_kind(ev);
    let message = Message {
        who: user_name,
        verb,
        what: if ev.tool.is_some() || ev.method == "tools/call" {
            tool_name
        } else {
            method
        },
        server,
        reason: decision.map_or(
            if allowed {
                "allowed"
            } else {
                "unauthenticated"
            },
            |d| d.reason.as_str(),
        ),
        phase: match ev.outcome {
            Outcome::Forwarding => "forwarding",
            Outcome::Relayed => "relayed",
            Outcome::Answered if status_id == 1 => "ok",
            Outcome::Answered => "error",
            other => other.as_str(),
        },
    };

    // The request-phase record is compact: it proves who called which tool with what, and the
    // decision, before the call is forwarded. Transport details (HTTP request, upstream endpoint,
    // message context) and the top-level policy (the same as `actor.authorizations[0].policy`)
    // are in the call's final record only.
    let full = kind != RecordKind::Request;
    let request_data = CallData {
        arguments: (!arguments.is_null()).then_some(arguments),
        name: used_name,
    };
    let response = (kind == RecordKind::Outcome).then(|| {
        let data = ResultData {
            is_error: resp.is_error,
            result,
        };
        ApiResponse {
            code: resp
                .jsonrpc_error
                .as_ref()
                .map(|e| e.code)
                .or(if ev.outcome == Outcome::Denied {
                    resp.http_status.map(i64::from)
                } else {
                    None
                })
                .unwrap_or(0),
            message: Some(match ev.outcome {
                Outcome::Answered if status_id == 1 => "ok",
                other => other.as_str(),
            }),
            error: resp.jsonrpc_error.as_ref().map(|e| e.code.to_string()),
            error_message: resp.jsonrpc_error.as_ref().map(|e| clip(&e.message)),
            data,
        }
    });

    let mcp_tool = ev.tool.as_ref().and_then(|t| t.mcp_tool.as_ref());
    let unmapped = Unmapped {
        mcp_warden: CallExt {
            bytes_in: ev.transport.bytes_in,
            bytes_out: ev.transport.bytes_out,
            call_uid: &ev.call_uid,
            client: ev.client.as_ref().map(|c| ClientExt {
                name: &c.object.name,
                namespace: &c.object.namespace,
                owner: clip(&c.owner),
            }),
            client_software: ev.transport.client_software.as_deref().map(clip),
            decision: decision.map(|d| DecisionExt {
                allowed: d.allowed,
                decided_by: d.decided_by.as_ref().map(|o| Shown(o)),
                detail: d.detail.as_deref().map(clip),
                mode: match d.mode {
                    DecisionMode::Enforce => "enforce",
                    DecisionMode::Audit => "audit",
                },
                reason: &d.reason,
            }),
            mcp_tool: mcp_tool.map(|o| Shown(o)),
            outcome: ev.outcome.as_str(),
            progress_events: (resp.progress_events > 0).then_some(resp.progress_events),
            redacted_values: redacted,
            scopes: Scopes(principal.map_or(&[], |p| &p.scopes)),
            server_request: ev.server_request.as_ref().map(|r| ServerRequestExt {
                kind: clip(&r.kind),
                tied_to: clip_opt(&r.tied_to),
            }),
            task_id: resp.task_id.as_deref().map(clip),
            traceparent: ev.transport.traceparent.as_deref().map(clip),
            upstream_auth: ev.upstream_auth.as_ref(),
            upstream_status: resp.upstream_status,
        },
    };

    let resource_uid = ToolUid {
        mcp_tool,
        server,
        kind: uid_kind,
        tool: used_name,
    };
    let time_dt = Rfc3339Ms(time);
    let software = ev.transport.client_software.as_deref().map(clip);
    let head = Head {
        class_uid: CLASS_UID,
        class_name: "API Activity",
        category_uid: CATEGORY_UID,
        category_name: "Application Activity",
        activity_id,
        activity_name,
        type_uid: CLASS_UID * 100 + activity_id,
        type_name,
        time: time_ms,
        time_dt: Shown(&time_dt),
        start_time: start_ms,
        end_time: end_ms,
        duration,
        count: ev.count,
        severity_id,
        severity: severity(severity_id),
        status_id,
        status,
        status_code,
        status_detail,
        disposition_id: Some(disposition_id),
        disposition: Some(disposition),
        action_id: Some(action_id),
        action: Some(action),
        risk_level_id: risk.map(|r| risk_level(r).0),
        risk_level: risk.map(|r| risk_level(r).1),
        message: Shown(&message),
        actor: Actor {
            user: User {
                uid: user_uid,
                name: Shown(user_name),
                type_id: if anonymous { 0 } else { 4 },
                type_: if anonymous { "Unknown" } else { "Service" },
            },
            app_name: client_name.as_ref().map(|c| Shown(c)),
            app_uid: client_id,
            idp: principal.map(|p| Idp {
                uid: clip(&p.issuer),
                issuer: clip(&p.issuer),
            }),
            session: (principal.is_some() || ev.transport.session_id.is_some()).then(|| Session {
                uid: ev.transport.session_id.as_deref().map(clip),
                issuer: principal.map(|p| clip(&p.issuer)),
                credential_uid: principal.and_then(|p| clip_opt(&p.token_id)),
            }),
            authorizations,
        },
        src_endpoint: Endpoint {
            ip: ev.transport.src.map(|a| a.ip().to_canonical()),
            port: ev.transport.src.map(|a| a.port()),
            name: ev.transport.src.is_none().then_some("unknown"),
            ..Endpoint::default()
        },
        dst_endpoint: full.then(|| Endpoint {
            ip: ev.server.upstream.map(|a| a.ip().to_canonical()),
            port: ev.server.upstream.map(|a| a.port()),
            svc_name: Some(server),
            hostname: None,
            name: None,
        }),
        http_request: full.then(|| HttpRequest {
            uid: &ev.call_uid,
            http_method: ev.transport.http_method.as_deref().map(clip),
            url: (ev.transport.path.is_some() || ev.server.resource.is_some()).then(|| Url {
                path: ev.transport.path.as_deref().map(clip),
                url_string: ev.server.resource.as_deref().map(clip),
            }),
            user_agent: ev.transport.user_agent.as_deref().map(clip),
            body_length: ev.transport.bytes_in,
        }),
        http_response: resp.http_status.map(|code| HttpResponse {
            code,
            body_length: ev.transport.bytes_out,
        }),
        api: Api {
            operation: clip(method),
            version: ev.transport.protocol_version.as_deref().map(clip),
            service: Service { name: server },
            request: ApiRequest {
                uid: ev.jsonrpc_id.as_deref().map_or("none", clip),
                data: request_data,
            },
            response,
        },
        resources: [Resource {
            name: used_name,
            type_: resource_type,
            uid: Shown(&resource_uid),
            criticality: risk.map(|r| risk_level(r).1),
        }],
        policy: policy.filter(|_| full),
        message_context: full.then_some(MessageContext {
            uid: correlation,
            name: "mcp",
            ai_role_id: 3,
            ai_role: "Tool",
            application: match (&software, &client_name) {
                (Some(s), _) => Some(Named { name: Shown(s) }),
                (None, Some(c)) => Some(Named { name: Shown(c) }),
                (None, None) => None,
            },
            service: Service { name: server },
        }),
        trace: trace.map(|(t, s)| Trace {
            uid: t,
            span: Span {
                uid: s,
                start_time: start_ms,
                end_time: end_ms.unwrap_or(start_ms),
                duration,
                operation: clip(method),
            },
        }),
        unmapped,
        metadata: Metadata {
            version: OCSF_VERSION,
            product,
            profiles: PROFILES,
            log_name: "mcp-warden-audit",
            event_code: match kind {
                RecordKind::Request => EVENT_REQUEST,
                _ => EVENT_OUTCOME,
            },
            logged_time: Timestamp::now().as_millisecond(),
            is_truncated: truncated.map(|_| true),
            untruncated_size: truncated,
            correlation_uid: correlation,
        },
    };
    open_head(&head)
}

/// Serializes a head and drops the two closing braces (of `metadata` and of the record).
fn open_head(head: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(&mut out, head).expect("records serialize");
    debug_assert!(out.ends_with(b"}}"));
    out.truncate(out.len() - 2);
    out
}

/// What a checkpoint record states.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckpointInfo {
    /// Why it was written: `interval`, `startup`, `drop` or `shutdown`.
    pub reason: &'static str,
    /// The instance.
    pub instance: String,
    /// Records written since the previous checkpoint (this one excluded).
    pub records_since_last: u64,
    /// The oldest sequence still in the spool.
    pub first_retained_sequence: u64,
    /// The last sequence before this checkpoint.
    pub last_sequence: u64,
    /// Spool size in bytes.
    pub spool_bytes: u64,
    /// Records dropped (drop-oldest) since the spool was created.
    pub dropped_total: u64,
    /// Every sequence range dropped since the spool was opened (inclusive, merged, the last
    /// 1024 ranges), so the latest checkpoint that reaches a sink declares all of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_ranges: Vec<(u64, u64)>,
    /// Bytes cut from the spool's tail on startup (a torn, never-acknowledged write).
    #[serde(skip_serializing_if = "is_zero")]
    pub recovered_truncated_bytes: u64,
    /// Acknowledged sequence per sink.
    pub sinks: std::collections::BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Renders a checkpoint record (written by the spool writer itself).
pub fn checkpoint_head(info: &CheckpointInfo, product: &Product, now: Timestamp) -> Prepared {
    let ms = now.as_millisecond();
    let dropped = info.dropped_total > 0;
    let message = if dropped {
        format!(
            "audit spool checkpoint ({}): {} records dropped by policy dropOldest so far",
            info.reason, info.dropped_total
        )
    } else {
        format!("audit spool checkpoint ({})", info.reason)
    };
    let head = Head {
        class_uid: CLASS_UID,
        class_name: "API Activity",
        category_uid: CATEGORY_UID,
        category_name: "Application Activity",
        activity_id: 99,
        activity_name: "Checkpoint",
        type_uid: CLASS_UID * 100 + 99,
        type_name: "API Activity: Checkpoint",
        time: ms,
        time_dt: Shown(&Rfc3339Ms(now)),
        start_time: ms,
        end_time: None,
        duration: None,
        count: None,
        severity_id: if info.reason == "drop" { 4 } else { 1 },
        severity: severity(if info.reason == "drop" { 4 } else { 1 }),
        status_id: 1,
        status: "Success",
        status_code: "0".into(),
        status_detail: None,
        disposition_id: None,
        disposition: None,
        action_id: None,
        action: None,
        risk_level_id: None,
        risk_level: None,
        message: Shown(&message),
        actor: Actor {
            user: User {
                uid: "mcp-warden",
                name: Shown(&"mcp-warden"),
                type_id: 3,
                type_: "System",
            },
            app_name: Some(Shown(&product.name)),
            app_uid: None,
            idp: None,
            session: None,
            authorizations: None,
        },
        src_endpoint: Endpoint {
            hostname: std::env::var("HOSTNAME").ok().map(|h| clip(&h).to_owned()),
            name: Some("mcp-warden"),
            ..Endpoint::default()
        },
        dst_endpoint: None,
        http_request: None,
        http_response: None,
        api: Api {
            operation: "mcp_warden/checkpoint",
            version: None,
            service: Service {
                name: "mcp-warden-audit",
            },
            request: ApiRequest {
                uid: "checkpoint",
                data: serde_json::to_value(info).expect("checkpoint info serializes"),
            },
            response: None,
        },
        resources: [Resource {
            name: "audit-spool",
            type_: "mcp_warden.spool",
            uid: Shown(&info.instance),
            criticality: None,
        }],
        policy: None,
        message_context: Some(MessageContext {
            uid: &info.instance,
            name: "mcp",
            ai_role_id: 0,
            ai_role: "Unknown",
            application: None,
            service: Service {
                name: "mcp-warden-audit",
            },
        }),
        trace: None,
        unmapped: json!({"mcp_warden": {"checkpoint": info}}),
        metadata: Metadata {
            version: OCSF_VERSION,
            product,
            profiles: PROFILES,
            log_name: "mcp-warden-audit",
            event_code: EVENT_CHECKPOINT,
            logged_time: ms,
            is_truncated: None,
            untruncated_size: None,
            correlation_uid: &info.instance,
        },
    };
    Prepared {
        head: open_head(&head),
        kind: RecordKind::Checkpoint,
        time_ms: ms,
    }
}

/// Closes a head into a full line (appended to `out`, newline included) and returns its hash.
pub fn seal(
    head: &[u8],
    uid: &str,
    sequence: u64,
    instance: &str,
    prev: &[u8; 32],
    out: &mut Vec<u8>,
) -> [u8; 32] {
    let start = out.len();
    out.extend_from_slice(head);
    out.extend_from_slice(b",\"uid\":\"");
    out.extend_from_slice(uid.as_bytes());
    out.extend_from_slice(b"\",\"sequence\":");
    out.extend_from_slice(sequence.to_string().as_bytes());
    out.extend_from_slice(b",\"tags\":[{\"name\":\"mcp_warden.instance\",\"value\":\"");
    out.extend_from_slice(instance.as_bytes());
    out.extend_from_slice(b"\"},{\"name\":\"mcp_warden.chain.prev\",\"value\":\"sha256:");
    out.extend_from_slice(hex::encode(prev).as_bytes());
    out.extend_from_slice(b"\"},");
    out.extend_from_slice(HASH_PREFIX);
    let hash_at = out.len();
    out.extend_from_slice(&[b'0'; 64]);
    out.extend_from_slice(HASH_SUFFIX);
    let hash: [u8; 32] = Sha256::digest(&out[start..]).into();
    out[hash_at..hash_at + 64].copy_from_slice(hex::encode(hash).as_bytes());
    out.push(b'\n');
    hash
}

/// Why a line is not a sealed record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line does not end with the chain hash tag.
    #[error("not an mcp-warden audit record (no chain hash at the end of the line)")]
    NotSealed,
}

/// The hash a line claims, and the one its content gives. Equal unless the line was edited.
pub fn line_hashes(line: &[u8]) -> Result<([u8; 32], [u8; 32]), LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(HASH_SUFFIX).ok_or(LineError::NotSealed)?;
    if body.len() < 64 + HASH_PREFIX.len() {
        return Err(LineError::NotSealed);
    }
    let (before, hex_part) = body.split_at(body.len() - 64);
    if !before.ends_with(HASH_PREFIX) {
        return Err(LineError::NotSealed);
    }
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut claimed).map_err(|_| LineError::NotSealed)?;
    let mut h = Sha256::new();
    h.update(before);
    h.update([b'0'; 64]);
    h.update(HASH_SUFFIX);
    Ok((claimed, h.finalize().into()))
}

/// `metadata.sequence` of a sealed line, read from its tail without parsing the JSON: `seal`
/// writes it within the last [`SEAL_MAX_BYTES`] of the line.
pub fn line_sequence(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\",\"sequence\":";
    let line = &line[line.len().saturating_sub(SEAL_MAX_BYTES)..];
    let at = line.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The chain fields of a parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainFields {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.sequence`.
    pub sequence: u64,
    /// The instance tag.
    pub instance: String,
    /// The previous record's hash.
    pub prev: [u8; 32],
    /// This record's claimed hash.
    pub hash: [u8; 32],
}

/// Reads the chain fields from a parsed record.
pub fn chain_fields(record: &Value) -> Option<ChainFields> {
    let meta = record.get("metadata")?;
    let tag = |name: &str| {
        meta.get("tags")?
            .as_array()?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?
            .get("value")?
            .as_str()
            .map(str::to_owned)
    };
    let hash = |v: String| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(v.strip_prefix("sha256:")?, &mut out).ok()?;
        Some(out)
    };
    Some(ChainFields {
        uid: meta.get("uid")?.as_str()?.to_owned(),
        sequence: meta.get("sequence")?.as_u64()?,
        instance: tag(TAG_INSTANCE)?,
        prev: hash(tag(TAG_PREV)?)?,
        hash: hash(tag(TAG_HASH)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        assert_eq!(
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"))
        );
        assert_eq!(parse_traceparent("00-xyz-00f067aa0ba902b7-01"), None);
        assert_eq!(parse_traceparent(""), None);
    }

    #[test]
    fn seal_then_hash_round_trips_and_detects_edits() {
        let head = br#"{"a":1,"metadata":{"version":"1.8.0""#;
        let mut line = Vec::new();
        let h = seal(head, "u-1", 7, "inst", &GENESIS, &mut line);
        let v: Value = serde_json::from_slice(&line).unwrap();
        let c = chain_fields(&v).unwrap();
        assert_eq!((c.sequence, c.hash, c.prev), (7, h, GENESIS));
        assert_eq!(line_sequence(&line), Some(7));
        let (claimed, actual) = line_hashes(&line).unwrap();
        assert_eq!((claimed, actual), (h, h));
        let edited = String::from_utf8(line)
            .unwrap()
            .replace("\"a\":1", "\"a\":2");
        let (claimed, actual) = line_hashes(edited.as_bytes()).unwrap();
        assert_ne!(claimed, actual);
        assert_eq!(line_hashes(b"{\"x\":1}"), Err(LineError::NotSealed));
    }

    #[test]
    fn the_sequence_is_read_from_the_seal_of_a_long_line() {
        // A decoy in the data, a long head, the longest instance and sequence the seal allows.
        let head = format!(
            r#"{{"a":"","sequence":7,"b":"{}","metadata":{{"version":"1.8.0""#,
            "x".repeat(5000)
        );
        let mut line = Vec::new();
        seal(
            head.as_bytes(),
            "u-1",
            u64::MAX,
            &"i".repeat(64),
            &GENESIS,
            &mut line,
        );
        assert_eq!(line_sequence(&line), Some(u64::MAX));
        assert_eq!(line_sequence(b"{\"no\":\"seal\"}"), None);
    }

    #[test]
    fn time_dt_has_milliseconds() {
        let t = Timestamp::from_millisecond(1_795_506_591_120).unwrap();
        assert_eq!(Rfc3339Ms(t).to_string(), "2026-11-24T07:49:51.120Z");
    }
}
