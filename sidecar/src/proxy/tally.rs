//! Refusals of callers without a valid token, counted instead of recorded one by one: nobody
//! without a token can fill the audit spool.
//!
//! ```text
//! 401 (no token, bad token, expired, wrong audience …) ──► Tally::count(reason, source IP)
//! 503 before any configuration is in force           ──► Tally::count(NOT_READY, source IP)
//!   every INTERVAL ──► one Denied audit record per (reason, source) with `count`
//!                      and the interval as start/end time; at most MAX_KEYS keys per
//!                      interval, the rest under the source "other"
//! ```
//!
//! Refusals of identified callers (a suspended McpClient, a denied tool) stay one record per
//! HTTP request: their tokens are valid, so their volume is bounded by quotas and revocation.

use crate::audit::{
    AuditEvent, Auditor, DecisionInfo, DecisionMode, Outcome, Redaction, TransportInfo,
    new_call_uid,
};
use jiff::Timestamp;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

/// How often the counts are written.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// The most (reason, source) pairs counted separately per interval.
pub const MAX_KEYS: usize = 1024;

type Key = (&'static str, Option<IpAddr>);

#[derive(Debug, Default)]
struct Window {
    since: Option<Timestamp>,
    counts: HashMap<Key, u64>,
}

/// Counts of tokenless refusals, flushed to the audit trail.
#[derive(Debug, Default)]
pub struct Tally {
    window: Mutex<Window>,
}

/// The reason counted for requests that came before any configuration was in force.
pub const NOT_READY: &str = "not_ready";

impl Tally {
    /// Counts one refusal.
    pub fn count(&self, reason: &'static str, source: Option<IpAddr>) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.since.get_or_insert_with(Timestamp::now);
        let key = if w.counts.len() < MAX_KEYS || w.counts.contains_key(&(reason, source)) {
            (reason, source)
        } else {
            (reason, None)
        };
        *w.counts.entry(key).or_default() += 1;
    }

    /// The counts so far, emptied.
    fn take(&self) -> Option<(Timestamp, Vec<(Key, u64)>)> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let since = w.since.take()?;
        let mut counts: Vec<(Key, u64)> = w.counts.drain().collect();
        counts.sort_unstable_by_key(|c| std::cmp::Reverse(c.1));
        Some((since, counts))
    }

    /// Writes what was counted: one record per (reason, source).
    pub async fn flush(&self, auditor: &Auditor, server: &crate::audit::ServerInfo) {
        let Some((since, counts)) = self.take() else {
            return;
        };
        let now = Timestamp::now();
        for ((reason, source), count) in counts {
            // Before any configuration nobody can be identified: 503, not 401.
            let (decided, status, detail) = if reason == NOT_READY {
                (
                    NOT_READY,
                    503,
                    format!(
                        "{count} requests before a configuration was in force, counted together"
                    ),
                )
            } else {
                (
                    "unauthenticated",
                    401,
                    format!("{count} requests without a valid token ({reason}), counted together"),
                )
            };
            let event = AuditEvent {
                call_uid: new_call_uid(),
                started: since,
                ended: Some(now),
                method: String::new(),
                jsonrpc_id: None,
                tool: None,
                arguments: None,
                principal: None,
                client: None,
                decision: Some(DecisionInfo {
                    allowed: false,
                    reason: decided.to_owned(),
                    decided_by: None,
                    mode: DecisionMode::Enforce,
                    detail: Some(detail),
                }),
                outcome: Outcome::Denied,
                response: crate::audit::ResponseInfo {
                    http_status: Some(status),
                    ..Default::default()
                },
                transport: TransportInfo {
                    src: source.map(|ip| std::net::SocketAddr::new(ip, 0)),
                    ..TransportInfo::default()
                },
                server: server.clone(),
                count: Some(count),
                server_request: None,
                upstream_auth: None,
            };
            if let Err(e) = auditor.record(&event, &Redaction::none()).await {
                tracing::warn!(error = %e, reason, count, "audit record of tokenless refusals lost");
            }
        }
    }

    /// Flushes every [`INTERVAL`] until the proxy stops.
    pub async fn run(
        self: Arc<Self>,
        auditor: Auditor,
        server: impl Fn() -> crate::audit::ServerInfo,
    ) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush(&auditor, &server()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded_per_interval() {
        let t = Tally::default();
        for i in 0..(MAX_KEYS as u32 + 500) {
            t.count("invalid_token", Some(IpAddr::from(i.to_be_bytes())));
        }
        t.count("missing_token", None);
        let (_, counts) = t.take().unwrap();
        // MAX_KEYS pairs, plus one "no source" pair per reason.
        assert_eq!(counts.len(), MAX_KEYS + 2);
        let total: u64 = counts.iter().map(|c| c.1).sum();
        assert_eq!(total, MAX_KEYS as u64 + 501, "nothing is lost, only merged");
        assert!(t.take().is_none(), "emptied");
    }
}
