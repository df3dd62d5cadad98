//! The lines of the operator's push stream (`GET /v1/watch`, one JSON object per line).

use mcp_warden_policy::Bundle;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Why the operator sends `empty` when no McpTool selects the pod.
pub const NO_TOOL: &str = "no McpTool selects this pod";

/// One line of the push stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PushMessage<'a> {
    /// The complete configuration of the pod: first at once, then whenever its version changes.
    Bundle {
        /// The CRs that govern the pod.
        bundle: Cow<'a, Bundle>,
    },
    /// Nothing governs the pod (yet): the sidecar denies every request.
    Empty {
        /// Why, for the sidecar's log.
        #[serde(default)]
        reason: String,
    },
    /// Every heartbeat interval, so a dead peer is noticed.
    Heartbeat {
        /// The version of the bundle the operator would send now.
        #[serde(default)]
        version: Option<String>,
    },
    /// A type a later operator sends: ignored.
    #[serde(other)]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_written_and_unknown_types_are_ignored() {
        let empty = PushMessage::Empty {
            reason: NO_TOOL.into(),
        };
        let line = serde_json::to_string(&empty).unwrap_or_default();
        assert_eq!(
            line,
            r#"{"type":"empty","reason":"no McpTool selects this pod"}"#
        );
        let read: PushMessage<'_> = serde_json::from_str(&line).unwrap_or(PushMessage::Unknown);
        assert_eq!(read, empty);
        let bundle = Bundle::new([], [], []);
        let line = serde_json::to_string(&PushMessage::Bundle {
            bundle: Cow::Borrowed(&bundle),
        })
        .unwrap_or_default();
        assert!(line.starts_with(r#"{"type":"bundle","bundle":{"version":"sha256:"#));
        let heartbeat: PushMessage<'_> =
            serde_json::from_str(r#"{"type":"heartbeat","version":null}"#)
                .unwrap_or(PushMessage::Unknown);
        assert_eq!(heartbeat, PushMessage::Heartbeat { version: None });
        let later: Result<PushMessage<'_>, _> =
            serde_json::from_str(r#"{"type":"credentials","x":1}"#);
        assert!(matches!(later, Ok(PushMessage::Unknown)));
    }
}
