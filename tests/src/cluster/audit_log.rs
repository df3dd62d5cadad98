//! The API server's audit log: which ServiceAccount token made which request.

use super::*;

/// One request in the API server's audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// `system:serviceaccount:<ns>:<name>`.
    pub user: String,
    /// `JTI=…` of the token (`authentication.kubernetes.io/credential-id`).
    pub credential: String,
    /// get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// API group ("" = core).
    pub group: String,
    /// `leases`, `mcpclients/status`, … (subresource after a slash).
    pub resource: String,
    /// The object's namespace, if any.
    pub namespace: String,
    /// The object's name, if any.
    pub name: String,
    /// HTTP status of the answer.
    pub code: u16,
    /// When the request came in.
    pub time: String,
}

impl AuditEvent {
    pub(super) fn from_json(e: &Value) -> Self {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let r = &e["objectRef"];
        let mut resource = s(&r["resource"]);
        if let Some(sub) = r["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        Self {
            user: s(&e["user"]["username"]),
            credential: e["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            verb: s(&e["verb"]),
            group: s(&r["apiGroup"]),
            resource,
            namespace: s(&r["namespace"]),
            name: s(&r["name"]),
            code: e["responseStatus"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
            time: s(&e["requestReceivedTimestamp"]),
        }
    }
}

/// `JTI=<jti>` of a ServiceAccount token, as the audit log's credential id names it.
pub fn token_credential_id(token: &str) -> Result<String, String> {
    let payload = token.split('.').nth(1).ok_or("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    claims["jti"]
        .as_str()
        .map(|j| format!("JTI={j}"))
        .ok_or_else(|| "the token has no jti".to_owned())
}
