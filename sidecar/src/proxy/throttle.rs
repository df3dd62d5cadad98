//! Quotas on `tools/call`, `resources/read`, `prompts/get` and `completion/complete`: after
//! authorization, before the call is forwarded.
//!
//! ```text
//! verdicts (all allowed) ──► for each counted request: Quotas::check_use(client, granting
//!                            policy, what it uses: the tool, or the resource or prompt entry)
//!     every limit passes ──► forward; RateLimit / RateLimit-Policy headers added to the answer
//!     a limit refuses    ──► 429 + Retry-After + JSON-RPC -31029 (or, for a tools/call when
//!                            the policy says `throttleResponse: ToolError`, 200 + CallToolResult
//!                            isError)
//!     runaway suspended  ──► 429, reason "runaway";  Redis down + fail-closed ──► 503
//! ```
//!
//! Nothing else counts: notifications, responses, `initialize`, `ping`, lists,
//! `resources/subscribe` and `resources/unsubscribe`, GET and DELETE never reach the quota
//! engine.

use super::{
    ProxyBody,
    authorize::Verdict,
    full,
    jsonrpc::{Message, Payload},
    service::Proxy,
};
use crate::state::Active;
use http::{HeaderName, HeaderValue, Response, header};
use mcp_warden_crds::ThrottleResponse;
use mcp_warden_policy::ObjectRef;
use serde_json::{Value, json};

/// What quotas decided for a payload.
pub(super) enum Throttle {
    /// Forward; add these headers to the answer.
    Pass(Vec<(HeaderName, HeaderValue)>),
    /// Answer this instead of forwarding.
    Refuse(Response<ProxyBody>),
}

impl Proxy {
    /// Checks every counted call of `payload` against the quotas; `verdicts[i].reason` of a
    /// refused call becomes the quota's reason.
    pub(super) async fn throttle(
        &self,
        active: &Active,
        client: &ObjectRef,
        key: &super::session::PrincipalKey,
        payload: &Payload,
        verdicts: &mut [Verdict],
    ) -> Throttle {
        let quotas = &self.shared.quotas;
        active.sync_quotas(quotas);
        let now = jiff::Timestamp::now();
        let mut headers = Vec::new();
        let messages = payload.messages();
        for (i, message) in messages.iter().enumerate() {
            let (Message::Request { method, id, .. }, Some((capability, name))) =
                (message, verdicts[i].used.clone())
            else {
                continue;
            };
            // A retry is exempt only with a requestState the upstream issued to this caller.
            let mrtr = message
                .param_str("requestState")
                .is_some_and(|state| self.sessions.redeem_request_state(state, key));
            if !quotas.counts(method, mrtr) {
                continue;
            }
            let policy = verdicts[i].decided_by.clone();
            let outcome = quotas
                .check_use(&active.rules, client, &policy, capability, &name, now)
                .await;
            if outcome.is_allowed() {
                headers.extend(outcome.allowed_headers());
                continue;
            }
            verdicts[i].reason = outcome.reason();
            // A tool error answers a tools/call only.
            let tool_error = method == "tools/call"
                && active
                    .rules
                    .policies
                    .iter()
                    .find(|p| p.object == policy)
                    .is_some_and(|p| p.throttle_response == ThrottleResponse::ToolError);
            let id = id.to_value();
            let answer = if tool_error && !payload.is_batch() {
                outcome.tool_error_answer(&id)
            } else {
                outcome.http_answer(&id)
            };
            let Some(answer) = answer else { continue };
            let body = if payload.is_batch() {
                // A batch is refused whole: the throttled call gets its error, the others -31005.
                Value::Array(
                    messages
                        .iter()
                        .filter_map(|m| match m {
                            Message::Request { id: other, .. } if other.to_value() == id => Some(answer.body.clone()),
                            Message::Request { id: other, .. } => Some(json!({
                                "jsonrpc": "2.0", "id": other.to_value(),
                                "error": {"code": -31005, "message": "Not forwarded: another request of the batch was refused"}
                            })),
                            _ => None,
                        })
                        .collect(),
                )
            } else {
                answer.body
            };
            let mut response = Response::new(full(body.to_string()));
            *response.status_mut() = answer.status;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            for (name, value) in answer.headers {
                h.append(name, value);
            }
            return Throttle::Refuse(response);
        }
        Throttle::Pass(headers)
    }
}
