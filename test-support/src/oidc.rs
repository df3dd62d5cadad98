//! The real OAuth 2.1 authorization server of the tests: npm `oidc-provider` running
//! `tests/peers/oidc-provider/op.mjs` under `$PEERS_NODE22`, minting RFC 9068 JWT access tokens
//! (and opaque ones for a second resource) by client credentials.
//!
//! ```text
//! IdpOptions::new(resource).ttl_secs(..).kids(..).start()
//!   ──► scratch folder under $PEERS_NPM_DIR (ES-module imports resolve from there)
//!   ──► gen-keys.mjs <kids> > keys.json ──► node op.mjs ──► "READY <issuer>"
//! Idp::token ──► POST <issuer>/token (client_secret_basic) ──► access_token
//! Idp::rotate ──► keys.json rewritten, SIGHUP ──► "RELOADED"
//! ```

use crate::{paths::repo_root, peers::peer_file, proc::Proc};
use base64::Engine as _;
use serde_json::Value;
use std::{
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

/// How to start an [`Idp`]: the defaults are any free port, tokens living 300 s, one signing
/// key `k1`, and op.mjs's default opaque resource.
#[derive(Debug, Clone)]
pub struct IdpOptions {
    resource: String,
    opaque_resource: Option<String>,
    port: u16,
    ttl_secs: u64,
    kids: Vec<String>,
    env: Vec<(String, String)>,
}

impl IdpOptions {
    /// Tokens for `resource` (RFC 8707 resource indicator, the JWT `aud`).
    pub fn new(resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            opaque_resource: None,
            port: 0,
            ttl_secs: 300,
            kids: vec!["k1".to_owned()],
            env: Vec::new(),
        }
    }

    /// Tokens for `resource` instead of the one given to [`IdpOptions::new`].
    #[must_use]
    pub fn resource(mut self, resource: &str) -> Self {
        resource.clone_into(&mut self.resource);
        self
    }

    /// Listens on `port` (0: any free port).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Access tokens live `secs` seconds.
    #[must_use]
    pub fn ttl_secs(mut self, secs: u64) -> Self {
        self.ttl_secs = secs;
        self
    }

    /// Sets an environment variable of op.mjs (`OP_EXCHANGE_AUDIENCES`, …).
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Signing keys with these ids; the first signs.
    #[must_use]
    pub fn kids(mut self, kids: &[&str]) -> Self {
        self.kids = kids.iter().map(|k| (*k).to_owned()).collect();
        self
    }

    /// The second resource, whose tokens are opaque (introspection and revocation work there).
    #[must_use]
    pub fn opaque_resource(mut self, resource: &str) -> Self {
        self.opaque_resource = Some(resource.to_owned());
        self
    }

    /// Starts the IdP and waits (at most 30 s) for its `READY` line.
    ///
    /// # Errors
    ///
    /// node 22 or oidc-provider are missing (run `make peers`), or op.mjs did not start.
    pub fn start(self) -> Result<Idp, String> {
        let node = peer_file("PEERS_NODE22")?;
        let npm = peer_file("PEERS_NPM_DIR")?;
        if !npm
            .join("node_modules/oidc-provider/package.json")
            .is_file()
        {
            return Err(format!(
                "oidc-provider is not installed under {}: run `make peers`",
                npm.display()
            ));
        }
        // ES-module imports resolve from the script's folder: run it from under $PEERS_NPM_DIR.
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = npm.join(format!(
            ".test-op-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // Removed on every path from here (an error drops it; else the Idp does).
        let scratch = Scratch(dir.clone());
        std::fs::copy(script("op.mjs"), dir.join("op.mjs"))
            .map_err(|e| format!("copying op.mjs: {e}"))?;
        let keys = dir.join("keys.json");
        let kids: Vec<&str> = self.kids.iter().map(String::as_str).collect();
        std::fs::write(&keys, gen_keys(&kids)?.to_string()).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&node);
        cmd.arg(dir.join("op.mjs"))
            .current_dir(&dir)
            .env("OP_PORT", self.port.to_string())
            .env("OP_KEYS", &keys)
            .env("OP_RESOURCE", &self.resource)
            .env("OP_TTL", self.ttl_secs.to_string());
        if let Some(opaque) = &self.opaque_resource {
            cmd.env("OP_OPAQUE_RESOURCE", opaque);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let (proc, issuer) = Proc::spawn("oidc-provider", cmd, Duration::from_secs(30), |line| {
            line.strip_prefix("READY ").map(|i| i.trim().to_owned())
        })?;
        Ok(Idp {
            proc,
            issuer,
            resource: self.resource,
            keys,
            _scratch: scratch,
        })
    }
}

/// Removes a folder when dropped.
#[derive(Debug)]
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running oidc-provider; killed, and its scratch folder removed, when dropped.
#[derive(Debug)]
pub struct Idp {
    /// The process (its log holds op.mjs's `TOKEN {…}` line for each token request).
    pub proc: Proc,
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// The resource (token audience) it mints JWTs for.
    pub resource: String,
    keys: PathBuf,
    /// Dropped after [`Idp::drop`] killed the process.
    _scratch: Scratch,
}

/// Starts an IdP for `resource` on `port` (0: any free port), with the default
/// [`IdpOptions`].
///
/// # Errors
///
/// As [`IdpOptions::start`].
pub fn oidc_provider(resource: &str, port: u16) -> Result<Idp, String> {
    IdpOptions::new(resource).port(port).start()
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

impl Idp {
    /// A client-credentials access token for `client` with `scope`, for [`Idp::resource`]; the
    /// secret is the one op.mjs configures for its `agent-*` clients (`agent-alpha`:
    /// `alpha-secret`).
    ///
    /// # Errors
    ///
    /// The IdP refused (the message holds its answer) or could not be reached.
    pub fn token(&self, client: &str, scope: &str) -> Result<String, String> {
        let secret = format!("{}-secret", client.trim_start_matches("agent-"));
        self.token_with(client, &secret, scope, &self.resource)
    }

    /// A client-credentials access token for `client` authenticated by `secret`, with `scope`,
    /// for `resource` (at most 10 s).
    ///
    /// # Errors
    ///
    /// As [`Idp::token`].
    pub fn token_with(
        &self,
        client: &str,
        secret: &str,
        scope: &str,
        resource: &str,
    ) -> Result<String, String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair("resource", resource)
            .finish();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let mut response = ureq::post(format!("{}/token", self.issuer))
            .header("Authorization", &format!("Basic {basic}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .config()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .send(body.as_bytes())
            .map_err(|e| format!("token request: {e}"))?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        json["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access_token for {client}: {text}"))
    }

    /// The private JWKS the IdP signs with now.
    ///
    /// # Errors
    ///
    /// The keys file cannot be read.
    pub fn keys(&self) -> Result<Value, String> {
        let text = std::fs::read_to_string(&self.keys).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// Replaces the IdP's keys (SIGHUP, as an operator would) and waits (at most 30 s) until it
    /// reloaded them.
    ///
    /// # Errors
    ///
    /// The keys cannot be written, or op.mjs did not reload.
    pub fn rotate(&mut self, keys: &Value) -> Result<(), String> {
        std::fs::write(&self.keys, keys.to_string()).map_err(|e| e.to_string())?;
        let since = self.proc.log().len();
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.proc.id().to_string())
            .status()
            .map_err(|e| format!("kill -HUP: {e}"))?;
        if !status.success() {
            return Err(format!("kill -HUP {}: {status}", self.proc.id()));
        }
        self.proc
            .wait_line(since, Duration::from_secs(30), |l| l == "RELOADED")
            .map(|_| ())
    }
}

/// `tests/peers/oidc-provider/<name>`.
fn script(name: &str) -> PathBuf {
    repo_root().join("tests/peers/oidc-provider").join(name)
}

/// A private JWKS of fresh RSA keys with ids `kids` (op.mjs signs with the first), made by
/// `gen-keys.mjs`.
///
/// # Errors
///
/// node 22 is missing, or the script failed.
pub fn gen_keys(kids: &[&str]) -> Result<Value, String> {
    let node = peer_file("PEERS_NODE22")?;
    let out = Command::new(node)
        .arg(script("gen-keys.mjs"))
        .args(kids)
        .output()
        .map_err(|e| format!("gen-keys.mjs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "gen-keys.mjs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("gen-keys.mjs printed no JWKS: {e}"))
}
