//! The operator index: who gets which bundle, and only when it changes.
//!
//! Pure index, no API server: the real suite sees only its effects (bundles on the push API).

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_operator::index::Index;
use mcp_warden_policy::{Kind, Resource, load};
use std::collections::BTreeMap;

fn resources(text: &str) -> Vec<Resource> {
    load("test.yaml", text).expect("valid CRs")
}

/// Two servers (pay, ledger), two agents (bot, other), one grant (bot → pay).
const TOOLS: &str = include_str!("fixtures/team.yaml");

fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), app.to_string())])
}

#[tokio::test]
async fn each_pod_gets_its_own_bundle_and_only_real_changes_are_sent() {
    let index = Index::default();
    for r in resources(TOOLS) {
        index.apply(r);
    }
    index.apply_pod("team", "pay-0", labels("pay"));
    index.apply_pod("team", "ledger-0", labels("ledger"));
    let mut pay = index.subscribe("team", "pay-0", None);
    let mut ledger = index.subscribe("team", "ledger-0", None);
    let pay_v1 = pay.borrow_and_update().clone().expect("pay is governed");
    let ledger_v1 = ledger
        .borrow_and_update()
        .clone()
        .expect("ledger is governed");
    assert_eq!(pay_v1.clients.len(), 1);
    assert!(ledger_v1.clients.is_empty());
    assert_ne!(pay_v1.version, ledger_v1.version);

    // Suspending the client changes pay's bundle only.
    let mut suspended = resources(TOOLS)
        .into_iter()
        .find(|r| r.kind() == Kind::McpClient)
        .unwrap();
    if let Resource::Client(c) = &mut suspended {
        c.spec.suspended = true;
    }
    index.apply(suspended.clone());
    assert!(pay.has_changed().unwrap());
    assert!(
        !ledger.has_changed().unwrap(),
        "ledger's bundle does not contain the client"
    );
    assert!(
        pay.borrow_and_update().as_ref().unwrap().clients[0]
            .spec
            .suspended
    );

    // Re-applying the same object (as a resync would) sends nothing.
    index.apply(suspended);
    assert!(!pay.has_changed().unwrap());

    // Deleting the policy removes the client from pay's bundle.
    index.delete(Kind::McpPolicy, "team", "bot-pay");
    assert!(pay.has_changed().unwrap());
    assert!(pay.borrow_and_update().as_ref().unwrap().clients.is_empty());

    // A pod no McpTool selects gets nothing; so does a deleted pod.
    let other = index.subscribe("team", "other-0", Some(labels("other")));
    assert!(other.borrow().is_none());
    index.delete_pod("team", "pay-0");
    assert!(pay.has_changed().unwrap());
    assert!(pay.borrow_and_update().is_none());
}

#[tokio::test]
async fn subscribers_share_a_channel_and_are_pruned() {
    let index = Index::default();
    for r in resources(TOOLS) {
        index.apply(r);
    }
    let a = index.subscribe("team", "pay-0", Some(labels("pay")));
    let b = index.subscribe("team", "pay-0", None);
    assert_eq!(
        a.borrow().as_ref().map(|x| x.version.clone()),
        b.borrow().as_ref().map(|x| x.version.clone())
    );
    assert_eq!(index.counts().1, 1);
    drop((a, b));
    index.prune();
    assert_eq!(index.counts().1, 0);
}
