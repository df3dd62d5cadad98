//! What an audited message uses, and the arguments its record carries.
//!
//! ```text
//! tools/call           params.name ──► (Tool, name)          arguments: params.arguments
//! resources/read       params.uri  ──► (Resource, uri)       none
//! resources/subscribe  params.uri  ──► (Resource, uri)       none
//! prompts/get          params.name ──► (Prompt, name)        arguments: params.arguments
//! completion/complete  params.ref  ──► ref/prompt: (Prompt, name); ref/resource: (Resource,
//!                                      template)             arguments: params.context.arguments
//!                                                            with params.argument {name: value}
//! ```
//!
//! The arguments of a prompt (and of a completion, which carries the prompt's arguments) are
//! redacted by the prompt entry's `audit.redact`, as a tool's by the tool entry's.

use super::super::jsonrpc::Message;
use mcp_warden_policy::Capability;
use serde_json::{Map, Value};

/// The methods that get request-phase and final records (when allowed) or a denial record.
pub(super) const AUDITED: [&str; 5] = [
    "tools/call",
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "completion/complete",
];

/// Whether `m` is a request of an audited method.
pub(super) fn audited(m: &Message) -> bool {
    matches!(m, Message::Request { .. }) && m.method().is_some_and(|m| AUDITED.contains(&m))
}

/// The tool, resource or prompt an audited message uses (`None` when it names none).
pub(super) fn of(m: &Message) -> Option<(Capability, &str)> {
    match m.method()? {
        "tools/call" => Some((Capability::Tool, m.param_str("name")?)),
        "resources/read" | "resources/subscribe" => {
            Some((Capability::Resource, m.param_str("uri")?))
        }
        "prompts/get" => Some((Capability::Prompt, m.param_str("name")?)),
        "completion/complete" => {
            let reference = m.params()?.get("ref")?;
            let text = |key: &str| reference.get(key).and_then(Value::as_str);
            match text("type")? {
                "ref/prompt" => Some((Capability::Prompt, text("name")?)),
                "ref/resource" => Some((Capability::Resource, text("uri")?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The arguments an audited message's record carries, before redaction.
pub(super) fn arguments(m: &Message) -> Option<Value> {
    let params = m.params()?;
    match m.method()? {
        "tools/call" | "prompts/get" => params.get("arguments").cloned(),
        "completion/complete" => {
            let mut all = match params.get("context").and_then(|c| c.get("arguments")) {
                Some(Value::Object(map)) => map.clone(),
                _ => Map::new(),
            };
            let argument = params.get("argument");
            if let Some(name) = argument.and_then(|a| a.get("name")).and_then(Value::as_str) {
                let value = argument.and_then(|a| a.get("value")).cloned();
                all.insert(name.to_owned(), value.unwrap_or(Value::Null));
            }
            (!all.is_empty()).then_some(Value::Object(all))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(method: &str, params: Value) -> Message {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        match crate::proxy::jsonrpc::parse(body.to_string().as_bytes()).unwrap() {
            crate::proxy::jsonrpc::Payload::Single(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_audited_method_names_what_it_uses_and_its_arguments() {
        let read = message("resources/read", json!({"uri": "file:///a"}));
        assert!(audited(&read));
        assert_eq!(of(&read), Some((Capability::Resource, "file:///a")));
        assert_eq!(arguments(&read), None);
        let get = message(
            "prompts/get",
            json!({"name": "p", "arguments": {"city": "Oslo"}}),
        );
        assert_eq!(of(&get), Some((Capability::Prompt, "p")));
        assert_eq!(arguments(&get), Some(json!({"city": "Oslo"})));
        let complete = message(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "p"},
                   "argument": {"name": "city", "value": "Os"},
                   "context": {"arguments": {"country": "NO"}}}),
        );
        assert_eq!(of(&complete), Some((Capability::Prompt, "p")));
        assert_eq!(
            arguments(&complete),
            Some(json!({"country": "NO", "city": "Os"}))
        );
        let template = message(
            "completion/complete",
            json!({"ref": {"type": "ref/resource", "uri": "demo://t/{id}"},
                   "argument": {"name": "id", "value": "1"}}),
        );
        assert_eq!(of(&template), Some((Capability::Resource, "demo://t/{id}")));
        let subscribe = message("resources/subscribe", json!({"uri": "file:///b"}));
        assert!(audited(&subscribe));
        assert!(!audited(&message("resources/list", json!({}))));
        assert!(!audited(&message("prompts/list", json!({}))));
    }
}
