//! Header rules: what crosses the proxy, and the 2026-07-28 header/body consistency check.
//!
//! ```text
//! client ──► to_upstream():   drop hop-by-hop (+ those named by Connection), Authorization,
//!                             Proxy-Authorization, Host, Content-Length, Expect, Accept-Encoding;
//!                             keep the rest as is: Accept, Mcp-Session-Id, MCP-Protocol-Version,
//!                             Last-Event-ID, Mcp-Method, Mcp-Name, Mcp-Param-*, traceparent …
//! client ◄── to_client():     drop hop-by-hop and WWW-Authenticate (upstream challenges name the
//!                             upstream's resource); add X-Accel-Buffering: no on event streams
//! modern POST ──► check_mirrored(): MCP-Protocol-Version = _meta protocolVersion,
//!                             Mcp-Method = method, Mcp-Name = params.name | params.uri
//!                             (after =?base64?…?= decoding)  ──mismatch──► 400, -32020
//! ```
//!
//! `Accept-Encoding` is dropped so that upstream bodies arrive uncompressed: the proxy must read
//! `tools/list` results, and SSE must never be compressed (HTTP-07).

use super::jsonrpc::{Message, Payload};
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, header};

/// `Mcp-Session-Id`.
pub const SESSION_ID: &str = "mcp-session-id";
/// `MCP-Protocol-Version`.
pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// `Mcp-Method` (2026-07-28).
pub const MCP_METHOD: &str = "mcp-method";
/// `Mcp-Name` (2026-07-28).
pub const MCP_NAME: &str = "mcp-name";
/// The first revision with mirrored headers and no sessions.
pub const MODERN_VERSION: &str = "2026-07-28";
/// The `_meta` key carrying the protocol version of a modern request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().map(HeaderName::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The headers forwarded upstream for a client request.
pub fn to_upstream(client: &HeaderMap) -> HeaderMap {
    let mut headers = client.clone();
    strip_hop_by_hop(&mut headers);
    for name in [
        header::AUTHORIZATION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::EXPECT,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(name);
    }
    headers
}

/// The headers relayed to the client for an upstream response.
pub fn to_client(upstream: &HeaderMap) -> HeaderMap {
    let mut headers = upstream.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(header::WWW_AUTHENTICATE);
    if is_event_stream(&headers) {
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    headers
}

/// Whether the media type of `Content-Type` (without parameters) is `expected`, ignoring ASCII
/// case.
fn media_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
}

/// Whether the body is `application/json` (any parameters).
pub fn is_json(headers: &HeaderMap) -> bool {
    media_type_is(headers, "application/json")
}

/// Whether the body is `text/event-stream`.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    media_type_is(headers, "text/event-stream")
}

/// Whether a request may be answered in a form the proxy forwards: no `Accept` (the upstream
/// decides), or one naming `application/json`, `text/event-stream` or a wildcard covering one.
pub fn accepts_an_answer(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|range| range.split(';').next().unwrap_or_default().trim())
        .any(|range| {
            [
                "application/json",
                "text/event-stream",
                "*/*",
                "application/*",
                "text/*",
            ]
            .iter()
            .any(|t| range.eq_ignore_ascii_case(t))
        })
}

/// A header's value as text, when it is visible ASCII.
pub fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok()
}

/// The request's `Mcp-Session-Id`.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    text(headers, SESSION_ID)
}

/// Which protocol era a POST belongs to (reference VER-01).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// 2025-03-26 … 2025-11-25: `initialize`, sessions, GET streams.
    Legacy,
    /// 2026-07-28 and later: self-contained requests with mirrored headers.
    Modern,
}

/// Modern when `MCP-Protocol-Version` is 2026-07-28 or later, or a message carries
/// `_meta["io.modelcontextprotocol/protocolVersion"]`.
pub fn era(headers: &HeaderMap, payload: Option<&Payload>) -> Era {
    let by_header = text(headers, PROTOCOL_VERSION).is_some_and(|v| is_modern_version(v.trim()));
    let by_body = payload.is_some_and(|p| {
        p.messages()
            .iter()
            .any(|m| m.meta_str(META_PROTOCOL_VERSION).is_some())
    });
    if by_header || by_body {
        Era::Modern
    } else {
        Era::Legacy
    }
}

/// Whether a version string (`YYYY-MM-DD`) is 2026-07-28 or later.
pub fn is_modern_version(version: &str) -> bool {
    version.len() == MODERN_VERSION.len()
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && version >= MODERN_VERSION
}

/// A modern request whose mirrored headers disagree with its body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Header mismatch: {0}")]
pub struct Mismatch(pub String);

/// Checks the mirrored headers of a modern single-message POST (SH/26 §Server Validation).
pub fn check_mirrored(headers: &HeaderMap, message: &Message) -> Result<(), Mismatch> {
    let Some(method) = message.method() else {
        return Ok(());
    };
    if let Some(version) = message.meta_str(META_PROTOCOL_VERSION) {
        expect(headers, PROTOCOL_VERSION, "MCP-Protocol-Version", version)?;
    }
    expect(headers, MCP_METHOD, "Mcp-Method", method)?;
    let name_field = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let (Some(field), Message::Request { .. }) = (name_field, message) {
        match message.param_str(field) {
            Some(name) => expect(headers, MCP_NAME, "Mcp-Name", name)?,
            None if headers.contains_key(MCP_NAME) => {
                return Err(Mismatch(format!(
                    "Mcp-Name is set but the body has no params.{field}"
                )));
            }
            None => {}
        }
    }
    Ok(())
}

fn expect(headers: &HeaderMap, name: &str, display: &str, body: &str) -> Result<(), Mismatch> {
    let mut values = headers.get_all(name).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Mismatch(format!(
            "{display} must be sent exactly once (body: {body:?})"
        )));
    };
    let Some(decoded) = decode_value(value) else {
        return Err(Mismatch(format!("{display} has invalid characters")));
    };
    if decoded != body {
        return Err(Mismatch(format!(
            "{display} header value {decoded:?} does not match body value {body:?}"
        )));
    }
    Ok(())
}

/// A header value per SH/26 §Value Encoding: visible ASCII, space and tab as is, or
/// `=?base64?…?=` holding UTF-8. `None` when invalid.
pub fn decode_value(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    if !bytes
        .iter()
        .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b))
    {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(encoded) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(raw).ok()
        }
        None => Some(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::jsonrpc;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn upstream_gets_no_token_and_no_hop_by_hop_headers() {
        let h = map(&[
            ("authorization", "Bearer secret"),
            ("proxy-authorization", "Basic x"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("host", "localhost:1"),
            ("content-length", "10"),
            ("accept-encoding", "gzip"),
            ("expect", "100-continue"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", "abc"),
            ("MCP-Protocol-Version", "2025-11-25"),
            ("last-event-id", "ev-9"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-region", "=?base64?SGk=?="),
            ("traceparent", "00-abc-def-01"),
        ]);
        let up = to_upstream(&h);
        let mut names: Vec<&str> = up.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "last-event-id",
                "mcp-method",
                "mcp-name",
                "mcp-param-region",
                "mcp-protocol-version",
                "mcp-session-id",
                "traceparent"
            ]
        );
        assert_eq!(up["mcp-param-region"], "=?base64?SGk=?=");
        assert_eq!(up["last-event-id"], "ev-9");
    }

    #[test]
    fn clients_never_see_upstream_challenges_and_streams_are_unbuffered() {
        let h = map(&[
            ("content-type", "text/event-stream"),
            (
                "www-authenticate",
                "Bearer resource_metadata=\"http://upstream/x\"",
            ),
            ("mcp-session-id", "s1"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
        ]);
        let out = to_client(&h);
        assert!(!out.contains_key("www-authenticate"));
        assert!(!out.contains_key("transfer-encoding"));
        assert_eq!(out["mcp-session-id"], "s1");
        assert_eq!(out["x-accel-buffering"], "no");
        assert_eq!(out["cache-control"], "no-cache");
        let json = to_client(&map(&[("content-type", "application/json; charset=utf-8")]));
        assert!(!json.contains_key("x-accel-buffering"));
        assert!(is_json(&map(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(!is_json(&map(&[("content-type", "text/plain")])));
    }

    #[test]
    fn era_from_header_or_body() {
        let legacy = jsonrpc::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        let modern = jsonrpc::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        )
        .unwrap();
        assert_eq!(era(&HeaderMap::new(), Some(&legacy)), Era::Legacy);
        assert_eq!(
            era(
                &map(&[("mcp-protocol-version", "2025-11-25")]),
                Some(&legacy)
            ),
            Era::Legacy
        );
        assert_eq!(
            era(
                &map(&[("mcp-protocol-version", "2026-07-28")]),
                Some(&legacy)
            ),
            Era::Modern
        );
        assert_eq!(
            era(&map(&[("mcp-protocol-version", "2027-01-01")]), None),
            Era::Modern
        );
        assert_eq!(
            era(&map(&[("mcp-protocol-version", "garbage!!!")]), None),
            Era::Legacy
        );
        assert_eq!(era(&HeaderMap::new(), Some(&modern)), Era::Modern);
    }

    fn msg(body: &str) -> Message {
        match jsonrpc::parse(body.as_bytes()).unwrap() {
            Payload::Single(m) => m,
            Payload::Batch(_) => unreachable!(),
        }
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"héllo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    #[test]
    fn mirrored_headers_must_match_the_body() {
        let good = map(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?aMOpbGxv?="),
        ]);
        assert_eq!(check_mirrored(&good, &msg(CALL)), Ok(()));
        let bad_cases: [&[(&str, &str)]; 6] = [
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "=?base64?aMOpbGxv?="),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "hello"),
            ],
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?aMOpbGxv?="),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?!!?="),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?aMOpbGxv?="),
            ],
        ];
        for case in bad_cases {
            assert!(check_mirrored(&map(case), &msg(CALL)).is_err(), "{case:?}");
        }
        // resources/read mirrors params.uri; other methods need only Mcp-Method.
        let read = msg(
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a b"}}"#,
        );
        assert_eq!(
            check_mirrored(
                &map(&[
                    ("mcp-method", "resources/read"),
                    ("mcp-name", "file:///a b")
                ]),
                &read
            ),
            Ok(())
        );
        let note = msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled"}"#);
        assert_eq!(
            check_mirrored(&map(&[("mcp-method", "notifications/cancelled")]), &note),
            Ok(())
        );
        assert!(check_mirrored(&HeaderMap::new(), &note).is_err());
    }

    #[test]
    fn header_values_decode_or_are_refused() {
        assert_eq!(
            decode_value(&HeaderValue::from_static("us-west1")).as_deref(),
            Some("us-west1")
        );
        assert_eq!(
            decode_value(&HeaderValue::from_static("=?base64?SGVsbG8sIOS4lueVjA==?=")).as_deref(),
            Some("Hello, 世界")
        );
        assert_eq!(
            decode_value(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()),
            None
        );
        assert_eq!(
            decode_value(&HeaderValue::from_static("=?base64?not base64?=")),
            None
        );
    }

    #[test]
    fn accept_must_allow_json_or_an_event_stream_when_sent() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            }
            accepts_an_answer(&h)
        };
        assert!(with(&[]));
        assert!(with(&["application/json, text/event-stream"]));
        assert!(with(&["text/event-stream;q=0.5"]));
        assert!(with(&["text/html", "*/*"]));
        assert!(with(&["Application/JSON"]));
        assert!(!with(&["text/html"]));
        assert!(!with(&["image/png, text/plain"]));
    }
}
