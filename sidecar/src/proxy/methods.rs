//! A rule for every MCP method a client may send: nothing reaches the upstream undecided.
//!
//! ```text
//! message ──► Rule::of(method, kind)
//!   Initialize, Ping, ServerDiscover       allowed (initialize's answer is read for the version)
//!   List(capability), TasksList           allowed; the answer is filtered per caller
//!                                         (tools/list, resources/list, resources/templates/list,
//!                                         prompts/list, tasks/list)
//!   ToolsCall                             decided by the policy (tools/call name)
//!   ResourceRead                          decided by the policy (resources/read and
//!                                         resources/subscribe uri: only readable URIs)
//!   PromptsGet                            decided by the policy (prompts/get name)
//!   Complete                              the prompt or resource template it completes must be
//!                                         granted (completion/complete ref)
//!   SubscriptionsListen                   every URI of resourceSubscriptions must be readable
//!   Unsubscribe, SetLogLevel              allowed for an identified caller (they only lessen
//!                                         what the caller receives, on its own session)
//!   TaskOwned                             the task must be the caller's
//!   ClientNotification                    allowed (initialized, cancelled, progress, …)
//!   ServerOnly                            refused: a server's method sent by a client
//!   Unknown                               McpTool.spec.unknownMethods: Deny (−32601) | Allow
//! ```
//!
//! Server-to-client requests (sampling, elicitation, roots) are the answer side's business:
//! `relay.rs` relays them only where `McpTool.spec.serverRequests` allows.
//!
//! `tests/methods.rs` reads every request and notification method of the 2025-11-25 and
//! 2026-07-28 schemas from the Python SDK's `mcp_types` package and of the TypeScript SDK's
//! `spec.types.d.ts`, and fails for any method that falls to `Unknown`.

use mcp_warden_policy::Capability;

/// What the gate does with one method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `initialize`.
    Initialize,
    /// `ping`.
    Ping,
    /// `server/discover` (2026-07-28).
    ServerDiscover,
    /// `tools/list`, `resources/list` (`Resource`), `prompts/list`: filtered per caller.
    List(Capability),
    /// `resources/templates/list`: filtered per caller by template text.
    ResourceTemplatesList,
    /// `tools/call`: decided by the policy.
    ToolsCall,
    /// `resources/read`, `resources/subscribe`: decided by the policy on `uri`.
    ResourceRead,
    /// `prompts/get`: decided by the policy on `name`.
    PromptsGet,
    /// `completion/complete`: decided on the prompt or resource template of `ref`.
    Complete,
    /// `subscriptions/listen` (2026-07-28): every `resourceSubscriptions` URI must be readable.
    SubscriptionsListen,
    /// `resources/unsubscribe`, `logging/setLevel`: allowed for an identified caller.
    Lessening,
    /// `tasks/list`: filtered per caller.
    TasksList,
    /// `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/update`: the caller's own tasks only.
    TaskOwned,
    /// A notification a client may send.
    ClientNotification,
    /// A method only a server sends (`sampling/createMessage`, `roots/list`,
    /// `notifications/tools/list_changed`, …): a client sending it is refused.
    ServerOnly,
    /// No rule: `McpTool.spec.unknownMethods` decides.
    Unknown,
}

/// Requests with a rule.
const REQUESTS: [&str; 20] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "tasks/list",
    "tasks/get",
    "tasks/result",
    "tasks/cancel",
    "tasks/update",
    "subscriptions/listen",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
];

const CLIENT_NOTIFICATIONS: [&str; 5] = [
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

const SERVER_ONLY: [&str; 11] = [
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "notifications/message",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/elicitation/complete",
    "notifications/subscriptions/acknowledged",
    "notifications/stderr",
];

impl Rule {
    /// The rule for `method` sent by a client as a request (`notification == false`) or a
    /// notification.
    pub fn of(method: &str, notification: bool) -> Self {
        if notification {
            return if CLIENT_NOTIFICATIONS.contains(&method) {
                Self::ClientNotification
            } else if SERVER_ONLY.contains(&method) {
                Self::ServerOnly
            } else {
                Self::Unknown
            };
        }
        match method {
            "initialize" => Self::Initialize,
            "ping" => Self::Ping,
            "server/discover" => Self::ServerDiscover,
            "tools/list" => Self::List(Capability::Tool),
            "resources/list" => Self::List(Capability::Resource),
            "prompts/list" => Self::List(Capability::Prompt),
            "resources/templates/list" => Self::ResourceTemplatesList,
            "tools/call" => Self::ToolsCall,
            "resources/read" | "resources/subscribe" => Self::ResourceRead,
            "prompts/get" => Self::PromptsGet,
            "completion/complete" => Self::Complete,
            "subscriptions/listen" => Self::SubscriptionsListen,
            "resources/unsubscribe" | "logging/setLevel" => Self::Lessening,
            "tasks/list" => Self::TasksList,
            "tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/update" => Self::TaskOwned,
            m if SERVER_ONLY.contains(&m) => Self::ServerOnly,
            _ => Self::Unknown,
        }
    }

    /// Whether a method is one the sidecar knows (as a request or a notification).
    /// (`name` is the same test, giving the method's static name.)
    pub fn is_known(method: &str) -> bool {
        Self::of(method, false) != Self::Unknown || Self::of(method, true) != Self::Unknown
    }
}

/// The static name of a method with a rule (for bounded metric labels).
pub fn name(method: &str) -> Option<&'static str> {
    REQUESTS
        .iter()
        .chain(&CLIENT_NOTIFICATIONS)
        .chain(&SERVER_ONLY)
        .find(|m| **m == method)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governed_methods_sent_as_notifications_are_not_client_notifications() {
        for m in ["tools/call", "tasks/cancel", "initialize", "resources/read"] {
            assert_eq!(Rule::of(m, true), Rule::Unknown, "{m}");
        }
        assert_eq!(
            Rule::of("notifications/cancelled", true),
            Rule::ClientNotification
        );
        assert_eq!(
            Rule::of("notifications/tools/list_changed", true),
            Rule::ServerOnly
        );
        assert_eq!(Rule::of("sampling/createMessage", false), Rule::ServerOnly);
        assert_eq!(Rule::of("vendor/x", false), Rule::Unknown);
        assert_eq!(Rule::of("TOOLS/CALL", false), Rule::Unknown);
        assert!(Rule::is_known("notifications/progress"));
        assert!(!Rule::is_known("tools/call2"));
        for m in REQUESTS
            .iter()
            .chain(&CLIENT_NOTIFICATIONS)
            .chain(&SERVER_ONLY)
        {
            assert_eq!(name(m), Some(*m));
            assert!(Rule::is_known(m), "{m}");
        }
        assert_eq!(name("vendor/x"), None);
    }
}
