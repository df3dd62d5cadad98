//! `McpTool`: a team's MCP server, how its callers authenticate, and what each of its tools needs.

use crate::common::*;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An MCP server governed by mcp-warden, declared by the team that runs it.
///
/// The sidecar next to each pod matched by `server.selector` becomes this server's OAuth
/// resource server: it validates callers' tokens against `authentication`, and lets a call reach
/// a tool only when an `McpPolicy` grants it and the token carries the tool's `scopes`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "mcpwarden.io",
    version = "v1alpha1",
    kind = "McpTool",
    doc = "An MCP server governed by mcp-warden: where it runs, who may authenticate to it, and what each of its tools requires.",
    plural = "mcptools",
    shortname = "mcpt",
    namespaced,
    cel,
    derive = "Default",
    derive = "PartialEq",
    status = "McpToolStatus",
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.owner"}"#,
    printcolumn = r#"{"name":"Resource","type":"string","jsonPath":".spec.server.resource"}"#,
    printcolumn = r#"{"name":"Pods","type":"integer","jsonPath":".status.governedPods"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpToolSpec {
    /// The team or person accountable for this server (e.g. `team-payments`).
    #[x_kube(validation = kube::core::Rule::new("self.trim() != ''").message("owner must not be empty"))]
    #[schemars(length(max = 253))]
    pub owner: String,
    /// What the server is for, shown in access reviews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the server runs and the URI its callers know it by.
    pub server: ServerSpec,
    /// How callers prove who they are.
    pub authentication: AuthenticationSpec,
    /// What each tool requires. A tool the server exposes that no entry matches is governed by
    /// `defaultAction`. Each name appears once.
    #[serde(default)]
    #[schemars(length(max = 512), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tools: Vec<ToolSpec>,
    /// What happens to tools that match no entry in `tools`: `Deny` (default) hides them from
    /// every caller; `Allow` lets policies grant them with no tool-level scopes.
    #[serde(default)]
    pub default_action: DefaultAction,
    /// What each resource requires: entries by exact URI, URI glob (`docs://*`) or RFC 6570 URI
    /// template (`file:///{path}`). A resource that no entry matches is governed by
    /// `defaultResourceAction`. Each `uri` appears once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["uri"]))]
    pub resources: Vec<ResourceSpec>,
    /// What happens to resources that match no entry in `resources`: `Deny` (default) hides them
    /// from every caller (not listed, not readable); `Allow` lets policies grant them with no
    /// resource-level scopes.
    #[serde(default)]
    pub default_resource_action: DefaultAction,
    /// What each prompt requires, by name or glob. A prompt that no entry matches is governed by
    /// `defaultPromptAction`. Each name appears once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 512), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub prompts: Vec<PromptSpec>,
    /// What happens to prompts that match no entry in `prompts`: `Deny` (default) or `Allow`.
    #[serde(default)]
    pub default_prompt_action: DefaultAction,
    /// The requests this server may send to its callers (server-to-client), relayed only while
    /// they belong to one of the caller's requests: `Elicitation` (form and URL mode), and the
    /// kinds the 2026-07-28 revision deprecates, `Sampling` and `Roots`. Others are withheld and
    /// answered to the server with an error. Default: `[Elicitation]`.
    #[serde(default = "default_server_requests")]
    #[schemars(length(max = 3))]
    #[x_kube(validation = kube::core::Rule::new("self.all(x, self.exists_one(y, y == x))").message("each kind appears once"))]
    pub server_requests: Vec<ServerRequest>,
    /// What happens to JSON-RPC methods the sidecar has no rule for (vendor extensions, methods
    /// of later protocol revisions): `Deny` (default) answers −32601 Method not found without
    /// forwarding; `Allow` forwards them for any identified caller, undecided.
    #[serde(default)]
    pub unknown_methods: DefaultAction,
    /// A cap on calls to each tool of this server by all callers together, applied in addition
    /// to per-client limits. A tool entry's own `rateLimit` takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Deny clients whose access review is overdue (see `McpClient.spec.review`), even when the
    /// client itself does not ask for enforcement.
    #[serde(default)]
    pub enforce_reviews: bool,
    /// What the sidecar sends the server about each call, since the caller's own token never
    /// reaches it: an identity JWT the sidecar signs, credentials from a Secret, or a token
    /// exchanged at the IdP (RFC 8693). None by default. See `docs/upstream-auth.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_auth: Option<UpstreamAuthSpec>,
}

/// CEL: an HTTP header name the sidecar may set on requests to the upstream (not one the
/// proxy or the MCP transport owns).
const HEADER_RULE: &str = "self.matches('^[A-Za-z0-9][A-Za-z0-9-]*$') && !(self.lowerAscii() in ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'te', 'upgrade', 'accept', 'cookie', 'mcp-session-id', 'mcp-protocol-version', 'mcp-method', 'mcp-name', 'last-event-id', 'traceparent', 'tracestate'])";
const HEADER_MESSAGE: &str = "must be an HTTP header name the proxy does not own (not Host, Content-*, Accept, Cookie, Mcp-*, Last-Event-ID, trace headers or hop-by-hop headers)";

/// How the sidecar authenticates each call to the upstream. Every configured part must
/// produce its header, or the call is refused (502) and the upstream receives nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new("has(self.identity) || size(self.credentials) > 0 || has(self.tokenExchange)").message("upstreamAuth needs identity, credentials or tokenExchange"))]
pub struct UpstreamAuthSpec {
    /// A short-lived JWT per call, signed by the sidecar with a key the operator distributes
    /// (standalone: `--upstream-identity-key`), telling the server who calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<UpstreamIdentitySpec>,
    /// Static credentials from Secrets in the McpTool's namespace (standalone: files), one
    /// header each. A rotated Secret is used within a second.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub credentials: Vec<UpstreamCredentialSpec>,
    /// The caller's token exchanged at the IdP (RFC 8693) for one meant for the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchangeSpec>,
}

/// The identity JWT: `iss` the McpTool (`issuer`), `aud` the upstream, `sub` the caller's
/// subject, `client` the McpClient, `scope` and `grant` what allowed the call, `act` the caller's
/// own delegation chain, living at most 60 s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamIdentitySpec {
    /// The header that carries it.
    #[serde(default = "default_identity_header")]
    #[x_kube(validation = kube::core::Rule::new(HEADER_RULE).message(HEADER_MESSAGE))]
    #[schemars(length(max = 128))]
    pub header: String,
    /// Put before the JWT in the header, e.g. `Bearer ` (default: nothing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64), regex(pattern = r"^[!-~ ]*$"))]
    pub prefix: String,
    /// `aud`: what the server checks it is meant for. Default: `server.upstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub audience: Option<String>,
    /// `iss`. Default: `server.resource`, the McpTool's canonical URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub issuer: Option<String>,
    /// How long each JWT lives, in seconds (1 to 60).
    #[serde(default = "default_identity_lifetime")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 60").message("lifetimeSeconds must be between 1 and 60"))]
    pub lifetime_seconds: u32,
}

impl Default for UpstreamIdentitySpec {
    fn default() -> Self {
        Self {
            header: default_identity_header(),
            prefix: String::new(),
            audience: None,
            issuer: None,
            lifetime_seconds: default_identity_lifetime(),
        }
    }
}

fn default_identity_header() -> String {
    "X-Mcp-Warden-Identity".to_owned()
}

fn default_identity_lifetime() -> u32 {
    60
}

/// One value of a Secret sent as a header on every call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamCredentialSpec {
    /// The Secret (in the McpTool's namespace) and its key. Standalone: the file
    /// `<--upstream-secrets-dir>/<name>/<key>`, as a Secret volume lays it out.
    pub secret_ref: SecretKeyRef,
    /// The header that carries it.
    #[serde(default = "default_credential_header")]
    #[x_kube(validation = kube::core::Rule::new(HEADER_RULE).message(HEADER_MESSAGE))]
    #[schemars(length(max = 128))]
    pub header: String,
    /// Put before the value, e.g. `Bearer ` or `Basic ` (default: nothing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 64), regex(pattern = r"^[!-~ ]*$"))]
    pub prefix: String,
}

fn default_credential_header() -> String {
    "Authorization".to_owned()
}

/// A key of a Secret in the referring object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[x_kube(validation = kube::core::Rule::new(NAME_RULE).message(NAME_MESSAGE))]
    #[schemars(length(max = 253))]
    pub name: String,
    /// The key in its `data`.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[-._a-zA-Z0-9]+$')").message("key must be a Secret data key: letters, digits, '-', '_' and '.'"))]
    #[schemars(length(max = 253))]
    pub key: String,
}

/// RFC 8693 token exchange: the caller's token is the `subject_token`; the issued token is sent
/// to the upstream. Cached per caller until shortly before it expires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchangeSpec {
    /// The IdP's token endpoint (https, or http on loopback only).
    #[x_kube(validation = kube::core::Rule::new(URL_RULE).message(URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub token_endpoint: String,
    /// `audience` of the exchange: the upstream, or the API behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub audience: Option<String>,
    /// `resource` (RFC 8707) of the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub resource: Option<String>,
    /// `scope` asked for (space-separated); default: none, the IdP decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub scope: Option<String>,
    /// The sidecar's client id at the IdP.
    #[schemars(length(min = 1, max = 256))]
    pub client_id: String,
    /// Its client secret (HTTP Basic at the token endpoint).
    pub client_secret_ref: SecretKeyRef,
    /// The header that carries the exchanged token (as `Bearer <token>` unless `prefix`).
    #[serde(default = "default_credential_header")]
    #[x_kube(validation = kube::core::Rule::new(HEADER_RULE).message(HEADER_MESSAGE))]
    #[schemars(length(max = 128))]
    pub header: String,
    /// Put before the token (default `Bearer `).
    #[serde(default = "default_bearer")]
    #[schemars(length(max = 64), regex(pattern = r"^[!-~ ]*$"))]
    pub prefix: String,
}

fn default_bearer() -> String {
    "Bearer ".to_owned()
}

/// Where the MCP server runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    /// The pods that run this server; each gets the sidecar and this configuration. In
    /// standalone mode (no cluster) the selector is not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// The canonical URI clients use for this server (RFC 9728 `resource`). Access tokens must
    /// name it in `aud`.
    #[x_kube(validation = kube::core::Rule::new(RESOURCE_RULE).message(RESOURCE_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub resource: String,
    /// The MCP endpoint of the server inside the pod, which the sidecar forwards to.
    #[serde(default = "default_upstream")]
    #[x_kube(validation = kube::core::Rule::new(URL_RULE).message(URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub upstream: String,
}

fn default_upstream() -> String {
    "http://127.0.0.1:8080/mcp".to_owned()
}

/// How callers authenticate: bearer access tokens from one of the trusted issuers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationSpec {
    /// Trusted token issuers (OAuth 2.1 authorization servers, or the cluster's ServiceAccount
    /// issuer). At least one.
    #[x_kube(validation = kube::core::Rule::new("size(self) >= 1").message("at least one issuer is required"))]
    #[schemars(length(max = 16))]
    pub issuers: Vec<IssuerSpec>,
    /// The longest lifetime (`exp - iat`) a token may have; longer-lived tokens are refused.
    #[serde(default = "default_max_token_lifetime")]
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub max_token_lifetime: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    #[schemars(length(max = 32))]
    pub clock_skew: String,
    /// The scopes every caller asks for to begin: the `scope` of the 401 challenge, which
    /// spec-following clients request instead of everything in `scopes_supported`. A hint, not
    /// a requirement: each call still needs only its own scopes. Keep them to what any
    /// registered agent may obtain from the IdP; a call that needs more is answered 403
    /// `insufficient_scope` naming what it needs (step-up). When empty, the 401 names the
    /// scopes the McpPolicies require of every call (often none), and `scopes_supported` is
    /// all a client can go by: set it whenever tools need scopes not every agent may get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(SCOPES_RULE).message(SCOPES_MESSAGE))]
    #[schemars(length(max = 16), inner(length(max = 256)))]
    pub base_scopes: Vec<String>,
}

fn default_max_token_lifetime() -> String {
    "1h".to_owned()
}

fn default_leeway() -> String {
    "30s".to_owned()
}

/// A trusted token issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerSpec {
    /// The issuer identifier, compared exactly with the token's `iss`.
    #[x_kube(validation = kube::core::Rule::new(URL_RULE).message(URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub issuer: String,
    /// Where the signing keys are. When unset, they are found through OIDC / RFC 8414
    /// discovery from `issuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(URL_RULE).message(URL_MESSAGE))]
    #[schemars(length(max = 2048))]
    pub jwks_uri: Option<String>,
    /// Audiences accepted besides `server.resource` (e.g. the ServiceAccount token audience).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub audiences: Vec<String>,
    /// Signature algorithms accepted from this issuer. `none` and HMAC algorithms are never
    /// accepted.
    #[serde(default = "default_algorithms")]
    #[x_kube(validation = kube::core::Rule::new("size(self) >= 1").message("at least one algorithm is required"))]
    #[schemars(length(max = 8))]
    pub algorithms: Vec<SigningAlgorithm>,
    /// `Kubernetes` marks the cluster's ServiceAccount token issuer: its tokens identify clients
    /// by ServiceAccount (`McpClient.spec.identity.serviceAccount`).
    #[serde(default)]
    pub kind: IssuerKind,
}

fn default_algorithms() -> Vec<SigningAlgorithm> {
    vec![SigningAlgorithm::RS256, SigningAlgorithm::ES256]
}

/// What kind of tokens an issuer mints.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum IssuerKind {
    /// OAuth 2.1 access tokens (RFC 9068 JWTs); clients are matched by `client_id` / `azp`.
    #[default]
    OAuth,
    /// Kubernetes ServiceAccount tokens; clients are matched by ServiceAccount.
    Kubernetes,
}

/// JWS algorithms accepted for access tokens (asymmetric only).
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

/// What one tool (or a family of tools, by glob) requires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    /// The tool name as the server lists it, or a glob (`*` matches any run of characters,
    /// e.g. `refund_*`). When several entries match, the most specific (longest literal) wins.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9_.*/-]+$')").message("name must be a tool name or glob of letters, digits, '_', '-', '.', '/' and '*'"))]
    #[schemars(length(max = 128))]
    pub name: String,
    /// OAuth scopes the caller's token must carry to call the tool (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(SCOPES_RULE).message(SCOPES_MESSAGE))]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    pub scopes: Vec<String>,
    /// How much damage a wrong call can do; reported in audit records and access reviews.
    #[serde(default)]
    pub risk: Risk,
    /// A cap on calls to this tool by all callers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// What audit records keep of this tool's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<ToolAuditSpec>,
}

/// What one resource (or a family of resources, by glob or URI template) requires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSpec {
    /// The resource URI as the server lists it, a glob (`*` matches any run of characters:
    /// `docs://public/*`), or an RFC 6570 URI template (`{id}` matches a run without `/`,
    /// `{+path}` any run). When several entries match, the most specific (longest literal) wins.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^\S+$"))]
    pub uri: String,
    /// OAuth scopes the caller's token must carry to read the resource (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(SCOPES_RULE).message(SCOPES_MESSAGE))]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    pub scopes: Vec<String>,
    /// How much damage a wrong read can do; reported in audit records and access reviews.
    #[serde(default)]
    pub risk: Risk,
    /// A cap on reads of this resource by all callers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// What audit records keep of this resource's reads (`redact` has nothing to apply to:
    /// a read has no arguments; `captureResponse` records the contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<ToolAuditSpec>,
}

/// What one prompt (or a family of prompts, by glob) requires.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptSpec {
    /// The prompt name as the server lists it, or a glob (`*` matches any run of characters).
    /// When several entries match, the most specific (longest literal) wins.
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9_.*/-]+$')").message("name must be a prompt name or glob of letters, digits, '_', '-', '.', '/' and '*'"))]
    #[schemars(length(max = 128))]
    pub name: String,
    /// OAuth scopes the caller's token must carry to get the prompt (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new(SCOPES_RULE).message(SCOPES_MESSAGE))]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    pub scopes: Vec<String>,
    /// How much damage a wrong use can do; reported in audit records and access reviews.
    #[serde(default)]
    pub risk: Risk,
    /// A cap on gets of this prompt by all callers together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// What audit records keep of this prompt's gets (`redact` applies to its arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<ToolAuditSpec>,
}

/// A kind of request a server sends to its callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ServerRequest {
    /// `elicitation/create` (form and URL mode): the server asks the user for input.
    Elicitation,
    /// `sampling/createMessage`: the server asks the caller's model for a completion
    /// (deprecated in 2026-07-28).
    Sampling,
    /// `roots/list`: the server asks for the caller's file-system roots (deprecated in
    /// 2026-07-28).
    Roots,
}

impl ServerRequest {
    /// The kind of a server-to-client request method, if it is one.
    pub fn of(method: &str) -> Option<Self> {
        match method {
            "elicitation/create" => Some(Self::Elicitation),
            "sampling/createMessage" => Some(Self::Sampling),
            "roots/list" => Some(Self::Roots),
            _ => None,
        }
    }
}

fn default_server_requests() -> Vec<ServerRequest> {
    vec![ServerRequest::Elicitation]
}

/// How much damage a wrong call to a tool can do.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Risk {
    /// Reads public or low-value data.
    #[default]
    Low,
    /// Reads sensitive data.
    Medium,
    /// Changes state (writes, payments, messages sent).
    High,
    /// Irreversible or high-value changes.
    Critical,
}

/// What audit records keep of a tool's calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolAuditSpec {
    /// Argument fields replaced by a keyed hash in audit records: JSON pointers into the
    /// arguments (`/card/number`) or bare key names matched at any depth (`password`). Equal
    /// values hash equally, so they still correlate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, p.startsWith('/') || p.matches('^[^/]+$'))").message("each entry must be a JSON pointer starting with '/' or a bare key name"))]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub redact: Vec<String>,
    /// Also record the tool's response content (with the same redaction).
    #[serde(default)]
    pub capture_response: bool,
}

/// What happens to tools that match no entry in `McpTool.spec.tools`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DefaultAction {
    /// Undeclared tools are hidden from every caller and cannot be called.
    #[default]
    Deny,
    /// Undeclared tools can be granted by policies; they need no tool-level scopes.
    Allow,
}

/// Observed state of an `McpTool`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpToolStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid and governed pods enforce it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// How many pods run this server behind a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governed_pods: Option<i32>,
    /// Tools the upstream server lists, as reported by its sidecars.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_seen: Vec<String>,
    /// Tools the upstream lists that no entry in `spec.tools` matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared_tools: Vec<String>,
}
