//! The control plane itself: started, driven with kubectl and helm, stopped on drop.

use super::*;

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
