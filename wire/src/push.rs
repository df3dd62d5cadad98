//! The lines of the operator's push stream (`GET /v1/watch`, one JSON object per line).

use mcp_warden_policy::Bundle;
use serde::{Deserialize, Serialize};
use std::{borrow::Cow, collections::BTreeMap};

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
    /// What the pod's sidecar needs to authenticate to its upstream (`McpTool.spec.upstreamAuth`),
    /// sent only to the sidecars of that McpTool, after its bundle and whenever it changes.
    /// Older sidecars ignore it. Never persisted, never logged.
    #[serde(rename = "upstreamAuth")]
    UpstreamAuth {
        /// The keys and Secret values.
        credentials: UpstreamCredentials,
    },
    /// A type a later operator sends: ignored.
    #[serde(other)]
    Unknown,
}

/// The upstream credentials of one McpTool's sidecars. `Debug` shows names, never values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamCredentials {
    /// The private key (PKCS#8 PEM) that signs the identity JWT, when the McpTool asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Public JWKs still published besides the signing key's (the rotation overlap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_keys: Vec<BTreeMap<String, String>>,
    /// The values of the Secrets the McpTool references, by `name/key` (its own namespace only).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("signing_key", &self.signing_key.as_ref().map(|_| ".."))
            .field(
                "published_keys",
                &self
                    .published_keys
                    .iter()
                    .map(|k| k.get("kid"))
                    .collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
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

    #[test]
    fn upstream_credentials_round_trip_and_never_show_values() {
        let credentials = UpstreamCredentials {
            signing_key: Some("-----BEGIN PRIVATE KEY-----".into()),
            published_keys: vec![BTreeMap::from([("kid".into(), "old".into())])],
            secrets: BTreeMap::from([("api/token".into(), "s3cr3t".into())]),
        };
        let message = PushMessage::UpstreamAuth {
            credentials: credentials.clone(),
        };
        let line = serde_json::to_string(&message).unwrap_or_default();
        assert!(line.starts_with(r#"{"type":"upstreamAuth","credentials":{"signingKey":"#));
        let read: PushMessage<'_> = serde_json::from_str(&line).unwrap_or(PushMessage::Unknown);
        assert_eq!(read, message);
        let shown = format!("{message:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(
            shown.contains("api/token") && shown.contains("old"),
            "{shown}"
        );
    }
}
