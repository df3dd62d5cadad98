//! Admin endpoints: /ready, /live, /metrics.
