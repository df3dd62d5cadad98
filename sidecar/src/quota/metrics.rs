//! Quota metrics. Labels name CRs (kind and `namespace/name`), never tokens or tool names, so
//! the series count is bounded by the number of CRs; series of deleted CRs are removed.

use mcp_warden_policy::ObjectRef;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every `reason` label value of `mcp_warden_quota_decisions_total`.
pub const REASONS: [&str; 8] = [
    "allowed",
    "client_rate",
    "client_daily",
    "policy_rate",
    "policy_daily",
    "tool_rate",
    "runaway",
    "quota_unavailable",
];

/// The quota engine's metrics.
#[derive(Clone, Debug)]
pub struct QuotaMetrics {
    decisions: IntCounterVec,
    redis_duration: Histogram,
    redis_errors: IntCounterVec,
    redis_up: IntGauge,
    redis_transitions: IntCounterVec,
    runaway: IntGaugeVec,
}

/// `namespace/name`.
pub(crate) fn name_label(object: &ObjectRef) -> String {
    object.ns_name().to_string()
}

impl QuotaMetrics {
    /// Creates the metrics and registers them in `registry`; the Redis ones only `with_redis`.
    pub fn new(registry: &Registry, with_redis: bool) -> prometheus::Result<Self> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "mcp_warden_quota_decisions_total",
                "Quota decisions on tools/call, by reason (allowed, the refusing limit, runaway, \
                 quota_unavailable) and the CR that decided (the McpClient when allowed).",
            ),
            &["reason", "kind", "name"],
        )?;
        let redis_duration = Histogram::with_opts(
            HistogramOpts::new(
                "mcp_warden_quota_redis_duration_seconds",
                "Round-trip time of the shared quota check in Redis (one per allowed call).",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
        )?;
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "mcp_warden_quota_redis_errors_total",
                "Failed Redis quota checks, by error (connect, timeout, io, protocol, server).",
            ),
            &["error"],
        )?;
        let redis_up = IntGauge::new(
            "mcp_warden_quota_redis_up",
            "1 while the shared quota store answers, 0 while the fail mode applies.",
        )?;
        let redis_transitions = IntCounterVec::new(
            Opts::new(
                "mcp_warden_quota_redis_transitions_total",
                "Changes of the shared quota store's state, by the state entered (up, down).",
            ),
            &["state"],
        )?;
        let runaway = IntGaugeVec::new(
            Opts::new(
                "mcp_warden_quota_runaway_flagged",
                "1 per McpClient currently flagged RunawayDetected on this replica; suspended=true \
                 when it is denied until cleared.",
            ),
            &["kind", "name", "suspended"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(runaway.clone()))?;
        if with_redis {
            registry.register(Box::new(redis_duration.clone()))?;
            registry.register(Box::new(redis_errors.clone()))?;
            registry.register(Box::new(redis_up.clone()))?;
            registry.register(Box::new(redis_transitions.clone()))?;
        }
        redis_up.set(1);
        Ok(Self {
            decisions,
            redis_duration,
            redis_errors,
            redis_up,
            redis_transitions,
            runaway,
        })
    }

    /// The counter of one decision; handles are cached by the caller for the hot path.
    pub(crate) fn decision(&self, reason: &str, object: &ObjectRef) -> IntCounter {
        self.decisions
            .with_label_values(&[reason, object.kind.as_str(), &name_label(object)])
    }

    /// Drops every series of a CR that no longer exists.
    pub(crate) fn forget(&self, object: &ObjectRef) {
        let name = name_label(object);
        for reason in REASONS {
            let _ = self
                .decisions
                .remove_label_values(&[reason, object.kind.as_str(), &name]);
        }
    }

    pub(crate) fn redis_observe(&self, seconds: f64) {
        self.redis_duration.observe(seconds);
    }

    pub(crate) fn redis_error(&self, error: &'static str) {
        self.redis_errors.with_label_values(&[error]).inc();
    }

    pub(crate) fn redis_state(&self, up: bool) {
        self.redis_up.set(i64::from(up));
        self.redis_transitions
            .with_label_values(&[if up { "up" } else { "down" }])
            .inc();
    }

    /// Replaces the runaway series with `flags` (client, suspended).
    pub(crate) fn runaway_flags<'a>(&self, flags: impl IntoIterator<Item = (&'a ObjectRef, bool)>) {
        self.runaway.reset();
        for (client, suspended) in flags {
            self.runaway
                .with_label_values(&[
                    client.kind.as_str(),
                    &name_label(client),
                    if suspended { "true" } else { "false" },
                ])
                .set(1);
        }
    }
}
