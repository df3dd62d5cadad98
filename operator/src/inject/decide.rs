//! The decisions before the patch: does this pod get the sidecar (opt-in/opt-out), and on
//! which ports (the MCP server's, the sidecar's), with every collision refused up front.

use super::{
    ADMIN_PORT, DEFAULT_PROXY_PORT, DEFAULT_UPSTREAM_PATH, INJECT_KEY, InjectError,
    OPERATOR_APP_NAME, PROXY_PORT_ANNOTATION, PROXY_PORT_NAME, SIDECAR_NAME, STATE_VOLUME,
    TOKEN_VOLUME, UPSTREAM_PATH_ANNOTATION, UPSTREAM_PORT_ANNOTATION,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use std::collections::BTreeMap;

/// Why a pod is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// It already has the `mcp-warden-sidecar` init container.
    AlreadyInjected,
    /// It is one of the operator's own pods.
    OperatorPod,
    /// A label or annotation says `mcpwarden.io/inject: "false"`, or the namespace is
    /// `disabled`; the field names which.
    OptedOut(String),
    /// The namespace is not `enabled` and the pod does not ask (only when the namespace labels
    /// are known).
    NotOptedIn,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyInjected => write!(f, "already injected"),
            Self::OperatorPod => write!(f, "a pod of the operator itself"),
            Self::OptedOut(by) => write!(f, "opted out by {by}"),
            Self::NotOptedIn => write!(
                f,
                "not opted in (label the namespace {INJECT_KEY}=enabled or the pod {INJECT_KEY}: \"true\")"
            ),
        }
    }
}

/// `Some(reason)` when the pod must be left alone.
pub(super) fn skip(
    pod: &Pod,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Option<SkipReason> {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    if init.iter().any(|c| c.name == SIDECAR_NAME) {
        return Some(SkipReason::AlreadyInjected);
    }
    let labels = pod.metadata.labels.as_ref();
    let annotations = pod.metadata.annotations.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if label("app.kubernetes.io/name") == Some(OPERATOR_APP_NAME) {
        return Some(SkipReason::OperatorPod);
    }
    let annotation = annotations
        .and_then(|a| a.get(INJECT_KEY))
        .map(String::as_str);
    let namespace = namespace_labels.and_then(|l| l.get(INJECT_KEY).map(String::as_str));
    if label(INJECT_KEY) == Some("false") {
        return Some(SkipReason::OptedOut(format!(
            "the pod label {INJECT_KEY}=false"
        )));
    }
    if annotation == Some("false") {
        return Some(SkipReason::OptedOut(format!(
            "the pod annotation {INJECT_KEY}: \"false\""
        )));
    }
    if namespace == Some("disabled") {
        return Some(SkipReason::OptedOut(format!(
            "the namespace label {INJECT_KEY}=disabled"
        )));
    }
    let pod_asks = label(INJECT_KEY) == Some("true") || annotation == Some("true");
    if namespace_labels.is_some() && namespace != Some("enabled") && !pod_asks {
        return Some(SkipReason::NotOptedIn);
    }
    None
}

/// Refuses pods that already use the sidecar's container or volume names.
pub(super) fn check_names(spec: &PodSpec) -> Result<(), InjectError> {
    if spec.containers.iter().any(|c| c.name == SIDECAR_NAME) {
        return Err(InjectError::NameTaken {
            what: "container",
            name: SIDECAR_NAME.into(),
        });
    }
    for volume in spec.volumes.iter().flatten() {
        if volume.name == STATE_VOLUME || volume.name == TOKEN_VOLUME {
            return Err(InjectError::NameTaken {
                what: "volume",
                name: volume.name.clone(),
            });
        }
    }
    Ok(())
}

/// The ports and path the sidecar is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ports {
    /// The MCP server's port (on 127.0.0.1).
    pub upstream: u16,
    /// The MCP server's path.
    pub path: String,
    /// The sidecar's MCP port.
    pub proxy: u16,
    /// Advice for the pod's owner.
    pub warnings: Vec<String>,
}

impl Ports {
    pub(super) fn upstream_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.upstream, self.path)
    }
}

fn port_number(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0)
}

/// Every container, init container first, with its declared ports.
fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

/// Resolves the upstream port, path and proxy port from the annotations and the containers.
pub(super) fn ports(pod: &Pod, spec: &PodSpec) -> Result<Ports, InjectError> {
    let annotation = |k: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .map(String::as_str)
    };
    let proxy = match annotation(PROXY_PORT_ANNOTATION) {
        None => DEFAULT_PROXY_PORT,
        Some(text) => port_number(text).ok_or_else(|| InjectError::BadProxyPort(text.into()))?,
    };
    let declared = || {
        spec.containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
    };
    let upstream = match annotation(UPSTREAM_PORT_ANNOTATION) {
        Some(text) => match port_number(text) {
            Some(port) => port,
            None => declared()
                .find(|p| p.name.as_deref() == Some(text.trim()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| InjectError::BadUpstreamPort(text.into()))?,
        },
        None => spec
            .containers
            .first()
            .and_then(|c| c.ports.as_ref()?.first())
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or(InjectError::NoUpstreamPort)?,
    };
    let path = annotation(UPSTREAM_PATH_ANNOTATION)
        .unwrap_or(DEFAULT_UPSTREAM_PATH)
        .to_owned();
    if !path.starts_with('/')
        || path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(InjectError::BadUpstreamPath(path));
    }
    if proxy == ADMIN_PORT || proxy == upstream {
        return Err(InjectError::PortConflict(format!(
            "{PROXY_PORT_ANNOTATION}: {proxy} collides with the {} port; choose another",
            if proxy == ADMIN_PORT {
                "sidecar's admin"
            } else {
                "MCP server's"
            }
        )));
    }
    if upstream == ADMIN_PORT {
        return Err(InjectError::PortConflict(format!(
            "the MCP server's port {ADMIN_PORT} is the sidecar's admin port: move the server to another port"
        )));
    }
    for container in all_containers(spec) {
        for port in container.ports.iter().flatten() {
            let taken = |p: u16| i32::from(p) == port.container_port;
            if taken(proxy) {
                return Err(InjectError::PortConflict(format!(
                    "container {:?} already declares port {proxy}, the sidecar's MCP port: set \
                     {PROXY_PORT_ANNOTATION} to a free port",
                    container.name
                )));
            }
            if taken(ADMIN_PORT) {
                return Err(InjectError::PortConflict(format!(
                    "container {:?} declares port {ADMIN_PORT}, the sidecar's admin port: move it \
                     to another port",
                    container.name
                )));
            }
        }
    }
    let warnings = declared()
        .filter(|p| p.name.as_deref() == Some(PROXY_PORT_NAME))
        .map(|p| {
            format!(
                "port {} is named {PROXY_PORT_NAME:?} like the sidecar's port: Services that \
                 target it by name may bypass mcp-warden; rename it",
                p.container_port
            )
        })
        .collect();
    Ok(Ports {
        upstream,
        path,
        proxy,
        warnings,
    })
}
