//! Building blocks shared by the three kinds: rates, durations, status conditions.

use kube::KubeSchema;
use schemars::{Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

/// CEL: a Go-style duration made of whole units (`500ms`, `30s`, `5m`, `1h30m`) that is not zero.
pub(crate) const DURATION_RULE: &str =
    "self.matches('^([0-9]+(ms|s|m|h))+$') && !self.matches('^(0+(ms|s|m|h))+$')";
pub(crate) const DURATION_MESSAGE: &str =
    "must be a positive duration such as 500ms, 30s, 5m or 1h30m";

/// CEL: an OAuth scope token (RFC 6749 §3.3: printable ASCII, no space, `"` or `\`).
pub(crate) const SCOPES_RULE: &str = "self.all(s, s.matches('^[!#-\\\\[\\\\]-~]+$'))";
pub(crate) const SCOPES_MESSAGE: &str = "every scope must be a non-empty OAuth scope token (printable ASCII, no spaces, quotes or backslashes)";

/// CEL: an absolute http(s) URL.
pub(crate) const URL_RULE: &str = "self.matches('^https?://[^\\\\s/?#]+([/?#][^\\\\s]*)?$')";
pub(crate) const URL_MESSAGE: &str = "must be an absolute http:// or https:// URL";

/// CEL: an RFC 8707 resource indicator (absolute http(s) URL without a fragment).
pub(crate) const RESOURCE_RULE: &str = "self.matches('^https?://[^\\\\s/?#]+([/?][^\\\\s#]*)?$')";
pub(crate) const RESOURCE_MESSAGE: &str =
    "must be an absolute http:// or https:// URL without a fragment (RFC 8707)";

/// CEL: a DNS-1123 subdomain (object names).
pub(crate) const NAME_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')";
pub(crate) const NAME_MESSAGE: &str = "must be a Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";

/// CEL: a DNS-1123 label (namespaces).
pub(crate) const NAMESPACE_RULE: &str = "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')";
pub(crate) const NAMESPACE_MESSAGE: &str = "must be a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit";

/// A token-bucket rate: `requests` per `period`, with bursts up to `burst`.
///
/// Enforced as GCRA: a steady `requests / period`, and up to `burst` calls at once after a quiet
/// spell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("!has(self.burst) || self.burst >= 1").message("burst must be at least 1"))]
pub struct RateLimit {
    /// Calls allowed per `period`. Must be at least 1.
    #[x_kube(validation = kube::core::Rule::new("self >= 1").message("requests must be at least 1"))]
    pub requests: u32,
    /// The period over which `requests` are allowed, as a duration (`1s`, `1m`, `1h`).
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub period: String,
    /// Calls allowed back to back after a quiet spell. Defaults to `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Schema of a `conditions` list: a list-map keyed by `type`, so server-side apply merges per
/// condition.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    list_map_schema::<Condition>(generator, "type")
}

/// Schema of a list of `T` as a list-map keyed by `key` (server-side apply merges per item).
pub fn list_map_schema<T: schemars::JsonSchema>(
    generator: &mut SchemaGenerator,
    key: &str,
) -> Schema {
    let mut schema = generator.subschema_for::<Vec<T>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!([key]),
    );
    schema
}

/// `mode` of a policy: enforce its decisions, or only record what it would have decided.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum PolicyMode {
    /// Calls are allowed or denied as the policy says.
    #[default]
    Enforce,
    /// Nothing is denied because of this policy; audit records say what it would have decided.
    Audit,
}
