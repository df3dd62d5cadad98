//! SSE event ids bound to the caller and session they were sent to, so that a resumption
//! (`Last-Event-ID`) replays only the caller's own stream.
//!
//! ```text
//! upstream event  id: 7f3a_12           ──seal(caller, session)──►  id: 7f3a_12~<mac>   to the client
//! client request  Last-Event-ID: 7f3a_12~<mac>  ──resume(caller, session)──►
//!     mac matches ──► Last-Event-ID: 7f3a_12 upstream; the replay is read like any answer
//!     otherwise   ──► 400 -32600 (another caller's or session's id, or from before a restart)
//! ```
//!
//! The MAC is HMAC-SHA-256 under a key made at start, truncated to 64 bits. Upstream event ids
//! are opaque and may be guessable (`<stream>_<n>`); a sealed id cannot be moved to another
//! caller or session.

use super::{deny::Denial, jsonrpc::ParseError};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

/// The request header of a resumption.
pub const LAST_EVENT_ID: &str = "last-event-id";
const SEPARATOR: u8 = b'~';
const TAG_HEX: usize = 16;

/// Seals and checks event ids with one key per process.
#[derive(Debug)]
pub struct EventIds {
    key: [u8; 32],
}

impl Default for EventIds {
    fn default() -> Self {
        Self {
            key: rand::random(),
        }
    }
}

impl EventIds {
    fn tag(&self, scope: &str, raw: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(raw);
        let digest = mac.finalize().into_bytes();
        hex::encode(&digest[..TAG_HEX / 2])
    }

    /// The id the client sees for the upstream's event id `raw`, in `scope` (the caller and the
    /// session, see [`scope`]).
    pub fn seal(&self, scope: &str, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 1 + TAG_HEX);
        out.extend_from_slice(raw);
        out.push(SEPARATOR);
        out.extend_from_slice(self.tag(scope, raw).as_bytes());
        out
    }

    /// The upstream's event id inside a sealed one, when it was sealed for `scope`.
    pub fn open<'a>(&self, scope: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let at = sealed.iter().rposition(|&b| b == SEPARATOR)?;
        let (raw, tag) = (&sealed[..at], &sealed[at + 1..]);
        let want = self.tag(scope, raw);
        (tag.len() == TAG_HEX && constant_time_eq(tag, want.as_bytes())).then_some(raw)
    }

    /// Replaces the request's `Last-Event-ID` (if any) by the upstream's id; refuses an id that
    /// was not sealed for `scope`.
    pub fn resume(&self, headers: &mut HeaderMap, scope: &str) -> Result<(), Denial> {
        let Some(sealed) = headers.get(LAST_EVENT_ID) else {
            return Ok(());
        };
        let raw = self
            .open(scope, sealed.as_bytes())
            .and_then(|raw| HeaderValue::from_bytes(raw).ok())
            .ok_or_else(|| {
                Denial::Parse(ParseError::Invalid {
                    reason: "Last-Event-ID was not issued to this caller in this session".into(),
                    id: None,
                })
            })?;
        headers.insert(LAST_EVENT_ID, raw);
        Ok(())
    }
}

/// The scope an event id is sealed in: the caller's principal and the session (if any).
pub fn scope(principal: &super::session::PrincipalKey, session: Option<&str>) -> String {
    format!("{principal}\n{}", session.unwrap_or(""))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_ids_open_only_in_their_scope() {
        let ids = EventIds::default();
        let sealed = ids.seal("alice\nS1", b"stream_7");
        assert_eq!(ids.open("alice\nS1", &sealed), Some(&b"stream_7"[..]));
        assert_eq!(ids.open("alice\nS2", &sealed), None, "another session");
        assert_eq!(ids.open("bob\nS1", &sealed), None, "another caller");
        assert_eq!(ids.open("alice\nS1", b"stream_7"), None, "unsealed");
        assert_eq!(
            ids.open("alice\nS1", b"stream_8~0000000000000000"),
            None,
            "forged"
        );
        let other = EventIds::default();
        assert_eq!(other.open("alice\nS1", &sealed), None, "another process");
        // Ids that contain the separator themselves still round-trip.
        let odd = ids.seal("s", b"a~b~c");
        assert_eq!(ids.open("s", &odd), Some(&b"a~b~c"[..]));
    }

    #[test]
    fn resume_rewrites_or_refuses_the_header() {
        let ids = EventIds::default();
        let mut h = HeaderMap::new();
        assert!(ids.resume(&mut h, "s").is_ok(), "no header, nothing to do");
        let sealed = ids.seal("s", b"e-1");
        h.insert(LAST_EVENT_ID, HeaderValue::from_bytes(&sealed).unwrap());
        ids.resume(&mut h, "s").unwrap();
        assert_eq!(h.get(LAST_EVENT_ID).unwrap(), "e-1");
        h.insert(LAST_EVENT_ID, HeaderValue::from_bytes(&sealed).unwrap());
        let refused = ids.resume(&mut h, "t").unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::BAD_REQUEST);
    }
}
