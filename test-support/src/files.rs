//! Files as the tests' peers write and read them.

use serde_json::Value;
use std::path::Path;

/// Writes `value` to `path` by rename, as a Secret volume's update swaps its files: a reader
/// sees the old content or the new, never a partial one.
///
/// # Panics
///
/// The file cannot be written (a test failure).
pub fn write_atomically(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value).expect("the temporary file is written");
    std::fs::rename(&tmp, path).expect("the file is replaced");
}

/// The JSON lines of `path` (none when it does not exist yet; unreadable lines skipped).
pub fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The upstream-auth tests' configuration (`tests/fixtures/configs/upstream-auth.yaml`) for
/// these URLs.
pub fn upstream_auth_config(resource: &str, upstream: &str, issuer: &str) -> String {
    config_for("upstream-auth.yaml", resource, upstream, issuer)
}

/// `tests/fixtures/configs/<name>` with `RESOURCE`, `UPSTREAM` and `ISSUER` replaced.
pub fn config_for(name: &str, resource: &str, upstream: &str, issuer: &str) -> String {
    let path = crate::repo_root().join("tests/fixtures/configs").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("RESOURCE", resource)
        .replace("UPSTREAM", upstream)
        .replace("ISSUER", issuer)
}

/// The resource (token audience) of the upstream-auth tests' McpTool: an identifier, not where
/// the sidecar listens (which is any free port, so no port is chosen before it is bound).
pub const UPSTREAM_AUTH_RESOURCE: &str = "https://verified.mcp.test/mcp";

/// `tests/peers/identity_upstream.py` on a free loopback port, its JWKS URL read from
/// `jwks_url_file` at its first request (write it once the sidecar or operator is up); records
/// what it receives in `record`. Returns the process and its MCP URL.
///
/// # Panics
///
/// It does not start (a test failure).
pub fn identity_upstream(
    jwks_url_file: &Path,
    record: &Path,
    env: &[(&str, &str)],
) -> (crate::Proc, String) {
    let mut py = std::process::Command::new(crate::peer("PEERS_PYTHON"));
    py.arg(crate::repo_root().join("tests/peers/identity_upstream.py"))
        .arg("0")
        .env("JWKS_URL_FILE", jwks_url_file)
        .env("AUDIENCE_FROM_URL", "1")
        .env("ISSUER", UPSTREAM_AUTH_RESOURCE)
        .env("CREDENTIAL_HEADER", "X-Api-Key")
        .env("RECORD", record)
        .envs(env.iter().copied());
    crate::Proc::spawn(
        "identity_upstream.py",
        py,
        std::time::Duration::from_secs(30),
        |l| l.strip_prefix("READY ").map(|u| u.trim().to_owned()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}
