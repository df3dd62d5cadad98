//! Controller tests on kube-fake-client + the watch shim: watches feed the right pods' bundles,
//! status is written (and only when it changes), time-based transitions happen at their
//! boundaries, objects that do not deserialize are skipped with a condition.
//!
//! The real suite (`tests/tests/cluster/`) cannot show: transitions at their exact time boundaries
//! (a manual clock), how many status writes reach the server (counted at the fake), and stored
//! objects that do not deserialize (the real API server refuses them at its schema).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use jiff::{SignedDuration, Timestamp};
use kube::{
    Api,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
};
use mcp_warden_crds::{ClientPhase, McpClient, McpPolicy, McpTool};
use mcp_warden_operator::{
    clock::{Clock, ManualClock, SystemClock},
    index::BundleRx,
    usage::{ClientUsage, UsageReport},
};
use mcp_warden_test_support::{eventually_async, eventually_await};
use serde_json::json;
use std::{sync::Arc, time::Duration};
use support::{Leadership, Operator, create, create_pod, fake_cluster};

const SECOND: Duration = Duration::from_secs(1);

/// Two servers (pay, ledger), two agents (bot, other), one grant (bot → pay).
const CRS: &str = include_str!("fixtures/team.yaml");

fn tools(c: &kube::Client, ns: &str) -> Api<McpTool> {
    Api::namespaced(c.clone(), ns)
}
fn clients(c: &kube::Client, ns: &str) -> Api<McpClient> {
    Api::namespaced(c.clone(), ns)
}
fn policies(c: &kube::Client, ns: &str) -> Api<McpPolicy> {
    Api::namespaced(c.clone(), ns)
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

/// (tools, clients, policies) names of the bundle in a channel, `None` when nothing governs.
fn content(rx: &BundleRx) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
    rx.borrow()
        .as_ref()
        .map(|b| (names(&b.tools), names(&b.clients), names(&b.policies)))
}

fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_of_each_kind_updates_the_right_pods_bundles() {
    let (c, _) = fake_cluster().await;
    let op = Operator::start(&c, Arc::new(SystemClock), Leadership::Always).await;
    create_pod(&c, "team", "pay-0", &[("app", "pay")]).await;
    create_pod(&c, "team", "ledger-0", &[("app", "ledger")]).await;
    let mut pay = op.index.subscribe("team", "pay-0", None);
    let mut ledger = op.index.subscribe("team", "ledger-0", None);
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    // Create: each pod gets its McpTool; only pay gets the policy and its client.
    create(&c, CRS).await;
    eventually_async("pay's bundle", 5 * SECOND, || {
        content(&pay) == Some((v(&["pay"]), v(&["bot"]), v(&["bot-pay"])))
    })
    .await;
    eventually_async("ledger's bundle", 5 * SECOND, || {
        content(&ledger) == Some((v(&["ledger"]), v(&[]), v(&[])))
    })
    .await;
    pay.borrow_and_update();
    ledger.borrow_and_update();

    // Update an McpClient: suspending bot reaches pay only.
    clients(&c, "agents")
        .patch(
            "bot",
            &PatchParams::default(),
            &merge(json!({"spec": {"suspended": true}})),
        )
        .await
        .unwrap();
    eventually_async("bot suspended in pay's bundle", 5 * SECOND, || {
        pay.borrow()
            .as_ref()
            .is_some_and(|b| b.clients[0].spec.suspended)
    })
    .await;
    pay.borrow_and_update();
    // Update the *other* client (in no bundle): nobody changes.
    clients(&c, "agents")
        .patch(
            "other",
            &PatchParams::default(),
            &merge(json!({"spec": {"owner": "someone-else"}})),
        )
        .await
        .unwrap();
    eventually_async("the index has the new owner", 5 * SECOND, || {
        op.index.inventory().clients()[&("agents".into(), "other".into())]
            .spec
            .owner
            == "someone-else"
    })
    .await;
    assert!(
        !pay.has_changed().unwrap() && !ledger.has_changed().unwrap(),
        "no bundle holds `other`"
    );

    // Create a policy granting `other` on ledger: ledger changes, pay does not.
    create(
        &c,
        r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpPolicy
metadata: {name: other-ledger, namespace: team}
spec: {clients: [{name: other, namespace: agents}], tools: [{toolRef: ledger}]}
"#,
    )
    .await;
    eventually_async("ledger gets the policy", 5 * SECOND, || {
        content(&ledger) == Some((v(&["ledger"]), v(&["other"]), v(&["other-ledger"])))
    })
    .await;
    ledger.borrow_and_update();
    assert!(!pay.has_changed().unwrap());

    // Update an McpPolicy: move bot-pay's grant from pay to ledger.
    policies(&c, "team")
        .patch(
            "bot-pay",
            &PatchParams::default(),
            &merge(json!({"spec": {"tools": [{"toolRef": "ledger"}]}})),
        )
        .await
        .unwrap();
    eventually_async("pay loses the policy", 5 * SECOND, || {
        content(&pay) == Some((v(&["pay"]), v(&[]), v(&[])))
    })
    .await;
    eventually_async("ledger gains it", 5 * SECOND, || {
        content(&ledger)
            == Some((
                v(&["ledger"]),
                v(&["bot", "other"]),
                v(&["bot-pay", "other-ledger"]),
            ))
    })
    .await;
    pay.borrow_and_update();
    ledger.borrow_and_update();

    // Update an McpTool: ledger's selector no longer matches ledger-0.
    tools(&c, "team")
        .patch(
            "ledger",
            &PatchParams::default(),
            &merge(json!({"spec": {"server": {"selector": {"matchLabels": {"app": "nothing"}}}}})),
        )
        .await
        .unwrap();
    eventually_async("ledger-0 is governed by nothing", 5 * SECOND, || {
        content(&ledger).is_none()
    })
    .await;
    ledger.borrow_and_update();
    assert!(!pay.has_changed().unwrap());

    // Pods: a new pod with app=pay gets pay's bundle when it subscribes; deleting pay-0 empties
    // its channel.
    create_pod(&c, "team", "pay-1", &[("app", "pay")]).await;
    eventually_async("pay-1 indexed", 5 * SECOND, || {
        op.index
            .pods()
            .contains_key(&("team".into(), "pay-1".into()))
    })
    .await;
    let pay1 = op.index.subscribe("team", "pay-1", None);
    assert_eq!(
        pay1.borrow().as_ref().map(|b| &b.version),
        pay.borrow().as_ref().map(|b| &b.version),
        "same labels, same bundle"
    );

    // Delete an McpClient, an McpPolicy, an McpTool.
    policies(&c, "team")
        .delete("other-ledger", &DeleteParams::default())
        .await
        .unwrap();
    clients(&c, "agents")
        .delete("bot", &DeleteParams::default())
        .await
        .unwrap();
    eventually_async("bot gone from the index", 5 * SECOND, || {
        !op.index
            .inventory()
            .clients()
            .contains_key(&("agents".into(), "bot".into()))
    })
    .await;
    assert!(!pay.has_changed().unwrap(), "pay's bundle held neither");
    tools(&c, "team")
        .delete("pay", &DeleteParams::default())
        .await
        .unwrap();
    eventually_async("pay-0 is governed by nothing", 5 * SECOND, || {
        content(&pay).is_none()
    })
    .await;
    Api::<k8s_openapi::api::core::v1::Pod>::namespaced(c.clone(), "team")
        .delete("pay-1", &DeleteParams::default())
        .await
        .unwrap();
    eventually_async("pay-1 forgotten", 5 * SECOND, || {
        !op.index
            .pods()
            .contains_key(&("team".into(), "pay-1".into()))
    })
    .await;
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_status_names_missing_references_until_they_exist() {
    let (c, _) = fake_cluster().await;
    let _op = Operator::start(&c, Arc::new(SystemClock), Leadership::Always).await;
    create(
        &c,
        r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpPolicy
metadata: {name: dangling, namespace: team}
spec:
  clients: [{name: nobody, namespace: agents}]
  tools: [{toolRef: ghost}]
"#,
    )
    .await;
    let api = policies(&c, "team");
    let status = eventually_await("policy status", 5 * SECOND, || async {
        api.get("dangling")
            .await
            .unwrap()
            .status
            .filter(|s| !s.conditions.is_empty())
    })
    .await;
    let resolved = condition(&status.conditions, "ResolvedRefs").expect("ResolvedRefs");
    assert_eq!(
        (resolved.status.as_str(), resolved.reason.as_str()),
        ("False", "RefsNotFound")
    );
    assert_eq!(
        resolved.message,
        "McpTool team/ghost not found; McpClient agents/nobody not found"
    );
    let accepted = condition(&status.conditions, "Accepted").expect("Accepted");
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "NoTools")
    );
    assert_eq!(
        status.observed_generation,
        api.get("dangling").await.unwrap().metadata.generation
    );

    // The McpTool appears: only the client is missing now.
    create(
        &c,
        r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: ghost, namespace: team}
spec:
  owner: team
  server: {selector: {matchLabels: {app: ghost}}, resource: "https://ghost.example/mcp"}
  authentication: {issuers: [{issuer: "https://idp.example"}]}
"#,
    )
    .await;
    let message = eventually_await("ResolvedRefs names only the client", 5 * SECOND, || async {
        let s = api.get("dangling").await.unwrap().status?;
        let c = condition(&s.conditions, "ResolvedRefs")?.clone();
        (c.reason == "ClientNotFound").then_some(c.message)
    })
    .await;
    assert_eq!(message, "McpClient agents/nobody not found");
    // And the client: resolved; the McpTool shows no governed pods yet.
    create(
        &c,
        r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: nobody, namespace: agents}
spec: {owner: me, identity: {issuer: "https://idp.example", clientId: nobody}}
"#,
    )
    .await;
    eventually_await("ResolvedRefs true", 5 * SECOND, || async {
        let s = api.get("dangling").await.unwrap().status?;
        (condition(&s.conditions, "ResolvedRefs")?.status == "True").then_some(())
    })
    .await;
    let tool = eventually_await("tool status", 5 * SECOND, || async {
        tools(&c, "team").get("ghost").await.unwrap().status
    })
    .await;
    assert_eq!(tool.governed_pods, Some(0));
    assert_eq!(
        condition(&tool.conditions, "Ready").unwrap().reason,
        "NoPods"
    );
    let client = eventually_await("client status", 5 * SECOND, || async {
        clients(&c, "agents")
            .get("nobody")
            .await
            .unwrap()
            .status
            .filter(|s| !s.effective_tools.is_empty())
    })
    .await;
    assert_eq!(client.effective_tools, vec!["team/ghost/*".to_string()]);
    assert_eq!(client.phase, Some(ClientPhase::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_settle_and_do_not_loop() {
    let (c, counters) = fake_cluster().await;
    let op = Operator::start(&c, Arc::new(SystemClock), Leadership::Always).await;
    create_pod(&c, "team", "pay-0", &[("app", "pay")]).await;
    create(&c, CRS).await;
    // Every object (2 tools, 2 clients, 1 policy) gets a status.
    eventually_await("every status written", 5 * SECOND, || async {
        let t = tools(&c, "team").list(&Default::default()).await.unwrap();
        let cl = clients(&c, "agents")
            .list(&Default::default())
            .await
            .unwrap();
        let p = policies(&c, "team")
            .list(&Default::default())
            .await
            .unwrap();
        let all = t.items.iter().all(|o| o.status.is_some())
            && cl.items.iter().all(|o| o.status.is_some())
            && p.items.iter().all(|o| o.status.is_some());
        all.then_some(())
    })
    .await;
    tokio::time::sleep(SECOND).await;
    let (writes, passes, server_writes) = (op.writes(), op.passes(), counters.status_total());
    // Settle period: nothing changes, so nothing is written, and passes come only from the
    // usage refresh timer (every 200 ms here).
    tokio::time::sleep(3 * SECOND).await;
    let (writes2, passes2, server_writes2) = (op.writes(), op.passes(), counters.status_total());
    println!(
        "after settle: writes {writes} → {writes2}, passes {passes} → {passes2}, server status writes {server_writes} → {server_writes2}"
    );
    assert_eq!(writes2, writes, "no status write without a change");
    assert_eq!(server_writes2, server_writes);
    assert!(
        passes2 - passes <= 20,
        "passes bounded by the refresh timer: {}",
        passes2 - passes
    );
    assert!(
        server_writes <= 3 * 5,
        "a handful of writes per object to settle: {server_writes}"
    );

    // A stream of usage reports (20 per second) costs one write per refresh period, not one per
    // report.
    let before = counters.status_to("mcpclients/bot/status");
    let start = tokio::time::Instant::now();
    let mut seq = 0;
    while start.elapsed() < 2 * SECOND {
        seq += 1;
        op.usage.record(
            UsageReport {
                namespace: "team".into(),
                pod: "pay-0".into(),
                boot_id: "boot".into(),
                seq,
                clients: vec![ClientUsage {
                    namespace: "agents".into(),
                    name: "bot".into(),
                    calls: 1,
                    ..ClientUsage::default()
                }],
                ..UsageReport::default()
            },
            SystemClock.now(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = eventually_await("calls24h", 5 * SECOND, || async {
        clients(&c, "agents")
            .get("bot")
            .await
            .unwrap()
            .status
            .and_then(|s| s.calls_24h)
            .filter(|n| *n == seq)
    })
    .await;
    let usage_writes = counters.status_to("mcpclients/bot/status") - before;
    println!("{seq} usage reports → calls24h {calls}, {usage_writes} status writes for bot");
    assert!(
        usage_writes <= 2000 / 200 + 3,
        "usage writes bounded by the refresh period: {usage_writes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_review_due_transitions_happen_at_their_boundaries() {
    let (c, counters) = fake_cluster().await;
    let t0: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let clock = ManualClock::new(t0);
    let _op = Operator::start(&c, Arc::new(clock.clone()), Leadership::Always).await;
    let review_due = t0 + SignedDuration::from_hours(1);
    let expiry = t0 + SignedDuration::from_hours(24 * 10);
    let last_reviewed = review_due - SignedDuration::from_hours(24 * 30);
    create(
        &c,
        &format!(
            r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {{name: expiring, namespace: agents}}
spec: {{owner: me, identity: {{issuer: "https://idp.example", clientId: e}}, expiresAt: "{expiry}"}}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {{name: reviewed, namespace: agents}}
spec:
  owner: me
  identity: {{issuer: "https://idp.example", clientId: r}}
  review: {{intervalDays: 30, lastReviewedAt: "{last_reviewed}", enforce: true}}
"#
        ),
    )
    .await;
    let api = clients(&c, "agents");
    let phase = |name: &'static str| {
        let api = api.clone();
        async move { api.get(name).await.unwrap().status.and_then(|s| s.phase) }
    };
    eventually_await("initial phases", 5 * SECOND, || async {
        (phase("expiring").await == Some(ClientPhase::Active)
            && phase("reviewed").await == Some(ClientPhase::Active))
        .then_some(())
    })
    .await;
    let reviewed = api.get("reviewed").await.unwrap().status.unwrap();
    assert_eq!(reviewed.review_due.map(|t| t.0), Some(review_due));

    // One second before the boundary: nothing happens.
    clock.set(review_due - SignedDuration::from_secs(1));
    tokio::time::sleep(SECOND).await;
    assert_eq!(phase("reviewed").await, Some(ClientPhase::Active));
    let writes_before = counters.status_total();

    // At the boundary, with no event at all: ReviewOverdue, transition time = the boundary.
    clock.set(review_due);
    eventually_await("ReviewOverdue", 5 * SECOND, || async {
        (phase("reviewed").await == Some(ClientPhase::ReviewOverdue)).then_some(())
    })
    .await;
    let s = api.get("reviewed").await.unwrap().status.unwrap();
    let overdue = condition(&s.conditions, "ReviewOverdue").unwrap();
    assert_eq!(
        (overdue.status.as_str(), overdue.last_transition_time.0),
        ("True", review_due)
    );
    assert_eq!(
        condition(&s.conditions, "Ready").unwrap().reason,
        "ReviewOverdue"
    );
    assert_eq!(phase("expiring").await, Some(ClientPhase::Active));
    assert_eq!(
        counters.status_total() - writes_before,
        1,
        "exactly the one client changed"
    );

    // Expiry, ten days later.
    clock.set(expiry - SignedDuration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(phase("expiring").await, Some(ClientPhase::Active));
    clock.set(expiry);
    eventually_await("Expired", 5 * SECOND, || async {
        (phase("expiring").await == Some(ClientPhase::Expired)).then_some(())
    })
    .await;
    let s = api.get("expiring").await.unwrap().status.unwrap();
    let expired = condition(&s.conditions, "Expired").unwrap();
    assert_eq!(
        (expired.status.as_str(), expired.last_transition_time.0),
        ("True", expiry)
    );
    assert_eq!(condition(&s.conditions, "Ready").unwrap().status, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_that_do_not_deserialize_are_skipped_with_a_condition() {
    let (c, _) = fake_cluster().await;
    let op = Operator::start(&c, Arc::new(SystemClock), Leadership::Always).await;
    create_pod(&c, "team", "pay-0", &[("app", "pay")]).await;
    create(&c, CRS).await;
    let pay = op.index.subscribe("team", "pay-0", None);
    eventually_async("bot in pay's bundle", 5 * SECOND, || {
        content(&pay).is_some_and(|(_, clients, _)| clients == vec!["bot".to_string()])
    })
    .await;

    let ar = ApiResource::erase::<McpClient>(&());
    let dynamic: Api<DynamicObject> = Api::namespaced_with(c.clone(), "agents", &ar);
    // A new object of the wrong shape: skipped, the operator keeps running.
    let broken: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "mcpwarden.io/v1alpha1", "kind": "McpClient",
        "metadata": {"name": "broken", "namespace": "agents"},
        "spec": {"owner": 42, "identity": "not-an-object"}
    }))
    .unwrap();
    dynamic
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    // A known object turned invalid: removed from the index (fail closed), so it leaves pay's
    // bundle.
    dynamic
        .patch(
            "bot",
            &PatchParams::default(),
            &merge(json!({"spec": {"identity": "oops"}})),
        )
        .await
        .unwrap();
    eventually_async("bot leaves pay's bundle", 5 * SECOND, || {
        content(&pay).is_some_and(|(_, clients, _)| clients.is_empty())
    })
    .await;
    for name in ["broken", "bot"] {
        let conditions = eventually_await("InvalidSpec condition", 5 * SECOND, || async {
            let o = dynamic.get(name).await.unwrap();
            let cs = o.data.get("status")?.get("conditions")?.as_array()?.clone();
            cs.iter()
                .any(|c| c["reason"] == "InvalidSpec")
                .then_some(cs)
        })
        .await;
        let ready = conditions.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "False");
        assert!(
            ready["message"]
                .as_str()
                .unwrap()
                .contains("does not match the mcp-warden schema"),
            "{ready}"
        );
    }
    let invalid = op.invalid.snapshot();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert!(
        op.metrics
            .watch_events
            .with_label_values(&["McpClient", "apply"])
            .get()
            >= 2
    );

    // Fixed again: back in the index and the bundle.
    dynamic
        .patch(
            "bot",
            &PatchParams::default(),
            &merge(
                json!({"spec": {"identity": {"issuer": "https://idp.example", "clientId": "bot"}}}),
            ),
        )
        .await
        .unwrap();
    eventually_async("bot back in pay's bundle", 5 * SECOND, || {
        content(&pay).is_some_and(|(_, clients, _)| clients == vec!["bot".to_string()])
    })
    .await;
    assert_eq!(op.invalid.snapshot().len(), 1);
}
