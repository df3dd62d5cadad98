//! What the server sends its callers besides answers: its requests (sampling, elicitation,
//! roots) and the resource updates a caller subscribed to.
//!
//! ```text
//! upstream SSE event or JSON message without result/error (filter::rewrite)
//!   └─ ResponseInspector::server_message(method, id, params) ──► decide(…)
//!        elicitation/create, sampling/createMessage, roots/list
//!          kind in McpTool.spec.serverRequests, and tied: it arrives on the answer stream of
//!          one of the caller's requests still pending (never on a GET stream)
//!            yes ──► Relay (the client answers it with a POST, as the spec has it)
//!            no  ──► Refuse: dropped; Replier::refuse POSTs a JSON-RPC error for its id to the
//!                    upstream, so the server's request ends at once instead of timing out
//!        notifications/resources/updated ──► Relay when the caller may read params.uri
//!                                            (Caller::call(Resource, uri)), else Drop
//!        anything else (ping, progress, log messages, list_changed …) ──► Relay
//! ```
//!
//! 2026-07-28 servers ask through MRTR instead (an `input_required` result of the caller's own
//! request), which carries no server-to-client request on the wire.

use super::{jsonrpc::Id, upstream::Upstream};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use mcp_warden_crds::ServerRequest;
use mcp_warden_policy::{Caller, Capability, RuleSet};
use serde::Deserialize;

/// What becomes of one server message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The caller receives it.
    Relay,
    /// Withheld from the caller, and answered to the server with this refusal.
    Refuse(String),
    /// Withheld from the caller (a notification: nothing to answer).
    Drop,
}

/// Decides one request or notification of the server. `tied` says whether it arrives on the
/// answer stream of a request of the caller's that is still pending.
pub fn decide(
    rules: &RuleSet,
    caller: Option<&Caller<'_>>,
    method: &str,
    params: Option<&str>,
    tied: bool,
) -> Fate {
    if method == "notifications/resources/updated" {
        #[derive(Deserialize)]
        struct Updated {
            uri: String,
        }
        let uri = params.and_then(|p| serde_json::from_str::<Updated>(p).ok());
        let readable = match (uri, caller) {
            (Some(u), Some(caller)) => caller.call(Capability::Resource, &u.uri).is_allowed(),
            _ => false,
        };
        return if readable { Fate::Relay } else { Fate::Drop };
    }
    let Some(kind) = ServerRequest::of(method) else {
        return Fate::Relay;
    };
    if !rules.server_requests.contains(&kind) {
        return Fate::Refuse(format!(
            "mcp-warden: {} does not allow {method} (McpTool spec.serverRequests)",
            rules.tool
        ));
    }
    if !tied {
        return Fate::Refuse(format!(
            "mcp-warden: {method} must belong to a pending request of the client; it is refused on a stream that carries none"
        ));
    }
    Fate::Relay
}

/// The refusal of an MRTR result's `inputRequests` (2026-07-28: the server's requests ride in
/// an `input_required` result of the caller's own request, so they are tied by construction):
/// `Some(why)` when one of them is a kind the McpTool does not allow, or cannot be read.
pub fn input_requests(
    rules: &RuleSet,
    caller: Option<&Caller<'_>>,
    result: &str,
) -> Option<String> {
    #[derive(Deserialize)]
    struct Result {
        #[serde(rename = "inputRequests")]
        input_requests: Option<std::collections::BTreeMap<String, Request>>,
    }
    #[derive(Deserialize)]
    struct Request {
        method: String,
    }
    let requests = match serde_json::from_str::<Result>(result) {
        Ok(read) => read.input_requests.unwrap_or_default(),
        Err(_) => return Some("its inputRequests cannot be read".into()),
    };
    requests
        .values()
        .find_map(|r| match decide(rules, caller, &r.method, None, true) {
            Fate::Refuse(why) => Some(why),
            Fate::Drop => Some(format!("it asks the client for {}", r.method)),
            Fate::Relay => None,
        })
}

/// Answers the upstream's refused requests on the caller's behalf, on the caller's session.
#[derive(Clone, Debug)]
pub struct Replier {
    /// The upstream client.
    pub upstream: Upstream,
    /// The upstream MCP endpoint.
    pub url: String,
    /// The forwarded request's headers (session, protocol version), without its body's.
    pub headers: HeaderMap,
}

impl Replier {
    /// A replier sending with the headers of a request forwarded to the upstream.
    pub fn new(upstream: Upstream, url: &str, forwarded: &HeaderMap) -> Self {
        let mut headers = forwarded.clone();
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static("mcp-method"),
            header::HeaderName::from_static("mcp-name"),
        ] {
            headers.remove(name);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        Self {
            upstream,
            url: url.to_owned(),
            headers,
        }
    }

    /// Posts a JSON-RPC error for request `id` of the server, in the background.
    pub fn refuse(&self, id: &Id, why: &str) {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id.to_value(),
            "error": {"code": super::jsonrpc::code::METHOD_NOT_FOUND, "message": why},
        });
        let this = self.clone();
        tokio::spawn(async move {
            let sent = this
                .upstream
                .send(
                    Method::POST,
                    &this.url,
                    None,
                    this.headers,
                    Bytes::from(body.to_string()),
                )
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "answering a refused server request to the upstream failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file::{self, Selection};

    fn rules(extra: &str) -> RuleSet {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/everything/everything.yaml");
        let text = std::fs::read_to_string(path).unwrap().replacen(
            "  serverRequests: [Elicitation, Sampling]\n",
            extra,
            1,
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, text).unwrap();
        file::load_config(&file, &Selection::OnlyTool).unwrap().1
    }

    #[test]
    fn server_requests_need_the_mcp_tool_and_a_pending_request() {
        let default = rules("");
        let decide =
            |rules: &RuleSet, method: &str, tied: bool| decide(rules, None, method, None, tied);
        assert_eq!(decide(&default, "elicitation/create", true), Fate::Relay);
        assert!(
            matches!(decide(&default, "elicitation/create", false), Fate::Refuse(w) if w.contains("pending request"))
        );
        for method in ["sampling/createMessage", "roots/list"] {
            assert!(
                matches!(decide(&default, method, true), Fate::Refuse(w) if w.contains("spec.serverRequests")),
                "{method}"
            );
        }
        let sampling = rules("  serverRequests: [Sampling]\n");
        assert_eq!(
            decide(&sampling, "sampling/createMessage", true),
            Fate::Relay
        );
        assert!(matches!(
            decide(&sampling, "elicitation/create", true),
            Fate::Refuse(_)
        ));
        assert_eq!(decide(&default, "ping", false), Fate::Relay);
        assert_eq!(
            decide(&default, "notifications/progress", false),
            Fate::Relay
        );
        // MRTR: the server's requests inside a result of the caller's own request.
        let mrtr = |methods: &[&str]| {
            let inner: Vec<String> = (methods.iter().enumerate())
                .map(|(i, m)| format!(r#""k{i}":{{"method":"{m}","params":{{}}}}"#))
                .collect();
            let result = format!(
                r#"{{"resultType":"input_required","inputRequests":{{{}}}}}"#,
                inner.join(",")
            );
            input_requests(&default, None, &result)
        };
        assert_eq!(mrtr(&["elicitation/create"]), None);
        assert!(
            mrtr(&["elicitation/create", "sampling/createMessage"])
                .is_some_and(|w| w.contains("sampling/createMessage"))
        );
        assert!(input_requests(&default, None, r#"{"inputRequests":[1]}"#).is_some());
        // An update without a caller, or without a readable uri, is dropped.
        assert_eq!(
            decide(&default, "notifications/resources/updated", false),
            Fate::Drop
        );
    }
}
