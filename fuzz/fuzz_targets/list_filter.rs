//! `proxy::filter::rewrite` on an arbitrary upstream answer, for a caller whose visible tools
//! and tasks follow a rule picked by the input.
//!
//! Input: byte 0 picks the rule (bits 0-1), the era (bit 2) and the client model (bit 3); the
//! rest is the response text (JSON body or one SSE event's data).
//! The inspector expects `tools/list` answers for ids `1` and `"a"`, `tasks/list` for `2`,
//! a task creation for `3`, `initialize` for `4`, passes `5` unread and drops other answers.
//!
//! What goes to the client is the rewritten text (empty: dropped), or the input when `rewrite`
//! returns `None`.
//! Read as a client reads it, no answer to an expected list may show a tool (task) the rule
//! refuses. The strict client is serde_json (UTF-8 only, ids compared as the proxy compares
//! them: canonical JSON text). The lenient client, enabled by `MCP_WARDEN_FUZZ_LENIENT_CLIENT=1`,
//! reads as a JavaScript (TypeScript SDK) client does: invalid UTF-8 replaced by U+FFFD, a
//! leading BOM dropped, numeric ids compared by value (`1.0` answers `1`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_warden_sidecar::proxy::filter::{self, Answer, Expect, Inspector, MAX_TTL_MS};
use mcp_warden_policy::Capability;
use mcp_warden_sidecar::proxy::jsonrpc::Id;
use serde_json::Value;
use std::sync::OnceLock;

/// Whether the caller sees a tool: by rule 0-3.
fn tool_allowed(rule: u8, name: &str) -> bool {
    match rule & 3 {
        0 => !name.contains("hid"),
        1 => false,
        2 => name.len() % 2 == 0,
        _ => name.starts_with('e'),
    }
}

fn task_owned(task: &str) -> bool {
    task.starts_with("mine")
}

/// What the proxy expects for an id (its own comparison: canonical JSON text).
fn expected(id: &str) -> Option<Expect> {
    match id {
        "1" | "\"a\"" => Some(Expect::List(Capability::Tool)),
        "2" => Some(Expect::TasksList),
        "3" => Some(Expect::CreateTask),
        "4" => Some(Expect::Initialize),
        _ => None,
    }
}

struct Caller {
    rule: u8,
    modern: bool,
    filters: usize,
}

impl Inspector for Caller {
    fn expect(&mut self, id: &Id) -> Answer {
        match (expected(id.as_json()), id.as_json()) {
            (Some(expect), _) => Answer::Inspect(expect),
            // A forwarded request that needs no reading (a tools/call).
            (None, "5") => Answer::Pass,
            (None, _) => Answer::Drop,
        }
    }
    fn list_filter(&mut self, _capability: Capability) -> impl FnMut(&str) -> bool + '_ {
        self.filters += 1;
        let rule = self.rule;
        move |name| tool_allowed(rule, name)
    }
    fn owns_task(&self, task_id: &str) -> bool {
        task_owned(task_id)
    }
    fn created_task(&mut self, _task_id: &str) {}
    fn initialized(&mut self, _protocol_version: &str) {}
    fn modern(&self) -> bool {
        self.modern
    }
}

/// What a client that sent the expected requests takes a message to answer.
fn answers(message: &Value, lenient: bool) -> Option<Expect> {
    let id = message.get("id")?;
    let by_text = Id::from_value(id).and_then(|id| expected(id.as_json()));
    if !lenient {
        return by_text;
    }
    match id {
        Value::Number(n) => match n.as_f64()? {
            1.0 => Some(Expect::List(Capability::Tool)),
            2.0 => Some(Expect::TasksList),
            _ => None,
        },
        _ => by_text,
    }
}

/// Checks one message as a client reads it.
fn check_message(message: &Value, caller: &Caller, lenient: bool, rewritten: bool) {
    let Some(expect) = answers(message, lenient) else { return };
    let Some(result) = message.get("result") else { return };
    let (list, key) = match expect {
        Expect::List(Capability::Tool) => ("tools", "name"),
        Expect::TasksList => ("tasks", "taskId"),
        _ => return,
    };
    if let Some(items) = result.get(list).and_then(Value::as_array) {
        for item in items {
            if let Some(name) = item.get(key).and_then(Value::as_str) {
                let visible = match expect {
                    Expect::List(Capability::Tool) => tool_allowed(caller.rule, name),
                    _ => task_owned(name),
                };
                assert!(
                    visible,
                    "the client sees {list} element {name:?} the rule refuses (rewritten: {rewritten}): {message}"
                );
            }
        }
    }
    let proxy_expects = Id::from_value(&message["id"]).and_then(|id| expected(id.as_json()));
    if rewritten && caller.modern && proxy_expects == Some(Expect::List(Capability::Tool)) && result.is_object() {
        assert_eq!(result["cacheScope"], "private", "{message}");
        if let Some(ttl) = result.get("ttlMs").and_then(Value::as_f64) {
            assert!(ttl <= MAX_TTL_MS as f64, "{message}");
        }
    }
}

fn lenient_enabled() -> bool {
    static LENIENT: OnceLock<bool> = OnceLock::new();
    *LENIENT.get_or_init(|| std::env::var_os("MCP_WARDEN_FUZZ_LENIENT_CLIENT").is_some_and(|v| v == "1"))
}

fuzz_target!(|input: &[u8]| {
    let [config, text @ ..] = input else { return };
    let mut caller = Caller { rule: config & 3, modern: config & 4 != 0, filters: 0 };
    let lenient = lenient_enabled() && config & 8 != 0;
    let rewritten = filter::rewrite(text, &mut caller);
    let out: &[u8] = rewritten.as_deref().unwrap_or(text);
    if rewritten.is_some() {
        // The proxy writes JSON (a lone surrogate copied from the input aside).
        if !out.is_empty() && serde_json::from_slice::<Value>(text).is_ok() {
            serde_json::from_slice::<Value>(out).expect("rewritten text is not JSON");
        }
    }
    let value = if lenient {
        let decoded = String::from_utf8_lossy(out);
        serde_json::from_str::<Value>(decoded.strip_prefix('\u{FEFF}').unwrap_or(&decoded))
    } else {
        serde_json::from_slice::<Value>(out)
    };
    let Ok(value) = value else { return };
    match &value {
        Value::Array(items) => items
            .iter()
            .for_each(|m| check_message(m, &caller, lenient, rewritten.is_some())),
        message => check_message(message, &caller, lenient, rewritten.is_some()),
    }
});
