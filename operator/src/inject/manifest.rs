//! `inject -f`: the injector applied to manifests, like `istioctl kube-inject`. Pure: YAML text
//! in, YAML text out.
//!
//! ```text
//! multi-document YAML ──► each document (JSON value) ──► by kind:
//!     Pod                                            the pod itself
//!     Deployment, ReplicaSet, StatefulSet, DaemonSet,
//!     Job, ReplicationController                     .spec.template
//!     CronJob                                        .spec.jobTemplate.spec.template
//!     List                                           each item, the same way
//!     anything else                                  printed unchanged
//!   ──► super::inject (namespace labels unknown: injected unless opted out) ──► patch applied
//!   ──► YAML documents separated by `---` (keys sorted), plus notes for stderr
//! ```

use super::{InjectConfig, InjectError, Injection, inject};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::Value;

/// The injected manifests and what happened to each workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    /// The YAML to print.
    pub yaml: String,
    /// One line per workload that was skipped, and every warning.
    pub notes: Vec<String>,
}

/// A manifest that cannot be injected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML, or not representable as JSON (e.g. non-string keys).
    #[error("document {doc}: not a Kubernetes manifest: {message}")]
    Yaml {
        /// 1-based document number.
        doc: usize,
        /// The parser's message.
        message: String,
    },
    /// A workload whose pod (template) is not a valid Pod.
    #[error("document {doc} ({what}): the pod template is not a valid Pod: {message}")]
    NotAPod {
        /// 1-based document number.
        doc: usize,
        /// `Kind name`.
        what: String,
        /// The deserializer's message.
        message: String,
    },
    /// A workload that asks for the sidecar but cannot get it.
    #[error("document {doc} ({what}): {error}")]
    Inject {
        /// 1-based document number.
        doc: usize,
        /// `Kind name`.
        what: String,
        /// Why.
        error: InjectError,
    },
}

/// Where the pod (template) of a `kind` is, as a JSON pointer; `None`: not a workload.
fn pod_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn describe(doc: &Value) -> String {
    let field = |p: &str| doc.pointer(p).and_then(Value::as_str).unwrap_or("?");
    format!("{} {}", field("/kind"), field("/metadata/name"))
}

/// Injects every workload of `doc` (document number `n`) in place.
fn inject_document(
    n: usize,
    doc: &mut Value,
    cfg: &InjectConfig,
    notes: &mut Vec<String>,
) -> Result<(), ManifestError> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind == "List" {
        for item in doc
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            inject_document(n, item, cfg, notes)?;
        }
        return Ok(());
    }
    let Some(pointer) = pod_pointer(kind) else {
        return Ok(());
    };
    let what = describe(doc);
    let Some(target) = doc.pointer_mut(pointer).filter(|t| t.is_object()) else {
        return Err(ManifestError::NotAPod {
            doc: n,
            what,
            message: format!("no object at {pointer}"),
        });
    };
    if target.get("metadata").is_none_or(Value::is_null) {
        target["metadata"] = Value::Object(serde_json::Map::new());
    }
    let pod = Pod::deserialize(&*target).map_err(|e| ManifestError::NotAPod {
        doc: n,
        what: what.clone(),
        message: e.to_string(),
    })?;
    match inject(&pod, None, cfg) {
        Ok(Injection::Skip(reason)) => notes.push(format!("{what}: left as is ({reason})")),
        Ok(Injection::Patch {
            patch, warnings, ..
        }) => {
            json_patch::patch(target, &patch).map_err(|e| ManifestError::NotAPod {
                doc: n,
                what: what.clone(),
                message: e.to_string(),
            })?;
            notes.extend(
                warnings
                    .into_iter()
                    .map(|w| format!("{what}: warning: {w}")),
            );
        }
        Err(error) => {
            return Err(ManifestError::Inject {
                doc: n,
                what,
                error,
            });
        }
    }
    Ok(())
}

/// Injects every workload of the multi-document YAML `text`.
///
/// # Errors
///
/// The first document that is not YAML, or whose pod cannot be injected.
pub fn inject_manifests(text: &str, cfg: &InjectConfig) -> Result<Injected, ManifestError> {
    let mut documents = Vec::new();
    let mut notes = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let yaml_error = |e: &dyn std::fmt::Display| ManifestError::Yaml {
            doc: n,
            message: e.to_string(),
        };
        let yaml = serde_yaml::Value::deserialize(document).map_err(|e| yaml_error(&e))?;
        if yaml.is_null() {
            continue; // an empty document (`---` at the start or end)
        }
        let mut doc: Value = serde_json::to_value(&yaml).map_err(|e| yaml_error(&e))?;
        inject_document(n, &mut doc, cfg, &mut notes)?;
        documents.push(serde_yaml::to_string(&doc).map_err(|e| yaml_error(&e))?);
    }
    Ok(Injected {
        yaml: documents.join("---\n"),
        notes,
    })
}
