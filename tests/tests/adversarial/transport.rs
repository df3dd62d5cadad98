//! HTTP for the cases: whole answers, streams, raw sockets, and what a flood measures.

use super::*;
pub(crate) use mcp_warden_tests::answer::Resp;

#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

pub(crate) fn parse_sse(text: &str) -> Vec<Event> {
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

/// What this suite reads out of an answer.
pub(crate) trait ReadAnswer {
    fn events(&self) -> Vec<Event>;
    fn messages(&self) -> Vec<Value>;
    fn reply(&self, id: &Value) -> Option<Value>;
    fn error_code(&self) -> Option<i64>;
    fn summary(&self) -> String;
}

impl ReadAnswer for Resp {
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

pub(crate) fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// An answer whose body is still to be read: status, headers, body.
pub(crate) type Opened = (u16, Vec<(String, String)>, ureq::Body);

/// Sends a request; returns the status, headers and the body to read.
pub(crate) fn open(
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

pub(crate) fn exchange(
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
pub(crate) struct Client {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) session: Option<String>,
    pub(crate) version: String,
    /// What the answer to `notifications/initialized` was (checked by [`notifications`]).
    pub(crate) initialized: String,
}

impl Client {
    pub(crate) fn connect(url: &str, token: Option<String>, version: &str) -> Result<Self, String> {
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

    pub(crate) fn headers(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
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

    pub(crate) fn post(&self, body: impl Into<Vec<u8>>) -> Result<Resp, String> {
        self.post_with(body, &[])
    }

    /// POST with `extra` headers (an empty value removes the header).
    pub(crate) fn post_with(
        &self,
        body: impl Into<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Result<Resp, String> {
        exchange("POST", &self.url, &self.headers(extra), Some(body.into()))
    }

    /// A GET or DELETE.
    pub(crate) fn bodiless(&self, method: &str, extra: &[(&str, &str)]) -> Result<Resp, String> {
        exchange(method, &self.url, &self.headers(extra), None)
    }

    pub(crate) fn open(
        &self,
        method: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<Opened, String> {
        open(method, &self.url, &self.headers(extra), body, timeout)
    }

    pub(crate) fn call(&self, id: u64, tool: &str, arguments: &Value) -> Result<Resp, String> {
        self.post(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}})
            .to_string(),
        )
    }
}

pub(crate) fn succeeded(r: &Resp, id: u64) -> bool {
    r.status == 200
        && r.reply(&json!(id)).is_some_and(|m| {
            m.get("result").is_some() && m.pointer("/result/isError") != Some(&json!(true))
        })
}

/// The answer is the sidecar's own refusal: `status`, JSON, JSON-RPC error `code`.
pub(crate) fn expect_error(r: &Resp, status: u16, code: i64, what: &str) -> Result<(), String> {
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
pub(crate) fn raw_post(
    addr: &str,
    headers: &[(&str, &str)],
    body: Arc<Vec<u8>>,
) -> Result<Resp, String> {
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

pub(crate) fn read_response(stream: &mut TcpStream) -> Result<Resp, String> {
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
pub(crate) fn batch_of_calls(size: usize) -> Vec<u8> {
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
pub(crate) fn forged_token(issuer: &str) -> String {
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

/// A process's VmRSS sampled every 5 ms until [`PeakRss::stop`]: the peak, in KiB.
pub(crate) struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    sampler: thread::JoinHandle<()>,
}

impl PeakRss {
    pub(crate) fn start(pid: u32, before: u64) -> Self {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(before)),
        );
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
        Self {
            stop,
            peak,
            sampler,
        }
    }

    pub(crate) fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.join();
        self.peak.load(Ordering::Relaxed)
    }
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
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
