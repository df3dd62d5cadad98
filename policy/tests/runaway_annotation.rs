//! `mcpwarden.io/runaway-cleared-at` on an McpClient compiles to `Client::runaway_cleared_at`.

mod support;

use mcp_warden_policy::compile::RUNAWAY_CLEARED_AT_ANNOTATION;
use std::collections::BTreeMap;
use support::*;

fn with_annotation(value: Option<&str>) -> mcp_warden_policy::RuleSet {
    let mut client = mk_client("agents", "bot");
    if let Some(value) = value {
        client.metadata.annotations = Some(BTreeMap::from([(
            RUNAWAY_CLEARED_AT_ANNOTATION.to_string(),
            value.to_string(),
        )]));
    }
    rules(
        vec![mk_tool("payments", "payments-api", &[("get_balance", &[])])],
        vec![client],
        vec![],
    )
}

#[test]
fn the_annotation_sets_runaway_cleared_at_and_a_bad_value_is_a_problem() {
    let none = with_annotation(None);
    assert_eq!(none.clients[0].runaway_cleared_at, None);
    assert!(none.problems.is_empty(), "{:?}", none.problems);

    let set = with_annotation(Some("2026-11-24T12:30:00+01:00"));
    assert_eq!(
        set.clients[0].runaway_cleared_at,
        Some(ts("2026-11-24T11:30:00Z"))
    );
    assert!(set.problems.is_empty(), "{:?}", set.problems);
    assert_ne!(
        none.version, set.version,
        "clearing changes the bundle version"
    );

    let bad = with_annotation(Some("yesterday"));
    assert_eq!(bad.clients[0].runaway_cleared_at, None);
    assert_eq!(bad.problems.len(), 1, "{:?}", bad.problems);
    assert_eq!(bad.problems[0].reason, "InvalidAnnotation");
    assert_eq!(bad.problems[0].object, bad.clients[0].object);
}
