//! The observers of every decision: the decision log (target `mcp_warden::decision`), the
//! `mcp_warden_requests_total` counter and, in operator mode, the usage report.
//!
//! ```text
//! outcomes (post) ──► observe::outcomes ──► record(Event) per message
//! a refusal before the messages are read (service::note) ──► record(Event) for the request
//! record ──► metrics.request(method, reason) ──► usage.observe (McpClients only)
//!        ──► debug "allowed" │ warn "denied"   (the token itself is never logged)
//! ```

use super::{
    super::jsonrpc::{Id, Message},
    Outcome,
};
use crate::state::Active;
use jiff::Timestamp;
use mcp_warden_policy::{Capability, ObjectRef};
use tracing::field::display;

/// What one decision event says.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// The JSON-RPC method, or `GET`/`DELETE`.
    pub method: &'a str,
    /// What the message uses: the tool of a `tools/call`, the resource of a `resources/read`,
    /// the prompt of a `prompts/get` …
    pub used: Option<(Capability, &'a str)>,
    /// The McpClient, when identified.
    pub client: Option<&'a ObjectRef>,
    /// The decision reason.
    pub reason: &'a str,
    /// Audit mode: what enforcing the policy would have answered.
    pub would: Option<&'a str>,
    /// The CR that decided.
    pub decided_by: Option<&'a ObjectRef>,
    /// The JSON-RPC id.
    pub id: Option<&'a Id>,
    /// The `Mcp-Session-Id`.
    pub session: Option<&'a str>,
    /// Whether the message goes through.
    pub allowed: bool,
}

/// Logs a decision (target `mcp_warden::decision`: allowed at `debug`, denied at `warn`), counts
/// it, and notes it for the usage report. Allowed calls are not logged at `info`: the audit trail
/// already records each call, and a line per call costs ~6 µs of the hot path
/// (`RUST_LOG=info,mcp_warden::decision=debug` turns it into an access log).
pub fn record(shared: &super::super::Shared, e: Event<'_>) {
    shared.metrics.request(e.method, e.reason);
    if let (Some(usage), Some(client)) = (&shared.usage, e.client)
        && client.kind == mcp_warden_policy::Kind::McpClient
    {
        let denied = (!e.allowed).then_some(e.reason);
        let tool = e
            .used
            .filter(|(c, _)| *c == Capability::Tool)
            .map(|(_, t)| t);
        usage.observe(client, e.method, tool, denied, Timestamp::now());
    }
    // Fields are formatted only when the event is enabled (allowed calls log at `debug`).
    let (client, decided_by) = (e.client.map(display), e.decided_by.map(display));
    let named = |capability| e.used.filter(|(c, _)| *c == capability).map(|(_, n)| n);
    let (tool, resource, prompt) = (
        named(Capability::Tool),
        named(Capability::Resource),
        named(Capability::Prompt),
    );
    let id = e.id.map(|id| display(id.as_json()));
    if e.allowed {
        tracing::debug!(
            target: "mcp_warden::decision",
            method = e.method, tool, resource, prompt, client, reason = e.reason, decided_by, id,
            session = e.session, would = e.would, allowed = true, "allowed"
        );
    } else {
        tracing::warn!(
            target: "mcp_warden::decision",
            method = e.method, tool, resource, prompt, client, reason = e.reason, decided_by, id,
            session = e.session, allowed = false, "denied"
        );
    }
}

/// Observes the outcome of each message of a POST: one decision event each; resources and
/// prompts used are counted for the usage report by the pattern of the entry that governs them
/// (as quotas count them). `forwarded`: whether the payload goes upstream (an allowed message
/// of a refused batch is recorded as `batch_not_forwarded`).
pub fn outcomes(
    shared: &super::super::Shared,
    active: &Active,
    messages: &[Message],
    outcomes: &[Outcome],
    client: &ObjectRef,
    session: Option<&str>,
    forwarded: bool,
) {
    for (message, outcome) in messages.iter().zip(outcomes) {
        let reason = if !forwarded && outcome.denial.is_none() && outcome.reason == "allowed" {
            "batch_not_forwarded"
        } else {
            outcome.reason
        };
        record(
            shared,
            Event {
                method: message.label(),
                used: outcome.used.as_ref().map(|(c, n)| (*c, n.as_str())),
                client: Some(client),
                reason,
                would: outcome.would,
                decided_by: Some(&outcome.decided_by),
                id: message.id(),
                session,
                allowed: forwarded,
            },
        );
        if let (Some(usage), Some((capability, name))) = (&shared.usage, &outcome.used)
            && *capability != Capability::Tool
            && crate::quota::COUNTED.contains(&message.label())
        {
            let entry = active.rules.entries(*capability).entry(name);
            usage.used(
                client,
                *capability,
                entry.map_or("*", |e| e.pattern.as_str()),
            );
        }
    }
}
