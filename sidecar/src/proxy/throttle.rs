//! Quotas on `tools/call`, `resources/read`, `prompts/get` and `completion/complete`: after
//! authorization, before the call is forwarded.
//!
//! ```text
//! outcomes (all allowed) ──► for each counted request: Quotas::check_use(client, granting
//!                            policy, what it uses: the tool, or the resource or prompt entry)
//!     every limit passes ──► forward; RateLimit / RateLimit-Policy headers added to the answer
//!     a limit refuses    ──► 429 + Retry-After + JSON-RPC -31029 (or, for a tools/call when
//!                            the policy says `throttleResponse: ToolError`, 200 + CallToolResult
//!                            isError)
//!     runaway suspended  ──► 429, reason "runaway";  Redis down + fail-closed ──► 503
//!   each refusal is a `Denial::Throttled` outcome, answered by `deny::answer` like every other
//!   refusal (post.rs)
//! ```
//!
//! Nothing else counts: notifications, responses, `initialize`, `ping`, lists,
//! `resources/subscribe` and `resources/unsubscribe`, GET and DELETE never reach the quota
//! engine.

use super::{
    deny::Denial,
    gate::{Access, Outcome},
    jsonrpc::Message,
    service::Proxy,
};
use http::{HeaderName, HeaderValue};
use mcp_warden_crds::ThrottleResponse;
use std::sync::Arc;

impl Proxy {
    /// Checks every counted call of an allowed payload against the quotas. Returns the
    /// `RateLimit` headers for the answer; the first call a limit refuses gets a
    /// `Denial::Throttled` outcome (the payload is then refused whole, the others as not
    /// forwarded) and no later call is counted.
    pub(super) async fn throttle(
        &self,
        access: &Access,
        messages: &[Message],
        batch: bool,
        outcomes: &mut [Outcome],
    ) -> Vec<(HeaderName, HeaderValue)> {
        let quotas = &self.shared.quotas;
        let active = &access.active;
        active.sync_quotas(quotas);
        let now = jiff::Timestamp::now();
        let mut headers = Vec::new();
        for (message, outcome) in messages.iter().zip(outcomes.iter_mut()) {
            let (Message::Request { method, .. }, Some((capability, name))) =
                (message, outcome.used.as_ref())
            else {
                continue;
            };
            // A retry is exempt only with a requestState the upstream issued to this caller.
            let mrtr = message
                .param_str("requestState")
                .is_some_and(|state| self.sessions.redeem_request_state(state, &access.key));
            if !quotas.counts(method, mrtr) {
                continue;
            }
            let policy = &outcome.decided_by;
            let verdict = quotas
                .check_use(
                    &active.rules,
                    &access.client,
                    policy,
                    *capability,
                    name,
                    now,
                )
                .await;
            if verdict.is_allowed() {
                headers.extend(verdict.allowed_headers());
                continue;
            }
            // A tool error answers a lone tools/call only.
            let tool_error = method == "tools/call"
                && !batch
                && active
                    .rules
                    .policies
                    .iter()
                    .find(|p| p.object == *policy)
                    .is_some_and(|p| p.throttle_response == ThrottleResponse::ToolError);
            outcome.refuse(Denial::Throttled {
                outcome: Arc::new(verdict),
                as_tool_result: tool_error,
            });
            break;
        }
        headers
    }
}
