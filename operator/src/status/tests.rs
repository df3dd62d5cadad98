//! Unit tests of the status computation.
use super::*;
use mcp_warden_policy::{Resource, load};

const CRS: &str = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: pay, namespace: team, generation: 3}
spec:
  owner: team
  server: {selector: {matchLabels: {app: pay}}, resource: "https://pay.example/mcp"}
  authentication: {issuers: [{issuer: "https://idp.example"}]}
  tools: [{name: "get_*"}]
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: bot, namespace: agents, generation: 2}
spec:
  owner: me
  identity: {issuer: "https://idp.example", clientId: bot}
  expiresAt: "2030-03-01T00:00:00Z"
  review: {intervalDays: 30, lastReviewedAt: "2030-01-15T00:00:00Z"}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpPolicy
metadata: {name: bot-pay, namespace: team, generation: 5}
spec:
  clients: [{name: bot, namespace: agents}, {name: ghost, namespace: agents}]
  tools: [{toolRef: pay, names: [get_balance]}, {toolRef: nowhere}]
"#;

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn inventory() -> Inventory {
    Inventory::from_resources(load("t.yaml", CRS).expect("valid"))
}

#[test]
fn client_phase_follows_the_clock_and_keeps_transition_times() {
    let inv = inventory();
    let key = ("agents".to_string(), "bot".to_string());
    let mut client = inv.clients()[&key].clone();
    let granted = effective_tools(&inv);
    assert_eq!(
        granted[&key].iter().cloned().collect::<Vec<_>>(),
        vec!["team/pay/get_balance".to_string()]
    );
    let t0 = t("2030-02-01T00:00:00Z");
    let s = client_status(&client, granted.get(&key), None, t0);
    assert_eq!(s.phase, Some(ClientPhase::Active));
    assert_eq!(s.review_due, Some(time(t("2030-02-14T00:00:00Z"))));
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.conditions[0].type_, "Ready");
    assert_eq!(s.conditions[0].status, "True");
    client.status = Some(s.clone());
    // One second before the review is due nothing flips, and nothing changes at all.
    let before = client_status(&client, granted.get(&key), None, t("2030-02-13T23:59:59Z"));
    assert_eq!(before, s, "no change before the boundary: no write");
    // At the boundary: ReviewOverdue, transition time = now.
    let due = t("2030-02-14T00:00:00Z");
    let at = client_status(&client, granted.get(&key), None, due);
    assert_eq!(at.phase, Some(ClientPhase::ReviewOverdue));
    let overdue = at
        .conditions
        .iter()
        .find(|c| c.type_ == "ReviewOverdue")
        .expect("condition");
    assert_eq!(
        (overdue.status.as_str(), overdue.last_transition_time.0),
        ("True", due)
    );
    let expired = at
        .conditions
        .iter()
        .find(|c| c.type_ == "Expired")
        .expect("condition");
    assert_eq!(
        expired.last_transition_time.0, t0,
        "unchanged condition keeps its time"
    );
    // Expiry outranks the overdue review.
    let later = client_status(&client, granted.get(&key), None, t("2030-03-01T00:00:00Z"));
    assert_eq!(later.phase, Some(ClientPhase::Expired));
    assert_eq!(next_transition(&inv, t0), Some(due));
    assert_eq!(next_transition(&inv, due), Some(t("2030-03-01T00:00:00Z")));
}

#[test]
fn policy_conditions_name_the_missing_references() {
    let inv = inventory();
    let key = ("team".to_string(), "bot-pay".to_string());
    let s = policy_status(&inv, &key, &inv.policies()[&key], t("2030-01-01T00:00:00Z"));
    let resolved = &s.conditions[1];
    assert_eq!(
        (resolved.type_.as_str(), resolved.status.as_str()),
        ("ResolvedRefs", "False")
    );
    assert_eq!(resolved.reason, "RefsNotFound");
    assert_eq!(
        resolved.message,
        "McpTool team/nowhere not found; McpClient agents/ghost not found"
    );
    assert_eq!(
        s.conditions[0].status, "True",
        "accepted: one tool resolves"
    );
    assert_eq!(s.observed_generation, Some(5));
    let mut only_missing = inv.policies()[&key].clone();
    only_missing.spec.tools.retain(|g| g.tool_ref == "nowhere");
    let s = policy_status(&inv, &key, &only_missing, t("2030-01-01T00:00:00Z"));
    assert_eq!(
        (
            s.conditions[0].status.as_str(),
            s.conditions[0].reason.as_str()
        ),
        ("False", "NoTools")
    );
}

#[test]
fn tool_status_counts_pods_and_undeclared_tools() {
    let inv = inventory();
    let key = ("team".to_string(), "pay".to_string());
    let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
    let pods: Pods = BTreeMap::from([
        (("team".into(), "pay-0".into()), labels("pay")),
        (("team".into(), "pay-1".into()), labels("pay")),
        (("team".into(), "web-0".into()), labels("web")),
        (("other".into(), "pay-0".into()), labels("pay")),
    ]);
    let seen = BTreeSet::from(["get_balance".to_string(), "refund".to_string()]);
    let s = tool_status(
        &key,
        &inv.tools()[&key],
        &pods,
        Some(&seen),
        None,
        t("2030-01-01T00:00:00Z"),
    );
    assert_eq!(s.governed_pods, Some(2));
    assert_eq!(s.undeclared_tools, vec!["refund".to_string()]);
    assert_eq!(s.conditions[0].reason, "Governed");
    let none = tool_status(
        &key,
        &inv.tools()[&key],
        &Pods::new(),
        None,
        None,
        t("2030-01-01T00:00:00Z"),
    );
    assert_eq!(
        (none.governed_pods, none.conditions[0].reason.as_str()),
        (Some(0), "NoPods")
    );
}

#[test]
fn bypass_reports_make_the_bypassable_condition() {
    let now = t("2030-01-01T00:00:00Z");
    let pod = |p: &str| ("team".to_string(), p.to_string());
    let report = |reachable: &[&str], not_checked: Option<&str>| BypassReport {
        namespace: "team".into(),
        name: "pay".into(),
        port: not_checked.is_none().then_some(8080),
        checked: vec!["10.0.0.5".into()],
        reachable: reachable.iter().map(|a| (*a).to_owned()).collect(),
        not_checked: not_checked.map(str::to_owned),
    };
    let loopback = [(pod("pay-0"), report(&[], None))];
    let c = bypass_condition(&[], &loopback, Some(3), now);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.observed_generation),
        ("False", "LoopbackOnly", Some(3))
    );
    let open = [
        (pod("pay-0"), report(&[], None)),
        (pod("pay-1"), report(&["10.0.0.6:8080"], None)),
    ];
    let later = t("2030-01-01T00:01:00Z");
    let c = bypass_condition(std::slice::from_ref(&c), &open, Some(3), later);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "UpstreamReachable")
    );
    assert!(
        c.message.contains("pod team/pay-1 at 10.0.0.6:8080"),
        "{}",
        c.message
    );
    assert_eq!(c.last_transition_time.0, later, "it flipped");
    let remote = [(
        pod("pay-0"),
        report(&[], Some("the upstream is on another host")),
    )];
    let c = bypass_condition(&[], &remote, None, now);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "NotChecked")
    );
    let c = bypass_condition(&[], &[], None, now);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "NotReported")
    );
}

#[test]
fn runaway_flags_suspend_until_cleared() {
    let inv = inventory();
    let key = ("agents".to_string(), "bot".to_string());
    let mut client = inv.clients()[&key].clone();
    let now = t("2030-02-01T00:00:00Z");
    let view = ClientView {
        runaway: vec![(
            ("team".into(), "pay-0".into()),
            crate::usage::RunawayFlag {
                namespace: "agents".into(),
                name: "bot".into(),
                flagged_at: t("2030-01-31T23:00:00Z"),
                suspended: true,
            },
        )],
        calls_24h: 7,
        ..ClientView::default()
    };
    let s = client_status(&client, None, Some(&view), now);
    assert_eq!(s.phase, Some(ClientPhase::Suspended));
    assert_eq!(s.calls_24h, Some(7));
    let runaway = s
        .conditions
        .iter()
        .find(|c| c.type_ == "RunawayDetected")
        .expect("condition");
    assert_eq!(runaway.status, "True");
    assert!(
        runaway.message.contains("team/pay-0"),
        "{}",
        runaway.message
    );
    client.metadata.annotations = Some(BTreeMap::from([(
        RUNAWAY_CLEARED_AT.to_string(),
        "2030-01-31T23:30:00Z".to_string(),
    )]));
    let s = client_status(&client, None, Some(&view), now);
    assert_eq!(s.phase, Some(ClientPhase::Active));
    let _ = Resource::Client(client);
}
