//! The official MCP conformance suite, run directly against an upstream and through the
//! sidecar in front of it: the results must be identical scenario by scenario, except that the
//! sidecar must make `dns-rebinding-protection` pass where the upstream does not check Host.
//!
//! Upstreams: our fixture (`tests/peers/fixture_server.py`, Python SDK, every scenario for the
//! 2025-11-25 and 2026-07-28 revisions) and the official `server-everything`.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{Proc, peer_file, repo_root, server_everything};
use mcp_warden_tests::procs::sidecar;
use serde_json::Value;
use std::{collections::BTreeMap, process::Command, time::Duration};

fn fixture() -> (Proc, String) {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/fixture_server.py"))
        .arg("0");
    Proc::spawn("fixture", cmd, Duration::from_secs(60), |line| {
        line.strip_prefix("READY ").map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs one suite; returns `scenario:check` → status (`SUCCESS`, `FAILURE`, `WARNING`, …).
fn run(mode: &str, url: &str, suite: &str, upstream: &str) -> BTreeMap<String, String> {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("bash")
        .arg(repo_root().join("tests/conformance/run.sh"))
        .args([mode, url, suite])
        .env("OUT", out.path())
        .env("UPSTREAM", upstream)
        .env("RUN_TIMEOUT", "300")
        .status()
        .expect("bash runs");
    let summary = std::fs::read_to_string(out.path().join("summary.json"))
        .unwrap_or_else(|_| panic!("{mode} run of suite {suite} wrote no summary (exit {status})"));
    let summary: Value = serde_json::from_str(&summary).unwrap();
    let details = summary["details"]
        .as_object()
        .expect("summary.json has details");
    details
        .iter()
        .flat_map(|(scenario, d)| {
            d["checks"]
                .as_object()
                .into_iter()
                .flatten()
                .map(move |(check, status)| {
                    (
                        format!("{scenario}:{check}"),
                        status.as_str().unwrap_or("?").to_owned(),
                    )
                })
        })
        .collect()
}

fn through_sidecar(upstream_url: &str) -> (Proc, String) {
    let (proc, addrs) = sidecar(&[
        "--config",
        repo_root()
            .join("tests/fixtures/configs/conformance.yaml")
            .to_str()
            .unwrap(),
        "--upstream",
        upstream_url,
        "--anonymous-client",
        "test/conformance-runner",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    // The suite's DNS-rebinding check needs a localhost URL.
    let url = format!("{}/mcp", addrs.base.replace("127.0.0.1", "localhost"));
    (proc, url)
}

/// Checks allowed to differ through the sidecar, with why. Both are unscored checks of the
/// 2026-07-28 tasks extension: the sidecar answers a `tasks/*` call naming a task id it never saw
/// created for this caller with `-32602 Unknown task` before the upstream sees it (task ids are
/// bound to their creator, TASK-02), where the fixture answers `-32601` because the caller did not
/// declare the extension or called the removed `tasks/result`.
const KNOWN_DIFFERENCES: &[&str] = &[
    "tasks-capability-negotiation:sep-2663-tasks-methods-non-declaring",
    "tasks-dispatch-and-envelope:sep-2663-tasks-result-removed-method-not-found",
];

/// Every check must have the same status through the sidecar, except checks of the scenarios in
/// `must_pass`, which must succeed through the sidecar whatever they did directly.
fn compare(
    direct: &BTreeMap<String, String>,
    proxied: &BTreeMap<String, String>,
    must_pass: &[&str],
) {
    assert!(!direct.is_empty(), "the suite ran no check");
    let mut differences = Vec::new();
    for (name, status) in direct
        .iter()
        .filter(|(n, _)| !KNOWN_DIFFERENCES.contains(&n.as_str()))
    {
        let via = proxied.get(name).map(String::as_str);
        let scenario = name.split(':').next().unwrap_or_default();
        let expected = if must_pass.contains(&scenario) {
            "SUCCESS"
        } else {
            status.as_str()
        };
        if via != Some(expected) {
            differences.push(format!(
                "{name}: direct {status}, through the sidecar {via:?}, expected {expected}"
            ));
        }
    }
    for name in proxied.keys().filter(|n| !direct.contains_key(*n)) {
        differences.push(format!("{name}: only in the proxied run"));
    }
    assert!(
        differences.is_empty(),
        "conformance differs through the sidecar:\n{}",
        differences.join("\n")
    );
}

#[test]
fn fixture_all_revisions_identical_through_the_sidecar() {
    let (_fixture, upstream) = fixture();
    let (_sidecar, proxy) = through_sidecar(&upstream);
    let direct_url = upstream.replace("127.0.0.1", "localhost");
    for suite in ["0.1.16", "20251125", "20260728"] {
        let direct = run("direct", &direct_url, suite, "fixture");
        let failing: Vec<_> = direct
            .iter()
            .filter(|(_, s)| !matches!(s.as_str(), "SUCCESS" | "INFO" | "SKIPPED"))
            .collect();
        assert!(
            failing.is_empty() && direct.len() > 30,
            "suite {suite}: the fixture passes every check directly: {failing:?}"
        );
        let proxied = run("proxy", &proxy, suite, "fixture");
        compare(&direct, &proxied, &[]);
    }
}

#[test]
fn server_everything_identical_except_what_the_sidecar_fixes() {
    let (_everything, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let (_sidecar, proxy) = through_sidecar(&upstream);
    let direct_url = upstream.replace("127.0.0.1", "localhost");
    for suite in ["0.1.16", "20251125"] {
        let direct = run("direct", &direct_url, suite, "everything");
        assert!(
            direct
                .iter()
                .any(|(k, s)| k.starts_with("dns-rebinding-protection:") && s == "FAILURE"),
            "server-everything does not check Host, so the check fails directly"
        );
        let proxied = run("proxy", &proxy, suite, "everything");
        // The sidecar checks Host/Origin itself, and forgets a session after its DELETE (404
        // for it afterwards, where server-everything answers 400).
        compare(
            &direct,
            &proxied,
            &["dns-rebinding-protection", "server-session-lifecycle"],
        );
    }
}
