//! Concurrent checks, first calls and reloads racing.

use super::*;

#[test]
fn concurrent_checks_never_exceed_a_budget() {
    let rules = rules(
        tool(&[("a", Some(rate(1, "1h", 1000)))], None),
        (0..4)
            .map(|i| client(&format!("c{i}"), json!({"dailyCalls": 100}), &[]))
            .collect(),
        vec![policy(
            "p",
            &["c0", "c1", "c2", "c3"],
            &["a"],
            Some(rate(1, "1h", 60)),
            None,
        )],
    );
    let (q, _) = engine();
    let clock = Clock::at(NOON);
    let allowed: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (q, rules) = (&q, &rules);
                s.spawn(move || {
                    let who = format!("c{}", t % 4);
                    (0..200)
                        .filter(|_| call(q, rules, &who, "p", "a", &clock).is_allowed())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each client: 2 threads × 200 calls against a per client × tool burst of 60.
    for c in 0..4 {
        assert_eq!(allowed[c] + allowed[c + 4], 60);
    }
}

#[test]
fn a_clients_state_and_series_start_with_its_first_call_and_outlive_reloads() {
    let with_idle = rules(
        tool(&[("a", None)], None),
        vec![
            client("bot", json!({"dailyCalls": 3}), &[]),
            client("idle", json!({"dailyCalls": 3}), &[]),
        ],
        vec![policy("p", &["bot", "idle"], &["a"], None, None)],
    );
    let (q, registry) = engine();
    let clock = Clock::at(NOON);
    q.update(&with_idle);
    assert!(
        !metrics_text(&registry).contains("mcp_warden_quota_decisions_total"),
        "no series before any call"
    );
    assert!(call(&q, &with_idle, "bot", "p", "a", &clock).is_allowed());
    let text = metrics_text(&registry);
    assert!(text.contains(
        r#"mcp_warden_quota_decisions_total{kind="McpClient",name="agents/bot",reason="allowed"} 1"#
    ));
    assert!(
        !text.contains("agents/idle"),
        "a client that never called has no series"
    );
    // Reloads (the same rules, then without the idle client) keep the count and the series.
    q.update(&with_idle);
    assert!(call(&q, &with_idle, "bot", "p", "a", &clock).is_allowed());
    let without_idle = rules(
        tool(&[("a", None)], None),
        vec![client("bot", json!({"dailyCalls": 3}), &[])],
        vec![policy("p", &["bot"], &["a"], None, None)],
    );
    q.update(&without_idle);
    let third = call(&q, &without_idle, "bot", "p", "a", &clock);
    assert_eq!(remaining(&third, LimitKind::ClientDaily), 0);
    assert_eq!(
        refused_by(&call(&q, &without_idle, "bot", "p", "a", &clock)),
        Some(LimitKind::ClientDaily)
    );
    assert!(metrics_text(&registry).contains(
        r#"mcp_warden_quota_decisions_total{kind="McpClient",name="agents/bot",reason="allowed"} 3"#
    ));
}

#[test]
fn first_calls_racing_reloads_lose_no_count() {
    // Every round: fresh clients make their first calls while the rules are reinstalled; a
    // state created in an Index that a reload had already copied would be lost, and its
    // client allowed past its budget.
    let names: Vec<String> = (0..16).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let rules = rules(
        tool(&[("a", None)], None),
        names
            .iter()
            .map(|n| client(n, json!({"dailyCalls": 5}), &[]))
            .collect(),
        vec![policy("p", &refs, &["a"], None, None)],
    );
    let clock = Clock::at(NOON);
    for _ in 0..20 {
        let (q, _) = engine();
        q.update(&rules);
        let allowed: Vec<usize> = std::thread::scope(|s| {
            let reloads = s.spawn(|| {
                for _ in 0..50 {
                    q.update(&rules);
                }
            });
            let callers: Vec<_> = names
                .iter()
                .map(|who| {
                    let (q, rules) = (&q, &rules);
                    s.spawn(move || {
                        (0..10)
                            .filter(|_| call(q, rules, who, "p", "a", &clock).is_allowed())
                            .count()
                    })
                })
                .collect();
            reloads.join().unwrap();
            callers.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(allowed.iter().all(|&n| n == 5), "{allowed:?}");
    }
}
