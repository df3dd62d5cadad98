//! The sidecar's gate under attack, black box: the real `mcp-warden-sidecar` with the demo's
//! policies (`examples/everything`), real tokens from oidc-provider, and three real upstreams —
//! server-everything (TypeScript SDK), `tests/peers/fixture_server.py` (Python SDK) and
//! `tests/peers/go-server` (mark3labs/mcp-go, whose `encoding/json` folds keys) — each behind a
//! recording tap, so every case asserts what the client saw AND what the upstream received.
//!
//! ```text
//! client (ureq / raw TCP) ──► sidecar ──► tap (records every request) ──► upstream
//!                               └── audit trail (audit.jsonl)
//! ```
//!
//! Expected behaviour: `docs/denials.md` ("One reading", "Answers are read before the client
//! sees them", "Callers without a valid token cost O(1)", revocation of open streams). A scripted
//! hostile upstream covers the answers no real server sends on purpose. Each per-upstream test
//! runs every case and lists them all (PASS/FAIL) before failing.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use http_body_util::BodyExt;
use mcp_warden_test_support::{
    Idp, Proc, oidc_provider, peer_file, poll, repo_root, server_everything,
};
use mcp_warden_tests::{
    procs::{SidecarAddrs, enforced_version, sidecar, workspace_bin},
    tap::{self, Recorded, Tap},
};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpStream},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

/// The resource (token audience) of examples/everything.
const RESOURCE: &str = "http://127.0.0.1:9401/mcp";
const VERSION: &str = "2025-06-18";
const ALPHA: &str = "agent-alpha";
const BETA: &str = "agent-beta";
/// agent-alpha's McpClient in examples/everything: `suspended: true` goes after this line.
const ALPHA_LINE: &str = "  description: Demo agent with broad access to the test server.\n";
/// The most the sidecar may hold while refusing a tokenless flood (docs/denials.md: O(1) per
/// caller without a valid token).
const RSS_LIMIT_KIB: u64 = 128 * 1024;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

// ------------------------------------------------------------------------------------------
// Upstreams and the stack
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Everything,
    Python,
    Go,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Everything => "server-everything",
            Kind::Python => "python-fixture",
            Kind::Go => "go-mcp-go",
        }
    }

    /// agent-beta's tools: what its policy grants that the upstream has.
    fn beta_tools(self) -> BTreeSet<String> {
        let names: &[&str] = match self {
            Kind::Python => &["greet"],
            _ => &["echo", "get-sum", "get-tiny-image"],
        };
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A harmless call agent-alpha may make.
    fn good_call(self) -> (&'static str, Value) {
        match self {
            Kind::Python => ("greet", json!({"name": "warden"})),
            _ => ("echo", json!({"message": "hello"})),
        }
    }

    /// A call that streams (SSE) for several seconds, when the upstream has one.
    fn long_call(self) -> Option<(&'static str, Value)> {
        match self {
            Kind::Everything => Some((
                "trigger-long-running-operation",
                json!({"duration": 10, "steps": 10}),
            )),
            Kind::Python => Some(("test_tool_with_progress", json!({"delay_ms": 5000}))),
            Kind::Go => None,
        }
    }
}

struct Upstream {
    _proc: Proc,
    url: String,
    /// The Go server's record file (`{"ran":"<tool>"}` per tool run).
    record: Option<PathBuf>,
}

fn go_server_bin() -> PathBuf {
    peer_file("PEERS_GO_SERVER").unwrap_or_else(|e| {
        panic!(
            "the Go upstream (tests/peers/go-server, mark3labs/mcp-go) is not installed ({e}): \
             build and register it with `scripts/peers.sh go`, which sets PEERS_GO_SERVER in \
             $PEERS_DIR/env.sh"
        )
    })
}

fn go_server(record: &Path) -> (Proc, String) {
    let mut cmd = Command::new(go_server_bin());
    cmd.args(["--listen", "127.0.0.1:0", "--record"])
        .arg(record);
    Proc::spawn("mcp-go-server", cmd, Duration::from_secs(30), |line| {
        line.strip_prefix("listening on ")
            .map(|u| u.trim().to_owned())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn python_fixture() -> (Proc, String) {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| {
        panic!("the Python fixture needs the peers' venv with `mcp` ({e}): run `make peers`")
    });
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/fixture_server.py"))
        .arg("0");
    Proc::spawn("fixture_server.py", cmd, Duration::from_secs(60), |line| {
        line.strip_prefix("READY ").map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn start_upstream(kind: Kind, dir: &Path) -> Upstream {
    let (proc, url, record) = match kind {
        Kind::Everything => {
            let (p, u) = server_everything()
                .unwrap_or_else(|e| panic!("server-everything is needed ({e}): run `make peers`"));
            (p, u, None)
        }
        Kind::Python => {
            let (p, u) = python_fixture();
            (p, u, None)
        }
        Kind::Go => {
            let record = dir.join("go-record.jsonl");
            let (p, u) = go_server(&record);
            (p, u, Some(record))
        }
    };
    Upstream {
        _proc: proc,
        url,
        record,
    }
}

/// examples/everything for the live IdP. The Python fixture has none of server-everything's
/// tools: its harmless `greet` is granted to both agents, `test_tool_with_progress` to alpha.
fn config_text(kind: Kind, issuer: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", issuer);
    if kind != Kind::Python {
        return text;
    }
    let edits = [
        (
            "    - name: get-sum\n      risk: Low\n",
            "    - name: get-sum\n      risk: Low\n    - name: greet\n      risk: Low\n    - name: test_tool_with_progress\n      scopes: [mcp:tools.call]\n      risk: Medium\n",
        ),
        (
            "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*]",
            "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*, greet, test_tool_with_progress]",
        ),
        (
            "names: [echo, get-sum, get-tiny-image]",
            "names: [echo, get-sum, get-tiny-image, greet]",
        ),
    ];
    let mut text = text;
    for (from, to) in edits {
        assert!(
            text.contains(from),
            "examples/everything/everything.yaml changed: {from:?} is gone"
        );
        text = text.replacen(from, to, 1);
    }
    text
}

struct Stack {
    kind: Kind,
    sidecar: Proc,
    addrs: SidecarAddrs,
    tap: Tap,
    upstream: Upstream,
    idp: Idp,
    config: PathBuf,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

/// upstream ◄── tap ◄── sidecar (examples/everything, audit to a file) ◄── clients; IdP beside.
fn stack(kind: Kind) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, idp) = thread::scope(|scope| {
        let idp = scope.spawn(|| oidc_provider(RESOURCE, 0));
        let upstream = start_upstream(kind, dir.path());
        let idp = idp
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("oidc-provider is needed ({e}): run `make peers`"));
        (upstream, idp)
    });
    let tap = Tap::start(&upstream.url).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("everything.yaml");
    std::fs::write(&config, config_text(kind, &idp.issuer)).unwrap();
    let audit_dir = dir.path().join("audit");
    let (sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &tap.url(),
        "--audit-dir",
        audit_dir.to_str().unwrap(),
    ])
    .unwrap_or_else(|e| {
        panic!("{e}\n(build the binaries first: `cargo build -p mcp-warden-sidecar --bins`)")
    });
    Stack {
        kind,
        sidecar,
        addrs,
        tap,
        upstream,
        idp,
        config,
        audit: audit_dir.join("audit.jsonl"),
        _dir: dir,
    }
}

impl Stack {
    fn url(&self) -> String {
        format!("{}/mcp", self.addrs.base)
    }

    fn host_port(&self) -> String {
        self.addrs.base.trim_start_matches("http://").to_owned()
    }

    fn token(&self, client: &str) -> String {
        let scope = if client == BETA {
            "mcp:tools.list"
        } else {
            "mcp:tools.list mcp:tools.call"
        };
        self.idp
            .token(client, scope)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn connect(&self, client: &str, version: &str) -> Result<Client, String> {
        Client::connect(&self.url(), Some(self.token(client)), version)
    }

    /// Runs `f`; fails when the upstream received any request meanwhile.
    fn quiet<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
        let mark = self.tap.count();
        let out = f();
        let got = self.tap.since(mark);
        ensure!(
            got.is_empty(),
            "{what}: the upstream received {} request(s) for it: {}",
            got.len(),
            describe(&got)
        );
        Ok(out)
    }

    /// Tool runs the Go server recorded (empty for the other upstreams).
    fn ran(&self) -> Vec<String> {
        self.upstream.record.as_deref().map(ran).unwrap_or_default()
    }
}

fn describe(reqs: &[Recorded]) -> String {
    reqs.iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.body()).into_owned();
            format!(
                "{} {} (session {:?}, {} body bytes: {})",
                r.method,
                r.path,
                r.header("mcp-session-id"),
                r.body_len(),
                clip(&text, 200)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_owned();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The tools the Go server's record file says ran.
fn ran(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("ran").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Event {
    id: Option<String>,
    data: String,
}

fn parse_sse(text: &str) -> Vec<Event> {
    let mut events = Vec::new();
    let (mut id, mut data): (Option<String>, Vec<String>) = (None, Vec::new());
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if id.is_some() || !data.is_empty() {
                events.push(Event {
                    id: id.take(),
                    data: data.join("\n"),
                });
                data.clear();
            }
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
        } else if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.strip_prefix(' ').unwrap_or(v).to_owned());
        }
    }
    events
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn is_sse(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
    }

    fn events(&self) -> Vec<Event> {
        if self.is_sse() {
            parse_sse(&self.text())
        } else {
            Vec::new()
        }
    }

    /// Every JSON-RPC message of the answer (a JSON body, an array, or SSE events).
    fn messages(&self) -> Vec<Value> {
        let values: Vec<Value> = if self.is_sse() {
            self.events()
                .iter()
                .filter_map(|e| serde_json::from_str(&e.data).ok())
                .collect()
        } else {
            serde_json::from_slice(&self.body)
                .ok()
                .into_iter()
                .collect()
        };
        values
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items,
                other => vec![other],
            })
            .collect()
    }

    /// The response (result or error) to request `id`.
    /// The response (result or error) to request `id`; ids compare as JSON values, as a
    /// JavaScript client compares them (`1.0` is `1`).
    fn reply(&self, id: &Value) -> Option<Value> {
        let same = |a: &Value| match (a.as_f64(), id.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => a == id,
        };
        self.messages().into_iter().find(|m| {
            m.get("id").is_some_and(same) && (m.get("result").is_some() || m.get("error").is_some())
        })
    }

    /// The first error's code.
    fn error_code(&self) -> Option<i64> {
        self.messages()
            .iter()
            .find_map(|m| m.pointer("/error/code").and_then(Value::as_i64))
    }

    fn summary(&self) -> String {
        format!(
            "HTTP {} [{}] {}",
            self.status,
            self.header("content-type").unwrap_or("-"),
            clip(&self.text(), 400)
        )
    }
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// An answer whose body is still to be read: status, headers, body.
type Opened = (u16, Vec<(String, String)>, ureq::Body);

/// Sends a request; returns the status, headers and the body to read.
fn open(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
) -> Result<Opened, String> {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let agent = agent(timeout);
    let response = match body {
        Some(b) => agent.run(builder.body(b).map_err(|e| e.to_string())?),
        None => agent.run(builder.body(()).map_err(|e| e.to_string())?),
    }
    .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok((status, headers, response.into_body()))
}

fn exchange(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
) -> Result<Resp, String> {
    let (status, headers, body) = open(method, url, headers, body, Some(Duration::from_secs(60)))?;
    let body = body
        .into_with_config()
        .limit(16 << 20)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// One MCP session (or none) with exact control over what is sent.
#[derive(Debug, Clone)]
struct Client {
    url: String,
    token: Option<String>,
    session: Option<String>,
    version: String,
    /// What the answer to `notifications/initialized` was (checked by [`notifications`]).
    initialized: String,
}

impl Client {
    fn connect(url: &str, token: Option<String>, version: &str) -> Result<Self, String> {
        let mut client = Self {
            url: url.to_owned(),
            token,
            session: None,
            version: version.to_owned(),
            initialized: String::new(),
        };
        let init = client.post(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "mcp-warden-adversarial", "version": "0"}}})
            .to_string(),
        )?;
        let result = init
            .reply(&json!(0))
            .and_then(|m| m.get("result").cloned())
            .ok_or_else(|| format!("initialize at {url} failed: {}", init.summary()))?;
        client.session = init.header("mcp-session-id").map(str::to_owned);
        if let Some(v) = result["protocolVersion"].as_str() {
            client.version = v.to_owned();
        }
        // Its answer is checked by the `notifications` case, not here: a sidecar that mangles it
        // must not hide every other case.
        let done = client
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())?;
        client.initialized = done.summary();
        Ok(client)
    }

    fn headers(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            (
                "accept".into(),
                "application/json, text/event-stream".into(),
            ),
        ];
        if let Some(t) = &self.token {
            h.push(("authorization".into(), format!("Bearer {t}")));
        }
        if let Some(s) = &self.session {
            h.push(("mcp-session-id".into(), s.clone()));
            h.push(("mcp-protocol-version".into(), self.version.clone()));
        }
        for (k, v) in extra {
            h.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            if !v.is_empty() {
                h.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        h
    }

    fn post(&self, body: impl Into<Vec<u8>>) -> Result<Resp, String> {
        self.post_with(body, &[])
    }

    /// POST with `extra` headers (an empty value removes the header).
    fn post_with(&self, body: impl Into<Vec<u8>>, extra: &[(&str, &str)]) -> Result<Resp, String> {
        exchange("POST", &self.url, &self.headers(extra), Some(body.into()))
    }

    /// A GET or DELETE.
    fn bodiless(&self, method: &str, extra: &[(&str, &str)]) -> Result<Resp, String> {
        exchange(method, &self.url, &self.headers(extra), None)
    }

    fn open(
        &self,
        method: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Opened, String> {
        open(method, &self.url, &self.headers(extra), body, timeout)
    }

    fn call(&self, id: u64, tool: &str, arguments: &Value) -> Result<Resp, String> {
        self.post(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}})
            .to_string(),
        )
    }
}

fn succeeded(r: &Resp, id: u64) -> bool {
    r.status == 200
        && r.reply(&json!(id)).is_some_and(|m| {
            m.get("result").is_some() && m.pointer("/result/isError") != Some(&json!(true))
        })
}

/// The answer is the sidecar's own refusal: `status`, JSON, JSON-RPC error `code`.
fn expect_error(r: &Resp, status: u16, code: i64, what: &str) -> Result<(), String> {
    ensure!(
        r.status == status
            && r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
            && r.error_code() == Some(code),
        "{what}: expected HTTP {status} with JSON-RPC error {code}, got {}",
        r.summary()
    );
    Ok(())
}

/// A POST over a raw socket: headers first, the body from another thread, the answer read
/// meanwhile (a server that refuses from the headers may answer before the body is sent).
fn raw_post(addr: &str, headers: &[(&str, &str)], body: Arc<Vec<u8>>) -> Result<Resp, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("sending headers: {e}"))?;
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || writer.write_all(&body).is_ok());
    let answer = read_response(&mut stream);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    answer
}

fn read_response(stream: &mut TcpStream) -> Result<Resp, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        ensure!(buf.len() < 65536, "response headers over 64 KiB");
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("reading the response: {e}"))?;
        ensure!(n > 0, "the connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {head}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    while length.is_none_or(|l| body.len() < l) && body.len() < (1 << 20) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    if let Some(l) = length {
        body.truncate(l);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A JSON batch of `tools/call get-env` messages, padded with spaces to exactly `size` bytes.
fn batch_of_calls(size: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut id = 0;
    loop {
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"get-env","arguments":{{}}}}}}"#
        );
        if out.len() + msg.len() + 2 > size {
            break;
        }
        if id > 0 {
            out.push(b',');
        }
        out.extend_from_slice(msg.as_bytes());
        id += 1;
    }
    out.resize(size - 1, b' ');
    out.push(b']');
    out
}

/// An RFC 9068 access token for agent-alpha that names the live IdP and key `k1`, signed by
/// nobody.
fn forged_token(issuer: &str) -> String {
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": "k1"});
    let claims = json!({"iss": issuer, "aud": RESOURCE, "sub": ALPHA, "client_id": ALPHA,
        "iat": now, "exp": now + 300, "jti": "forged", "scope": "mcp:tools.list mcp:tools.call"});
    format!("{}.{}.{}", b64(header), b64(claims), "A".repeat(342))
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

// ------------------------------------------------------------------------------------------
// Audit trail
// ------------------------------------------------------------------------------------------

fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn reason(r: &Value) -> &str {
    r.pointer("/unmapped/mcp_warden/decision/reason")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Records of refusals of callers without a valid token (HTTP 401).
fn unauthenticated_records(path: &Path) -> Vec<Value> {
    audit_records(path)
        .into_iter()
        .filter(|r| {
            r.pointer("/http_response/code") == Some(&json!(401)) || reason(r) == "unauthenticated"
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The report: every case runs, all results are listed, then the test fails if any failed
// ------------------------------------------------------------------------------------------

struct Report {
    label: String,
    results: Vec<(String, Result<(), String>)>,
}

impl Report {
    fn new(label: &str) -> Self {
        Self {
            label: label.to_owned(),
            results: Vec::new(),
        }
    }

    fn case(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) {
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".to_owned()))
        });
        eprintln!(
            "[{}] {} {name} ({:.1?}){}",
            self.label,
            if result.is_ok() { "PASS" } else { "FAIL" },
            started.elapsed(),
            result
                .as_ref()
                .err()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        self.results.push((name.to_owned(), result));
    }

    fn finish(self) {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("  - {name}: {e}")))
            .collect();
        assert!(
            failed.is_empty(),
            "[{}] {} of {} cases failed:\n{}",
            self.label,
            failed.len(),
            self.results.len(),
            failed.join("\n")
        );
    }
}

// ------------------------------------------------------------------------------------------
// Cases against a real upstream
// ------------------------------------------------------------------------------------------

/// A notification's 202 (no body, often no Content-Type) reaches the client unchanged
/// (docs/denials.md: notifications pass; every other upstream status reaches the client).
fn notifications(url: &str, token: String, direct: &str) -> Result<(), String> {
    let upstream = Client::connect(direct, None, VERSION)?;
    let proxied = Client::connect(url, Some(token), VERSION)?;
    ensure!(
        proxied.initialized.starts_with("HTTP 202"),
        "notifications/initialized: the upstream answers {}; through the sidecar: {}",
        upstream.initialized,
        proxied.initialized
    );
    Ok(())
}

/// Ids with a fraction, an exponent or beyond 2^53 − 1 are refused; id 1 lists beta's tools.
fn ids(s: &Stack) -> Result<(), String> {
    let beta = s.connect(BETA, VERSION)?;
    for id in ["1.0", "1e0", "9007199254740992", "-9007199254740992"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
        let r = s.quiet(&format!("tools/list id {id}"), || beta.post(body.clone()))??;
        expect_error(&r, 400, -32600, &format!("tools/list id {id}"))?;
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let mark = s.tap.count();
    let r = beta.post(body)?;
    let got = s.tap.since(mark);
    ensure!(
        got.len() == 1 && got[0].method == "POST" && got[0].body() == body.as_bytes(),
        "tools/list id 1: the upstream should receive exactly this body, byte for byte; it received: {}",
        describe(&got)
    );
    let tools: BTreeSet<String> = r
        .reply(&json!(1))
        .and_then(|m| m.pointer("/result/tools").cloned())
        .and_then(|t| t.as_array().cloned())
        .ok_or_else(|| format!("tools/list id 1: no tool list: {}", r.summary()))?
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        tools == s.kind.beta_tools(),
        "agent-beta's tools/list: expected exactly {:?}, got {tools:?}",
        s.kind.beta_tools()
    );
    Ok(())
}

/// Bodies two JSON readers read differently (mcp-go folds keys and keeps the last duplicate).
const SMUGGLED: &[(&str, &str, i64)] = &[
    (
        "name + Name",
        r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"echo","Name":"get-env","arguments":{"message":"x"}}}"#,
        -32600,
    ),
    (
        "name + NAME",
        r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","NAME":"get-env"}}"#,
        -32600,
    ),
    (
        "name + nAme",
        r#"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"echo","nAme":"get-env"}}"#,
        -32600,
    ),
    (
        "only NAME",
        r#"{"jsonrpc":"2.0","id":14,"method":"tools/call","params":{"NAME":"get-env"}}"#,
        -32600,
    ),
    (
        "name + N\\u0061me (escaped)",
        r#"{"jsonrpc":"2.0","id":15,"method":"tools/call","params":{"name":"echo","N\u0061me":"get-env"}}"#,
        -32600,
    ),
    (
        "taſkId (U+017F) on tasks/get",
        "{\"jsonrpc\":\"2.0\",\"id\":16,\"method\":\"tasks/get\",\"params\":{\"ta\u{17F}kId\":\"task-1\"}}",
        -32600,
    ),
    (
        "ta\\u017fkId (escaped) on tasks/get",
        r#"{"jsonrpc":"2.0","id":17,"method":"tasks/get","params":{"ta\u017fkId":"task-1"}}"#,
        -32600,
    ),
    (
        "tasK (U+212A Kelvin) in params",
        "{\"jsonrpc\":\"2.0\",\"id\":18,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"x\"},\"tas\u{212A}\":{\"ttl\":60000}}}",
        -32600,
    ),
    (
        "params + paramſ (message level)",
        "{\"jsonrpc\":\"2.0\",\"id\":19,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"x\"}},\"param\u{17F}\":{\"name\":\"get-env\"}}",
        -32600,
    ),
    (
        "params + PARAMS",
        r#"{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"PARAMS":{"name":"get-env"}}"#,
        -32600,
    ),
    (
        "jſonrpc (U+017F) + jsonrpc",
        "{\"j\u{17F}onrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"id\":21,\"method\":\"tools/call\",\"params\":{\"name\":\"get-env\"}}",
        -32600,
    ),
    (
        "method + METHOD (tools/call last)",
        r#"{"jsonrpc":"2.0","id":22,"method":"tools/list","METHOD":"tools/call","params":{"name":"get-env"}}"#,
        -32600,
    ),
    (
        "METHOD + method (tools/call first)",
        r#"{"jsonrpc":"2.0","id":23,"METHOD":"tools/call","method":"tools/list","params":{"name":"get-env"}}"#,
        -32600,
    ),
    (
        "id + ID",
        r#"{"jsonrpc":"2.0","id":24,"ID":25,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}"#,
        -32600,
    ),
    (
        "_meta keys folding alike",
        r#"{"jsonrpc":"2.0","id":26,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"},"_meta":{"progressToken":1,"progresstoken":2}}}"#,
        -32600,
    ),
    (
        "duplicate name",
        r#"{"jsonrpc":"2.0","id":27,"method":"tools/call","params":{"name":"echo","name":"get-env"}}"#,
        -32700,
    ),
    (
        "duplicate name, escaped n\\u0061me",
        r#"{"jsonrpc":"2.0","id":28,"method":"tools/call","params":{"name":"echo","n\u0061me":"get-env"}}"#,
        -32700,
    ),
    (
        "duplicate method",
        r#"{"jsonrpc":"2.0","id":29,"method":"tools/list","method":"tools/call","params":{"name":"get-env"}}"#,
        -32700,
    ),
    (
        "duplicate params",
        r#"{"jsonrpc":"2.0","id":30,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}},"params":{"name":"get-env"}}"#,
        -32700,
    ),
    (
        "name: 1",
        r#"{"jsonrpc":"2.0","id":31,"method":"tools/call","params":{"name":1}}"#,
        -32600,
    ),
    (
        "name: [\"get-env\"]",
        r#"{"jsonrpc":"2.0","id":32,"method":"tools/call","params":{"name":["get-env"]}}"#,
        -32600,
    ),
    (
        "taskId: 7",
        r#"{"jsonrpc":"2.0","id":33,"method":"tasks/get","params":{"taskId":7}}"#,
        -32600,
    ),
];

fn smuggling(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, VERSION)?;
    let mut failures = Vec::new();
    for (label, body, code) in SMUGGLED {
        let outcome = s
            .quiet(label, || alpha.post(*body))
            .and_then(|r| r)
            .and_then(|r| expect_error(&r, 400, *code, label));
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    // Control: the same session's plain call runs (the refusals are not a broken session).
    let (tool, args) = s.kind.good_call();
    let r = alpha.call(40, tool, &args)?;
    if !succeeded(&r, 40) {
        failures.push(format!("control call {tool}: {}", r.summary()));
    }
    if s.kind == Kind::Go {
        let ran = s.ran();
        if ran.iter().any(|t| t == "get-env") {
            failures.push(format!(
                "the Go upstream RAN get-env: its record says {ran:?}"
            ));
        }
        if !ran.iter().any(|t| t == "echo") {
            failures.push(format!(
                "the control echo did not run on the Go upstream: {ran:?}"
            ));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

fn batches(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, "2025-03-26")?;
    let same_id = r#"[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"get-env","arguments":{}}}]"#;
    let r = s.quiet("batch with id 5 twice", || alpha.post(same_id))??;
    expect_error(&r, 400, -32600, "batch with id 5 twice")?;
    let same_value = r#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]"#;
    let r = s.quiet("batch with id \"a\" and \"\\u0061\"", || {
        alpha.post(same_value)
    })??;
    expect_error(&r, 400, -32600, "batch with id \"a\" and \"\\u0061\"")?;
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"jsonrpc": "2.0", "id": 100 + i, "method": "tools/list"}))
        .collect();
    let many = Value::Array(many).to_string();
    let r = s.quiet("batch of 101", || alpha.post(many.clone()))??;
    expect_error(&r, 400, -32600, "batch of 101 messages")?;
    Ok(())
}

fn fixation(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, VERSION)?;
    let beta = s.connect(BETA, VERSION)?;
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let expect_404 = |r: &Resp, what: &str| -> Result<(), String> {
        expect_error(r, 404, -32001, what)?;
        let m = r.messages();
        ensure!(
            m.first().and_then(|m| m.get("id")) == Some(&Value::Null),
            "{what}: the id must be null (no oracle): {}",
            r.summary()
        );
        Ok(())
    };
    // An id the sidecar never saw.
    let made_up = "7c1e5f0e-0000-4000-8000-000000000001";
    let r = s.quiet("POST with a made-up session", || {
        beta.post_with(list, &[("mcp-session-id", made_up)])
    })??;
    expect_404(&r, "POST with a made-up Mcp-Session-Id")?;
    // A session the upstream really issued, but not through the sidecar (fixation).
    let direct = Client::connect(&s.upstream.url, None, VERSION)?;
    if let Some(real) = direct.session.as_deref() {
        let r = s.quiet("POST with an upstream-issued session", || {
            beta.post_with(list, &[("mcp-session-id", real)])
        })??;
        expect_404(&r, "POST with a session the upstream issued directly")?;
    }
    // Another principal's session.
    let theirs = alpha.session.clone().ok_or("alpha has no session")?;
    let r = s.quiet("POST with alpha's session as beta", || {
        beta.post_with(list, &[("mcp-session-id", &theirs)])
    })??;
    expect_404(&r, "POST with agent-alpha's session as agent-beta")?;
    let note = r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#;
    let r = s.quiet("notification with a made-up session", || {
        beta.post_with(note, &[("mcp-session-id", made_up)])
    })??;
    expect_error(&r, 404, -32001, "notification with a made-up session")?;
    let r = s.quiet("GET with a made-up session", || {
        beta.bodiless(
            "GET",
            &[("mcp-session-id", made_up), ("accept", "text/event-stream")],
        )
    })??;
    expect_error(&r, 404, -32001, "GET with a made-up session")?;
    let r = s.quiet("DELETE of a made-up session", || {
        beta.bodiless("DELETE", &[("mcp-session-id", made_up)])
    })??;
    expect_error(&r, 404, -32001, "DELETE of a made-up session")?;
    let r = s.quiet("DELETE of alpha's session by beta", || {
        beta.bodiless("DELETE", &[("mcp-session-id", &theirs)])
    })??;
    expect_error(
        &r,
        404,
        -32001,
        "DELETE of agent-alpha's session by agent-beta",
    )?;
    // alpha's session survived.
    let r = alpha.post(list)?;
    ensure!(
        r.status == 200
            && r.reply(&json!(3))
                .is_some_and(|m| m.get("result").is_some()),
        "agent-alpha's session after beta's attempts: {}",
        r.summary()
    );
    Ok(())
}

fn last_event_id(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(ALPHA, VERSION)?;
    let other = s.connect(ALPHA, VERSION)?;
    let beta = s.connect(BETA, VERSION)?;
    let (tool, args) = s.kind.good_call();
    let r = alpha.call(7, tool, &args)?;
    ensure!(succeeded(&r, 7), "{tool} call: {}", r.summary());
    let sealed = r.events().into_iter().find_map(|e| e.id);
    let get = |c: &Client, id: &str| {
        c.bodiless(
            "GET",
            &[("accept", "text/event-stream"), ("last-event-id", id)],
        )
    };
    let mut bad: Vec<(String, &Client)> = vec![
        ("0~0000000000000000".to_owned(), &alpha),
        ("not-issued".to_owned(), &alpha),
    ];
    match &sealed {
        Some(sealed) => {
            let (raw, tag) = sealed.rsplit_once('~').ok_or_else(|| {
                format!("event id {sealed:?} is not sealed (<upstream id>~<MAC>)")
            })?;
            ensure!(
                tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
                "event id {sealed:?}: the MAC is not 16 hex digits"
            );
            bad.push((raw.to_owned(), &alpha));
            bad.push((sealed.clone(), &other));
            bad.push((sealed.clone(), &beta));
            bad.push((format!("{raw}~{}", "0".repeat(16)), &alpha));
        }
        None => eprintln!(
            "[{}] the upstream issues no SSE event ids: only made-up Last-Event-IDs are tried",
            s.kind.name()
        ),
    }
    for (id, client) in &bad {
        let what = format!("GET with Last-Event-ID {id:?}");
        let r = s.quiet(&what, || get(client, id))??;
        expect_error(&r, 400, -32600, &what)?;
    }
    // Control: the session's own sealed id is accepted, and the upstream gets its own id back.
    if let Some(sealed) = &sealed {
        let raw = sealed.rsplit_once('~').unwrap().0;
        let mark = s.tap.count();
        let opened = alpha.open(
            "GET",
            None,
            &[("accept", "text/event-stream"), ("last-event-id", sealed)],
            Some(Duration::from_secs(20)),
        );
        let got = poll(Duration::from_secs(10), || {
            let got = s.tap.since(mark);
            (!got.is_empty()).then_some(got)
        })
        .unwrap_or_default();
        drop(opened);
        ensure!(
            got.iter()
                .any(|g| g.method == "GET" && g.header("last-event-id") == Some(raw)),
            "resuming with the session's own id {sealed:?}: the upstream should get GET with \
             Last-Event-ID {raw:?}; it received: {}",
            describe(&got)
        );
    }
    Ok(())
}

/// The one unauthenticated request; its tally record is checked by [`tally_record`].
fn unauthenticated_batch(s: &Stack) -> Result<(), String> {
    let body = Arc::new(batch_of_calls(1_700_000));
    let r = s.quiet("unauthenticated 1.7 MB batch", || {
        raw_post(
            &s.host_port(),
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("MCP-Protocol-Version", VERSION),
            ],
            body,
        )
    })??;
    expect_error(&r, 401, -31001, "unauthenticated 1.7 MB batch")?;
    ensure!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("resource_metadata=")),
        "401 without the PRM challenge: {:?}",
        r.headers
    );
    let msgs = r.messages();
    ensure!(
        msgs.len() == 1 && msgs[0].get("id") == Some(&Value::Null),
        "the refusal of an unread body must be one error with id null: {}",
        r.summary()
    );
    Ok(())
}

fn tally_record(s: &Stack, sent: Instant) -> Result<(), String> {
    // The tally flushes every 10 s; the file sink follows the spool.
    let found = poll(
        Duration::from_secs(25).saturating_sub(sent.elapsed()),
        || {
            let r = unauthenticated_records(&s.audit);
            (!r.is_empty()).then_some(())
        },
    );
    ensure!(
        found.is_some(),
        "no audit record of the unauthenticated request within 25 s; records: {}",
        audit_records(&s.audit).len()
    );
    thread::sleep(Duration::from_millis(1500));
    let records = unauthenticated_records(&s.audit);
    ensure!(
        records.len() == 1,
        "expected one aggregated record for the one unauthenticated request, got {}: {}",
        records.len(),
        clip(&format!("{records:?}"), 1500)
    );
    let r = &records[0];
    ensure!(
        r["count"] == json!(1) && reason(r) == "unauthenticated",
        "the aggregated record should carry count 1 and reason unauthenticated: {r}"
    );
    ensure!(
        !r.to_string().contains("get-env"),
        "the unread body's tool names reached the audit trail: {r}"
    );
    Ok(())
}

fn flood(s: &Stack) -> Result<(), String> {
    const CALLERS: usize = 64;
    let body = Arc::new(batch_of_calls(4 << 20));
    let pid = s.sidecar.id();
    let before = rss_kib(pid).ok_or("cannot read the sidecar's VmRSS")?;
    let alpha = s.connect(ALPHA, VERSION)?;
    let (tool, args) = s.kind.good_call();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mark = s.tap.count();
    let addr = s.host_port();
    // A third without a token, a third with garbage, a third with a forged JWT naming the real
    // issuer, audience and key id (its signature is not the IdP's).
    let forged = forged_token(&s.idp.issuer);
    let flooders: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (body, addr) = (body.clone(), addr.clone());
            let auth = match i % 3 {
                0 => String::new(),
                1 => "Bearer not-a-jwt".to_owned(),
                _ => format!("Bearer {forged}"),
            };
            thread::spawn(move || {
                let mut headers = vec![
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json, text/event-stream"),
                ];
                if !auth.is_empty() {
                    headers.push(("Authorization", &auth));
                }
                raw_post(&addr, &headers, body)
            })
        })
        .collect();
    let mut during = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 50;
    while during.len() < 4 && Instant::now() < deadline {
        id += 1;
        during.push((id, alpha.call(id, tool, &args)));
        if flooders.iter().all(|h| h.is_finished()) {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let answers: Vec<Result<Resp, String>> =
        flooders.into_iter().map(|h| h.join().unwrap()).collect();
    let after = alpha.call(60, tool, &args);
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "[{}] flood: sidecar VmRSS {} KiB before, peak {} KiB (limit {RSS_LIMIT_KIB} KiB)",
        s.kind.name(),
        before,
        peak
    );
    let mut failures = Vec::new();
    if peak >= RSS_LIMIT_KIB {
        failures.push(format!(
            "the sidecar's RSS peaked at {peak} KiB (≥ 128 MiB)"
        ));
    }
    let statuses: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("error ({e})"),
        })
        .collect();
    let refused = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|r| r.status == 401))
        .count();
    if refused != CALLERS {
        failures.push(format!(
            "{refused} of {CALLERS} unauthenticated POSTs got 401: {statuses:?}"
        ));
    }
    for (id, r) in &during {
        match r {
            Ok(r) if succeeded(r, *id) => {}
            Ok(r) => failures.push(format!("good call during the flood: {}", r.summary())),
            Err(e) => failures.push(format!("good call during the flood: {e}")),
        }
    }
    if during.is_empty() {
        failures.push("no good call was made during the flood".to_owned());
    }
    match after {
        Ok(r) if succeeded(&r, 60) => {}
        Ok(r) => failures.push(format!("good call after the flood: {}", r.summary())),
        Err(e) => failures.push(format!("good call after the flood: {e}")),
    }
    let got = s.tap.since(mark);
    let foreign: Vec<Recorded> = got
        .into_iter()
        .filter(|g| g.body_len() > 65536 || lossy(&g.body()).contains("get-env"))
        .collect();
    if !foreign.is_empty() {
        failures.push(format!(
            "the upstream received flood traffic: {}",
            describe(&foreign)
        ));
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

/// The flood's 64 refusals are counted, not recorded one by one: one record per reason (missing,
/// invalid) and interval, counts summing to 64, besides the first request's record.
fn flood_tally(s: &Stack) -> Result<(), String> {
    let total = |records: &[Value]| -> u64 {
        records
            .iter()
            .map(|r| r["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let settled = poll(Duration::from_secs(25), || {
        let records = unauthenticated_records(&s.audit);
        (total(&records) >= 65).then_some(records)
    });
    let records = settled.unwrap_or_else(|| unauthenticated_records(&s.audit));
    let counts: Vec<Value> = records
        .iter()
        .map(|r| {
            json!([
                r["count"],
                r.pointer("/unmapped/mcp_warden/decision/detail")
            ])
        })
        .collect();
    eprintln!(
        "[{}] tokenless refusals in the audit trail: {counts:?}",
        s.kind.name()
    );
    ensure!(
        total(&records) == 65 && records.len() <= 7,
        "1 + 64 refused requests: expected ≤ 7 aggregated records (per reason and interval) whose counts sum to 65, got {} records with counts {counts:?}",
        records.len()
    );
    Ok(())
}

/// Streams agent-alpha holds end within 1 s of the reload that suspends it.
fn revocation(s: &Stack) -> Result<(), String> {
    struct End {
        at: Instant,
        text: String,
    }
    fn watch(body: ureq::Body, lines: Arc<AtomicUsize>) -> mpsc::Receiver<End> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(body.into_reader());
            let mut text = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        lines.fetch_add(1, Ordering::Relaxed);
                        if text.len() < (1 << 20) {
                            text.push_str(&line);
                        }
                    }
                }
            }
            let _ = tx.send(End {
                at: Instant::now(),
                text,
            });
        });
        rx
    }
    let alpha = s.connect(ALPHA, VERSION)?;
    let mark = s.tap.count();
    let mut streams = Vec::new();
    let (status, headers, body) =
        alpha.open("GET", None, &[("accept", "text/event-stream")], None)?;
    let sse = |h: &[(String, String)]| {
        h.iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"))
    };
    ensure!(
        status == 200 && sse(&headers),
        "GET stream: HTTP {status} {headers:?}"
    );
    streams.push((
        "GET stream",
        None,
        watch(body, Arc::default()),
        Arc::new(AtomicUsize::new(1)),
    ));
    if let Some((tool, args)) = s.kind.long_call() {
        let call = json!({"jsonrpc": "2.0", "id": 90, "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": {"progressToken": "p-90"}}});
        let (status, headers, body) =
            alpha.open("POST", Some(call.to_string().into_bytes()), &[], None)?;
        ensure!(
            status == 200 && sse(&headers),
            "{tool}: HTTP {status} {headers:?}"
        );
        let lines = Arc::new(AtomicUsize::new(0));
        streams.push((
            "tools/call stream",
            Some(tool),
            watch(body, lines.clone()),
            lines,
        ));
    }
    // Both reached the upstream, and the call is running (its first progress event arrived).
    let reached = poll(Duration::from_secs(15), || {
        let got = s.tap.since(mark);
        let get = got.iter().any(|g| g.method == "GET");
        let call = streams.len() == 1 || got.iter().any(|g| lossy(&g.body()).contains("\"id\":90"));
        let running = streams
            .iter()
            .all(|(_, _, _, lines)| lines.load(Ordering::Relaxed) > 0);
        (get && call && running).then_some(())
    });
    ensure!(
        reached.is_some(),
        "the streams did not open upstream within 15 s: {}",
        describe(&s.tap.since(mark))
    );
    thread::sleep(Duration::from_millis(300));
    let version =
        enforced_version(&s.addrs.admin).ok_or("the sidecar reports no config version")?;
    let text = std::fs::read_to_string(&s.config).unwrap();
    ensure!(
        text.contains(ALPHA_LINE),
        "agent-alpha's description line is not in the config"
    );
    let suspended = text.replacen(
        ALPHA_LINE,
        &format!(
            "{ALPHA_LINE}  suspended: true\n  suspensionReason: adversarial test of open streams\n"
        ),
        1,
    );
    let denied_before = audit_records(&s.audit)
        .iter()
        .filter(|r| reason(r) == "suspended")
        .count();
    let written = Instant::now();
    std::fs::write(&s.config, suspended).unwrap();
    let seen = poll(Duration::from_secs(10), || {
        (enforced_version(&s.addrs.admin).as_deref() != Some(version.as_str())).then(Instant::now)
    })
    .ok_or("the sidecar did not report a new config version within 10 s of the write")?;
    let mut failures = Vec::new();
    let mut timings = Vec::new();
    for (label, tool, rx, _) in &streams {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(end) => {
                ensure!(
                    end.at > written,
                    "{label} ended before the config was written"
                );
                let after_reload = end.at.saturating_duration_since(seen);
                timings.push(format!(
                    "{label}: ended {:?} after the write, {after_reload:?} after the new version was seen",
                    end.at - written
                ));
                if after_reload > Duration::from_secs(1) {
                    failures.push(format!(
                        "{label} ended {after_reload:?} after the reload (> 1 s)"
                    ));
                }
                if tool.is_some() {
                    let answered = parse_sse(&end.text).iter().any(|e| {
                        serde_json::from_str::<Value>(&e.data).is_ok_and(|m| {
                            m.get("id") == Some(&json!(90)) && m.get("result").is_some()
                        })
                    });
                    if answered {
                        failures.push(format!(
                            "{label}: the suspended caller still got the tool's result"
                        ));
                    }
                }
            }
            Err(_) => failures.push(format!(
                "{label} was still open 5 s after the reload ({:?} after the write)",
                written.elapsed()
            )),
        }
    }
    eprintln!(
        "[{}] revocation: new version seen {:?} after the write; {}",
        s.kind.name(),
        seen - written,
        timings.join("; ")
    );
    let records = poll(Duration::from_secs(5), || {
        let n = audit_records(&s.audit)
            .iter()
            .filter(|r| reason(r) == "suspended")
            .count();
        (n >= denied_before + streams.len()).then_some(n)
    });
    if records.is_none() {
        let n = audit_records(&s.audit)
            .iter()
            .filter(|r| reason(r) == "suspended")
            .count();
        failures.push(format!(
            "expected a Denied (suspended) audit record per revoked stream ({}), found {}",
            streams.len(),
            n - denied_before
        ));
    }
    let list = r#"{"jsonrpc":"2.0","id":91,"method":"tools/list"}"#;
    match s.quiet("suspended alpha's next request", || alpha.post(list)) {
        Ok(Ok(r)) => {
            if let Err(e) = expect_error(&r, 403, -31004, "suspended alpha's next request") {
                failures.push(e);
            }
        }
        Ok(Err(e)) | Err(e) => failures.push(e),
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

fn verify_audit(s: &Stack) -> Result<(), String> {
    let bin = workspace_bin("mcp-warden")?;
    let out = Command::new(bin)
        .args(["audit", "verify"])
        .arg(&s.audit)
        .output()
        .map_err(|e| e.to_string())?;
    ensure!(
        out.status.success(),
        "mcp-warden audit verify {}: {}\n{}",
        s.audit.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn adversarial(kind: Kind) {
    let s = stack(kind);
    let mut report = Report::new(kind.name());
    let sent = Instant::now();
    report.case(
        "no token: 1.7 MB batch → 401 id null, not forwarded",
        || unauthenticated_batch(&s),
    );
    report.case(
        "notifications/initialized: the upstream's 202 reaches the client",
        || notifications(&s.url(), s.token(ALPHA), &s.upstream.url),
    );
    report.case(
        "ids 1.0, 1e0, ±2^53 → 400 -32600; id 1 lists exactly beta's tools",
        || ids(&s),
    );
    report.case(
        "folded, duplicate, mistyped governed keys → 400, nothing forwarded",
        || smuggling(&s),
    );
    report.case(
        "batches: one id twice, 101 messages → 400, nothing forwarded",
        || batches(&s),
    );
    report.case(
        "sessions not issued to the caller → 404 -32001, nothing forwarded",
        || fixation(&s),
    );
    report.case(
        "Last-Event-ID not issued to this caller and session → 400",
        || last_event_id(&s),
    );
    report.case("audit: the 401 is one aggregated record (count 1)", || {
        tally_record(&s, sent)
    });
    report.case(
        "flood: 64 × 4 MiB without a valid token; RSS < 128 MiB; good caller served",
        || flood(&s),
    );
    report.case(
        "revocation ends open streams within 1 s of the reload",
        || revocation(&s),
    );
    report.case(
        "audit: the flood is counted, not recorded one by one",
        || flood_tally(&s),
    );
    report.case("audit trail verifies (mcp-warden audit verify)", || {
        verify_audit(&s)
    });
    report.finish();
}

#[test]
fn adversarial_server_everything() {
    adversarial(Kind::Everything);
}

#[test]
fn adversarial_python_fixture() {
    adversarial(Kind::Python);
}

#[test]
fn adversarial_go_mcp_go() {
    adversarial(Kind::Go);
}

/// Without the sidecar, mcp-go runs get-env for the smuggled bodies: the cases are real.
#[test]
fn go_server_alone_runs_get_env_for_smuggled_keys() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.jsonl");
    let (_go, url) = go_server(&record);
    let mut ran_env = Vec::new();
    for (label, body, _) in SMUGGLED {
        let client = Client::connect(&url, None, VERSION).unwrap_or_else(|e| panic!("{e}"));
        let before = ran(&record).len();
        let r = client.post(*body).unwrap();
        if ran(&record)[before..].iter().any(|t| t == "get-env") {
            assert!(r.text().contains("ENV-SECRET"), "{label}: {}", r.summary());
            ran_env.push(*label);
        }
    }
    eprintln!("mcp-go alone runs get-env for: {ran_env:?}");
    for must in [
        "name + Name",
        "name + NAME",
        "duplicate name",
        "params + paramſ (message level)",
    ] {
        assert!(
            ran_env.contains(&must),
            "mcp-go should run get-env for {must:?} (tests/peers/go-server/smuggle_test.go); it did for {ran_env:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// A hostile upstream: answers the sidecar must not pass on as they are
// ------------------------------------------------------------------------------------------

const TOOLS_SHOWN: &str = r#"{"name":"echo","description":"Echoes back the input","inputSchema":{"type":"object"}},{"name":"get-sum","description":"Adds","inputSchema":{"type":"object"}},{"name":"get-tiny-image","description":"A PNG","inputSchema":{"type":"object"}}"#;
const GET_ENV: &str =
    r#"{"name":"get-env","description":"Dumps the environment","inputSchema":{"type":"object"}}"#;

fn all_tools() -> String {
    format!("[{TOOLS_SHOWN},{GET_ENV}]")
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` as a real gzip member (deflate "stored" blocks): any client would inflate it.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let blocks: Vec<&[u8]> = data.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = u16::try_from(block.len()).unwrap();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

fn answer(content_type: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> http::Response<tap::Body> {
    let mut b = http::Response::builder()
        .status(200)
        .header("content-type", content_type);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(tap::full(body)).unwrap()
}

/// The tools/list answer for `mode` (the request's id is 1).
fn hostile_list(mode: char) -> http::Response<tap::Body> {
    let ok = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":{}}}}}"#,
            all_tools()
        )
    };
    let json = "application/json";
    match mode {
        'a' => {
            let mut body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{TOOLS_SHOWN},{{"name":"get-env","description":"Dumps "#).into_bytes();
            body.extend_from_slice(b"\xff\xfe");
            body.extend_from_slice(br#" the environment","inputSchema":{"type":"object"}}]}}"#);
            answer(json, body, &[])
        }
        'b' => answer(
            json,
            [b"\xEF\xBB\xBF".as_slice(), ok("1").as_bytes()].concat(),
            &[],
        ),
        'c' => answer(
            json,
            gzip(ok("1").as_bytes()),
            &[("content-encoding", "gzip")],
        ),
        'd' => answer("text/plain", ok("1").into_bytes(), &[]),
        'e' => answer(json, ok("2").into_bytes(), &[]),
        'f' => answer(json, ok("1.0").into_bytes(), &[]),
        'g' => {
            let event = format!(
                "event: message\nid: ev-1\ndata: {{\"id\":1,\"method\":\"x\",\"result\":{{\"tools\":{}}}}}\n\n",
                all_tools()
            );
            answer("text/event-stream", event.into_bytes(), &[])
        }
        'h' => answer(
            json,
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{TOOLS_SHOWN}],"tools":{}}}}}"#,
                all_tools()
            )
            .into_bytes(),
            &[],
        ),
        _ => answer(json, ok("1").into_bytes(), &[]),
    }
}

async fn hostile(
    req: http::Request<hyper::body::Incoming>,
    mode: Arc<Mutex<char>>,
    served: Arc<AtomicUsize>,
    sessions: Arc<AtomicUsize>,
) -> http::Response<tap::Body> {
    if req.method() != http::Method::POST {
        return http::Response::builder()
            .status(405)
            .body(tap::full(""))
            .unwrap();
    }
    let bytes = http_body_util::Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let msg: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let id = msg.get("id").cloned();
    match (msg["method"].as_str(), id) {
        (_, None) => http::Response::builder()
            .status(202)
            .body(tap::full(""))
            .unwrap(),
        (Some("initialize"), Some(id)) => {
            let n = sessions.fetch_add(1, Ordering::Relaxed);
            let body = json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": msg.pointer("/params/protocolVersion").cloned().unwrap_or(json!(VERSION)),
                "capabilities": {"tools": {}}, "serverInfo": {"name": "hostile", "version": "0"}}});
            answer(
                "application/json",
                body.to_string().into_bytes(),
                &[("mcp-session-id", &format!("hostile-{n}"))],
            )
        }
        (Some("tools/list"), Some(_)) => {
            served.fetch_add(1, Ordering::Relaxed);
            let m = *mode.lock().unwrap();
            hostile_list(m)
        }
        (_, Some(id)) => {
            let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
            answer("application/json", body.to_string().into_bytes(), &[])
        }
    }
}

#[test]
fn hostile_upstream_answers_never_show_a_hidden_tool() {
    let mode = Arc::new(Mutex::new('0'));
    let served = Arc::new(AtomicUsize::new(0));
    let server = {
        let (mode, served, sessions) =
            (mode.clone(), served.clone(), Arc::new(AtomicUsize::new(0)));
        tap::serve(move |req| hostile(req, mode.clone(), served.clone(), sessions.clone()))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let idp = oidc_provider(RESOURCE, 0)
        .unwrap_or_else(|e| panic!("oidc-provider is needed ({e}): run `make peers`"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("everything.yaml");
    std::fs::write(&config, config_text(Kind::Everything, &idp.issuer)).unwrap();
    let (_sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &format!("http://{}/mcp", server.addr),
    ])
    .unwrap_or_else(|e| {
        panic!("{e}\n(build the binaries first: `cargo build -p mcp-warden-sidecar --bins`)")
    });
    let url = format!("{}/mcp", addrs.base);
    let token = idp
        .token(BETA, "mcp:tools.list")
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = Kind::Everything.beta_tools();
    // (mode, label, a filtered list is acceptable, no answer at all is acceptable)
    let modes = [
        (
            '0',
            "control: a well-formed full list → filtered",
            true,
            false,
        ),
        (
            'a',
            "(a) invalid UTF-8 in a tool description → withheld",
            false,
            false,
        ),
        (
            'b',
            "(b) a UTF-8 BOM before the JSON → withheld",
            false,
            false,
        ),
        ('c', "(c) Content-Encoding: gzip → withheld", false, false),
        ('d', "(d) Content-Type: text/plain → withheld", false, false),
        (
            'e',
            "(e) the full list under id 2 for request 1 → withheld",
            false,
            false,
        ),
        (
            'f',
            "(f) the full list under id 1.0 → filtered or withheld",
            true,
            false,
        ),
        (
            'g',
            "(g) SSE event {id:1, method:x, result:{tools}} → filtered, dropped or withheld",
            true,
            true,
        ),
        (
            'h',
            "(h) \"tools\" twice in the result → withheld",
            false,
            false,
        ),
    ];
    let mut report = Report::new("hostile upstream");
    let direct = format!("http://{}/mcp", server.addr);
    report.case(
        "notifications/initialized: the upstream's 202 reaches the client",
        || notifications(&url, token.clone(), &direct),
    );
    for (m, label, filtered_ok, dropped_ok) in modes {
        report.case(label, || {
            *mode.lock().unwrap() = m;
            let beta = Client::connect(&url, Some(token.clone()), VERSION)?;
            let before = served.load(Ordering::Relaxed);
            let r = beta.post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)?;
            ensure!(
                served.load(Ordering::Relaxed) == before + 1,
                "the hostile upstream did not receive the tools/list"
            );
            ensure!(
                !r.text().contains("get-env"),
                "agent-beta SAW get-env: {}",
                r.summary()
            );
            ensure!(
                r.header("content-encoding").is_none_or(|e| e == "identity"),
                "a compressed answer reached the client unread: {:?}",
                r.headers
            );
            match r.reply(&json!(1)) {
                Some(reply) if reply.get("result").is_some() => {
                    let tools: BTreeSet<String> = reply
                        .pointer("/result/tools")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t["name"].as_str().map(str::to_owned))
                        .collect();
                    ensure!(
                        filtered_ok,
                        "expected the answer withheld (-32603), got a list: {}",
                        r.summary()
                    );
                    ensure!(tools == shown, "expected exactly {shown:?}, got {tools:?}");
                    eprintln!("[hostile upstream] {label}: filtered (id {})", reply["id"]);
                }
                Some(reply) => {
                    let code = reply.pointer("/error/code").and_then(Value::as_i64);
                    let message = reply
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    ensure!(
                        code == Some(-32603) && message.contains("withheld"),
                        "expected -32603 \"… withheld …\", got {}",
                        r.summary()
                    );
                    ensure!(
                        m != '0',
                        "the well-formed list was withheld: {}",
                        r.summary()
                    );
                    eprintln!(
                        "[hostile upstream] {label}: withheld (HTTP {}: {message})",
                        r.status
                    );
                }
                None => {
                    ensure!(dropped_ok, "no answer to request 1: {}", r.summary());
                    eprintln!("[hostile upstream] {label}: dropped ({})", r.summary());
                }
            }
            Ok(())
        });
    }
    report.finish();
}
