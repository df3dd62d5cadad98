//! Shared helpers of the `proxy_*` integration tests: `proxy::serve` in-process in front of a
//! real upstream, either `@modelcontextprotocol/server-everything` (from `make peers`, started
//! by `mcp_warden_test_support::server_everything`), the Python SDK fixture, or a small hyper
//! server written in the test, and an HTTP client to talk to it.
//!
//! ```text
//! test ──Http──► proxy::serve (127.0.0.1:0, in this process) ──► server-everything (node, 127.0.0.1)
//!                                                           ├──► PyFixture (python, 127.0.0.1)
//!                                                           └──► Mock (hyper, 127.0.0.1)
//! ```
//!
//! Everything is bound to 127.0.0.1 and every wait is bounded.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use mcp_warden_sidecar::{
    auth::Authenticator,
    metrics::Metrics,
    proxy::{self, Shared},
    settings::Settings,
    source::file::{self, Selection},
    state::{Active, Live},
};
use mcp_warden_test_support::{Proc, free_port, repo_root};
use serde_json::Value;
use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

// For tests/methods.rs, which imports it from here; the others import it from the crate.
pub use mcp_warden_test_support::peer;

/// A Python `mcp` SDK (`MCPServer`) fixture serving both eras (legacy and 2026-07-28) on a
/// free loopback port, with the tools `echo`, `get-sum` and `get-env`; killed when dropped.
#[derive(Debug)]
pub struct PyFixture {
    _proc: Proc,
    script: PathBuf,
    /// Its MCP URL.
    pub url: String,
}

const PY_FIXTURE: &str = r#"
import sys
from mcp.server import MCPServer
app = MCPServer("proxy-fixture")

@app.tool()
def echo(message: str) -> str:
    """Echoes the message."""
    return f"Echo: {message}"

@app.tool(name="get-sum")
def get_sum(a: int, b: int) -> str:
    """Adds two numbers."""
    return f"The sum of {a} and {b} is {a + b}."

@app.tool(name="get-env")
def get_env() -> str:
    """Hidden from most callers."""
    return "SECRET=1"

app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"#;

impl PyFixture {
    /// Starts it and waits (at most 30 s) until it accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        let script = std::env::temp_dir().join(format!(
            "mcp-warden-proxy-fixture-{}-{port}.py",
            std::process::id()
        ));
        std::fs::write(&script, PY_FIXTURE).unwrap();
        let mut cmd = Command::new(peer("PEERS_PYTHON"));
        cmd.arg(&script).arg(port.to_string());
        let mut proc = Proc::start("the Python fixture", cmd).unwrap_or_else(|e| panic!("{e}"));
        proc.wait_port(port, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e} (is `mcp` installed? run `make peers`)"));
        Self {
            _proc: proc,
            script,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for PyFixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

/// The compiled `examples/everything` configuration, after `edit` of its YAML text.
pub fn everything_rules(edit: impl Fn(String) -> String) -> Active {
    let text =
        std::fs::read_to_string(repo_root().join("examples/everything/everything.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("everything.yaml");
    std::fs::write(&file, edit(text)).unwrap();
    let (bundle, rules) =
        file::load_config(&file, &Selection::OnlyTool).expect("the example config compiles");
    Active::new(rules, bundle)
}

/// `proxy::serve` running in this process.
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its live configuration (tests swap it).
    pub live: Arc<Live>,
    /// Its metrics.
    pub metrics: Metrics,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Proxy {
    /// Starts a proxy for `settings` with `active` in force (none: not ready).
    pub async fn start(settings: Settings, active: Option<Active>) -> Self {
        Self::start_with_tls(settings, active, None).await
    }

    /// The same, serving TLS with `tls`.
    pub async fn start_with_tls(
        settings: Settings,
        active: Option<Active>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        Self::start_audited(settings, active, tls, None).await
    }

    /// The same, recording to `audit`.
    pub async fn start_audited(
        settings: Settings,
        active: Option<Active>,
        tls: Option<Arc<rustls::ServerConfig>>,
        audit: Option<mcp_warden_sidecar::audit::Auditor>,
    ) -> Self {
        let live = Arc::new(Live::default());
        if let Some(active) = active {
            live.install(active);
        }
        let metrics = Metrics::new();
        let shared = Arc::new(Shared {
            live: live.clone(),
            auth: Authenticator::new(),
            settings,
            quotas: mcp_warden_sidecar::quota::Quotas::new(Default::default(), metrics.registry())
                .expect("quota metrics register"),
            metrics: metrics.clone(),
            audit,
            usage: None,
            upstream_auth: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            proxy::serve(listener, tls, shared, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            addr,
            live,
            metrics,
            stop: Some(stop),
        }
    }

    /// A proxy in front of `upstream`, tokenless requests acting as `client` (`demo/<name>`),
    /// with the example configuration.
    pub async fn anonymous(upstream: &str, client: &str) -> Self {
        Self::start(settings(upstream, client), Some(everything_rules(|t| t))).await
    }

    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// A URL on the proxy.
    pub fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Test settings: upstream override, anonymous client, short grace.
pub fn settings(upstream: &str, client: &str) -> Settings {
    Settings {
        upstream_override: Some(upstream.to_owned()),
        anonymous_client: Some(client.to_owned()),
        shutdown_grace: Duration::from_millis(100),
        upstream_timeout: Duration::from_secs(30),
        ..Settings::default()
    }
}

/// A response read to its end.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Every JSON message of the body: the JSON body itself, or each SSE event's data.
    pub fn messages(&self) -> Vec<Value> {
        if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            sse_data(&self.body)
                .iter()
                .filter(|d| !d.is_empty())
                .map(|d| serde_json::from_str(d).unwrap())
                .collect()
        } else if self.body.is_empty() {
            Vec::new()
        } else {
            match self.json() {
                Value::Array(items) => items,
                one => vec![one],
            }
        }
    }

    /// The message answering `id`.
    pub fn answer(&self, id: &Value) -> Value {
        self.messages()
            .into_iter()
            .find(|m| {
                m.get("id") == Some(id) && (m.get("result").is_some() || m.get("error").is_some())
            })
            .unwrap_or_else(|| {
                panic!(
                    "no answer to {id} in {:?}",
                    String::from_utf8_lossy(&self.body)
                )
            })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The data of each SSE event (LF line endings).
pub fn sse_data(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request; returns the response with its body unread (at most 30 s for headers).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let mut request = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    tokio::time::timeout(Duration::from_secs(30), client().request(request))
        .await
        .expect("response headers within 30 s")
        .expect("the request is answered")
}

/// Sends a request and reads the whole response (at most 30 s).
pub async fn call(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let response = send(method, url, headers, body).await;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("the body ends within 30 s")
        .expect("the body is read")
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// The headers of an MCP POST.
pub const POST: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

/// POSTs a JSON-RPC body with the MCP headers plus `extra`.
pub async fn post(url: &str, extra: &[(&str, &str)], body: &str) -> Reply {
    let mut headers: Vec<(&str, &str)> = POST.to_vec();
    headers.extend_from_slice(extra);
    call(Method::POST, url, &headers, body.to_owned()).await
}

/// An initialized legacy session: its id and negotiated version.
#[derive(Debug, Clone)]
pub struct Session {
    /// `Mcp-Session-Id`.
    pub id: String,
    /// The negotiated protocol version.
    pub version: String,
}

impl Session {
    /// `initialize` + `notifications/initialized` at `url` with `version`.
    pub async fn open(url: &str, version: &str) -> Self {
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"proxy-test","version":"1"}}}}}}"#
        );
        let reply = post(url, &[], &init).await;
        assert_eq!(reply.status, 200, "initialize: {}", reply.text());
        let id = reply
            .header("mcp-session-id")
            .expect("a session id")
            .to_owned();
        let version = reply.answer(&0.into())["result"]["protocolVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        let me = Self { id, version };
        let done = post(
            url,
            &me.headers(),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await;
        assert_eq!(
            done.status,
            202,
            "notifications/initialized: {}",
            done.text()
        );
        me
    }

    /// The session headers of later requests.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            ("mcp-session-id", self.id.as_str()),
            ("mcp-protocol-version", self.version.as_str()),
        ]
    }
}

/// A tools/list through `url` in `session`: the tool names, in order.
pub async fn tool_names(url: &str, session: &Session) -> Vec<String> {
    let reply = post(
        url,
        &session.headers(),
        r#"{"jsonrpc":"2.0","id":"list","method":"tools/list"}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.answer(&"list".into())["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A request as the mock upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Bodies of mock responses.
pub type MockBody = UnsyncBoxBody<Bytes, Infallible>;

/// A complete mock body.
pub fn body(bytes: impl Into<Bytes>) -> MockBody {
    Full::new(bytes.into()).boxed_unsync()
}

/// A response with `status`, headers and body.
pub fn respond(
    status: u16,
    headers: &[(&str, &str)],
    bytes: impl Into<Bytes>,
) -> Response<MockBody> {
    let mut r = Response::new(body(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

type Handler = Arc<dyn Fn(Seen) -> Response<MockBody> + Send + Sync>;

/// A hyper upstream written in the test: records every request and answers with `handler`.
#[derive(Clone)]
pub struct Mock {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    /// Requests seen, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl std::fmt::Debug for Mock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mock").field("url", &self.url).finish()
    }
}

impl Mock {
    /// An upstream answering every request `{"result":{}}` under its id (JSON).
    pub async fn empty_results() -> Self {
        Self::start(|seen| {
            let req: Value = serde_json::from_slice(&seen.body).unwrap();
            respond(
                200,
                &[("content-type", "application/json")],
                serde_json::json!({"jsonrpc":"2.0","id":req["id"],"result":{}}).to_string(),
            )
        })
        .await
    }

    /// Serves until the test's runtime ends.
    pub async fn start(
        handler: impl Fn(Seen) -> Response<MockBody> + Send + Sync + 'static,
    ) -> Self {
        let handler: Handler = Arc::new(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method,
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            };
                            log.lock().unwrap().push(seen.clone());
                            Ok::<_, Infallible>(handler(seen))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, seen }
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A streaming mock body fed by the returned sender; `closed` turns true when the proxy drops
/// the stream (a send fails).
pub fn channel_body() -> (futures::channel::mpsc::Sender<Bytes>, MockBody) {
    use futures::StreamExt as _;
    let (tx, rx) = futures::channel::mpsc::channel::<Bytes>(16);
    let stream = rx.map(|chunk| Ok::<_, Infallible>(http_body::Frame::data(chunk)));
    (tx, http_body_util::StreamBody::new(stream).boxed_unsync())
}

/// Reads a streaming body frame by frame, noting when each byte arrived, until it ends or
/// `limit` passes.
pub async fn read_timed(response: Response<Incoming>, limit: Duration) -> Vec<(Duration, Bytes)> {
    let start = Instant::now();
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Ok(Some(frame)) =
        tokio::time::timeout(limit.saturating_sub(start.elapsed()), body.frame()).await
    {
        if let Ok(data) = frame.expect("the stream does not fail").into_data() {
            frames.push((start.elapsed(), data));
        }
    }
    frames
}
