//! Access reviews: `mcp-warden-operator review report|approve`.
//!
//! ```text
//!  cluster (list McpTool, McpPolicy: all namespaces; McpClient: --namespace or all)
//!  or CR files (--from-files, policy::load) + status snapshot (--status, `kubectl get -o yaml`)
//!        │ source
//!        ▼
//!   Inventory (specs + statuses) + now ──model::build──► ReviewReport
//!        (grants: bundle_for_tools → compile → Client::grants_for / RuleSet::tool_scopes,
//!         usage: status.toolUsage / lastSeen, lifecycle: policy::lifecycle)
//!        │ render
//!        ▼
//!   markdown | csv (RFC 4180) | json (schemaVersion 1)
//!
//!   review approve <ns/name> --by <person> ──approve──► merge patch of
//!        spec.review.lastReviewedAt/lastReviewedBy (field manager mcp-warden-review)
//! ```
//!
//! Both commands run with the credentials of the person using them (the kubeconfig), never the
//! operator's ServiceAccount: they add nothing to the operator's RBAC.

pub mod approve;
pub mod cli;
pub mod model;
pub mod render;
pub mod source;

pub use model::{ClientReview, Flag, Grant, ReviewReport, build};

/// Why a review command failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The CR files did not load.
    #[error("the CR files do not load:\n{0}")]
    Files(String),
    /// The status snapshot is unreadable.
    #[error("status snapshot {path}: {message}")]
    Snapshot {
        /// The snapshot file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The McpClient to approve does not exist.
    #[error(
        "McpClient {namespace}/{name} not found (check the name and the namespace: give <namespace>/<name> or -n)"
    )]
    NotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The McpClient has no review cadence to record a review against.
    #[error(
        "McpClient {namespace}/{name} has no review cadence: set spec.review.intervalDays before recording a review"
    )]
    NoCadence {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// The Kubernetes API refused or failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}
