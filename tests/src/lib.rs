//! Helpers shared by the workspace-level tests in `tests/tests/`: where the repository and the
//! third-party test peers are, which files to look at, and the CRD schemas as JSON.
//!
//! The tests themselves are integration tests (`cargo test -p mcp-warden-tests`):
//!
//! | test | checks |
//! | --- | --- |
//! | `crd_yaml` | the committed CRD YAML equals what the Rust types generate (`REFRESH_GOLDEN=1` rewrites it) |
//! | `kubernetes_validate` | the CRD YAML and the injected workloads (`operator/tests/golden/inject/`) pass `kubernetes-validate --strict` for Kubernetes 1.29 and 1.36 |
//! | `examples` | every configuration under `examples/` loads, and validates against the CRD schemas |
//! | `broken_samples` | every fixture under `tests/fixtures/broken/` is rejected at the field it names |
//! | `chart` | the Helm chart renders, lints and validates for every option, and matches the install contract ([`helm`]) |
//! | `injected_sidecar` | the sidecar `inject -f` writes starts with those args, reaches a files-mode operator and enforces its bundle |
//! | `cluster` | the chart, the CRDs and the operator on a real control plane (etcd, kube-apiserver, kube-controller-manager from `make k8s-bins`) with the real kubectl and helm: install/upgrade/uninstall, server-side refusal of every broken sample, the operator on the host under the chart's RBAC (audit log), status columns, usage, leader handover ([`cluster`]) |
//! | `oauth_handshake` | the Python and TypeScript SDKs' client-credentials providers, given only a client id, its secret and the MCP URL, begin with the 401's scope and step up on `insufficient_scope` (agent-alpha granted, agent-beta refused by the IdP), against oidc-provider and `examples/everything`; without `baseScopes` agent-beta cannot connect |
//! | `capabilities` | resources, prompts, completions and server requests governed (issue 19): agent-beta vs agent-alpha against server-everything and the Python fixture (lists filtered in SSE, JSON and paged answers; reads, prompts and completions allowed or answered as missing, never forwarded; resource updates only for readable URIs; sampling relayed or refused with the upstream answered −32601; server requests on a GET stream refused), each behind a recording [`tap`] |
//! | `adversarial` | the sidecar's gate under attack (smuggled keys, ids, batches, foreign sessions and event ids, tokenless floods, revocation of open streams, hostile upstream answers) against server-everything, the Python fixture and the Go (mcp-go) server, with a recording [`tap`] showing what each upstream received |

#![forbid(unsafe_code)]

pub mod answer;
pub mod cases;
pub mod cluster;
pub mod helm;
pub mod mcp;
pub mod procs;
pub mod tap;

use serde_json::Value;
use std::{
    fs,
    path::{Path, PathBuf},
};

/// The folders, relative to the repository root, that hold the generated CRD YAML.
pub const CRD_DIRS: [&str; 2] = ["crds/manifests", "charts/mcp-warden/crds"];

/// The Kubernetes versions the CRDs are checked against: the oldest we support and the API
/// version k8s-openapi is built for.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.36.0"];

// Re-exported for tests/src/cluster.rs and tests/tests/cluster/, which import them from here;
// new code imports them from `mcp_warden_test_support`.
pub use mcp_warden_test_support::{peers_dir, repo_root};

/// The `kubernetes-validate` CLI (PyPI `kubernetes-validate==1.37.0`) in the peers' venv.
///
/// # Errors
///
/// A message telling the reader to run `make peers` when it is not installed.
pub fn kubernetes_validate() -> Result<PathBuf, String> {
    let bin = peers_dir().join("venv/bin/kubernetes-validate");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "kubernetes-validate is not installed at {}: run `make peers` (it installs the pinned \
             kubernetes-validate into $PEERS_DIR/venv; set PEERS_DIR if the peers live elsewhere)",
            bin.display()
        ))
    }
}

/// Reads a file as UTF-8, panicking with its path.
pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `path` relative to the repository root, for messages.
pub fn display(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `*.yaml` / `*.yml` file under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The folders directly under `dir`, sorted.
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut dirs: Vec<_> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Every document of a multi-document YAML text as JSON, empty documents left out.
pub fn yaml_documents(source: &str, text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .enumerate()
        .map(|(i, document)| {
            serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("{source}: document {} is not valid YAML: {e}", i + 1))
        })
        .filter(|value: &Value| !value.is_null())
        .collect()
}

/// The `openAPIV3Schema` of the served version of the CRD for `kind`, straight from the Rust
/// types (not through the loader).
pub fn crd_schema(kind: &str) -> Option<Value> {
    mcp_warden_crds::crds().into_iter().find_map(|(_, crd)| {
        if crd.spec.names.kind != kind {
            return None;
        }
        let crd = serde_json::to_value(&crd).expect("a CRD serializes to JSON");
        crd.pointer("/spec/versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(mcp_warden_crds::VERSION))?
            .pointer("/schema/openAPIV3Schema")
            .cloned()
    })
}

/// See [`mcp_warden_policy::load::closed_schema`]: the sidecar validates with the same schema.
pub use mcp_warden_policy::load::closed_schema;
