//! The incremental republish (only pods whose bundle can contain the changed object) gives
//! exactly what a full `select` of every subscribed pod gives, over a long pseudo-random sequence
//! of creates, updates, deletes, status-only updates and pod relabels.
//!
//! Pure index, no API server: the real suite cannot afford a long random sequence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_warden_crds::{
    ClientIdentity, ClientRef, ClientSelector, LabelSelector, McpClient, McpClientSpec,
    McpClientStatus, McpPolicy, McpPolicySpec, McpTool, McpToolSpec, ServerSpec, ToolGrant,
};
use mcp_warden_operator::index::{BundleRx, Index};
use mcp_warden_policy::{Kind, Resource, Workload, select};
use std::collections::BTreeMap;

/// A small deterministic generator (no seed files, same sequence every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() as usize) % items.len()]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const APPS: [&str; 4] = ["x", "y", "z", "w"];
const TEAMS: [&str; 3] = ["red", "blue", "green"];

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(ns: &str, name: &str, l: Option<BTreeMap<String, String>>) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        labels: l,
        ..Default::default()
    }
}

fn tool(rng: &mut Lcg) -> Resource {
    let ns = rng.pick(&NAMESPACES);
    let name = format!("t{}", rng.next() % 5);
    let selector = (!rng.chance(10)).then(|| LabelSelector {
        match_labels: Some(labels(&[("app", rng.pick(&APPS))])),
        ..Default::default()
    });
    Resource::Tool(McpTool {
        metadata: meta(ns, &name, None),
        spec: McpToolSpec {
            owner: format!("o{}", rng.next() % 3),
            server: ServerSpec {
                selector,
                resource: "https://r.example/mcp".into(),
                ..Default::default()
            },
            ..Default::default()
        },
        status: None,
    })
}

fn client(rng: &mut Lcg) -> Resource {
    let ns = rng.pick(&NAMESPACES);
    let name = format!("c{}", rng.next() % 8);
    Resource::Client(McpClient {
        metadata: meta(ns, &name, Some(labels(&[("team", rng.pick(&TEAMS))]))),
        spec: McpClientSpec {
            owner: "me".into(),
            identity: ClientIdentity {
                issuer: Some("https://idp".into()),
                client_id: Some(name.clone()),
                ..Default::default()
            },
            suspended: rng.chance(30),
            ..Default::default()
        },
        status: None,
    })
}

fn policy(rng: &mut Lcg) -> Resource {
    let ns = rng.pick(&NAMESPACES);
    let name = format!("p{}", rng.next() % 8);
    let tools = (0..1 + rng.next() % 2)
        .map(|_| ToolGrant {
            tool_ref: format!("t{}", rng.next() % 5),
            names: Some(vec!["*".into()]),
            ..Default::default()
        })
        .collect();
    let clients = (0..rng.next() % 3)
        .map(|_| ClientRef {
            name: format!("c{}", rng.next() % 8),
            namespace: rng.chance(50).then(|| rng.pick(&NAMESPACES).to_string()),
        })
        .collect();
    let client_selector = rng.chance(50).then(|| ClientSelector {
        namespaces: match rng.next() % 3 {
            0 => vec![],
            1 => vec!["*".into()],
            _ => vec![rng.pick(&NAMESPACES).to_string()],
        },
        selector: LabelSelector {
            match_labels: rng
                .chance(70)
                .then(|| labels(&[("team", rng.pick(&TEAMS))])),
            ..Default::default()
        },
    });
    Resource::Policy(McpPolicy {
        metadata: meta(ns, &name, None),
        spec: McpPolicySpec {
            clients,
            client_selector,
            tools,
            ..Default::default()
        },
        status: None,
    })
}

fn expected(index: &Index, pod: &(String, String)) -> Option<String> {
    let labels = index.pods().get(pod).cloned()?;
    let bundle = select(
        &index.inventory(),
        &Workload {
            namespace: pod.0.clone(),
            name: pod.1.clone(),
            labels,
        },
    );
    (!bundle.is_empty()).then_some(bundle.version)
}

#[test]
fn incremental_republish_equals_a_full_select_of_every_pod() {
    let mut rng = Lcg(42);
    let index = Index::default();
    let mut pods: Vec<((String, String), BundleRx)> = Vec::new();
    for ns in NAMESPACES {
        for i in 0..4 {
            let name = format!("pod-{i}");
            index.apply_pod(ns, &name, labels(&[("app", APPS[i % APPS.len()])]));
            pods.push((
                (ns.to_string(), name.clone()),
                index.subscribe(ns, &name, None),
            ));
        }
    }
    let mut changes = 0;
    for step in 0..4000 {
        let op = rng.next() % 100;
        match op {
            0..=19 => index.apply(tool(&mut rng)),
            20..=44 => index.apply(client(&mut rng)),
            45..=69 => index.apply(policy(&mut rng)),
            70..=84 => {
                let kind = rng.pick(&[Kind::McpTool, Kind::McpClient, Kind::McpPolicy]);
                let name = match kind {
                    Kind::McpTool => format!("t{}", rng.next() % 5),
                    Kind::McpClient => format!("c{}", rng.next() % 8),
                    Kind::McpPolicy => format!("p{}", rng.next() % 8),
                };
                index.delete(kind, rng.pick(&NAMESPACES), &name);
            }
            85..=92 => {
                // A status-only update (what status writes look like): never changes a bundle.
                let inv = index.inventory();
                if let Some(c) = inv.clients().values().nth((rng.next() % 8) as usize) {
                    let mut c = c.clone();
                    c.status = Some(McpClientStatus {
                        calls_24h: Some(rng.next()),
                        ..Default::default()
                    });
                    c.metadata.resource_version = Some(step.to_string());
                    index.apply(Resource::Client(c));
                }
            }
            _ => {
                let (ns, name) = pods[(rng.next() as usize) % pods.len()].0.clone();
                index.apply_pod(&ns, &name, labels(&[("app", rng.pick(&APPS))]));
            }
        }
        for (pod, rx) in &mut pods {
            let got = rx.borrow_and_update().as_ref().map(|b| b.version.clone());
            if got.is_some() {
                changes += 1;
            }
            assert_eq!(
                got,
                expected(&index, pod),
                "step {step} (op {op}): pod {pod:?}"
            );
        }
    }
    let (t, c, p) = index.inventory().len();
    println!(
        "4000 steps, final inventory {t} tools / {c} clients / {p} policies, {changes} governed pod-states checked"
    );
    assert!(changes > 1000, "the sequence exercises governed pods");
}
