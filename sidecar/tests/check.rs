//! `mcp-warden-sidecar check`: the standalone validator users run before deploying a file.

use mcp_warden_test_support::repo_root;
use std::process::Command;

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-warden-sidecar"))
        .arg("check")
        .args(args)
        .output()
        .expect("the sidecar binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_folder_compiles_and_names_its_tool() {
    let dir = repo_root().join("examples/payments");
    let (code, out, err) = check(&["--config", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.starts_with(
            "ok: McpTool/payments/payments-api governs https://payments.example.com/mcp"
        ),
        "{out}"
    );
    assert!(out.contains("version sha256:"), "{out}");
}

#[test]
fn every_error_is_printed_with_its_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: bot, namespace: agents}
spec:
  owner: ""
  identity: {issuer: "https://idp.example.com", clientId: bot}
  quota: {rateLimit: {requests: 0, period: 5 minutes}}
"#,
    )
    .unwrap();
    let (code, out, err) = check(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    for path in [
        "spec.owner",
        "spec.quota.rateLimit.requests",
        "spec.quota.rateLimit.period",
    ] {
        assert!(
            err.contains(&format!("McpClient/agents/bot): {path}: ")),
            "{path} missing in:\n{err}"
        );
    }
}

#[test]
fn a_file_without_a_tool_or_with_two_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tool = |name: &str| {
        format!(
            "---\napiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {{name: {name}}}\nspec:\n  owner: me\n  server: {{resource: 'https://x.example/mcp'}}\n  authentication: {{issuers: [{{issuer: 'https://idp.example'}}]}}\n"
        )
    };
    let file = dir.path().join("two.yaml");
    std::fs::write(&file, tool("a") + &tool("b")).unwrap();
    let (code, _, err) = check(&["--config", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("several McpTools apply to this workload (default/a, default/b)"),
        "{err}"
    );

    let (code, _, err) = check(&[
        "--config",
        file.to_str().unwrap(),
        "--workload",
        "default/pod-1",
        "--labels",
        "app=none",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no McpTool applies"), "{err}");
}
