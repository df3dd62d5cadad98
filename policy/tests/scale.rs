//! Scale: 10,000 clients, 1,000 tools, 2,000 policies. Decision cost must not grow with the
//! number of clients (identity and tool lookups are hashed). Prints the figures; the benchmark
//! proper lives in bench/.

mod support;

use mcp_warden_policy::{Bundle, Call, Inventory, Resource, Workload, compile, decide, select};
use std::{collections::BTreeMap, hint::black_box, time::Instant};
use support::*;

const CLIENTS: usize = 10_000;
const TOOLS: usize = 1_000;
const POLICIES: usize = 2_000;

fn tool_names(n: usize) -> Vec<(String, Vec<&'static str>)> {
    (0..n)
        .map(|t| (format!("tool_{t}"), vec!["mcp:call"]))
        .collect()
}

/// 1,000 McpTools (servers) of 20 tools each, 10,000 clients, 2,000 policies (2 per server,
/// each naming 5 clients).
fn big_inventory() -> Inventory {
    let names = tool_names(20);
    let entries: Vec<(&str, &[&str])> = names
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let tools =
        (0..TOOLS).map(|i| Resource::Tool(mk_tool("servers", &format!("server-{i}"), &entries)));
    let clients =
        (0..CLIENTS).map(|i| Resource::Client(mk_client("agents", &format!("client-{i}"))));
    let policies = (0..POLICIES).map(|p| {
        let named: Vec<String> = (0..5)
            .map(|k| format!("agents/client-{}", (p * 5 + k) % CLIENTS))
            .collect();
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        Resource::Policy(mk_policy(
            "servers",
            &format!("policy-{p}"),
            &named,
            &format!("server-{}", p % TOOLS),
            &["tool_1*", "tool_2"],
        ))
    });
    Inventory::from_resources(tools.chain(clients).chain(policies))
}

/// One server whose bundle holds every client and policy: the worst case for compile.
fn worst_case_bundle(clients: usize) -> Bundle {
    let names = tool_names(TOOLS);
    let entries: Vec<(&str, &[&str])> = names
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let tool = mk_tool("servers", "server-0", &entries);
    let clients_v: Vec<_> = (0..clients)
        .map(|i| mk_client("agents", &format!("client-{i}")))
        .collect();
    let policies = (0..POLICIES).map(|p| {
        let named: Vec<String> = (0..5)
            .map(|k| format!("agents/client-{}", (p * 5 + k) % clients))
            .collect();
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        mk_policy(
            "servers",
            &format!("policy-{p}"),
            &named,
            "server-0",
            &[&format!("tool_{}", p % TOOLS), "tool_9*"],
        )
    });
    Bundle::new([tool], clients_v, policies.collect::<Vec<_>>())
}

/// Average nanoseconds per decision over a fixed, bounded number of calls.
fn ns_per_decide(bundle: &Bundle, clients: usize) -> f64 {
    let rules = compile(bundle).expect("compiles");
    let principals: Vec<_> = (0..64)
        .map(|i| principal(&format!("client-{}", (i * 7919) % clients), &["mcp:call"]))
        .collect();
    let now = ts("2026-11-24T12:00:00Z");
    let calls = 50_000;
    let start = Instant::now();
    let mut allowed = 0;
    for i in 0..calls {
        let d = decide(
            &rules,
            &principals[i % principals.len()],
            Call::Tool(black_box("tool_95")),
            now,
        );
        allowed += usize::from(d.is_allowed());
    }
    let elapsed = start.elapsed();
    assert!(allowed > 0, "the scenario must exercise the allow path");
    elapsed.as_nanos() as f64 / calls as f64
}

#[test]
fn select_and_compile_for_one_pod_out_of_a_large_inventory() {
    let start = Instant::now();
    let inv = big_inventory();
    let built = start.elapsed();
    let workload = Workload {
        namespace: "servers".into(),
        name: "server-7-abc".into(),
        labels: BTreeMap::from([("app".to_string(), "server-7".to_string())]),
    };
    let start = Instant::now();
    let bundle = select(&inv, &workload);
    let selected = start.elapsed();
    let start = Instant::now();
    let rules = compile(&bundle).unwrap();
    let compiled = start.elapsed();
    assert_eq!(
        (
            bundle.tools.len(),
            bundle.policies.len(),
            bundle.clients.len()
        ),
        (1, 2, 10)
    );
    assert!(rules.problems.is_empty());
    println!(
        "inventory of {TOOLS} tools / {CLIENTS} clients / {POLICIES} policies built in {built:?}; select {selected:?}; compile {compiled:?}"
    );
}

#[test]
fn decide_cost_does_not_grow_with_clients() {
    let start = Instant::now();
    let big = worst_case_bundle(CLIENTS);
    let bundled = start.elapsed();
    let start = Instant::now();
    let rules = compile(&big).unwrap();
    let compiled = start.elapsed();
    assert_eq!(
        (
            rules.clients.len(),
            rules.policies.len(),
            rules.tools.list.len()
        ),
        (CLIENTS, POLICIES, TOOLS)
    );

    let small = worst_case_bundle(100);
    let big_ns = ns_per_decide(&big, CLIENTS);
    let small_ns = ns_per_decide(&small, 100);
    println!(
        "worst-case bundle ({CLIENTS} clients, {TOOLS} tool entries, {POLICIES} policies): build+hash {bundled:?}, compile {compiled:?}; \
         decide {big_ns:.0} ns/call with {CLIENTS} clients vs {small_ns:.0} ns/call with 100 clients"
    );
    // With 100 clients each client holds ~100 grants, with 10,000 only ~1: the large set must
    // not be slower per decision than a small multiple of the small one.
    assert!(
        big_ns < small_ns * 3.0 + 2_000.0,
        "decide grew with the client count: {big_ns:.0} vs {small_ns:.0} ns"
    );
}
