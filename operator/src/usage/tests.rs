//! Unit tests of the usage window and the report endpoint.
use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn report(seq: u64, calls: u64) -> UsageReport {
    UsageReport {
        namespace: "team".into(),
        pod: "pay-0".into(),
        boot_id: "b1".into(),
        seq,
        clients: vec![ClientUsage {
            namespace: "agents".into(),
            name: "bot".into(),
            calls,
            denials: BTreeMap::from([("not_granted".into(), 1)]),
            last_seen: Some(t("2030-01-01T00:00:00Z")),
            ..ClientUsage::default()
        }],
        ..UsageReport::default()
    }
}

#[test]
fn per_tool_calls_and_last_use_are_kept_per_reporting_pod() {
    let store = UsageStore::default();
    let key = ("agents".to_string(), "bot".to_string());
    let pod = ("team".to_string(), "pay-0".to_string());
    let t0 = t("2030-01-01T00:00:05Z");
    let mut r = report(1, 3);
    r.clients[0].tools = BTreeMap::from([("get_balance".into(), 2), ("refund".into(), 1)]);
    store.record(r, t0);
    let mut r = report(2, 4);
    r.clients[0].tools = BTreeMap::from([("get_balance".into(), 4)]);
    r.clients[0].last_seen = Some(t0 + SignedDuration::from_hours(2));
    store.record(r, t0 + SignedDuration::from_hours(3));
    let v = store.view(t0 + SignedDuration::from_hours(3));
    let tools = &v.clients[&key].tools;
    let balance = tools[&(pod.clone(), "get_balance".to_string())];
    assert_eq!(balance.calls_24h, 6);
    assert_eq!(
        balance.last_used,
        Some(t0 + SignedDuration::from_hours(2)),
        "the client's lastSeen in the report"
    );
    let refund = tools[&(pod.clone(), "refund".to_string())];
    assert_eq!(
        (refund.calls_24h, refund.last_used),
        (1, Some(t("2030-01-01T00:00:00Z")))
    );
    // Past the window both fall out of the view (status keeps lastUsed).
    let v = store.view(t0 + SignedDuration::from_hours(30));
    assert!(
        v.clients[&key].tools.is_empty(),
        "{:?}",
        v.clients[&key].tools
    );
    let mut bad = report(3, 1);
    bad.clients[0].tools = BTreeMap::from([(String::new(), 1)]);
    assert_eq!(validate(&mut bad), Ok(1), "the entry is dropped");
    assert!(bad.clients.is_empty());
}

#[test]
fn counts_fold_into_a_24_hour_window_and_retries_are_dropped() {
    let store = UsageStore::default();
    let key = ("agents".to_string(), "bot".to_string());
    let t0 = t("2030-01-01T00:00:05Z");
    assert_eq!(store.record(report(1, 10), t0), Recorded::Accepted);
    assert_eq!(store.record(report(1, 10), t0), Recorded::Duplicate);
    assert_eq!(
        store.record(report(2, 5), t0 + SignedDuration::from_hours(1)),
        Recorded::Accepted
    );
    let v = store.view(t0 + SignedDuration::from_hours(2));
    assert_eq!(v.clients[&key].calls_24h, 15);
    assert_eq!(v.clients[&key].denials_24h, 2);
    assert_eq!(v.clients[&key].denials_by_reason["not_granted"], 2);
    // 24 h after the first report only the second is in the window.
    let v = store.view(t0 + SignedDuration::from_hours(24) + SignedDuration::from_mins(10));
    assert_eq!(v.clients[&key].calls_24h, 5);
    let v = store.view(t0 + SignedDuration::from_hours(26));
    assert_eq!(v.clients[&key].calls_24h, 0);
    assert_eq!(
        v.clients[&key].last_seen,
        Some(t("2030-01-01T00:00:00Z")),
        "lastSeen outlives the window"
    );
    // A restarted sidecar (new bootId) starts at seq 1 again.
    let mut r = report(1, 1);
    r.boot_id = "b2".into();
    assert_eq!(
        store.record(r, t0 + SignedDuration::from_hours(26)),
        Recorded::Accepted
    );
}

#[test]
fn runaway_flags_are_complete_states_and_expire_with_their_reporter() {
    let store = UsageStore::default();
    let urgent = store.urgent();
    let key = ("agents".to_string(), "bot".to_string());
    let t0 = t("2030-01-01T00:00:00Z");
    let mut r = report(1, 1);
    r.runaway = vec![RunawayFlag {
        namespace: "agents".into(),
        name: "bot".into(),
        flagged_at: t0,
        suspended: true,
    }];
    store.record(r, t0);
    assert!(urgent.has_changed().expect("open"));
    assert_eq!(store.view(t0).clients[&key].runaway.len(), 1);
    assert!(
        store
            .view(t0 + REPORTER_TTL + SignedDuration::from_secs(1))
            .clients[&key]
            .runaway
            .is_empty()
    );
    store.record(report(2, 1), t0 + SignedDuration::from_secs(10));
    assert!(
        store.view(t0 + SignedDuration::from_secs(10)).clients[&key]
            .runaway
            .is_empty()
    );
}

#[tokio::test]
async fn only_the_leader_takes_reports() {
    let (lead, leading) = watch::channel(false);
    let endpoint = UsageEndpoint {
        store: UsageStore::default(),
        authorizer: Arc::new(push::AllowAll),
        clock: Arc::new(crate::clock::SystemClock),
        metrics: None,
        leading: Some(leading),
    };
    let body = Bytes::from(serde_json::to_vec(&report(1, 3)).unwrap());
    let (status, _) = endpoint
        .post(Caller::Unverified, http::HeaderMap::new(), body.clone())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a follower");
    assert!(endpoint.store.reporters().is_empty(), "and it kept nothing");
    lead.send(true).unwrap();
    let (status, answer) = endpoint
        .post(Caller::Unverified, http::HeaderMap::new(), body)
        .await;
    assert_eq!(
        (status, answer["accepted"].as_bool()),
        (StatusCode::OK, Some(true))
    );
}

#[tokio::test]
async fn a_malformed_entry_is_dropped_and_the_rest_recorded() {
    let endpoint = UsageEndpoint {
        store: UsageStore::default(),
        authorizer: Arc::new(push::AllowAll),
        clock: Arc::new(crate::clock::SystemClock),
        metrics: None,
        leading: None,
    };
    let mut r = report(1, 3);
    let mut bad_tool = r.clients[0].clone();
    bad_tool.name = "other".into();
    bad_tool.tools = BTreeMap::from([("bad\u{7}".into(), 1)]);
    let mut bad_name = r.clients[0].clone();
    bad_name.namespace.clear();
    r.clients.extend([bad_tool, bad_name]);
    r.runaway.push(RunawayFlag {
        namespace: "agents".into(),
        name: String::new(),
        flagged_at: t("2030-01-01T00:00:00Z"),
        suspended: false,
    });
    let body = Bytes::from(serde_json::to_vec(&r).unwrap());
    let (status, answer) = endpoint
        .post(Caller::Unverified, http::HeaderMap::new(), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"accepted": true, "dropped": 3}));
    let view = endpoint.store.view(Timestamp::now());
    let keys: Vec<_> = view.clients.keys().cloned().collect();
    assert_eq!(keys, vec![("agents".to_string(), "bot".to_string())]);
    assert_eq!(view.clients[&keys[0]].calls_24h, 3);
    assert!(view.clients[&keys[0]].runaway.is_empty());
    // A bad envelope still refuses the whole report.
    let mut r = report(2, 1);
    r.boot_id.clear();
    let body = Bytes::from(serde_json::to_vec(&r).unwrap());
    let (status, _) = endpoint
        .post(Caller::Unverified, http::HeaderMap::new(), body)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn entries_outside_the_pods_bundle_are_dropped() {
    let index = Index::default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/everything");
    index.replace_all(crate::files::read_dir(&dir).expect("examples"));
    let labels = BTreeMap::from([("app".to_string(), "server-everything".to_string())]);
    index.apply_pod("demo", "ev-0", labels);
    let bundle = index
        .bundle_of("demo", "ev-0")
        .expect("the example governs the pod");
    let mine = &bundle.clients[0].metadata;
    let mine = (
        mine.namespace.clone().unwrap_or_default(),
        mine.name.clone().unwrap_or_default(),
    );
    let endpoint = ScopedUsage {
        endpoint: UsageEndpoint {
            store: UsageStore::default(),
            authorizer: Arc::new(push::AllowAll),
            clock: Arc::new(crate::clock::SystemClock),
            metrics: None,
            leading: None,
        },
        index,
    };
    let entry = |(namespace, name): &Key| ClientUsage {
        namespace: namespace.clone(),
        name: name.clone(),
        calls: 2,
        last_seen: Some(t("2030-01-01T00:00:00Z")),
        ..ClientUsage::default()
    };
    let theirs = ("other-team".to_string(), "their-bot".to_string());
    let flag = |(namespace, name): &Key| RunawayFlag {
        namespace: namespace.clone(),
        name: name.clone(),
        flagged_at: t("2030-01-01T00:00:00Z"),
        suspended: true,
    };
    let r = UsageReport {
        namespace: "demo".into(),
        pod: "ev-0".into(),
        boot_id: "b".into(),
        seq: 1,
        clients: vec![entry(&mine), entry(&theirs)],
        runaway: vec![flag(&mine), flag(&theirs)],
        tools: vec![
            ToolsSeen {
                namespace: "demo".into(),
                name: "everything".into(),
                tools_seen: vec!["echo".into()],
            },
            ToolsSeen {
                namespace: "other-team".into(),
                name: "their-tool".into(),
                tools_seen: vec!["x".into()],
            },
        ],
        ..UsageReport::default()
    };
    let body = Bytes::from(serde_json::to_vec(&r).unwrap());
    let (status, answer) = endpoint
        .post(Caller::Unverified, http::HeaderMap::new(), body)
        .await;
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({"accepted": true, "dropped": 3}))
    );
    let view = endpoint.endpoint.store.view(Timestamp::now());
    assert!(!view.clients.contains_key(&theirs), "{view:?}");
    assert_eq!(view.clients[&mine].calls_24h, 2);
    assert_eq!(view.clients[&mine].runaway.len(), 1);
    assert_eq!(
        view.tools.keys().cloned().collect::<Vec<_>>(),
        vec![("demo".to_string(), "everything".to_string())]
    );
    // A pod nothing governs observes nothing.
    let mut r = r;
    r.pod = "stranger".into();
    let body = Bytes::from(serde_json::to_vec(&r).unwrap());
    let (_, answer) = endpoint
        .post(Caller::Unverified, http::HeaderMap::new(), body)
        .await;
    assert_eq!(answer["dropped"], 6);
}

#[tokio::test]
async fn a_report_for_another_pod_than_the_callers_is_refused() {
    let endpoint = UsageEndpoint {
        store: UsageStore::default(),
        authorizer: Arc::new(push::AllowAll),
        clock: Arc::new(crate::clock::SystemClock),
        metrics: None,
        leading: None,
    };
    let caller = Caller::Pod {
        namespace: "team".into(),
        pod: "pay-1".into(),
    };
    let body = Bytes::from(serde_json::to_vec(&report(1, 3)).unwrap());
    let (status, answer) = endpoint.post(caller, http::HeaderMap::new(), body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(endpoint.store.reporters().is_empty());
}

#[test]
fn report_schema_round_trips() {
    let text = r#"{"namespace":"team-a","pod":"pay-0","bootId":"x","seq":3,
        "clients":[{"namespace":"agents","name":"bot","calls":2,"denials":{"rate_limited":1},"lastSeen":"2030-01-01T00:00:00Z","tools":{"get_balance":2}}],
        "runaway":[{"namespace":"agents","name":"bot","flaggedAt":"2030-01-01T00:00:00Z","suspended":true}],
        "tools":[{"namespace":"team-a","name":"pay","toolsSeen":["b","a"]}]}"#;
    let r: UsageReport = serde_json::from_str(text).expect("parses");
    assert_eq!(r.clients[0].denials["rate_limited"], 1);
    assert_eq!(r.clients[0].tools["get_balance"], 2);
    assert_eq!(validate(&mut r.clone()), Ok(0));
    let again: UsageReport =
        serde_json::from_value(serde_json::to_value(&r).expect("ser")).expect("de");
    assert_eq!(again, r);
    let mut bad = r.clone();
    bad.pod.clear();
    assert!(validate(&mut bad).is_err());
}
