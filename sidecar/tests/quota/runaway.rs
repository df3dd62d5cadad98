//! Runaway detection: flagged, suspended, cleared by a person, lifted after a quiet window.

use super::*;

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
