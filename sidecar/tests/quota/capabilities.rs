//! Resources, prompts and completions count by their entry.

use super::*;

#[test]
fn resources_prompts_and_completions_count_and_subscriptions_and_lists_do_not() {
    let (q, _) = engine();
    for method in ["resources/read", "prompts/get", "completion/complete"] {
        assert!(q.counts(method, false), "{method}");
    }
    for method in [
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "subscriptions/listen",
    ] {
        assert!(!q.counts(method, false), "{method}");
    }
}

/// The quota tool with resource and prompt entries (undeclared ones allowed).
fn tool_with_resources() -> mcp_warden_crds::McpTool {
    let mut t = serde_json::to_value(tool(&[("echo", None)], Some(rate(100, "1h", 100))))
        .expect("serializes");
    t["spec"]["resources"] = json!([
        {"uri": "file:///docs/*", "rateLimit": rate(2, "1h", 2)},
        {"uri": "file:///free/*"},
    ]);
    t["spec"]["defaultResourceAction"] = json!("Allow");
    t["spec"]["prompts"] = json!([{"name": "summarize"}]);
    t["spec"]["defaultPromptAction"] = json!("Allow");
    serde_json::from_value(t).expect("a valid McpTool")
}

#[test]
fn resources_and_prompts_count_by_entry_pattern_with_the_entrys_rate() {
    use mcp_warden_policy::Capability::{Prompt, Resource, Tool};
    let rules = rules(
        tool_with_resources(),
        vec![
            client("a", json!({"rateLimit": rate(4, "1h", 4)}), &[]),
            client("b", json!(null), &[]),
        ],
        vec![policy(
            "p",
            &["a", "b"],
            &["*"],
            Some(rate(2, "1h", 2)),
            None,
        )],
    );
    let (q, _) = engine();
    let clock = Clock::at(NOON);
    let use_ = |who: &str, capability, name: &str| {
        block_on(q.check_use(
            &rules,
            &client_ref(who),
            &policy_ref("p"),
            capability,
            name,
            clock.now(),
        ))
    };
    // The entry's own rate, all callers together, whatever URI under it.
    assert_eq!(refused_by(&use_("b", Resource, "file:///docs/1")), None);
    assert_eq!(refused_by(&use_("a", Resource, "file:///docs/2")), None);
    let QuotaOutcome::Limited(l) = use_("b", Resource, "file:///docs/3") else {
        panic!("the entry's rate")
    };
    assert_eq!(l.reason, LimitKind::ToolRate);
    assert_eq!(
        l.tool, "resource:file:///docs/*",
        "keyed by the entry's pattern"
    );
    // Undeclared URIs share one counter: the policy's per client × key rate is spent after 2
    // reads of 2 different URIs, so invented URIs make no new counters.
    assert_eq!(refused_by(&use_("b", Resource, "file:///x/1")), None);
    assert_eq!(refused_by(&use_("b", Resource, "file:///x/2")), None);
    let QuotaOutcome::Limited(l) = use_("b", Resource, "file:///x/3") else {
        panic!("the policy's rate")
    };
    assert_eq!(
        (l.reason, l.tool.as_str()),
        (LimitKind::PolicyRate, "resource:*")
    );
    // A prompt has its own key: the resource's counters are not the prompt's.
    assert_eq!(refused_by(&use_("b", Prompt, "summarize")), None);
    // The client's own rate counts every use: a tool call, a resource read and a prompt (a's
    // docs read above was its first).
    assert_eq!(refused_by(&use_("a", Tool, "echo")), None);
    assert_eq!(refused_by(&use_("a", Resource, "file:///free/1")), None);
    assert_eq!(refused_by(&use_("a", Prompt, "summarize")), None);
    assert_eq!(
        refused_by(&use_("a", Prompt, "other")),
        Some(LimitKind::ClientRate)
    );
}
