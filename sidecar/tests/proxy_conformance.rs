//! The official conformance suite (`@modelcontextprotocol/conformance` 0.1.16, server mode)
//! through the in-process proxy in front of server-everything, with the reference's baseline
//! for proxied runs: identical to the direct run except `dns-rebinding-protection`, which must
//! pass through the proxy (HTTP-02).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use mcp_warden_test_support::{peer, repo_root, server_everything};
use proxy_support::*;
use std::{process::Stdio, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_0_1_16_through_the_proxy_matches_the_baseline() {
    let node = peer("PEERS_NODE22");
    let suite = peer("PEERS_CONFORMANCE_JS");
    let baseline =
        repo_root().join("tests/peers/reference/mcp-peers/expected-failures-0.1.16-via-proxy.yml");
    assert!(baseline.exists(), "{} is missing", baseline.display());
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let rules = allowing_everything();
    let proxy = Proxy::start(settings(&everything_url, "demo/agent-alpha"), Some(rules)).await;
    let url = format!("http://localhost:{}/mcp", proxy.addr.port());
    let output_dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(node)
        .arg(suite)
        .args(["server", "--url", &url, "--expected-failures"])
        .arg(&baseline)
        .arg("-o")
        .arg(output_dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the suite finishes within 4 minutes")
        .expect("the suite runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.rsplit("=== SUMMARY ===").next().unwrap_or(&stdout);
    assert!(
        output.status.success(),
        "conformance through the proxy differs from the baseline:\n{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("dns-rebinding-protection"), "{summary}");
}

/// The demo's rules, with the suite's tokenless principal (agent-alpha) allowed everything
/// (reference §11): undeclared tools, resources and prompts allowed and granted, every server
/// request relayed, so that only transport behaviour differs.
fn allowing_everything() -> mcp_warden_sidecar::state::Active {
    everything_rules(|t| {
        t.replace("defaultAction: Deny", "defaultAction: Allow")
            .replace(
                "defaultResourceAction: Deny",
                "defaultResourceAction: Allow",
            )
            .replace("defaultPromptAction: Deny", "defaultPromptAction: Allow")
            .replace(
                "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*]",
                "names: [\"*\"]",
            )
            .replace("resources: [\"demo://*\"]", "resources: [\"*\"]")
            .replace(
                "serverRequests: [Elicitation, Sampling]",
                "serverRequests: [Elicitation, Sampling, Roots]",
            )
    })
}

/// `scenario → (passed, failed)` from a conformance run's `=== SUMMARY ===` block.
fn scenarios(stdout: &str) -> std::collections::BTreeMap<String, (u32, u32)> {
    let summary = stdout.rsplit("=== SUMMARY ===").next().unwrap_or_default();
    summary
        .lines()
        .take_while(|l| !l.starts_with("Total"))
        .filter_map(|l| l.strip_prefix("✓ ").or_else(|| l.strip_prefix("✗ ")))
        .filter_map(|l| {
            let (name, counts) = l.split_once(": ")?;
            let mut numbers = counts
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty());
            Some((
                name.to_owned(),
                (numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?),
            ))
        })
        .collect()
}

async fn run_suite(node: &std::path::Path, suite: &std::path::Path, url: &str) -> String {
    let run = tokio::process::Command::new(node)
        .arg(suite)
        .args(["server", "--url", url, "--requirements", "2025-11-25"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the suite finishes within 4 minutes")
        .expect("the suite runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_0_2_at_2025_11_25_through_the_proxy_equals_the_direct_run() {
    let node = peer("PEERS_NODE22");
    let suite = peer("PEERS_CONFORMANCE_NEXT_JS");
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let rules = allowing_everything();
    let proxy = Proxy::start(settings(&everything_url, "demo/agent-alpha"), Some(rules)).await;
    let direct_url = everything_url.replace("127.0.0.1", "localhost");
    let direct = scenarios(&run_suite(&node, &suite, &direct_url).await);
    let proxied_out = run_suite(
        &node,
        &suite,
        &format!("http://localhost:{}/mcp", proxy.addr.port()),
    )
    .await;
    let proxied = scenarios(&proxied_out);
    assert!(
        direct.len() >= 30,
        "the direct run reported {} scenarios",
        direct.len()
    );
    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        proxied.keys().collect::<Vec<_>>()
    );
    for (name, counts) in &direct {
        // Where the proxy does what server-everything does not: Host/Origin checks, and 404
        // for a session after its DELETE (the proxy forgets it).
        if ["dns-rebinding-protection", "server-session-lifecycle"].contains(&name.as_str()) {
            assert_eq!(
                proxied[name].1, 0,
                "the proxy must pass {name}:\n{proxied_out}"
            );
        } else {
            assert_eq!(
                &proxied[name], counts,
                "{name} differs through the proxy:\n{proxied_out}"
            );
        }
    }
}
