//! The decision: one [`Outcome`] per message, from the messages, the admitted caller, the
//! rules in force and the session [`Facts`], and nothing else (no I/O, no shared state).
//!
//! ```text
//! each message ──► Outcome { reason, decided_by, used, would, denial, expect }
//!     tools/call name              ──► Caller::call(Tool, name)
//!     resources/read|subscribe uri ──► Caller::call(Resource, uri)
//!     prompts/get name             ──► Caller::call(Prompt, name)
//!     completion/complete ref      ──► ref/prompt: call(Prompt, name); ref/resource:
//!                                      call(Resource, template text); another ref ──► −32602
//!     subscriptions/listen         ──► call(Resource, uri) for each resourceSubscriptions URI
//!         hidden ──► answered as the server answers a missing one; scope ──► 403 step-up
//!     tasks/get|result|cancel|update ──► Facts::owns (else −32602)
//!     a response                   ──► Facts::answers (else 400 unsolicited_response)
//!     lists, initialize, params.task ──► the answer must be read (Expect)
//!     methods::Rule: client notifications, ping, unsubscribe, setLevel ──► allowed;
//!     a server's method, or one without a rule ──► −32601 (McpTool unknownMethods: Allow forwards)
//! 2026-07-28 (Era::Modern): refusals answered as that revision answers them
//! ```

use super::{
    super::{deny::Denial, filter::Expect, headers::Era, jsonrpc::Message, methods::Rule},
    Facts,
};
use mcp_warden_crds::DefaultAction;
use mcp_warden_policy::{Caller, Capability, Decision, ObjectRef, RuleSet};

/// What the gate decided for one message, and then what quotas and the audit trail made of it.
#[derive(Debug)]
pub struct Outcome {
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

impl Outcome {
    fn allowed(caller: &Caller<'_>) -> Self {
        Self {
            reason: "allowed",
            decided_by: caller.client().object.clone(),
            used: None,
            would: None,
            denial: None,
            expect: None,
        }
    }

    /// The tool of a `tools/call` (`None` for resources and prompts).
    pub fn tool(&self) -> Option<&str> {
        match &self.used {
            Some((Capability::Tool, name)) => Some(name),
            _ => None,
        }
    }

    /// Refuses the message with `denial`.
    pub fn refuse(&mut self, denial: Denial) {
        self.reason = denial.reason();
        self.denial = Some(denial);
    }

    /// A 2026-07-28 request's outcome: refusals answered as that revision answers them. An
    /// unknown method is 404 −32601 (SEP-2575). `resources/subscribe` is not a method of that
    /// revision (`subscriptions/listen` replaced it): one naming no `uri`, which the gate cannot
    /// decide, is answered as the revision's servers answer a removed method, not as invalid
    /// params; one naming a `uri` is decided like a read.
    fn modern(&mut self, method: Option<&str>) {
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

/// Decides every message of a payload: one outcome each, in order.
pub fn decide(
    messages: &[Message],
    era: Era,
    caller: &Caller<'_>,
    rules: &RuleSet,
    facts: &Facts,
) -> Vec<Outcome> {
    messages
        .iter()
        .map(|message| {
            let mut outcome = one(message, caller, rules, facts);
            if era == Era::Modern {
                outcome.modern(message.method());
            }
            outcome
        })
        .collect()
}

/// Decides one message.
fn one(message: &Message, caller: &Caller<'_>, rules: &RuleSet, facts: &Facts) -> Outcome {
    let mut outcome = Outcome::allowed(caller);
    let Some(method) = message.method() else {
        // A response: it must answer a request the server sent this caller on this session.
        if let Message::Response { id: Some(id), .. } = message
            && !facts.answers(id)
        {
            outcome.refuse(Denial::UnsolicitedResponse(id.as_json().to_owned()));
        }
        return outcome;
    };
    let notification = matches!(message, Message::Notification { .. });
    let rule = Rule::of(method, notification);
    if notification && !matches!(Rule::of(method, false), Rule::Unknown | Rule::ServerOnly) {
        // A request method sent as a notification would run without an answer or a decision.
        outcome.refuse(Denial::NotARequest(method.to_owned()));
        return outcome;
    }
    match rule {
        Rule::Unknown if rules.unknown_methods == DefaultAction::Allow => {
            outcome.reason = "unknown_method_allowed";
            return outcome;
        }
        Rule::Unknown | Rule::ServerOnly => {
            outcome.refuse(Denial::UnknownMethod {
                method: method.to_owned(),
                notification,
                modern: false,
            });
            return outcome;
        }
        Rule::ClientNotification => return outcome,
        _ => {}
    }
    // A task-augmented request (2025-11-25 `params.task`), or any tools/call, which a
    // 2026-07-28 server may answer with a task (`resultType: "task"`): record the task's owner.
    let params = message.params();
    if method == "tools/call"
        || params
            .and_then(|p| p.get("task"))
            .is_some_and(|t| t.is_object())
    {
        outcome.expect = Some(Expect::CreateTask);
    }
    let param = |key: &str| message.param_str(key);
    match rule {
        Rule::ToolsCall => {
            if let Some(tool) = param("name") {
                outcome.decide(caller, Capability::Tool, tool);
            }
        }
        Rule::ResourceRead => match param("uri") {
            Some(uri) => outcome.decide(caller, Capability::Resource, uri),
            None => outcome.refuse(Denial::InvalidParams(format!("{method} needs a uri"))),
        },
        Rule::PromptsGet => match param("name") {
            Some(name) => outcome.decide(caller, Capability::Prompt, name),
            None => outcome.refuse(Denial::InvalidParams("prompts/get needs a name".into())),
        },
        Rule::Complete => {
            let reference = params.and_then(|p| p.get("ref"));
            let text = |key: &str| reference.and_then(|r| r.get(key)).and_then(|v| v.as_str());
            match (text("type"), text("name"), text("uri")) {
                (Some("ref/prompt"), Some(name), _) => {
                    outcome.decide(caller, Capability::Prompt, name)
                }
                (Some("ref/resource"), _, Some(uri)) => {
                    outcome.decide(caller, Capability::Resource, uri)
                }
                _ => outcome.refuse(Denial::InvalidParams(
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
                            outcome.refuse(Denial::InvalidParams(
                                "resourceSubscriptions must be resource URIs (strings)".into(),
                            ));
                            break;
                        };
                        outcome.decide(caller, Capability::Resource, uri);
                        if outcome.denial.is_some() {
                            break;
                        }
                    }
                }
                Some(_) => outcome.refuse(Denial::InvalidParams(
                    "resourceSubscriptions must be an array of resource URIs".into(),
                )),
            }
        }
        Rule::List(capability) => outcome.expect = Some(Expect::List(capability)),
        Rule::ResourceTemplatesList => outcome.expect = Some(Expect::ResourceTemplatesList),
        Rule::TasksList => outcome.expect = Some(Expect::TasksList),
        Rule::Initialize => outcome.expect = Some(Expect::Initialize),
        Rule::TaskOwned => {
            if let Some(task) = param("taskId")
                && !facts.owns(task)
            {
                outcome.refuse(Denial::ForeignTask(task.to_owned()));
            }
        }
        Rule::Ping | Rule::ServerDiscover | Rule::Lessening => {}
        Rule::Unknown | Rule::ServerOnly | Rule::ClientNotification => {}
    }
    outcome
}
