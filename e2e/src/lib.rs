//! Real-cluster end-to-end tests: the chart installed from the current kube context (kind, k3d
//! or any cluster), an MCP server injected, calls through the sidecar. Run with `make e2e`; see
//! `docs/e2e.md`.
//!
//! ```text
//! kube context? ── none ──► skip, saying how to make one (`kind create cluster`)
//!      │ yes
//!      ▼
//! images (docker build --target operator|sidecar; kind load / k3d image import)
//!      ▼
//! helm upgrade --install charts/mcp-warden (helm CLI, else helm-python-sdk) ──► rollout ready
//!      ▼
//! kubectl apply examples/ + e2e/manifests (server-everything, agent SA, CRs) ──► pod injected
//!      ▼
//! kubectl port-forward pod :9080 ──► MCP session with `kubectl create token` ──► allowed
//! kubectl patch McpClient suspended=true ──► denied within 1 s; kubectl get mcpclients columns
//! ```
//!
//! This module holds the cluster plumbing (kubectl, helm, images, port-forward); the scenario is
//! in `tests/cluster.rs`.

#![forbid(unsafe_code)]

use mcp_warden_test_support::{Proc, free_port, peer_file, repo_root};
use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

/// The release name and namespace the tests install into (the install contract's defaults).
pub const RELEASE: &str = "mcp-warden";
/// See [`RELEASE`].
pub const NAMESPACE: &str = "mcp-warden";

/// The current kube context; `Ok(None)` when none is configured (the tests then skip), an error
/// when a kubeconfig exists but kubectl is missing.
pub fn kube_context() -> Result<Option<String>, String> {
    let out = match Command::new("kubectl")
        .args(["config", "current-context"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let kubeconfig = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
                || home.is_some_and(|h| h.join(".kube/config").is_file());
            return if kubeconfig {
                Err(format!(
                    "a kubeconfig exists but kubectl cannot run ({e}): install kubectl"
                ))
            } else {
                Ok(None)
            };
        }
    };
    let context = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok((out.status.success() && !context.is_empty()).then_some(context))
}

/// Why `make e2e` fails when there is no cluster: what to set up.
pub const NO_CLUSTER: &str = "e2e needs a cluster and there is no kube context: create one with `kind create cluster` \
     (or k3d, or point KUBECONFIG at any cluster), then run `make e2e`; see docs/e2e.md";

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd`; its stdout, or an error carrying the command and its output.
pub fn run(mut cmd: Command) -> Result<String, String> {
    let what = describe(&cmd);
    eprintln!("+ {what}");
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what} failed ({status}):\n{stdout}{}",
            String::from_utf8_lossy(&stderr)
        ))
    }
}

/// `kubectl <args>`.
pub fn kubectl(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("kubectl");
    cmd.args(args);
    run(cmd)
}

/// `kubectl apply -f -` with `yaml` on stdin.
pub fn apply(yaml: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("mcp-warden-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("apply.yaml");
    std::fs::write(&file, yaml).map_err(|e| e.to_string())?;
    kubectl(&["apply", "-f", &file.to_string_lossy()])
}

/// Image references and whether to build them.
#[derive(Debug, Clone)]
pub struct Images {
    /// The operator image, `repository:tag`.
    pub operator: (String, String),
    /// The sidecar image, `repository:tag`.
    pub sidecar: (String, String),
}

impl Images {
    /// `MCP_WARDEN_E2E_TAG` (default `e2e`) on the chart's repositories.
    pub fn from_env() -> Self {
        let tag = std::env::var("MCP_WARDEN_E2E_TAG").unwrap_or_else(|_| "e2e".into());
        Self {
            operator: ("ghcr.io/mcp-warden/mcp-warden-operator".into(), tag.clone()),
            sidecar: ("ghcr.io/mcp-warden/mcp-warden-sidecar".into(), tag),
        }
    }

    /// Builds both images from the repository's Dockerfile and loads them into a kind or k3d
    /// cluster (other clusters must pull them: push them yourself and set
    /// `MCP_WARDEN_E2E_BUILD=0`).
    pub fn build_and_load(&self, context: &str) -> Result<(), String> {
        if std::env::var("MCP_WARDEN_E2E_BUILD").is_ok_and(|v| v == "0") {
            eprintln!("MCP_WARDEN_E2E_BUILD=0: using images already available to the cluster");
            return Ok(());
        }
        for (target, (repo, tag)) in [("operator", &self.operator), ("sidecar", &self.sidecar)] {
            let image = format!("{repo}:{tag}");
            let mut build = Command::new("docker");
            build
                .args(["build", "--target", target, "-t", &image, "."])
                .current_dir(repo_root());
            run(build).map_err(|e| {
                format!("{e}\n(building the images needs docker; or load them yourself and set MCP_WARDEN_E2E_BUILD=0)")
            })?;
            if let Some(cluster) = context.strip_prefix("kind-") {
                let mut load = Command::new("kind");
                load.args(["load", "docker-image", &image, "--name", cluster]);
                run(load)?;
            } else if let Some(cluster) = context.strip_prefix("k3d-") {
                let mut load = Command::new("k3d");
                load.args(["image", "import", &image, "-c", cluster]);
                run(load)?;
            } else {
                eprintln!(
                    "context {context} is neither kind nor k3d: {image} must be pullable by the cluster"
                );
            }
        }
        Ok(())
    }
}

/// Installs or upgrades the chart with `values` (JSON), with the helm CLI when on PATH, else
/// with helm-python-sdk; then waits for the operator's rollout.
pub fn helm_install(values: &serde_json::Value) -> Result<(), String> {
    let chart = repo_root().join("charts/mcp-warden");
    let values_file =
        std::env::temp_dir().join(format!("mcp-warden-e2e-values-{}.json", std::process::id()));
    std::fs::write(&values_file, values.to_string()).map_err(|e| e.to_string())?;
    let has_helm = Command::new("helm")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_helm {
        let mut cmd = Command::new("helm");
        cmd.args(["upgrade", "--install", RELEASE])
            .arg(&chart)
            .args(["--namespace", NAMESPACE, "--create-namespace", "-f"])
            .arg(&values_file);
        run(cmd)?;
    } else {
        let python = peer_file("PEERS_PYTHON")
            .map_err(|e| format!("no helm CLI and no helm-python-sdk: install helm, or {e}"))?;
        let mut cmd = Command::new(python);
        cmd.arg(repo_root().join("tests/peers/helm/install.py"))
            .arg(&chart)
            .args([RELEASE, NAMESPACE, &values.to_string()])
            .current_dir(repo_root());
        run(cmd)?;
    }
    kubectl(&[
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        "deployment/mcp-warden-operator",
        "--timeout=180s",
    ])
    .map(|_| ())
}

/// `kubectl port-forward` to a pod's port on a free 127.0.0.1 port; killed when dropped.
pub fn port_forward(namespace: &str, pod: &str, port: u16) -> Result<(Proc, u16), String> {
    let local = free_port();
    let mut cmd = Command::new("kubectl");
    cmd.args([
        "-n",
        namespace,
        "port-forward",
        "--address",
        "127.0.0.1",
        &format!("pod/{pod}"),
        &format!("{local}:{port}"),
    ]);
    let (proc, ()) = Proc::spawn(
        "kubectl port-forward",
        cmd,
        Duration::from_secs(30),
        |line| line.starts_with("Forwarding from").then_some(()),
    )?;
    Ok((proc, local))
}

/// The cluster's ServiceAccount token issuer (`iss` of `kubectl create token`).
pub fn service_account_issuer() -> Result<String, String> {
    let raw = kubectl(&["get", "--raw", "/.well-known/openid-configuration"])?;
    let doc: serde_json::Value = serde_json::from_str(&raw).map_err(|e| format!("{e}: {raw}"))?;
    doc["issuer"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no issuer in {raw}"))
}

/// A file of the repository, as text.
pub fn repo_file(path: &str) -> Result<String, String> {
    let p = repo_root().join(path);
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", Path::new(path).display()))
}
