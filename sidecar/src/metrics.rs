//! Prometheus metrics of the sidecar, on the admin port's `/metrics`.
//!
//! Labels are bounded: JSON-RPC methods outside the MCP set are reported as `other`, decisions
//! by their stable reason (`policy::Decision::reason`), never by client or token.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// The sidecar's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    upstream_duration: HistogramVec,
    config_info: IntGaugeVec,
    reloads: IntCounter,
    reload_failures: IntCounter,
    last_reload: Gauge,
    ready: IntGauge,
    stale: IntGauge,
    usage_reports: IntCounterVec,
    upstream_bypassable: IntGaugeVec,
}

/// Label values besides the method names `proxy::methods` knows.
const OTHER_LABELS: [&str; 5] = [
    "response", "batch", "GET", "DELETE",
    // A POST refused before its body was read (no valid token).
    "POST",
];

/// Maps a JSON-RPC method (or HTTP verb) to a bounded label value: the methods with a rule in
/// `proxy::methods`, `notification` for any notification, and `other` for the rest.
pub fn method_label(method: &str) -> &'static str {
    if method.starts_with("notifications/") {
        return "notification";
    }
    crate::proxy::methods::name(method)
        .or_else(|| OTHER_LABELS.iter().find(|m| **m == method).copied())
        .unwrap_or("other")
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mcp_warden_requests_total",
                "MCP messages handled, by JSON-RPC method and decision reason.",
            ),
            &["method", "decision"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "mcp_warden_upstream_request_duration_seconds",
                "Time from forwarding a request to the upstream's response headers.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method"],
        )
        .expect("valid metric");
        let config_info = IntGaugeVec::new(
            Opts::new(
                "mcp_warden_config_info",
                "The configuration in force (value 1), by bundle version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        let reloads = IntCounter::new(
            "mcp_warden_config_reloads_total",
            "Configurations installed (initial load included).",
        )
        .expect("valid metric");
        let reload_failures = IntCounter::new(
            "mcp_warden_config_reload_failures_total",
            "Configurations rejected; the previous one stays in force.",
        )
        .expect("valid metric");
        let last_reload = Gauge::new(
            "mcp_warden_config_last_reload_success_timestamp_seconds",
            "When the configuration in force was installed (Unix time).",
        )
        .expect("valid metric");
        let ready = IntGauge::new(
            "mcp_warden_ready",
            "1 when a valid configuration is in force, 0 while everything is denied.",
        )
        .expect("valid metric");
        let stale = IntGauge::new(
            "mcp_warden_config_stale",
            "1 while enforcing a persisted bundle because the operator cannot be reached.",
        )
        .expect("valid metric");
        let usage_reports = IntCounterVec::new(
            Opts::new(
                "mcp_warden_usage_reports_total",
                "Usage reports to the operator, by result (sent, not_leader, failed, dropped).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let upstream_bypassable = IntGaugeVec::new(
            Opts::new(
                "mcp_warden_upstream_bypassable",
                "1 when the upstream also answers on the pod's own address (clients can reach it \
                 without the sidecar), 0 when on loopback only; absent while not checked.",
            ),
            &["port"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_bypassable.clone()),
            Box::new(usage_reports.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(config_info.clone()),
            Box::new(reloads.clone()),
            Box::new(reload_failures.clone()),
            Box::new(last_reload.clone()),
            Box::new(ready.clone()),
            Box::new(stale.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            requests,
            upstream_duration,
            config_info,
            reloads,
            reload_failures,
            last_reload,
            ready,
            stale,
            usage_reports,
            upstream_bypassable,
        }
    }

    /// The outcome of a bypass check (`bypass`): `port` `None` = not checked (no series).
    pub fn set_upstream_bypassable(&self, port: Option<u16>, bypassable: bool) {
        self.upstream_bypassable.reset();
        if let Some(port) = port {
            self.upstream_bypassable
                .with_label_values(&[port.to_string().as_str()])
                .set(i64::from(bypassable));
        }
    }

    /// Counts one usage report attempt (`sent`, `failed`, `dropped`).
    pub fn usage_report(&self, result: &str) {
        self.usage_reports.with_label_values(&[result]).inc();
    }

    /// Counts one message with its decision reason (`allowed`, `not_granted`, `unauthenticated`…).
    pub fn request(&self, method: &str, decision: &str) {
        self.requests
            .with_label_values(&[method_label(method), decision])
            .inc();
    }

    /// Records the upstream's time to response headers.
    pub fn upstream(&self, method: &str, seconds: f64) {
        self.upstream_duration
            .with_label_values(&[method_label(method)])
            .observe(seconds);
    }

    /// A configuration was installed.
    pub fn config_installed(&self, version: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[version]).set(1);
        self.reloads.inc();
        self.last_reload
            .set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
        self.ready.set(1);
    }

    /// Whether the configuration in force is a persisted one, the operator being unreachable.
    pub fn set_stale(&self, stale: bool) {
        self.stale.set(i64::from(stale));
    }

    /// The configuration was withdrawn (nothing governs this workload any more): deny all.
    pub fn config_cleared(&self) {
        self.config_info.reset();
        self.ready.set(0);
    }

    /// A configuration was rejected.
    pub fn config_rejected(&self) {
        self.reload_failures.inc();
    }

    /// The registry, for subsystems (quotas, audit) that register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
