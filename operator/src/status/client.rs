//! McpClient status: phase, lifecycle conditions, runaway flags, usage in the window.

use super::*;

/// Runaway flags that still count: newer than the client's `runaway-cleared-at` annotation.
fn live_flags<'a>(
    client: &McpClient,
    usage: Option<&'a ClientView>,
) -> Vec<&'a (PodKey, crate::usage::RunawayFlag)> {
    let cleared: Option<Timestamp> = client
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUNAWAY_CLEARED_AT))
        .and_then(|t| t.parse().ok());
    usage
        .map(|u| {
            u.runaway
                .iter()
                .filter(|(_, f)| cleared.is_none_or(|c| f.flagged_at > c))
                .collect()
        })
        .unwrap_or_default()
}

/// The status of one McpClient.
pub fn client_status(
    client: &McpClient,
    tools: Option<&BTreeSet<String>>,
    usage: Option<&ClientView>,
    now: Timestamp,
) -> McpClientStatus {
    let current = client
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = client.metadata.generation;
    let spec = &client.spec;
    let flags = live_flags(client, usage);
    let runaway_suspended = flags.iter().any(|(_, f)| f.suspended);
    let phase = if spec.suspended || runaway_suspended {
        ClientPhase::Suspended
    } else {
        lifecycle::phase(client, now)
    };
    let review_due = lifecycle::review_due(client);
    let expired = lifecycle::is_expired(client, now);
    let overdue = lifecycle::is_review_overdue(client, now);
    let enforce_review = spec.review.as_ref().is_some_and(|r| r.enforce);
    let effective: Vec<String> = tools
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    let pods = |flags: &[&(PodKey, crate::usage::RunawayFlag)]| {
        flags
            .iter()
            .map(|((ns, p), _)| format!("{ns}/{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cond =
        |t: &str, s: bool, r: &str, m: String| condition(current, t, s, r, m, generation, now);

    let suspended = if spec.suspended {
        cond(
            "Suspended",
            true,
            "Suspended",
            spec.suspension_reason
                .clone()
                .unwrap_or_else(|| "spec.suspended is set".into()),
        )
    } else if runaway_suspended {
        let suspending: Vec<_> = flags.iter().copied().filter(|(_, f)| f.suspended).collect();
        cond(
            "Suspended",
            true,
            "RunawaySuspended",
            format!(
                "suspended as a runaway by the sidecars of {}; set the {RUNAWAY_CLEARED_AT} annotation to a time after the flag to clear it",
                pods(&suspending)
            ),
        )
    } else {
        cond("Suspended", false, "NotSuspended", String::new())
    };
    let expired_c = match (&spec.expires_at, expired) {
        (Some(at), true) => cond(
            "Expired",
            true,
            "Expired",
            format!("expired at {}", rfc3339(at.0)),
        ),
        (Some(at), false) => cond(
            "Expired",
            false,
            "NotExpired",
            format!("expires at {}", rfc3339(at.0)),
        ),
        (None, _) => cond(
            "Expired",
            false,
            "NoExpiry",
            "the client has no expiry".into(),
        ),
    };
    let overdue_c = match (review_due, overdue) {
        (Some(due), true) => cond(
            "ReviewOverdue",
            true,
            "ReviewOverdue",
            format!(
                "the access review was due at {}{}",
                rfc3339(due),
                if enforce_review {
                    "; calls are denied until it is reviewed"
                } else {
                    ""
                }
            ),
        ),
        (Some(due), false) => cond(
            "ReviewOverdue",
            false,
            "ReviewCurrent",
            format!("the next access review is due at {}", rfc3339(due)),
        ),
        (None, _) => cond(
            "ReviewOverdue",
            false,
            "NoReviewCadence",
            "the client has no review cadence".into(),
        ),
    };
    let runaway_c = if flags.is_empty() {
        cond("RunawayDetected", false, "NoRunaway", String::new())
    } else {
        let since = flags.iter().map(|(_, f)| f.flagged_at).min().unwrap_or(now);
        cond(
            "RunawayDetected",
            true,
            "RunawayDetected",
            format!(
                "refused by its limits for most of its calls over a sustained window, since {} (sidecars of {})",
                rfc3339(since),
                pods(&flags)
            ),
        )
    };
    let ready_c = match phase {
        ClientPhase::Suspended => cond(
            "Ready",
            false,
            "Suspended",
            "the client is suspended".into(),
        ),
        ClientPhase::Expired => cond("Ready", false, "Expired", "the client has expired".into()),
        ClientPhase::ReviewOverdue if enforce_review => cond(
            "Ready",
            false,
            "ReviewOverdue",
            "the access review is overdue and enforced".into(),
        ),
        _ if effective.is_empty() => cond(
            "Ready",
            false,
            "NotGranted",
            "no Enforce McpPolicy grants this client a tool".into(),
        ),
        ClientPhase::ReviewOverdue => cond(
            "Ready",
            true,
            "ReviewOverdue",
            "the access review is overdue; McpTools with enforceReviews deny the client".into(),
        ),
        _ => cond(
            "Ready",
            true,
            "Active",
            format!("granted {} tool pattern(s)", effective.len()),
        ),
    };

    let previous_last_seen = client
        .status
        .as_ref()
        .and_then(|s| s.last_seen.as_ref())
        .map(|t| t.0);
    let last_seen = [usage.and_then(|u| u.last_seen), previous_last_seen]
        .into_iter()
        .flatten()
        .max();
    McpClientStatus {
        observed_generation: generation,
        conditions: vec![ready_c, suspended, expired_c, overdue_c, runaway_c],
        phase: Some(phase),
        review_due: review_due.map(time),
        last_seen: last_seen.map(time),
        calls_24h: Some(usage.map_or(0, |u| u.calls_24h)),
        denials_24h: Some(usage.map_or(0, |u| u.denials_24h)),
        effective_tools: effective,
        // compute() adds this window's use; alone, the current entries carry over.
        tool_usage: tool_usage::merge(client, &BTreeMap::new(), now),
        resource_usage: tool_usage::merge_resources(client, &BTreeMap::new(), now),
        prompt_usage: tool_usage::merge_prompts(client, &BTreeMap::new(), now),
    }
}
