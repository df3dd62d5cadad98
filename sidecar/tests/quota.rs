//! The quota engine on a manual clock: bursts, refill, daily rollover at UTC midnight,
//! atomicity across limits, reloads, runaway detection, and the HTTP answers.

mod quota_support;

use futures::executor::block_on;
use mcp_warden_policy::RuleSet;
use mcp_warden_sidecar::quota::{
    LimitKind, QUOTA_UNAVAILABLE_CODE, QuotaConfig, QuotaOutcome, Quotas, RATE_LIMITED_CODE,
    Unavailable,
};
use prometheus::{Encoder, Registry, TextEncoder};
use quota_support::*;
use serde_json::{Value, json};
use std::time::Duration;

fn engine() -> (Quotas, Registry) {
    let registry = Registry::new();
    let quotas = Quotas::new(QuotaConfig::default(), &registry).expect("metrics register");
    (quotas, registry)
}

fn call(
    q: &Quotas,
    rules: &RuleSet,
    who: &str,
    pol: &str,
    tool: &str,
    clock: &Clock,
) -> QuotaOutcome {
    block_on(q.check(rules, &client_ref(who), &policy_ref(pol), tool, clock.now()))
}

/// The refusing limit, or `None` when allowed.
fn refused_by(o: &QuotaOutcome) -> Option<LimitKind> {
    match o {
        QuotaOutcome::Allowed(_) => None,
        QuotaOutcome::Limited(l) => Some(l.reason),
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn remaining(o: &QuotaOutcome, kind: LimitKind) -> u64 {
    match o {
        QuotaOutcome::Allowed(a) => {
            a.limits
                .iter()
                .find(|l| l.kind == kind)
                .unwrap_or_else(|| panic!("{kind:?} not among {:?}", a.limits))
                .remaining
        }
        other => panic!("not allowed: {other:?}"),
    }
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encodes");
    String::from_utf8(out).expect("utf-8")
}

const NOON: &str = "2026-11-24T12:00:00Z";

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

fn runaway_rules(suspend: bool, cleared_at: Option<&str>) -> RuleSet {
    let annotations: Vec<(&str, &str)> = cleared_at
        .map(|at| vec![("mcpwarden.io/runaway-cleared-at", at)])
        .unwrap_or_default();
    rules(
        tool(&[("a", None)], None),
        vec![
            // One call per second, 30 back to back.
            client(
                "bot",
                json!({"rateLimit": rate(60, "1m", 30), "suspendOnRunaway": suspend}),
                &annotations,
            ),
        ],
        vec![policy("p", &["bot"], &["a"], None, None)],
    )
}

/// Drives `bot` at `per_second` calls for `seconds`; returns (allowed, refused, first second
/// at which it was flagged).
fn drive(
    q: &Quotas,
    rules: &RuleSet,
    clock: &mut Clock,
    per_second: u32,
    seconds: u32,
) -> (u32, u32, Option<u32>) {
    let (mut ok, mut refused, mut flagged) = (0, 0, None);
    let step = Duration::from_secs(1) / per_second;
    for s in 0..seconds {
        for _ in 0..per_second {
            match call(q, rules, "bot", "p", "a", clock) {
                QuotaOutcome::Allowed(_) => ok += 1,
                _ => refused += 1,
            }
            clock.advance(step);
        }
        if flagged.is_none() && !q.runaway_flags(clock.now()).is_empty() {
            flagged = Some(s + 1);
        }
    }
    (ok, refused, flagged)
}

#[test]
fn a_spike_inside_the_burst_is_never_flagged_nor_a_short_one_past_it() {
    let rules = runaway_rules(true, None);
    let (q, _) = engine();
    let mut clock = Clock::at(NOON);
    // 30 calls at once every 30 s for 10 minutes: always inside the burst.
    for _ in 0..20 {
        let (ok, refused, flagged) = drive(&q, &rules, &mut clock, 30, 1);
        assert_eq!((ok, refused, flagged), (30, 0, None));
        clock.advance(Duration::from_secs(29));
    }
    // After a quiet spell, a 3-second storm far past the burst: 95% refused, at least
    // `min_calls`, but not sustained over the window.
    clock.advance(Duration::from_secs(120));
    let (ok, refused, flagged) = drive(&q, &rules, &mut clock, 200, 3);
    assert!(
        f64::from(refused) > 0.9 * f64::from(ok + refused),
        "{ok} / {refused}"
    );
    assert_eq!(flagged, None);
    let (_, _, flagged) = drive(&q, &rules, &mut clock, 1, 120);
    assert_eq!(flagged, None);
    assert!(q.runaway_flags(clock.now()).is_empty());
}

#[test]
fn a_sustained_runaway_is_flagged_suspended_and_cleared_by_a_person() {
    let rules = runaway_rules(true, None);
    let (q, registry) = engine();
    q.update(&rules);
    let mut clock = Clock::at(NOON);
    // 20 calls per second against one per second: 95% refused once the burst is gone.
    let (_, _, flagged) = drive(&q, &rules, &mut clock, 20, 58);
    assert_eq!(flagged, None, "not before the refusals span the window");
    let (_, _, flagged) = drive(&q, &rules, &mut clock, 20, 30);
    let at = flagged.expect("flagged once the window is sustained");
    assert!(at <= 5, "flagged {at} s into the second stretch");
    let flags = q.runaway_flags(clock.now());
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].client, client_ref("bot"));
    assert!(flags[0].suspended);
    let since = flags[0].since;

    // Suspended: even an hour later, when its rate would allow it.
    clock.advance(Duration::from_secs(3600));
    let o = call(&q, &rules, "bot", "p", "a", &clock);
    let QuotaOutcome::Suspended(s) = &o else {
        panic!("suspended, got {o:?}")
    };
    assert_eq!(s.since, since);
    let answer = o.http_answer(&json!(7)).expect("refused");
    assert_eq!(answer.status, 429);
    assert!(answer.headers.is_empty(), "no Retry-After for a suspension");
    assert_eq!(answer.body["error"]["data"]["reason"], "runaway");
    let text = metrics_text(&registry);
    assert!(
        text.contains(
            r#"mcp_warden_quota_runaway_flagged{kind="McpClient",name="agents/bot",suspended="true"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"mcp_warden_quota_decisions_total{kind="McpClient",name="agents/bot",reason="runaway"} "#),
        "{text}"
    );

    // A clearance older than the flag does not lift it; a newer one does.
    let before = (since - jiff::SignedDuration::from_secs(1)).to_string();
    let stale = runaway_rules(true, Some(&before));
    q.update(&stale);
    assert!(matches!(
        call(&q, &stale, "bot", "p", "a", &clock),
        QuotaOutcome::Suspended(_)
    ));
    let cleared = runaway_rules(true, Some(&clock.now().to_string()));
    q.update(&cleared);
    assert!(q.runaway_flags(clock.now()).is_empty());
    assert!(call(&q, &cleared, "bot", "p", "a", &clock).is_allowed());
    assert!(!metrics_text(&registry).contains("mcp_warden_quota_runaway_flagged{"));
}

#[test]
fn without_suspension_the_flag_is_reported_and_lifts_after_a_quiet_window() {
    let rules = runaway_rules(false, None);
    let (q, _) = engine();
    let mut clock = Clock::at(NOON);
    let (_, _, flagged) = drive(&q, &rules, &mut clock, 20, 75);
    assert!(flagged.is_some());
    assert!(!q.runaway_flags(clock.now())[0].suspended);
    // Not suspended: its calls are judged by its limits only.
    clock.advance(Duration::from_secs(30));
    assert!(call(&q, &rules, "bot", "p", "a", &clock).is_allowed());
    clock.advance(Duration::from_secs(60));
    assert!(q.runaway_flags(clock.now()).is_empty());
}

#[test]
fn http_answers_for_the_proxy() {
    let rules = rules(
        tool(&[("a", None)], None),
        vec![client(
            "bot",
            json!({"rateLimit": rate(2, "3s", 1), "dailyCalls": 10}),
            &[],
        )],
        vec![policy("p", &["bot"], &["a"], None, None)],
    );
    let (q, registry) = engine();
    let clock = Clock::at(NOON);
    let allowed = call(&q, &rules, "bot", "p", "a", &clock);
    assert_eq!(allowed.http_answer(&json!(1)), None);
    let headers = allowed.allowed_headers();
    assert_eq!(
        headers[0].1,
        "\"client_rate\";r=0;t=2, \"client_daily\";r=9;t=43200"
    );
    assert_eq!(
        headers[1].1,
        "\"client_rate\";q=2;w=3, \"client_daily\";q=10;w=86400"
    );

    let limited = call(&q, &rules, "bot", "p", "a", &clock);
    let answer = limited.http_answer(&json!("req-7")).expect("refused");
    assert_eq!(answer.status, 429);
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header("retry-after").as_deref(),
        Some("2"),
        "1.5 s rounded up"
    );
    assert_eq!(
        header("ratelimit").as_deref(),
        Some("\"client_rate\";r=0;t=2")
    );
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some("\"client_rate\";q=2;w=3")
    );
    assert_eq!(
        answer.body,
        json!({
            "jsonrpc": "2.0",
            "id": "req-7",
            "error": {
                "code": RATE_LIMITED_CODE,
                "message": "Rate limited by client_rate of McpClient/agents/bot: retry after 2 s",
                "data": {
                    "reason": "client_rate",
                    "limit": {"kind": "McpClient", "namespace": "agents", "name": "bot"},
                    "tool": "a",
                    "retryAfterMs": 1500,
                    "remaining": 9,
                },
            },
        })
    );
    assert!(!(-32768..=-32000).contains(&RATE_LIMITED_CODE));

    let tool_error = limited.tool_error_answer(&json!(3)).expect("refused");
    assert_eq!(tool_error.status, 200);
    assert_eq!(tool_error.body["result"]["isError"], true);
    assert_eq!(
        tool_error.body["result"]["_meta"]["mcpwarden.io/quota"]["retryAfterMs"],
        1500
    );
    assert!(
        tool_error.body["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("retry after 2 s")
    );

    let unavailable = QuotaOutcome::Unavailable(Unavailable {
        retry_after: Duration::from_millis(300),
    });
    let answer = unavailable.http_answer(&Value::Null).expect("refused");
    assert_eq!(answer.status, 503);
    assert_eq!(answer.headers[0].1, "1");
    assert_eq!(answer.body["error"]["code"], QUOTA_UNAVAILABLE_CODE);
    assert_eq!(answer.body["error"]["data"]["reason"], "quota_unavailable");
    assert_eq!(answer.body["id"], Value::Null);

    let text = metrics_text(&registry);
    for line in [
        r#"mcp_warden_quota_decisions_total{kind="McpClient",name="agents/bot",reason="allowed"} 1"#,
        r#"mcp_warden_quota_decisions_total{kind="McpClient",name="agents/bot",reason="client_rate"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn series_of_deleted_crs_are_removed() {
    let with = rules(
        tool(&[("a", None)], None),
        vec![
            client("bot", json!(null), &[]),
            client("gone", json!(null), &[]),
        ],
        vec![policy("p", &["bot", "gone"], &["a"], None, None)],
    );
    let without = rules(
        tool(&[("a", None)], None),
        vec![client("bot", json!(null), &[])],
        vec![policy("p", &["bot"], &["a"], None, None)],
    );
    let (q, registry) = engine();
    let clock = Clock::at(NOON);
    q.update(&with);
    assert!(call(&q, &with, "gone", "p", "a", &clock).is_allowed());
    assert!(metrics_text(&registry).contains(r#"name="agents/gone""#));
    q.update(&without);
    assert!(!metrics_text(&registry).contains(r#"name="agents/gone""#));
}

#[test]
fn the_engine_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Quotas>();
}

#[test]
fn only_tools_call_counts_and_mrtr_rounds_by_configuration() {
    let (q, _) = engine();
    assert!(q.counts("tools/call", false));
    assert!(q.counts("tools/call", true));
    for method in [
        "initialize",
        "ping",
        "tools/list",
        "notifications/initialized",
        "notifications/cancelled",
        "GET",
        "DELETE",
    ] {
        assert!(!q.counts(method, false), "{method}");
    }
    let q = Quotas::new(
        QuotaConfig {
            count_mrtr_retries: false,
            ..QuotaConfig::default()
        },
        &Registry::new(),
    )
    .unwrap();
    assert!(q.counts("tools/call", false));
    assert!(!q.counts("tools/call", true));
}

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

#[test]
fn resources_prompts_and_completions_count_and_subscriptions_and_lists_do_not() {
    let (q, _) = engine();
    for method in ["resources/read", "prompts/get", "completion/complete"] {
        assert!(q.counts(method, false), "{method}");
    }
    for method in [
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "subscriptions/listen",
    ] {
        assert!(!q.counts(method, false), "{method}");
    }
}

/// The quota tool with resource and prompt entries (undeclared ones allowed).
fn tool_with_resources() -> mcp_warden_crds::McpTool {
    let mut t = serde_json::to_value(tool(&[("echo", None)], Some(rate(100, "1h", 100))))
        .expect("serializes");
    t["spec"]["resources"] = json!([
        {"uri": "file:///docs/*", "rateLimit": rate(2, "1h", 2)},
        {"uri": "file:///free/*"},
    ]);
    t["spec"]["defaultResourceAction"] = json!("Allow");
    t["spec"]["prompts"] = json!([{"name": "summarize"}]);
    t["spec"]["defaultPromptAction"] = json!("Allow");
    serde_json::from_value(t).expect("a valid McpTool")
}

#[test]
fn resources_and_prompts_count_by_entry_pattern_with_the_entrys_rate() {
    use mcp_warden_policy::Capability::{Prompt, Resource, Tool};
    let rules = rules(
        tool_with_resources(),
        vec![
            client("a", json!({"rateLimit": rate(4, "1h", 4)}), &[]),
            client("b", json!(null), &[]),
        ],
        vec![policy(
            "p",
            &["a", "b"],
            &["*"],
            Some(rate(2, "1h", 2)),
            None,
        )],
    );
    let (q, _) = engine();
    let clock = Clock::at(NOON);
    let use_ = |who: &str, capability, name: &str| {
        block_on(q.check_use(
            &rules,
            &client_ref(who),
            &policy_ref("p"),
            capability,
            name,
            clock.now(),
        ))
    };
    // The entry's own rate, all callers together, whatever URI under it.
    assert_eq!(refused_by(&use_("b", Resource, "file:///docs/1")), None);
    assert_eq!(refused_by(&use_("a", Resource, "file:///docs/2")), None);
    let QuotaOutcome::Limited(l) = use_("b", Resource, "file:///docs/3") else {
        panic!("the entry's rate")
    };
    assert_eq!(l.reason, LimitKind::ToolRate);
    assert_eq!(
        l.tool, "resource:file:///docs/*",
        "keyed by the entry's pattern"
    );
    // Undeclared URIs share one counter: the policy's per client × key rate is spent after 2
    // reads of 2 different URIs, so invented URIs make no new counters.
    assert_eq!(refused_by(&use_("b", Resource, "file:///x/1")), None);
    assert_eq!(refused_by(&use_("b", Resource, "file:///x/2")), None);
    let QuotaOutcome::Limited(l) = use_("b", Resource, "file:///x/3") else {
        panic!("the policy's rate")
    };
    assert_eq!(
        (l.reason, l.tool.as_str()),
        (LimitKind::PolicyRate, "resource:*")
    );
    // A prompt has its own key: the resource's counters are not the prompt's.
    assert_eq!(refused_by(&use_("b", Prompt, "summarize")), None);
    // The client's own rate counts every use: a tool call, a resource read and a prompt (a's
    // docs read above was its first).
    assert_eq!(refused_by(&use_("a", Tool, "echo")), None);
    assert_eq!(refused_by(&use_("a", Resource, "file:///free/1")), None);
    assert_eq!(refused_by(&use_("a", Prompt, "summarize")), None);
    assert_eq!(
        refused_by(&use_("a", Prompt, "other")),
        Some(LimitKind::ClientRate)
    );
}
