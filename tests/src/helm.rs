//! The Helm chart (`charts/mcp-warden`) through the real Helm library, for the chart and RBAC
//! tests.
//!
//! ```text
//! [job, ...] (JSON) ──stdin──► $PEERS_PYTHON tests/peers/helm/chart.py charts/mcp-warden
//!                                  helm-python-sdk 0.2.2 = Helm v4 in-process: render / lint / schema
//! [result, ...] ◄──stdout──────┘   render: manifests by template, crds/, facts of the TLS certs
//! ```
//!
//! No cluster is involved (`lookup` finds nothing, so self-signed TLS is generated on every
//! render).

use crate::yaml_documents;
use mcp_warden_test_support::{peer_file, repo_root};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
};

/// The chart, relative to the repository root.
pub const CHART: &str = "charts/mcp-warden";

/// The release namespace the tests install into: the contract's default (`mcp-warden`).
pub const NAMESPACE: &str = "mcp-warden";

/// Runs Helm jobs (see `tests/peers/helm/chart.py`); panics with what to install when the peers
/// are missing, and with Python's output when the driver fails.
pub fn run(jobs: &[Value]) -> Vec<Value> {
    let python = peer_file("PEERS_PYTHON").unwrap_or_else(|e| {
        panic!("{e} (the chart tests need helm-python-sdk 0.2.2 in the peers' venv)")
    });
    let root = repo_root();
    let mut child = Command::new(&python)
        .arg(root.join("tests/peers/helm/chart.py"))
        .arg(root.join(CHART))
        // Never from inside the helm_python package (its logging.py shadows the stdlib's).
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make peers`", python.display()));
    let input = serde_json::to_vec(jobs).expect("jobs serialize");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write the jobs");
    let out = child.wait_with_output().expect("chart.py runs");
    assert!(
        out.status.success(),
        "chart.py failed ({}); is helm-python-sdk installed (`make peers`)?\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "chart.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(results.len(), jobs.len(), "one result per job");
    results
}

/// A rendered release.
#[derive(Debug, Clone)]
pub struct Render {
    /// Rendered template text by template path (`mcp-warden/templates/x.yaml`), NOTES included.
    pub texts: BTreeMap<String, String>,
    /// Every rendered manifest (templates only; empty documents left out).
    pub objects: Vec<Value>,
    /// The chart's `crds/` files by name.
    pub crds: BTreeMap<String, String>,
    /// For each `kubernetes.io/tls` Secret: `secret`, `dns_names`, `signed_by_ca`, `ca_is_ca`.
    pub certs: Vec<Value>,
}

impl Render {
    /// The objects of `kind`.
    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// The one object of `kind`; panics when there is not exactly one.
    pub fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, found {}", all.len());
        all[0]
    }

    /// The manifests as one multi-document YAML text.
    pub fn yaml(&self) -> String {
        self.texts
            .iter()
            .filter(|(path, text)| path.ends_with(".yaml") && !text.trim().is_empty())
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

/// A render job for `values` in the test namespace.
pub fn render_job(values: &Value) -> Value {
    json!({"op": "render", "values": values, "release": "mcp-warden", "namespace": NAMESPACE})
}

/// Parses a render job's result: `Err(Helm's message)` when Helm refused.
pub fn parse_render(result: &Value) -> Result<Render, String> {
    if result["ok"] != true {
        return Err(result["error"].as_str().unwrap_or("?").to_owned());
    }
    let strings = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let texts = strings(&result["manifests"]);
    let objects = texts
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .flat_map(|(path, text)| yaml_documents(path, text))
        .collect();
    // Helm names them `crds/<file>`; keep the file name.
    let crds = strings(&result["crds"])
        .into_iter()
        .map(|(k, v)| (k.rsplit('/').next().unwrap_or(&k).to_owned(), v))
        .collect();
    Ok(Render {
        texts,
        objects,
        crds,
        certs: result["certs"].as_array().cloned().unwrap_or_default(),
    })
}

/// Renders the chart with `values` (in [`NAMESPACE`]).
pub fn render(values: &Value) -> Result<Render, String> {
    parse_render(&run(&[render_job(values)])[0])
}
