//! Runtime settings from the command line (everything that is not a CR).

use std::{net::SocketAddr, time::Duration};

/// How the sidecar runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where MCP clients connect.
    pub listen: SocketAddr,
    /// `--upstream`: overrides the McpTool's `server.upstream`.
    pub upstream_override: Option<String>,
    /// `--public-url`: the canonical resource URI when it differs from the McpTool's.
    pub public_url: Option<String>,
    /// `--anonymous-client` (tests only, loopback only): tokenless requests act as this McpClient
    /// (`namespace/name` or `name`), holding every scope the rules mention.
    pub anonymous_client: Option<String>,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// The memory all request bodies together may take while they are read and decided,
    /// each counted as 4 × its size (the bytes and the parsed JSON); a request waits for room
    /// up to `body_read_timeout` (then 503). Only authenticated callers' bodies are read.
    pub max_body_bytes_in_flight: usize,
    /// The memory all upstream answers being read may take (a JSON answer whole, an SSE event
    /// at a time), each counted as 4 × its size; one answer may be at most a quarter of it.
    /// A JSON answer waits for room up to `body_read_timeout`, an SSE event does not; an answer
    /// without room is withheld (JSON-RPC errors for the caller's pending requests).
    pub max_answer_bytes_in_flight: usize,
    /// The most requests decided at once (a response's streaming body does not count); above
    /// it, 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Longest wait for upstream response headers. Streams, once started, have no timeout.
    pub upstream_timeout: Duration,
    /// Extra host names `Origin`/`Host` may carry besides the public URL's and loopback
    /// (DNS-rebinding protection), e.g. an in-cluster Service name.
    pub allowed_hosts: Vec<String>,
    /// Longest wait for a POST body to arrive in full (408 after).
    pub body_read_timeout: Duration,
    /// On shutdown, how long open requests and streams may continue.
    pub shutdown_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream_override: None,
            public_url: None,
            anonymous_client: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
            max_answer_bytes_in_flight: 32 * 1024 * 1024,
            max_concurrent_requests: 1024,
            upstream_timeout: Duration::from_secs(300),
            allowed_hosts: Vec::new(),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
