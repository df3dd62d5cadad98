//! A recording reverse proxy for black-box tests: put it between the sidecar and the real
//! upstream (`--upstream <tap.url()>`) to assert exactly what the upstream received.
//!
//! ```text
//! sidecar ──► Tap 127.0.0.1:PORT ──(request unchanged, body streamed)──► real upstream
//!                 │ records method, path, selected headers, body bytes (bounded)
//!         ◄──────── response unchanged, streamed frame by frame (SSE is not buffered)
//! ```
//!
//! [`serve`] is the small loopback HTTP/1.1 server underneath, also usable for a scripted
//! (hostile) upstream. Everything is bounded: connections, records kept, body bytes kept.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A response (or forwarded request) body.
pub type Body = BoxBody<Bytes, BoxError>;

/// Most connections served at once by one [`Server`].
const MAX_CONNECTIONS: usize = 512;
/// Most requests a [`Tap`] keeps (later ones are only counted).
const MAX_RECORDS: usize = 4096;
/// Most body bytes kept per recorded request (the rest is only counted).
const MAX_BODY: usize = 1 << 20;
/// Request headers a [`Tap`] records (lower case).
pub const RECORDED_HEADERS: &str = "mcp-session-id last-event-id mcp-protocol-version mcp-method \
    mcp-name content-type content-length accept authorization host";
/// Hop-by-hop headers, not forwarded.
const HOP_BY_HOP: &str = "connection keep-alive proxy-connection te trailer upgrade";

/// A whole body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// A loopback HTTP/1.1 server on its own runtime; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

/// Serves `handler` on a free port of 127.0.0.1.
pub fn serve<F, Fut>(handler: F) -> Result<Server, String>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handler = Arc::new(handler);
    runtime.spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(permit);
            });
        }
    });
    Ok(Server {
        addr,
        _runtime: runtime,
    })
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `GET`, `DELETE`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The [`RECORDED_HEADERS`] present, lower-case names.
    pub headers: Vec<(String, String)>,
    body: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl Recorded {
    /// A recorded header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    /// The body bytes that went through so far (the first 1 MiB).
    pub fn body(&self) -> Vec<u8> {
        self.body.lock().expect("tap body lock").0.clone()
    }

    /// How many body bytes went through so far (all counted).
    pub fn body_len(&self) -> usize {
        self.body.lock().expect("tap body lock").1
    }
}

#[derive(Debug, Default)]
struct Log {
    kept: Vec<Recorded>,
    total: usize,
}

/// The recording reverse proxy; stops when dropped.
#[derive(Debug)]
pub struct Tap {
    server: Server,
    path: String,
    log: Arc<Mutex<Log>>,
}

impl Tap {
    /// Starts a tap forwarding to `upstream` (`http://HOST:PORT/PATH`).
    pub fn start(upstream: &str) -> Result<Self, String> {
        let uri: http::Uri = upstream.parse().map_err(|e| format!("{upstream}: {e}"))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or("the upstream URL has no host")?;
        let path = uri.path().to_owned();
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let log = Arc::new(Mutex::new(Log::default()));
        let state = (client, authority, log.clone());
        let server = serve(move |req: Request<Incoming>| {
            let (client, authority, log) = state.clone();
            async move {
                let answer = forward(req, &client, &authority, &log).await;
                answer.unwrap_or_else(|e| {
                    let body = full(format!("tap: {e}"));
                    Response::builder().status(502).body(body).expect("a 502")
                })
            }
        })?;
        Ok(Self { server, path, log })
    }

    /// The URL to give the sidecar as `--upstream`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.server.addr, self.path)
    }

    /// How many requests the upstream received so far.
    pub fn count(&self) -> usize {
        self.log.lock().expect("tap log lock").total
    }

    /// The requests received since `count()` returned `mark` (as far as kept).
    pub fn since(&self, mark: usize) -> Vec<Recorded> {
        let log = self.log.lock().expect("tap log lock");
        log.kept.iter().skip(mark).cloned().collect()
    }
}

async fn forward(
    req: Request<Incoming>,
    client: &Client<HttpConnector, Body>,
    authority: &http::uri::Authority,
    log: &Mutex<Log>,
) -> Result<Response<Body>, String> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.to_string(); // origin form: path and query
    let record = Recorded {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: RECORDED_HEADERS
            .split_whitespace()
            .filter_map(|h| Some((h.into(), parts.headers.get(h)?.to_str().ok()?.into())))
            .collect(),
        body: Arc::default(),
    };
    let sink = record.body.clone();
    {
        let mut log = log.lock().expect("tap log lock");
        log.total += 1;
        if log.kept.len() < MAX_RECORDS {
            log.kept.push(record);
        }
    }
    strip(&mut parts.headers);
    parts.uri = format!("http://{authority}{path}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let body = body
        .map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                let mut kept = sink.lock().expect("tap body lock");
                let room = MAX_BODY.saturating_sub(kept.0.len());
                kept.0.extend_from_slice(&data[..data.len().min(room)]);
                kept.1 += data.len();
            }
            frame
        })
        .map_err(BoxError::from)
        .boxed();
    let response = client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|e| format!("the upstream is unreachable: {e}"))?;
    let (mut parts, body) = response.into_parts();
    strip(&mut parts.headers);
    let body = body.map_err(BoxError::from).boxed();
    Ok(Response::from_parts(parts, body))
}

fn strip(headers: &mut http::HeaderMap) {
    for h in HOP_BY_HOP.split_whitespace() {
        headers.remove(h);
    }
}
