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
//!   each refusal is a `Denial::Throttled`, answered by `deny::answer` like every other refusal
//! ```
//!
//! Nothing else counts: notifications, responses, `initialize`, `ping`, lists,
//! `resources/subscribe` and `resources/unsubscribe`, GET and DELETE never reach the quota
//! engine.

use super::{
    ProxyBody,
    authorize::Verdict,
    deny::{self, Denial},
    jsonrpc::{Id, Message, Payload},
    service::Proxy,
};
use crate::state::Active;
use http::{HeaderName, HeaderValue, Response};
use mcp_warden_crds::ThrottleResponse;
use mcp_warden_policy::ObjectRef;
use std::sync::Arc;

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
        resource: &str,
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
            // One encoder for every refusal (deny.rs): a batch is refused whole, the throttled
            // call with the quota's error, the others as not forwarded (-31005).
            let denial = Denial::Throttled {
                outcome: Arc::new(outcome),
                as_tool_result: tool_error && !payload.is_batch(),
            };
            let denials: Vec<(Option<Id>, Denial)> = messages
                .iter()
                .filter_map(|m| match m {
                    Message::Request { id: other, .. } if other == id => {
                        Some((Some(other.clone()), denial.clone()))
                    }
                    Message::Request { id: other, .. } => {
                        Some((Some(other.clone()), Denial::BatchNotForwarded))
                    }
                    _ => None,
                })
                .collect();
            return Throttle::Refuse(deny::answer(&denials, payload.is_batch(), resource));
        }
        Throttle::Pass(headers)
    }
}
