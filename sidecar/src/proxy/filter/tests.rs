//! Unit tests of `rewrite` and `filter_list`.
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
    /// Like the relay: an unknown id is dropped, and `unreadable` settles what is pending.
    strict: bool,
    settled: HashSet<String>,
}

impl Inspector for Fake {
    fn expect(&mut self, id: &Id) -> Answer {
        match self.expect.get(id.as_json()) {
            Some(e) => {
                self.settled.insert(id.as_json().to_owned());
                Answer::Inspect(*e)
            }
            None if self.strict => Answer::Drop,
            None => Answer::Pass,
        }
    }
    fn unreadable(&mut self) -> Vec<(Id, Expect)> {
        let pending: Vec<(Id, Expect)> = self
            .expect
            .iter()
            .filter(|(id, _)| self.strict && !self.settled.contains(*id))
            .map(|(id, e)| {
                (
                    Id::from_value(&serde_json::from_str(id).unwrap()).unwrap(),
                    *e,
                )
            })
            .collect();
        self.settled
            .extend(pending.iter().map(|(id, _)| id.as_json().to_owned()));
        pending
    }
    fn list_filter(&mut self, _capability: Capability) -> impl FnMut(&str) -> bool + '_ {
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
    fn input_requests(&mut self, result: &str) -> Option<String> {
        result
            .contains("sampling/createMessage")
            .then(|| "it asks for \"sampling\"".to_owned())
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
    let got = out(text, &mut fake("1", Expect::List(Capability::Tool))).unwrap();
    assert_eq!(
        got,
        r#"{"result":{"tools":[{"name":"echo", "inputSchema":{"type":"object","x-mcp-header":"X"},"_meta":{"z":1,"a":2}},{"name":"get-sum","icons":[]}],"nextCursor":"c2"},"jsonrpc":"2.0","id":1}"#
    );
}

#[test]
fn each_tool_is_read_for_its_own_name_once_per_response() {
    let mut f = fake("1", Expect::List(Capability::Tool));
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
    let mut f = fake("\"p\"", Expect::List(Capability::Tool));
    f.modern = true;
    let text = r#"{"jsonrpc":"2.0","id":"p","result":{"tools":[{"name":"hidden"}],"nextCursor":"","ttlMs":3600000,"cacheScope":"public","resultType":"complete"}}"#;
    let got: serde_json::Value = serde_json::from_str(&out(text, &mut f).unwrap()).unwrap();
    assert_eq!(
        got["result"],
        serde_json::json!({"tools":[],"nextCursor":"","ttlMs":60000,"cacheScope":"private","resultType":"complete"})
    );
    // Legacy era: no cache hints are added.
    let text = r#"{"jsonrpc":"2.0","id":"p","result":{"tools":[],"nextCursor":"n"}}"#;
    let mut f = fake("\"p\"", Expect::List(Capability::Tool));
    assert_eq!(out(text, &mut f).unwrap(), text);
}

#[test]
fn other_ids_errors_and_server_messages_pass_untouched() {
    let mut f = fake("1", Expect::List(Capability::Tool));
    for text in [
        r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"hidden"}]}}"#,
        r#"{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"hidden"}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{}}"#,
    ] {
        assert_eq!(out(text, &mut f), None, "{text}");
    }
    // What cannot be read is never passed on: dropped when nothing is pending.
    assert_eq!(out("", &mut f), None, "a priming event's empty data");
    assert_eq!(out(" \n", &mut f), None);
    for text in ["not json", "\u{feff}{}", "null"] {
        assert_eq!(out(text, &mut f).as_deref(), Some(""), "{text:?}");
    }
    assert_eq!(
        rewrite(b"{\"id\":1,\"result\":\"\xff\"}", &mut f),
        Some(Vec::new())
    );
}

#[test]
fn answers_under_unknown_ids_are_dropped_and_unreadable_ones_withheld() {
    let strict = || {
        let mut f = fake("1", Expect::List(Capability::Tool));
        f.strict = true;
        f
    };
    let all = r#"{"tools":[{"name":"echo"},{"name":"get-env"}]}"#;
    // Another id, a float spelling of another id, a response that also claims to be a request.
    for text in [
        format!(r#"{{"jsonrpc":"2.0","id":2,"result":{all}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":2.0,"result":{all}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":null,"result":{all}}}"#),
        format!(r#"{{"jsonrpc":"2.0","result":{all}}}"#),
    ] {
        assert_eq!(out(&text, &mut strict()).as_deref(), Some(""), "{text}");
    }
    // The expected id under another spelling, or with a `method` besides: still filtered.
    for text in [
        format!(r#"{{"jsonrpc":"2.0","id":1.0,"result":{all}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":1e0,"method":"x","result":{all}}}"#),
    ] {
        let got = out(&text, &mut strict()).unwrap();
        assert!(
            got.contains("echo") && !got.contains("get-env"),
            "{text}: {got}"
        );
    }
    // Unreadable while the list is pending: withheld as an error for its id, once.
    for text in [
        &b"\xEF\xBB\xBF{\"id\":1}"[..],
        b"{\"id\":1,\"result\":\"\xff\"}",
        b"[1,",
    ] {
        let mut f = strict();
        let got = String::from_utf8(rewrite(text, &mut f).unwrap()).unwrap();
        assert!(got.contains(r#""id":1,"error":{"code":-32603"#), "{got}");
        assert!(got.contains("withheld"), "{got}");
        assert_eq!(
            rewrite(text, &mut f),
            Some(Vec::new()),
            "withheld once, then dropped"
        );
    }
}

#[test]
fn unreadable_lists_fail_closed() {
    let mut f = fake("1", Expect::List(Capability::Tool));
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
        let mut f = fake("1", Expect::List(Capability::Tool));
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
    let text = r#"{"jsonrpc":"2.0","id":"t","result":{"tasks":[],"tasks":[{"taskId":"other"}]}}"#;
    assert_eq!(out(text, &mut f).unwrap(), withheld("\"t\"", "tasks/list"));
    // A key twice in an answer that is not a list, or to another request: never passed on
    // (nothing is pending here, so it is dropped).
    let mut f = fake("1", Expect::List(Capability::Tool));
    for text in [
        r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[]},"result":{}}"#,
        r#"{"jsonrpc":"2.0","method":"x","method":"y"}"#,
    ] {
        assert_eq!(out(text, &mut f).as_deref(), Some(""), "{text}");
    }
    let mut f = fake("1", Expect::Initialize);
    let text = r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#;
    assert_eq!(out(text, &mut f).as_deref(), Some(""));
}

#[test]
fn batched_responses_are_filtered_element_by_element() {
    let mut f = fake("1", Expect::List(Capability::Tool));
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
        Expect::List(Capability::Tool),
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
            if let Some(out) = rewrite(text.as_bytes(), &mut f).filter(|o| !o.is_empty()) {
                serde_json::from_slice::<serde_json::Value>(&out)
                    .expect("rewritten text is JSON (or nothing: dropped)");
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
    let init =
        r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
    assert_eq!(out(init, &mut f), None);
    assert_eq!(f.versions, ["2025-06-18"]);
}

#[test]
fn input_requests_the_caller_may_not_receive_withhold_the_answer() {
    let sampling = r#"{"jsonrpc":"2.0","id":4,"result":{"resultType":"input_required","inputRequests":{"a":{"method":"sampling/createMessage","params":{}}}}}"#;
    let elicit = sampling.replace("sampling/createMessage", "elicitation/create");
    // Whether or not the proxy reads the answer otherwise (a tools/call, or a prompts/get).
    for mut f in [fake("4", Expect::CreateTask), Fake::default()] {
        let got: serde_json::Value = serde_json::from_str(&out(sampling, &mut f).unwrap()).unwrap();
        assert_eq!(got["id"], 4);
        assert_eq!(got["error"]["code"], -32603);
        assert_eq!(
            got["error"]["message"],
            "mcp-warden withheld the upstream's answer: it asks for \"sampling\""
        );
        assert!(got.get("result").is_none());
        assert_eq!(
            out(&elicit, &mut f),
            None,
            "an allowed input request passes untouched"
        );
    }
}
