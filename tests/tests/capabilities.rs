//! Every MCP capability governed, black box (issue 19): the real `mcp-warden-sidecar` with the
//! demo's policies (`examples/everything`), real tokens from oidc-provider, and two real
//! upstreams, server-everything (TypeScript SDK) and `tests/peers/fixture_server.py` (Python SDK,
//! its lists paged two entries a page), each behind a recording tap.
//!
//! ```text
//! agent-alpha / agent-beta (ureq) ──► sidecar ──► tap (records every request) ──► upstream
//!                                        └── examples/everything (+ the Python fixture's
//!                                            resources, prompts and tools)
//! ```
//!
//! What each case proves is in `docs/denials.md` ("Resources, prompts and completions", "Lists",
//! "Resource updates", "Server requests"): lists filtered per caller (SSE and JSON answers,
//! pagination cursors kept), reads, prompts and completions decided, refusals never reaching the
//! upstream, resource updates only for readable URIs, server requests relayed only where
//! `McpTool.spec.serverRequests` allows and only on the answer stream of a pending request of
//! the caller (a refused one answered to the upstream with −32601, so the server's tool ends).
//! Each per-upstream test runs every case and lists them all (PASS/FAIL) before failing.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{Idp, Proc, oidc_provider, peer_file, poll, repo_root};
use mcp_warden_tests::{
    procs::{SidecarAddrs, enforced_version, server_everything, sidecar},
    tap::{Recorded, Tap},
};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    panic::AssertUnwindSafe,
    path::PathBuf,
    process::Command,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// The resource (token audience) of examples/everything.
const RESOURCE: &str = "http://127.0.0.1:9401/mcp";
const LEGACY: &str = "2025-06-18";
const MODERN: &str = "2026-07-28";
const ALPHA: &str = "agent-alpha";
const BETA: &str = "agent-beta";
const FULL_SCOPE: &str = "mcp:tools.list mcp:tools.call";
const SERVER_REQUESTS: &str = "  serverRequests: [Elicitation, Sampling]\n";
/// The reloaded McpTool of the server-request cases: Sampling refused, Roots allowed (so a
/// roots/list on a GET stream is refused only for being tied to no request).
const SERVER_REQUESTS_NO_SAMPLING: &str = "  serverRequests: [Elicitation, Roots]\n";

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

// ------------------------------------------------------------------------------------------
// The two upstreams, what examples/everything grants on each
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Everything,
    Python,
}

/// One upstream's names for the cases.
struct Names {
    /// Readable by agent-beta: a static resource and an instance of a granted template.
    readable: [&'static str; 2],
    /// Not readable by agent-beta (alpha may read it).
    unreadable: &'static str,
    /// Granted to agent-alpha, but its entry needs mcp:tools.call (a step-up for a token
    /// without it).
    scoped: &'static str,
    /// A prompt agent-beta may get, one it may not.
    prompt: &'static str,
    hidden_prompt: &'static str,
    /// A completion agent-beta may ask for: (prompt, argument).
    completion: (&'static str, &'static str),
    /// Templates: agent-beta's, and one it may not complete (None when the upstream has one).
    template: &'static str,
    template_argument: &'static str,
    hidden_template: Option<&'static str>,
    /// The sampling tool and its arguments.
    sampling: (&'static str, fn() -> Value),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Everything => "server-everything",
            Kind::Python => "python-fixture",
        }
    }

    fn names(self) -> Names {
        match self {
            Kind::Everything => Names {
                readable: [
                    "demo://resource/static/document/instructions.md",
                    "demo://resource/dynamic/text/7",
                ],
                unreadable: "demo://resource/static/document/architecture.md",
                scoped: "demo://resource/dynamic/blob/1",
                prompt: "simple-prompt",
                hidden_prompt: "args-prompt",
                completion: ("completable-prompt", "department"),
                template: "demo://resource/dynamic/text/{resourceId}",
                template_argument: "resourceId",
                hidden_template: Some("demo://resource/dynamic/blob/{resourceId}"),
                sampling: (
                    "trigger-sampling-request",
                    || json!({"prompt": "hello", "maxTokens": 10}),
                ),
            },
            Kind::Python => Names {
                readable: ["test://static-text", "test://template/7/data"],
                unreadable: "test://watched-resource",
                scoped: "test://static-binary",
                prompt: "test_simple_prompt",
                hidden_prompt: "test_prompt_with_embedded_resource",
                completion: ("test_prompt_with_arguments", "arg1"),
                template: "test://template/{id}/data",
                template_argument: "id",
                hidden_template: None,
                sampling: ("test_sampling", || json!({"prompt": "hello"})),
            },
        }
    }

    /// Whether a listed entry (uri, uriTemplate or prompt name) is shown to agent-beta.
    fn beta_sees(self, list: List, name: &str) -> bool {
        let shown: &[&str] = match (self, list) {
            (Kind::Everything, List::Resources) => &[
                "demo://resource/static/document/instructions.md",
                "demo://resource/static/document/features.md",
            ],
            (Kind::Everything, List::Templates) => &["demo://resource/dynamic/text/{resourceId}"],
            (Kind::Everything, List::Prompts) => &["simple-prompt", "completable-prompt"],
            (Kind::Python, List::Resources) => &["test://static-text"],
            (Kind::Python, List::Templates) => &["test://template/{id}/data"],
            (Kind::Python, List::Prompts) => &["test_simple_prompt", "test_prompt_with_arguments"],
        };
        shown.contains(&name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Resources,
    Templates,
    Prompts,
}

impl List {
    const ALL: [List; 3] = [List::Resources, List::Templates, List::Prompts];

    fn method(self) -> &'static str {
        match self {
            List::Resources => "resources/list",
            List::Templates => "resources/templates/list",
            List::Prompts => "prompts/list",
        }
    }

    /// The result member and each element's key.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            List::Resources => ("resources", "uri"),
            List::Templates => ("resourceTemplates", "uriTemplate"),
            List::Prompts => ("prompts", "name"),
        }
    }
}

fn python_fixture() -> (Proc, String) {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| {
        panic!("the Python fixture needs the peers' venv with `mcp` ({e}): run `make peers`")
    });
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/fixture_server.py"))
        .arg("0")
        // Two entries a page: the filter must keep every page's nextCursor.
        .env("FIXTURE_PAGE_SIZE", "2");
    Proc::spawn("fixture_server.py", cmd, Duration::from_secs(60), |line| {
        line.strip_prefix("READY ").map(str::to_owned)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `from` must be in `text` once; it becomes `to`.
fn edit(text: &mut String, from: &str, to: &str) {
    assert!(
        text.matches(from).count() == 1,
        "examples/everything/everything.yaml changed: {from:?} is not there exactly once"
    );
    *text = text.replacen(from, to, 1);
}

/// examples/everything for the live IdP; for the Python fixture, its tools, resources and
/// prompts declared and granted like server-everything's.
fn config_text(kind: Kind, issuer: &str) -> String {
    let mut text = std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", issuer);
    // basic-tools allows agent-beta 5 calls a minute (the demo's 429); reads, gets and
    // completions count too, and these cases make more: they test decisions, not quotas.
    edit(
        &mut text,
        "  rateLimit:\n    requests: 5\n    period: 1m\n",
        "  rateLimit:\n    requests: 100\n    period: 1m\n",
    );
    if kind == Kind::Everything {
        return text;
    }
    edit(
        &mut text,
        "    - name: get-sum\n      risk: Low\n",
        "    - name: get-sum\n      risk: Low\n    - name: greet\n      risk: Low\n    \
         - name: test_resource_updated\n      risk: Low\n    - name: test_sampling\n      \
         scopes: [mcp:tools.call]\n      risk: Medium\n    - name: test_detached_request\n      \
         scopes: [mcp:tools.call]\n      risk: Medium\n",
    );
    edit(
        &mut text,
        "\n  resources:\n",
        "\n  resources:\n    - uri: test://static-text\n      risk: Low\n    \
         - uri: test://static-binary\n      scopes: [mcp:tools.call]\n      risk: Medium\n    \
         - uri: test://watched-resource\n      risk: Low\n    \
         - uri: test://template/{id}/data\n      risk: Low\n",
    );
    edit(
        &mut text,
        "\n  prompts:\n",
        "\n  prompts:\n    - name: test_*\n      risk: Low\n",
    );
    edit(
        &mut text,
        "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*]",
        "names: [echo, get-*, gzip-file-as-resource, trigger-*, toggle-*, greet, test_*]",
    );
    edit(
        &mut text,
        r#"resources: ["demo://*"]"#,
        r#"resources: ["demo://*", "test://*"]"#,
    );
    edit(
        &mut text,
        "names: [echo, get-sum, get-tiny-image]",
        "names: [echo, get-sum, get-tiny-image, greet, test_resource_updated]",
    );
    edit(
        &mut text,
        "        - demo://resource/dynamic/text/{resourceId}\n",
        "        - demo://resource/dynamic/text/{resourceId}\n        - test://static-text\n        \
         - test://template/{id}/data\n",
    );
    edit(
        &mut text,
        "prompts: [simple-prompt, completable-prompt]",
        "prompts: [simple-prompt, completable-prompt, test_simple_prompt, test_prompt_with_arguments]",
    );
    text
}

struct Stack {
    kind: Kind,
    _sidecar: Proc,
    addrs: SidecarAddrs,
    tap: Tap,
    _upstream: Proc,
    upstream: String,
    idp: Idp,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// upstream ◄── tap ◄── sidecar (examples/everything) ◄── clients; IdP beside.
fn stack(kind: Kind) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let ((upstream_proc, upstream), idp) = thread::scope(|scope| {
        let idp = scope.spawn(|| oidc_provider(RESOURCE, 0));
        let upstream = match kind {
            Kind::Everything => server_everything()
                .unwrap_or_else(|e| panic!("server-everything is needed ({e}): run `make peers`")),
            Kind::Python => python_fixture(),
        };
        let idp = idp
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("oidc-provider is needed ({e}): run `make peers`"));
        (upstream, idp)
    });
    let tap = Tap::start(&upstream).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.path().join("everything.yaml");
    std::fs::write(&config, config_text(kind, &idp.issuer)).unwrap();
    let (sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &tap.url(),
    ])
    .unwrap_or_else(|e| {
        panic!("{e}\n(build the binaries first: `cargo build -p mcp-warden-sidecar --bins`)")
    });
    Stack {
        kind,
        _sidecar: sidecar,
        addrs,
        tap,
        _upstream: upstream_proc,
        upstream,
        idp,
        config,
        _dir: dir,
    }
}

impl Stack {
    fn url(&self) -> String {
        format!("{}/mcp", self.addrs.base)
    }

    /// The scopes op.mjs gives each agent: beta only mcp:tools.list.
    fn token(&self, client: &str, scope: &str) -> String {
        self.idp
            .token(client, scope)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn connect(&self, client: &str, capabilities: Value) -> Result<Client, String> {
        let scope = if client == BETA {
            "mcp:tools.list"
        } else {
            FULL_SCOPE
        };
        Client::connect(&self.url(), Some(self.token(client, scope)), capabilities)
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

    /// Rewrites the McpTool's serverRequests and waits until the sidecar enforces it.
    fn server_requests(&self, from: &str, to: &str) -> Result<(), String> {
        let before = enforced_version(&self.addrs.admin).ok_or("no config version reported")?;
        let text = std::fs::read_to_string(&self.config).unwrap();
        ensure!(text.contains(from), "the config has no {from:?}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
        poll(Duration::from_secs(15), || {
            enforced_version(&self.addrs.admin).is_some_and(|v| v != before)
        })
        .ok_or_else(|| format!("the sidecar did not install {to:?} within 15 s"))?;
        Ok(())
    }
}

fn describe(reqs: &[Recorded]) -> String {
    reqs.iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.body()).into_owned();
            format!("{} {} ({})", r.method, r.path, clip(&text, 300))
        })
        .collect::<Vec<_>>()
        .join("; ")
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

// ------------------------------------------------------------------------------------------
// HTTP: whole answers and streamed ones
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// The JSON-RPC messages of an SSE text's `data:` fields.
fn sse_messages(text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() {
                out.extend(serde_json::from_str::<Value>(&data.join("\n")).ok());
                data.clear();
            }
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    out
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

    fn messages(&self) -> Vec<Value> {
        if self.is_sse() {
            sse_messages(&self.text())
        } else {
            serde_json::from_slice(&self.body).into_iter().collect()
        }
    }

    /// The response (result or error) to request `id`.
    fn reply(&self, id: u64) -> Option<Value> {
        self.messages().into_iter().find(|m| {
            m.get("id") == Some(&json!(id))
                && (m.get("result").is_some() || m.get("error").is_some())
        })
    }

    fn result(&self, id: u64) -> Result<Value, String> {
        self.reply(id)
            .and_then(|m| m.get("result").cloned())
            .filter(|_| self.status == 200)
            .ok_or_else(|| format!("no result for request {id}: {}", self.summary()))
    }

    fn summary(&self) -> String {
        format!(
            "HTTP {} [{}] {}",
            self.status,
            self.header("content-type").unwrap_or("-"),
            clip(&self.text(), 500)
        )
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

type Opened = (u16, Vec<(String, String)>, ureq::Body);

fn open(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
    timeout: Duration,
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
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_owned(), v)
        })
        .collect();
    Ok((status, headers, response.into_body()))
}

/// An SSE answer read event by event on its own thread (bounded by the agent's timeout).
struct Stream {
    status: u16,
    events: mpsc::Receiver<Value>,
}

impl Stream {
    fn start(opened: Opened) -> Self {
        let (status, _, body) = opened;
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            let reader = BufReader::new(body.into_reader());
            let mut data = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if line.is_empty() {
                    if let Ok(v) = serde_json::from_str::<Value>(&data)
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                    data.clear();
                } else if let Some(v) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
        });
        Self { status, events }
    }

    /// Messages until `done` says so (that one included) or `within` passes.
    fn until(&self, within: Duration, mut done: impl FnMut(&Value) -> bool) -> (Vec<Value>, bool) {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(m) => {
                    let stop = done(&m);
                    seen.push(m);
                    if stop {
                        return (seen, true);
                    }
                }
                Err(_) => break,
            }
        }
        (seen, false)
    }
}

/// One MCP session (2025-06-18), or modern requests without one.
#[derive(Debug, Clone)]
struct Client {
    url: String,
    token: Option<String>,
    session: Option<String>,
}

impl Client {
    fn connect(url: &str, token: Option<String>, capabilities: Value) -> Result<Self, String> {
        let mut client = Self {
            url: url.to_owned(),
            token,
            session: None,
        };
        let init = client.post(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": LEGACY, "capabilities": capabilities,
                "clientInfo": {"name": "mcp-warden-capabilities", "version": "0"}}})
            .to_string(),
        )?;
        init.result(0)
            .map_err(|e| format!("initialize at {url}: {e}"))?;
        client.session = init.header("mcp-session-id").map(str::to_owned);
        let done = client
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())?;
        ensure!(
            done.status == 202,
            "notifications/initialized: {}",
            done.summary()
        );
        Ok(client)
    }

    /// The same session at another URL (the upstream itself, for what the test makes the
    /// server do behind the sidecar's back).
    fn at(&self, url: &str) -> Self {
        Self {
            url: url.to_owned(),
            token: None,
            session: self.session.clone(),
        }
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
            h.push(("mcp-protocol-version".into(), LEGACY.into()));
        }
        for (k, v) in extra {
            h.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            h.push(((*k).to_owned(), (*v).to_owned()));
        }
        h
    }

    fn post_with(&self, body: impl Into<Vec<u8>>, extra: &[(&str, &str)]) -> Result<Resp, String> {
        let headers = self.headers(extra);
        let (status, headers, body) = open(
            "POST",
            &self.url,
            &headers,
            Some(body.into()),
            Duration::from_secs(60),
        )?;
        let body = body
            .into_with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    fn post(&self, body: impl Into<Vec<u8>>) -> Result<Resp, String> {
        self.post_with(body, &[])
    }

    fn request(&self, id: u64, method: &str, params: Value) -> Result<Resp, String> {
        self.post(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
    }

    /// A 2026-07-28 request (no session; `_meta` and the mirrored headers).
    fn modern(&self, id: u64, method: &str, params: Value) -> Result<Resp, String> {
        let bare = Self {
            session: None,
            ..self.clone()
        };
        bare.post_with(
            modern_body(id, method, params).to_string(),
            &[("mcp-protocol-version", MODERN), ("mcp-method", method)],
        )
    }

    /// A 2026-07-28 request whose SSE answer is read as it streams.
    fn stream_modern(&self, id: u64, method: &str, params: Value) -> Result<Stream, String> {
        let bare = Self {
            session: None,
            ..self.clone()
        };
        let headers = bare.headers(&[("mcp-protocol-version", MODERN), ("mcp-method", method)]);
        let body = modern_body(id, method, params).to_string().into_bytes();
        let opened = open(
            "POST",
            &self.url,
            &headers,
            Some(body),
            Duration::from_secs(30),
        )?;
        Ok(Stream::start(opened))
    }

    /// A POST whose SSE answer is read as it streams.
    fn stream_post(&self, body: &Value) -> Result<Stream, String> {
        let opened = open(
            "POST",
            &self.url,
            &self.headers(&[]),
            Some(body.to_string().into_bytes()),
            Duration::from_secs(60),
        )?;
        Ok(Stream::start(opened))
    }

    /// The session's GET stream, open for `lasting`.
    fn stream_get(&self, lasting: Duration) -> Result<Stream, String> {
        let headers = self.headers(&[("accept", "text/event-stream")]);
        let opened = open("GET", &self.url, &headers, None, lasting)?;
        Ok(Stream::start(opened))
    }
}

/// A 2026-07-28 request: `params` with the per-request `_meta`.
fn modern_body(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-warden-capabilities", "version": "0"}
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The answer is a JSON-RPC error `code` with HTTP `status` and this exact message.
fn expect_error(r: &Resp, id: u64, status: u16, code: i64, message: &str) -> Result<(), String> {
    let reply = r.reply(id);
    let got = reply
        .as_ref()
        .and_then(|m| m.get("error"))
        .map(|e| (e["code"].as_i64(), e["message"].as_str().unwrap_or("")));
    ensure!(
        r.status == status && got == Some((Some(code), message)),
        "expected HTTP {status} with error {code} {message:?}, got {}",
        r.summary()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Cases
// ------------------------------------------------------------------------------------------

/// Every entry of a list, following nextCursor; also the pages as (entries, nextCursor).
type Pages = Vec<(Vec<String>, Option<String>)>;

fn list_all(
    send: &dyn Fn(u64, &str, Value) -> Result<Resp, String>,
    list: List,
    check: &dyn Fn(&Resp, &Value) -> Result<(), String>,
) -> Result<(Vec<String>, Pages), String> {
    let (member, key) = list.keys();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for id in 1..=20 {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let r = send(id, list.method(), params)?;
        let result = r.result(id)?;
        check(&r, &result)?;
        let entries: Vec<String> = result[member]
            .as_array()
            .ok_or_else(|| format!("{}: no {member}: {}", list.method(), r.summary()))?
            .iter()
            .filter_map(|e| e[key].as_str().map(str::to_owned))
            .collect();
        cursor = result["nextCursor"].as_str().map(str::to_owned);
        pages.push((entries, cursor.clone()));
        if cursor.is_none() {
            let all = pages.iter().flat_map(|(e, _)| e.clone()).collect();
            return Ok((all, pages));
        }
    }
    Err(format!("{}: more than 20 pages", list.method()))
}

/// resources/list, resources/templates/list, prompts/list: agent-beta sees exactly its grants
/// (fewer than exist), agent-alpha everything the McpTool declares, in upstream order, with
/// every page's cursor kept (the Python fixture pages two by two). `modern`: 2026-07-28
/// requests, answered as JSON, must come back `cacheScope: private`.
fn lists(s: &Stack, modern: bool) -> Result<(), String> {
    let direct = Client {
        url: s.upstream.clone(),
        token: None,
        session: None,
    };
    let direct = if modern {
        direct
    } else {
        Client::connect(&s.upstream, None, json!({}))?
    };
    let beta = s.connect(BETA, json!({}))?;
    let alpha = s.connect(ALPHA, json!({}))?;
    let send = |c: &Client| {
        let c = c.clone();
        move |id: u64, method: &str, params: Value| {
            if modern {
                c.modern(id, method, params)
            } else {
                c.request(id, method, params)
            }
        }
    };
    let format = |r: &Resp, result: &Value| -> Result<(), String> {
        if modern {
            ensure!(
                !r.is_sse() && result["cacheScope"] == "private",
                "a 2026-07-28 list answer must be JSON and cacheScope private: {}",
                r.summary()
            );
        } else {
            ensure!(r.is_sse(), "expected an SSE answer: {}", r.summary());
        }
        Ok(())
    };
    let any = |_: &Resp, _: &Value| Ok(());
    for list in List::ALL {
        let (all, direct_pages) = list_all(&send(&direct), list, &any)?;
        let (seen, pages) = list_all(&send(&beta), list, &format)?;
        let expected: Vec<String> = all
            .iter()
            .filter(|n| s.kind.beta_sees(list, n))
            .cloned()
            .collect();
        ensure!(
            seen == expected,
            "agent-beta's {}: expected {expected:?} (of {all:?}), got {seen:?}",
            list.method()
        );
        // The Python fixture has one template, which beta is granted.
        let proves =
            expected.len() < all.len() || (list, s.kind) == (List::Templates, Kind::Python);
        ensure!(
            !expected.is_empty() && proves,
            "the {} case proves nothing: beta is to see fewer than {all:?}",
            list.method()
        );
        let cursors = |p: &Pages| p.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>();
        ensure!(
            cursors(&pages) == cursors(&direct_pages),
            "agent-beta's {} pages lost their cursors: {pages:?}, upstream {direct_pages:?}",
            list.method()
        );
        let (alpha_seen, _) = list_all(&send(&alpha), list, &format)?;
        ensure!(
            alpha_seen == all,
            "agent-alpha's {}: expected all of {all:?}, got {alpha_seen:?}",
            list.method()
        );
    }
    Ok(())
}

/// resources/read: beta's grants are read; another resource is answered as not found (HTTP
/// 200, −32602 "Resource not found: <uri>") and never reaches the upstream; a granted resource
/// whose entry needs a scope the token lacks is a 403 step-up; subscribe follows read.
fn resources(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    for (i, uri) in n.readable.iter().enumerate() {
        let id = 10 + i as u64;
        let r = beta.request(id, "resources/read", json!({"uri": uri}))?;
        let result = r.result(id)?;
        ensure!(
            result["contents"][0]["uri"] == *uri,
            "beta reads {uri}: {}",
            r.summary()
        );
    }
    for (id, uri) in [
        (20, n.unreadable),
        (21, "file:///etc/passwd"),
        (22, n.scoped),
    ] {
        let r = s.quiet(uri, || {
            beta.request(id, "resources/read", json!({"uri": uri}))
        })??;
        expect_error(&r, id, 200, -32602, &format!("Resource not found: {uri}"))
            .map_err(|e| format!("beta reads {uri}: {e}"))?;
    }
    // The direct answer, for contrast: the upstream has it.
    let direct = Client::connect(&s.upstream, None, json!({}))?;
    direct
        .request(23, "resources/read", json!({"uri": n.unreadable}))?
        .result(23)
        .map_err(|e| format!("the upstream itself should serve {}: {e}", n.unreadable))?;
    // alpha without mcp:tools.call: granted, but the entry needs it.
    let alpha_list_only =
        Client::connect(&s.url(), Some(s.token(ALPHA, "mcp:tools.list")), json!({}))?;
    let r = s.quiet("step-up read", || {
        alpha_list_only.request(24, "resources/read", json!({"uri": n.scoped}))
    })??;
    let challenge = r.header("www-authenticate").unwrap_or("");
    ensure!(
        r.status == 403
            && challenge.contains("insufficient_scope")
            && challenge.contains("mcp:tools.call")
            && r.reply(24)
                .is_some_and(|m| m.pointer("/error/code") == Some(&json!(-31003))),
        "alpha (list scope only) reads {}: expected 403 insufficient_scope -31003, got {} ({challenge})",
        n.scoped,
        r.summary()
    );
    // Subscribe: a readable URI goes through, an unreadable one is not found.
    let r = beta.request(25, "resources/subscribe", json!({"uri": n.readable[0]}))?;
    r.result(25)
        .map_err(|e| format!("beta subscribes to {}: {e}", n.readable[0]))?;
    let r = s.quiet("subscribe", || {
        beta.request(26, "resources/subscribe", json!({"uri": n.unreadable}))
    })??;
    expect_error(
        &r,
        26,
        200,
        -32602,
        &format!("Resource not found: {}", n.unreadable),
    )
    .map_err(|e| format!("beta subscribes to {}: {e}", n.unreadable))?;
    // Lessening methods pass for an identified caller.
    let r = beta.request(27, "resources/unsubscribe", json!({"uri": n.readable[0]}))?;
    r.result(27).map_err(|e| format!("unsubscribe: {e}"))?;
    let r = beta.request(28, "logging/setLevel", json!({"level": "error"}))?;
    r.result(28).map_err(|e| format!("logging/setLevel: {e}"))?;
    Ok(())
}

/// prompts/get and completion/complete: granted ones answered by the upstream, others
/// "Unknown prompt" / "Resource not found" (HTTP 200, −32602), never forwarded; a ref of
/// another type is −32602 invalid params.
fn prompts_and_completions(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let r = beta.request(30, "prompts/get", json!({"name": n.prompt}))?;
    ensure!(
        r.result(30)?["messages"].is_array(),
        "beta gets {}: {}",
        n.prompt,
        r.summary()
    );
    let r = s.quiet("hidden prompt", || {
        beta.request(31, "prompts/get", json!({"name": n.hidden_prompt}))
    })??;
    expect_error(
        &r,
        31,
        200,
        -32602,
        &format!("Unknown prompt: {}", n.hidden_prompt),
    )
    .map_err(|e| format!("beta gets {}: {e}", n.hidden_prompt))?;
    let (prompt, argument) = n.completion;
    let complete = |id: u64, reference: Value, argument: &str| {
        beta.request(
            id,
            "completion/complete",
            json!({"ref": reference, "argument": {"name": argument, "value": ""}}),
        )
    };
    let r = complete(32, json!({"type": "ref/prompt", "name": prompt}), argument)?;
    ensure!(
        r.result(32)?["completion"]["values"].is_array(),
        "beta completes {prompt}: {}",
        r.summary()
    );
    let r = s.quiet("completion of a hidden prompt", || {
        complete(
            33,
            json!({"type": "ref/prompt", "name": n.hidden_prompt}),
            "x",
        )
    })??;
    expect_error(
        &r,
        33,
        200,
        -32602,
        &format!("Unknown prompt: {}", n.hidden_prompt),
    )?;
    let r = complete(
        34,
        json!({"type": "ref/resource", "uri": n.template}),
        n.template_argument,
    )?;
    r.result(34)
        .map_err(|e| format!("beta completes template {}: {e}", n.template))?;
    if let Some(hidden) = n.hidden_template {
        let r = s.quiet("completion of a hidden template", || {
            complete(
                35,
                json!({"type": "ref/resource", "uri": hidden}),
                "resourceId",
            )
        })??;
        expect_error(
            &r,
            35,
            200,
            -32602,
            &format!("Resource not found: {hidden}"),
        )?;
    }
    let r = s.quiet("completion of a tool ref", || {
        complete(36, json!({"type": "ref/tool", "name": "echo"}), "x")
    })??;
    ensure!(
        r.status == 200
            && r.reply(36)
                .is_some_and(|m| m.pointer("/error/code") == Some(&json!(-32602))),
        "a ref/tool completion: expected 200 -32602, got {}",
        r.summary()
    );
    Ok(())
}

/// subscriptions/listen (2026-07-28): every resourceSubscriptions URI must be readable; the
/// first unreadable one is answered as not found and nothing is forwarded.
fn listen(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let params = |uris: &[&str]| json!({"notifications": {"resourceSubscriptions": uris}});
    let r = s.quiet("listen to an unreadable URI", || {
        beta.modern(
            70,
            "subscriptions/listen",
            params(&[n.readable[0], n.unreadable]),
        )
    })??;
    expect_error(
        &r,
        70,
        200,
        -32602,
        &format!("Resource not found: {}", n.unreadable),
    )?;
    let stream = beta.stream_modern(71, "subscriptions/listen", params(&[n.readable[0]]))?;
    ensure!(
        stream.status == 200,
        "listen to {}: HTTP {}",
        n.readable[0],
        stream.status
    );
    let (seen, acknowledged) = stream.until(Duration::from_secs(10), |m| {
        m["method"] == "notifications/subscriptions/acknowledged"
    });
    ensure!(
        acknowledged,
        "listen to {}: no acknowledgement: {seen:?}",
        n.readable[0]
    );
    Ok(())
}

/// Bodies two readers could read differently around the new governed keys: 400 −32600, never
/// forwarded.
fn smuggling(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let cases = [
        (
            "ref.type + ref.Type",
            json!({"jsonrpc": "2.0", "id": 40, "method": "completion/complete", "params": {
                "ref": {"type": "ref/prompt", "Type": "ref/resource", "name": n.prompt,
                        "uri": n.hidden_template.unwrap_or(n.template)},
                "argument": {"name": "a", "value": ""}}}),
        ),
        (
            "ref.name + ref.NAME",
            json!({"jsonrpc": "2.0", "id": 41, "method": "completion/complete", "params": {
                "ref": {"type": "ref/prompt", "name": n.prompt, "NAME": n.hidden_prompt},
                "argument": {"name": "a", "value": ""}}}),
        ),
        (
            "uri + URI",
            json!({"jsonrpc": "2.0", "id": 42, "method": "resources/read", "params": {
                "uri": n.readable[0], "URI": n.unreadable}}),
        ),
        (
            "only Uri",
            json!({"jsonrpc": "2.0", "id": 43, "method": "resources/read", "params": {
                "Uri": n.unreadable}}),
        ),
        (
            "uri: 1",
            json!({"jsonrpc": "2.0", "id": 44, "method": "resources/read", "params": {"uri": 1}}),
        ),
        (
            "uri: [..]",
            json!({"jsonrpc": "2.0", "id": 45, "method": "resources/subscribe", "params": {
                "uri": [n.unreadable]}}),
        ),
        (
            "ref.type: 1",
            json!({"jsonrpc": "2.0", "id": 46, "method": "completion/complete", "params": {
                "ref": {"type": 1, "name": n.hidden_prompt}, "argument": {"name": "a", "value": ""}}}),
        ),
    ];
    let mut failures = Vec::new();
    for (label, body) in cases {
        let id = body["id"].as_u64().unwrap();
        let outcome = s
            .quiet(label, || beta.post(body.to_string()))
            .and_then(|r| r)
            .and_then(|r| {
                ensure!(
                    r.status == 400
                        && r.reply(id)
                            .is_some_and(|m| m.pointer("/error/code") == Some(&json!(-32600))),
                    "{label}: expected 400 -32600, got {}",
                    r.summary()
                );
                Ok(())
            });
        if let Err(e) = outcome {
            failures.push(e);
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

/// notifications/resources/updated reaches a caller only for URIs it may read.
/// server-everything sends its updates on the session's GET stream every 5 s for the session's
/// subscriptions: beta subscribes to a readable URI through the sidecar, and — as if it had
/// subscribed before it lost the grant — to an unreadable one at the upstream itself. The
/// Python fixture sends them on the calling request's stream.
fn updates(s: &Stack) -> Result<(), String> {
    let n = s.kind.names();
    let beta = s.connect(BETA, json!({}))?;
    let updated = |m: &Value| {
        (m["method"] == "notifications/resources/updated").then(|| {
            m.pointer("/params/uri")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
    };
    let uris: BTreeSet<String> = match s.kind {
        Kind::Everything => {
            let behind = beta.at(&s.upstream);
            beta.request(50, "resources/subscribe", json!({"uri": n.readable[0]}))?
                .result(50)?;
            behind
                .request(51, "resources/subscribe", json!({"uri": n.unreadable}))?
                .result(51)?;
            let stream = beta.stream_get(Duration::from_secs(20))?;
            ensure!(
                stream.status == 200,
                "beta's GET stream: HTTP {}",
                stream.status
            );
            thread::sleep(Duration::from_millis(300));
            behind
                .request(
                    52,
                    "tools/call",
                    json!({"name": "toggle-subscriber-updates", "arguments": {}}),
                )?
                .result(52)?;
            // The first updates go out at once, the next 5 s later: wait for two rounds.
            let (seen, _) = stream.until(Duration::from_secs(7), |_| false);
            behind
                .request(
                    53,
                    "tools/call",
                    json!({"name": "toggle-subscriber-updates", "arguments": {}}),
                )?
                .result(53)?;
            seen.iter().filter_map(updated).collect()
        }
        Kind::Python => {
            let uris = [n.readable[0], n.unreadable, n.scoped];
            let stream = beta.stream_post(&json!({"jsonrpc": "2.0", "id": 54,
                "method": "tools/call", "params": {"name": "test_resource_updated",
                "arguments": {"uris": uris}}}))?;
            let (seen, done) = stream.until(Duration::from_secs(20), |m| m["id"] == 54);
            ensure!(done, "test_resource_updated did not answer: {seen:?}");
            let answer = seen.last().unwrap();
            ensure!(
                answer.pointer("/result/content/0/text")
                    == Some(&json!("Sent 3 resource update(s)")),
                "test_resource_updated: {answer}"
            );
            seen.iter().filter_map(updated).collect()
        }
    };
    let expected: BTreeSet<String> = [n.readable[0].to_owned()].into();
    ensure!(
        uris == expected,
        "beta received updates for {uris:?}; expected only {expected:?}"
    );
    Ok(())
}

/// The sampling answer a client gives.
fn sampled(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant",
        "content": {"type": "text", "text": "warden-sampled"}, "model": "test-model",
        "stopReason": "endTurn"}})
}

/// With `serverRequests: [Elicitation, Sampling]` the server's sampling/createMessage reaches
/// the caller on its tools/call stream; the caller's answer reaches the tool.
fn sampling_relayed(s: &Stack) -> Result<(), String> {
    let (tool, args) = s.kind.names().sampling;
    let alpha = s.connect(ALPHA, json!({"sampling": {}}))?;
    let stream = alpha.stream_post(&json!({"jsonrpc": "2.0", "id": 60, "method": "tools/call",
        "params": {"name": tool, "arguments": args()}}))?;
    ensure!(stream.status == 200, "{tool}: HTTP {}", stream.status);
    let (seen, asked) = stream.until(Duration::from_secs(20), |m| {
        m["method"] == "sampling/createMessage"
    });
    ensure!(
        asked,
        "{tool}: no sampling/createMessage reached the caller: {seen:?}"
    );
    let id = seen.last().unwrap()["id"].clone();
    let r = alpha.post(sampled(&id).to_string())?;
    ensure!(r.status == 202, "the sampling answer: {}", r.summary());
    let (seen, done) = stream.until(Duration::from_secs(20), |m| m["id"] == 60);
    ensure!(
        done,
        "{tool} did not answer after the sampling answer: {seen:?}"
    );
    let text = seen.last().unwrap().to_string();
    ensure!(
        text.contains("warden-sampled"),
        "{tool}'s result does not carry the caller's answer: {text}"
    );
    Ok(())
}

/// The refusals the upstream received since `mark`: JSON-RPC errors −32601 naming `why`.
fn refusals(s: &Stack, mark: usize, why: &str) -> Vec<Value> {
    s.tap
        .since(mark)
        .iter()
        .filter(|r| r.method == "POST")
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body()).ok())
        .filter(|m| {
            m.get("method").is_none()
                && m.pointer("/error/code") == Some(&json!(-32601))
                && m.pointer("/error/message")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.contains(why))
        })
        .collect()
}

/// With `serverRequests: [Elicitation, Roots]`: the server's sampling/createMessage never
/// reaches the caller, the upstream gets a −32601 answer for it, and the tool call ends (with
/// the server's error) instead of hanging.
fn sampling_refused(s: &Stack) -> Result<(), String> {
    let (tool, args) = s.kind.names().sampling;
    let alpha = s.connect(ALPHA, json!({"sampling": {}}))?;
    let mark = s.tap.count();
    let started = Instant::now();
    let stream = alpha.stream_post(&json!({"jsonrpc": "2.0", "id": 61, "method": "tools/call",
        "params": {"name": tool, "arguments": args()}}))?;
    let (seen, done) = stream.until(Duration::from_secs(20), |m| m["id"] == 61);
    ensure!(
        !seen.iter().any(|m| m["method"] == "sampling/createMessage"),
        "{tool}: the refused sampling/createMessage reached the caller: {seen:?}"
    );
    ensure!(
        done,
        "{tool} did not end within 20 s (the upstream never got its refusal?): {seen:?}"
    );
    let answer = seen.last().unwrap();
    let text = answer.to_string();
    ensure!(
        answer.get("error").is_some() || answer.pointer("/result/isError") == Some(&json!(true)),
        "{tool} should end in an error: {text}"
    );
    let sent = refusals(s, mark, "spec.serverRequests");
    ensure!(
        sent.len() == 1,
        "the upstream should receive one -32601 answer for its sampling request, got {}: {}",
        sent.len(),
        describe(&s.tap.since(mark))
    );
    eprintln!(
        "[{}] refused sampling: the tool ended after {:?}: {}",
        s.kind.name(),
        started.elapsed(),
        clip(&text, 200)
    );
    Ok(())
}

/// A server request of an allowed kind tied to no pending request (the session's GET stream)
/// is refused: never shown, answered −32601 to the upstream.
fn detached_refused(s: &Stack) -> Result<(), String> {
    let alpha = s.connect(
        ALPHA,
        json!({"roots": {"listChanged": true}, "elicitation": {}}),
    )?;
    let stream = alpha.stream_get(Duration::from_secs(25))?;
    ensure!(
        stream.status == 200,
        "alpha's GET stream: HTTP {}",
        stream.status
    );
    thread::sleep(Duration::from_millis(500));
    let mark = s.tap.count();
    let (method, why) = match s.kind {
        Kind::Everything => {
            // Its roots/list follows the client's roots/list_changed, on the GET stream.
            let r = alpha.post(
                json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}).to_string(),
            )?;
            ensure!(r.status == 202, "roots/list_changed: {}", r.summary());
            ("roots/list", "pending request")
        }
        Kind::Python => {
            let r = alpha.request(
                62,
                "tools/call",
                json!({"name": "test_detached_request", "arguments": {"kind": "elicitation"}}),
            )?;
            let text = r
                .result(62)?
                .pointer("/content/0/text")
                .cloned()
                .unwrap_or_default();
            ensure!(
                text.as_str().is_some_and(|t| t
                    .starts_with("elicitation refused by the client: -32601")
                    && t.contains("pending request")),
                "test_detached_request: the server should learn of the refusal, got {text}"
            );
            ("elicitation/create", "pending request")
        }
    };
    let sent = poll(Duration::from_secs(10), || {
        let sent = refusals(s, mark, why);
        (!sent.is_empty()).then_some(sent)
    })
    .ok_or_else(|| {
        format!(
            "the upstream got no -32601 answer for its {method} on the GET stream: {}",
            describe(&s.tap.since(mark))
        )
    })?;
    let (seen, _) = stream.until(Duration::from_millis(500), |_| false);
    ensure!(
        !seen.iter().any(|m| m["method"] == method),
        "the {method} on the GET stream reached the caller: {seen:?}"
    );
    eprintln!(
        "[{}] refused {method} on the GET stream: {sent:?}",
        s.kind.name()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The report: every case runs, all results are listed, then the test fails if any failed
// ------------------------------------------------------------------------------------------

struct Report {
    label: &'static str,
    failed: Vec<String>,
    total: usize,
}

impl Report {
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
        self.total += 1;
        if let Err(e) = result {
            self.failed.push(format!("  - {name}: {e}"));
        }
    }
}

fn capabilities(kind: Kind) {
    let s = stack(kind);
    let mut report = Report {
        label: kind.name(),
        failed: Vec::new(),
        total: 0,
    };
    report.case("lists filtered per caller (SSE), cursors kept", || {
        lists(&s, false)
    });
    if kind == Kind::Python {
        report.case(
            "lists filtered per caller (2026-07-28 JSON, cacheScope private)",
            || lists(&s, true),
        );
        report.case(
            "subscriptions/listen: an unreadable resourceSubscriptions URI is not found",
            || listen(&s),
        );
    }
    report.case(
        "resources/read and subscribe: granted read, others not found and not forwarded, step-up",
        || resources(&s),
    );
    report.case(
        "prompts/get and completion/complete follow the grants",
        || prompts_and_completions(&s),
    );
    report.case("smuggled ref/uri keys → 400, not forwarded", || {
        smuggling(&s)
    });
    report.case(
        "notifications/resources/updated only for readable URIs",
        || updates(&s),
    );
    report.case("sampling relayed when serverRequests allows it", || {
        sampling_relayed(&s)
    });
    match s.server_requests(SERVER_REQUESTS, SERVER_REQUESTS_NO_SAMPLING) {
        Ok(()) => {
            report.case(
                "sampling refused without Sampling: upstream answered -32601, the call ends",
                || sampling_refused(&s),
            );
            report.case(
                "a server request on a GET stream is refused (allowed kind, no pending request)",
                || detached_refused(&s),
            );
        }
        Err(e) => report.case("reload serverRequests", || Err(e)),
    }
    assert!(
        report.failed.is_empty(),
        "[{}] {} of {} cases failed:\n{}",
        report.label,
        report.failed.len(),
        report.total,
        report.failed.join("\n")
    );
}

#[test]
fn capabilities_server_everything() {
    capabilities(Kind::Everything);
}

#[test]
fn capabilities_python_fixture() {
    capabilities(Kind::Python);
}
