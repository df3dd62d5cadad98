//! The access review as data: for every McpClient, its owner, lifecycle dates, last use, the
//! tools it may call (through which policies, with which scopes), grants unused for 30 days and
//! flags. Pure: an [`Inventory`] (specs and statuses) and a clock in, a [`ReviewReport`] out.
//!
//! ```text
//! for each McpTool: bundle_for_tools → compile → RuleSet
//!   for each client of the RuleSet, for each candidate tool name (declared entries, the
//!   policies' grant names, the McpTool's toolsSeen, the client's toolUsage):
//!     RuleSet::tool_scopes(name) (None: undeclared and denied) × Client::grants_for(name)
//!       → Grant { tool, policy, mode, scopes: needed_scopes(tool, policy), lastUsed }
//! ```
//!
//! Grants are exactly what the sidecar enforces: the same `compile` and the same lookups
//! `decide` uses. A grant is *unused* when it is an `Enforce` grant and status.toolUsage shows no
//! call of a tool it covers in the last [`UNUSED_AFTER_DAYS`] days.

use jiff::{SignedDuration, Timestamp};
use mcp_warden_crds::{ClientPhase, McpClient, PolicyMode};
use mcp_warden_policy::{
    Inventory, bundle_for_tools, compile, decide::needed_scopes, glob::Glob, inventory::Key,
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

/// One tool a client may call through one policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// `<namespace>/<McpTool>/<tool name or pattern>`.
    pub tool: String,
    /// `<namespace>/<McpPolicy>`.
    pub policy: String,
    /// `Enforce`, or `Audit` (recorded, not allowed).
    pub mode: PolicyMode,
    /// Scopes the token needs: the tool's and the policy's.
    pub scopes: Vec<String>,
    /// The last call of this tool (of any tool the pattern covers), from status.toolUsage.
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

/// The last use of `pattern` (a tool name or glob, qualified) in the client's toolUsage.
fn last_used(client: &McpClient, prefix: &str, pattern: &Glob) -> Option<Timestamp> {
    client
        .status
        .iter()
        .flat_map(|s| &s.tool_usage)
        .filter_map(|u| {
            let name = u.tool.strip_prefix(prefix)?;
            pattern
                .matches(name)
                .then(|| u.last_used.as_ref().map(|t| t.0))
                .flatten()
        })
        .max()
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
        let mut names: BTreeSet<String> = tool.spec.tools.iter().map(|t| t.name.clone()).collect();
        names.extend(
            tool.status
                .iter()
                .flat_map(|s| s.tools_seen.iter().cloned()),
        );
        for policy in &bundle.policies {
            let names_here = policy
                .spec
                .tools
                .iter()
                .filter(|g| g.tool_ref == key.1)
                .flat_map(|g| g.tool_names().iter().cloned());
            names.extend(names_here);
        }
        for client in &rules.clients {
            let ckey = (client.object.namespace.clone(), client.object.name.clone());
            let Some(object) = inventory.clients().get(&ckey) else {
                continue;
            };
            let mut candidates = names.clone();
            candidates.extend(
                object
                    .status
                    .iter()
                    .flat_map(|s| &s.tool_usage)
                    .filter_map(|u| u.tool.strip_prefix(&prefix).map(str::to_owned)),
            );
            let list = out.entry(ckey).or_default();
            for name in &candidates {
                let Some(tool_scopes) = rules.tool_scopes(name) else {
                    continue;
                };
                let policies: BTreeSet<usize> = client.grants_for(name).collect();
                for p in policies {
                    let policy = &rules.policies[p];
                    list.push(Grant {
                        tool: format!("{prefix}{name}"),
                        policy: policy.object.ns_name().to_string(),
                        mode: policy.mode,
                        scopes: needed_scopes(tool_scopes, &policy.scopes),
                        last_used: last_used(object, &prefix, &Glob::new(name.as_str())),
                    });
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
            let never_used = last_seen.is_none() && status.is_none_or(|s| s.tool_usage.is_empty());
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
