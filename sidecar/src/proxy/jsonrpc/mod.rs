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
//! The body is forwarded as received; this module only reads it, and refuses what two JSON
//! readers could read differently (`strict.rs`): a key twice, a folded variant of a governed key,
//! a governed value of the wrong type, an id that is not a string or a safe integer, two
//! requests of one batch with the same id. Ids are compared as values: `1` and `"1"` differ, and
//! an answer's `1.0` is the id `1`.

mod strict;

pub use strict::fold;

use serde_json::{Map, Value};
use std::fmt;

/// The largest integer id (JavaScript's `Number.MAX_SAFE_INTEGER`): beyond it, readers that
/// keep numbers as doubles merge distinct ids.
pub const MAX_SAFE_ID: u64 = (1 << 53) - 1;

/// The most messages one batch may hold: each is decided and may be audited, so one request's
/// cost stays bounded.
pub const MAX_BATCH: usize = 100;

/// The standard JSON-RPC error codes the proxy answers with.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid JSON-RPC message.
    pub const INVALID_REQUEST: i64 = -32600;
    /// A method the proxy has no rule for.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Unknown tool, foreign task (MCP uses "invalid params" for both).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Proxy-side failure (upstream unreachable, not ready).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Session not found (the TypeScript SDK's body for unknown sessions).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// 2026-07-28 `HeaderMismatch`: mirrored headers disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A JSON-RPC id: a string or a number, kept as canonical JSON text (numbers by value).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Id(String);

impl Id {
    /// The id of a JSON value read from an answer, when it is a string or a number. A number with
    /// an integral value is its integer (`1.0` and `1e0` are the id `1`), so an upstream cannot
    /// answer a governed request under a spelling the sidecar does not recognise.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::String(_) => Some(Self(value.to_string())),
            Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= MAX_SAFE_ID as f64 => {
                    Some(Self(format!("{}", f as i64)))
                }
                _ => Some(Self(n.to_string())),
            },
            Value::Number(n) => Some(Self(n.to_string())),
            _ => None,
        }
    }

    /// The id of a request: a string, or an integer of at most ±(2^53 − 1) written without a
    /// fraction or an exponent.
    fn from_request(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::String(_) => Ok(Self(value.to_string())),
            Value::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_ID) => {
                Ok(Self(n.to_string()))
            }
            Value::Number(_) => Err(
                "a numeric \"id\" must be an integer of at most 2^53 - 1, without a fraction or an exponent",
            ),
            _ => Err("\"id\" must be a string or a number"),
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
    let value = strict::value(body).map_err(|e| ParseError::Json(e.to_string()))?;
    match value {
        Value::Object(object) => message(object).map(Payload::Single),
        Value::Array(items) if items.is_empty() => Err(invalid("empty batch", None)),
        Value::Array(items) if items.len() > MAX_BATCH => Err(invalid(
            &format!("a batch may hold at most {MAX_BATCH} messages"),
            None,
        )),
        Value::Array(items) => {
            let messages = items
                .into_iter()
                .map(|item| match item {
                    Value::Object(object) => message(object),
                    _ => Err(invalid("batch element is not an object", None)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut ids: Vec<&Id> = messages.iter().filter_map(Message::id).collect();
            ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
                return Err(invalid(
                    &format!("two messages of the batch have the id {}", pair[0]),
                    None,
                ));
            }
            Ok(Payload::Batch(messages))
        }
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
    let id = raw_id.map(Id::from_request);
    let known = id.as_ref().and_then(|id| id.as_ref().ok()).cloned();
    strict::check_keys(&object, &strict::MESSAGE_KEYS)
        .map_err(|why| invalid(&why, known.clone()))?;
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\"", known));
    }
    if let Some(method) = object.get("method") {
        let Some(method) = method.as_str().map(str::to_owned) else {
            return Err(invalid("\"method\" must be a string", known));
        };
        // Moved out, not copied: the parsed body is not used again.
        let params = object.remove("params");
        match &params {
            None | Some(Value::Array(_)) => {}
            Some(Value::Object(p)) => {
                strict::check_params(p).map_err(|why| invalid(&why, known.clone()))?;
            }
            Some(_) => {
                return Err(invalid("\"params\" must be an object or an array", known));
            }
        }
        return match id {
            None => Ok(Message::Notification { method, params }),
            Some(Ok(id)) => Ok(Message::Request { id, method, params }),
            Some(Err(why)) => Err(invalid(why, None)),
        };
    }
    let (has_result, has_error) = (object.contains_key("result"), object.contains_key("error"));
    if has_result == has_error {
        return Err(invalid(
            "a message needs \"method\", or exactly one of \"result\" and \"error\"",
            known,
        ));
    }
    match (has_id, id) {
        (true, Some(Err(_))) if null_id && has_error => Ok(Message::Response { id: None }),
        (true, Some(Ok(id))) => Ok(Message::Response { id: Some(id) }),
        _ => Err(invalid(
            "a response needs a string or safe integer \"id\"",
            None,
        )),
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
    fn ids_are_strings_or_safe_integers() {
        for id in [
            "1.0",
            "1e0",
            "1E2",
            "-1.5",
            "9007199254740992",
            "-9007199254740992",
            "1e400",
            "18446744073709551616",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
            let e = parse(body.as_bytes()).unwrap_err();
            // 1e400 is not even a number serde reads (-32700); the others are no valid ids.
            assert!(
                matches!(e.code(), code::INVALID_REQUEST | code::PARSE_ERROR),
                "{id}"
            );
            assert_eq!(e.id(), None, "{id}");
        }
        for (id, canonical) in [
            ("9007199254740991", "9007199254740991"),
            ("-9007199254740991", "-9007199254740991"),
            ("0", "0"),
            ("\"1.0\"", "\"1.0\""),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
            assert_eq!(single(&body).id().map(Id::as_json), Some(canonical));
        }
    }

    #[test]
    fn answer_ids_are_compared_by_value() {
        let id = |text: &str| Id::from_value(&serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(id("1.0"), id("1"));
        assert_eq!(id("1e0"), id("1"));
        assert_eq!(id("-2.0E0"), id("-2"));
        assert_ne!(id("1.5"), id("1"));
        assert_ne!(id("\"1\""), id("1"));
        assert_eq!(id(r#""\u0061""#), id(r#""a""#));
    }

    #[test]
    fn a_batch_with_one_id_twice_is_refused() {
        for body in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":"\u0061","result":{}}]"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.code(), code::INVALID_REQUEST, "{body}");
            assert!(e.to_string().contains("two messages"), "{e}");
        }
        assert!(parse(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","id":"1","method":"b"}]"#).is_ok());
    }

    #[test]
    fn smuggled_keys_are_refused() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","METHOD":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"get-env"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"mine","TaskId":"theirs"}}"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(
                matches!(e.code(), code::INVALID_REQUEST | code::PARSE_ERROR),
                "{body}"
            );
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
