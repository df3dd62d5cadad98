//! What a quota check answers, and the HTTP pieces the proxy sends for it.
//!
//! | outcome | HTTP | headers | body |
//! |---|---|---|---|
//! | [`QuotaOutcome::Allowed`] | forward the call | `RateLimit`, `RateLimit-Policy` on the response | upstream's |
//! | [`QuotaOutcome::Limited`] | 429 | `Retry-After` (s, rounded up), `RateLimit`, `RateLimit-Policy` | JSON-RPC error [`RATE_LIMITED_CODE`] |
//! | [`QuotaOutcome::Suspended`] | 429 | none (no retry helps until a person clears it) | JSON-RPC error [`RATE_LIMITED_CODE`], reason `runaway` |
//! | [`QuotaOutcome::Unavailable`] | 503 | `Retry-After` | JSON-RPC error [`QUOTA_UNAVAILABLE_CODE`] (−32603) |
//!
//! `Limited` and `Suspended` may instead be answered 200 with a `CallToolResult{isError:true}`
//! ([`QuotaOutcome::tool_error_answer`]) so that the model sees it and backs off.

use http::{HeaderName, HeaderValue, StatusCode};
use mcp_warden_policy::ObjectRef;
use serde_json::{Value, json};
use std::{fmt::Write as _, sync::Arc, time::Duration};

/// JSON-RPC error code of a throttled `tools/call` (outside −32768…−32000, per MCP 2026-07-28).
pub const RATE_LIMITED_CODE: i64 = -31029;
/// JSON-RPC error code when the shared quota store is unreachable and the mode is fail-closed:
/// the standard internal error, as for the proxy's other 503/502 answers (`docs/denials.md`).
pub const QUOTA_UNAVAILABLE_CODE: i64 = -32603;

/// Which limit; the snake_case names are the `reason` of refusals, metric labels and the
/// policy identifiers of the `RateLimit` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    /// McpClient `spec.quota.rateLimit`: the client across all tools.
    ClientRate,
    /// McpClient `spec.quota.dailyCalls`.
    ClientDaily,
    /// McpPolicy `spec.rateLimit`: per client per tool, from the granting policy.
    PolicyRate,
    /// McpPolicy `spec.dailyQuota`: per client per tool per UTC day.
    PolicyDaily,
    /// McpTool `spec.tools[].rateLimit`, else `spec.rateLimit`: per tool, all callers together.
    ToolRate,
}

impl LimitKind {
    /// Every kind.
    pub const ALL: [Self; 5] = [
        Self::ClientRate,
        Self::ClientDaily,
        Self::PolicyRate,
        Self::PolicyDaily,
        Self::ToolRate,
    ];

    /// `client_rate`, `client_daily`, `policy_rate`, `policy_daily`, `tool_rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientRate => "client_rate",
            Self::ClientDaily => "client_daily",
            Self::PolicyRate => "policy_rate",
            Self::PolicyDaily => "policy_daily",
            Self::ToolRate => "tool_rate",
        }
    }

    /// Whether this is a calls-per-UTC-day budget.
    pub fn is_daily(self) -> bool {
        matches!(self, Self::ClientDaily | Self::PolicyDaily)
    }

    /// Whether a refusal by this limit is the client's own doing (counts for runaway
    /// detection). The per-tool cap is shared by all callers, so it does not.
    pub fn is_clients_own(self) -> bool {
        self != Self::ToolRate
    }
}

/// Where one applicable limit stands after an allowed call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitStatus {
    /// Which limit.
    pub kind: LimitKind,
    /// The CR defining it.
    pub limit: Arc<ObjectRef>,
    /// Calls per window (`requests`, or the daily budget; divided among replicas in local-only
    /// mode while Redis is down).
    pub quota: u64,
    /// The window (`period`, or one day).
    pub window: Duration,
    /// Calls left: back to back for a rate, until UTC midnight for a daily budget.
    pub remaining: u64,
    /// Until the rate's burst is whole again, or until UTC midnight.
    pub reset: Duration,
}

/// The call may go through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    /// Every limit that applied (empty when none does).
    pub limits: Vec<LimitStatus>,
}

/// The call is refused by a limit; nothing was consumed from any limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The refusing limit (the one with the longest wait when several refuse).
    pub reason: LimitKind,
    /// The CR defining it.
    pub limit: Arc<ObjectRef>,
    /// When the call would go through, as far as this limit can tell.
    pub retry_after: Duration,
    /// Calls left today under the tightest daily budget of this call (`None` without one).
    pub remaining: Option<u64>,
    /// The tool called.
    pub tool: String,
    /// The refusing limit's calls per window (as in [`LimitStatus::quota`]).
    pub quota: u64,
    /// The refusing limit's window.
    pub window: Duration,
}

/// The client was detected running away and its McpClient asks for suspension; denied until a
/// person clears it (annotation `mcpwarden.io/runaway-cleared-at`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspended {
    /// The McpClient.
    pub client: Arc<ObjectRef>,
    /// When it was flagged.
    pub since: jiff::Timestamp,
}

/// Redis is unreachable and the mode is fail-closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// When to try again (the probe interval).
    pub retry_after: Duration,
}

/// The result of [`super::Quotas::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// Forward the call.
    Allowed(Allowed),
    /// Refused by a limit: 429.
    Limited(Limited),
    /// Suspended as a runaway: 429 without `Retry-After`.
    Suspended(Suspended),
    /// The shared store is down and the mode is fail-closed: 503.
    Unavailable(Unavailable),
}

/// A complete HTTP answer for a refused call: status, headers and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpAnswer {
    /// The status.
    pub status: StatusCode,
    /// Headers to add (`Content-Type: application/json` is the proxy's to set).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The JSON-RPC response.
    pub body: Value,
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Whole seconds, rounded up (`Retry-After`, `RateLimit` `t`), at least 1 for a positive wait.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn header(text: &str) -> HeaderValue {
    // Only digits, ASCII names and punctuation go in: always a valid value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Allowed {
    /// The `RateLimit` and `RateLimit-Policy` headers (IETF draft-ietf-httpapi-ratelimit-headers,
    /// structured-field lists: `"client_rate";q=60;w=60` and `"client_rate";r=59;t=1`), or none
    /// when no limit applies.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        if self.limits.is_empty() {
            return Vec::new();
        }
        // Sized once: growing from empty cost five allocations per call.
        let size = 48 * self.limits.len();
        let (mut policy, mut now) = (String::with_capacity(size), String::with_capacity(size));
        for (i, l) in self.limits.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                policy,
                "{sep}\"{}\";q={};w={}",
                l.kind.as_str(),
                l.quota,
                ceil_secs(l.window).max(1)
            );
            let _ = write!(
                now,
                "{sep}\"{}\";r={};t={}",
                l.kind.as_str(),
                l.remaining,
                ceil_secs(l.reset)
            );
        }
        vec![
            (RATELIMIT, header(&now)),
            (RATELIMIT_POLICY, header(&policy)),
        ]
    }

    /// Calls left today under the tightest daily budget (`None` without one).
    pub fn daily_remaining(&self) -> Option<u64> {
        self.limits
            .iter()
            .filter(|l| l.kind.is_daily())
            .map(|l| l.remaining)
            .min()
    }
}

impl QuotaOutcome {
    /// Whether the call goes through.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }

    /// A stable snake_case reason: `allowed`, a [`LimitKind`] name, `runaway` or
    /// `quota_unavailable`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Allowed(_) => "allowed",
            Self::Limited(l) => l.reason.as_str(),
            Self::Suspended(_) => "runaway",
            Self::Unavailable(_) => "quota_unavailable",
        }
    }

    /// Headers for the upstream's response to an allowed call (`RateLimit`,
    /// `RateLimit-Policy`); empty otherwise.
    pub fn allowed_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            Self::Allowed(a) => a.headers(),
            _ => Vec::new(),
        }
    }

    /// `data` of the JSON-RPC error: `{reason, limit, tool, retryAfterMs, remaining}`.
    pub fn error_data(&self) -> Value {
        match self {
            Self::Allowed(_) => Value::Null,
            Self::Limited(l) => json!({
                "reason": l.reason.as_str(),
                "limit": &*l.limit,
                "tool": l.tool,
                "retryAfterMs": u64::try_from(l.retry_after.as_millis()).unwrap_or(u64::MAX).max(1),
                "remaining": l.remaining,
            }),
            Self::Suspended(s) => json!({
                "reason": "runaway",
                "limit": &*s.client,
                "since": s.since.to_string(),
                "retryAfterMs": null,
                "remaining": 0,
            }),
            Self::Unavailable(u) => json!({
                "reason": "quota_unavailable",
                "retryAfterMs": u64::try_from(u.retry_after.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// A human-readable message, also shown to the model.
    pub fn message(&self) -> String {
        match self {
            Self::Allowed(_) => "allowed".into(),
            Self::Limited(l) => format!(
                "Rate limited by {} of {}/{}/{}: retry after {} s",
                l.reason.as_str(),
                l.limit.kind,
                l.limit.namespace,
                l.limit.name,
                ceil_secs(l.retry_after).max(1)
            ),
            Self::Suspended(s) => format!(
                "Suspended: {}/{} was detected running away at {}; a person must clear it",
                s.client.namespace, s.client.name, s.since
            ),
            Self::Unavailable(_) => {
                "Quota service unavailable: the shared quota store cannot be reached".into()
            }
        }
    }

    /// The HTTP answer for a refused call (`None` when allowed): 429 or 503, headers, and a
    /// JSON-RPC error with the request's `id` (`null` when unknown).
    pub fn http_answer(&self, id: &Value) -> Option<HttpAnswer> {
        let (status, code, headers) = match self {
            Self::Allowed(_) => return None,
            Self::Limited(l) => {
                let secs = ceil_secs(l.retry_after).max(1);
                let name = l.reason.as_str();
                let window = ceil_secs(l.window).max(1);
                let h = vec![
                    (http::header::RETRY_AFTER, header(&secs.to_string())),
                    (RATELIMIT, header(&format!("\"{name}\";r=0;t={secs}"))),
                    (
                        RATELIMIT_POLICY,
                        header(&format!("\"{name}\";q={};w={window}", l.quota)),
                    ),
                ];
                (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED_CODE, h)
            }
            Self::Suspended(_) => (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED_CODE, Vec::new()),
            Self::Unavailable(u) => (
                StatusCode::SERVICE_UNAVAILABLE,
                QUOTA_UNAVAILABLE_CODE,
                vec![(
                    http::header::RETRY_AFTER,
                    header(&ceil_secs(u.retry_after).max(1).to_string()),
                )],
            ),
        };
        Some(HttpAnswer {
            status,
            headers,
            body: json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": code, "message": self.message(), "data": self.error_data()},
            }),
        })
    }

    /// The alternative answer for `Limited` and `Suspended`: HTTP 200 with a
    /// `CallToolResult{isError:true}` the model reads, carrying the same `data` in
    /// `_meta["mcpwarden.io/quota"]` (not `structuredContent`, which a tool's `outputSchema`
    /// governs). `Unavailable` keeps its 503; `None` when allowed.
    pub fn tool_error_answer(&self, id: &Value) -> Option<HttpAnswer> {
        match self {
            Self::Allowed(_) => None,
            Self::Unavailable(_) => self.http_answer(id),
            Self::Limited(_) | Self::Suspended(_) => Some(HttpAnswer {
                status: StatusCode::OK,
                headers: Vec::new(),
                body: json!({
                    "jsonrpc": "2.0",
                    "id": id,
                    "result": {
                        "content": [{"type": "text", "text": self.message()}],
                        "isError": true,
                        "_meta": {"mcpwarden.io/quota": self.error_data()},
                    },
                }),
            }),
        }
    }
}
