//! Inventory → select → Bundle: what a workload gets, and a version that only content changes.

mod support;

use mcp_warden_crds::*;
use mcp_warden_policy::{Bundle, Inventory, Kind, Resource, Workload, bundle_for_tools, select};
use std::collections::BTreeMap;
use support::*;

fn pod(ns: &str, app: &str) -> Workload {
    Workload {
        namespace: ns.into(),
        name: format!("{app}-0"),
        labels: BTreeMap::from([("app".to_string(), app.to_string())]),
    }
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o.meta().namespace.as_deref().unwrap_or(""),
                o.meta().name.as_deref().unwrap_or("")
            )
        })
        .collect()
}

fn inventory() -> Inventory {
    let mut labelled = mk_client("agents", "labelled");
    labelled.metadata.labels = Some(BTreeMap::from([(
        "team".to_string(),
        "finance".to_string(),
    )]));
    let mut by_label = mk_policy("payments", "by-label", &[], "payments-api", &["get_*"]);
    by_label.spec.client_selector = Some(ClientSelector {
        namespaces: vec!["agents".into()],
        selector: LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "team".to_string(),
                "finance".to_string(),
            )])),
            ..Default::default()
        },
    });
    Inventory::from_resources([
        Resource::Tool(mk_tool("payments", "payments-api", &[("get_balance", &[])])),
        Resource::Tool(mk_tool("payments", "ledger", &[("*", &[])])),
        Resource::Tool(mk_tool("other", "payments-api", &[("*", &[])])),
        Resource::Client(mk_client("agents", "bot")),
        Resource::Client(mk_client("agents", "unrelated")),
        Resource::Client(labelled),
        Resource::Policy(mk_policy(
            "payments",
            "read",
            &["agents/bot", "agents/ghost"],
            "payments-api",
            &["*"],
        )),
        Resource::Policy(mk_policy(
            "payments",
            "ledger-read",
            &["agents/unrelated"],
            "ledger",
            &["*"],
        )),
        Resource::Policy(by_label),
    ])
}

#[test]
fn a_pod_gets_its_tool_the_policies_on_it_and_their_clients() {
    let bundle = select(&inventory(), &pod("payments", "payments-api"));
    assert_eq!(names(&bundle.tools), ["payments/payments-api"]);
    assert_eq!(
        names(&bundle.policies),
        ["payments/by-label", "payments/read"]
    );
    assert_eq!(names(&bundle.clients), ["agents/bot", "agents/labelled"]);
    assert!(select(&inventory(), &pod("payments", "nothing")).is_empty());
    assert_eq!(
        names(&select(&inventory(), &pod("other", "payments-api")).tools),
        ["other/payments-api"]
    );
    assert!(
        select(&inventory(), &pod("other", "payments-api"))
            .policies
            .is_empty(),
        "policies live in the tool's namespace"
    );
}

#[test]
fn missing_clients_become_a_problem_not_a_failure() {
    let rules = mcp_warden_policy::compile(&select(&inventory(), &pod("payments", "payments-api")))
        .unwrap();
    assert_eq!(rules.problems.len(), 1);
    let problem = &rules.problems[0];
    assert_eq!(problem.object.to_string(), "McpPolicy/payments/read");
    assert_eq!(
        (problem.condition, problem.reason),
        ("ResolvedRefs", "ClientNotFound")
    );
    assert_eq!(problem.message, "McpClients not found: agents/ghost");
}

#[test]
fn version_ignores_order_status_and_server_bookkeeping() {
    let inv = inventory();
    let a = select(&inv, &pod("payments", "payments-api"));
    let reversed = Bundle::new(
        a.tools.iter().rev().cloned(),
        a.clients.iter().rev().cloned(),
        a.policies.iter().rev().cloned(),
    );
    assert_eq!(a.version, reversed.version);
    assert_eq!(a, reversed);

    let mut touched = a.clone();
    let c = &mut touched.clients[0];
    c.metadata.resource_version = Some("12345".into());
    c.metadata.uid = Some("uid-1".into());
    c.metadata.generation = Some(7);
    c.status = Some(McpClientStatus {
        calls_24h: Some(3),
        ..Default::default()
    });
    let touched = Bundle::new(touched.tools, touched.clients, touched.policies);
    assert_eq!(a.version, touched.version);

    let mut changed = a.clone();
    changed.clients[0].spec.suspended = true;
    let changed = Bundle::new(changed.tools, changed.clients, changed.policies);
    assert_ne!(a.version, changed.version, "a spec change is a new version");
    assert!(a.version.starts_with("sha256:") && a.version.len() == 71);
}

#[test]
fn inventory_apply_delete_reset() {
    let mut inv = inventory();
    assert_eq!(inv.len(), (3, 3, 3));
    assert!(inv.delete(Kind::McpClient, "agents", "bot"));
    assert!(!inv.delete(Kind::McpClient, "agents", "bot"));
    assert_eq!(
        names(&select(&inv, &pod("payments", "payments-api")).clients),
        ["agents/labelled"]
    );
    inv.reset(
        Kind::McpPolicy,
        [Resource::Policy(mk_policy(
            "payments",
            "only",
            &["agents/unrelated"],
            "payments-api",
            &["*"],
        ))],
    );
    assert_eq!(inv.len(), (3, 2, 1));
    let bundle = bundle_for_tools(&inv, &[("payments".into(), "payments-api".into())]);
    assert_eq!(names(&bundle.clients), ["agents/unrelated"]);
    inv.apply(Resource::Client(mk_client("agents", "bot")));
    assert_eq!(inv.len(), (3, 3, 1));
}

#[test]
fn selectors_across_namespaces() {
    let mut everywhere = mk_policy("payments", "all", &[], "payments-api", &["*"]);
    everywhere.spec.client_selector = Some(ClientSelector {
        namespaces: vec!["*".into()],
        selector: LabelSelector::default(),
    });
    let mut local = mk_policy("payments", "local", &[], "payments-api", &["*"]);
    local.spec.client_selector = Some(ClientSelector {
        namespaces: vec![],
        selector: LabelSelector::default(),
    });
    let base = [
        Resource::Tool(mk_tool("payments", "payments-api", &[])),
        Resource::Client(mk_client("agents", "a")),
        Resource::Client(mk_client("payments", "b")),
        Resource::Client(mk_client("zeta", "c")),
    ];
    let inv = Inventory::from_resources(base.iter().cloned().chain([Resource::Policy(everywhere)]));
    assert_eq!(
        names(&select(&inv, &pod("payments", "payments-api")).clients),
        ["agents/a", "payments/b", "zeta/c"]
    );
    let inv = Inventory::from_resources(base.iter().cloned().chain([Resource::Policy(local)]));
    assert_eq!(
        names(&select(&inv, &pod("payments", "payments-api")).clients),
        ["payments/b"],
        "default: the policy's namespace"
    );
}

#[test]
fn compile_needs_exactly_one_tool() {
    use mcp_warden_policy::{CompileError, compile};
    assert_eq!(compile(&Bundle::default()), Err(CompileError::NoTool));
    let two = Bundle::new([mk_tool("a", "x", &[]), mk_tool("a", "y", &[])], [], []);
    assert_eq!(
        compile(&two),
        Err(CompileError::AmbiguousTool("a/x, a/y".into()))
    );
}
