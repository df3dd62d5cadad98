//! `McpPolicy`: which clients may call which tools, with which extra scopes and limits.

use crate::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A grant, written in the namespace of the tools it covers: tool owners decide who calls
/// their tools.
///
/// A call is allowed when some `Enforce` policy names the calling client and the tool, and the
/// token carries the tool's scopes plus the policy's `scopes`. `Audit` policies allow nothing by
/// themselves; they record what they would have decided.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "mcpwarden.io",
    version = "v1alpha1",
    kind = "McpPolicy",
    doc = "Which McpClients may call which tools of the McpTools in this namespace, with which scopes, limits and mode.",
    plural = "mcppolicies",
    shortname = "mcpp",
    namespaced,
    cel,
    derive = "Default",
    derive = "PartialEq",
    status = "McpPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Refs","type":"string","jsonPath":".status.conditions[?(@.type==\"ResolvedRefs\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("size(self.clients) > 0 || has(self.clientSelector)").message("name clients or set a clientSelector"))]
pub struct McpPolicySpec {
    /// Why this grant exists, shown in access reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Clients granted by name.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub clients: Vec<ClientRef>,
    /// Clients granted by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_selector: Option<ClientSelector>,
    /// The tools granted: McpTools of this namespace and tool-name patterns in each.
    #[x_kube(validation = kube::core::Rule::new("size(self) >= 1").message("at least one tool grant is required"))]
    #[schemars(length(max = 256))]
    pub tools: Vec<ToolGrant>,
    /// Scopes the token must carry on top of each tool's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(SCOPES_RULE).message(SCOPES_MESSAGE))]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    pub scopes: Vec<String>,
    /// Rate per client per tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Calls per client per tool per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("dailyQuota must be at least 1"))]
    pub daily_quota: Option<u64>,
    /// `Enforce` (default) grants access; `Audit` lets the calls it covers through and records
    /// what enforcing it would have decided.
    #[serde(default)]
    pub mode: PolicyMode,
    /// How a call refused by a rate limit or quota is answered: `HttpError` (default: HTTP 429
    /// with `Retry-After` and a JSON-RPC error) or `ToolError` (a tool result with `isError: true`
    /// that tells the model when to retry, so it can back off by itself).
    #[serde(default)]
    pub throttle_response: ThrottleResponse,
}

/// How a throttled call is answered.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ThrottleResponse {
    /// HTTP 429, `Retry-After`, JSON-RPC error with `data.retryAfterMs`.
    #[default]
    HttpError,
    /// HTTP 200 with a `CallToolResult` whose `isError` is true and whose text says when to retry.
    ToolError,
}

/// An McpClient by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientRef {
    /// The McpClient's name.
    #[x_kube(validation = kube::core::Rule::new(NAME_RULE).message(NAME_MESSAGE))]
    #[schemars(length(max = 253))]
    pub name: String,
    /// The McpClient's namespace; defaults to the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(NAMESPACE_RULE).message(NAMESPACE_MESSAGE))]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// McpClients by label, in some namespaces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientSelector {
    /// Namespaces to look in; defaults to the policy's. `*` means every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(n, n == '*' || n.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("each entry must be a namespace name or '*'"))]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub namespaces: Vec<String>,
    /// Labels the McpClients must have. An empty selector matches every client in the
    /// namespaces.
    pub selector: LabelSelector,
}

/// Tools, resources and prompts of one McpTool.
///
/// A grant that names no `resources` and no `prompts` grants tools only, as before these fields
/// existed: no McpPolicy gains access on upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolGrant {
    /// The McpTool's name, in the policy's namespace.
    #[x_kube(validation = kube::core::Rule::new(NAME_RULE).message(NAME_MESSAGE))]
    #[schemars(length(max = 253))]
    pub tool_ref: String,
    /// Tool names or globs (`get_*`). When unset: every tool of the server (`["*"]`) if the grant
    /// names no `resources` and no `prompts`, else no tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("size(self) >= 1 && self.all(n, n.matches('^[A-Za-z0-9_.*/-]+$'))").message("names must be non-empty tool names or globs"))]
    #[schemars(length(max = 128), inner(length(max = 128)))]
    pub names: Option<Vec<String>>,
    /// Resources granted: URIs, URI globs (`docs://public/*`) or URI templates, matched like
    /// `McpTool.spec.resources[].uri`. A resource template is listed (`resources/templates/list`)
    /// and completed when its template text matches a grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // A schema pattern, not CEL: a CEL rule over 128 × 2048 characters exceeds the API
    // server's cost budget.
    #[schemars(
        length(max = 128),
        inner(length(min = 1, max = 2048), regex(pattern = r"^\S+$"))
    )]
    pub resources: Vec<String>,
    /// Prompt names or globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(n, n.matches('^[A-Za-z0-9_.*/-]+$'))").message("prompts must be non-empty prompt names or globs"))]
    #[schemars(length(max = 128), inner(length(max = 128)))]
    pub prompts: Vec<String>,
}

impl ToolGrant {
    /// The tool names or globs granted, with the default applied.
    pub fn tool_names(&self) -> &[String] {
        static ALL: std::sync::LazyLock<[String; 1]> =
            std::sync::LazyLock::new(|| ["*".to_owned()]);
        match &self.names {
            Some(names) => names,
            None if self.resources.is_empty() && self.prompts.is_empty() => &ALL[..],
            None => &[],
        }
    }
}

/// Observed state of an `McpPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpPolicyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` (the policy is in force) and `ResolvedRefs` (every McpTool and McpClient it
    /// names exists; the message names the missing ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
