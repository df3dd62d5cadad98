//! Reading and rewriting upstream responses: `tools/list` and `tasks/list` filtered per caller,
//! task ids and negotiated versions recorded.
//!
//! ```text
//! JSON body, or one SSE event's data ──► rewrite(text, inspector)
//!   object (or 2025-03-26 array of objects) ──► id ──inspector.expect(id)──► what the request was
//!     ToolsList  ──► result.tools minus the tools `Caller::lists` refuses (upstream order kept,
//!                    nextCursor kept even on an emptied page); modern era: cacheScope "private",
//!                    ttlMs capped
//!     TasksList  ──► result.tasks minus the tasks of other principals
//!     CreateTask ──► record result.task.taskId for the caller (no change)
//!     Initialize ──► record result.protocolVersion for the session (no change)
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
use object::Object;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest `ttlMs` the proxy lets a per-caller list be cached (CACHE-01: lowered so that a
/// policy change shows soon).
pub const MAX_TTL_MS: u64 = 60_000;

/// What the proxy does with the response to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Filter `result.tools`.
    ToolsList,
    /// Filter `result.tasks`.
    TasksList,
    /// Record `result.task.taskId` (a task-augmented request).
    CreateTask,
    /// Record `result.protocolVersion` (legacy `initialize`).
    Initialize,
}

/// The per-request knowledge `rewrite` needs.
pub trait Inspector {
    /// What to do with the response to `id` (`None`: pass it on).
    fn expect(&mut self, id: &Id) -> Option<Expect>;
    /// Whether `tools/list` shows a tool to the caller, asked of each listed tool of one
    /// response (so the caller is resolved once per response, not once per tool).
    fn tool_filter(&mut self) -> impl FnMut(&str) -> bool + '_;
    /// Whether the task belongs to the caller.
    fn owns_task(&self, task_id: &str) -> bool;
    /// A task was created for the caller.
    fn created_task(&mut self, task_id: &str);
    /// The upstream accepted `initialize` with this version.
    fn initialized(&mut self, protocol_version: &str);
    /// Whether the request was 2026-07-28 or later.
    fn modern(&self) -> bool;
    /// The response to an expected request (`result` or `error` as raw JSON text), for the
    /// audit trail's final record of a `tools/call`.
    fn answered(&mut self, _id: &Id, _result: Option<&str>, _error: Option<&str>) {}
}

/// Rewrites a JSON-RPC response text (object or batch array) when a response in it is one the
/// inspector expects; `None` leaves the bytes untouched.
pub fn rewrite(text: &[u8], inspector: &mut impl Inspector) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
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
            .collect();
        return Some(format!("[{}]", joined.join(",")).into_bytes());
    }
    rewrite_message(text, inspector).map(String::into_bytes)
}

fn rewrite_message(text: &str, inspector: &mut impl Inspector) -> Option<String> {
    let Some(mut message) = Object::parse(text) else {
        return refuse_ambiguous_list(text, inspector);
    };
    let id = Id::from_value(&serde_json::from_str(message.get("id")?).ok()?)?;
    let expect = inspector.expect(&id)?;
    if expect == Expect::CreateTask {
        inspector.answered(&id, message.get("result"), message.get("error"));
    }
    let result = message.get("result")?;
    match expect {
        Expect::ToolsList | Expect::TasksList => {
            let filtered = if expect == Expect::ToolsList {
                let modern = inspector.modern();
                filter_list(result, "tools", "name", modern, inspector.tool_filter())
            } else {
                filter_list(result, "tasks", "taskId", false, |task| {
                    inspector.owns_task(task)
                })
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
            }
            #[derive(Deserialize)]
            struct Task {
                #[serde(rename = "taskId")]
                task_id: String,
            }
            if !result.contains("taskId") {
                return None;
            }
            if let Ok(created) = serde_json::from_str::<Created>(result) {
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
    ids.into_iter().find_map(|id| match inspector.expect(&id)? {
        e @ (Expect::ToolsList | Expect::TasksList) => Some(withheld(&id, e)),
        _ => None,
    })
}

/// The JSON-RPC error that replaces a list answer the proxy cannot read safely.
fn withheld(id: &Id, expect: Expect) -> String {
    let method = if expect == Expect::ToolsList {
        "tools/list"
    } else {
        "tasks/list"
    };
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
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[derive(Default)]
    struct Fake {
        expect: HashMap<String, Expect>,
        tools: HashSet<&'static str>,
        tasks: HashSet<&'static str>,
        created: Vec<String>,
        versions: Vec<String>,
        modern: bool,
        /// How many tool filters were asked for, and the names they were asked about.
        filters: usize,
        asked: Vec<String>,
    }

    impl Inspector for Fake {
        fn expect(&mut self, id: &Id) -> Option<Expect> {
            self.expect.get(id.as_json()).copied()
        }
        fn tool_filter(&mut self) -> impl FnMut(&str) -> bool + '_ {
            self.filters += 1;
            |name| {
                self.asked.push(name.to_owned());
                self.tools.contains(name)
            }
        }
        fn owns_task(&self, task_id: &str) -> bool {
            self.tasks.contains(task_id)
        }
        fn created_task(&mut self, task_id: &str) {
            self.created.push(task_id.to_owned());
        }
        fn initialized(&mut self, v: &str) {
            self.versions.push(v.to_owned());
        }
        fn modern(&self) -> bool {
            self.modern
        }
    }

    fn fake(id: &str, expect: Expect) -> Fake {
        let mut f = Fake::default();
        f.expect.insert(id.to_owned(), expect);
        f.tools = ["echo", "get-sum"].into();
        f
    }

    fn out(text: &str, f: &mut Fake) -> Option<String> {
        rewrite(text.as_bytes(), f).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn tools_are_filtered_in_order_and_kept_byte_for_byte() {
        let text = r#"{"result":{"tools":[{"name":"get-env","inputSchema":{}},{"name":"echo", "inputSchema":{"type":"object","x-mcp-header":"X"},"_meta":{"z":1,"a":2}},{"name":"zzz"},{"name":"get-sum","icons":[]}],"nextCursor":"c2"},"jsonrpc":"2.0","id":1}"#;
        let got = out(text, &mut fake("1", Expect::ToolsList)).unwrap();
        assert_eq!(
            got,
            r#"{"result":{"tools":[{"name":"echo", "inputSchema":{"type":"object","x-mcp-header":"X"},"_meta":{"z":1,"a":2}},{"name":"get-sum","icons":[]}],"nextCursor":"c2"},"jsonrpc":"2.0","id":1}"#
        );
    }

    #[test]
    fn each_tool_is_read_for_its_own_name_once_per_response() {
        let mut f = fake("1", Expect::ToolsList);
        // A nested `name` (in `inputSchema`) is not the tool's; `name` need not come first;
        // escapes are decoded for the decision and kept in the bytes; elements that are not
        // objects with a readable string `name` (and no duplicate key) are dropped unasked.
        // A key twice counts however it is spelled; a lone surrogate elsewhere in a value is
        // skipped, not decoded.
        let text = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[ {"inputSchema":{"properties":{"name":{"type":"string"}},"name":"echo"},"name":"hidden"} ,{"description":"x","name":"ech\u006f"},{"na\u006de":"get-sum","annotations":{"title":"name"}},7,"echo",["echo"],null,{"name":["echo"]},{"\ud800":1,"name":"echo"},{"name":"\ud800"},{"name":"echo","x":1,"x":2},{"title":"echo"},{"name":"hidden","na\u006de":"echo"},{"x":1,"\u0078":2,"name":"echo"},{"name":1e999},{"name":null},{"Name":"echo"},
 {"name":"echo","d":{"\ud800":"\udc00"}}
]},"x":"\u00e9"}"#;
        assert_eq!(
            out(text, &mut f).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"description":"x","name":"ech\u006f"},{"na\u006de":"get-sum","annotations":{"title":"name"}},{"name":"echo","d":{"\ud800":"\udc00"}}]},"x":"\u00e9"}"#
        );
        assert_eq!(
            f.filters, 1,
            "one filter (one caller resolution) per response"
        );
        assert_eq!(f.asked, ["hidden", "echo", "get-sum", "echo"]);
    }

    #[test]
    fn a_huge_list_is_filtered_in_order() {
        let tools: Vec<String> = (0..50_000)
            .map(|i| format!(r#"{{"name":"t{i}","inputSchema":{{"type":"object","name":"t7"}}}}"#))
            .collect();
        let result = format!(r#"{{"tools":[{}],"nextCursor":"n"}}"#, tools.join(",\n"));
        let mut asked = 0;
        let got = filter_list(&result, "tools", "name", false, |name| {
            asked += 1;
            name.ends_with('7')
        })
        .unwrap()
        .unwrap();
        let kept: Vec<&str> = tools
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 == 7)
            .map(|(_, t)| t.as_str())
            .collect();
        assert_eq!(
            got,
            format!(r#"{{"tools":[{}],"nextCursor":"n"}}"#, kept.join(","))
        );
        assert_eq!(asked, 50_000);
    }

    #[test]
    fn an_emptied_page_keeps_its_cursor_and_modern_lists_are_private() {
        let mut f = fake("\"p\"", Expect::ToolsList);
        f.modern = true;
        let text = r#"{"jsonrpc":"2.0","id":"p","result":{"tools":[{"name":"hidden"}],"nextCursor":"","ttlMs":3600000,"cacheScope":"public","resultType":"complete"}}"#;
        let got: serde_json::Value = serde_json::from_str(&out(text, &mut f).unwrap()).unwrap();
        assert_eq!(
            got["result"],
            serde_json::json!({"tools":[],"nextCursor":"","ttlMs":60000,"cacheScope":"private","resultType":"complete"})
        );
        // Legacy era: no cache hints are added.
        let text = r#"{"jsonrpc":"2.0","id":"p","result":{"tools":[],"nextCursor":"n"}}"#;
        let mut f = fake("\"p\"", Expect::ToolsList);
        assert_eq!(out(text, &mut f).unwrap(), text);
    }

    #[test]
    fn other_ids_errors_and_non_json_pass_untouched() {
        let mut f = fake("1", Expect::ToolsList);
        for text in [
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"hidden"}]}}"#,
            r#"{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"hidden"}]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            "not json",
            "",
        ] {
            assert_eq!(out(text, &mut f), None, "{text}");
        }
    }

    #[test]
    fn unreadable_lists_fail_closed() {
        let mut f = fake("1", Expect::ToolsList);
        let got = out(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"hidden"}}}"#,
            &mut f,
        )
        .unwrap();
        assert_eq!(got, r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
        let got = out(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":1},"x",{"title":"t"},{"name":"echo","name":"get-env"}]}}"#, &mut f).unwrap();
        assert_eq!(got, r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
    }

    #[test]
    fn a_result_that_cannot_be_read_is_not_rewritten_and_nobody_is_asked() {
        for result in [
            r#"{"tools":[{"name":"echo"}],"tools":[{"name":"echo"}]}"#,
            r#"{"tools":[{"name":"echo"}],"t\u006fols":[]}"#,
            r#"{"tools":[{"name":"echo"},]}"#,
            r#"{"tools":[{"name":"echo"} {"name":"echo"}]}"#,
            r#"{"tools":[{"name":"echo"}]} x"#,
            r#"{"tools":[{"name":"echo"}]"#,
            r#"[{"tools":[{"name":"echo"}]}]"#,
        ] {
            let mut asked = 0;
            let got = filter_list(result, "tools", "name", true, |_| {
                asked += 1;
                true
            });
            assert_eq!((got, asked), (Err(Unreadable), 0), "{result}");
        }
        let got = filter_list(
            " {\"tools\" : [ ] ,\"x\":1 } ",
            "tools",
            "name",
            false,
            |_| true,
        );
        assert_eq!(got.unwrap().unwrap(), r#"{"tools":[],"x":1}"#);
    }

    #[test]
    fn a_list_answer_with_a_key_twice_is_withheld() {
        let withheld = |id: &str, method: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":"mcp-warden withheld the upstream's {method} answer: it could not be read safely (a key twice, or nested too deep)"}}}}"#
            )
        };
        for (text, id) in [
            // Two results: a client taking either would see the hidden tool.
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]},"result":{"tools":[{"name":"hidden"}]}}"#,
                "1",
            ),
            // Two `tools` lists in the result, however the second key is spelled.
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}],"tools":[{"name":"hidden"}]}}"#,
                "1",
            ),
            // Two ids: the expected one is found whichever comes first.
            (
                r#"{"jsonrpc":"2.0","id":7,"id":1,"result":{"tools":[{"name":"hidden"}]}}"#,
                "1",
            ),
            (
                r#"{"id":1,"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"hidden"}]}}"#,
                "1",
            ),
        ] {
            let mut f = fake("1", Expect::ToolsList);
            assert_eq!(
                out(text, &mut f).unwrap(),
                withheld(id, "tools/list"),
                "{text}"
            );
            assert!(
                f.asked.is_empty(),
                "nobody is asked about an unreadable list"
            );
        }
        let mut f = fake("\"t\"", Expect::TasksList);
        let text =
            r#"{"jsonrpc":"2.0","id":"t","result":{"tasks":[],"tasks":[{"taskId":"other"}]}}"#;
        assert_eq!(out(text, &mut f).unwrap(), withheld("\"t\"", "tasks/list"));
        // A key twice in an answer that is not a list, or to another request: untouched.
        let mut f = fake("1", Expect::ToolsList);
        for text in [
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[]},"result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"x","method":"y"}"#,
        ] {
            assert_eq!(out(text, &mut f), None, "{text}");
        }
        let mut f = fake("1", Expect::Initialize);
        let text = r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#;
        assert_eq!(out(text, &mut f), None);
    }

    #[test]
    fn batched_responses_are_filtered_element_by_element() {
        let mut f = fake("1", Expect::ToolsList);
        let text = r#"[{"jsonrpc":"2.0","id":0,"result":{}}, {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"},{"name":"echo"}]}}]"#;
        assert_eq!(
            out(text, &mut f).unwrap(),
            r#"[{"jsonrpc":"2.0","id":0,"result":{}},{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]}}]"#
        );
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"id\"",
            "1",
            "\"result\"",
            "\"tools\"",
            "\"name\"",
            "\"echo\"",
            "\"tasks\"",
            "\"taskId\"",
            "\"task\"",
            "null",
            "\"\\u0000\"",
            " ",
            "\"nextCursor\"",
            "\u{e9}",
        ];
        for expect in [
            Expect::ToolsList,
            Expect::TasksList,
            Expect::CreateTask,
            Expect::Initialize,
        ] {
            let mut f = fake("1", expect);
            f.modern = true;
            for _ in 0..3_000 {
                let text: String = (0..(next() % 40))
                    .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                    .collect();
                if let Some(out) = rewrite(text.as_bytes(), &mut f) {
                    serde_json::from_slice::<serde_json::Value>(&out)
                        .expect("rewritten text is JSON");
                }
            }
        }
    }

    #[test]
    fn tasks_are_recorded_and_filtered() {
        let mut f = fake("5", Expect::CreateTask);
        let created =
            r#"{"jsonrpc":"2.0","id":5,"result":{"task":{"taskId":"t-1","status":"working"}}}"#;
        assert_eq!(out(created, &mut f), None);
        assert_eq!(f.created, ["t-1"]);
        let mut f = fake("5", Expect::CreateTask);
        let modern = r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"task","taskId":"t-2","status":"working"}}"#;
        assert_eq!(out(modern, &mut f), None);
        assert_eq!(f.created, ["t-2"]);
        let mut f = fake("5", Expect::CreateTask);
        let plain = r#"{"jsonrpc":"2.0","id":5,"result":{"resultType":"complete","content":[],"taskId":"t-3"}}"#;
        assert_eq!(out(plain, &mut f), None);
        assert!(f.created.is_empty(), "only task results bind a task");
        let mut f = fake("6", Expect::TasksList);
        f.tasks = ["t-1"].into();
        let list = r#"{"jsonrpc":"2.0","id":6,"result":{"tasks":[{"taskId":"t-0"},{"taskId":"t-1","status":"completed"}],"nextCursor":"x"}}"#;
        assert_eq!(
            out(list, &mut f).unwrap(),
            r#"{"jsonrpc":"2.0","id":6,"result":{"tasks":[{"taskId":"t-1","status":"completed"}],"nextCursor":"x"}}"#
        );
        let mut f = fake("0", Expect::Initialize);
        let init = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
        assert_eq!(out(init, &mut f), None);
        assert_eq!(f.versions, ["2025-06-18"]);
    }
}
