//! The HTTP answers, metric series, and what counts.

use super::*;

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
