//! The JSONPatch (RFC 6902) that adds the sidecar, written against the Pod exactly as the API
//! server holds it: a missing list or map is added whole (an `add` below a missing parent
//! fails), and label/annotation keys are escaped as JSON pointer tokens
//! (`mcpwarden.io/governed` → `mcpwarden.io~1governed`).

use super::{GOVERNED_LABEL, INJECTED_VERSION_ANNOTATION, VERSION};
use json_patch::{AddOperation, Patch, PatchOperation, jsonptr::PointerBuf};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens.iter().copied()),
        value,
    })
}

fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("k8s-openapi objects serialize")
}

/// Sets `key` in the metadata map `field` (`labels` / `annotations`), creating the map if the
/// pod has none.
fn set_in_map(
    ops: &mut Vec<PatchOperation>,
    map: Option<&BTreeMap<String, String>>,
    field: &str,
    key: &str,
    value: &str,
) {
    ops.push(match map {
        None => add(&["metadata", field], json!({ key: value })),
        Some(_) => add(&["metadata", field, key], json!(value)),
    });
}

/// The operations: label, annotation, the sidecar first among the init containers, the volumes
/// appended.
pub(super) fn build(pod: &Pod, spec: &PodSpec, sidecar: Container, volumes: [Volume; 2]) -> Patch {
    let mut ops = Vec::new();
    let meta = &pod.metadata;
    set_in_map(
        &mut ops,
        meta.labels.as_ref(),
        "labels",
        GOVERNED_LABEL,
        "true",
    );
    set_in_map(
        &mut ops,
        meta.annotations.as_ref(),
        "annotations",
        INJECTED_VERSION_ANNOTATION,
        VERSION,
    );
    let sidecar = to_value(&sidecar);
    ops.push(match &spec.init_containers {
        None => add(&["spec", "initContainers"], json!([sidecar])),
        Some(_) => add(&["spec", "initContainers", "0"], sidecar),
    });
    match &spec.volumes {
        None => ops.push(add(&["spec", "volumes"], to_value(&volumes))),
        Some(_) => ops.extend(
            volumes
                .iter()
                .map(|v| add(&["spec", "volumes", "-"], to_value(v))),
        ),
    }
    Patch(ops)
}
