//! The third-party test peers `make peers` installs, found through `$PEERS_DIR/env.sh`, and the
//! official MCP test server.

use crate::{
    paths::{peers_dir, repo_root},
    proc::{Proc, free_port},
};
use std::{path::PathBuf, process::Command, time::Duration};

/// A variable of `$PEERS_DIR/env.sh` (written by `make peers`): from the environment when the
/// test runs under `make test` (which sources it), else read from the file.
///
/// # Errors
///
/// The file is missing or does not set `name`; the message says to run `make peers`.
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
                .trim_matches(['\'', '"'])
                .to_owned()
        })
        .ok_or_else(|| {
            format!(
                "{name} is not set in {}: run `make peers`",
                env_sh.display()
            )
        })
}

/// A peer file or folder named by an env.sh variable, checked to exist.
///
/// # Errors
///
/// As [`peer_var`], or the path does not exist.
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

/// [`peer_file`], panicking with its message: a missing peer fails the test, it never skips it.
pub fn peer(var: &str) -> PathBuf {
    peer_file(var).unwrap_or_else(|e| panic!("{e}"))
}

/// Arguments that make node exit when its stdin closes: with [`Proc::spawn_tied`], a node peer
/// dies with the test process even when that one is killed and cannot drop its [`Proc`].
pub const NODE_EXITS_WITH_PARENT: [&str; 2] = [
    "--import",
    "data:text/javascript,process.stdin.on('end',()=>process.exit(0));\
     process.stdin.on('error',()=>process.exit(0));process.stdin.resume();",
];

/// The official MCP test server, `@modelcontextprotocol/server-everything`, in Streamable HTTP
/// mode on a free loopback port (`scripts/force-loopback.cjs`), exiting with the test process.
/// Returns the process and its MCP URL once it accepts connections (at most 30 s).
///
/// # Errors
///
/// The peers are missing, or the server did not start.
pub fn server_everything() -> Result<(Proc, String), String> {
    let node = peer_file("PEERS_NODE22")?;
    let script = peer_file("PEERS_SERVER_EVERYTHING_JS")?;
    let port = free_port();
    let mut cmd = Command::new(node);
    cmd.args(NODE_EXITS_WITH_PARENT)
        .arg("-r")
        .arg(repo_root().join("scripts/force-loopback.cjs"))
        .arg(script)
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    let (mut proc, ()) = Proc::spawn_tied(
        "server-everything",
        cmd,
        Duration::from_secs(30),
        move |line| line.contains(&port.to_string()).then_some(()),
    )?;
    proc.wait_port(port, Duration::from_secs(10))?;
    Ok((proc, format!("http://127.0.0.1:{port}/mcp")))
}
