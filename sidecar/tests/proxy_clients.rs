//! Real MCP clients through the in-process proxy (tokenless test principal agent-beta) in front
//! of server-everything: the Python SDK (`mcp` 2.3.0, legacy and auto era negotiation), the
//! TypeScript SDK v1 and v2, and the Inspector CLI list the caller's tools and call one; a
//! hidden tool surfaces as the unknown-tool error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use mcp_warden_test_support::{peer, repo_root, server_everything};
use proxy_support::*;
use std::{path::Path, process::Stdio, time::Duration};

async fn run(
    program: &Path,
    args: &[&str],
    cwd: Option<&Path>,
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the client finishes within 90 s")
        .expect("the client runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn tools_line(output: &str) -> String {
    output
        .lines()
        .find(|l| l.starts_with("tools:"))
        .unwrap_or_else(|| panic!("no tool list in:\n{output}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_typescript_clients_work_through_the_proxy() {
    let python = peer("PEERS_PYTHON");
    let node = peer("PEERS_NODE22");
    let npm_dir = peer("PEERS_NPM_DIR");
    let reference = repo_root().join("tests/peers/reference/mcp-peers");
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, "demo/agent-beta").await;
    let url = proxy.url();
    let py_client = reference.join("py_client.py");
    let py = py_client.to_str().unwrap();
    for mode in ["legacy", "auto"] {
        let (ok, out) = run(
            &python,
            &[py, &url, "-", "get-sum", r#"{"a":2,"b":3}"#, mode],
            None,
            &[],
        )
        .await;
        assert!(ok, "python {mode}:\n{out}");
        assert_eq!(
            tools_line(&out),
            "tools: ['echo', 'get-sum', 'get-tiny-image']",
            "python {mode}"
        );
        assert!(
            out.contains("The sum of 2 and 3 is 5."),
            "python {mode}:\n{out}"
        );
        let (ok, out) = run(&python, &[py, &url, "-", "get-env", "{}", mode], None, &[]).await;
        assert!(
            !ok && out.contains("code=-32602") && out.contains("Unknown tool: get-env"),
            "python {mode}:\n{out}"
        );
    }
    // ts_client.mjs imports the SDKs, so it runs from the peers' npm folder.
    let script = tempfile::Builder::new()
        .suffix(".mjs")
        .tempfile_in(&npm_dir)
        .unwrap();
    std::fs::copy(reference.join("ts_client.mjs"), script.path()).unwrap();
    let ts = script.path().to_str().unwrap();
    for sdk in ["v1", "v2"] {
        let (ok, out) = run(
            &node,
            &[ts, &url, "-", "get-sum", r#"{"a":2,"b":3}"#],
            Some(&npm_dir),
            &[("SDK", sdk)],
        )
        .await;
        assert!(ok, "ts {sdk}:\n{out}");
        assert!(
            out.contains("tools: echo,get-sum,get-tiny-image"),
            "ts {sdk}:\n{out}"
        );
        assert!(out.contains("The sum of 2 and 3 is 5."), "ts {sdk}:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_cli_lists_and_calls_through_the_proxy() {
    let node = peer("PEERS_NODE22");
    let inspector = peer("PEERS_INSPECTOR_JS");
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::anonymous(&everything_url, "demo/agent-beta").await;
    let url = proxy.url();
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap();
    let inspect = |extra: &'static [&'static str]| {
        let mut args = vec![
            inspector.to_str().unwrap().to_owned(),
            "--cli".into(),
            url.clone(),
            "--transport".into(),
            "http".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let list = inspect(&["--method", "tools/list", "--format", "json", "-q"]);
    let list: Vec<&str> = list.iter().map(String::as_str).collect();
    let (ok, out) = run(&node, &list, None, &[("HOME", home)]).await;
    assert!(ok, "{out}");
    let names: Vec<String> =
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(names, ["echo", "get-sum", "get-tiny-image"]);
    let call = inspect(&[
        "--method",
        "tools/call",
        "--tool-name",
        "get-sum",
        "--tool-arg",
        "a=2",
        "b=3",
        "--format",
        "json",
        "-q",
    ]);
    let call: Vec<&str> = call.iter().map(String::as_str).collect();
    let (ok, out) = run(&node, &call, None, &[("HOME", home)]).await;
    assert!(ok && out.contains("The sum of 2 and 3 is 5."), "{out}");
}
