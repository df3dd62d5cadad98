//! A minimal MCP Streamable HTTP client for black-box tests that need exact control (timing
//! loops, raw statuses). Interoperability is tested with the official SDK clients instead.
//!
//! ```text
//! connect: POST initialize ──► Mcp-Session-Id ──► POST notifications/initialized
//! request: POST {jsonrpc, id, method, params} ──► JSON body or SSE events ──► the reply with that id
//! ```

use serde_json::{Value, json};
use std::time::Duration;

/// What the server answered to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The JSON-RPC message answering the request (or the error body), if any.
    pub body: Option<Value>,
}

impl Reply {
    /// The JSON-RPC error code, when the answer is an error.
    pub fn error_code(&self) -> Option<i64> {
        self.body.as_ref()?.pointer("/error/code")?.as_i64()
    }

    /// Whether the request succeeded at both the HTTP and the JSON-RPC level.
    pub fn is_success(&self) -> bool {
        self.status == 200
            && self
                .body
                .as_ref()
                .is_some_and(|b| b.get("result").is_some())
    }
}

/// One MCP session over Streamable HTTP (2025-06-18 wire).
#[derive(Debug)]
pub struct Session {
    url: String,
    token: Option<String>,
    session_id: Option<String>,
    agent: ureq::Agent,
    next_id: u64,
}

impl Session {
    /// Initializes a session at `url`, with a bearer token when given.
    pub fn connect(url: &str, token: Option<&str>) -> Result<Self, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut session = Self {
            url: url.to_owned(),
            token: token.map(str::to_owned),
            session_id: None,
            agent,
            next_id: 1,
        };
        let init = session.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "mcp-warden-tests", "version": "0"}
            }),
        )?;
        if !init.is_success() {
            return Err(format!("initialize failed: {init:?}"));
        }
        session.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(session)
    }

    /// Sends a request and returns its reply.
    pub fn request(&mut self, method: &str, params: Value) -> Result<Reply, String> {
        let id = self.next_id;
        self.next_id += 1;
        let (status, session_id, text, sse) =
            self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        if method == "initialize" && status == 200 {
            self.session_id = session_id;
        }
        let body = if sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|m| m.get("id").and_then(Value::as_u64) == Some(id))
        } else {
            serde_json::from_str(&text).ok()
        };
        Ok(Reply { status, body })
    }

    /// `tools/call` with arguments.
    pub fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Reply, String> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
    }

    fn post(&self, message: &Value) -> Result<(u16, Option<String>, String, bool), String> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-06-18");
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        if let Some(id) = &self.session_id {
            request = request.header("Mcp-Session-Id", id);
        }
        let mut response = request
            .send(message.to_string().as_bytes())
            .map_err(|e| format!("POST {}: {e}", self.url))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let session_id = header("mcp-session-id");
        let sse = header("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, session_id, text, sse))
    }
}
