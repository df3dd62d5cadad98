//! Who is calling, and may each message go through.
//!
//! ```text
//! headers ──► Authorization? ──► auth::Authenticator::authenticate ──► Principal   (else 401)
//!             none + settings.anonymous_client ──► auth::anonymous_principal
//! Principal ──► policy::authenticate (McpClient, lifecycle) ──► Access            (else 403/401)
//! each message ──► authorize(&Access) ──► Verdict { reason, decided_by, used, denial, expect }
//!     tools/call name            ──► Caller::call(Tool, name)
//!     resources/read|subscribe uri ──► Caller::call(Resource, uri)
//!     prompts/get name           ──► Caller::call(Prompt, name)
//!     completion/complete ref    ──► ref/prompt: call(Prompt, name); ref/resource: call(Resource,
//!                                    template text); another ref ──► −32602
//!     subscriptions/listen       ──► call(Resource, uri) for each resourceSubscriptions URI
//!         hidden ──► answered as the server answers a missing one; scope ──► 403 step-up
//!     tasks/get|result|cancel|update ──► task owned by the caller? (else -32602)
//!     lists, initialize, params.task ──► the response must be read (Expect)
//!     methods::Rule: client notifications, ping, unsubscribe, setLevel ──► allowed;
//!     a server's method, or one without a rule ──► −32601 (McpTool unknownMethods: Allow forwards)
//! ```
//!
//! Every verdict is logged once as a `mcp_warden::decision` event and counted in
//! `mcp_warden_requests_total`. The token itself is never logged.

use super::{
    deny::Denial,
    filter::Expect,
    jsonrpc::{Id, Message},
    methods::Rule,
    session::{Ownership, PrincipalKey, Sessions},
};
use crate::{
    auth::{self, AuthError, Authenticator},
    settings::Settings,
    state::Active,
};
use http::{HeaderMap, header};
use jiff::Timestamp;
use mcp_warden_crds::DefaultAction;
use mcp_warden_policy::{Caller, Capability, Decision, ObjectRef, Principal};
use std::sync::Arc;
use tracing::field::display;

/// An authenticated caller whose McpClient is in good standing (at the request's start).
#[derive(Clone, Debug)]
pub struct Access {
    /// The rules in force when the request started.
    pub active: Arc<Active>,
    /// Who is calling.
    pub principal: Principal,
    /// What sessions and tasks are bound to.
    pub key: PrincipalKey,
    /// The McpClient.
    pub client: ObjectRef,
    /// Its accountable owner (`spec.owner`), for the audit trail.
    pub owner: String,
    /// The token's `jti`, for the audit trail.
    pub token_id: Option<String>,
}

impl Access {
    /// The policy view of this caller now (`Err` if its lifecycle denies it meanwhile).
    #[allow(clippy::result_large_err)] // mirrors policy::authenticate
    pub fn caller(&self) -> Result<Caller<'_>, Decision> {
        mcp_warden_policy::authenticate(&self.active.rules, &self.principal, Timestamp::now())
    }
}

/// A refused identification: why, and who was calling when the token was good but the
/// McpClient's lifecycle (expired, suspended, review overdue …) refuses it.
#[derive(Debug)]
pub struct Refusal {
    /// The answer.
    pub denial: Denial,
    /// The authenticated caller, for the audit trail (never for access).
    pub who: Option<Box<Access>>,
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Self { denial, who: None }
    }
}

/// Authenticates a request and checks the McpClient's lifecycle.
pub async fn identify(
    active: &Arc<Active>,
    auth: &Authenticator,
    settings: &Settings,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Access, Refusal> {
    let (principal, token_id) = match &settings.anonymous_client {
        Some(name) if !headers.contains_key(header::AUTHORIZATION) => (
            auth::anonymous_principal(&active.rules, name).ok_or_else(|| {
                Denial::Unauthenticated(AuthError::Missing, active.challenge_scope())
            })?,
            None,
        ),
        _ => {
            let verified = auth
                .authenticate(&active.rules, headers, query, Timestamp::now())
                .await
                .map_err(|e| Denial::Unauthenticated(e, active.challenge_scope()))?;
            (verified.principal.clone(), verified.token_id.clone())
        }
    };
    let (client, owner) =
        match mcp_warden_policy::authenticate(&active.rules, &principal, Timestamp::now()) {
            Ok(caller) => (
                caller.client().object.clone(),
                caller.client().owner.clone(),
            ),
            Err(decision) => {
                let who = decision.client().map(|client| {
                    let owner = active.rules.clients.iter().find(|c| c.object == *client);
                    Box::new(Access {
                        active: active.clone(),
                        key: PrincipalKey::of(&principal),
                        client: client.clone(),
                        owner: owner.map(|c| c.owner.clone()).unwrap_or_default(),
                        principal,
                        token_id,
                    })
                });
                return Err(Refusal {
                    denial: Denial::Client(Box::new(decision)),
                    who,
                });
            }
        };
    Ok(Access {
        active: active.clone(),
        key: PrincipalKey::of(&principal),
        principal,
        client,
        owner,
        token_id,
    })
}

/// The outcome for one message.
#[derive(Debug)]
pub struct Verdict {
    /// `policy::Decision::reason`, or the proxy's own reason.
    pub reason: &'static str,
    /// The CR that decided.
    pub decided_by: ObjectRef,
    /// What the message uses: the tool of a `tools/call`, the resource of a `resources/read`,
    /// the prompt of a `prompts/get` (or of a completion).
    pub used: Option<(Capability, String)>,
    /// For an Audit-mode policy that lets the call through: what enforcing it would answer.
    pub would: Option<&'static str>,
    /// Why it is refused, if it is.
    pub denial: Option<Denial>,
    /// What the proxy must do with the response.
    pub expect: Option<Expect>,
}

impl Verdict {
    /// The tool of a `tools/call` (`None` for resources and prompts).
    pub fn tool(&self) -> Option<&str> {
        match &self.used {
            Some((Capability::Tool, name)) => Some(name),
            _ => None,
        }
    }

    /// A 2026-07-28 request's verdict: refusals answered as that revision answers them. An
    /// unknown method is 404 −32601 (SEP-2575). `resources/subscribe` is not a method of that
    /// revision (`subscriptions/listen` replaced it): one naming no `uri`, which the gate cannot
    /// decide, is answered as the revision's servers answer a removed method, not as invalid
    /// params; one naming a `uri` is decided like a read.
    pub fn modern(&mut self, method: Option<&str>) {
        if method == Some("resources/subscribe")
            && matches!(self.denial, Some(Denial::InvalidParams(_)))
        {
            self.refuse(Denial::UnknownMethod {
                method: "resources/subscribe".to_owned(),
                notification: false,
                modern: true,
            });
        }
        if let Some(Denial::UnknownMethod { modern, .. }) = &mut self.denial {
            *modern = true;
        }
    }

    fn refuse(&mut self, denial: Denial) {
        self.reason = denial.reason();
        self.denial = Some(denial);
    }

    /// Applies the policy's decision about `name`.
    fn decide(&mut self, caller: &Caller<'_>, capability: Capability, name: &str) {
        let decision = caller.call(capability, name);
        self.reason = decision.reason();
        self.decided_by = decision.decided_by().clone();
        self.denial = Denial::from_decision(&decision, capability, name);
        if let Decision::WouldDeny { would, .. } = &decision {
            self.would = Some(would.reason());
        }
        self.used = Some((capability, name.to_owned()));
    }
}

/// Decides one message of an authenticated caller.
pub fn authorize(
    message: &Message,
    caller: &Caller<'_>,
    access: &Access,
    sessions: &Sessions,
    session: Option<&str>,
) -> Verdict {
    let mut verdict = Verdict {
        reason: "allowed",
        decided_by: access.client.clone(),
        used: None,
        would: None,
        denial: None,
        expect: None,
    };
    let Some(method) = message.method() else {
        // A response: it must answer a request the server sent this caller on this session.
        if let (Message::Response { id: Some(id), .. }, Some(sid)) = (message, session)
            && !sessions.answering(sid, id)
        {
            verdict.refuse(Denial::UnsolicitedResponse(id.as_json().to_owned()));
        }
        return verdict;
    };
    let notification = matches!(message, Message::Notification { .. });
    let rule = Rule::of(method, notification);
    if notification && !matches!(Rule::of(method, false), Rule::Unknown | Rule::ServerOnly) {
        // A request method sent as a notification would run without an answer or a decision.
        verdict.refuse(Denial::NotARequest(method.to_owned()));
        return verdict;
    }
    match rule {
        Rule::Unknown if access.active.rules.unknown_methods == DefaultAction::Allow => {
            verdict.reason = "unknown_method_allowed";
            return verdict;
        }
        Rule::Unknown | Rule::ServerOnly => {
            verdict.refuse(Denial::UnknownMethod {
                method: method.to_owned(),
                notification,
                modern: false,
            });
            return verdict;
        }
        Rule::ClientNotification => return verdict,
        _ => {}
    }
    // A task-augmented request (2025-11-25 `params.task`), or any tools/call, which a
    // 2026-07-28 server may answer with a task (`resultType: "task"`): record the task's owner.
    if method == "tools/call"
        || message
            .params()
            .and_then(|p| p.get("task"))
            .is_some_and(|t| t.is_object())
    {
        verdict.expect = Some(Expect::CreateTask);
    }
    let params = message.params();
    let param = |key: &str| message.param_str(key);
    match rule {
        Rule::ToolsCall => {
            if let Some(tool) = param("name") {
                verdict.decide(caller, Capability::Tool, tool);
            }
        }
        Rule::ResourceRead => match param("uri") {
            Some(uri) => verdict.decide(caller, Capability::Resource, uri),
            None => verdict.refuse(Denial::InvalidParams(format!("{method} needs a uri"))),
        },
        Rule::PromptsGet => match param("name") {
            Some(name) => verdict.decide(caller, Capability::Prompt, name),
            None => verdict.refuse(Denial::InvalidParams("prompts/get needs a name".into())),
        },
        Rule::Complete => {
            let reference = params.and_then(|p| p.get("ref"));
            let text = |key: &str| reference.and_then(|r| r.get(key)).and_then(|v| v.as_str());
            match (text("type"), text("name"), text("uri")) {
                (Some("ref/prompt"), Some(name), _) => {
                    verdict.decide(caller, Capability::Prompt, name)
                }
                (Some("ref/resource"), _, Some(uri)) => {
                    verdict.decide(caller, Capability::Resource, uri)
                }
                _ => verdict.refuse(Denial::InvalidParams(
                    "completion/complete needs a ref of type ref/prompt (with a name) or ref/resource (with a uri)".into(),
                )),
            }
        }
        Rule::SubscriptionsListen => {
            let uris = params
                .and_then(|p| p.get("notifications"))
                .and_then(|n| n.get("resourceSubscriptions"));
            match uris {
                None => {}
                Some(serde_json::Value::Array(uris)) => {
                    for uri in uris {
                        let Some(uri) = uri.as_str() else {
                            verdict.refuse(Denial::InvalidParams(
                                "resourceSubscriptions must be resource URIs (strings)".into(),
                            ));
                            break;
                        };
                        verdict.decide(caller, Capability::Resource, uri);
                        if verdict.denial.is_some() {
                            break;
                        }
                    }
                }
                Some(_) => verdict.refuse(Denial::InvalidParams(
                    "resourceSubscriptions must be an array of resource URIs".into(),
                )),
            }
        }
        Rule::List(capability) => verdict.expect = Some(Expect::List(capability)),
        Rule::ResourceTemplatesList => verdict.expect = Some(Expect::ResourceTemplatesList),
        Rule::TasksList => verdict.expect = Some(Expect::TasksList),
        Rule::Initialize => verdict.expect = Some(Expect::Initialize),
        Rule::TaskOwned => {
            if let Some(task) = param("taskId")
                && sessions.task(task, &access.key) != Ownership::Owned
            {
                verdict.refuse(Denial::ForeignTask(task.to_owned()));
            }
        }
        Rule::Ping | Rule::ServerDiscover | Rule::Lessening => {}
        Rule::Unknown | Rule::ServerOnly | Rule::ClientNotification => {}
    }
    verdict
}

/// What one decision event says.
#[derive(Clone, Copy, Debug)]
pub struct Event<'a> {
    /// The JSON-RPC method, or `GET`/`DELETE`.
    pub method: &'a str,
    /// What the message uses: the tool of a `tools/call`, the resource of a `resources/read`,
    /// the prompt of a `prompts/get` …
    pub used: Option<(Capability, &'a str)>,
    /// The McpClient, when identified.
    pub client: Option<&'a ObjectRef>,
    /// The decision reason.
    pub reason: &'a str,
    /// Audit mode: what enforcing the policy would have answered.
    pub would: Option<&'a str>,
    /// The CR that decided.
    pub decided_by: Option<&'a ObjectRef>,
    /// The JSON-RPC id.
    pub id: Option<&'a Id>,
    /// The `Mcp-Session-Id`.
    pub session: Option<&'a str>,
    /// Whether the message goes through.
    pub allowed: bool,
}

/// Logs a decision (target `mcp_warden::decision`: allowed at `debug`, denied at `warn`), counts
/// it, and notes it for the usage report. Allowed calls are not logged at `info`: the audit trail
/// already records each call, and a line per call costs ~6 µs of the hot path
/// (`RUST_LOG=info,mcp_warden::decision=debug` turns it into an access log).
pub fn record(shared: &super::Shared, e: Event<'_>) {
    shared.metrics.request(e.method, e.reason);
    if let (Some(usage), Some(client)) = (&shared.usage, e.client)
        && client.kind == mcp_warden_policy::Kind::McpClient
    {
        let denied = (!e.allowed).then_some(e.reason);
        let tool = e
            .used
            .filter(|(c, _)| *c == Capability::Tool)
            .map(|(_, t)| t);
        usage.observe(client, e.method, tool, denied, Timestamp::now());
    }
    // Fields are formatted only when the event is enabled (allowed calls log at `debug`).
    let (client, decided_by) = (e.client.map(display), e.decided_by.map(display));
    let named = |capability| e.used.filter(|(c, _)| *c == capability).map(|(_, n)| n);
    let (tool, resource, prompt) = (
        named(Capability::Tool),
        named(Capability::Resource),
        named(Capability::Prompt),
    );
    let id = e.id.map(|id| display(id.as_json()));
    if e.allowed {
        tracing::debug!(
            target: "mcp_warden::decision",
            method = e.method, tool, resource, prompt, client, reason = e.reason, decided_by, id,
            session = e.session, would = e.would, allowed = true, "allowed"
        );
    } else {
        tracing::warn!(
            target: "mcp_warden::decision",
            method = e.method, tool, resource, prompt, client, reason = e.reason, decided_by, id,
            session = e.session, allowed = false, "denied"
        );
    }
}

#[cfg(test)]
mod tests;
