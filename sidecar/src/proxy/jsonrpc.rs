//! JSON-RPC 2.0 as MCP uses it: classify a POST body without changing it.
//!
//! ```text
//! POST body bytes ──parse──► Payload::Single(Message) | Payload::Batch(Vec<Message>)   (2025-03-26 batches)
//!                     │        Message = Request{id, method, params} | Notification{method, params}
//!                     │                | Response{id}   (client answers to sampling, elicitation, roots)
//!                     ├─ not JSON            ──► ParseError::Json     (400, -32700, id null)
//!                     └─ not JSON-RPC 2.0    ──► ParseError::Invalid  (400, -32600, id when known)
//! ```
//!
//! The body is forwarded as received; this module only reads it. Ids keep their JSON form
//! (`1` and `"1"` are different ids), compared by their canonical JSON text.

use serde_json::{Map, Value};
use std::fmt;

/// The standard JSON-RPC error codes the proxy answers with.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown tool, foreign task (MCP uses "invalid params" for both).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Proxy-side failure (upstream unreachable, not ready).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Session not found (the TypeScript SDK's body for unknown sessions).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// 2026-07-28 `HeaderMismatch`: mirrored headers disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A JSON-RPC id: a string or a number, kept in its JSON form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    /// The id of a JSON value, when it is a valid id (string or number).
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(_) | Value::Number(_) => Some(Self(value.to_string())),
            _ => None,
        }
    }

    /// The id as a JSON value, for answers.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The canonical JSON text (`1`, `"abc"`).
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One JSON-RPC message sent by the client.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request: expects a response with the same id.
    Request {
        /// The id.
        id: Id,
        /// The method.
        method: String,
        /// `params`, when present (an object or an array).
        params: Option<Value>,
    },
    /// A notification: no id, no response.
    Notification {
        /// The method.
        method: String,
        /// `params`, when present.
        params: Option<Value>,
    },
    /// The client's answer to a server-initiated request.
    Response {
        /// The id (`None` for an error response to an unparseable request).
        id: Option<Id>,
    },
}

impl Message {
    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Self::Request { method, .. } | Self::Notification { method, .. } => Some(method),
            Self::Response { .. } => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Self::Request { id, .. } => Some(id),
            Self::Response { id } => id.as_ref(),
            Self::Notification { .. } => None,
        }
    }

    /// `params`.
    pub fn params(&self) -> Option<&Value> {
        match self {
            Self::Request { params, .. } | Self::Notification { params, .. } => params.as_ref(),
            Self::Response { .. } => None,
        }
    }

    /// A string member of `params`.
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params()?.get(key)?.as_str()
    }

    /// `params._meta[key]` as a string.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.params()?.get("_meta")?.get(key)?.as_str()
    }

    /// The label metrics and decision logs use: the method, or `response`.
    pub fn label(&self) -> &str {
        self.method().unwrap_or("response")
    }
}

/// A POST body: one message, or a 2025-03-26 batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// One message.
    Single(Message),
    /// A JSON array of messages (never empty).
    Batch(Vec<Message>),
}

impl Payload {
    /// Every message, in order.
    pub fn messages(&self) -> &[Message] {
        match self {
            Self::Single(m) => std::slice::from_ref(m),
            Self::Batch(ms) => ms,
        }
    }

    /// Whether the body is an array.
    pub fn is_batch(&self) -> bool {
        matches!(self, Self::Batch(_))
    }

    /// The ids of every request, in order (one error each when a batch is refused).
    pub fn request_ids(&self) -> Vec<Id> {
        self.messages()
            .iter()
            .filter_map(|m| match m {
                Message::Request { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    }

    /// The id a single-error answer carries: the request's id, else none.
    pub fn answer_id(&self) -> Option<Id> {
        match self {
            Self::Single(Message::Request { id, .. }) => Some(id.clone()),
            _ => None,
        }
    }

    /// The label for metrics and upstream latency: the method, `batch`, or `response`.
    pub fn label(&self) -> &str {
        match self {
            Self::Single(m) => m.label(),
            Self::Batch(_) => "batch",
        }
    }
}

/// Why a body is not a JSON-RPC payload.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (or nested too deeply).
    #[error("Parse error: {0}")]
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message or batch.
    #[error("Invalid Request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
        /// The request's id, when it could be read.
        id: Option<Id>,
    },
}

impl ParseError {
    /// The JSON-RPC code for the answer.
    pub fn code(&self) -> i64 {
        match self {
            Self::Json(_) => code::PARSE_ERROR,
            Self::Invalid { .. } => code::INVALID_REQUEST,
        }
    }

    /// The id for the answer.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Self::Json(_) => None,
            Self::Invalid { id, .. } => id.as_ref(),
        }
    }
}

/// Parses and classifies a POST body.
pub fn parse(body: &[u8]) -> Result<Payload, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    match value {
        Value::Object(object) => message(object).map(Payload::Single),
        Value::Array(items) if items.is_empty() => Err(invalid("empty batch", None)),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(object) => message(object),
                _ => Err(invalid("batch element is not an object", None)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Payload::Batch),
        _ => Err(invalid("not an object or an array", None)),
    }
}

fn invalid(reason: &str, id: Option<Id>) -> ParseError {
    ParseError::Invalid {
        reason: reason.to_owned(),
        id,
    }
}

fn message(mut object: Map<String, Value>) -> Result<Message, ParseError> {
    let raw_id = object.get("id");
    let (has_id, null_id) = (raw_id.is_some(), raw_id.is_some_and(Value::is_null));
    let id = raw_id.and_then(Id::from_value);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\"", id));
    }
    if let Some(method) = object.get("method") {
        let Some(method) = method.as_str().map(str::to_owned) else {
            return Err(invalid("\"method\" must be a string", id));
        };
        // Moved out, not copied: the parsed body is not used again.
        let params = object.remove("params");
        if params
            .as_ref()
            .is_some_and(|p| !p.is_object() && !p.is_array())
        {
            return Err(invalid("\"params\" must be an object or an array", id));
        }
        return match (has_id, id) {
            (false, _) => Ok(Message::Notification { method, params }),
            (true, Some(id)) => Ok(Message::Request { id, method, params }),
            (true, None) => Err(invalid("\"id\" must be a string or a number", None)),
        };
    }
    let (has_result, has_error) = (object.contains_key("result"), object.contains_key("error"));
    if has_result == has_error {
        return Err(invalid(
            "a message needs \"method\", or exactly one of \"result\" and \"error\"",
            id,
        ));
    }
    match (has_id, id) {
        (true, None) if null_id && has_error => Ok(Message::Response { id: None }),
        (true, Some(id)) => Ok(Message::Response { id: Some(id) }),
        _ => Err(invalid("a response needs a string or number \"id\"", None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Message {
        match parse(body.as_bytes()) {
            Ok(Payload::Single(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        let m =
            single(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#);
        assert_eq!(m.id().map(Id::as_json), Some("7"));
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.param_str("name"), Some("echo"));
        let m = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(matches!(m, Message::Notification { .. }));
        assert_eq!(m.label(), "notifications/initialized");
        let m = single(r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#);
        assert_eq!(
            m,
            Message::Response {
                id: Id::from_value(&"s-1".into())
            }
        );
        assert_eq!(m.label(), "response");
        let m = single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#);
        assert_eq!(m, Message::Response { id: None });
    }

    #[test]
    fn string_and_number_ids_differ() {
        let a = Id::from_value(&serde_json::json!(1)).unwrap();
        let b = Id::from_value(&serde_json::json!("1")).unwrap();
        assert_ne!(a, b);
        assert_eq!(b.to_value(), serde_json::json!("1"));
        assert_eq!(a.to_value(), serde_json::json!(1));
    }

    #[test]
    fn batches_keep_order_and_ids() {
        let p = parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":"b","method":"tools/list"}]"#,
        )
        .unwrap();
        assert!(p.is_batch());
        assert_eq!(p.label(), "batch");
        assert_eq!(p.messages().len(), 3);
        let ids: Vec<String> = p.request_ids().iter().map(|i| i.to_string()).collect();
        assert_eq!(ids, ["1", "\"b\""]);
        assert_eq!(p.answer_id(), None);
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        for body in ["", "{", "{\"jsonrpc\":", "nul", "\u{0}"] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.code(), code::PARSE_ERROR, "{body:?}");
            assert_eq!(e.id(), None);
        }
        // Deep nesting is refused by the parser, not by a stack overflow.
        let deep = "[".repeat(100_000);
        assert_eq!(
            parse(deep.as_bytes()).unwrap_err().code(),
            code::PARSE_ERROR
        );
    }

    #[test]
    fn invalid_json_rpc_is_an_invalid_request_with_its_id_when_known() {
        let cases = [
            (r#"{"id":1,"method":"ping"}"#, Some("1")),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, Some("1")),
            (r#"{"jsonrpc":"2.0","id":2,"method":5}"#, Some("2")),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, None),
            (r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":3,"method":"ping","params":"x"}"#,
                Some("3"),
            ),
            (r#"{"jsonrpc":"2.0","id":4}"#, Some("4")),
            (
                r#"{"jsonrpc":"2.0","id":4,"result":1,"error":{}}"#,
                Some("4"),
            ),
            (r#"{"jsonrpc":"2.0","result":1}"#, None),
            ("[]", None),
            ("[1]", None),
            ("42", None),
            ("\"x\"", None),
        ];
        for (body, id) in cases {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.code(), code::INVALID_REQUEST, "{body}");
            assert_eq!(e.id().map(Id::as_json), id, "{body}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0xD1B5_4A32_D192_ED03_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: [&[u8]; 16] = [
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"jsonrpc\"",
            b"\"2.0\"",
            b"\"id\"",
            b"1",
            b"\"method\"",
            b"\"params\"",
            b"null",
            b"\"result\"",
            b"\xff",
            b"\"error\"",
        ];
        for _ in 0..5_000 {
            let body: Vec<u8> = (0..(next() % 30))
                .flat_map(|_| pieces[(next() % 16) as usize].to_vec())
                .collect();
            match parse(&body) {
                Ok(p) => assert!(!p.messages().is_empty()),
                Err(e) => assert!(matches!(
                    e.code(),
                    code::PARSE_ERROR | code::INVALID_REQUEST
                )),
            }
        }
    }

    #[test]
    fn meta_and_params_are_read_not_changed() {
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        assert_eq!(
            m.meta_str("io.modelcontextprotocol/protocolVersion"),
            Some("2026-07-28")
        );
        assert_eq!(m.meta_str("missing"), None);
    }
}
