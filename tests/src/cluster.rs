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
//! HostOperator ─────────► `mcp-warden-operator <the chart Deployment's args>` on the host, with
//!                          a kubeconfig holding a TokenRequest token of the chart's ServiceAccount
//! audit() ──────────────► <tmp>/logs/audit.log: every request a ServiceAccount made, its verb,
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

/// A running control plane; stopped (with every process recorded in its `pids`) when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    /// Its folder: certificates, kubeconfigs, logs, etcd data.
    pub dir: PathBuf,
    /// kube-apiserver, kubectl, helm, ….
    pub bins: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// How long `scripts/control-plane.sh start` took.
    pub start_time: Duration,
}

impl ControlPlane {
    /// Starts one (10–20 s on 2 cores).
    pub fn start() -> Result<Self, String> {
        let bins = k8s_bins()?;
        let dir = std::env::temp_dir().join(format!(
            "mcp-warden-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/control-plane.sh"))
            .arg("start")
            .arg(&dir)
            .env("K8S_BINS", &bins)
            .env("CP_OWNER_PID", std::process::id().to_string());
        let started = Instant::now();
        let out = run_bounded(cmd, Duration::from_secs(180))?;
        let start_time = started.elapsed();
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!(
                "scripts/control-plane.sh start failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = std::fs::read_to_string(dir.join("env.sh")).map_err(|e| e.to_string())?;
        let url = env
            .lines()
            .find_map(|l| l.strip_prefix("export KUBE_APISERVER_URL="))
            .map(|v| v.trim_matches('\'').to_owned())
            .ok_or("env.sh has no KUBE_APISERVER_URL")?;
        Ok(Self {
            dir,
            bins,
            url,
            start_time,
        })
    }

    /// The admin kubeconfig (client certificate, `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// The cluster CA (signs the API server's serving certificate).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A command for one of the control plane's binaries, as admin, without proxy variables,
    /// with Helm's homes inside the control plane's folder.
    pub fn command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(self.bins.join(bin));
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        let helm = self.dir.join("helm");
        cmd.env("KUBECONFIG", self.admin_kubeconfig())
            .env("HELM_CONFIG_HOME", helm.join("config"))
            .env("HELM_CACHE_HOME", helm.join("cache"))
            .env("HELM_DATA_HOME", helm.join("data"))
            .current_dir(repo_root());
        cmd
    }

    /// `kubectl <args>` as admin; stdout, or an error with the output.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command("kubectl");
        cmd.arg("--request-timeout=30s").args(args);
        let what = format!("kubectl {}", args.join(" "));
        success(&what, run_bounded(cmd, COMMAND_TIMEOUT)?)
    }

    /// `kubectl <args>` that must fail; its stderr (what the user reads).
    pub fn kubectl_refused(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command("kubectl");
        cmd.arg("--request-timeout=30s").args(args);
        let out = run_bounded(cmd, COMMAND_TIMEOUT)?;
        if out.status.success() {
            Err(format!(
                "kubectl {} succeeded, expected a refusal:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            ))
        } else {
            Ok(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `kubectl <args> -o json`, parsed.
    pub fn kubectl_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(&all)?;
        serde_json::from_str(&text).map_err(|e| format!("kubectl {}: {e}", args.join(" ")))
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        let file = self.dir.join(format!("apply-{}.yaml", free_port()));
        std::fs::write(&file, yaml).map_err(|e| e.to_string())?;
        let out = self.kubectl(&["apply", "-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        out
    }

    /// `helm <args>` (Helm v4 CLI) as admin.
    pub fn helm(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.command("helm");
        cmd.args(args);
        let what = format!("helm {}", args.join(" "));
        success(&what, run_bounded(cmd, Duration::from_secs(120))?)
    }

    /// A kubeconfig at `file` whose user is a TokenRequest token (`kubectl create token`) of
    /// ServiceAccount `namespace/name`: its requests are authorized by RBAC as that account.
    /// Returns the token.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        file: &Path,
    ) -> Result<String, String> {
        let token = self
            .kubectl(&["create", "token", name, "-n", namespace, "--duration=2h"])?
            .trim()
            .to_owned();
        let ca = std::fs::read(self.ca_cert()).map_err(|e| e.to_string())?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\n\
             contexts:\n- name: {name}@local\n  context:\n    cluster: local\n    user: {name}\n\
             current-context: {name}@local\n",
            self.url,
            base64::engine::general_purpose::STANDARD.encode(ca),
        );
        std::fs::write(file, kubeconfig).map_err(|e| e.to_string())?;
        Ok(token)
    }

    /// Records a process started by the test so `stop` (and the watcher of a killed run) stops
    /// it with the control plane. Its command line must contain [`Self::dir`].
    pub fn adopt(&self, name: &str, pid: u32) {
        use std::io::Write as _;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("pids"))
        {
            let _ = writeln!(f, "{name} {pid}");
        }
    }

    /// Every audit event so far (requests by ServiceAccounts outside kube-system; Metadata
    /// level, `ResponseComplete` stage).
    pub fn audit(&self) -> Vec<AuditEvent> {
        let text = std::fs::read_to_string(self.dir.join("logs/audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["stage"] == "ResponseComplete")
            .map(|e| AuditEvent::from_json(&e))
            .collect()
    }

    /// The last lines of a control-plane log (`kube-apiserver`, `etcd`, …), for failures.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("logs/{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/control-plane.sh"))
            .arg("stop")
            .arg(&self.dir);
        match run_bounded(cmd, Duration::from_secs(120)) {
            Ok(out) if out.status.success() => {
                if std::env::var_os("MCP_WARDEN_KEEP_CLUSTER_DIR").is_none() {
                    let _ = std::fs::remove_dir_all(&self.dir);
                }
            }
            Ok(out) => eprintln!(
                "stopping the control plane in {} failed:\n{}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("stopping the control plane: {e}"),
        }
    }
}

/// One request in the API server's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    /// `JTI=…` of the token (`authentication.kubernetes.io/credential-id`).
    pub credential: String,
    /// get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// API group ("" = core).
    pub group: String,
    /// `leases`, `mcpclients/status`, … (subresource after a slash).
    pub resource: String,
    /// The object's namespace, if any.
    pub namespace: String,
    /// The object's name, if any.
    pub name: String,
    /// HTTP status of the answer.
    pub code: u16,
    /// When the request came in.
    pub time: String,
}

impl AuditEvent {
    fn from_json(e: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let r = &e["objectRef"];
        let mut resource = s(&r["resource"]);
        if let Some(sub) = r["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        Self {
            user: s(&e["user"]["username"]),
            credential: e["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            verb: s(&e["verb"]),
            group: s(&r["apiGroup"]),
            resource,
            namespace: s(&r["namespace"]),
            name: s(&r["name"]),
            code: e["responseStatus"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
            time: s(&e["requestReceivedTimestamp"]),
        }
    }
}

/// `JTI=<jti>` of a ServiceAccount token, as the audit log's credential id names it.
pub fn token_credential_id(token: &str) -> Result<String, String> {
    let payload = token.split('.').nth(1).ok_or("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    claims["jti"]
        .as_str()
        .map(|j| format!("JTI={j}"))
        .ok_or_else(|| "the token has no jti".to_owned())
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

/// `mcp-warden-operator` running on the host with the args of the chart's Deployment.
#[derive(Debug)]
pub struct HostOperator {
    /// The process (SIGKILLed when dropped).
    pub proc: Proc,
    /// Its Lease identity (`POD_NAME` in the Deployment).
    pub identity: String,
    /// `JTI=…` of its ServiceAccount token: its requests in the audit log.
    pub credential: String,
    /// `127.0.0.1:PORT` of the push API (HTTPS).
    pub push: String,
    /// `127.0.0.1:PORT` of the admin endpoints (HTTP).
    pub admin: String,
    /// `127.0.0.1:PORT` of the admission webhook (HTTPS).
    pub webhook: String,
}

/// How to turn the chart's Deployment into a host process.
#[derive(Debug, Clone)]
pub struct OperatorLaunch {
    /// The release namespace (Deployment, ServiceAccount, Lease).
    pub namespace: String,
    /// The Deployment's name.
    pub deployment: String,
    /// Its Lease identity.
    pub identity: String,
    /// Where the webhook listens on 127.0.0.1 (0: any free port).
    pub webhook_port: u16,
}

impl HostOperator {
    /// Reads the Deployment `launch.deployment` from the cluster and starts its container's
    /// args on the host: listeners moved to 127.0.0.1, the mounted TLS Secret written to files,
    /// `POD_NAME`/`POD_NAMESPACE`/`RUST_LOG` from its env, and a kubeconfig holding a fresh
    /// TokenRequest token of the Deployment's ServiceAccount. Waits until `/ready` (every watch
    /// listed).
    pub fn start(cp: &ControlPlane, launch: &OperatorLaunch) -> Result<Self, String> {
        let bin = operator_bin()?;
        let ns = launch.namespace.as_str();
        let deploy = cp.kubectl_json(&["-n", ns, "get", "deployment", &launch.deployment])?;
        let pod = &deploy["spec"]["template"]["spec"];
        let container = pod["containers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "operator"))
            .ok_or("the Deployment has no container named operator")?;
        let sa = pod["serviceAccountName"]
            .as_str()
            .ok_or("the Deployment names no ServiceAccount")?;
        // The TLS Secret, where the container mounts it.
        let mount = container["volumeMounts"]
            .as_array()
            .and_then(|m| m.first())
            .ok_or("the operator container mounts nothing")?;
        let mount_path = mount["mountPath"].as_str().unwrap_or_default().to_owned();
        let secret_name = pod["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
            .and_then(|v| v["secret"]["secretName"].as_str())
            .ok_or("the mounted volume is not a Secret")?
            .to_owned();
        let tls_dir = cp.dir.join(format!("operator-tls-{}", launch.identity));
        std::fs::create_dir_all(&tls_dir).map_err(|e| e.to_string())?;
        let secret = cp.kubectl_json(&["-n", ns, "get", "secret", &secret_name])?;
        for (key, data) in secret["data"]
            .as_object()
            .ok_or("the TLS Secret has no data")?
        {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            std::fs::write(tls_dir.join(key), bytes).map_err(|e| e.to_string())?;
        }
        let kubeconfig = cp
            .dir
            .join(format!("operator-{}.kubeconfig", launch.identity));
        let token = cp.service_account_kubeconfig(ns, sa, &kubeconfig)?;
        let credential = token_credential_id(&token)?;

        // The admin port must be chosen here (the operator does not report it): a free port,
        // and another one should something take it before the operator binds it.
        let mut attempt = 0;
        let (proc, admin_port, ready_file) = loop {
            attempt += 1;
            let admin_port = free_port();
            let (mut cmd, ready_file) = Self::command(
                &bin,
                container,
                launch,
                &kubeconfig,
                &mount_path,
                &tls_dir,
                admin_port,
            )?;
            let _ = std::fs::remove_file(&ready_file);
            cmd.arg("--ready-file").arg(&ready_file);
            let (proc, bound) = Proc::spawn(
                &format!("mcp-warden-operator {}", launch.identity),
                cmd,
                Duration::from_secs(30),
                |line| {
                    if line.contains("push API bound") {
                        Some(true)
                    } else if line.contains("cannot listen on") {
                        Some(false)
                    } else {
                        None
                    }
                },
            )?;
            if bound {
                break (proc, admin_port, ready_file);
            }
            if attempt == 3 {
                return Err(format!(
                    "the operator could not bind its ports:\n{}",
                    proc.log()
                ));
            }
        };
        cp.adopt("mcp-warden-operator", proc.id());
        let ready: Value = std::fs::read_to_string(&ready_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or("the operator wrote no ready file")?;
        let push = ready["listen"].as_str().unwrap_or_default().to_owned();
        let webhook = ready["webhook"].as_str().unwrap_or_default().to_owned();
        let op = Self {
            proc,
            identity: launch.identity.clone(),
            credential,
            push,
            admin: format!("127.0.0.1:{admin_port}"),
            webhook,
        };
        wait_for(
            &format!("{} /ready (every watch listed)", launch.identity),
            Duration::from_secs(30),
            || {
                Ok(http_get(&format!("http://{}/ready", op.admin))
                    .ok()
                    .filter(|(c, _)| *c == 200))
            },
        )
        .map_err(|e| format!("{e}\nits output:\n{}", op.proc.log()))?;
        Ok(op)
    }

    /// The command line of the Deployment's container, moved to the host; and its ready file.
    fn command(
        bin: &Path,
        container: &Value,
        launch: &OperatorLaunch,
        kubeconfig: &Path,
        mount_path: &str,
        tls_dir: &Path,
        admin_port: u16,
    ) -> Result<(Command, PathBuf), String> {
        let mut args = Vec::new();
        for arg in container["args"].as_array().ok_or("no args")? {
            let arg = arg.as_str().unwrap_or_default();
            let moved = if let Some((flag, _)) = arg.split_once('=')
                && ["--listen", "--admin-listen", "--webhook-listen"].contains(&flag)
            {
                let port = match flag {
                    "--listen" => 0,
                    "--admin-listen" => admin_port,
                    _ => launch.webhook_port,
                };
                format!("{flag}=127.0.0.1:{port}")
            } else if let Some(rest) = arg.split_once('=').and_then(|(flag, value)| {
                value
                    .strip_prefix(&format!("{mount_path}/"))
                    .map(|file| format!("{flag}={}", tls_dir.join(file).display()))
            }) {
                rest
            } else {
                arg.to_owned()
            };
            args.push(moved);
        }
        let mut cmd = Command::new(bin);
        for v in PROXY_VARS {
            cmd.env_remove(v);
        }
        cmd.env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("KUBECONFIG", kubeconfig);
        for env in container["env"].as_array().into_iter().flatten() {
            let name = env["name"].as_str().unwrap_or_default();
            let value = match (name, env["value"].as_str()) {
                ("POD_NAME", _) => launch.identity.clone(),
                ("POD_NAMESPACE", _) => launch.namespace.clone(),
                (_, Some(v)) => v.to_owned(),
                (_, None) => return Err(format!("env {name}: only values and the pod fields")),
            };
            cmd.env(name, value);
        }
        cmd.args(&args);
        let dir = tls_dir.parent().unwrap_or(tls_dir);
        Ok((
            cmd,
            dir.join(format!("operator-{}.ready.json", launch.identity)),
        ))
    }

    /// One metric's value summed over its label sets (`/metrics` on the admin port).
    pub fn metric(&self, name: &str) -> Result<f64, String> {
        let (_, text) = http_get(&format!("http://{}/metrics", self.admin))?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Sends SIGTERM (a graceful stop: the Lease is released).
    pub fn terminate(&self) -> Result<(), String> {
        let out = Command::new("kill")
            .args(["-TERM", &self.proc.id().to_string()])
            .output()
            .map_err(|e| e.to_string())?;
        success("kill -TERM", out).map(|_| ())
    }
}

/// The `mcp-warden-operator` binary of this build, with a warning when it is older than the
/// sources it is built from (`cargo test --workspace`, which `make test` runs, builds it; a lone
/// `cargo test -p mcp-warden-tests --test cluster` does not).
pub fn operator_bin() -> Result<PathBuf, String> {
    let bin = workspace_bin("mcp-warden-operator")?;
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let root = repo_root();
    let mut stale = Vec::new();
    for dir in ["operator/src", "policy/src", "crds/src"] {
        let mut pending = vec![root.join(dir)];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    pending.push(p);
                } else if entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m > built)
                {
                    stale.push(crate::display(&p));
                }
            }
        }
    }
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Some(first) = stale.first()
        && !WARNED.is_completed()
    {
        WARNED.call_once(|| ());
        // A warning, not a failure: `make test` builds it in the same run; the sources may be
        // edited while the suite runs.
        eprintln!(
            "WARNING: {} is older than {first} (and {} more): run `cargo build -p \
             mcp-warden-operator` (or the whole `cargo test --workspace`, as `make test` does)",
            bin.display(),
            stale.len() - 1
        );
    }
    Ok(bin)
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
