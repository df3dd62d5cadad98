//! Status computation: pure functions from the inventory, the pods, the usage window and the
//! clock to the status each object should show. No I/O; `status_writer` applies the results.
//!
//! ```text
//! Inventory + pods + UsageView + now ──compute──► Desired { McpTool (tool.rs), McpClient
//!                                                   (client.rs), McpPolicy (policy.rs) status }
//!                                                   (lastTransitionTime kept from the current
//!                                                    status when a condition did not flip)
//! ```
//!
//! - **McpClient**: `phase` (Suspended > Expired > ReviewOverdue > Active, a runaway suspension
//!   counting as Suspended), conditions `Ready`, `Suspended`, `Expired`, `ReviewOverdue`,
//!   `RunawayDetected`, `reviewDue`, `lastSeen`, `calls24h`, `denials24h`, `effectiveTools`,
//!   `toolUsage` (see `tool_usage`).
//! - **McpPolicy**: `Accepted` (false when it references no existing McpTool, or does not
//!   deserialize), `ResolvedRefs` (the message names every missing McpTool and McpClient).
//! - **McpTool**: `governedPods`, `toolsSeen`, `undeclaredTools`, `Ready`, `Bypassable` (from
//!   the sidecars' bypass checks: True when some pod's upstream answers on the pod's own
//!   address, False when every pod that checked found it on loopback only, Unknown otherwise).
//!
//! Every timestamp is whole seconds, as the API server stores it, so a status read back compares
//! equal to the one computed and no write repeats.

use crate::{
    index::PodKey,
    tool_usage,
    usage::{BypassReport, ClientView, UsageView},
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use mcp_warden_crds::{
    ClientPhase, DefaultAction, McpClient, McpClientStatus, McpPolicy, McpPolicyStatus, McpTool,
    McpToolStatus, PolicyMode,
};
use mcp_warden_policy::{
    Capability, Inventory, bundle::granted_clients, glob::Glob, inventory::Key, lifecycle, selector,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Annotation a person sets (RFC 3339) to clear a runaway suspension flagged before it.
pub const RUNAWAY_CLEARED_AT: &str = "mcpwarden.io/runaway-cleared-at";

/// Labels of each known pod.
pub type Pods = BTreeMap<PodKey, BTreeMap<String, String>>;

/// The status every object should have.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// McpTool status by key.
    pub tools: BTreeMap<Key, McpToolStatus>,
    /// McpClient status by key.
    pub clients: BTreeMap<Key, McpClientStatus>,
    /// McpPolicy status by key.
    pub policies: BTreeMap<Key, McpPolicyStatus>,
}

/// `Time` at whole seconds (what the API server keeps).
pub fn time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn rfc3339(t: Timestamp) -> String {
    time(t).0.to_string()
}

/// Builds a condition, keeping `lastTransitionTime` from `current` when the status did not flip.
pub fn condition(
    current: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = current
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// For each McpClient, the tools its `Enforce` policies grant, as `<ns>/<McpTool>/<pattern>`
/// (only McpTools that exist). One pass over the policies.
pub fn effective_tools(inventory: &Inventory) -> HashMap<Key, BTreeSet<String>> {
    let mut out: HashMap<Key, BTreeSet<String>> = HashMap::new();
    for ((ns, _), policy) in inventory.policies() {
        if policy.spec.mode != PolicyMode::Enforce {
            continue;
        }
        let tools: Vec<String> = policy
            .spec
            .tools
            .iter()
            .filter(|g| {
                inventory
                    .tools()
                    .contains_key(&(ns.clone(), g.tool_ref.clone()))
            })
            .flat_map(|g| {
                g.tool_names()
                    .iter()
                    .map(move |n| format!("{ns}/{}/{n}", g.tool_ref))
            })
            .collect();
        if tools.is_empty() {
            continue;
        }
        for client in granted_clients(inventory, ns, &policy.spec).found {
            out.entry(client).or_default().extend(tools.iter().cloned());
        }
    }
    out
}

/// The status every object of the inventory should have at `now`.
pub fn compute(inventory: &Inventory, pods: &Pods, usage: &UsageView, now: Timestamp) -> Desired {
    let granted = effective_tools(inventory);
    let attribution = tool_usage::Attribution::new(inventory, pods, usage);
    Desired {
        tools: inventory
            .tools()
            .iter()
            .map(|(k, t)| {
                let bypass = usage.bypass.get(k).map(Vec::as_slice);
                let status = tool_status(k, t, pods, usage.tools.get(k), bypass, now);
                (k.clone(), status)
            })
            .collect(),
        clients: inventory
            .clients()
            .iter()
            .map(|(k, c)| {
                let view = usage.clients.get(k);
                let mut status = client_status(c, granted.get(k), view, now);
                status.tool_usage = tool_usage::merge(c, &attribution.resolve(view), now);
                let resources = attribution.resolve_uses(view, Capability::Resource);
                status.resource_usage = tool_usage::merge_resources(c, &resources, now);
                let prompts = attribution.resolve_uses(view, Capability::Prompt);
                status.prompt_usage = tool_usage::merge_prompts(c, &prompts, now);
                (k.clone(), status)
            })
            .collect(),
        policies: inventory
            .policies()
            .iter()
            .map(|(k, p)| (k.clone(), policy_status(inventory, k, p, now)))
            .collect(),
    }
}

/// The next instant after `now` at which some McpClient's phase changes by itself (expiry or
/// review due): the status loop wakes up then, with no event.
pub fn next_transition(inventory: &Inventory, now: Timestamp) -> Option<Timestamp> {
    inventory
        .clients()
        .values()
        .filter_map(|c| lifecycle::next_transition(c, now))
        .min()
}

/// The condition an object that does not deserialize gets (`Accepted` for McpPolicy, `Ready`
/// otherwise), so `kubectl get` shows why it is ignored.
pub fn invalid_condition(
    kind: mcp_warden_policy::Kind,
    error: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let type_ = match kind {
        mcp_warden_policy::Kind::McpPolicy => "Accepted",
        _ => "Ready",
    };
    let mut message = format!("ignored: the object does not match the mcp-warden schema: {error}");
    message.truncate(1024);
    condition(&[], type_, false, "InvalidSpec", message, generation, now)
}

mod client;
mod policy;
#[cfg(test)]
mod tests;
mod tool;

pub use client::client_status;
pub use policy::policy_status;
pub use tool::{bypass_condition, tool_status};
