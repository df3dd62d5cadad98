//! `compile(Bundle) → RuleSet`: the indexed form `decide` reads on every request.
//!
//! ```text
//! Bundle{tools, clients, policies}
//!   ├─ McpTool      → server, issuers, Entries of tools, resources and prompts
//!   │                 (exact map + globs by specificity, each with its default action)
//!   ├─ McpClient    → clients, indexed by (issuer, client_id) and by ServiceAccount
//!   └─ McpPolicy    → Grants per client and capability: exact names → policies, plus globs
//! ```
//!
//! Lookups cost the same with 10 or 10,000 clients: a request finds its client by hash, then
//! only that client's grants are scanned.

pub use crate::capability::{Capability, Entries, Entry, Grants, Rate};
use crate::{
    FastMap, Kind, ObjectRef,
    bundle::{Bundle, granted_clients_in},
    capability::GrantsBuilder,
    duration,
    inventory::{Key, key},
    lifecycle,
};
use jiff::Timestamp;
use mcp_warden_crds::{
    DefaultAction, IssuerKind, McpClient, McpTool, PolicyMode, RateLimit, Risk, ServerRequest,
    SigningAlgorithm, ThrottleResponse, ToolAuditSpec, UpstreamAuthSpec,
};
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

/// A bundle that cannot be enforced at all. The sidecar keeps its previous RuleSet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// No McpTool governs this workload.
    #[error(
        "no McpTool applies to this workload: check the McpTool's server.selector against the pod's labels"
    )]
    NoTool,
    /// Several McpTools claim the workload.
    #[error(
        "several McpTools apply to this workload ({0}): a pod runs one MCP server, so exactly one McpTool must select it"
    )]
    AmbiguousTool(String),
    /// A field the CRD validation should have rejected.
    #[error("{object}: {path}: {message}")]
    Invalid {
        /// The object at fault.
        object: ObjectRef,
        /// The field.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A cross-object problem, reported as a status condition on `object` (never fatal).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The object whose status should carry it.
    pub object: ObjectRef,
    /// The condition type (`ResolvedRefs`, `Accepted`).
    pub condition: &'static str,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

/// Annotation on an McpClient by which a person clears a runaway suspension: an RFC 3339
/// timestamp; runaway flags raised before it are lifted. An unparseable value is ignored and
/// reported as a `Ready`/`InvalidAnnotation` problem.
pub const RUNAWAY_CLEARED_AT_ANNOTATION: &str = "mcpwarden.io/runaway-cleared-at";

/// A trusted issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer {
    /// `iss`.
    pub issuer: String,
    /// Where the keys are; discovery when `None`.
    pub jwks_uri: Option<String>,
    /// Accepted audiences (always including the server's resource URI first).
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<SigningAlgorithm>,
    /// OAuth or Kubernetes ServiceAccount tokens.
    pub kind: IssuerKind,
}

/// A compiled McpClient.
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    /// The McpClient.
    pub object: ObjectRef,
    /// Its owner.
    pub owner: String,
    /// The OAuth client id, for `clientId` identities.
    pub client_id: Option<String>,
    /// Required `sub`, when set.
    pub subject: Option<String>,
    /// Issuer constraint for ServiceAccount identities.
    pub issuer: Option<String>,
    /// `spec.suspended`.
    pub suspended: bool,
    /// `spec.suspensionReason`.
    pub suspension_reason: Option<String>,
    /// `spec.expiresAt`.
    pub expires_at: Option<Timestamp>,
    /// When the access review is due.
    pub review_due: Option<Timestamp>,
    /// Whether an overdue review denies calls (client or tool asks for it).
    pub review_enforced: bool,
    /// Tokens issued before this are refused.
    pub revoke_before: Option<Timestamp>,
    /// Client-wide rate.
    pub rate_limit: Option<Rate>,
    /// Client-wide calls per UTC day.
    pub daily_calls: Option<u64>,
    /// Suspend when running away.
    pub suspend_on_runaway: bool,
    /// When a person last cleared a runaway suspension: the annotation
    /// [`RUNAWAY_CLEARED_AT_ANNOTATION`] (RFC 3339). Runaway flags raised before it are lifted.
    pub runaway_cleared_at: Option<Timestamp>,
    /// Its grants of tools, resources and prompts, by `Capability` (in `Capability::ALL` order).
    grants: [Grants; 3],
}

/// A compiled McpPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The McpPolicy.
    pub object: ObjectRef,
    /// Enforce or Audit.
    pub mode: PolicyMode,
    /// Extra scopes.
    pub scopes: Vec<String>,
    /// Per client per tool rate.
    pub rate_limit: Option<Rate>,
    /// Per client per tool calls per UTC day.
    pub daily_quota: Option<u64>,
    /// How throttled calls granted by this policy are answered.
    pub throttle_response: ThrottleResponse,
}

/// Everything `decide` needs for one governed server, indexed for per-request lookups.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    /// The bundle version this was compiled from.
    pub version: String,
    /// The McpTool.
    pub tool: ObjectRef,
    /// Canonical resource URI (token audience, PRM `resource`).
    pub resource: String,
    /// Upstream MCP endpoint.
    pub upstream: String,
    /// Trusted issuers.
    pub issuers: Vec<Issuer>,
    /// Longest accepted token lifetime.
    pub max_token_lifetime: Duration,
    /// Tolerated clock skew.
    pub clock_skew: Duration,
    /// `spec.authentication.baseScopes`: what every caller asks for to begin.
    pub base_scopes: Vec<String>,
    /// What each tool requires (`spec.tools`, `spec.defaultAction`).
    pub tools: Entries,
    /// What each resource requires (`spec.resources`, `spec.defaultResourceAction`).
    pub resources: Entries,
    /// What each prompt requires (`spec.prompts`, `spec.defaultPromptAction`).
    pub prompts: Entries,
    /// `spec.serverRequests`: what the server may ask its callers.
    pub server_requests: Vec<ServerRequest>,
    /// `spec.unknownMethods`: methods the sidecar has no rule for.
    pub unknown_methods: DefaultAction,
    /// Per-tool cap for all callers (McpTool-wide).
    pub tool_rate_limit: Option<Rate>,
    /// `spec.upstreamAuth`: what the sidecar sends the upstream about each call.
    pub upstream_auth: Option<UpstreamAuthSpec>,
    /// Clients.
    pub clients: Vec<Client>,
    /// Policies.
    pub policies: Vec<Policy>,
    /// Cross-object problems found while compiling.
    pub problems: Vec<Problem>,
    by_client_id: Pairs,
    by_service_account: Pairs,
}

/// `first → second → client indexes` (issuer → clientId, or namespace → ServiceAccount): looked
/// up with two `&str`, no key built per request.
type Pairs = FastMap<String, FastMap<String, Vec<usize>>>;

fn pair<'p>(pairs: &'p Pairs, first: &str, second: &str) -> &'p [usize] {
    pairs
        .get(first)
        .and_then(|m| m.get(second))
        .map_or(&[], Vec::as_slice)
}

impl RuleSet {
    /// The tool entry governing `tool`: the exact entry, else the most specific glob.
    pub fn entry(&self, tool: &str) -> Option<&Entry> {
        self.tools.entry(tool)
    }

    /// The entries of one capability.
    pub fn entries(&self, capability: Capability) -> &Entries {
        match capability {
            Capability::Tool => &self.tools,
            Capability::Resource => &self.resources,
            Capability::Prompt => &self.prompts,
        }
    }

    /// Clients whose `clientId` identity matches.
    pub(crate) fn clients_by_id(&self, issuer: &str, client_id: &str) -> &[usize] {
        pair(&self.by_client_id, issuer, client_id)
    }

    /// The issuer of ServiceAccount identities that name none: the McpTool's Kubernetes issuer
    /// when it trusts exactly one (`None` with zero or several).
    pub fn sole_kubernetes_issuer(&self) -> Option<&str> {
        let mut kubernetes = self
            .issuers
            .iter()
            .filter(|i| i.kind == IssuerKind::Kubernetes);
        match (kubernetes.next(), kubernetes.next()) {
            (Some(only), None) => Some(&only.issuer),
            _ => None,
        }
    }

    /// Clients whose ServiceAccount identity matches.
    pub(crate) fn clients_by_service_account(&self, namespace: &str, name: &str) -> &[usize] {
        pair(&self.by_service_account, namespace, name)
    }
}

impl Client {
    /// Policy indexes granting `tool` to this client: exact grants, then glob grants, each in
    /// grant order (policy order, then name order within a policy).
    pub fn grants_for<'a>(&'a self, tool: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.grants(Capability::Tool).matching(tool)
    }

    /// This client's grants of one capability.
    pub fn grants(&self, capability: Capability) -> &Grants {
        &self.grants[capability as usize]
    }
}

fn rate(
    object: &ObjectRef,
    path: &str,
    limit: Option<&RateLimit>,
) -> Result<Option<Rate>, CompileError> {
    let Some(limit) = limit else { return Ok(None) };
    let period = duration::parse(&limit.period).map_err(|message| CompileError::Invalid {
        object: object.clone(),
        path: format!("{path}.period"),
        message,
    })?;
    if limit.requests == 0 || period.is_zero() {
        return Err(CompileError::Invalid {
            object: object.clone(),
            path: path.to_owned(),
            message: "a rate limit needs requests >= 1 and a positive period".into(),
        });
    }
    Ok(Some(Rate {
        requests: limit.requests,
        period,
        burst: limit.burst.unwrap_or(limit.requests).max(1),
    }))
}

fn parse_duration(object: &ObjectRef, path: &str, text: &str) -> Result<Duration, CompileError> {
    duration::parse(text).map_err(|message| CompileError::Invalid {
        object: object.clone(),
        path: path.to_owned(),
        message,
    })
}

/// Compiles a bundle holding exactly one McpTool.
pub fn compile(bundle: &Bundle) -> Result<RuleSet, CompileError> {
    let tool: &McpTool = match bundle.tools.as_slice() {
        [] => return Err(CompileError::NoTool),
        [one] => one,
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|t| format!("{}/{}", key(&t.metadata).0, key(&t.metadata).1))
                .collect();
            return Err(CompileError::AmbiguousTool(names.join(", ")));
        }
    };
    let (tool_ns, tool_name) = key(&tool.metadata);
    let tool_ref = ObjectRef::new(Kind::McpTool, &tool_ns, &tool_name);
    let spec = &tool.spec;
    let mut problems = Vec::new();

    let issuers = spec
        .authentication
        .issuers
        .iter()
        .map(|i| {
            let mut audiences = vec![spec.server.resource.clone()];
            audiences.extend(
                i.audiences
                    .iter()
                    .filter(|a| **a != spec.server.resource)
                    .cloned(),
            );
            Issuer {
                issuer: i.issuer.clone(),
                jwks_uri: i.jwks_uri.clone(),
                audiences,
                algorithms: i.algorithms.clone(),
                kind: i.kind,
            }
        })
        .collect();

    let tools = entries(
        &tool_ref,
        "tools",
        spec.default_action,
        spec.tools.iter().map(|t| {
            (
                Capability::Tool,
                &t.name,
                &t.scopes,
                t.risk,
                t.rate_limit.as_ref(),
                &t.audit,
            )
        }),
    )?;
    let resources = entries(
        &tool_ref,
        "resources",
        spec.default_resource_action,
        spec.resources.iter().map(|r| {
            (
                Capability::Resource,
                &r.uri,
                &r.scopes,
                r.risk,
                r.rate_limit.as_ref(),
                &r.audit,
            )
        }),
    )?;
    let prompts = entries(
        &tool_ref,
        "prompts",
        spec.default_prompt_action,
        spec.prompts.iter().map(|p| {
            (
                Capability::Prompt,
                &p.name,
                &p.scopes,
                p.risk,
                p.rate_limit.as_ref(),
                &p.audit,
            )
        }),
    )?;

    // Clients, in bundle order (sorted by key), indexed by identity.
    let mut clients = Vec::with_capacity(bundle.clients.len());
    let mut index_of = HashMap::with_capacity(bundle.clients.len());
    let mut by_client_id = Pairs::default();
    let mut by_service_account = Pairs::default();
    for c in &bundle.clients {
        let (ns, name) = key(&c.metadata);
        let object = ObjectRef::new(Kind::McpClient, &ns, &name);
        let idx = clients.len();
        let id = &c.spec.identity;
        if let (Some(issuer), Some(client_id)) = (&id.issuer, &id.client_id) {
            by_client_id
                .entry(issuer.clone())
                .or_default()
                .entry(client_id.clone())
                .or_default()
                .push(idx);
        }
        if let Some(sa) = &id.service_account {
            let sa_ns = sa.namespace.clone().unwrap_or_else(|| ns.clone());
            by_service_account
                .entry(sa_ns)
                .or_default()
                .entry(sa.name.clone())
                .or_default()
                .push(idx);
        }
        let quota = c.spec.quota.as_ref();
        let runaway_cleared_at = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RUNAWAY_CLEARED_AT_ANNOTATION))
            .and_then(|text| match text.parse::<Timestamp>() {
                Ok(at) => Some(at),
                Err(error) => {
                    problems.push(Problem {
                        object: object.clone(),
                        condition: "Ready",
                        reason: "InvalidAnnotation",
                        message: format!(
                            "annotation {RUNAWAY_CLEARED_AT_ANNOTATION}: {text:?} is not an RFC 3339 timestamp ({error}); it is ignored"
                        ),
                    });
                    None
                }
            });
        clients.push(Client {
            owner: c.spec.owner.clone(),
            client_id: id.client_id.clone(),
            subject: id.subject.clone(),
            issuer: id.issuer.clone(),
            suspended: c.spec.suspended,
            suspension_reason: c.spec.suspension_reason.clone(),
            expires_at: c.spec.expires_at.as_ref().map(|t| t.0),
            review_due: lifecycle::review_due(c),
            review_enforced: spec.enforce_reviews
                || c.spec.review.as_ref().is_some_and(|r| r.enforce),
            revoke_before: c.spec.revoke_tokens_issued_before.as_ref().map(|t| t.0),
            rate_limit: rate(
                &object,
                "spec.quota.rateLimit",
                quota.and_then(|q| q.rate_limit.as_ref()),
            )?,
            daily_calls: quota.and_then(|q| q.daily_calls),
            suspend_on_runaway: quota.is_some_and(|q| q.suspend_on_runaway),
            runaway_cleared_at,
            grants: Default::default(),
            object,
        });
        index_of.insert((ns, name), idx);
    }
    let identities = by_client_id.iter().chain(by_service_account.iter());
    for (first, second, matched) in
        identities.flat_map(|(first, m)| m.iter().map(move |(second, v)| (first, second, v)))
    {
        if matched.len() > 1 {
            let names: Vec<String> = matched
                .iter()
                .map(|&i| clients[i].object.to_string())
                .collect();
            for &i in matched {
                problems.push(Problem {
                    object: clients[i].object.clone(),
                    condition: "Ready",
                    reason: "AmbiguousIdentity",
                    message: format!(
                        "identity {}/{} is claimed by several McpClients ({}); their tokens are refused until only one claims it",
                        first,
                        second,
                        names.join(", ")
                    ),
                });
            }
        }
    }

    // Policies: resolve clients (within the bundle) and index their grants of this tool.
    let local: BTreeMap<Key, &McpClient> = bundle
        .clients
        .iter()
        .map(|c| (key(&c.metadata), c))
        .collect();
    let mut grants = Capability::ALL.map(|_| GrantsBuilder::new(clients.len()));
    let mut policies = Vec::with_capacity(bundle.policies.len());
    for p in &bundle.policies {
        let (ns, name) = key(&p.metadata);
        let object = ObjectRef::new(Kind::McpPolicy, &ns, &name);
        let idx = policies.len();
        let granted = granted_clients_in(&local, &ns, &p.spec);
        if !granted.missing.is_empty() {
            problems.push(Problem {
                object: object.clone(),
                condition: "ResolvedRefs",
                reason: "ClientNotFound",
                message: format!("McpClients not found: {}", granted.missing.join(", ")),
            });
        }
        let here = || (p.spec.tools.iter()).filter(|g| ns == tool_ns && g.tool_ref == tool_name);
        let patterns = [
            here().flat_map(|g| g.tool_names()).collect::<Vec<_>>(),
            here().flat_map(|g| &g.resources).collect(),
            here().flat_map(|g| &g.prompts).collect(),
        ];
        for (capability, (names, builder)) in Capability::ALL
            .into_iter()
            .zip(patterns.iter().zip(&mut grants))
        {
            let patterns: Vec<_> = names.iter().map(|n| capability.pattern(n)).collect();
            for client_key in &granted.found {
                let Some(&ci) = index_of.get(client_key) else {
                    continue;
                };
                for pattern in &patterns {
                    builder.grant(ci, pattern, idx);
                }
            }
        }
        policies.push(Policy {
            rate_limit: rate(&object, "spec.rateLimit", p.spec.rate_limit.as_ref())?,
            daily_quota: p.spec.daily_quota,
            throttle_response: p.spec.throttle_response,
            mode: p.spec.mode,
            scopes: p.spec.scopes.clone(),
            object,
        });
    }
    drop(local);
    for (i, builder) in grants.into_iter().enumerate() {
        for (client, built) in clients.iter_mut().zip(builder.build()) {
            client.grants[i] = built;
        }
    }
    problems.sort();

    Ok(RuleSet {
        version: bundle.version.clone(),
        resource: spec.server.resource.clone(),
        upstream: spec.server.upstream.clone(),
        issuers,
        max_token_lifetime: parse_duration(
            &tool_ref,
            "spec.authentication.maxTokenLifetime",
            &spec.authentication.max_token_lifetime,
        )?,
        clock_skew: parse_duration(
            &tool_ref,
            "spec.authentication.clockSkew",
            &spec.authentication.clock_skew,
        )?,
        base_scopes: spec.authentication.base_scopes.clone(),
        tools,
        resources,
        prompts,
        server_requests: spec.server_requests.clone(),
        unknown_methods: spec.unknown_methods,
        tool_rate_limit: rate(&tool_ref, "spec.rateLimit", spec.rate_limit.as_ref())?,
        upstream_auth: upstream_auth(&tool_ref, spec.upstream_auth.as_ref())?,
        clients,
        policies,
        problems,
        by_client_id,
        by_service_account,
        tool: tool_ref,
    })
}

/// `spec.upstreamAuth`, checked beyond the schema: each header is set by one part only.
fn upstream_auth(
    object: &ObjectRef,
    spec: Option<&UpstreamAuthSpec>,
) -> Result<Option<UpstreamAuthSpec>, CompileError> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let mut headers: Vec<(String, &str)> = Vec::new();
    if let Some(identity) = &spec.identity {
        headers.push((identity.header.to_ascii_lowercase(), "identity.header"));
    }
    for c in &spec.credentials {
        headers.push((c.header.to_ascii_lowercase(), "credentials[].header"));
    }
    if let Some(exchange) = &spec.token_exchange {
        headers.push((exchange.header.to_ascii_lowercase(), "tokenExchange.header"));
    }
    for (i, (name, path)) in headers.iter().enumerate() {
        if headers[..i].iter().any(|(n, _)| n == name) {
            return Err(CompileError::Invalid {
                object: object.clone(),
                path: format!("spec.upstreamAuth.{path}"),
                message: format!("the header {name} is set twice"),
            });
        }
    }
    Ok(Some(spec.clone()))
}

/// Summary counts, for logs and metrics.
pub fn summary(rules: &RuleSet) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("tools", rules.tools.list.len()),
        ("resources", rules.resources.list.len()),
        ("prompts", rules.prompts.list.len()),
        ("clients", rules.clients.len()),
        ("policies", rules.policies.len()),
        ("problems", rules.problems.len()),
    ])
}

/// The entries of one capability, in any order; `what` names the spec field for errors.
fn entries<'a>(
    tool: &ObjectRef,
    what: &str,
    default_action: DefaultAction,
    specs: impl Iterator<
        Item = (
            Capability,
            &'a String,
            &'a Vec<String>,
            Risk,
            Option<&'a RateLimit>,
            &'a Option<ToolAuditSpec>,
        ),
    >,
) -> Result<Entries, CompileError> {
    let mut list = Vec::new();
    for (i, (capability, pattern, scopes, risk, limit, audit)) in specs.enumerate() {
        list.push(Entry {
            pattern: capability.pattern(pattern),
            scopes: scopes.clone(),
            risk,
            rate_limit: rate(tool, &format!("spec.{what}[{i}].rateLimit"), limit)?,
            audit: audit.clone(),
        });
    }
    Ok(Entries::new(list, default_action))
}
