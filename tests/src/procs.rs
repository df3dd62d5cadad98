//! Our own binaries as real processes for black-box tests: the sidecar and the files-mode
//! operator built by the same `cargo test` run, and what their metrics say. The generic pieces
//! (a process killed on drop, free ports, the peers, the IdP) are in `mcp-warden-test-support`.

// Re-exported for tests/src/cluster.rs, tests/tests/cluster/ and tests/tests/oauth_handshake.rs,
// which import them from here; new code imports them from `mcp_warden_test_support`.
use mcp_warden_test_support::try_eventually;
pub use mcp_warden_test_support::{
    Idp, Proc, free_port, oidc_provider, peer_file, server_everything,
};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// A workspace binary (`mcp-warden-sidecar`, `mcp-warden-operator`, …) built by the same
/// `cargo test` run, found next to the test executable's `deps/` folder.
pub fn workspace_bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the test executable has no parent folder")?;
    let bin = dir.join(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p <crate>` first)",
            bin.display()
        ))
    }
}

/// The addresses a running sidecar reported in its `--ready-file`.
#[derive(Debug, Clone)]
pub struct SidecarAddrs {
    /// `http://127.0.0.1:PORT` of the MCP listener.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin endpoints.
    pub admin: String,
}

/// Starts `mcp-warden-sidecar run` with `args` (add `--config`, `--upstream`, …), listening on
/// free loopback ports, and waits for its ready file.
pub fn sidecar(args: &[&str]) -> Result<(Proc, SidecarAddrs), String> {
    sidecar_on("127.0.0.1:0", args)
}

/// Like [`sidecar`], with the MCP listener on `listen` (for a config whose `server.resource`
/// must be the URL clients use, as for clients that check the PRM's `resource`).
pub fn sidecar_on(listen: &str, args: &[&str]) -> Result<(Proc, SidecarAddrs), String> {
    let bin = workspace_bin("mcp-warden-sidecar")?;
    let dir = std::env::temp_dir().join(format!(
        "mcp-warden-sidecar-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ready_file = dir.join("ready.json");
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .args([
            "--listen",
            listen,
            "--admin-listen",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready_file)
        .args(args);
    let (proc, ()) = Proc::spawn("mcp-warden-sidecar", cmd, Duration::from_secs(30), |line| {
        line.contains("listening").then_some(())
    })?;
    let addrs = try_eventually("the sidecar's ready file", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&ready_file).ok()?;
        let v = serde_json::from_str::<serde_json::Value>(&text).ok()?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(|a| format!("http://{a}"))
        };
        Some(SidecarAddrs {
            base: field("listen")?,
            admin: field("admin")?,
        })
    })
    .map_err(|e| format!("{e}; its output:\n{}", proc.log()))?;
    Ok((proc, addrs))
}

/// Starts `mcp-warden-operator run --source files:<dir>` on a free loopback port; returns the
/// process and the push API's base URL.
pub fn operator_files(dir: &Path) -> Result<(Proc, String), String> {
    operator_files_on(dir, 0)
}

/// Like [`operator_files`], on a given port (to restart an operator where sidecars expect it).
pub fn operator_files_on(dir: &Path, port: u16) -> Result<(Proc, String), String> {
    operator_files_with(dir, port, &[])
}

/// Like [`operator_files_on`], with more arguments (`--upstream-identity-key`, …).
pub fn operator_files_with(
    dir: &Path,
    port: u16,
    extra: &[&str],
) -> Result<(Proc, String), String> {
    let bin = workspace_bin("mcp-warden-operator")?;
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--source")
        .arg(format!("files:{}", dir.display()))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--heartbeat-seconds",
            "1",
        ])
        .args(extra);
    let (proc, listen) = Proc::spawn(
        "mcp-warden-operator",
        cmd,
        Duration::from_secs(30),
        |line| {
            line.contains("push API listening")
                .then(|| {
                    line.split("listen=")
                        .nth(1)
                        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
                })
                .flatten()
        },
    )?;
    Ok((proc, format!("http://{listen}")))
}

/// Reads one metric's sample lines (`name{labels} value`) from a sidecar's `/metrics`.
pub fn metric_lines(admin: &str, name: &str) -> Vec<String> {
    let text = ureq::get(format!("{admin}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .map(str::to_owned)
        .collect()
}

/// The bundle version a sidecar enforces (from `mcp_warden_config_info`), if any.
pub fn enforced_version(admin: &str) -> Option<String> {
    metric_lines(admin, "mcp_warden_config_info")
        .iter()
        .find(|l| l.ends_with(" 1"))
        .and_then(|l| l.split("version=\"").nth(1))
        .map(|v| v.split('"').next().unwrap_or_default().to_owned())
}
