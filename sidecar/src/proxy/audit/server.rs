//! One record per request of the server to a client (`elicitation/create`,
//! `sampling/createMessage`, `roots/list`), written from the relay's inspector as the request
//! goes by:
//!
//! ```text
//! ResponseInspector::server_message ──► server_requests::decide
//!   Relay        ──► ServerRequests::relayed(kind, id, tied_to)  ──► Outcome::Relayed
//!   Refuse(why)  ──► ServerRequests::refused(kind, id, why)      ──► Outcome::Denied
//! ```
//!
//! The inspector runs inside the response body's poll and must not wait: the record is written
//! by a spawned task, with the admission of a refusal record (subject to the spool cap; lost
//! with a warning when the spool refuses it, as a refusal's is).

use super::*;
use mcp_warden_crds::ServerRequest;

/// Writes the records of the server's requests on one exchange. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerRequests {
    context: Context,
    access: Arc<Access>,
}

impl Context {
    /// The recorder of the server's requests to `access` on this request's answer (or stream).
    pub(in crate::proxy) fn server_requests(&self, access: &Access) -> ServerRequests {
        ServerRequests {
            context: self.clone(),
            access: Arc::new(access.clone()),
        }
    }
}

impl ServerRequests {
    /// The server's request `id` of `kind` went to the client, with the client's pending
    /// request `tied_to`.
    pub(in crate::proxy) fn relayed(
        &self,
        method: &str,
        kind: ServerRequest,
        id: Option<&Id>,
        tied_to: Option<&Id>,
    ) {
        let mut event = self.event(method, kind, id, Outcome::Relayed);
        event.decision = Some(self.decision(true, "server_request_allowed", None));
        if let Some(info) = &mut event.server_request {
            info.tied_to = tied_to.map(id_text);
        }
        self.write(event);
    }

    /// The server's request `id` of `kind` was withheld from the client and refused to the
    /// server with `why`.
    pub(in crate::proxy) fn refused(
        &self,
        method: &str,
        kind: ServerRequest,
        id: Option<&Id>,
        why: &str,
    ) {
        let mut event = self.event(method, kind, id, Outcome::Denied);
        event.decision = Some(self.decision(false, "server_request_refused", Some(why)));
        event.response.jsonrpc_error = Some(JsonRpcError {
            code: super::super::jsonrpc::code::METHOD_NOT_FOUND,
            message: why.to_owned(),
        });
        self.write(event);
    }

    fn event(
        &self,
        method: &str,
        kind: ServerRequest,
        id: Option<&Id>,
        outcome: Outcome,
    ) -> AuditEvent {
        let mut event = self
            .context
            .event(Some(&self.access), None, method, outcome);
        event.method = method.to_owned();
        event.jsonrpc_id = id.map(id_text);
        event.ended = Some(Timestamp::now());
        event.server_request = Some(ServerRequestInfo {
            kind: format!("{kind:?}"),
            tied_to: None,
        });
        event
    }

    /// Decided by the McpTool (`spec.serverRequests`).
    fn decision(&self, allowed: bool, reason: &str, detail: Option<&str>) -> DecisionInfo {
        DecisionInfo {
            allowed,
            reason: reason.to_owned(),
            decided_by: self.context.active.as_ref().map(|a| a.rules.tool.clone()),
            mode: DecisionMode::Enforce,
            detail: detail.map(str::to_owned),
        }
    }

    fn write(&self, event: AuditEvent) {
        let context = self.context.clone();
        tokio::spawn(async move { context.write(event).await });
    }
}
