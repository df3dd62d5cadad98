//! Unit tests of the gate's decision: each kind of message against examples/everything.
use super::*;
use crate::{
    proxy::{
        deny::Denial,
        filter::Expect,
        headers::Era,
        jsonrpc::{self, Id, Payload},
        session::Sessions,
    },
    source::file::{self, Selection},
    state::Active,
};
use jiff::Timestamp;
use mcp_warden_policy::{Capability, Principal};
use std::sync::Arc;

/// `examples/everything`, with basic-tools in Audit mode when `audit`.
fn active(audit: bool) -> Arc<Active> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/everything/everything.yaml");
    let mut text = std::fs::read_to_string(path).unwrap();
    if audit {
        text = text.replace(
            "  description: Harmless tools for the basic-tier demo agent.\n",
            "  description: Harmless tools for the basic-tier demo agent.\n  mode: Audit\n",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, text).unwrap();
    let (bundle, rules) = file::load_config(&file, &Selection::OnlyTool).unwrap();
    Arc::new(Active::new(rules, bundle))
}

fn access(active: &Arc<Active>, client: &str, scopes: &[&str]) -> Access {
    let principal = Principal {
        issuer: "http://127.0.0.1:9400".into(),
        subject: None,
        client_id: Some(client.into()),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        issued_at: Some(Timestamp::now()),
    };
    Access::admitted(active, principal)
}

/// The outcome of one message in `era`, on `session`.
fn decide_in(
    access: &Access,
    sessions: &Sessions,
    body: &str,
    era: Era,
    session: Option<&str>,
) -> Outcome {
    let Ok(Payload::Single(message)) = jsonrpc::parse(body.as_bytes()) else {
        panic!("{body}")
    };
    let messages = std::slice::from_ref(&message);
    let facts = Facts::gather(sessions, session, &access.key, messages);
    let caller = access.caller().unwrap();
    decide(messages, era, &caller, &access.active.rules, &facts).remove(0)
}

fn verdict(access: &Access, sessions: &Sessions, body: &str) -> Outcome {
    decide_in(access, sessions, body, Era::Legacy, None)
}

fn call(tool: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#)
}

#[test]
fn tools_calls_follow_the_policy() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &["mcp:tools.list"]);
    let v = verdict(&beta, &sessions, &call("echo"));
    assert_eq!(
        (v.reason, v.decided_by.to_string().as_str()),
        ("allowed", "McpPolicy/demo/basic-tools")
    );
    assert!(v.denial.is_none());
    let v = verdict(&beta, &sessions, &call("get-env"));
    assert!(
        matches!(v.denial, Some(Denial::Hidden(Capability::Tool, ref t)) if t == "get-env"),
        "{v:?}"
    );
    let v = verdict(&beta, &sessions, &call("get-tiny-image"));
    assert!(
        matches!(v.denial, Some(Denial::InsufficientScope { ref needed, .. }) if needed == &["mcp:tools.call"]),
        "{v:?}"
    );
    let alpha = access(
        &active,
        "agent-alpha",
        &["mcp:tools.list", "mcp:tools.call"],
    );
    let v = verdict(&alpha, &sessions, &call("get-env"));
    assert!(
        matches!(v.denial, Some(Denial::InsufficientScope { ref needed, .. }) if needed == &["mcp:admin", "mcp:tools.call"]),
        "{v:?}"
    );
    assert_eq!(v.tool(), Some("get-env"));
}

#[test]
fn audit_mode_lets_the_call_through_and_says_what_it_would_do() {
    let active = active(true);
    let beta = access(&active, "agent-beta", &["mcp:tools.list"]);
    let v = verdict(&beta, &Sessions::new(), &call("get-tiny-image"));
    assert!(v.denial.is_none());
    assert_eq!(
        (v.reason, v.would),
        ("would_deny", Some("insufficient_scope"))
    );
}

#[test]
fn other_messages_pass_and_say_what_to_read() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &[]);
    for (body, expect) in [
        (
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            None,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, None),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            Some(Expect::List(Capability::Tool)),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tasks/list"}"#,
            Some(Expect::TasksList),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            Some(Expect::Initialize),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","task":{}}}"#,
            Some(Expect::CreateTask),
        ),
    ] {
        let v = verdict(&beta, &sessions, body);
        assert!(v.denial.is_none(), "{body}");
        assert_eq!(v.expect, expect, "{body}");
    }
    let v = verdict(
        &beta,
        &sessions,
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
    );
    assert!(matches!(v.denial, Some(Denial::NotARequest(_))));
}

#[test]
fn resources_prompts_and_completions_follow_the_policy() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &["mcp:tools.list"]);
    let request = |method: &str, params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
    };
    let read = |uri: &str| request("resources/read", &format!(r#"{{"uri":"{uri}"}}"#));
    let doc = "demo://resource/static/document/";
    for (body, reason) in [
        (read(&format!("{doc}instructions.md")), "allowed"),
        // Public documents are granted one by one; the design notes not at all.
        (read(&format!("{doc}structure.md")), "not_granted"),
        (read(&format!("{doc}architecture.md")), "not_granted"),
        (read("demo://resource/dynamic/text/7"), "allowed"),
        (read("demo://resource/dynamic/text/7/x"), "not_granted"),
        (read("file:///etc/passwd"), "not_granted"),
        (
            request(
                "resources/subscribe",
                &format!(r#"{{"uri":"{doc}architecture.md"}}"#),
            ),
            "not_granted",
        ),
        (
            request("resources/unsubscribe", r#"{"uri":"x"}"#),
            "allowed",
        ),
        (
            request("prompts/get", r#"{"name":"simple-prompt"}"#),
            "allowed",
        ),
        (
            request("prompts/get", r#"{"name":"args-prompt"}"#),
            "not_granted",
        ),
        (
            request(
                "completion/complete",
                r#"{"ref":{"type":"ref/prompt","name":"completable-prompt"},"argument":{"name":"a","value":""}}"#,
            ),
            "allowed",
        ),
        (
            request(
                "completion/complete",
                r#"{"ref":{"type":"ref/prompt","name":"args-prompt"},"argument":{"name":"a","value":""}}"#,
            ),
            "not_granted",
        ),
        (
            request(
                "completion/complete",
                r#"{"ref":{"type":"ref/resource","uri":"demo://resource/dynamic/text/{resourceId}"},"argument":{"name":"resourceId","value":""}}"#,
            ),
            "allowed",
        ),
        (
            request(
                "completion/complete",
                r#"{"ref":{"type":"ref/resource","uri":"demo://resource/dynamic/blob/{resourceId}"},"argument":{"name":"resourceId","value":""}}"#,
            ),
            "not_granted",
        ),
        (
            request(
                "completion/complete",
                r#"{"ref":{"type":"ref/tool","name":"echo"}}"#,
            ),
            "invalid_params",
        ),
        (request("resources/read", "{}"), "invalid_params"),
        (
            request(
                "subscriptions/listen",
                &format!(
                    r#"{{"notifications":{{"resourceSubscriptions":["{doc}features.md","{doc}architecture.md"]}}}}"#
                ),
            ),
            "not_granted",
        ),
        (
            request(
                "subscriptions/listen",
                &format!(
                    r#"{{"notifications":{{"resourceSubscriptions":["{doc}features.md"],"toolsListChanged":true}}}}"#
                ),
            ),
            "allowed",
        ),
        (
            request(
                "subscriptions/listen",
                r#"{"notifications":{"resourceSubscriptions":[1]}}"#,
            ),
            "invalid_params",
        ),
        (
            request("logging/setLevel", r#"{"level":"debug"}"#),
            "allowed",
        ),
    ] {
        let v = verdict(&beta, &sessions, &body);
        assert_eq!(v.reason, reason, "{body}");
        assert_eq!(v.denial.is_some(), reason != "allowed", "{body}");
    }
    let v = verdict(&beta, &sessions, &read(&format!("{doc}architecture.md")));
    assert!(
        matches!(&v.denial, Some(d @ Denial::Hidden(Capability::Resource, _)) if d.to_string() == format!("Resource not found: {doc}architecture.md")),
        "{v:?}"
    );
    assert_eq!(v.tool(), None);
    // A granted resource whose entry needs a scope the token lacks: a step-up.
    let alpha = access(&active, "agent-alpha", &["mcp:tools.list"]);
    let v = verdict(&alpha, &sessions, &read("demo://resource/dynamic/blob/1"));
    assert!(
        matches!(&v.denial, Some(Denial::InsufficientScope { capability: Capability::Resource, needed, .. }) if needed == &["mcp:tools.call"]),
        "{v:?}"
    );
    for (method, capability) in [
        ("resources/list", Expect::List(Capability::Resource)),
        ("prompts/list", Expect::List(Capability::Prompt)),
        ("resources/templates/list", Expect::ResourceTemplatesList),
    ] {
        let v = verdict(&beta, &sessions, &request(method, "{}"));
        assert_eq!(v.expect, Some(capability), "{method}");
    }
}

#[test]
fn responses_answer_only_what_the_server_asked_once() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &[]);
    sessions.bind("S", &beta.key);
    let response = r#"{"jsonrpc":"2.0","id":"s7","result":{"action":"accept"}}"#;
    let decide = |sessions: &Sessions| decide_in(&beta, sessions, response, Era::Legacy, Some("S"));
    let v = decide(&sessions);
    assert_eq!(v.reason, "unsolicited_response");
    assert_eq!(v.denial.as_ref().unwrap().status(), 400);
    let id = Id::from_value(&serde_json::json!("s7")).unwrap();
    sessions.relayed(Some("S"), &beta.key, &id);
    assert!(decide(&sessions).denial.is_none());
    assert_eq!(
        decide(&sessions).reason,
        "unsolicited_response",
        "answered once"
    );
}

#[test]
fn without_a_session_a_response_answers_only_what_was_relayed_to_that_caller() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &[]);
    let alpha = access(&active, "agent-alpha", &[]);
    let response = r#"{"jsonrpc":"2.0","id":"s1","result":{"roots":[]}}"#;
    let decide = |who: &Access| decide_in(who, &sessions, response, Era::Legacy, None);
    assert_eq!(
        decide(&beta).reason,
        "unsolicited_response",
        "nothing relayed"
    );
    let id = Id::from_value(&serde_json::json!("s1")).unwrap();
    sessions.relayed(None, &beta.key, &id);
    assert_eq!(
        decide(&alpha).reason,
        "unsolicited_response",
        "another caller cannot answer beta's server request"
    );
    assert!(decide(&beta).denial.is_none());
    assert_eq!(
        decide(&beta).reason,
        "unsolicited_response",
        "answered once"
    );
}

#[test]
fn a_modern_subscribe_without_uri_is_a_removed_method() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &["mcp:tools.list"]);
    let subscribe = |params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{params}}}"#)
    };
    // Legacy: invalid params. 2026-07-28: the revision has no resources/subscribe.
    let v = verdict(&beta, &sessions, &subscribe("{}"));
    assert!(matches!(v.denial, Some(Denial::InvalidParams(_))), "{v:?}");
    let modern = |body: &str| decide_in(&beta, &sessions, body, Era::Modern, None);
    let v = modern(&subscribe("{}"));
    assert!(
        matches!(&v.denial, Some(d @ Denial::UnknownMethod { modern: true, .. }) if d.status() == http::StatusCode::NOT_FOUND),
        "{v:?}"
    );
    // With a uri it is decided like a read, in either era.
    let doc = "demo://resource/static/document/architecture.md";
    let v = modern(&subscribe(&format!(r#"{{"uri":"{doc}"}}"#)));
    assert!(
        matches!(v.denial, Some(Denial::Hidden(Capability::Resource, _))),
        "{v:?}"
    );
    // An invalid resources/read stays invalid params.
    let read = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}"#;
    let v = modern(read);
    assert!(matches!(v.denial, Some(Denial::InvalidParams(_))), "{v:?}");
}

#[test]
fn task_ids_of_others_are_unknown() {
    let active = active(false);
    let sessions = Sessions::new();
    let beta = access(&active, "agent-beta", &[]);
    let alpha = access(&active, "agent-alpha", &[]);
    sessions.bind_task("t-1", &alpha.key);
    let get = r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1"}}"#;
    assert!(verdict(&alpha, &sessions, get).denial.is_none());
    let v = verdict(&beta, &sessions, get);
    assert!(matches!(v.denial, Some(Denial::ForeignTask(ref t)) if t == "t-1"));
    assert_eq!(v.reason, "foreign_task");
}
