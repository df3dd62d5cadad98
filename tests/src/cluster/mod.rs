//! A real Kubernetes control plane for the cluster suite (`tests/tests/cluster/`): etcd,
//! kube-apiserver (RBAC, ServiceAccount issuer, admission webhooks, audit log) and
//! kube-controller-manager on 127.0.0.1, started by `scripts/control-plane.sh` from the binaries
//! `scripts/k8s-bins.sh` builds (`make k8s-bins`, run by `make test`), and driven with the real
//! `kubectl` and `helm` CLIs.
//!
//! ```text
//! ControlPlane::start ──► scripts/k8s-bins.sh --check (fails saying `make k8s-bins` when cold)
//!                    └──► scripts/control-plane.sh start <tmp> (CP_OWNER_PID = this process:
//!                          a detached watcher stops it if the test run is killed)
//! kubectl / helm ───────► admin client certificate (system:masters), HELM_* homes under <tmp>
//!                          (control_plane.rs)
//! HostOperator ─────────► `mcp-warden-operator <the chart Deployment's args>` on the host, with
//!                          a kubeconfig holding a TokenRequest token of the chart's ServiceAccount
//!                          (host_operator.rs)
//! audit() (audit_log.rs) ► <tmp>/logs/audit.log: every request a ServiceAccount made, its verb,
//!                          resource, response code and token id (which replica made it)
//! Drop ─────────────────► scripts/control-plane.sh stop <tmp> (host operators first), rm <tmp>
//! ```
//!
//! Every command and wait is bounded; a missing tool fails with what to run or install.

use crate::{
    procs::{Proc, free_port, workspace_bin},
    repo_root,
};
use base64::Engine as _;
use serde_json::Value;
use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Proxy variables kept out of every child: the API server would send webhook calls through
/// them, kubectl and curl their requests to 127.0.0.1.
pub const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The longest any single kubectl, helm or curl command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` (stdin closed) for at most `timeout`; its output, or an error saying it hung.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?} (killed)"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stdout of a successful `output`, else an error with the command's stdout and stderr.
fn success(what: &str, output: Output) -> Result<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what} failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes; the error names `what`
/// and the last thing `f` saw (its `Err`).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let end = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() > end {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}{}",
                if last.is_empty() {
                    String::new()
                } else {
                    format!("; last error: {last}")
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `scripts/k8s-bins.sh --check`: the bin dir when the version-stamped cache is complete.
pub fn k8s_bins() -> Result<PathBuf, String> {
    let script = repo_root().join("scripts/k8s-bins.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg("--check");
    let out = run_bounded(cmd, Duration::from_secs(30))?;
    if !out.status.success() {
        return Err(format!(
            "the real control plane's binaries are not built: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for tool in ["curl", "openssl"] {
        if Command::new(tool).arg("--version").output().is_err()
            && Command::new(tool).arg("version").output().is_err()
        {
            return Err(format!(
                "`{tool}` is not on PATH: install it (apt-get install {tool}); the control plane \
                 and the cluster suite use it"
            ));
        }
    }
    Ok(dir)
}

/// A table printed by `kubectl get` (tabwriter-aligned), as rows of header → cell; empty cells
/// are kept (cells are cut at the headers' columns).
pub fn parse_table(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (Vec::new(), Vec::new());
    };
    let mut starts = Vec::new();
    let mut names = Vec::new();
    let bytes = header.as_bytes();
    for (i, c) in header.char_indices() {
        if c != ' ' && (i == 0 || bytes[i - 1] == b' ') {
            starts.push(i);
        }
    }
    for (k, &s) in starts.iter().enumerate() {
        let e = starts.get(k + 1).copied().unwrap_or(header.len());
        names.push(header[s..e].trim().to_owned());
    }
    let rows = lines
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let s = starts[k].min(line.len());
                    let e = starts
                        .get(k + 1)
                        .copied()
                        .unwrap_or(line.len())
                        .min(line.len());
                    let cell = if k + 1 == names.len() {
                        &line[s..]
                    } else {
                        &line[s..e]
                    };
                    (name.clone(), cell.trim().to_owned())
                })
                .collect()
        })
        .collect();
    (names, rows)
}

/// `GET url` (plain HTTP, loopback): status and body.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let mut response = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// `curl` to an operator's HTTPS endpoint by its Service DNS name (`host`), resolved to `addr`
/// (`127.0.0.1:PORT`), trusting only `ca`: the chart's certificate and SANs are what is checked.
/// `extra` are more curl arguments (method, headers, body). Returns the HTTP status and body.
pub fn curl_https(
    host: &str,
    addr: &str,
    ca: &Path,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String), String> {
    let port = addr.rsplit(':').next().unwrap_or_default();
    let mut cmd = Command::new("curl");
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{host}:{port}:127.0.0.1"),
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"));
    let out = run_bounded(cmd, Duration::from_secs(20))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && text.trim().is_empty() {
        return Err(format!(
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let code = code
        .trim()
        .parse()
        .map_err(|_| format!("curl: no status in {text:?}"))?;
    Ok((code, body.to_owned()))
}

mod audit_log;
mod control_plane;
mod host_operator;

pub use audit_log::{AuditEvent, token_credential_id};
pub use control_plane::ControlPlane;
pub use host_operator::{HostOperator, OperatorLaunch, operator_bin};
