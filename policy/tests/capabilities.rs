//! Resources and prompts are decided like tools: an entry of the McpTool (or its default
//! action) and a grant of an McpPolicy; and a policy written before they existed grants none.

mod support;

use mcp_warden_policy::{Call, Capability, Decision, RuleSet, decide, load};
use support::*;

const NOW: &str = "2026-11-24T12:00:00Z";

const DOCS: &str = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: docs, namespace: team}
spec:
  owner: team-docs
  server: {resource: "https://docs.example.com/mcp"}
  authentication:
    issuers: [{issuer: "https://idp.example.com"}]
  tools: [{name: search}]
  resources:
  - {uri: "docs://public/*"}
  - {uri: "docs://private/*", scopes: [docs:private], risk: Medium}
  - {uri: "docs://items/{id}"}
  prompts:
  - {name: summarize}
  - {name: "admin_*", scopes: [docs:admin], risk: High}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: bot, namespace: team}
spec:
  owner: someone@example.com
  identity: {issuer: "https://idp.example.com", clientId: bot}
"#;

fn rules_with(policy: &str) -> RuleSet {
    compiled(&format!("{DOCS}---\n{policy}"))
}

fn compiled(text: &str) -> RuleSet {
    let resources = load("test.yaml", text).expect("valid CRs");
    let inventory = mcp_warden_policy::Inventory::from_resources(resources);
    let bundle =
        mcp_warden_policy::bundle_for_tools(&inventory, &[("team".to_owned(), "docs".to_owned())]);
    mcp_warden_policy::compile(&bundle).expect("compiles")
}

fn decided(rules: &RuleSet, scopes: &[&str], call: Call<'_>) -> &'static str {
    decide(rules, &principal("bot", scopes), call, ts(NOW)).reason()
}

#[test]
fn a_policy_written_before_resources_and_prompts_grants_none_of_them() {
    // `names` defaulted (as the API server stored it) and left out: tools only.
    for grant in ["{toolRef: docs, names: ['*']}", "{toolRef: docs}"] {
        let rules = rules_with(&format!(
            "apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {{name: p, namespace: team}}\nspec:\n  clients: [{{name: bot}}]\n  tools: [{grant}]\n"
        ));
        assert_eq!(
            decided(&rules, &[], Call::Tool("search")),
            "allowed",
            "{grant}"
        );
        for call in [
            Call::Resource("docs://public/a.md"),
            Call::Resource("docs://items/1"),
            Call::Prompt("summarize"),
        ] {
            assert_eq!(
                decided(&rules, &["docs:private", "docs:admin"], call),
                "not_granted",
                "{grant} {call:?}"
            );
        }
    }
}

#[test]
fn a_grant_of_resources_or_prompts_alone_grants_no_tool() {
    let rules = rules_with(
        "apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {name: p, namespace: team}\nspec:\n  clients: [{name: bot}]\n  tools: [{toolRef: docs, resources: ['docs://public/*'], prompts: [summarize]}]\n",
    );
    assert_eq!(decided(&rules, &[], Call::Tool("search")), "not_granted");
    assert_eq!(
        decided(&rules, &[], Call::Resource("docs://public/a.md")),
        "allowed"
    );
    assert_eq!(decided(&rules, &[], Call::Prompt("summarize")), "allowed");
    assert_eq!(
        decided(&rules, &[], Call::Prompt("admin_reset")),
        "not_granted"
    );
}

#[test]
fn resources_need_their_entry_scopes_and_undeclared_ones_follow_the_default_action() {
    let policy = "apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {name: p, namespace: team}\nspec:\n  clients: [{name: bot}]\n  tools: [{toolRef: docs, names: [search], resources: ['docs://*'], prompts: ['*']}]\n";
    let rules = rules_with(policy);
    assert_eq!(
        decided(&rules, &[], Call::Resource("docs://public/a.md")),
        "allowed"
    );
    assert_eq!(
        decided(&rules, &[], Call::Resource("docs://private/salaries")),
        "insufficient_scope"
    );
    let Decision::DenyInsufficientScope { needed, .. } = decide(
        &rules,
        &principal("bot", &[]),
        Call::Resource("docs://private/salaries"),
        ts(NOW),
    ) else {
        panic!("a step-up")
    };
    assert_eq!(needed, ["docs:private"]);
    assert_eq!(
        decided(
            &rules,
            &["docs:private"],
            Call::Resource("docs://private/salaries")
        ),
        "allowed"
    );
    // A template entry covers one path segment.
    assert_eq!(
        decided(&rules, &[], Call::Resource("docs://items/7")),
        "allowed"
    );
    assert_eq!(
        decided(&rules, &[], Call::Resource("docs://items/7/x")),
        "not_granted"
    );
    // Undeclared: denied by default, granted when the McpTool allows undeclared resources.
    assert_eq!(
        decided(&rules, &[], Call::Resource("docs://other")),
        "not_granted"
    );
    let open = compiled(&format!(
        "{}---\n{policy}",
        DOCS.replace(
            "  prompts:\n",
            "  defaultResourceAction: Allow\n  prompts:\n"
        )
    ));
    assert_eq!(
        decided(&open, &[], Call::Resource("docs://other")),
        "allowed"
    );
    assert_eq!(
        decided(&open, &[], Call::Prompt("undeclared")),
        "not_granted"
    );
    // Prompts: the entry's scopes.
    assert_eq!(
        decided(&rules, &[], Call::Prompt("admin_reset")),
        "insufficient_scope"
    );
    assert_eq!(
        decided(&rules, &["docs:admin"], Call::Prompt("admin_reset")),
        "allowed"
    );
}

#[test]
fn lists_show_what_the_caller_may_use_and_templates_by_their_text() {
    let rules = rules_with(
        "apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {name: p, namespace: team}\nspec:\n  clients: [{name: bot}]\n  tools: [{toolRef: docs, resources: ['docs://public/*', 'docs://items/{id}'], prompts: [summarize]}]\n",
    );
    let bot = principal("bot", &[]);
    let caller = mcp_warden_policy::authenticate(&rules, &bot, ts(NOW)).unwrap();
    let listed = |capability, name| caller.may_list(capability, name);
    assert!(listed(Capability::Resource, "docs://public/a.md"));
    assert!(!listed(Capability::Resource, "docs://private/a.md"));
    assert!(listed(Capability::Resource, "docs://items/{id}"));
    assert!(!listed(Capability::Resource, "docs://{+path}"));
    assert!(listed(Capability::Prompt, "summarize"));
    assert!(!listed(Capability::Prompt, "admin_reset"));
    assert!(!listed(Capability::Tool, "search"));
}
