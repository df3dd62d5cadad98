//! Status computation: pure functions from the inventory, the pods, the usage window and the
//! clock to the status each object should show. No I/O; `status_writer` applies the results.
//!
//! ```text
//! Inventory + pods + UsageView + now ──compute──► Desired { McpTool, McpClient, McpPolicy status }
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

/// Runaway flags that still count: newer than the client's `runaway-cleared-at` annotation.
fn live_flags<'a>(
    client: &McpClient,
    usage: Option<&'a ClientView>,
) -> Vec<&'a (PodKey, crate::usage::RunawayFlag)> {
    let cleared: Option<Timestamp> = client
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUNAWAY_CLEARED_AT))
        .and_then(|t| t.parse().ok());
    usage
        .map(|u| {
            u.runaway
                .iter()
                .filter(|(_, f)| cleared.is_none_or(|c| f.flagged_at > c))
                .collect()
        })
        .unwrap_or_default()
}

/// The status of one McpClient.
pub fn client_status(
    client: &McpClient,
    tools: Option<&BTreeSet<String>>,
    usage: Option<&ClientView>,
    now: Timestamp,
) -> McpClientStatus {
    let current = client
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = client.metadata.generation;
    let spec = &client.spec;
    let flags = live_flags(client, usage);
    let runaway_suspended = flags.iter().any(|(_, f)| f.suspended);
    let phase = if spec.suspended || runaway_suspended {
        ClientPhase::Suspended
    } else {
        lifecycle::phase(client, now)
    };
    let review_due = lifecycle::review_due(client);
    let expired = lifecycle::is_expired(client, now);
    let overdue = lifecycle::is_review_overdue(client, now);
    let enforce_review = spec.review.as_ref().is_some_and(|r| r.enforce);
    let effective: Vec<String> = tools
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let pods = |flags: &[&(PodKey, crate::usage::RunawayFlag)]| {
        flags
            .iter()
            .map(|((ns, p), _)| format!("{ns}/{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cond =
        |t: &str, s: bool, r: &str, m: String| condition(current, t, s, r, m, generation, now);

    let suspended = if spec.suspended {
        cond(
            "Suspended",
            true,
            "Suspended",
            spec.suspension_reason
                .clone()
                .unwrap_or_else(|| "spec.suspended is set".into()),
        )
    } else if runaway_suspended {
        let suspending: Vec<_> = flags.iter().copied().filter(|(_, f)| f.suspended).collect();
        cond(
            "Suspended",
            true,
            "RunawaySuspended",
            format!(
                "suspended as a runaway by the sidecars of {}; set the {RUNAWAY_CLEARED_AT} annotation to a time after the flag to clear it",
                pods(&suspending)
            ),
        )
    } else {
        cond("Suspended", false, "NotSuspended", String::new())
    };
    let expired_c = match (&spec.expires_at, expired) {
        (Some(at), true) => cond(
            "Expired",
            true,
            "Expired",
            format!("expired at {}", rfc3339(at.0)),
        ),
        (Some(at), false) => cond(
            "Expired",
            false,
            "NotExpired",
            format!("expires at {}", rfc3339(at.0)),
        ),
        (None, _) => cond(
            "Expired",
            false,
            "NoExpiry",
            "the client has no expiry".into(),
        ),
    };
    let overdue_c = match (review_due, overdue) {
        (Some(due), true) => cond(
            "ReviewOverdue",
            true,
            "ReviewOverdue",
            format!(
                "the access review was due at {}{}",
                rfc3339(due),
                if enforce_review {
                    "; calls are denied until it is reviewed"
                } else {
                    ""
                }
            ),
        ),
        (Some(due), false) => cond(
            "ReviewOverdue",
            false,
            "ReviewCurrent",
            format!("the next access review is due at {}", rfc3339(due)),
        ),
        (None, _) => cond(
            "ReviewOverdue",
            false,
            "NoReviewCadence",
            "the client has no review cadence".into(),
        ),
    };
    let runaway_c = if flags.is_empty() {
        cond("RunawayDetected", false, "NoRunaway", String::new())
    } else {
        let since = flags.iter().map(|(_, f)| f.flagged_at).min().unwrap_or(now);
        cond(
            "RunawayDetected",
            true,
            "RunawayDetected",
            format!(
                "refused by its limits for most of its calls over a sustained window, since {} (sidecars of {})",
                rfc3339(since),
                pods(&flags)
            ),
        )
    };
    let ready_c = match phase {
        ClientPhase::Suspended => cond(
            "Ready",
            false,
            "Suspended",
            "the client is suspended".into(),
        ),
        ClientPhase::Expired => cond("Ready", false, "Expired", "the client has expired".into()),
        ClientPhase::ReviewOverdue if enforce_review => cond(
            "Ready",
            false,
            "ReviewOverdue",
            "the access review is overdue and enforced".into(),
        ),
        _ if effective.is_empty() => cond(
            "Ready",
            false,
            "NotGranted",
            "no Enforce McpPolicy grants this client a tool".into(),
        ),
        ClientPhase::ReviewOverdue => cond(
            "Ready",
            true,
            "ReviewOverdue",
            "the access review is overdue; McpTools with enforceReviews deny the client".into(),
        ),
        _ => cond(
            "Ready",
            true,
            "Active",
            format!("granted {} tool pattern(s)", effective.len()),
        ),
    };

    let previous_last_seen = client
        .status
        .as_ref()
        .and_then(|s| s.last_seen.as_ref())
        .map(|t| t.0);
    let last_seen = [usage.and_then(|u| u.last_seen), previous_last_seen]
        .into_iter()
        .flatten()
        .max();
    McpClientStatus {
        observed_generation: generation,
        conditions: vec![ready_c, suspended, expired_c, overdue_c, runaway_c],
        phase: Some(phase),
        review_due: review_due.map(time),
        last_seen: last_seen.map(time),
        calls_24h: Some(usage.map_or(0, |u| u.calls_24h)),
        denials_24h: Some(usage.map_or(0, |u| u.denials_24h)),
        effective_tools: effective,
        // compute() adds this window's use; alone, the current entries carry over.
        tool_usage: tool_usage::merge(client, &BTreeMap::new(), now),
        resource_usage: tool_usage::merge_resources(client, &BTreeMap::new(), now),
        prompt_usage: tool_usage::merge_prompts(client, &BTreeMap::new(), now),
    }
}

/// The status of one McpPolicy: `ResolvedRefs` names every missing McpTool and McpClient;
/// `Accepted` is false when no referenced McpTool exists (the policy grants nothing).
pub fn policy_status(
    inventory: &Inventory,
    key: &Key,
    policy: &McpPolicy,
    now: Timestamp,
) -> McpPolicyStatus {
    let current = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = policy.metadata.generation;
    let ns = &key.0;
    let mut missing_tools: Vec<String> = policy
        .spec
        .tools
        .iter()
        .map(|g| &g.tool_ref)
        .filter(|t| !inventory.tools().contains_key(&(ns.clone(), (*t).clone())))
        .map(|t| format!("{ns}/{t}"))
        .collect();
    missing_tools.sort();
    missing_tools.dedup();
    let granted = granted_clients(inventory, ns, &policy.spec);
    let mut missing_clients = granted.missing.clone();
    missing_clients.sort();
    missing_clients.dedup();
    let resolved_tools = policy.spec.tools.len()
        - policy
            .spec
            .tools
            .iter()
            .filter(|g| missing_tools.contains(&format!("{ns}/{}", g.tool_ref)))
            .count();

    let mut problems = Vec::new();
    if !missing_tools.is_empty() {
        problems.push(format!("McpTool {} not found", missing_tools.join(", ")));
    }
    if !missing_clients.is_empty() {
        problems.push(format!(
            "McpClient {} not found",
            missing_clients.join(", ")
        ));
    }
    let reason = match (missing_tools.is_empty(), missing_clients.is_empty()) {
        (true, true) => "ResolvedRefs",
        (false, true) => "ToolNotFound",
        (true, false) => "ClientNotFound",
        (false, false) => "RefsNotFound",
    };
    let resolved = if problems.is_empty() {
        let selector_note = if policy.spec.client_selector.is_some() {
            format!(
                "; clientSelector and names grant {} McpClient(s)",
                granted.found.len()
            )
        } else {
            String::new()
        };
        condition(
            current,
            "ResolvedRefs",
            true,
            reason,
            format!("every referenced McpTool and McpClient exists{selector_note}"),
            generation,
            now,
        )
    } else {
        condition(
            current,
            "ResolvedRefs",
            false,
            reason,
            problems.join("; "),
            generation,
            now,
        )
    };
    let accepted = if resolved_tools == 0 {
        condition(
            current,
            "Accepted",
            false,
            "NoTools",
            "none of the McpTools this policy references exists, so it grants nothing",
            generation,
            now,
        )
    } else {
        let mode = match policy.spec.mode {
            PolicyMode::Enforce => "enforced",
            PolicyMode::Audit => {
                "in audit mode: it records what it would decide and grants nothing"
            }
        };
        condition(
            current,
            "Accepted",
            true,
            "Accepted",
            format!("the policy is {mode}"),
            generation,
            now,
        )
    };
    McpPolicyStatus {
        observed_generation: generation,
        conditions: vec![accepted, resolved],
    }
}

/// The `Bypassable` condition of an McpTool from its pods' latest bypass checks.
pub fn bypass_condition(
    current: &[Condition],
    reports: &[(PodKey, BypassReport)],
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let cond = |status: Option<bool>, reason: &str, message: String| {
        let mut c = condition(
            current,
            "Bypassable",
            status.unwrap_or(false),
            reason,
            message,
            generation,
            now,
        );
        if status.is_none() {
            c.status = "Unknown".into();
            c.last_transition_time = current
                .iter()
                .find(|c| c.type_ == "Bypassable" && c.status == "Unknown")
                .map_or_else(|| time(now), |c| c.last_transition_time.clone());
        }
        c
    };
    let reachable: Vec<String> = reports
        .iter()
        .filter(|(_, r)| !r.reachable.is_empty())
        .map(|((ns, pod), r)| format!("pod {ns}/{pod} at {}", r.reachable.join(", ")))
        .collect();
    let checked = reports
        .iter()
        .filter(|(_, r)| r.not_checked.is_none())
        .count();
    if !reachable.is_empty() {
        let mut shown = reachable[..reachable.len().min(3)].join("; ");
        if reachable.len() > 3 {
            shown.push_str(&format!(" (and {} more pods)", reachable.len() - 3));
        }
        cond(
            Some(true),
            "UpstreamReachable",
            format!(
                "the MCP server answers without the sidecar: {shown}; bind it to 127.0.0.1 or let a NetworkPolicy admit only the sidecar's port"
            ),
        )
    } else if checked > 0 {
        cond(
            Some(false),
            "LoopbackOnly",
            format!("the MCP server answers on loopback only in the {checked} pod(s) that checked"),
        )
    } else if let Some(((ns, pod), r)) = reports.first() {
        let why = r.not_checked.clone().unwrap_or_default();
        cond(None, "NotChecked", format!("pod {ns}/{pod}: {why}"))
    } else {
        cond(
            None,
            "NotReported",
            "no sidecar has reported a bypass check in the last 10 minutes".into(),
        )
    }
}

/// The status of one McpTool: pods its selector matches (in its namespace), the tools its
/// upstreams list (from usage reports), the ones `spec.tools` does not declare, whether its
/// upstream can be reached around the sidecar.
pub fn tool_status(
    key: &Key,
    tool: &McpTool,
    pods: &Pods,
    seen: Option<&BTreeSet<String>>,
    bypass: Option<&[(PodKey, BypassReport)]>,
    now: Timestamp,
) -> McpToolStatus {
    let current = tool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = tool.metadata.generation;
    let governed = tool.spec.server.selector.as_ref().map(|sel| {
        pods.range((key.0.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == key.0)
            .filter(|(_, labels)| selector::matches(sel, labels))
            .count()
    });
    let tools_seen: Vec<String> = seen
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let declared: Vec<Glob> = tool
        .spec
        .tools
        .iter()
        .map(|t| Glob::new(t.name.clone()))
        .collect();
    let undeclared: Vec<String> = tools_seen
        .iter()
        .filter(|name| !declared.iter().any(|g| g.matches(name)))
        .cloned()
        .collect();
    let ready = match governed {
        None => condition(
            current,
            "Ready",
            false,
            "NoSelector",
            "spec.server.selector is not set, so no pod is governed (standalone mode only)",
            generation,
            now,
        ),
        Some(0) => condition(
            current,
            "Ready",
            false,
            "NoPods",
            "no pod matches spec.server.selector",
            generation,
            now,
        ),
        Some(n) => {
            let note = if undeclared.is_empty() {
                String::new()
            } else {
                let action = match tool.spec.default_action {
                    DefaultAction::Deny => "hidden by defaultAction Deny",
                    DefaultAction::Allow => "allowed by defaultAction Allow",
                };
                format!("; {} undeclared tool(s) {action}", undeclared.len())
            };
            condition(
                current,
                "Ready",
                true,
                "Governed",
                format!("{n} pod(s) governed{note}"),
                generation,
                now,
            )
        }
    };
    let bypassable = bypass_condition(current, bypass.unwrap_or_default(), generation, now);
    McpToolStatus {
        observed_generation: generation,
        conditions: vec![ready, bypassable],
        governed_pods: Some(i32::try_from(governed.unwrap_or(0)).unwrap_or(i32::MAX)),
        tools_seen,
        undeclared_tools: undeclared,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_policy::{Resource, load};

    const CRS: &str = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: pay, namespace: team, generation: 3}
spec:
  owner: team
  server: {selector: {matchLabels: {app: pay}}, resource: "https://pay.example/mcp"}
  authentication: {issuers: [{issuer: "https://idp.example"}]}
  tools: [{name: "get_*"}]
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: bot, namespace: agents, generation: 2}
spec:
  owner: me
  identity: {issuer: "https://idp.example", clientId: bot}
  expiresAt: "2030-03-01T00:00:00Z"
  review: {intervalDays: 30, lastReviewedAt: "2030-01-15T00:00:00Z"}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpPolicy
metadata: {name: bot-pay, namespace: team, generation: 5}
spec:
  clients: [{name: bot, namespace: agents}, {name: ghost, namespace: agents}]
  tools: [{toolRef: pay, names: [get_balance]}, {toolRef: nowhere}]
"#;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn inventory() -> Inventory {
        Inventory::from_resources(load("t.yaml", CRS).expect("valid"))
    }

    #[test]
    fn client_phase_follows_the_clock_and_keeps_transition_times() {
        let inv = inventory();
        let key = ("agents".to_string(), "bot".to_string());
        let mut client = inv.clients()[&key].clone();
        let granted = effective_tools(&inv);
        assert_eq!(
            granted[&key].iter().cloned().collect::<Vec<_>>(),
            vec!["team/pay/get_balance".to_string()]
        );
        let t0 = t("2030-02-01T00:00:00Z");
        let s = client_status(&client, granted.get(&key), None, t0);
        assert_eq!(s.phase, Some(ClientPhase::Active));
        assert_eq!(s.review_due, Some(time(t("2030-02-14T00:00:00Z"))));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.conditions[0].type_, "Ready");
        assert_eq!(s.conditions[0].status, "True");
        client.status = Some(s.clone());
        // One second before the review is due nothing flips, and nothing changes at all.
        let before = client_status(&client, granted.get(&key), None, t("2030-02-13T23:59:59Z"));
        assert_eq!(before, s, "no change before the boundary: no write");
        // At the boundary: ReviewOverdue, transition time = now.
        let due = t("2030-02-14T00:00:00Z");
        let at = client_status(&client, granted.get(&key), None, due);
        assert_eq!(at.phase, Some(ClientPhase::ReviewOverdue));
        let overdue = at
            .conditions
            .iter()
            .find(|c| c.type_ == "ReviewOverdue")
            .expect("condition");
        assert_eq!(
            (overdue.status.as_str(), overdue.last_transition_time.0),
            ("True", due)
        );
        let expired = at
            .conditions
            .iter()
            .find(|c| c.type_ == "Expired")
            .expect("condition");
        assert_eq!(
            expired.last_transition_time.0, t0,
            "unchanged condition keeps its time"
        );
        // Expiry outranks the overdue review.
        let later = client_status(&client, granted.get(&key), None, t("2030-03-01T00:00:00Z"));
        assert_eq!(later.phase, Some(ClientPhase::Expired));
        assert_eq!(next_transition(&inv, t0), Some(due));
        assert_eq!(next_transition(&inv, due), Some(t("2030-03-01T00:00:00Z")));
    }

    #[test]
    fn policy_conditions_name_the_missing_references() {
        let inv = inventory();
        let key = ("team".to_string(), "bot-pay".to_string());
        let s = policy_status(&inv, &key, &inv.policies()[&key], t("2030-01-01T00:00:00Z"));
        let resolved = &s.conditions[1];
        assert_eq!(
            (resolved.type_.as_str(), resolved.status.as_str()),
            ("ResolvedRefs", "False")
        );
        assert_eq!(resolved.reason, "RefsNotFound");
        assert_eq!(
            resolved.message,
            "McpTool team/nowhere not found; McpClient agents/ghost not found"
        );
        assert_eq!(
            s.conditions[0].status, "True",
            "accepted: one tool resolves"
        );
        assert_eq!(s.observed_generation, Some(5));
        let mut only_missing = inv.policies()[&key].clone();
        only_missing.spec.tools.retain(|g| g.tool_ref == "nowhere");
        let s = policy_status(&inv, &key, &only_missing, t("2030-01-01T00:00:00Z"));
        assert_eq!(
            (
                s.conditions[0].status.as_str(),
                s.conditions[0].reason.as_str()
            ),
            ("False", "NoTools")
        );
    }

    #[test]
    fn tool_status_counts_pods_and_undeclared_tools() {
        let inv = inventory();
        let key = ("team".to_string(), "pay".to_string());
        let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        let pods: Pods = BTreeMap::from([
            (("team".into(), "pay-0".into()), labels("pay")),
            (("team".into(), "pay-1".into()), labels("pay")),
            (("team".into(), "web-0".into()), labels("web")),
            (("other".into(), "pay-0".into()), labels("pay")),
        ]);
        let seen = BTreeSet::from(["get_balance".to_string(), "refund".to_string()]);
        let s = tool_status(
            &key,
            &inv.tools()[&key],
            &pods,
            Some(&seen),
            None,
            t("2030-01-01T00:00:00Z"),
        );
        assert_eq!(s.governed_pods, Some(2));
        assert_eq!(s.undeclared_tools, vec!["refund".to_string()]);
        assert_eq!(s.conditions[0].reason, "Governed");
        let none = tool_status(
            &key,
            &inv.tools()[&key],
            &Pods::new(),
            None,
            None,
            t("2030-01-01T00:00:00Z"),
        );
        assert_eq!(
            (none.governed_pods, none.conditions[0].reason.as_str()),
            (Some(0), "NoPods")
        );
    }

    #[test]
    fn bypass_reports_make_the_bypassable_condition() {
        let now = t("2030-01-01T00:00:00Z");
        let pod = |p: &str| ("team".to_string(), p.to_string());
        let report = |reachable: &[&str], not_checked: Option<&str>| BypassReport {
            namespace: "team".into(),
            name: "pay".into(),
            port: not_checked.is_none().then_some(8080),
            checked: vec!["10.0.0.5".into()],
            reachable: reachable.iter().map(|a| (*a).to_owned()).collect(),
            not_checked: not_checked.map(str::to_owned),
        };
        let loopback = [(pod("pay-0"), report(&[], None))];
        let c = bypass_condition(&[], &loopback, Some(3), now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.observed_generation),
            ("False", "LoopbackOnly", Some(3))
        );
        let open = [
            (pod("pay-0"), report(&[], None)),
            (pod("pay-1"), report(&["10.0.0.6:8080"], None)),
        ];
        let later = t("2030-01-01T00:01:00Z");
        let c = bypass_condition(std::slice::from_ref(&c), &open, Some(3), later);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "UpstreamReachable")
        );
        assert!(
            c.message.contains("pod team/pay-1 at 10.0.0.6:8080"),
            "{}",
            c.message
        );
        assert_eq!(c.last_transition_time.0, later, "it flipped");
        let remote = [(
            pod("pay-0"),
            report(&[], Some("the upstream is on another host")),
        )];
        let c = bypass_condition(&[], &remote, None, now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "NotChecked")
        );
        let c = bypass_condition(&[], &[], None, now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "NotReported")
        );
    }

    #[test]
    fn runaway_flags_suspend_until_cleared() {
        let inv = inventory();
        let key = ("agents".to_string(), "bot".to_string());
        let mut client = inv.clients()[&key].clone();
        let now = t("2030-02-01T00:00:00Z");
        let view = ClientView {
            runaway: vec![(
                ("team".into(), "pay-0".into()),
                crate::usage::RunawayFlag {
                    namespace: "agents".into(),
                    name: "bot".into(),
                    flagged_at: t("2030-01-31T23:00:00Z"),
                    suspended: true,
                },
            )],
            calls_24h: 7,
            ..ClientView::default()
        };
        let s = client_status(&client, None, Some(&view), now);
        assert_eq!(s.phase, Some(ClientPhase::Suspended));
        assert_eq!(s.calls_24h, Some(7));
        let runaway = s
            .conditions
            .iter()
            .find(|c| c.type_ == "RunawayDetected")
            .expect("condition");
        assert_eq!(runaway.status, "True");
        assert!(
            runaway.message.contains("team/pay-0"),
            "{}",
            runaway.message
        );
        client.metadata.annotations = Some(BTreeMap::from([(
            RUNAWAY_CLEARED_AT.to_string(),
            "2030-01-31T23:30:00Z".to_string(),
        )]));
        let s = client_status(&client, None, Some(&view), now);
        assert_eq!(s.phase, Some(ClientPhase::Active));
        let _ = Resource::Client(client);
    }
}
