//! Bursts, refill, daily rollover, atomicity across limits, per-tool caps, reloads.

use super::*;

#[test]
fn client_burst_then_refill_at_the_sustained_rate() {
    // 60 per minute = one per second, 5 back to back.
    let rules = rules(
        tool(&[("get_balance", None)], None),
        vec![client("bot", json!({"rateLimit": rate(60, "1m", 5)}), &[])],
        vec![policy("read", &["bot"], &["*"], None, None)],
    );
    let (q, _) = engine();
    let mut clock = Clock::at(NOON);
    for left in (0..5).rev() {
        let o = call(&q, &rules, "bot", "read", "get_balance", &clock);
        assert_eq!(remaining(&o, LimitKind::ClientRate), left);
    }
    let QuotaOutcome::Limited(limited) = call(&q, &rules, "bot", "read", "get_balance", &clock)
    else {
        panic!("the 6th call in the same instant must be limited");
    };
    assert_eq!(limited.reason, LimitKind::ClientRate);
    assert_eq!(*limited.limit, client_ref("bot"));
    assert_eq!(limited.retry_after, Duration::from_secs(1));
    assert_eq!(limited.remaining, None, "no daily budget applies");

    clock.advance(Duration::from_millis(999));
    assert!(refused_by(&call(&q, &rules, "bot", "read", "get_balance", &clock)).is_some());
    clock.advance(Duration::from_millis(1));
    let o = call(&q, &rules, "bot", "read", "get_balance", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientRate), 0);
    // A full refill takes burst × 1 s from the last conforming call.
    clock.advance(Duration::from_secs(5));
    let o = call(&q, &rules, "bot", "read", "get_balance", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientRate), 4);
    let headers = o.allowed_headers();
    assert_eq!(headers[0].0, "ratelimit");
    assert_eq!(headers[0].1, "\"client_rate\";r=4;t=1");
    assert_eq!(headers[1].0, "ratelimit-policy");
    assert_eq!(headers[1].1, "\"client_rate\";q=60;w=60");
}

#[test]
fn daily_budgets_roll_over_exactly_at_utc_midnight() {
    let rules = rules(
        tool(&[("refund", None)], None),
        vec![client("bot", json!({"dailyCalls": 3}), &[])],
        vec![policy("pay", &["bot"], &["refund"], None, Some(2))],
    );
    let (q, _) = engine();
    let mut clock = Clock::at("2026-11-24T23:59:59.998Z");
    let o = call(&q, &rules, "bot", "pay", "refund", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientDaily), 2);
    assert_eq!(remaining(&o, LimitKind::PolicyDaily), 1);
    let o = call(&q, &rules, "bot", "pay", "refund", &clock);
    assert_eq!(remaining(&o, LimitKind::PolicyDaily), 0);
    let QuotaOutcome::Allowed(a) = &o else {
        unreachable!()
    };
    assert_eq!(a.daily_remaining(), Some(0));

    // The client × tool budget is spent; the client's own budget still has one call.
    let QuotaOutcome::Limited(l) = call(&q, &rules, "bot", "pay", "refund", &clock) else {
        panic!("policy daily quota spent")
    };
    assert_eq!(l.reason, LimitKind::PolicyDaily);
    assert_eq!(*l.limit, policy_ref("pay"));
    assert_eq!(l.remaining, Some(0));
    assert_eq!(
        l.retry_after,
        Duration::from_millis(2),
        "until UTC midnight"
    );

    clock.advance(Duration::from_millis(1)); // 23:59:59.999
    assert_eq!(
        refused_by(&call(&q, &rules, "bot", "pay", "refund", &clock)),
        Some(LimitKind::PolicyDaily)
    );
    clock.advance(Duration::from_millis(1)); // 00:00:00.000: a new UTC day
    let o = call(&q, &rules, "bot", "pay", "refund", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientDaily), 2);
    assert_eq!(remaining(&o, LimitKind::PolicyDaily), 1);
    let QuotaOutcome::Allowed(a) = &o else {
        unreachable!()
    };
    let daily = a
        .limits
        .iter()
        .find(|l| l.kind == LimitKind::ClientDaily)
        .unwrap();
    assert_eq!(daily.reset, Duration::from_secs(86_400));
}

#[test]
fn a_call_refused_by_one_limit_consumes_nothing_from_the_others() {
    // Per client × tool: 2 back to back (one per hour after); client: 5 a day; tool `a` for
    // everybody: 10 back to back.
    let rules = rules(
        tool(
            &[
                ("a", Some(rate(1, "1h", 10))),
                ("b", None),
                ("c", Some(rate(1, "1h", 1))),
            ],
            None,
        ),
        vec![
            client("bot", json!({"dailyCalls": 5}), &[]),
            client("other", json!({"dailyCalls": 5}), &[]),
        ],
        vec![policy(
            "p",
            &["bot", "other"],
            &["a", "b", "c"],
            Some(rate(1, "1h", 2)),
            None,
        )],
    );
    let (q, _) = engine();
    let clock = Clock::at(NOON);
    assert_eq!(refused_by(&call(&q, &rules, "bot", "p", "a", &clock)), None);
    let o = call(&q, &rules, "bot", "p", "a", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientDaily), 3);
    assert_eq!(remaining(&o, LimitKind::ToolRate), 8);
    for _ in 0..20 {
        assert_eq!(
            refused_by(&call(&q, &rules, "bot", "p", "a", &clock)),
            Some(LimitKind::PolicyRate)
        );
    }
    // Twenty refusals later: the client's daily budget and tool a's cap are untouched.
    let o = call(&q, &rules, "other", "p", "a", &clock);
    assert_eq!(
        remaining(&o, LimitKind::ToolRate),
        7,
        "only 3 calls went through"
    );
    let o = call(&q, &rules, "bot", "p", "b", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientDaily), 2);

    // Refused by the per-tool cap (spent by `bot`): `other`'s budget stays whole.
    assert_eq!(refused_by(&call(&q, &rules, "bot", "p", "c", &clock)), None);
    for _ in 0..5 {
        assert_eq!(
            refused_by(&call(&q, &rules, "other", "p", "c", &clock)),
            Some(LimitKind::ToolRate)
        );
    }
    let o = call(&q, &rules, "other", "p", "b", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientDaily), 3, "5 - a - b");
    let o = call(&q, &rules, "bot", "p", "b", &clock);
    assert_eq!(remaining(&o, LimitKind::ClientDaily), 0);
    assert_eq!(
        refused_by(&call(&q, &rules, "bot", "p", "b", &clock)),
        Some(LimitKind::ClientDaily)
    );
}

#[test]
fn when_several_limits_refuse_the_longest_wait_is_reported() {
    let rules = rules(
        tool(&[("a", None)], None),
        vec![client(
            "bot",
            json!({"rateLimit": rate(1, "1s", 1), "dailyCalls": 1}),
            &[],
        )],
        vec![policy("p", &["bot"], &["a"], Some(rate(1, "1m", 1)), None)],
    );
    let (q, _) = engine();
    let clock = Clock::at("2026-11-24T23:00:00Z");
    assert_eq!(refused_by(&call(&q, &rules, "bot", "p", "a", &clock)), None);
    let QuotaOutcome::Limited(l) = call(&q, &rules, "bot", "p", "a", &clock) else {
        panic!("limited")
    };
    assert_eq!(l.reason, LimitKind::ClientDaily);
    assert_eq!(l.retry_after, Duration::from_secs(3600));
}

#[test]
fn per_tool_caps_apply_to_all_callers_and_an_entry_overrides_the_tool_wide_rate() {
    let rules = rules(
        tool(
            &[("special", Some(rate(1, "1h", 3))), ("plain", None)],
            Some(rate(1, "1h", 2)),
        ),
        vec![client("a", json!(null), &[]), client("b", json!(null), &[])],
        vec![policy("p", &["a", "b"], &["*"], None, None)],
    );
    let (q, _) = engine();
    let clock = Clock::at(NOON);
    let order = ["a", "b", "a", "b"];
    let plain: Vec<_> = order
        .iter()
        .map(|c| refused_by(&call(&q, &rules, c, "p", "plain", &clock)))
        .collect();
    assert_eq!(
        plain,
        [
            None,
            None,
            Some(LimitKind::ToolRate),
            Some(LimitKind::ToolRate)
        ]
    );
    let special: Vec<_> = order
        .iter()
        .map(|c| refused_by(&call(&q, &rules, c, "p", "special", &clock)))
        .collect();
    assert_eq!(special, [None, None, None, Some(LimitKind::ToolRate)]);
    // An undeclared tool (defaultAction Allow) gets the tool-wide rate, on its own counter.
    let other: Vec<_> = order
        .iter()
        .map(|c| refused_by(&call(&q, &rules, c, "p", "undeclared", &clock)))
        .collect();
    assert_eq!(
        other,
        [
            None,
            None,
            Some(LimitKind::ToolRate),
            Some(LimitKind::ToolRate)
        ]
    );
    let QuotaOutcome::Limited(l) = call(&q, &rules, "a", "p", "plain", &clock) else {
        panic!()
    };
    assert_eq!(*l.limit, tool_ref());
}

#[test]
fn a_reload_keeps_unchanged_limits_and_restarts_changed_ones() {
    let make = |client_rate: Value, extra_client: bool| {
        let mut clients = vec![client(
            "bot",
            json!({"rateLimit": client_rate, "dailyCalls": 100}),
            &[],
        )];
        if extra_client {
            clients.push(client("new", json!(null), &[]));
        }
        rules(
            tool(&[("a", None)], None),
            clients,
            vec![policy("p", &["bot"], &["a"], Some(rate(1, "1h", 3)), None)],
        )
    };
    let v1 = make(rate(1, "1h", 10), false);
    let (q, _) = engine();
    q.update(&v1);
    let clock = Clock::at(NOON);
    for _ in 0..3 {
        assert_eq!(refused_by(&call(&q, &v1, "bot", "p", "a", &clock)), None);
    }
    // Another client appears: nothing about `bot` changed, so its state is kept.
    let v2 = make(rate(1, "1h", 10), true);
    assert_ne!(v1.version, v2.version);
    q.update(&v2);
    assert_eq!(
        refused_by(&call(&q, &v2, "bot", "p", "a", &clock)),
        Some(LimitKind::PolicyRate),
        "the policy's counter survived the reload"
    );
    // The client's rate changes: it starts afresh; the daily count is kept.
    let v3b = rules(
        tool(&[("a", None), ("b", None)], None),
        vec![client(
            "bot",
            json!({"rateLimit": rate(1, "1h", 20), "dailyCalls": 100}),
            &[],
        )],
        vec![policy("p", &["bot"], &["*"], Some(rate(1, "1h", 3)), None)],
    );
    q.update(&v3b);
    let o = call(&q, &v3b, "bot", "p", "b", &clock);
    assert_eq!(
        remaining(&o, LimitKind::ClientRate),
        19,
        "new definition, full burst"
    );
    assert_eq!(
        remaining(&o, LimitKind::ClientDaily),
        96,
        "calls made today still count"
    );
}
