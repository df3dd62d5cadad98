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
//! ```
//!
//! Members are kept as raw JSON text in their order, so every surviving tool object (its
//! `inputSchema`, `annotations`, `icons`, `_meta`, `execution` …) reaches the client byte for
//! byte (VER-04). An object with duplicate keys is treated as unreadable: a list that cannot be
//! read safely is emptied rather than passed on (fail closed).

use super::jsonrpc::Id;
use serde::{Deserialize, Deserializer, de};
use serde_json::value::RawValue;
use std::fmt;

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
    /// Whether `tools/list` shows this tool to the caller.
    fn lists_tool(&mut self, name: &str) -> bool;
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

/// A JSON object whose members keep their order and exact text.
#[derive(Debug)]
struct Object(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Object;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    members.push((key, value));
                }
                Ok(Object(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Object {
    fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    fn to_raw(&self) -> Box<RawValue> {
        let mut out = String::from("{");
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::String(key.clone()).to_string());
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        raw(out)
    }
}

fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| empty_array())
}

fn empty_array() -> Box<RawValue> {
    RawValue::from_string("[]".to_owned()).expect("[] is JSON")
}

/// Rewrites a JSON-RPC response text (object or batch array) when a response in it is one the
/// inspector expects; `None` leaves the bytes untouched.
pub fn rewrite(text: &[u8], inspector: &mut impl Inspector) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let items: Vec<Box<RawValue>> = serde_json::from_str(text).ok()?;
        let mut changed = false;
        let items: Vec<Box<RawValue>> = items
            .into_iter()
            .map(|item| match rewrite_message(item.get(), inspector) {
                Some(new) => {
                    changed = true;
                    new
                }
                None => item,
            })
            .collect();
        let joined: Vec<&str> = items.iter().map(|i| i.get()).collect();
        return changed.then(|| format!("[{}]", joined.join(",")).into_bytes());
    }
    rewrite_message(text, inspector).map(|new| new.get().as_bytes().to_vec())
}

fn rewrite_message(text: &str, inspector: &mut impl Inspector) -> Option<Box<RawValue>> {
    let mut message = Object::parse(text)?;
    let id = Id::from_value(&serde_json::from_str(message.get("id")?.get()).ok()?)?;
    let expect = inspector.expect(&id)?;
    if expect == Expect::CreateTask {
        inspector.answered(
            &id,
            message.get("result").map(|r| r.get()),
            message.get("error").map(|e| e.get()),
        );
    }
    let result = message.get("result")?;
    match expect {
        Expect::ToolsList => {
            let modern = inspector.modern();
            let filtered = filter_list(result.get(), "tools", "name", modern, |name| {
                inspector.lists_tool(name)
            })?;
            message.set("result", filtered);
            Some(message.to_raw())
        }
        Expect::TasksList => {
            let filtered = filter_list(result.get(), "tasks", "taskId", false, |task| {
                inspector.owns_task(task)
            })?;
            message.set("result", filtered);
            Some(message.to_raw())
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
            if !result.get().contains("taskId") {
                return None;
            }
            if let Ok(created) = serde_json::from_str::<Created>(result.get()) {
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
            if let Ok(init) = serde_json::from_str::<Initialized>(result.get()) {
                inspector.initialized(&init.protocol_version);
            }
            None
        }
    }
}

/// Keeps the elements of `result[list]` whose string member `key` passes `keep`; elements that
/// cannot be read are dropped. `None` when nothing changes (no such list in an object).
pub fn filter_list(
    result: &str,
    list: &str,
    key: &str,
    private: bool,
    mut keep: impl FnMut(&str) -> bool,
) -> Option<Box<RawValue>> {
    let mut result = Object::parse(result)?;
    let mut changed = false;
    if let Some(items) = result.get(list) {
        changed = true;
        let kept = match serde_json::from_str::<Vec<Box<RawValue>>>(items.get()) {
            Ok(items) => {
                let kept: Vec<&str> = items
                    .iter()
                    .filter(|item| {
                        Object::parse(item.get())
                            .and_then(|o| {
                                o.get(key)
                                    .and_then(|v| serde_json::from_str::<String>(v.get()).ok())
                            })
                            .is_some_and(|name| keep(&name))
                    })
                    .map(|item| item.get())
                    .collect();
                raw(format!("[{}]", kept.join(",")))
            }
            Err(_) => empty_array(),
        };
        result.set(list, kept);
    }
    if private {
        changed = true;
        result.set("cacheScope", raw("\"private\"".to_owned()));
        if let Some(ttl) = result
            .get("ttlMs")
            .and_then(|t| serde_json::from_str::<f64>(t.get()).ok())
            && ttl > MAX_TTL_MS as f64
        {
            result.set("ttlMs", raw(MAX_TTL_MS.to_string()));
        }
    }
    changed.then(|| result.to_raw())
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
    }

    impl Inspector for Fake {
        fn expect(&mut self, id: &Id) -> Option<Expect> {
            self.expect.get(id.as_json()).copied()
        }
        fn lists_tool(&mut self, name: &str) -> bool {
            self.tools.contains(name)
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
