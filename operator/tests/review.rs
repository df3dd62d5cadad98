//! Access reviews: the report over `examples/` (payments + everything) with a status snapshot
//! and a fixed clock, against golden files in each format (`REFRESH_GOLDEN=1` rewrites them);
//! the real binary prints the same CSV; `review approve` on kube-fake-client records the review
//! and moves `reviewDue`; a real `POST /v1/usage` with per-tool counts reaches
//! `status.toolUsage`, which the report then reads from the cluster.
//!
//! The real suite (`tests/tests/cluster/`) cannot show: the report at a fixed clock against golden
//! files, and does not show `approve --dry-run`, approve's refusals or `status.toolUsage`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use jiff::Timestamp;
use kube::Api;
use mcp_warden_crds::{ClientPhase, McpClient};
use mcp_warden_operator::{
    clock::ManualClock,
    push::{self, AllowAll, Extensions, PushSettings},
    review::{
        Flag, ReviewError,
        approve::{Approval, approve},
        build,
        render::{Format, render},
        source,
    },
    status,
    usage::UsageEndpoint,
};
use mcp_warden_test_support::{eventually_await, repo_root};
use serde_json::json;
use std::{path::PathBuf, sync::Arc, time::Duration};
use support::{Leadership, Operator, create, create_pod, fake_cluster};

const NOW: &str = "2026-12-10T12:00:00Z";

fn examples() -> Vec<PathBuf> {
    vec![
        repo_root().join("examples/payments"),
        repo_root().join("examples/everything"),
    ]
}

fn snapshot() -> PathBuf {
    repo_root().join("operator/tests/fixtures/review/status.yaml")
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn golden(name: &str) -> PathBuf {
    repo_root().join("operator/tests/golden/review").join(name)
}

/// Compares with the golden file, or rewrites it with `REFRESH_GOLDEN=1`.
fn check_golden(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("REFRESH_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        eprintln!("REFRESH_GOLDEN=1: rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (REFRESH_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {}; if the change is intended, rerun with REFRESH_GOLDEN=1.\n--- actual ---\n{actual}",
        path.display()
    );
}

#[test]
fn report_over_the_examples_matches_the_golden_files() {
    let (inventory, unmatched) = source::from_files(&examples(), Some(&snapshot())).unwrap();
    assert!(unmatched.is_empty(), "{unmatched:?}");
    let report = build(&inventory, None, t(NOW));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let client = |ns: &str, name: &str| {
        report
            .clients
            .iter()
            .find(|c| c.namespace == ns && c.name == name)
            .unwrap_or_else(|| panic!("{ns}/{name} in the report"))
    };
    // Every flag, on the client the fixture sets it up for.
    let finance = client("agents", "finance-agent");
    assert_eq!(finance.phase, ClientPhase::Suspended, "runaway-suspended");
    assert_eq!(
        finance.flags,
        vec![
            Flag::Suspended,
            Flag::ReviewOverdue,
            Flag::Runaway,
            Flag::UnusedGrants
        ]
    );
    assert_eq!(
        finance.unused_grants,
        vec![
            "payments/payments-api/get_transaction",
            "payments/payments-api/resource:payments://statements/{merchantId}/{month}"
        ],
        "refund_* is used through refund_full; list_transactions 10 days ago; no statement read"
    );
    let refunds = finance
        .grants
        .iter()
        .find(|g| g.tool == "payments/payments-api/refund_*")
        .unwrap();
    assert_eq!(refunds.policy, "payments/finance-refunds");
    assert_eq!(refunds.scopes, vec!["payments:finance", "payments:write"]);
    assert_eq!(refunds.last_used, Some(t("2026-12-10T11:59:30Z")));
    assert_eq!(
        client("agents", "legacy-reporting").flags,
        vec![Flag::Expired, Flag::ReviewOverdue, Flag::UnusedGrants]
    );
    assert_eq!(
        client("agents", "ops-copilot").flags,
        vec![Flag::Suspended, Flag::ReviewOverdue, Flag::UnusedGrants]
    );
    // Audit-only grants allow nothing, so they are never "unused grants".
    assert_eq!(
        client("agents", "analytics-agent").flags,
        vec![Flag::NeverUsed]
    );
    let support = client("agents", "support-bot");
    assert_eq!(support.flags, vec![Flag::UnusedGrants]);
    assert_eq!(
        support.unused_grants,
        vec!["payments/payments-api/get_transaction"]
    );
    // Undeclared tools (defaultAction Deny) are granted to nobody, even when seen upstream.
    let alpha = client("demo", "agent-alpha");
    assert!(
        alpha
            .grants
            .iter()
            .all(|g| !g.tool.ends_with("simulate-research-query")),
        "{:?}",
        alpha.grants
    );
    assert!(
        alpha
            .grants
            .iter()
            .any(|g| g.tool == "demo/everything/toggle-logging"),
        "toolsSeen names are listed when a grant covers them"
    );

    // Resources and prompts are reviewed like tools: listed per grant, unused ones flagged.
    let beta = client("demo", "agent-beta");
    let doc = "demo/everything/resource:demo://resource/static/document/";
    assert!(
        beta.grants
            .iter()
            .any(|g| g.kind == "resource" && g.tool == format!("{doc}instructions.md")),
        "{:?}",
        beta.grants
    );
    assert!(
        beta.unused_grants
            .contains(&"demo/everything/prompt:simple-prompt".to_owned()),
        "{:?}",
        beta.unused_grants
    );
    assert!(
        !beta
            .grants
            .iter()
            .any(|g| g.tool == format!("{doc}architecture.md")),
        "agent-beta is not granted the design notes"
    );
    let alpha = client("demo", "agent-alpha");
    let public = alpha
        .grants
        .iter()
        .find(|g| g.tool == format!("{doc}*"))
        .expect("agent-alpha's demo://* covers the public documents' entry");
    assert_eq!(public.last_used, Some(t("2026-12-10T09:00:00Z")));
    assert!(!alpha.unused_grants.contains(&format!("{doc}*")));
    assert!(
        alpha
            .unused_grants
            .contains(&format!("{doc}architecture.md")),
        "{:?}",
        alpha.unused_grants
    );
    assert!(
        !alpha
            .unused_grants
            .contains(&"demo/everything/prompt:simple-prompt".to_owned()),
        "used 9 days ago"
    );

    check_golden("report.md", &render(&report, Format::Markdown));
    check_golden("report.csv", &render(&report, Format::Csv));
    check_golden("report.json", &render(&report, Format::Json));
    // JSON: a stable schema, every field present.
    let json: serde_json::Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    assert_eq!(json["schemaVersion"], 1);
    assert_eq!(json["clients"][0]["lastSeen"], serde_json::Value::Null);
    // CSV: RFC 4180 records, CRLF-terminated, one per client plus the header.
    let csv = render(&report, Format::Csv);
    assert_eq!(csv.matches("\r\n").count(), report.clients.len() + 1);
}

#[test]
fn the_binary_prints_the_golden_csv() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-warden-operator"))
        .args(["review", "report", "--from-files"])
        .arg(&examples()[0])
        .arg("--from-files")
        .arg(&examples()[1])
        .arg("--status")
        .arg(snapshot())
        .args(["--now", NOW, "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string(golden("report.csv")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    // Bad input: a clear error and exit code 2, no panic.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-warden-operator"))
        .args(["review", "report", "--from-files"])
        .arg(&examples()[0])
        .args(["--now", "yesterday"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--now \"yesterday\" is not an RFC 3339 time"),
        "{stderr}"
    );
}

fn example_text() -> String {
    [
        "payments/tool.yaml",
        "payments/clients.yaml",
        "payments/policies.yaml",
    ]
    .iter()
    .map(|f| std::fs::read_to_string(repo_root().join("examples").join(f)).unwrap())
    .collect::<Vec<_>>()
    .join("\n---\n")
}

#[tokio::test]
async fn approve_records_the_review_and_moves_review_due() {
    let (client, _) = fake_cluster().await;
    create(&client, &example_text()).await;
    create(
        &client,
        r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: no-cadence, namespace: agents}
spec: {owner: me, identity: {issuer: "https://idp.example.com", clientId: no-cadence}}
"#,
    )
    .await;
    let api = Api::<McpClient>::namespaced(client.clone(), "agents");
    let now = t(NOW);
    let before = api.get("finance-agent").await.unwrap();
    let due_before = status::client_status(&before, None, None, now);
    assert_eq!(due_before.phase, Some(ClientPhase::ReviewOverdue));
    assert_eq!(
        due_before.review_due.map(|t| t.0),
        Some(t("2026-12-03T14:30:00Z"))
    );

    let approval = Approval::new(
        "agents",
        "finance-agent",
        "carol@example.com",
        t("2026-12-10T11:00:00Z"),
        now,
    )
    .unwrap();
    // --dry-run writes nothing.
    approve(&client, &approval, true).await.unwrap();
    assert_eq!(api.get("finance-agent").await.unwrap().spec, before.spec);

    let stored = approve(&client, &approval, false).await.unwrap();
    let again = api.get("finance-agent").await.unwrap();
    assert_eq!(again.spec, stored.spec);
    let review = again.spec.review.as_ref().unwrap();
    assert_eq!(
        review.last_reviewed_at.as_ref().map(|t| t.0),
        Some(t("2026-12-10T11:00:00Z"))
    );
    assert_eq!(
        review.last_reviewed_by.as_deref(),
        Some("carol@example.com")
    );
    assert_eq!(review.interval_days, 30, "the cadence is left alone");
    assert!(review.enforce, "enforce is left alone");
    assert_eq!(again.spec.owner, before.spec.owner);
    // The operator's status computation now shows the review current, due 30 days on.
    let after = status::client_status(&again, None, None, now);
    assert_eq!(after.phase, Some(ClientPhase::Active));
    assert_eq!(
        after.review_due.map(|t| t.0),
        Some(t("2027-01-09T11:00:00Z"))
    );

    // Refusals: a missing client, a client without cadence, bad values.
    let ghost = Approval::new("agents", "ghost", "carol", now, now).unwrap();
    let err = approve(&client, &ghost, false).await.unwrap_err();
    assert!(matches!(err, ReviewError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("McpClient agents/ghost not found"));
    let none = Approval::new("agents", "no-cadence", "carol", now, now).unwrap();
    let err = approve(&client, &none, false).await.unwrap_err();
    assert!(
        err.to_string().contains("set spec.review.intervalDays"),
        "{err}"
    );
    assert!(Approval::new("agents", "x", "  ", now, now).is_err());
    assert!(
        Approval::new("agents", "x", "carol", t("2026-12-11T00:00:00Z"), now).is_err(),
        "a review in the future is refused"
    );
}

async fn post(port: u16, path: &str, body: serde_json::Value) -> (StatusCode, String) {
    support::http(port, http::Method::POST, path, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tool_usage_reaches_status_and_the_cluster_report() {
    let (client, _) = fake_cluster().await;
    create(&client, &example_text()).await;
    create_pod(
        &client,
        "payments",
        "payments-mcp-0",
        &[("app", "payments-mcp")],
    )
    .await;
    let clock = Arc::new(ManualClock::new(t(NOW)));
    let op = Operator::start(&client, clock.clone(), Leadership::Always).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let usage = UsageEndpoint {
        store: op.usage.clone(),
        authorizer: Arc::new(AllowAll),
        clock: clock.clone(),
        metrics: None,
        leading: None,
    };
    let server = tokio::spawn(push::serve_with(
        listener,
        op.index.clone(),
        PushSettings {
            heartbeat: Duration::from_secs(10),
            labels_from_query: false,
        },
        Arc::new(AllowAll),
        Extensions {
            tls: None,
            usage: Some(Arc::new(usage)),
            ..Extensions::default()
        },
        std::future::pending(),
    ));
    let report = json!({"namespace": "payments", "pod": "payments-mcp-0", "bootId": "b", "seq": 1,
        "clients": [{"namespace": "agents", "name": "support-bot", "calls": 5,
                     "lastSeen": "2026-12-10T11:59:00Z",
                     "tools": {"get_balance": 3, "list_transactions": 2}}]});
    let (code, body) = post(port, "/v1/usage", report).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let bad = json!({"namespace": "payments", "pod": "payments-mcp-0", "bootId": "b", "seq": 2,
        "clients": [{"namespace": "agents", "name": "support-bot", "tools": {"": 1}}]});
    // One malformed entry is dropped, not the report.
    let (code, body) = post(port, "/v1/usage", bad).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert!(body.contains(r#""dropped":1"#), "{body}");

    let api = Api::<McpClient>::namespaced(client.clone(), "agents");
    let bot = eventually_await("toolUsage in status", Duration::from_secs(10), || async {
        api.get("support-bot")
            .await
            .unwrap()
            .status
            .filter(|s| !s.tool_usage.is_empty())
    })
    .await;
    let usage: Vec<(String, u64, Option<Timestamp>)> = bot
        .tool_usage
        .iter()
        .map(|u| {
            (
                u.tool.clone(),
                u.calls_24h,
                u.last_used.as_ref().map(|t| t.0),
            )
        })
        .collect();
    let seen = Some(t("2026-12-10T11:59:00Z"));
    assert_eq!(
        usage,
        vec![
            ("payments/payments-api/get_balance".into(), 3, seen),
            ("payments/payments-api/list_transactions".into(), 2, seen),
        ]
    );
    assert_eq!(bot.calls_24h, Some(5));

    // `kubectl get mcpclients -o wide`: every printer column reads a field the operator writes
    // (EXPIRES is spec.expiresAt, which support-bot does not set).
    let object = serde_json::to_value(api.get("support-bot").await.unwrap()).unwrap();
    let crd = <McpClient as kube::CustomResourceExt>::crd();
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap();
    assert_eq!(columns.len(), 8);
    for c in columns.iter().filter(|c| c.json_path != ".spec.expiresAt") {
        let value = c
            .json_path
            .trim_start_matches('.')
            .split('.')
            .fold(&object, |v, f| &v[f]);
        assert!(
            !value.is_null() && value != &json!([]),
            "column {} ({}) is empty: {object}",
            c.name,
            c.json_path
        );
    }

    // The report, read from the cluster, sees it: get_transaction is the one unused grant.
    let inventory = source::from_cluster(&client, Some("agents")).await.unwrap();
    let report = build(&inventory, Some("agents"), t(NOW));
    let support = report
        .clients
        .iter()
        .find(|c| c.name == "support-bot")
        .unwrap();
    assert_eq!(
        support.unused_grants,
        vec!["payments/payments-api/get_transaction"]
    );
    assert!(!support.flags.contains(&Flag::NeverUsed));
    assert_eq!(report.clients.len(), 5, "the agents namespace only");
    server.abort();
    op.stop().await;
}
