//! HTTP for the cases: whole answers and streamed ones, sessions of one caller.

use super::*;
pub(crate) use mcp_warden_tests::answer::Resp;

pub(crate) fn describe(reqs: &[Recorded]) -> String {
    reqs.iter()
        .map(|r| {
            let text = String::from_utf8_lossy(&r.body()).into_owned();
            format!("{} {} ({})", r.method, r.path, clip(&text, 300))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn clip(s: &str, n: usize) -> String {
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

/// The JSON-RPC messages of an SSE text's `data:` fields.
pub(crate) fn sse_messages(text: &str) -> Vec<Value> {
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

/// What this suite reads out of an answer.
pub(crate) trait ReadAnswer {
    fn messages(&self) -> Vec<Value>;
    fn reply(&self, id: u64) -> Option<Value>;
    fn result(&self, id: u64) -> Result<Value, String>;
    fn summary(&self) -> String;
}

impl ReadAnswer for Resp {
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

pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

type Opened = (u16, Vec<(String, String)>, ureq::Body);

pub(crate) fn open(
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
pub(crate) struct Stream {
    pub(crate) status: u16,
    pub(crate) events: mpsc::Receiver<Value>,
}

impl Stream {
    pub(crate) fn start(opened: Opened) -> Self {
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
    pub(crate) fn until(
        &self,
        within: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> (Vec<Value>, bool) {
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
pub(crate) struct Client {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) session: Option<String>,
}

impl Client {
    pub(crate) fn connect(
        url: &str,
        token: Option<String>,
        capabilities: Value,
    ) -> Result<Self, String> {
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
    pub(crate) fn at(&self, url: &str) -> Self {
        Self {
            url: url.to_owned(),
            token: None,
            session: self.session.clone(),
        }
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
            h.push(("mcp-protocol-version".into(), LEGACY.into()));
        }
        for (k, v) in extra {
            h.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            h.push(((*k).to_owned(), (*v).to_owned()));
        }
        h
    }

    pub(crate) fn post_with(
        &self,
        body: impl Into<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Result<Resp, String> {
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

    pub(crate) fn post(&self, body: impl Into<Vec<u8>>) -> Result<Resp, String> {
        self.post_with(body, &[])
    }

    pub(crate) fn request(&self, id: u64, method: &str, params: Value) -> Result<Resp, String> {
        self.post(
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        )
    }

    /// A 2026-07-28 request (no session; `_meta` and the mirrored headers).
    pub(crate) fn modern(&self, id: u64, method: &str, params: Value) -> Result<Resp, String> {
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
    pub(crate) fn stream_modern(
        &self,
        id: u64,
        method: &str,
        params: Value,
    ) -> Result<Stream, String> {
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
    pub(crate) fn stream_post(&self, body: &Value) -> Result<Stream, String> {
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
    pub(crate) fn stream_get(&self, lasting: Duration) -> Result<Stream, String> {
        let headers = self.headers(&[("accept", "text/event-stream")]);
        let opened = open("GET", &self.url, &headers, None, lasting)?;
        Ok(Stream::start(opened))
    }
}

/// A 2026-07-28 request: `params` with the per-request `_meta`.
pub(crate) fn modern_body(id: u64, method: &str, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-warden-capabilities", "version": "0"}
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The answer is a JSON-RPC error `code` with HTTP `status` and this exact message.
pub(crate) fn expect_error(
    r: &Resp,
    id: u64,
    status: u16,
    code: i64,
    message: &str,
) -> Result<(), String> {
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
pub(crate) type Pages = Vec<(Vec<String>, Option<String>)>;
