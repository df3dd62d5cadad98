//! The OAuth handshake with real SDK clients that discover everything (issue 18, item 6).
//!
//! Each client gets only a client id, its secret and the MCP URL: the Python SDK's
//! `ClientCredentialsOAuthProvider` (`mcp` 2.3.0, `tests/peers/oauth_client.py`) and the
//! TypeScript SDK's `ClientCredentialsProvider` in both lines (`@modelcontextprotocol/client`
//! 2.4.0 and `@modelcontextprotocol/sdk` 1.32.2, `tests/peers/oauth_client.mjs`), against the
//! real oidc-provider (`tests/peers/oidc-provider/op.mjs`, which logs every token request it
//! sees), server-everything and the sidecar with `examples/everything` (admin-only `get-env`).
//!
//! ```text
//! SDK ──POST──► sidecar 401 scope="mcp:tools.list" ──► PRM ──► AS metadata ──► token(mcp:tools.list)
//!     ──tools/list, echo──► ok
//!     ──get-tiny-image──► 403 insufficient_scope scope="mcp:tools.call" ──► token(list + call)
//!          agent-alpha: granted, the call goes through    agent-beta: invalid_scope from the IdP
//! ```
//!
//! What each SDK does (read from its source, shown on the wire here):
//! * Python 2.3.0 and TS 2.4.0 ask for the 401's `scope` (else PRM `scopes_supported`) and, on
//!   403 `insufficient_scope`, for the union of what they asked before and the challenge's scope.
//!   A refused step-up ends the Python session (the `OAuthTokenError` escapes the transport); the
//!   TS 2.4.0 session survives it.
//! * TS 1.32.2's `ClientCredentialsProvider` sends no `scope` at all: `fetchToken`
//!   (`dist/esm/client/auth.js`) passes `provider.clientMetadata.scope` (unset) to
//!   `prepareTokenRequest`, not the scope `authInternal` selected, so its step-up asks again for
//!   the same unscoped token and gives up with "Server returned 403 after trying upscoping".
//!
//! The negative control removes `baseScopes`: the 401 names no scope, the Python SDK asks for
//! every scope in `scopes_supported`, and an agent not entitled to all of them (agent-beta) is
//! refused by the IdP before it can connect.
//!
//! A sidecar that drops the connection after a tokenless 401 without `Connection: close` makes
//! the SDKs' PRM fetch fail now and then ("Server disconnected without sending a response");
//! while [`drops_connection_after_401`] finds it doing so, a run lost that way is retried once,
//! with a `SIDECAR BUG` line on stderr.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_tests::{
    procs::{Idp, Proc, free_port, oidc_provider, peer_file, server_everything, sidecar_on},
    repo_root,
};
use serde_json::Value;
use std::{
    cell::Cell,
    io::{Read as _, Write as _},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

/// The longest one client script may take (each step has its own 30 s deadline inside).
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);

struct Stack {
    _upstream: Proc,
    idp: Idp,
    _sidecar: Proc,
    url: String,
    /// How many `TOKEN` lines of the IdP's log belong to runs already reported.
    idp_tokens_seen: Cell<usize>,
    /// Whether the sidecar drops the connection after a tokenless 401 without saying
    /// `Connection: close` (see [`drops_connection_after_401`]).
    drops_connection: bool,
    _dir: tempfile::TempDir,
}

/// server-everything ← sidecar ← clients, with `examples/everything` rewritten to the live IdP
/// and to the sidecar's own URL as `server.resource` (the SDKs check the PRM's `resource`), then
/// passed through `edit`.
fn stack(edit: impl Fn(String) -> String) -> Stack {
    let (upstream, upstream_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let idp = oidc_provider(&url, 0).unwrap_or_else(|e| panic!("{e}"));
    let config = std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", &idp.issuer)
        .replace("http://127.0.0.1:9401/mcp", &url);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("everything.yaml");
    std::fs::write(&path, edit(config)).unwrap();
    let (sidecar, addrs) = sidecar_on(
        &format!("127.0.0.1:{port}"),
        &[
            "--config",
            path.to_str().unwrap(),
            "--upstream",
            &upstream_url,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(format!("{}/mcp", addrs.base), url);
    let drops_connection = drops_connection_after_401(&url);
    if drops_connection {
        eprintln!(
            "SIDECAR BUG: after a tokenless 401 the connection is closed without `Connection: \
             close`; a client reusing it fails (httpx2: \"Server disconnected without sending a \
             response\"); one such run per client is retried"
        );
    }
    Stack {
        _upstream: upstream,
        idp,
        _sidecar: sidecar,
        url,
        idp_tokens_seen: Cell::new(0),
        drops_connection,
        _dir: dir,
    }
}

/// The sidecar answers a tokenless POST before reading its body (issue 18, item 4) and then
/// closes the connection. Unless its answer says `Connection: close`, an HTTP/1.1 client keeps
/// the connection for its next request, which for every SDK here is the PRM fetch right after the
/// 401; when it reuses it before it sees the close, that request fails. This sends the two
/// requests on one connection as a client does, the body once the 401 is in (the order in which
/// the race is lost), and tells whether the second request is lost.
fn drops_connection_after_401(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
    let mut tcp = TcpStream::connect(host).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).unwrap() == 1 {
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 401"), "{answer}");
    if answer.contains("\r\nconnection: close") {
        return false;
    }
    let _ = tcp.write_all(body.as_bytes());
    std::thread::sleep(Duration::from_millis(100));
    let prm = format!(
        "GET /.well-known/oauth-protected-resource{path} HTTP/1.1\r\nHost: {host}\r\n\
         Connection: close\r\n\r\n"
    );
    let mut rest = Vec::new();
    let _ = tcp.write_all(prm.as_bytes());
    let _ = tcp.read_to_end(&mut rest);
    // The 401's body, then (if the connection lives) the PRM's answer.
    !String::from_utf8_lossy(&rest).contains("HTTP/1.1 200")
}

/// A run in which a request found its connection closed ([`drops_connection_after_401`]): the
/// signature of the lost race in httpx2 (Python) and undici (TypeScript).
fn lost_connection(report: &Value) -> bool {
    let errors = format!("{} {}", report["session_error"], report["steps"]);
    errors.contains("Server disconnected without sending a response")
        || errors.contains("other side closed")
        || errors.contains("ECONNRESET")
}

/// agent-beta's policy allows 5 calls a minute (the demo's 429); these runs make about 15.
fn lift_beta_rate(config: String) -> String {
    let tight = "    requests: 5\n    period: 1m\n  dailyQuota: 100";
    assert!(config.contains(tight), "basic-tools' rate limit moved");
    config.replace(
        tight,
        "    requests: 600\n    period: 1m\n  dailyQuota: 100",
    )
}

fn without_base_scopes(config: String) -> String {
    let line = "    baseScopes: [mcp:tools.list]\n";
    assert!(config.contains(line), "examples/everything sets baseScopes");
    lift_beta_rate(config.replace(line, ""))
}

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Python,
    TsV2,
    TsV1,
}

impl Stack {
    /// Runs one SDK client script for `client` (secret `<name>-secret`, as op.mjs configures)
    /// and returns its JSON report, with the token requests the IdP logged during the run
    /// (`idp_tokens`).
    fn client(&self, sdk: Sdk, client: &str) -> Value {
        let report = self.client_once(sdk, client);
        if self.drops_connection && lost_connection(&report) {
            eprintln!(
                "SIDECAR BUG hit: {sdk:?} {client} lost its connection after the 401; retrying once:\n{:#}",
                report["trace"]
            );
            return self.client_once(sdk, client);
        }
        report
    }

    fn client_once(&self, sdk: Sdk, client: &str) -> Value {
        let secret = format!("{}-secret", client.trim_start_matches("agent-"));
        let before = self.idp_tokens_seen.get();
        assert_eq!(
            self.idp_tokens().len(),
            before,
            "token requests nobody accounted for"
        );
        let (mut cmd, _script) = match sdk {
            Sdk::Python => {
                let mut cmd = Command::new(peer_file("PEERS_PYTHON").unwrap());
                cmd.arg(repo_root().join("tests/peers/oauth_client.py"));
                (cmd, None)
            }
            Sdk::TsV1 | Sdk::TsV2 => {
                // The script imports the SDKs by name: it runs from the peers' npm folder.
                let npm = peer_file("PEERS_NPM_DIR").unwrap();
                let script = tempfile::Builder::new()
                    .prefix("oauth-client-")
                    .suffix(".mjs")
                    .tempfile_in(&npm)
                    .unwrap();
                std::fs::copy(
                    repo_root().join("tests/peers/oauth_client.mjs"),
                    script.path(),
                )
                .unwrap();
                let mut cmd = Command::new(peer_file("PEERS_NODE22").unwrap());
                cmd.arg(script.path()).arg("--sdk").arg(match sdk {
                    Sdk::TsV1 => "v1",
                    _ => "v2",
                });
                (cmd, Some(script))
            }
        };
        cmd.args(["--client-id", client, "--client-secret", &secret, &self.url]);
        let name = format!("{sdk:?} client {client}");
        let (mut proc, line) = Proc::spawn(&name, cmd, CLIENT_DEADLINE, |line| {
            line.starts_with('{').then(|| line.to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        proc.kill();
        let mut report: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {line}\n{}", proc.log()));
        let sent = report["token_requests"].as_array().map_or(0, Vec::len);
        let seen = self.wait_idp_tokens(before + sent);
        report["idp_tokens"] = seen[before..].to_vec().into();
        self.idp_tokens_seen.set(seen.len());
        report
    }

    /// A token straight from the IdP (not through an SDK), accounted for in its log.
    fn direct_token(&self, client: &str, scope: &str) -> Result<String, String> {
        let token = self.idp.token(client, scope);
        let seen = self.wait_idp_tokens(self.idp_tokens_seen.get() + 1);
        self.idp_tokens_seen.set(seen.len());
        token
    }

    /// Every `TOKEN` line the IdP printed so far.
    fn idp_tokens(&self) -> Vec<Value> {
        self.idp
            .proc
            .log()
            .lines()
            .filter_map(|l| l.strip_prefix("TOKEN "))
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect()
    }

    /// The IdP's lines reach its log through a reader thread: waits (briefly) until it holds
    /// `count` token requests.
    fn wait_idp_tokens(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.idp_tokens();
            if seen.len() >= count || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

/// The scopes the client asked for, in order, as the client sent them (`token_requests`),
/// checked against what the IdP logged for the same run (`idp_tokens`).
fn asked(report: &Value) -> Vec<(Option<String>, bool)> {
    let wire: Vec<(Option<String>, bool)> = report["token_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["scope"].as_str().map(str::to_owned), t["status"] == 200))
        .collect();
    let idp: Vec<(Option<String>, bool)> = report["idp_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["client_id"], report["client_id"], "{t}");
            assert_eq!(t["grant_type"], "client_credentials", "{t}");
            (t["scope"].as_str().map(str::to_owned), t["ok"] == true)
        })
        .collect();
    assert_eq!(
        wire, idp,
        "the client's and the IdP's view differ: {report:#}"
    );
    wire
}

fn error_text(step: &Value) -> String {
    step["error"].to_string()
}

/// What every run of every SDK must show: the 401 named the base scope; the PRM lists no admin
/// scope; no token request includes `mcp:admin`; the first one is granted; the base tool works.
fn assert_begins_well(report: &Value, base_scope: &str) {
    let challenge = report["challenges"][0].clone();
    assert_eq!(challenge["status"], 401, "{report:#}");
    assert_eq!(challenge["had_token"], false, "{report:#}");
    let www = challenge["www_authenticate"].as_str().unwrap();
    assert!(
        www.contains(&format!("scope=\"{base_scope}\"")) && www.contains("resource_metadata="),
        "{www}"
    );
    let prm: Vec<&str> = report["prm"]["scopes_supported"]
        .as_array()
        .unwrap_or_else(|| panic!("no PRM in {report:#}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(!prm.contains(&"mcp:admin"), "{prm:?}");
    let asked = asked(report);
    assert!(!asked.is_empty(), "{report:#}");
    assert!(
        asked[0].1,
        "the first token request was refused: {report:#}"
    );
    for (scope, _) in &asked {
        assert!(
            !scope.as_deref().unwrap_or_default().contains("mcp:admin"),
            "{report:#}"
        );
    }
    assert_eq!(report["connected"], true, "{report:#}");
    assert_eq!(step(report, "base")["ok"], true, "{report:#}");
}

#[test]
fn sdk_clients_begin_with_the_base_scope_and_step_up_to_the_rest() {
    let s = stack(lift_beta_rate);
    let started = Instant::now();

    // The challenge and the metadata, as any client first sees them.
    let mut answer = ureq::post(&s.url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .config()
        .http_status_as_error(false)
        .build()
        .send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .unwrap();
    assert_eq!(answer.status(), 401);
    let www = answer
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.contains(r#"scope="mcp:tools.list""#), "{www}");
    let _ = answer.body_mut().read_to_string();
    let prm_url = www
        .split("resource_metadata=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let prm = ureq::get(prm_url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let prm: Value = serde_json::from_str(&prm).unwrap();
    let supported = prm["scopes_supported"].as_array().unwrap();
    assert!(
        !supported.iter().any(|v| v == "mcp:admin"),
        "the admin-only scope is left out of the PRM: {prm}"
    );
    assert!(supported.iter().any(|v| v == "mcp:tools.list"), "{prm}");
    // The challenge's scope is what an ordinary agent may get.
    s.direct_token("agent-beta", "mcp:tools.list")
        .unwrap_or_else(|e| panic!("the 401's scope is refused to agent-beta: {e}"));

    for sdk in [Sdk::Python, Sdk::TsV2] {
        let alpha = s.client(sdk, "agent-alpha");
        assert_begins_well(&alpha, "mcp:tools.list");
        assert_eq!(
            asked(&alpha),
            [
                (Some("mcp:tools.list".to_owned()), true),
                (Some("mcp:tools.list mcp:tools.call".to_owned()), true),
            ],
            "{sdk:?}: the base scope, then the union with the challenge's: {alpha:#}"
        );
        assert_eq!(alpha["challenges"][1]["status"], 403, "{alpha:#}");
        assert!(
            alpha["challenges"][1]["www_authenticate"]
                .as_str()
                .unwrap()
                .contains(r#"error="insufficient_scope", scope="mcp:tools.call""#),
            "{alpha:#}"
        );
        let up = step(&alpha, "step_up");
        assert_eq!(up["ok"], true, "{sdk:?}: {alpha:#}");
        assert!(
            up["result"]["text"].as_str().unwrap().contains("image"),
            "{up}"
        );
        assert_eq!(step(&alpha, "base_again")["ok"], true, "{alpha:#}");

        let beta = s.client(sdk, "agent-beta");
        assert_begins_well(&beta, "mcp:tools.list");
        let asked_beta = asked(&beta);
        assert_eq!(
            asked_beta[..2],
            [
                (Some("mcp:tools.list".to_owned()), true),
                (Some("mcp:tools.list mcp:tools.call".to_owned()), false),
            ],
            "{sdk:?}: the step-up is refused by the IdP: {beta:#}"
        );
        assert_eq!(beta["idp_tokens"][1]["error"], "invalid_scope", "{beta:#}");
        let up = step(&beta, "step_up");
        assert_eq!(up["ok"], false, "{beta:#}");
        let why = error_text(up);
        assert!(
            why.contains("invalid_scope") || why.contains("requested scope is not allowed"),
            "{sdk:?}: a clear refusal: {why}"
        );
        match sdk {
            // The OAuthTokenError ends the Python session (the SDK raises it out of the
            // transport); base calls work again on a new session, which begins with the base
            // scope, not with the refused union.
            Sdk::Python => {
                assert_eq!(up["session_ended"], true, "{beta:#}");
                assert_eq!(asked_beta.len(), 3, "{beta:#}");
                assert_eq!(
                    asked_beta[2],
                    (Some("mcp:tools.list".to_owned()), true),
                    "{beta:#}"
                );
            }
            // TS 2.4.0 keeps the session and its first token.
            _ => assert_eq!(step(&beta, "base_again")["ok"], true, "{beta:#}"),
        }
        assert_eq!(step(&beta, "base_fresh_session")["ok"], true, "{beta:#}");
    }

    // TS SDK 1.32.2: its ClientCredentialsProvider sends no scope (neither the 401's nor the
    // step-up's), so the token carries none; this sidecar lets a scope-less token list tools and
    // call echo, and the step-up ends in "403 after trying upscoping" for alpha as for beta.
    for client in ["agent-alpha", "agent-beta"] {
        let v1 = s.client(Sdk::TsV1, client);
        assert_begins_well(&v1, "mcp:tools.list");
        let asked = asked(&v1);
        assert!(
            asked.iter().all(|(scope, ok)| scope.is_none() && *ok),
            "TS v1 sends no scope: {v1:#}"
        );
        let up = step(&v1, "step_up");
        assert_eq!(up["ok"], false, "{v1:#}");
        assert!(
            error_text(up).contains("403 after trying upscoping"),
            "{v1:#}"
        );
        assert_eq!(step(&v1, "base_again")["ok"], true, "{v1:#}");
    }
    eprintln!("six client runs in {:?}", started.elapsed());
}

#[test]
fn without_base_scopes_the_python_sdk_asks_for_every_supported_scope() {
    let s = stack(without_base_scopes);
    let alpha = s.client(Sdk::Python, "agent-alpha");
    let beta = s.client(Sdk::Python, "agent-beta");
    for report in [&alpha, &beta] {
        let www = report["challenges"][0]["www_authenticate"]
            .as_str()
            .unwrap();
        assert!(!www.contains("scope="), "no base scope, no hint: {www}");
    }
    let supported: Vec<&str> = beta["prm"]["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!supported.contains(&"mcp:admin"), "{supported:?}");
    // What the admin rule alone leaves: mcp:tools.call, which Medium tools need and agent-beta
    // may not get (mcp:tools.list is in no tool entry, so nothing lists it).
    assert!(supported.contains(&"mcp:tools.call"), "{supported:?}");
    let everything = supported.join(" ");

    // The first token request is every scope in scopes_supported.
    let asked_alpha = asked(&alpha);
    assert_eq!(
        asked_alpha[0],
        (Some(everything.clone()), true),
        "{alpha:#}"
    );
    assert_eq!(step(&alpha, "step_up")["ok"], true, "{alpha:#}");
    let asked_beta = asked(&beta);
    assert_eq!(
        asked_beta[0],
        (Some(everything.clone()), false),
        "agent-beta is refused before it can connect: {beta:#}"
    );
    assert_eq!(beta["idp_tokens"][0]["error"], "invalid_scope", "{beta:#}");
    assert_eq!(beta["connected"], false, "{beta:#}");
    assert!(
        beta["session_error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_scope"),
        "{beta:#}"
    );

    // Had the PRM still listed mcp:admin, even agent-alpha's first request would be refused.
    let with_admin = format!("{everything} mcp:admin");
    let refused = s.direct_token("agent-alpha", &with_admin).unwrap_err();
    assert!(refused.contains("invalid_scope"), "{refused}");
}
