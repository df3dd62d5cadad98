//! Scale check (prints figures, asserts only correctness): 10,000 McpClients, 1,000 McpTools,
//! 2,000 McpPolicies in the index, 50 subscribed pods. How long from one McpClient change to
//! the affected pods' channels holding the new bundle, incremental vs a full reselect of every
//! subscribed pod (what `Index::republish` did for every change before).
//!
//! Run with `cargo test -p mcp-warden-operator --release --test scale -- --nocapture` for
//! production-like figures; debug builds are several times slower.
//!
//! The real suite cannot hold these numbers of objects on the build machines: the index alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use mcp_warden_crds::{
    ClientIdentity, ClientRef, ClientSelector, LabelSelector, McpClient, McpClientSpec, McpPolicy,
    McpPolicySpec, McpTool, McpToolSpec, ServerSpec, ToolGrant, ToolSpec,
};
use mcp_warden_operator::{index::Index, status, usage::UsageView};
use mcp_warden_policy::{Inventory, Resource};
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

const TOOL_NAMESPACES: usize = 50;
const TOOLS_PER_NS: usize = 20;
const CLIENT_NAMESPACES: usize = 10;
const CLIENTS_PER_NS: usize = 1000;
const POLICIES_PER_NS: usize = 40;

fn labels(k: &str, v: String) -> BTreeMap<String, String> {
    BTreeMap::from([(k.to_string(), v)])
}

fn meta(ns: &str, name: &str, l: Option<BTreeMap<String, String>>) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: l,
        generation: Some(1),
        ..Default::default()
    }
}

fn client(ns: usize, i: usize, suspended: bool) -> McpClient {
    McpClient {
        metadata: meta(
            &format!("agents-{ns}"),
            &format!("c{i}"),
            Some(labels("team", format!("team-{}", i % 20))),
        ),
        spec: McpClientSpec {
            owner: format!("owner-{i}@example.com"),
            identity: ClientIdentity {
                issuer: Some("https://idp.example".into()),
                client_id: Some(format!("c{ns}-{i}")),
                ..Default::default()
            },
            suspended,
            ..Default::default()
        },
        status: None,
    }
}

fn inventory() -> Inventory {
    let mut resources = Vec::new();
    for n in 0..TOOL_NAMESPACES {
        let ns = format!("ns-{n:02}");
        for t in 0..TOOLS_PER_NS {
            resources.push(Resource::Tool(McpTool {
                metadata: meta(&ns, &format!("tool-{t}"), None),
                spec: McpToolSpec {
                    owner: "team".into(),
                    server: ServerSpec {
                        selector: Some(LabelSelector {
                            match_labels: Some(labels("app", format!("app-{t}"))),
                            ..Default::default()
                        }),
                        resource: format!("https://{ns}-{t}.example/mcp"),
                        ..Default::default()
                    },
                    tools: (0..10)
                        .map(|k| ToolSpec {
                            name: format!("op_{k}"),
                            scopes: vec![format!("s{k}")],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
                status: None,
            }));
        }
        for p in 0..POLICIES_PER_NS {
            let seed = n * POLICIES_PER_NS + p;
            let clients = (0..5)
                .map(|k| ClientRef {
                    name: format!("c{}", (seed * 7 + k * 131) % CLIENTS_PER_NS),
                    namespace: Some(format!("agents-{}", (seed + k) % CLIENT_NAMESPACES)),
                })
                .collect();
            let client_selector = (p % 4 == 0).then(|| ClientSelector {
                namespaces: vec![format!("agents-{}", seed % CLIENT_NAMESPACES)],
                selector: LabelSelector {
                    match_labels: Some(labels("team", format!("team-{}", seed % 20))),
                    ..Default::default()
                },
            });
            resources.push(Resource::Policy(McpPolicy {
                metadata: meta(&ns, &format!("policy-{p}"), None),
                spec: McpPolicySpec {
                    clients,
                    client_selector,
                    tools: vec![ToolGrant {
                        tool_ref: format!("tool-{}", p % TOOLS_PER_NS),
                        names: Some(vec!["op_*".into()]),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                status: None,
            }));
        }
    }
    for n in 0..CLIENT_NAMESPACES {
        for i in 0..CLIENTS_PER_NS {
            resources.push(Resource::Client(client(n, i, false)));
        }
    }
    Inventory::from_resources(resources)
}

fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn one_client_change_reaches_the_affected_pods_incrementally() {
    let start = Instant::now();
    let inv = inventory();
    assert_eq!(inv.len(), (1000, 10_000, 2000));
    let built = start.elapsed();
    let index = Index::default();
    let t = Instant::now();
    index.replace_all(inv);
    let loaded = t.elapsed();
    // 50 pods, one per tool namespace, each selected by one McpTool.
    let mut pods = Vec::new();
    let t = Instant::now();
    for n in 0..TOOL_NAMESPACES {
        let ns = format!("ns-{n:02}");
        let name = format!("pod-{n}");
        index.apply_pod(
            &ns,
            &name,
            labels("app", format!("app-{}", n % TOOLS_PER_NS)),
        );
        let rx = index.subscribe(&ns, &name, None);
        assert!(rx.borrow().is_some(), "{ns}/{name} is governed");
        pods.push(rx);
    }
    let subscribed = t.elapsed();

    // The old path: every change reselected every subscribed pod.
    let mut full = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        index.update(|_| {});
        full.push(t.elapsed());
    }
    full.sort();

    // Clients that some pod's bundle holds, and one no bundle holds.
    let held: Vec<(String, String)> = {
        let mut held = Vec::new();
        for rx in &pods {
            if let Some(b) = rx.borrow().as_ref() {
                for c in &b.clients {
                    held.push((
                        c.metadata.namespace.clone().unwrap(),
                        c.metadata.name.clone().unwrap(),
                    ));
                }
            }
        }
        held.sort();
        held.dedup();
        held
    };
    assert!(!held.is_empty());
    let mut incremental = Vec::new();
    let mut affected_counts = Vec::new();
    for (ns, name) in held.iter().take(20) {
        let n: usize = ns.trim_start_matches("agents-").parse().unwrap();
        let i: usize = name.trim_start_matches('c').parse().unwrap();
        for rx in &mut pods {
            rx.borrow_and_update();
        }
        let expect: Vec<bool> = pods
            .iter()
            .map(|rx| {
                rx.borrow().as_ref().is_some_and(|b| {
                    b.clients.iter().any(|c| {
                        c.metadata.name.as_deref() == Some(name)
                            && c.metadata.namespace.as_deref() == Some(ns)
                    })
                })
            })
            .collect();
        let t = Instant::now();
        index.apply(Resource::Client(client(n, i, true)));
        let changed: Vec<bool> = pods.iter().map(|rx| rx.has_changed().unwrap()).collect();
        incremental.push(t.elapsed());
        assert_eq!(
            changed, expect,
            "exactly the pods whose bundle holds {ns}/{name} changed"
        );
        affected_counts.push(expect.iter().filter(|b| **b).count());
    }
    incremental.sort();
    // A client in no bundle: no pod is reselected at all.
    let (mut lone_ns, mut lone_i) = (0, 0);
    'find: for n in 0..CLIENT_NAMESPACES {
        for i in 0..CLIENTS_PER_NS {
            if !held.contains(&(format!("agents-{n}"), format!("c{i}"))) {
                (lone_ns, lone_i) = (n, i);
                break 'find;
            }
        }
    }
    for rx in &mut pods {
        rx.borrow_and_update();
    }
    let t = Instant::now();
    index.apply(Resource::Client(client(lone_ns, lone_i, true)));
    let lone = t.elapsed();
    assert!(pods.iter().all(|rx| !rx.has_changed().unwrap()));

    // Status computation at this scale (the leader's pass; debounced, not on the push path).
    let snapshot = index.inventory();
    let pod_labels = index.pods();
    let t = Instant::now();
    let desired = status::compute(
        &snapshot,
        &pod_labels,
        &UsageView::default(),
        jiff::Timestamp::now(),
    );
    let compute = t.elapsed();
    assert_eq!(desired.clients.len(), 10_000);
    let t = Instant::now();
    let _copy = index.inventory();
    let clone = t.elapsed();

    println!(
        "scale: {} tools, {} clients, {} policies, {} subscribed pods",
        1000,
        10_000,
        2000,
        pods.len()
    );
    println!(
        "  build inventory {:.0} ms, load into index {:.0} ms, subscribe 50 pods {:.0} ms",
        ms(built),
        ms(loaded),
        ms(subscribed)
    );
    println!(
        "  full reselect of 50 pods (old path, every change): median {:.1} ms, max {:.1} ms",
        ms(full[2]),
        ms(full[4])
    );
    println!(
        "  incremental, client held by {}..{} pod(s): median {:.2} ms, max {:.2} ms over {} changes",
        affected_counts.iter().min().unwrap(),
        affected_counts.iter().max().unwrap(),
        ms(incremental[incremental.len() / 2]),
        ms(*incremental.last().unwrap()),
        incremental.len()
    );
    println!("  incremental, client in no bundle: {:.3} ms", ms(lone));
    println!(
        "  status::compute of all 13,000 objects: {:.0} ms; inventory clone: {:.0} ms",
        ms(compute),
        ms(clone)
    );
    if let Some(rss) = rss_mib() {
        println!("  process RSS: {rss:.0} MiB (two inventory copies alive)");
    }
}
