//! Sidecar injection, as a pure function: a Pod in, a decision and a JSONPatch out. No I/O here;
//! the admission webhook (`crate::webhook`) and `mcp-warden-operator inject -f` (`cli`) both call
//! [`inject`].
//!
//! ```text
//! Pod + namespace labels (or None) + InjectConfig
//!    │ decide::opt_in      opted out / operator pod / already injected ──► Injection::Skip(reason)
//!    │ decide::ports       upstream (annotation, by number or name; else the first containerPort),
//!    │                     proxy port, collisions ──────────────────────────► InjectError (denied)
//!    │ sidecar::container  native sidecar (initContainer, restartPolicy Always), probes, env,
//!    │ sidecar::volumes    state emptyDir + projected ServiceAccount token (operator audience)
//!    ▼ patch::build        JSONPatch (RFC 6902) against the Pod as the API server holds it
//! Injection::Patch { patch, warnings }
//! ```
//!
//! The namespace-level opt-in (`mcpwarden.io/inject=enabled`) is decided by the
//! MutatingWebhookConfiguration's `namespaceSelector`, because the webhook has no RBAC to read
//! Namespaces (and should not get it). So the webhook passes `None` for the namespace labels and
//! a Pod that reached it counts as opted in unless it opts out itself; `inject -f` does the same.
//! Callers that know the labels pass them and get the full rule.

pub mod cli;
mod config;
mod decide;
pub mod manifest;
mod patch;
mod sidecar;

pub use config::{ConfigError, InjectConfig};
pub use decide::SkipReason;

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// The opt-in/opt-out key: a namespace label (`enabled` / `disabled`) or a pod label or annotation
/// (`"true"` / `"false"`).
pub const INJECT_KEY: &str = "mcpwarden.io/inject";
/// Pod annotation: the MCP server's port (a number or the name of a container port).
pub const UPSTREAM_PORT_ANNOTATION: &str = "mcpwarden.io/upstream-port";
/// Pod annotation: the MCP server's path (default [`DEFAULT_UPSTREAM_PATH`]).
pub const UPSTREAM_PATH_ANNOTATION: &str = "mcpwarden.io/upstream-path";
/// Pod annotation: the sidecar's MCP port (default [`DEFAULT_PROXY_PORT`]).
pub const PROXY_PORT_ANNOTATION: &str = "mcpwarden.io/proxy-port";
/// Label the injector adds; the NetworkPolicy selects governed pods by it.
pub const GOVERNED_LABEL: &str = "mcpwarden.io/governed";
/// Annotation the injector adds: the operator version that injected the pod.
pub const INJECTED_VERSION_ANNOTATION: &str = "mcpwarden.io/injected-version";
/// The `app.kubernetes.io/name` of the operator's own pods, never injected.
pub const OPERATOR_APP_NAME: &str = "mcp-warden-operator";

/// The injected init container's name (its presence makes injection a no-op).
pub const SIDECAR_NAME: &str = "mcp-warden-sidecar";
/// The state volume (emptyDir).
pub const STATE_VOLUME: &str = "mcp-warden-state";
/// The projected ServiceAccount token volume.
pub const TOKEN_VOLUME: &str = "mcp-warden-token";
/// Where the state volume is mounted in the sidecar.
pub const STATE_DIR: &str = "/var/run/mcp-warden/state";
/// Where the token volume is mounted in the sidecar.
pub const TOKEN_DIR: &str = "/var/run/secrets/mcpwarden.io/serviceaccount";
/// The sidecar's admin port (`/ready`, `/live`, `/metrics`).
pub const ADMIN_PORT: u16 = 9901;
/// The admin port's name (an IANA service name: at most 15 characters).
pub const ADMIN_PORT_NAME: &str = "mcpwarden-admin";
/// The sidecar's MCP port's name.
pub const PROXY_PORT_NAME: &str = "mcp";
/// The sidecar's MCP port unless the pod sets [`PROXY_PORT_ANNOTATION`].
pub const DEFAULT_PROXY_PORT: u16 = 9080;
/// The MCP server's path unless the pod sets [`UPSTREAM_PATH_ANNOTATION`].
pub const DEFAULT_UPSTREAM_PATH: &str = "/mcp";
/// The operator's version, written to [`INJECTED_VERSION_ANNOTATION`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What to do with one Pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// Leave the Pod as it is.
    Skip(SkipReason),
    /// Apply this patch.
    Patch {
        /// RFC 6902 operations against the Pod as given.
        patch: json_patch::Patch,
        /// The MCP server's address inside the pod, `http://127.0.0.1:<port><path>`.
        upstream: String,
        /// Things the pod's owner should know (returned as admission warnings).
        warnings: Vec<String>,
    },
}

/// Why a Pod that asked for injection cannot get it: the admission request is denied with this
/// message, so each names the annotation to set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// No upstream port annotation and no container port to fall back to.
    #[error(
        "cannot tell which port the MCP server listens on: set the pod annotation \
         {UPSTREAM_PORT_ANNOTATION} to its port number or port name (or opt the pod out with \
         {INJECT_KEY}: \"false\")"
    )]
    NoUpstreamPort,
    /// The upstream port annotation is neither a port number nor a container port's name.
    #[error(
        "{UPSTREAM_PORT_ANNOTATION}: {0:?} is neither a port number (1-65535) nor the name of a \
         port of the pod's containers"
    )]
    BadUpstreamPort(String),
    /// The proxy port annotation is not a port number.
    #[error("{PROXY_PORT_ANNOTATION}: {0:?} is not a port number (1-65535)")]
    BadProxyPort(String),
    /// The upstream path annotation is not an absolute URL path.
    #[error(
        "{UPSTREAM_PATH_ANNOTATION}: {0:?} is not a URL path (it must start with / and hold no \
         spaces, control characters, ? or #)"
    )]
    BadUpstreamPath(String),
    /// Two ports of the pod would collide.
    #[error("{0}")]
    PortConflict(String),
    /// The pod already uses a name the injector needs.
    #[error(
        "the pod already has a {what} named {name:?} but no {SIDECAR_NAME} init container: \
         rename it (the injector needs that name)"
    )]
    NameTaken {
        /// `container` or `volume`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The pod has no spec.
    #[error("the pod has no spec")]
    NoSpec,
}

/// Decides whether `pod` gets the sidecar and builds the patch that adds it.
///
/// `namespace_labels`: the pod's namespace's labels when the caller knows them; `None` means
/// the namespace already opted in (the webhook's `namespaceSelector` decided), so the pod is
/// injected unless it opts out.
///
/// # Errors
///
/// [`InjectError`] when the pod wants the sidecar but cannot get it (no port to proxy to, a
/// bad annotation, a name or port collision).
pub fn inject(
    pod: &Pod,
    namespace_labels: Option<&BTreeMap<String, String>>,
    cfg: &InjectConfig,
) -> Result<Injection, InjectError> {
    if let Some(reason) = decide::skip(pod, namespace_labels) {
        return Ok(Injection::Skip(reason));
    }
    let spec = pod.spec.as_ref().ok_or(InjectError::NoSpec)?;
    decide::check_names(spec)?;
    let ports = decide::ports(pod, spec)?;
    let container = sidecar::container(cfg, &ports);
    let volumes = sidecar::volumes(cfg);
    let patch = patch::build(pod, spec, container, volumes);
    Ok(Injection::Patch {
        patch,
        upstream: ports.upstream_url(),
        warnings: ports.warnings,
    })
}
