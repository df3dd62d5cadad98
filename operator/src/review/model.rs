//! The access review as data: for every McpClient, its owner, lifecycle dates, last use, the
//! tools, resources and prompts it may use (through which policies, with which scopes), grants
//! unused for 30 days and flags. Pure: an [`Inventory`] (specs and statuses) and a clock in, a
//! [`ReviewReport`] out.
//!
//! ```text
//! for each McpTool: bundle_for_tools → compile → RuleSet
//!   for each client of the RuleSet, for each capability (tool, resource, prompt), for each
//!   candidate name (declared entries, the policies' grant patterns, the McpTool's toolsSeen,
//!   the client's toolUsage / resourceUsage / promptUsage):
//!     Entries::scopes(name) (None: undeclared and denied) × Client::grants(capability)
//!       → Grant { kind, tool, policy, mode, scopes: needed_scopes(entry, policy), lastUsed }
//! ```
//!
//! Grants are exactly what the sidecar enforces: the same `compile` and the same lookups
//! `decide` uses. A grant is *unused* when it is an `Enforce` grant and the client's usage shows
//! no use of what it covers in the last [`UNUSED_AFTER_DAYS`] days. Tools are named
//! `<namespace>/<McpTool>/<name>`, resources and prompts `…/resource:<uri>`, `…/prompt:<name>`
//! (as in the audit records).

use jiff::{SignedDuration, Timestamp};
use mcp_warden_crds::{ClientPhase, McpClient, PolicyMode};
use mcp_warden_policy::{
    Capability, Inventory, bundle_for_tools, compile, decide::needed_scopes, inventory::Key,
    lifecycle,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A granted tool not called for this many days is reported as unused.
pub const UNUSED_AFTER_DAYS: i64 = 30;
/// Version of the JSON schema of [`ReviewReport`].
pub const SCHEMA_VERSION: u32 = 1;

/// The whole review (the JSON output, schema version 1; see `docs/access-reviews.md`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The clock the report was computed at.
    pub generated_at: Timestamp,
    /// [`UNUSED_AFTER_DAYS`].
    pub unused_after_days: i64,
    /// Every McpClient, sorted by namespace/name.
    pub clients: Vec<ClientReview>,
    /// What kept part of the review from being computed (an McpTool that does not compile).
    pub problems: Vec<String>,
}

/// One McpClient under review. Absent values are `null` in JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientReview {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.owner`.
    pub owner: String,
    /// `spec.description`.
    pub description: Option<String>,
    /// The phase at the report's clock (a runaway suspension in status counts as Suspended).
    pub phase: ClientPhase,
    /// `spec.expiresAt`.
    pub expires_at: Option<Timestamp>,
    /// When the next review is due.
    pub review_due: Option<Timestamp>,
    /// `spec.review.lastReviewedAt`.
    pub last_reviewed_at: Option<Timestamp>,
    /// `spec.review.lastReviewedBy`.
    pub last_reviewed_by: Option<String>,
    /// `status.lastSeen`.
    pub last_seen: Option<Timestamp>,
    /// `status.calls24h`.
    #[serde(rename = "calls24h")]
    pub calls_24h: Option<u64>,
    /// What it may call, sorted by tool then policy.
    pub grants: Vec<Grant>,
    /// Tools of `Enforce` grants not called in the last [`UNUSED_AFTER_DAYS`] days, sorted.
    pub unused_grants: Vec<String>,
    /// What needs a reviewer's attention, most severe first.
    pub flags: Vec<Flag>,
}

/// One tool, resource or prompt a client may use through one policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// `tool`, `resource` or `prompt`.
    pub kind: &'static str,
    /// `<namespace>/<McpTool>/<tool name or pattern>`; `…/resource:<uri or pattern>`,
    /// `…/prompt:<name or pattern>` for resources and prompts.
    pub tool: String,
    /// `<namespace>/<McpPolicy>`.
    pub policy: String,
    /// `Enforce`, or `Audit` (recorded, not allowed).
    pub mode: PolicyMode,
    /// Scopes the token needs: the tool's and the policy's.
    pub scopes: Vec<String>,
    /// The last use of what the pattern covers, from status.toolUsage (resourceUsage,
    /// promptUsage).
    pub last_used: Option<Timestamp>,
}

/// Something a reviewer must look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flag {
    /// `spec.suspended`, or suspended as a runaway.
    Suspended,
    /// Past `spec.expiresAt`.
    Expired,
    /// Past its review due date.
    ReviewOverdue,
    /// A sidecar holds it flagged as running away (`RunawayDetected`).
    Runaway,
    /// No sidecar ever reported a call from it.
    NeverUsed,
    /// Some `Enforce` grant went unused for [`UNUSED_AFTER_DAYS`] days.
    UnusedGrants,
}

impl Flag {
    /// The flag as reports print it (`review-overdue`).
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Suspended => "suspended",
            Flag::Expired => "expired",
            Flag::ReviewOverdue => "review-overdue",
            Flag::Runaway => "runaway",
            Flag::NeverUsed => "never-used",
            Flag::UnusedGrants => "unused-grants",
        }
    }
}

/// Whether the status shows condition `type_` True (with `reason`, when given).
fn condition(client: &McpClient, type_: &str, reason: Option<&str>) -> bool {
    client
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == type_ && c.status == "True" && reason.is_none_or(|r| c.reason == r))
}

/// What a client's status says it used of one capability: (qualified name, last use).
fn usage(client: &McpClient, capability: Capability) -> Vec<(&str, Option<Timestamp>)> {
    let Some(status) = client.status.as_ref() else {
        return Vec::new();
    };
    let at = |t: &Option<mcp_warden_crds::Time>| t.as_ref().map(|t| t.0);
    match capability {
        Capability::Tool => (status.tool_usage.iter())
            .map(|u| (u.tool.as_str(), at(&u.last_used)))
            .collect(),
        Capability::Resource => (status.resource_usage.iter())
            .map(|u| (u.resource.as_str(), at(&u.last_used)))
            .collect(),
        Capability::Prompt => (status.prompt_usage.iter())
            .map(|u| (u.prompt.as_str(), at(&u.last_used)))
            .collect(),
    }
}

/// How grants of a capability are named: `<ns>/<McpTool>/` then `resource:`/`prompt:` for those.
fn label(capability: Capability) -> &'static str {
    match capability {
        Capability::Tool => "",
        Capability::Resource => "resource:",
        Capability::Prompt => "prompt:",
    }
}

/// Every client's grants, and the McpTools that could not be compiled.
fn grants(inventory: &Inventory) -> (BTreeMap<Key, Vec<Grant>>, Vec<String>) {
    let mut out: BTreeMap<Key, Vec<Grant>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, tool) in inventory.tools() {
        let bundle = bundle_for_tools(inventory, std::slice::from_ref(key));
        if bundle.clients.is_empty() {
            continue;
        }
        let rules = match compile(&bundle) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!(
                    "McpTool {}/{}: {e}; its grants are not listed",
                    key.0, key.1
                ));
                continue;
            }
        };
        let prefix = format!("{}/{}/", key.0, key.1);
        let here = || {
            (bundle.policies.iter())
                .flat_map(|p| &p.spec.tools)
                .filter(|g| g.tool_ref == key.1)
        };
        // What the McpTool declares and the policies grant, per capability.
        let declared: [BTreeSet<String>; 3] = [
            (tool.spec.tools.iter().map(|t| t.name.clone()))
                .chain(
                    tool.status
                        .iter()
                        .flat_map(|s| s.tools_seen.iter().cloned()),
                )
                .chain(here().flat_map(|g| g.tool_names().iter().cloned()))
                .collect(),
            (tool.spec.resources.iter().map(|r| r.uri.clone()))
                .chain(here().flat_map(|g| g.resources.iter().cloned()))
                .collect(),
            (tool.spec.prompts.iter().map(|p| p.name.clone()))
                .chain(here().flat_map(|g| g.prompts.iter().cloned()))
                .collect(),
        ];
        for client in &rules.clients {
            let ckey = (client.object.namespace.clone(), client.object.name.clone());
            let Some(object) = inventory.clients().get(&ckey) else {
                continue;
            };
            let list = out.entry(ckey).or_default();
            for (capability, names) in Capability::ALL.into_iter().zip(&declared) {
                let qualified = format!("{prefix}{}", label(capability));
                let used = usage(object, capability);
                let mut candidates = names.clone();
                candidates.extend(
                    (used.iter()).filter_map(|(n, _)| n.strip_prefix(&prefix).map(str::to_owned)),
                );
                let entries = rules.entries(capability);
                for name in &candidates {
                    let Some(entry_scopes) = entries.scopes(name) else {
                        continue;
                    };
                    let pattern = capability.pattern(name);
                    let last_used = (used.iter())
                        .filter(|(n, _)| {
                            n.strip_prefix(&prefix).is_some_and(|n| pattern.matches(n))
                        })
                        .filter_map(|(_, at)| *at)
                        .max();
                    let policies: BTreeSet<usize> =
                        client.grants(capability).matching(name).collect();
                    for p in policies {
                        let policy = &rules.policies[p];
                        list.push(Grant {
                            kind: capability.as_str(),
                            tool: format!("{qualified}{name}"),
                            policy: policy.object.ns_name().to_string(),
                            mode: policy.mode,
                            scopes: needed_scopes(entry_scopes, &policy.scopes),
                            last_used,
                        });
                    }
                }
            }
        }
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| (&a.tool, &a.policy).cmp(&(&b.tool, &b.policy)));
    }
    (out, problems)
}

/// The review of every McpClient of `inventory` (only those in `namespace`, when given) at `now`.
pub fn build(inventory: &Inventory, namespace: Option<&str>, now: Timestamp) -> ReviewReport {
    let (mut grants, problems) = grants(inventory);
    let unused_since = now - SignedDuration::from_hours(24 * UNUSED_AFTER_DAYS);
    let clients = inventory
        .clients()
        .iter()
        .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
        .map(|(key, client)| {
            let grants = grants.remove(key).unwrap_or_default();
            let unused: BTreeSet<String> = grants
                .iter()
                .filter(|g| g.mode == PolicyMode::Enforce)
                .filter(|g| g.last_used.is_none_or(|t| t < unused_since))
                .map(|g| g.tool.clone())
                .collect();
            let status = client.status.as_ref();
            let runaway_suspended = condition(client, "Suspended", Some("RunawaySuspended"));
            let phase = if runaway_suspended {
                ClientPhase::Suspended
            } else {
                lifecycle::phase(client, now)
            };
            let last_seen = status.and_then(|s| s.last_seen.as_ref()).map(|t| t.0);
            let never_used = last_seen.is_none()
                && status.is_none_or(|s| {
                    s.tool_usage.is_empty()
                        && s.resource_usage.is_empty()
                        && s.prompt_usage.is_empty()
                });
            let flags = [
                (Flag::Suspended, phase == ClientPhase::Suspended),
                (Flag::Expired, lifecycle::is_expired(client, now)),
                (
                    Flag::ReviewOverdue,
                    lifecycle::is_review_overdue(client, now),
                ),
                (Flag::Runaway, condition(client, "RunawayDetected", None)),
                (Flag::NeverUsed, never_used),
                (Flag::UnusedGrants, !unused.is_empty()),
            ]
            .into_iter()
            .filter_map(|(f, on)| on.then_some(f))
            .collect();
            let review = client.spec.review.as_ref();
            ClientReview {
                namespace: key.0.clone(),
                name: key.1.clone(),
                owner: client.spec.owner.clone(),
                description: client.spec.description.clone(),
                phase,
                expires_at: client.spec.expires_at.as_ref().map(|t| t.0),
                review_due: lifecycle::review_due(client),
                last_reviewed_at: review
                    .and_then(|r| r.last_reviewed_at.as_ref())
                    .map(|t| t.0),
                last_reviewed_by: review.and_then(|r| r.last_reviewed_by.clone()),
                last_seen,
                calls_24h: status.and_then(|s| s.calls_24h),
                grants,
                unused_grants: unused.into_iter().collect(),
                flags,
            }
        })
        .collect();
    ReviewReport {
        schema_version: SCHEMA_VERSION,
        generated_at: now,
        unused_after_days: UNUSED_AFTER_DAYS,
        clients,
        problems,
    }
}
