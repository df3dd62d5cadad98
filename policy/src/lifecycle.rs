//! Time-based facts about a credential: expiry, review due, token cut-off, and the phase they
//! add up to. Shared by `decide` (sidecar) and the status the operator writes.

use jiff::{SignedDuration, Timestamp};
use mcp_warden_crds::{ClientPhase, McpClient};

/// When the client's next access review is due: `intervalDays` after the last review, or after
/// creation when never reviewed. `None` when the client has no review cadence.
///
/// A client never reviewed and with no creation time (a standalone file) is due at once: an
/// unknown review date must not pass as a recent one.
pub fn review_due(client: &McpClient) -> Option<Timestamp> {
    let review = client.spec.review.as_ref()?;
    let from = review
        .last_reviewed_at
        .as_ref()
        .map(|t| t.0)
        .or_else(|| client.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let interval = SignedDuration::from_hours(24 * i64::from(review.interval_days));
    Some(from.saturating_add(interval).unwrap_or(Timestamp::MAX))
}

/// Whether the client is past its expiry at `now` (expiry is inclusive: at `expiresAt` it is
/// expired).
pub fn is_expired(client: &McpClient, now: Timestamp) -> bool {
    client.spec.expires_at.as_ref().is_some_and(|t| now >= t.0)
}

/// Whether the review is overdue at `now` (due is inclusive).
pub fn is_review_overdue(client: &McpClient, now: Timestamp) -> bool {
    review_due(client).is_some_and(|due| now >= due)
}

/// The phase `kubectl get mcpclients` shows. Suspension outranks expiry, which outranks an
/// overdue review.
pub fn phase(client: &McpClient, now: Timestamp) -> ClientPhase {
    if client.spec.suspended {
        ClientPhase::Suspended
    } else if is_expired(client, now) {
        ClientPhase::Expired
    } else if is_review_overdue(client, now) {
        ClientPhase::ReviewOverdue
    } else {
        ClientPhase::Active
    }
}

/// The next instant after `now` at which `phase` changes by itself (expiry or review due), so
/// a controller can requeue exactly then.
pub fn next_transition(client: &McpClient, now: Timestamp) -> Option<Timestamp> {
    [
        client.spec.expires_at.as_ref().map(|t| t.0),
        review_due(client),
    ]
    .into_iter()
    .flatten()
    .filter(|t| *t > now)
    .min()
}
