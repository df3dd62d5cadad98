//! The workspace's operator binary run on the host with the chart Deployment's arguments.

use super::*;

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
