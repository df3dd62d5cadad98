//! The operator's Prometheus metrics, served on the admin port's `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the operator exports. Cheap to clone (the collectors are shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `mcp_warden_operator_watched_objects{kind}`: objects in the index (McpTool, McpClient,
    /// McpPolicy, Pod).
    pub watched_objects: IntGaugeVec,
    /// `mcp_warden_operator_invalid_objects{kind}`: objects skipped because they do not
    /// deserialize.
    pub invalid_objects: IntGaugeVec,
    /// `mcp_warden_operator_watch_events_total{kind,event}`.
    pub watch_events: IntCounterVec,
    /// `mcp_warden_operator_connected_sidecars`: pods with an open bundle stream.
    pub connected_sidecars: IntGauge,
    /// `mcp_warden_operator_bundles_pushed_total`: bundle updates handed to streams.
    pub bundles_pushed: IntCounter,
    /// `mcp_warden_operator_push_latency_seconds{kind}`: watch event to every affected pod's
    /// channel updated.
    pub push_latency: HistogramVec,
    /// `mcp_warden_operator_status_writes_total{kind,result}`.
    pub status_writes: IntCounterVec,
    /// `mcp_warden_operator_status_passes_total`: status computations.
    pub status_passes: IntCounterVec,
    /// `mcp_warden_operator_usage_reports_total{result}`.
    pub usage_reports: IntCounterVec,
    /// `mcp_warden_operator_errors_total{component}`.
    pub errors: IntCounterVec,
    /// `mcp_warden_operator_leader`: 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// `mcp_warden_operator_admission_requests_total{operation,result}`: admission webhook
    /// requests; result is `injected`, `skipped`, `allowed` (not a pod creation), `denied` or
    /// `invalid` (unreadable request).
    pub admission_requests: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let push_latency = HistogramVec::new(
            HistogramOpts::new(
                "mcp_warden_operator_push_latency_seconds",
                "Time from a watch event to every affected pod's bundle channel being updated",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(push_latency.clone()))
            .expect("unique metric");
        Self {
            watched_objects: gauge_vec(
                "mcp_warden_operator_watched_objects",
                "Objects in the index, by kind",
                &["kind"],
            ),
            invalid_objects: gauge_vec(
                "mcp_warden_operator_invalid_objects",
                "Objects skipped because they do not deserialize, by kind",
                &["kind"],
            ),
            watch_events: counter_vec(
                "mcp_warden_operator_watch_events_total",
                "Watch events received, by kind and event",
                &["kind", "event"],
            ),
            connected_sidecars: gauge(
                "mcp_warden_operator_connected_sidecars",
                "Pods with an open bundle stream",
            ),
            bundles_pushed: {
                let c = IntCounter::new(
                    "mcp_warden_operator_bundles_pushed_total",
                    "Bundle updates handed to sidecar streams",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            push_latency,
            status_writes: counter_vec(
                "mcp_warden_operator_status_writes_total",
                "Status writes (server-side apply), by kind and result",
                &["kind", "result"],
            ),
            status_passes: counter_vec(
                "mcp_warden_operator_status_passes_total",
                "Status computations, by whether this replica led",
                &["leader"],
            ),
            usage_reports: counter_vec(
                "mcp_warden_operator_usage_reports_total",
                "Usage reports from sidecars, by result",
                &["result"],
            ),
            errors: counter_vec(
                "mcp_warden_operator_errors_total",
                "Errors, by component",
                &["component"],
            ),
            leader: gauge(
                "mcp_warden_operator_leader",
                "1 while this replica holds the leader Lease",
            ),
            admission_requests: counter_vec(
                "mcp_warden_operator_admission_requests_total",
                "Admission webhook requests, by operation and result",
                &["operation", "result"],
            ),
            registry,
        }
    }

    /// Counts one error of `component` (`watch`, `status`, `lease`, `tokenreview`, …).
    pub fn error(&self, component: &str) {
        self.errors.with_label_values(&[component]).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
