//! The whole install on a real cluster (the current kube context): the chart, an injected
//! `server-everything`, `examples/`, calls through the sidecar with a real MCP session, a
//! suspension denied within a second, and the `kubectl get mcpclients` columns.
//!
//! `#[ignore]`: run with `make e2e` (`cargo test -p mcp-warden-e2e -- --ignored`). Without a kube
//! context the test prints how to make one and passes; with one, every step must succeed.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // a panic is how a test reports its failure

use mcp_warden_e2e::{
    Images, NO_CLUSTER, apply, helm_install, kube_context, kubectl, port_forward, repo_file,
    service_account_issuer,
};
use mcp_warden_test_support::{repo_root, try_eventually};
use mcp_warden_tests::{mcp::Session, yaml_files};
use serde_json::json;
use std::time::{Duration, Instant};

const MCP_NS: &str = "e2e-mcp";
const AGENTS_NS: &str = "e2e-agents";
/// The audience the agent's tokens carry (the McpTool's Kubernetes issuer accepts it).
const AUDIENCE: &str = "mcp-warden-e2e";
/// The injected sidecar's MCP port (the contract's default `mcpwarden.io/proxy-port`).
const PROXY_PORT: u16 = 9080;

fn install() -> Result<(), String> {
    let context = kube_context()?.ok_or(NO_CLUSTER)?;
    eprintln!("kube context: {context}");
    let images = Images::from_env();
    images.build_and_load(&context)?;
    // The governed-pod NetworkPolicy is rendered into this namespace: it must exist first.
    apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {MCP_NS}, labels: {{mcpwarden.io/inject: enabled}}}}\n"
    ))?;
    helm_install(&json!({
        "image": {"repository": images.operator.0, "tag": images.operator.1, "pullPolicy": "IfNotPresent"},
        "sidecar": {"image": {"repository": images.sidecar.0, "tag": images.sidecar.1, "pullPolicy": "IfNotPresent"}},
        "networkPolicy": {"namespaces": [MCP_NS]},
    }))
}

/// Applies `examples/` (their namespaces first): the API server accepts them (schema and CEL).
fn apply_examples() -> Result<(), String> {
    for ns in ["payments", "agents", "demo"] {
        apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
        ))?;
    }
    for file in yaml_files(&repo_root().join("examples")) {
        kubectl(&["apply", "-f", &file.to_string_lossy()])?;
    }
    Ok(())
}

fn pod_name() -> Result<String, String> {
    try_eventually(
        "an injected server-everything pod",
        Duration::from_secs(60),
        || {
            kubectl(&[
                "-n",
                MCP_NS,
                "get",
                "pods",
                "-l",
                "app=server-everything",
                "-o",
                "jsonpath={.items[0].metadata.name}",
            ])
            .ok()
            .filter(|n| !n.is_empty())
        },
    )
}

fn token() -> Result<String, String> {
    kubectl(&[
        "-n",
        AGENTS_NS,
        "create",
        "token",
        "e2e-agent",
        "--audience",
        AUDIENCE,
        "--duration",
        "10m",
    ])
    .map(|t| t.trim().to_owned())
}

/// `kubectl patch` the agent's McpClient `spec.suspended`.
fn suspend(suspended: bool) -> Result<String, String> {
    let patch = json!({"spec": {"suspended": suspended}}).to_string();
    kubectl(&[
        "-n",
        AGENTS_NS,
        "patch",
        "mcpclient",
        "e2e-agent",
        "--type",
        "merge",
        "-p",
        &patch,
    ])
}

fn scenario() -> Result<(), String> {
    install()?;
    apply_examples()?;
    let manifest = repo_file("e2e/manifests/server-everything.yaml")?
        .replace("${ISSUER}", &service_account_issuer()?);
    apply(&manifest)?;
    kubectl(&[
        "-n",
        MCP_NS,
        "rollout",
        "status",
        "deployment/server-everything",
        "--timeout=300s",
    ])?;

    // Injected per the contract: the native sidecar first, the governed label.
    let pod = pod_name()?;
    let init = kubectl(&[
        "-n",
        MCP_NS,
        "get",
        "pod",
        &pod,
        "-o",
        "jsonpath={.spec.initContainers[0].name} {.spec.initContainers[0].restartPolicy} {.metadata.labels.mcpwarden\\.io/governed}",
    ])?;
    assert_eq!(
        init.trim(),
        "mcp-warden-sidecar Always true",
        "pod {pod} is not injected as the contract says"
    );

    // A real MCP session through the sidecar, with the agent's ServiceAccount token.
    let (_forward, port) = port_forward(MCP_NS, &pod, PROXY_PORT)?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let token = token()?;
    let mut session = try_eventually(
        "an MCP session through the sidecar",
        Duration::from_secs(60),
        || Session::connect(&url, Some(&token)).ok(),
    )?;
    let listed = session.request("tools/list", json!({}))?;
    let names: Vec<String> = listed
        .body
        .as_ref()
        .and_then(|b| b.pointer("/result/tools"))
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names.len(),
        2,
        "the policy grants echo and get-sum only: {names:?}"
    );
    let echo = session.call_tool("echo", json!({"message": "hello"}))?;
    assert!(echo.is_success(), "echo through the sidecar: {echo:?}");
    let hidden = session.call_tool("get-env", json!({}))?;
    assert!(!hidden.is_success(), "get-env is not granted: {hidden:?}");
    // Without a token: the OAuth challenge.
    assert!(
        Session::connect(&url, None).is_err(),
        "a tokenless caller got a session"
    );

    // Suspend the client: denied within a second.
    // Timed from before `kubectl patch` starts: an upper bound.
    let patched = Instant::now();
    suspend(true)?;
    let denied_after = try_eventually(
        "the suspension to be enforced",
        Duration::from_secs(5),
        || {
            let reply = session
                .call_tool("echo", json!({"message": "again"}))
                .ok()?;
            (!reply.is_success()).then(|| (patched.elapsed(), reply))
        },
    )?;
    eprintln!(
        "suspension enforced after {:?}: {:?}",
        denied_after.0, denied_after.1
    );
    assert!(
        denied_after.0 <= Duration::from_secs(1),
        "suspension took {:?}",
        denied_after.0
    );
    assert_eq!(denied_after.1.status, 403, "{:?}", denied_after.1);

    // The access review columns.
    let table = try_eventually(
        "McpClient status phase Suspended",
        Duration::from_secs(30),
        || {
            kubectl(&["-n", AGENTS_NS, "get", "mcpclients"])
                .ok()
                .filter(|t| t.contains("Suspended"))
        },
    )?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    for column in [
        "NAME",
        "OWNER",
        "PHASE",
        "EXPIRES",
        "REVIEW-DUE",
        "LAST-SEEN",
        "AGE",
    ] {
        assert!(header.contains(&column), "no {column} column in:\n{table}");
    }
    let wide = kubectl(&["-n", AGENTS_NS, "get", "mcpclients", "-o", "wide"])?;
    eprintln!("{table}\n{wide}");

    // Un-suspend, so a re-run starts from the same state.
    suspend(false)?;
    Ok(())
}

#[test]
#[ignore = "needs a Kubernetes cluster: run `make e2e` (docs/e2e.md)"]
fn chart_injection_calls_and_revocation_on_a_real_cluster() {
    match kube_context() {
        Ok(Some(_)) => {}
        // No silent pass: `make e2e` without a cluster fails and says what to set up.
        Ok(None) => panic!("{NO_CLUSTER}"),
        Err(e) => panic!("{e}"),
    }
    if let Err(e) = scenario() {
        panic!("{e}");
    }
}
