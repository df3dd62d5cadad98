//! Operator mode over the real push protocol, with real binaries on loopback: the operator
//! (`--source files`) streams bundles to sidecars (`--operator`), which enforce exactly what a
//! sidecar reading the same files enforces, survive the operator going away, and apply a
//! revocation within a second.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{Proc, eventually, free_port, repo_root, server_everything};
use mcp_warden_tests::{
    mcp::Session,
    procs::{
        SidecarAddrs, enforced_version, metric_lines, operator_files, operator_files_on, sidecar,
    },
};
use serde_json::json;
use std::{
    path::Path,
    time::{Duration, Instant},
};

fn operator_sidecar(
    operator: &str,
    upstream: &str,
    pod: &str,
    app: &str,
    client: &str,
    state: Option<&Path>,
) -> (Proc, SidecarAddrs) {
    let labels = format!("app={app}");
    let mut args = vec![
        "--operator",
        operator,
        "--pod-namespace",
        "demo",
        "--pod-name",
        pod,
        "--pod-labels",
        &labels,
        "--upstream",
        upstream,
        "--anonymous-client",
        client,
        "--operator-idle-timeout-seconds",
        "3",
    ];
    let state = state.map(|s| s.to_str().unwrap().to_owned());
    if let Some(state) = &state {
        args.extend(["--state-dir", state.as_str()]);
    }
    sidecar(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// The outcome class of a tool call: allowed, or the JSON-RPC error code / HTTP status.
fn outcome(session: &mut Session, tool: &str) -> String {
    let reply = session
        .call_tool(tool, json!({"message": "x", "a": 1, "b": 2}))
        .expect("answer");
    if reply.is_success() {
        "allowed".into()
    } else {
        format!("{}/{:?}", reply.status, reply.error_code())
    }
}

#[test]
fn a_sidecar_fed_by_the_operator_enforces_exactly_what_file_mode_does() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let examples = repo_root().join("examples/everything");
    let (_operator, operator) = operator_files(&examples).unwrap_or_else(|e| panic!("{e}"));
    let tools = [
        "echo",
        "get-sum",
        "get-tiny-image",
        "toggle-simulated-logging",
        "simulate-research-query",
        "get-env",
    ];
    for client in ["demo/agent-alpha", "demo/agent-beta"] {
        let (_file, file_addrs) = sidecar(&[
            "--config",
            examples.to_str().unwrap(),
            "--upstream",
            &upstream,
            "--anonymous-client",
            client,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let (_pushed, pushed_addrs) = operator_sidecar(
            &operator,
            &upstream,
            "everything-0",
            "server-everything",
            client,
            None,
        );
        eventually("the pushed bundle", Duration::from_secs(10), || {
            enforced_version(&pushed_addrs.admin).is_some()
        });
        let file_version = enforced_version(&file_addrs.admin).expect("file mode has a version");
        assert_eq!(
            enforced_version(&pushed_addrs.admin),
            Some(file_version),
            "same Bundle version"
        );
        let mut file = Session::connect(&format!("{}/mcp", file_addrs.base), None).unwrap();
        let mut pushed = Session::connect(&format!("{}/mcp", pushed_addrs.base), None).unwrap();
        for tool in tools {
            assert_eq!(
                outcome(&mut file, tool),
                outcome(&mut pushed, tool),
                "{client} calling {tool}"
            );
        }
        let listed = |s: &mut Session| {
            s.request("tools/list", json!({})).unwrap().body.unwrap()["result"]["tools"].clone()
        };
        assert_eq!(
            listed(&mut file),
            listed(&mut pushed),
            "{client}: same tools/list"
        );
    }
}

#[test]
fn each_pod_gets_its_own_bundle_and_a_change_reaches_only_the_affected_one() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml")).unwrap();
    // A second server (other app label) with its own policy for agent-beta only.
    let second = base
        .replace("name: everything\n", "name: second\n")
        .replace("app: server-everything", "app: second");
    let second_tool = second
        .split("\n---\n")
        .find(|d| d.contains("kind: McpTool"))
        .unwrap()
        .to_owned();
    let extra = format!(
        "{second_tool}\n---\napiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {{name: second-beta, namespace: demo}}\nspec:\n  clients: [{{name: agent-beta}}]\n  tools: [{{toolRef: second}}]\n"
    );
    std::fs::write(dir.path().join("a.yaml"), &base).unwrap();
    std::fs::write(dir.path().join("b.yaml"), &extra).unwrap();
    let (_operator, operator) = operator_files(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let (_a, a) = operator_sidecar(
        &operator,
        &upstream,
        "everything-0",
        "server-everything",
        "demo/agent-alpha",
        None,
    );
    let (_b, b) = operator_sidecar(
        &operator,
        &upstream,
        "second-0",
        "second",
        "demo/agent-beta",
        None,
    );
    eventually("both bundles", Duration::from_secs(10), || {
        enforced_version(&a.admin).is_some() && enforced_version(&b.admin).is_some()
    });
    let (va, vb) = (
        enforced_version(&a.admin).unwrap(),
        enforced_version(&b.admin).unwrap(),
    );
    assert_ne!(va, vb, "two pods of two servers get two bundles");

    // Change only the second server's policy: pod b's version changes, pod a's does not.
    std::fs::write(
        dir.path().join("b.yaml"),
        extra.replace("[{name: agent-beta}]", "[{name: agent-alpha}]"),
    )
    .unwrap();
    eventually("b's new bundle", Duration::from_secs(5), || {
        enforced_version(&b.admin).is_some_and(|v| v != vb)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        enforced_version(&a.admin),
        Some(va),
        "a's bundle does not include the second server's policies"
    );
}

#[test]
fn enforcement_survives_the_operator_going_away_and_a_sidecar_restart() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let examples = repo_root().join("examples/everything");
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let (operator, operator_url) =
        operator_files_on(&examples, port).unwrap_or_else(|e| panic!("{e}"));
    let (sidecar1, addrs) = operator_sidecar(
        &operator_url,
        &upstream,
        "everything-0",
        "server-everything",
        "demo/agent-beta",
        Some(state.path()),
    );
    eventually("the first bundle", Duration::from_secs(10), || {
        enforced_version(&addrs.admin).is_some()
    });
    let version = enforced_version(&addrs.admin).unwrap();
    assert!(
        state.path().join("bundle.json").is_file(),
        "the bundle is persisted"
    );

    // The operator dies: the sidecar keeps enforcing the same rules.
    drop(operator);
    let mut session = Session::connect(&format!("{}/mcp", addrs.base), None).unwrap();
    assert_eq!(outcome(&mut session, "echo"), "allowed");
    assert_ne!(
        outcome(&mut session, "toggle-simulated-logging"),
        "allowed",
        "still denied"
    );

    // The sidecar restarts while the operator is down: it enforces the persisted bundle (stale).
    drop(sidecar1);
    let (_sidecar2, addrs2) = operator_sidecar(
        &operator_url,
        &upstream,
        "everything-0",
        "server-everything",
        "demo/agent-beta",
        Some(state.path()),
    );
    assert_eq!(
        enforced_version(&addrs2.admin),
        Some(version.clone()),
        "enforces the persisted bundle at once"
    );
    assert!(
        metric_lines(&addrs2.admin, "mcp_warden_config_stale")
            .iter()
            .any(|l| l.ends_with(" 1")),
        "marked stale"
    );
    let mut session = Session::connect(&format!("{}/mcp", addrs2.base), None).unwrap();
    assert_eq!(outcome(&mut session, "echo"), "allowed");
    assert_ne!(outcome(&mut session, "toggle-simulated-logging"), "allowed");

    // The operator comes back on the same address: the sidecar reconnects and is no longer stale.
    let (_operator2, _) = operator_files_on(&examples, port).unwrap_or_else(|e| panic!("{e}"));
    eventually("reconnection", Duration::from_secs(20), || {
        metric_lines(&addrs2.admin, "mcp_warden_config_stale")
            .iter()
            .any(|l| l.ends_with(" 0"))
    });
    assert_eq!(enforced_version(&addrs2.admin), Some(version));
}

#[test]
fn revocation_through_the_operator_is_enforced_within_a_second() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let active =
        std::fs::read_to_string(repo_root().join("tests/fixtures/configs/revocation.yaml"))
            .unwrap()
            .replace(
                "server: {resource:",
                "server: {selector: {matchLabels: {app: looper}}, resource:",
            );
    let suspended = active.replacen("suspended: false", "suspended: true", 1);
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &active).unwrap();
    let (_operator, operator) = operator_files(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let labels = "app=looper";
    let (_sidecar, addrs) = sidecar(&[
        "--operator",
        &operator,
        "--pod-namespace",
        "test",
        "--pod-name",
        "looper-0",
        "--pod-labels",
        labels,
        "--upstream",
        &upstream,
        "--anonymous-client",
        "test/looper",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    eventually("the first bundle", Duration::from_secs(10), || {
        enforced_version(&addrs.admin).is_some()
    });
    let mut session = Session::connect(&format!("{}/mcp", addrs.base), None).unwrap();
    let mut first = |want_allowed: bool| {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = session
                .call_tool("echo", json!({"message": "hi"}))
                .unwrap()
                .is_success();
            if ok == want_allowed {
                return Instant::now();
            }
            assert!(Instant::now() < end, "no change within 5 s");
        }
    };
    first(true);
    let mut samples = Vec::new();
    for _ in 0..20 {
        std::fs::write(&file, &suspended).unwrap();
        let written = Instant::now();
        samples.push(first(false) - written);
        std::fs::write(&file, &active).unwrap();
        first(true);
    }
    samples.sort();
    println!(
        "revocation through the operator (write → first denial), 20 samples: min {:?}, median {:?}, max {:?}",
        samples[0], samples[10], samples[19]
    );
    assert!(samples[19] < Duration::from_secs(1), "{samples:?}");
}
