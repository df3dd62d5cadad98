//! `decide(RuleSet, Principal, Call, now) → Decision`, and the `tools/list` filter.
//!
//! ```text
//! Principal ──identify──► Client ──lifecycle──► suspended? expired? token cut off? review overdue?
//!                                   │
//!  Call::Tool(name) / Resource(uri) / Prompt(name)
//!                   ──► entry of that capability (exact, glob, default action)
//!                   ──► that client's grants of that capability
//!                        ──► Enforce policy with enough scopes?  Allow
//!                        ──► Enforce policy, scopes missing?     DenyInsufficientScope{needed}
//!                        ──► only Audit policies?                Allow (audit) / WouldDeny
//!                        ──► nothing                             DenyNotGranted
//! ```
//!
//! Lifecycle denials (suspension, expiry, token cut-off) are enforced whatever the policy mode:
//! they are the kill switch.

use crate::{
    ObjectRef,
    capability::Capability,
    compile::{Client, RuleSet},
};
use jiff::Timestamp;
use mcp_warden_crds::{IssuerKind, PolicyMode};
use std::collections::BTreeSet;

/// Who is calling, as established from a verified token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: Option<String>,
    /// `client_id` (RFC 9068), or `azp` when there is none.
    pub client_id: Option<String>,
    /// The token's scopes.
    pub scopes: BTreeSet<String>,
    /// `iat`.
    pub issued_at: Option<Timestamp>,
}

/// What is being asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call<'a> {
    /// `tools/call` of the named tool.
    Tool(&'a str),
    /// `resources/read` or `resources/subscribe` of a URI (or the completion of a resource
    /// template, by its template text).
    Resource(&'a str),
    /// `prompts/get` of the named prompt (or the completion of its arguments).
    Prompt(&'a str),
    /// Any other request of an established client (`initialize`, `tools/list`, `ping`,
    /// notifications, GET streams, DELETE): only identity and lifecycle are checked.
    Session,
}

/// The outcome, naming the CR that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed. `policy` is the granting McpPolicy for tool calls, `None` for other requests.
    Allow {
        /// The caller.
        client: ObjectRef,
        /// The policy that granted the call.
        policy: Option<ObjectRef>,
        /// Whether only an Audit-mode policy covers the call.
        audit: bool,
    },
    /// Allowed because only an Audit-mode policy covers the call, which would have denied it.
    WouldDeny {
        /// The caller.
        client: ObjectRef,
        /// The Audit-mode policy.
        policy: ObjectRef,
        /// What enforcing it would have answered.
        would: Box<Decision>,
    },
    /// No McpClient matches the token (or several claim it).
    DenyUnknownClient {
        /// The McpTool whose policies know no such client.
        tool: ObjectRef,
        /// Why, for logs.
        detail: String,
    },
    /// `spec.suspended`.
    DenySuspended {
        /// The caller.
        client: ObjectRef,
        /// `spec.suspensionReason`.
        reason: Option<String>,
    },
    /// Past `spec.expiresAt`.
    DenyExpired {
        /// The caller.
        client: ObjectRef,
        /// When it expired.
        at: Timestamp,
    },
    /// Access review overdue and enforced.
    DenyReviewOverdue {
        /// The caller.
        client: ObjectRef,
        /// When the review was due.
        due: Timestamp,
    },
    /// The token was issued before `spec.revokeTokensIssuedBefore`.
    DenyTokenRevoked {
        /// The caller.
        client: ObjectRef,
        /// The cut-off.
        cutoff: Timestamp,
    },
    /// No policy grants the tool, resource or prompt to this client (or it is not declared).
    /// Answered as an unknown tool, resource or prompt, so hidden ones stay hidden.
    DenyNotGranted {
        /// The caller.
        client: ObjectRef,
        /// The McpTool.
        tool: ObjectRef,
    },
    /// Granted, but the token lacks scopes; `needed` is every scope the call requires.
    DenyInsufficientScope {
        /// The caller.
        client: ObjectRef,
        /// The policy whose requirements are reported.
        policy: ObjectRef,
        /// Every scope required (tool's and policy's), sorted.
        needed: Vec<String>,
    },
}

impl Decision {
    /// Whether the request goes through (Audit-mode `WouldDeny` does).
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. } | Self::WouldDeny { .. })
    }

    /// A stable snake_case reason, for metrics and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Allow { .. } => "allowed",
            Self::WouldDeny { .. } => "would_deny",
            Self::DenyUnknownClient { .. } => "unknown_client",
            Self::DenySuspended { .. } => "suspended",
            Self::DenyExpired { .. } => "expired",
            Self::DenyReviewOverdue { .. } => "review_overdue",
            Self::DenyTokenRevoked { .. } => "token_revoked",
            Self::DenyNotGranted { .. } => "not_granted",
            Self::DenyInsufficientScope { .. } => "insufficient_scope",
        }
    }

    /// The CR that decided.
    pub fn decided_by(&self) -> &ObjectRef {
        match self {
            Self::Allow {
                policy: Some(p), ..
            } => p,
            Self::Allow { client, .. } => client,
            Self::WouldDeny { policy, .. } | Self::DenyInsufficientScope { policy, .. } => policy,
            Self::DenyUnknownClient { tool, .. } | Self::DenyNotGranted { tool, .. } => tool,
            Self::DenySuspended { client, .. }
            | Self::DenyExpired { client, .. }
            | Self::DenyReviewOverdue { client, .. }
            | Self::DenyTokenRevoked { client, .. } => client,
        }
    }

    /// The calling McpClient, when one was identified.
    pub fn client(&self) -> Option<&ObjectRef> {
        match self {
            Self::DenyUnknownClient { .. } => None,
            Self::Allow { client, .. }
            | Self::WouldDeny { client, .. }
            | Self::DenySuspended { client, .. }
            | Self::DenyExpired { client, .. }
            | Self::DenyReviewOverdue { client, .. }
            | Self::DenyTokenRevoked { client, .. }
            | Self::DenyNotGranted { client, .. }
            | Self::DenyInsufficientScope { client, .. } => Some(client),
        }
    }
}

/// An identified client whose credential is in good standing.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'r> {
    rules: &'r RuleSet,
    client: &'r Client,
    /// `client`'s index in `rules.clients`.
    index: usize,
    principal: &'r Principal,
}

/// Decides one request.
pub fn decide(rules: &RuleSet, principal: &Principal, call: Call<'_>, now: Timestamp) -> Decision {
    match authenticate(rules, principal, now) {
        Err(denied) => denied,
        Ok(caller) => match call {
            Call::Tool(tool) => caller.call(Capability::Tool, tool),
            Call::Resource(uri) => caller.call(Capability::Resource, uri),
            Call::Prompt(prompt) => caller.call(Capability::Prompt, prompt),
            Call::Session => Decision::Allow {
                client: caller.client.object.clone(),
                policy: None,
                audit: false,
            },
        },
    }
}

/// Finds the McpClient of `principal` and checks its lifecycle at `now`. The error is the
/// denial to answer with.
#[allow(clippy::result_large_err)] // the denial is built once per refused request
pub fn authenticate<'r>(
    rules: &'r RuleSet,
    principal: &'r Principal,
    now: Timestamp,
) -> Result<Caller<'r>, Decision> {
    let unknown = |detail: String| Decision::DenyUnknownClient {
        tool: rules.tool.clone(),
        detail,
    };
    let Some(issuer) = rules.issuers.iter().find(|i| i.issuer == principal.issuer) else {
        return Err(unknown(format!(
            "issuer {} is not trusted by this server",
            principal.issuer
        )));
    };
    let found = match issuer.kind {
        IssuerKind::OAuth => {
            let Some(client_id) = principal.client_id.as_deref() else {
                return Err(unknown("the token names no client_id or azp".into()));
            };
            only(
                rules
                    .clients_by_id(&principal.issuer, client_id)
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let c = &rules.clients[i];
                        c.subject.is_none() || c.subject == principal.subject
                    }),
            )
        }
        IssuerKind::Kubernetes => {
            let sa = principal
                .subject
                .as_deref()
                .and_then(|s| s.strip_prefix("system:serviceaccount:"))
                .and_then(|s| s.split_once(':'));
            let Some((ns, name)) = sa else {
                return Err(unknown("the token's sub is not a ServiceAccount".into()));
            };
            only(
                rules
                    .clients_by_service_account(ns, name)
                    .iter()
                    .copied()
                    .filter(|&i| match &rules.clients[i].issuer {
                        Some(i) => *i == principal.issuer,
                        // Without an issuer: the McpTool's one Kubernetes issuer (its own
                        // cluster). With several, a namespace/name pair is ambiguous across
                        // clusters, so the identity must name its issuer.
                        None => rules.sole_kubernetes_issuer() == Some(principal.issuer.as_str()),
                    }),
            )
        }
    };
    let index = found.map_err(|why| unknown(why.into()))?;
    let client = &rules.clients[index];
    let object = || client.object.clone();
    if client.suspended {
        return Err(Decision::DenySuspended {
            client: object(),
            reason: client.suspension_reason.clone(),
        });
    }
    if let Some(at) = client.expires_at.filter(|at| now >= *at) {
        return Err(Decision::DenyExpired {
            client: object(),
            at,
        });
    }
    if let Some(cutoff) = client.revoke_before {
        // A token without `iat` cannot prove it is newer than the cut-off.
        if principal.issued_at.is_none_or(|iat| iat < cutoff) {
            return Err(Decision::DenyTokenRevoked {
                client: object(),
                cutoff,
            });
        }
    }
    if let Some(due) = client
        .review_due
        .filter(|due| client.review_enforced && now >= *due)
    {
        return Err(Decision::DenyReviewOverdue {
            client: object(),
            due,
        });
    }
    Ok(Caller {
        rules,
        client,
        index,
        principal,
    })
}

/// The one client (index) of `candidates`, or why there is not exactly one.
fn only(mut candidates: impl Iterator<Item = usize>) -> Result<usize, &'static str> {
    match (candidates.next(), candidates.next()) {
        (None, _) => Err("no McpClient matches the token's identity"),
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => Err("several McpClients claim the token's identity"),
    }
}

impl<'r> Caller<'r> {
    /// The caller that [`authenticate`] admitted against these same `rules` as McpClient
    /// number `index` ([`Caller::index`]), without looking it up or checking its lifecycle
    /// again: for the rest of one request, which holds the rules it was admitted under.
    /// `None` if `index` names no client of `rules`.
    pub fn admitted(rules: &'r RuleSet, index: usize, principal: &'r Principal) -> Option<Self> {
        Some(Self {
            rules,
            client: rules.clients.get(index)?,
            index,
            principal,
        })
    }

    /// The McpClient's index in the rules' clients ([`Caller::admitted`]).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The identified McpClient.
    pub fn client(&self) -> &'r Client {
        self.client
    }

    /// Decides a `tools/call` of `tool`.
    pub fn call_tool(&self, tool: &str) -> Decision {
        self.call(Capability::Tool, tool)
    }

    /// Decides a use of the tool, resource or prompt `name`.
    pub fn call(&self, capability: Capability, name: &str) -> Decision {
        let client = || self.client.object.clone();
        let not_granted = || Decision::DenyNotGranted {
            client: client(),
            tool: self.rules.tool.clone(),
        };
        let Some(tool_scopes) = self.rules.entries(capability).scopes(name) else {
            return not_granted();
        };
        // Best enforce grant: allowed, else the one needing the fewest scopes. Same for audit.
        let mut enforce_missing: Option<(usize, Vec<String>)> = None;
        let mut audit: Option<(usize, Vec<String>)> = None;
        for p in self.client.grants(capability).matching(name) {
            let policy = &self.rules.policies[p];
            // What is missing is only spelled out (sorted, deduplicated) for a refusal.
            let needed = || needed_scopes(tool_scopes, &policy.scopes);
            let satisfied = (tool_scopes.iter().chain(&policy.scopes))
                .all(|s| self.principal.scopes.contains(s));
            match (policy.mode, satisfied) {
                (PolicyMode::Enforce, true) => {
                    return Decision::Allow {
                        client: client(),
                        policy: Some(policy.object.clone()),
                        audit: false,
                    };
                }
                (PolicyMode::Enforce, false) => keep_fewest(&mut enforce_missing, p, needed()),
                (PolicyMode::Audit, true) => audit = Some((p, Vec::new())),
                (PolicyMode::Audit, false) if audit.as_ref().is_none_or(|(_, n)| !n.is_empty()) => {
                    keep_fewest(&mut audit, p, needed())
                }
                (PolicyMode::Audit, false) => {}
            }
        }
        if let Some((p, needed)) = enforce_missing {
            return Decision::DenyInsufficientScope {
                client: client(),
                policy: self.rules.policies[p].object.clone(),
                needed,
            };
        }
        match audit {
            None => not_granted(),
            Some((p, needed)) if needed.is_empty() => Decision::Allow {
                client: client(),
                policy: Some(self.rules.policies[p].object.clone()),
                audit: true,
            },
            Some((p, needed)) => {
                let policy = self.rules.policies[p].object.clone();
                Decision::WouldDeny {
                    client: client(),
                    would: Box::new(Decision::DenyInsufficientScope {
                        client: client(),
                        policy: policy.clone(),
                        needed,
                    }),
                    policy,
                }
            }
        }
    }

    /// Whether `tools/list` shows `tool` to this caller: the tool is declared (or undeclared
    /// tools are allowed) and some policy grants it. Tools granted but needing more scopes are
    /// listed, so that calling them yields a scope step-up challenge.
    pub fn lists(&self, tool: &str) -> bool {
        self.may_list(Capability::Tool, tool)
    }

    /// Whether a list (`tools/list`, `resources/list`, `resources/templates/list`,
    /// `prompts/list`) shows `name` to this caller, as `lists` does for tools.
    pub fn may_list(&self, capability: Capability, name: &str) -> bool {
        self.rules.entries(capability).scopes(name).is_some()
            && self
                .client
                .grants(capability)
                .matching(name)
                .next()
                .is_some()
    }
}

impl RuleSet {
    /// The tool-level scopes of `tool`, or `None` when it is not declared and undeclared tools
    /// are denied (nobody may call it, whatever the grants).
    pub fn tool_scopes(&self, tool: &str) -> Option<&[String]> {
        self.tools.scopes(tool)
    }
}

/// The scopes a token needs to call a tool through a policy: the tool's and the policy's,
/// sorted and deduplicated.
pub fn needed_scopes(tool: &[String], policy: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = tool.iter().chain(policy).collect();
    set.into_iter().cloned().collect()
}

fn keep_fewest(best: &mut Option<(usize, Vec<String>)>, policy: usize, needed: Vec<String>) {
    if best.as_ref().is_none_or(|(_, n)| needed.len() < n.len()) {
        *best = Some((policy, needed));
    }
}
