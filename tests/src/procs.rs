//! Real processes for black-box tests: the peers (MCP servers, IdP, …) and our own binaries,
//! each killed when dropped, with its output kept for failure messages.
//!
//! ```text
//! Proc::spawn(cmd, ready-line matcher, deadline) ──► (Proc, what the matcher extracted)
//!        stdout/stderr ──reader threads──► log buffer (+ matcher)      Drop: kill + wait
//! ```

use crate::{peers_dir, repo_root};
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// A child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `cmd` and waits until a line of its stdout or stderr makes `ready` return `Some`,
    /// for at most `deadline`.
    pub fn spawn<T: Send + 'static>(
        name: &str,
        mut cmd: Command,
        deadline: Duration,
        ready: impl Fn(&str) -> Option<T> + Send + Sync + 'static,
    ) -> Result<(Self, T), String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let ready = Arc::new(ready);
        let outputs: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for output in outputs {
            let (log, tx, ready) = (log.clone(), tx.clone(), ready.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if let Some(found) = ready(&line) {
                        let _ = tx.send(found);
                    }
                    let mut log = log.lock().expect("log lock");
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut proc = Self {
            name: name.to_owned(),
            child,
            log,
        };
        match rx.recv_timeout(deadline) {
            Ok(found) => Ok((proc, found)),
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                Err(format!(
                    "{name} did not become ready within {deadline:?} (exit status: {status:?}); its output:\n{}",
                    proc.log()
                ))
            }
        }
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- output of {} ----\n{}", self.name, self.log());
        }
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on 127.0.0.1")
}

/// A variable of `$PEERS_DIR/env.sh` (written by `make peers`), from the environment when the
/// test runs under `make test`, else read from the file.
pub fn peer_var(name: &str) -> Result<String, String> {
    if let Ok(value) = std::env::var(name).map(|v| v.trim().to_owned())
        && !value.is_empty()
    {
        return Ok(value);
    }
    let env_sh = peers_dir().join("env.sh");
    let text = std::fs::read_to_string(&env_sh).map_err(|_| {
        format!(
            "{} is missing: run `make peers` to install the test peers",
            env_sh.display()
        )
    })?;
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            v.split(" #")
                .next()
                .unwrap_or(v)
                .trim()
                .trim_matches('\'')
                .to_owned()
        })
        .ok_or_else(|| {
            format!(
                "{name} is not set in {}: run `make peers`",
                env_sh.display()
            )
        })
}

/// A peer executable named by an env.sh variable, checked to exist.
pub fn peer_file(var: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(peer_var(var)?);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{var}={} does not exist: run `make peers`",
            path.display()
        ))
    }
}

/// The official MCP test server, `@modelcontextprotocol/server-everything`, in Streamable HTTP
/// mode on a free loopback port. Returns the process and its MCP URL.
pub fn server_everything() -> Result<(Proc, String), String> {
    let node = peer_file("PEERS_NODE22")?;
    let script = peer_file("PEERS_SERVER_EVERYTHING_JS")?;
    let port = free_port();
    let mut cmd = Command::new(node);
    cmd.arg("-r")
        .arg(repo_root().join("scripts/force-loopback.cjs"))
        .arg(script)
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    let (proc, ()) = Proc::spawn(
        "server-everything",
        cmd,
        Duration::from_secs(30),
        move |line| line.contains(&port.to_string()).then_some(()),
    )?;
    Ok((proc, format!("http://127.0.0.1:{port}/mcp")))
}

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
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            let field = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(|a| format!("http://{a}"))
            };
            if let (Some(base), Some(admin)) = (field("listen"), field("admin")) {
                return Ok((proc, SidecarAddrs { base, admin }));
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the sidecar wrote no ready file; its output:\n{}",
                proc.log()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running oidc-provider (npm `oidc-provider`, `tests/peers/oidc-provider/op.mjs`): a real
/// OAuth 2.1 authorization server minting RFC 9068 JWT access tokens for `resource`.
#[derive(Debug)]
pub struct Idp {
    /// The process.
    pub proc: Proc,
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// The resource (token audience) it mints tokens for.
    pub resource: String,
    dir: PathBuf,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.proc.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the IdP for `resource` on `port` (0: any free port).
pub fn oidc_provider(resource: &str, port: u16) -> Result<Idp, String> {
    let node = peer_file("PEERS_NODE22")?;
    let npm = peer_file("PEERS_NPM_DIR")?;
    // ES-module imports resolve from the script's folder: run it from under $PEERS_NPM_DIR.
    let dir = npm.join(format!("op-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for file in ["op.mjs", "gen-keys.mjs"] {
        std::fs::copy(
            repo_root().join("tests/peers/oidc-provider").join(file),
            dir.join(file),
        )
        .map_err(|e| format!("copying {file}: {e}"))?;
    }
    let keys = Command::new(&node)
        .arg(dir.join("gen-keys.mjs"))
        .arg("k1")
        .output()
        .map_err(|e| format!("gen-keys.mjs: {e}"))?;
    if !keys.status.success() {
        return Err(format!(
            "gen-keys.mjs failed: {}",
            String::from_utf8_lossy(&keys.stderr)
        ));
    }
    std::fs::write(dir.join("keys.json"), &keys.stdout).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&node);
    cmd.arg(dir.join("op.mjs"))
        .current_dir(&dir)
        .env("OP_PORT", port.to_string())
        .env("OP_KEYS", dir.join("keys.json"))
        .env("OP_RESOURCE", resource)
        .env("OP_TTL", "300");
    let (proc, issuer) = Proc::spawn("oidc-provider", cmd, Duration::from_secs(30), |line| {
        line.strip_prefix("READY ").map(str::to_owned)
    })?;
    Ok(Idp {
        proc,
        issuer,
        resource: resource.to_owned(),
        dir,
    })
}

impl Idp {
    /// A client-credentials access token for `client` (secret `<name>-secret` without the
    /// `agent-` prefix, as op.mjs configures) with `scope`.
    pub fn token(&self, client: &str, scope: &str) -> Result<String, String> {
        use base64::Engine as _;
        let secret = format!("{}-secret", client.trim_start_matches("agent-"));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let body = format!(
            "grant_type=client_credentials&scope={}&resource={}",
            scope.replace(' ', "%20"),
            self.resource.replace(':', "%3A").replace('/', "%2F")
        );
        let mut response = ureq::post(format!("{}/token", self.issuer))
            .header("Authorization", &format!("Basic {basic}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .config()
            .http_status_as_error(false)
            .build()
            .send(body.as_bytes())
            .map_err(|e| format!("token request: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        json["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access_token for {client}: {text}"))
    }
}

/// Starts `mcp-warden-operator run --source files:<dir>` on a free loopback port; returns the
/// process and the push API's base URL.
pub fn operator_files(dir: &Path) -> Result<(Proc, String), String> {
    operator_files_on(dir, 0)
}

/// Like [`operator_files`], on a given port (to restart an operator where sidecars expect it).
pub fn operator_files_on(dir: &Path, port: u16) -> Result<(Proc, String), String> {
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
        ]);
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
