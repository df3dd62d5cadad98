//! Reading and rewriting upstream messages: lists filtered per caller, server-to-client messages
//! decided, task ids and negotiated versions recorded.
//!
//! ```text
//! JSON body, or one SSE event's data ──► rewrite(text, inspector)
//!   object (or 2025-03-26 array of objects) ──► id ──inspector.expect(id)──► what the request was
//!     List(cap)  ──► result.tools / resources / prompts minus what `Caller::may_list` refuses
//!                    (by name, by uri); ResourceTemplatesList: result.resourceTemplates by
//!                    uriTemplate text (upstream order kept, nextCursor kept even on an emptied
//!                    page); modern era: cacheScope "private", ttlMs capped
//!     TasksList  ──► result.tasks minus the tasks of other principals
//!     CreateTask ──► record result.task.taskId for the caller (no change)
//!     Initialize ──► record result.protocolVersion for the session (no change)
//!   a server request or notification ──► inspector.server_message(method, id, params):
//!                    false ──► dropped (a sampling the McpTool does not allow, an update of a
//!                    resource the caller may not read)
//!   anything else ──► None: the bytes go out untouched
//!
//! filter_list(result, list, key, keep): one pass over result           walk.rs
//!   Object::parse_with: its members as raw text                        object.rs
//!     result[list] ──Listed::read──► (name, element text) per readable element   elements.rs
//!   then, the caller resolved once: keep(name) per element ──► kept elements, byte for byte
//! ```
//!
//! Members are kept as raw JSON text in their order, so every surviving tool object (its
//! `inputSchema`, `annotations`, `icons`, `_meta`, `execution` …) reaches the client byte for
//! byte (VER-04). Fail closed: an element that cannot be read is dropped, a `tools` that is not
//! an array becomes `[]`, and an answer with a key twice (message or `result`: clients differ on
//! which one wins) is withheld as a JSON-RPC error, never passed on unfiltered.

mod elements;
mod object;
#[cfg(test)]
mod reference;
mod walk;

use super::jsonrpc::Id;
use elements::Listed;
use mcp_warden_policy::Capability;
use object::Object;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest `ttlMs` the proxy lets a per-caller list be cached (CACHE-01: lowered so that a
/// policy change shows soon).
pub const MAX_TTL_MS: u64 = 60_000;

/// What the proxy does with the response to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Filter `result.tools`, `result.resources` or `result.prompts`.
    List(Capability),
    /// Filter `result.resourceTemplates`.
    ResourceTemplatesList,
    /// Filter `result.tasks`.
    TasksList,
    /// Record `result.task.taskId` (a task-augmented request).
    CreateTask,
    /// Record `result.protocolVersion` (legacy `initialize`).
    Initialize,
}

/// What the proxy does with one response message, by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The answer to a request the proxy must read.
    Inspect(Expect),
    /// The answer to a request that was forwarded and needs no reading.
    Pass,
    /// No request of this caller's has this id here: a hostile or confused upstream's answer,
    /// which must not reach the client as the answer to something else. Dropped.
    Drop,
}

/// The per-request knowledge `rewrite` needs.
pub trait Inspector {
    /// What to do with the response to `id`.
    fn expect(&mut self, id: &Id) -> Answer;
    /// Whether a list shows a tool, resource (by URI or template text) or prompt to the caller,
    /// asked of each listed element of one response (so the caller is resolved once per
    /// response, not once per element).
    fn list_filter(&mut self, capability: Capability) -> impl FnMut(&str) -> bool + '_;
    /// A request or notification of the server: whether it reaches the caller. `params` is
    /// the raw JSON text of `params`.
    fn server_message(&mut self, _method: &str, _id: Option<&Id>, _params: Option<&str>) -> bool {
        true
    }
    /// Whether the task belongs to the caller.
    fn owns_task(&self, task_id: &str) -> bool;
    /// A task was created for the caller.
    fn created_task(&mut self, task_id: &str);
    /// The upstream issued an MRTR `requestState` to the caller.
    fn issued_request_state(&mut self, _state: &str) {}
    /// A result with `inputRequests` (MRTR, 2026-07-28) came: `Some(why)` when one of them
    /// may not reach the caller (the answer is then withheld). `result` is its raw JSON text.
    fn input_requests(&mut self, _result: &str) -> Option<String> {
        None
    }
    /// The upstream accepted `initialize` with this version.
    fn initialized(&mut self, protocol_version: &str);
    /// Whether the request was 2026-07-28 or later.
    fn modern(&self) -> bool;
    /// The response to a request of the caller's (`result` or `error` as raw JSON text), for
    /// the audit trail's final record of a call (`tools/call`, `resources/read`, …).
    fn answered(&mut self, _id: &Id, _result: Option<&str>, _error: Option<&str>) {}
    /// A message that cannot be read came: the expected answers it may have been, which are
    /// then settled (each is withheld once, as a JSON-RPC error). Fail closed: nothing the proxy
    /// must inspect passes unread.
    fn unreadable(&mut self) -> Vec<(Id, Expect)> {
        Vec::new()
    }
}

/// Rewrites a JSON-RPC message text (object or batch array) when a response in it is one the
/// inspector expects; `None` leaves the bytes untouched, `Some` of nothing drops them.
pub fn rewrite(text: &[u8], inspector: &mut impl Inspector) -> Option<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(text) else {
        return Some(withhold_pending(inspector, "it is not UTF-8"));
    };
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        // An SSE priming event (`data:` with nothing): no message, nothing a client reads.
        return None;
    }
    if trimmed.starts_with('[') {
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) else {
            return Some(withhold_pending(inspector, "it is not JSON"));
        };
        let rewritten: Vec<Option<String>> = items
            .iter()
            .map(|item| rewrite_message(item.get(), inspector))
            .collect();
        if rewritten.iter().all(Option::is_none) {
            return None;
        }
        let joined: Vec<&str> = items
            .iter()
            .zip(&rewritten)
            .map(|(item, new)| new.as_deref().unwrap_or(item.get()))
            .filter(|text| !text.is_empty())
            .collect();
        if joined.is_empty() {
            return Some(Vec::new());
        }
        return Some(format!("[{}]", joined.join(",")).into_bytes());
    }
    rewrite_message(text, inspector).map(String::into_bytes)
}

fn rewrite_message(text: &str, inspector: &mut impl Inspector) -> Option<String> {
    let Some(mut message) = Object::parse(text) else {
        return Some(refuse_ambiguous_list(text, inspector).unwrap_or_else(|| {
            String::from_utf8_lossy(&withhold_pending(inspector, "it is not one JSON object"))
                .into_owned()
        }));
    };
    // A message with `result` or `error` is a response whatever else it holds (clients read it
    // as one); the others are the server's requests and notifications.
    if message.get("result").is_none() && message.get("error").is_none() {
        let method: Option<String> = message
            .get("method")
            .and_then(|raw| serde_json::from_str(raw).ok());
        let id = message
            .get("id")
            .and_then(|raw| serde_json::from_str(raw).ok())
            .and_then(|v| Id::from_value(&v));
        let keep = match &method {
            Some(method) => inspector.server_message(method, id.as_ref(), message.get("params")),
            None => true,
        };
        return (!keep).then(String::new);
    }
    let id = message
        .get("id")
        .and_then(|raw| serde_json::from_str(raw).ok())
        .and_then(|v| Id::from_value(&v));
    let expect = match id.as_ref().map(|id| inspector.expect(id)) {
        Some(Answer::Inspect(expect)) => Some(expect),
        Some(Answer::Pass) => None,
        // An error answer without an id (id null) cannot be a governed list: pass it.
        None if message.get("result").is_none() => return None,
        None | Some(Answer::Drop) => {
            tracing::warn!(
                id = id.as_ref().map(|id| tracing::field::display(id.as_json())),
                "an upstream response answers no pending request of this caller: dropped"
            );
            return Some(String::new());
        }
    };
    let id = id?;
    // A 2026-07-28 `input_required` result asks the client through `inputRequests` (MRTR):
    // the server-to-client requests of that revision, decided like the others.
    if let Some(result) = message
        .get("result")
        .filter(|r| r.contains("inputRequests"))
        && let Some(why) = inspector.input_requests(result)
    {
        let error = serde_json::json!({
            "code": -32603,
            "message": format!("mcp-warden withheld the upstream's answer: {why}"),
        })
        .to_string();
        if expect == Some(Expect::CreateTask) {
            inspector.answered(&id, None, Some(&error));
        }
        return Some(format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#,
            id.as_json()
        ));
    }
    let Some(expect) = expect else {
        // Passed unread, but an audited call's answer (resources/read, prompts/get, …)
        // completes its record.
        inspector.answered(&id, message.get("result"), message.get("error"));
        return None;
    };
    if expect == Expect::CreateTask {
        inspector.answered(&id, message.get("result"), message.get("error"));
    }
    let result = message.get("result")?;
    match expect {
        Expect::List(_) | Expect::ResourceTemplatesList | Expect::TasksList => {
            let modern = inspector.modern();
            let filtered = match expect {
                Expect::List(capability) => {
                    let (list, key) = match capability {
                        Capability::Tool => ("tools", "name"),
                        Capability::Resource => ("resources", "uri"),
                        Capability::Prompt => ("prompts", "name"),
                    };
                    filter_list(result, list, key, modern, inspector.list_filter(capability))
                }
                Expect::ResourceTemplatesList => filter_list(
                    result,
                    "resourceTemplates",
                    "uriTemplate",
                    modern,
                    inspector.list_filter(Capability::Resource),
                ),
                _ => filter_list(result, "tasks", "taskId", false, |task| {
                    inspector.owns_task(task)
                }),
            };
            match filtered {
                Ok(filtered) => {
                    message.set("result", filtered?);
                    Some(message.to_json())
                }
                Err(Unreadable) => Some(withheld(&id, expect)),
            }
        }
        Expect::CreateTask => {
            // 2025-11-25: `{"task": {"taskId": …}}`; 2026-07-28 tasks extension:
            // `{"resultType": "task", "taskId": …}`.
            #[derive(Deserialize)]
            struct Created {
                task: Option<Task>,
                #[serde(rename = "resultType")]
                result_type: Option<String>,
                #[serde(rename = "taskId")]
                task_id: Option<String>,
                #[serde(rename = "requestState")]
                request_state: Option<String>,
            }
            #[derive(Deserialize)]
            struct Task {
                #[serde(rename = "taskId")]
                task_id: String,
            }
            if !result.contains("taskId") && !result.contains("requestState") {
                return None;
            }
            if let Ok(created) = serde_json::from_str::<Created>(result) {
                if let Some(state) = &created.request_state {
                    inspector.issued_request_state(state);
                }
                let modern = (created.result_type.as_deref() == Some("task"))
                    .then_some(created.task_id)
                    .flatten();
                if let Some(task_id) = created.task.map(|t| t.task_id).or(modern) {
                    inspector.created_task(&task_id);
                }
            }
            None
        }
        Expect::Initialize => {
            #[derive(Deserialize)]
            struct Initialized {
                #[serde(rename = "protocolVersion")]
                protocol_version: String,
            }
            if let Ok(init) = serde_json::from_str::<Initialized>(result) {
                inspector.initialized(&init.protocol_version);
            }
            None
        }
    }
}

/// A list answer the proxy cannot read safely: not one JSON object, a key twice (clients differ
/// on which one wins), or nested too deep. It is withheld, never passed on unfiltered.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// A message that cannot be read as one object (a key twice, at any depth) but answers a list
/// request under one of its `id`s: withheld. Anything else that cannot be read passes untouched
/// (a client cannot read it either).
fn refuse_ambiguous_list(text: &str, inspector: &mut impl Inspector) -> Option<String> {
    struct Ids(Vec<Id>);
    impl<'de> Deserialize<'de> for Ids {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Ids;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON-RPC message")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Ids, A::Error> {
                    let mut ids = Vec::new();
                    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                        let value: serde_json::Value = map.next_value()?;
                        if key == "id" {
                            ids.extend(Id::from_value(&value));
                        }
                    }
                    Ok(Ids(ids))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    let Ids(ids) = serde_json::from_str(text).ok()?;
    ids.into_iter().find_map(|id| match inspector.expect(&id) {
        Answer::Inspect(e) if e.is_list() => Some(withheld(&id, e)),
        _ => None,
    })
}

/// What replaces a message the proxy cannot read: JSON-RPC errors for every expected answer it
/// may have been, or nothing (the message is dropped: whatever it was, no client may read it
/// unread by the proxy).
pub fn withhold_pending(inspector: &mut impl Inspector, why: &str) -> Vec<u8> {
    let pending = inspector.unreadable();
    tracing::warn!(
        answers = pending.len(),
        "an upstream message could not be read ({why}): withheld"
    );
    let errors: Vec<String> = pending
        .iter()
        .map(|(id, expect)| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":"mcp-warden withheld the upstream's {} answer: it could not be read ({why})"}}}}"#,
                id.as_json(),
                expect.method()
            )
        })
        .collect();
    match errors.as_slice() {
        [] => Vec::new(),
        [one] => one.clone().into_bytes(),
        many => format!("[{}]", many.join(",")).into_bytes(),
    }
}

impl Expect {
    /// The method whose answer this is.
    pub fn method(self) -> &'static str {
        match self {
            Self::List(Capability::Tool) => "tools/list",
            Self::List(Capability::Resource) => "resources/list",
            Self::List(Capability::Prompt) => "prompts/list",
            Self::ResourceTemplatesList => "resources/templates/list",
            Self::TasksList => "tasks/list",
            Self::CreateTask => "tools/call",
            Self::Initialize => "initialize",
        }
    }

    /// Whether the answer is a list filtered per caller.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Self::List(_) | Self::ResourceTemplatesList | Self::TasksList
        )
    }

    /// Whether an unreadable answer must be withheld (everything but `initialize`, whose answer
    /// only tells the proxy the version).
    pub fn must_read(self) -> bool {
        self != Self::Initialize
    }
}

/// The JSON-RPC error that replaces a list answer the proxy cannot read safely.
fn withheld(id: &Id, expect: Expect) -> String {
    let method = expect.method();
    tracing::warn!(
        method,
        "the upstream's answer could not be read safely (a key twice, or nested too deep): withheld"
    );
    format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":"mcp-warden withheld the upstream's {method} answer: it could not be read safely (a key twice, or nested too deep)"}}}}"#,
        id.as_json()
    )
}

/// Keeps the elements of `result[list]` whose string member `key` passes `keep`; elements that
/// cannot be read are dropped, and a list that cannot be read is emptied. `Ok(None)` when nothing
/// changes (no such list in an object); `Err` when `result` is not one JSON object without
/// duplicate keys. One pass over `result`; `keep` is asked only once all of it has been read.
pub fn filter_list(
    result: &str,
    list: &str,
    key: &str,
    private: bool,
    keep: impl FnMut(&str) -> bool,
) -> Result<Option<String>, Unreadable> {
    let mut listed = None;
    let mut result = Object::parse_with(result, |member, text| {
        if member != list {
            return walk::value(text);
        }
        let (elements, value, after) = Listed::read(text, key)?;
        listed = elements;
        Some((value, after))
    })
    .ok_or(Unreadable)?;
    let mut changed = false;
    if result.get(list).is_some() {
        changed = true;
        let kept = listed.map_or_else(|| "[]".to_owned(), |listed| listed.kept(keep));
        result.set(list, kept);
    }
    if private {
        changed = true;
        result.set("cacheScope", "\"private\"".to_owned());
        if let Some(ttl) = result
            .get("ttlMs")
            .and_then(|t| serde_json::from_str::<f64>(t).ok())
            && ttl > MAX_TTL_MS as f64
        {
            result.set("ttlMs", MAX_TTL_MS.to_string());
        }
    }
    Ok(changed.then(|| result.to_json()))
}

#[cfg(test)]
mod tests;
