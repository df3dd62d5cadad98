//! `McpClient`: an agent identity, with an owner, an expiry and access reviews.

use crate::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An AI agent (or any MCP client) allowed to present tokens to governed servers.
///
/// Every credential has an accountable `owner`, optionally an expiry and a review cadence.
/// `kubectl get mcpclients` is the access review: owner, phase, expiry, review due, last seen.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "mcpwarden.io",
    version = "v1alpha1",
    kind = "McpClient",
    doc = "An agent identity: owner, token matching, expiry, access reviews and suspension.",
    plural = "mcpclients",
    shortname = "mcpc",
    namespaced,
    cel,
    derive = "Default",
    derive = "PartialEq",
    status = "McpClientStatus",
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.owner"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".spec.expiresAt"}"#,
    printcolumn = r#"{"name":"Review-Due","type":"string","jsonPath":".status.reviewDue"}"#,
    printcolumn = r#"{"name":"Last-Seen","type":"date","jsonPath":".status.lastSeen"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Tools","type":"string","priority":1,"jsonPath":".status.effectiveTools"}"#,
    printcolumn = r#"{"name":"Calls-24h","type":"integer","priority":1,"jsonPath":".status.calls24h"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpClientSpec {
    /// The person or team accountable for this agent (e.g. `alice@example.com`).
    #[x_kube(validation = kube::core::Rule::new("self.trim() != ''").message("owner must not be empty"))]
    #[schemars(length(max = 253))]
    pub owner: String,
    /// What the agent does, shown in access reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How the agent's tokens are recognised.
    pub identity: ClientIdentity,
    /// When the credential stops working (RFC 3339). Unset means no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Periodic access review of this credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewSpec>,
    /// Deny every call from this client, at once, without touching the IdP.
    #[serde(default)]
    pub suspended: bool,
    /// Why the client is suspended; shown in status and audit records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub suspension_reason: Option<String>,
    /// Tokens issued (`iat`) before this instant are refused: revokes tokens already in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_tokens_issued_before: Option<Time>,
    /// Limits on all calls of this client, across every tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ClientQuota>,
}

/// How a client's tokens are matched. Exactly one of `clientId` or `serviceAccount`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.clientId) != has(self.serviceAccount)").message("exactly one of clientId or serviceAccount must be set"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.clientId) || has(self.issuer)").message("issuer is required with clientId"))]
pub struct ClientIdentity {
    /// The issuer that mints this client's tokens (`iss`). Required with `clientId`; with
    /// `serviceAccount` it defaults to the McpTool's issuer of kind `Kubernetes` when it trusts
    /// exactly one (the same namespace/name in another cluster is another identity: with
    /// several Kubernetes issuers, set it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(URL_RULE).message(URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub issuer: Option<String>,
    /// The OAuth client id, matched against the token's `client_id` (RFC 9068) or `azp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self != ''").message("clientId must not be empty"))]
    #[schemars(length(max = 512))]
    pub client_id: Option<String>,
    /// When set, the token's `sub` must also equal this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub subject: Option<String>,
    /// A Kubernetes ServiceAccount whose projected tokens identify this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountRef>,
}

/// A Kubernetes ServiceAccount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountRef {
    /// The ServiceAccount's namespace; defaults to the McpClient's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(NAMESPACE_RULE).message(NAMESPACE_MESSAGE))]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// The ServiceAccount's name.
    #[x_kube(validation = kube::core::Rule::new(NAME_RULE).message(NAME_MESSAGE))]
    #[schemars(length(max = 253))]
    pub name: String,
}

/// Periodic access review.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewSpec {
    /// Days between reviews; the next review is due `intervalDays` after `lastReviewedAt` (or
    /// after creation when never reviewed).
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 730").message("intervalDays must be between 1 and 730"))]
    pub interval_days: u32,
    /// When the access was last reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reviewed_at: Option<Time>,
    /// Who reviewed it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub last_reviewed_by: Option<String>,
    /// Deny the client while its review is overdue (otherwise it is only reported).
    #[serde(default)]
    pub enforce: bool,
}

/// Limits on all calls of one client.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.rateLimit) || has(self.dailyCalls)").message("set rateLimit, dailyCalls or both"))]
pub struct ClientQuota {
    /// Steady rate and burst across all tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Calls allowed per UTC day across all tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("dailyCalls must be at least 1"))]
    pub daily_calls: Option<u64>,
    /// Suspend the client (until a person clears it) when it is detected running away: held at
    /// its limits for most of its calls over a sustained window.
    #[serde(default)]
    pub suspend_on_runaway: bool,
}

/// Where a client stands.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ClientPhase {
    /// The client may call what its policies grant.
    #[default]
    Active,
    /// `spec.suspended` is set, or it was suspended as a runaway.
    Suspended,
    /// `spec.expiresAt` has passed.
    Expired,
    /// The access review is overdue.
    ReviewOverdue,
}

/// Observed state of an `McpClient`, written by the operator from what the sidecars report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpClientStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Expired`, `ReviewOverdue`, `Suspended`, `RunawayDetected`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Where the client stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClientPhase>,
    /// When the next access review is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_due: Option<Time>,
    /// The last call seen from this client by any sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Tool calls over the last 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "calls24h")]
    pub calls_24h: Option<u64>,
    /// Denied requests over the last 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "denials24h")]
    pub denials_24h: Option<u64>,
    /// Tools this client may call, as `<namespace>/<McpTool>/<tool pattern>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effective_tools: Vec<String>,
    /// Per tool: when the client last called it and how often over the last 24 hours, from the
    /// sidecars' usage reports. `lastUsed` outlives the 24-hour window (kept 90 days), so an
    /// access review can tell granted tools that go unused. Sorted by `tool`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "tool_usage_schema")]
    pub tool_usage: Vec<ToolUsage>,
    /// Per resource entry: when the client last read a resource it governs (or asked
    /// completions for its template) and how often over the last 24 hours. Kept as
    /// `toolUsage` is. Sorted by `resource`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "resource_usage_schema")]
    pub resource_usage: Vec<ResourceUsage>,
    /// Per prompt entry: when the client last got a prompt it governs (or asked completions
    /// for it) and how often over the last 24 hours. Kept as `toolUsage` is. Sorted by
    /// `prompt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "prompt_usage_schema")]
    pub prompt_usage: Vec<PromptUsage>,
}

/// What one McpClient did with one tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolUsage {
    /// The tool, as `<namespace>/<McpTool>/<tool name>` (the form of `effectiveTools`).
    #[schemars(length(max = 1024))]
    pub tool: String,
    /// The last report of a call of this tool (the reporting sidecar's last request from the
    /// client, so at most a report interval late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Time>,
    /// Calls of this tool over the last 24 hours.
    #[serde(default)]
    #[serde(rename = "calls24h")]
    pub calls_24h: u64,
}

/// Schema of `toolUsage`: a list-map keyed by `tool`, so server-side apply merges per tool.
fn tool_usage_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_map_schema::<ToolUsage>(generator, "tool")
}

/// What one McpClient did with the resources of one resource entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// The entry, as `<namespace>/<McpTool>/<uri pattern>` (`*`: URIs no entry declares,
    /// under `defaultResourceAction: Allow`).
    #[schemars(length(max = 2400))]
    pub resource: String,
    /// The last report of a use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Time>,
    /// Uses over the last 24 hours.
    #[serde(default)]
    #[serde(rename = "calls24h")]
    pub calls_24h: u64,
}

/// Schema of `resourceUsage`: a list-map keyed by `resource`.
fn resource_usage_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_map_schema::<ResourceUsage>(generator, "resource")
}

/// What one McpClient did with the prompts of one prompt entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptUsage {
    /// The entry, as `<namespace>/<McpTool>/<name pattern>` (`*`: prompts no entry declares,
    /// under `defaultPromptAction: Allow`).
    #[schemars(length(max = 1024))]
    pub prompt: String,
    /// The last report of a use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<Time>,
    /// Uses over the last 24 hours.
    #[serde(default)]
    #[serde(rename = "calls24h")]
    pub calls_24h: u64,
}

/// Schema of `promptUsage`: a list-map keyed by `prompt`.
fn prompt_usage_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    list_map_schema::<PromptUsage>(generator, "prompt")
}
