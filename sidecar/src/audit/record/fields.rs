//! The strings and codes a record is made of, written straight into the JSON (no `String` per
//! field): clipped free text, the resource uid, the message, severity, risk and activity.

use super::MAX_TEXT_BYTES;
use crate::audit::event::AuditEvent;
use jiff::Timestamp;
use mcp_warden_crds::Risk;
use mcp_warden_policy::{Capability, ObjectRef};
use serde::{Serialize, Serializer};
use std::fmt;

/// Cuts free text to [`MAX_TEXT_BYTES`] on a char boundary.
pub(super) fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT_BYTES {
        return s;
    }
    let mut end = MAX_TEXT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(super) fn clip_opt(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(clip)
}

/// `2026-11-25T02:47:00.123Z`.
pub(super) struct Rfc3339Ms(pub(super) Timestamp);

impl fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

/// A string field written straight from its `Display` into the record: no `String` per field.
#[derive(Clone, Copy)]
pub(super) struct Shown<'a>(pub(super) &'a dyn fmt::Display);

impl Serialize for Shown<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// `resources[0].uid`: `<McpTool namespace>/<McpTool name>/<tool>`, or `<server>/<tool>`; for
/// a resource, prompt or server request the name has its kind in front (`resource:<uri>`,
/// `prompt:<name>`, `server_request:<kind>`), so that equal names of different kinds differ.
pub(super) struct ToolUid<'a> {
    pub(super) mcp_tool: Option<&'a ObjectRef>,
    pub(super) server: &'a str,
    pub(super) kind: Option<&'static str>,
    pub(super) tool: &'a str,
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
pub(super) fn used_kind(ev: &AuditEvent) -> (&'static str, Option<&'static str>, &'static str) {
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
pub(super) struct Message<'a> {
    pub(super) who: &'a dyn fmt::Display,
    pub(super) verb: &'static str,
    pub(super) what: &'a str,
    pub(super) server: &'a str,
    pub(super) reason: &'a str,
    pub(super) phase: &'static str,
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
pub(super) struct Scopes<'a>(pub(super) &'a [String]);

impl Serialize for Scopes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| clip(x)))
    }
}

impl Scopes<'_> {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Parses `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) into trace and span ids.
pub(super) fn parse_traceparent(tp: &str) -> Option<(&str, &str)> {
    let mut it = tp.trim().split('-');
    let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2)).then_some((trace, span))
}

pub(super) fn risk_level(r: Risk) -> (u32, &'static str) {
    match r {
        Risk::Low => (1, "Low"),
        Risk::Medium => (2, "Medium"),
        Risk::High => (3, "High"),
        Risk::Critical => (4, "Critical"),
    }
}

pub(super) fn severity(id: u32) -> &'static str {
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
pub(super) fn activity(method: &str) -> (u32, &'static str, &'static str) {
    match method {
        "tools/call" => (99, "Call", "API Activity: Call"),
        "" => (0, "Unknown", "API Activity: Unknown"),
        m if m.ends_with("/list") || m.ends_with("/get") || m.ends_with("/read") => {
            (2, "Read", "API Activity: Read")
        }
        _ => (99, "Other", "API Activity: Other"),
    }
}
