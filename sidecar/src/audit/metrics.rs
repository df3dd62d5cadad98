//! Prometheus metrics of the audit pipeline (`mcp_warden_audit_*`), registered in a registry the
//! caller passes in (the sidecar's, or a fresh one in the CLI and tests). Labels are bounded: record
//! kind (3 values) and sink name (from the configuration).

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// The audit pipeline's metrics. Cheap to clone (handles to the same series).
#[derive(Clone, Debug)]
pub struct AuditMetrics {
    /// Records made durable in the spool, by kind (`request`, `outcome`, `checkpoint`).
    pub records_written: IntCounterVec,
    /// Bytes appended to the spool.
    pub bytes_written: IntCounter,
    /// Appends refused because the spool was full (policy `block`): calls answered 503.
    pub appends_refused: IntCounter,
    /// Appends that failed on I/O.
    pub append_errors: IntCounter,
    /// Records deleted from the spool before every sink acknowledged them (policy `dropOldest`).
    pub records_dropped: IntCounter,
    /// fsync (fdatasync) calls of the spool writer.
    pub fsyncs: IntCounter,
    /// Spool chores (a segment's sync or deletion) the writer did itself, the janitor being
    /// behind: a saturated CPU starves the idle-priority janitor.
    pub chores_inline: IntCounter,
    /// Records per write batch.
    pub batch_records: Histogram,
    /// Time from `append` to the record being durable.
    pub append_duration: Histogram,
    /// Records shipped (acknowledged by the sink), by sink.
    pub records_shipped: IntCounterVec,
    /// Failed send attempts that will be retried, by sink.
    pub ship_retries: IntCounterVec,
    /// Records in the spool not yet acknowledged by the slowest sink.
    pub spool_records: IntGauge,
    /// Bytes of the spool's segment files.
    pub spool_bytes: IntGauge,
    /// Segment files in the spool.
    pub spool_segments: IntGauge,
    /// The last sequence number written.
    pub last_sequence: IntGauge,
    /// The last sequence number acknowledged, by sink.
    pub sink_acked_sequence: IntGaugeVec,
    /// Age of the oldest record a sink has not acknowledged (0 when caught up), by sink.
    pub oldest_unshipped_age: GaugeVec,
    /// 1 while the spool refuses new calls (full, policy `block`).
    pub spool_full: Gauge,
}

impl AuditMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            records_written: IntCounterVec::new(
                Opts::new(
                    "mcp_warden_audit_records_written_total",
                    "Audit records made durable in the spool, by kind.",
                ),
                &["kind"],
            )?,
            bytes_written: IntCounter::new(
                "mcp_warden_audit_written_bytes_total",
                "Bytes appended to the audit spool.",
            )?,
            appends_refused: IntCounter::new(
                "mcp_warden_audit_appends_refused_total",
                "Audit appends refused because the spool was full (policy block); the call was answered 503.",
            )?,
            append_errors: IntCounter::new(
                "mcp_warden_audit_append_errors_total",
                "Audit appends that failed on I/O.",
            )?,
            records_dropped: IntCounter::new(
                "mcp_warden_audit_records_dropped_total",
                "Audit records deleted from the spool before every sink acknowledged them (policy dropOldest).",
            )?,
            fsyncs: IntCounter::new(
                "mcp_warden_audit_fsyncs_total",
                "fdatasync calls of the audit spool writer.",
            )?,
            chores_inline: IntCounter::new(
                "mcp_warden_audit_chores_inline_total",
                "Audit spool chores (a segment's sync or deletion) the writer did itself because its idle-priority janitor was behind.",
            )?,
            batch_records: Histogram::with_opts(
                HistogramOpts::new(
                    "mcp_warden_audit_batch_records",
                    "Records per audit spool write batch (one fsync each).",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
                ]),
            )?,
            append_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "mcp_warden_audit_append_duration_seconds",
                    "Time from an audit append to the record being durable.",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ]),
            )?,
            records_shipped: IntCounterVec::new(
                Opts::new(
                    "mcp_warden_audit_records_shipped_total",
                    "Audit records acknowledged by a sink.",
                ),
                &["sink"],
            )?,
            ship_retries: IntCounterVec::new(
                Opts::new(
                    "mcp_warden_audit_ship_retries_total",
                    "Failed audit send attempts that are retried with backoff, by sink.",
                ),
                &["sink"],
            )?,
            spool_records: IntGauge::new(
                "mcp_warden_audit_spool_records",
                "Audit records in the spool not yet acknowledged by the slowest sink.",
            )?,
            spool_bytes: IntGauge::new(
                "mcp_warden_audit_spool_bytes",
                "Bytes of the audit spool's segment files.",
            )?,
            spool_segments: IntGauge::new(
                "mcp_warden_audit_spool_segments",
                "Segment files in the audit spool.",
            )?,
            last_sequence: IntGauge::new(
                "mcp_warden_audit_last_sequence",
                "The last audit record sequence number written.",
            )?,
            sink_acked_sequence: IntGaugeVec::new(
                Opts::new(
                    "mcp_warden_audit_sink_acked_sequence",
                    "The last audit sequence number a sink acknowledged.",
                ),
                &["sink"],
            )?,
            oldest_unshipped_age: GaugeVec::new(
                Opts::new(
                    "mcp_warden_audit_oldest_unshipped_age_seconds",
                    "Age of the oldest audit record a sink has not acknowledged (0 when caught up).",
                ),
                &["sink"],
            )?,
            spool_full: Gauge::new(
                "mcp_warden_audit_spool_full",
                "1 while the audit spool refuses new calls (full, policy block).",
            )?,
        };
        registry.register(Box::new(m.records_written.clone()))?;
        registry.register(Box::new(m.bytes_written.clone()))?;
        registry.register(Box::new(m.appends_refused.clone()))?;
        registry.register(Box::new(m.append_errors.clone()))?;
        registry.register(Box::new(m.records_dropped.clone()))?;
        registry.register(Box::new(m.fsyncs.clone()))?;
        registry.register(Box::new(m.chores_inline.clone()))?;
        registry.register(Box::new(m.batch_records.clone()))?;
        registry.register(Box::new(m.append_duration.clone()))?;
        registry.register(Box::new(m.records_shipped.clone()))?;
        registry.register(Box::new(m.ship_retries.clone()))?;
        registry.register(Box::new(m.spool_records.clone()))?;
        registry.register(Box::new(m.spool_bytes.clone()))?;
        registry.register(Box::new(m.spool_segments.clone()))?;
        registry.register(Box::new(m.last_sequence.clone()))?;
        registry.register(Box::new(m.sink_acked_sequence.clone()))?;
        registry.register(Box::new(m.oldest_unshipped_age.clone()))?;
        registry.register(Box::new(m.spool_full.clone()))?;
        Ok(m)
    }

    /// Metrics registered in a private registry (for tools and tests that expose none).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }
}
