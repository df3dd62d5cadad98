//! The compiled CRD schemas (OpenAPI and CEL) that validation needs, built on first use and
//! dropped by [`release_schemas`].
//!
//! Compiling them takes milliseconds and keeps about a megabyte (the three kinds' schemas, their
//! CEL programs and a CEL evaluator with the Kubernetes functions). A process that validates
//! in bulk keeps them (each load of 10,000 objects would otherwise compile them again); one that
//! loads once and then rarely (the sidecar's standalone file) releases them after each load.

use crate::resource::Kind;
use kube::CustomResourceExt;
use mcp_warden_crds::{McpClient, McpPolicy, McpTool};
use serde_json::Value;
use std::{
    cell::RefCell,
    sync::{Arc, Mutex},
};

pub(super) struct KindSchemas {
    /// The CRD's `openAPIV3Schema` as JSON (what the CEL walker reads).
    pub(super) raw: Value,
    /// The same schema compiled for structural validation, made closed (no unknown fields)
    /// as the API server's pruning plus `kubectl --validate=strict` would be.
    pub(super) openapi: jsonschema::Validator,
    /// Its CEL rules, compiled once (compiling them for every object made loading 10,000
    /// objects take seconds).
    cel: kube::core::cel::CompiledSchema,
}

/// The schemas of McpTool, McpClient and McpPolicy, each built when first needed.
static CACHE: Mutex<[Option<Arc<KindSchemas>>; 3]> = Mutex::new([None, None, None]);

thread_local! {
    /// The CEL evaluator with the Kubernetes functions registered (not `Sync`: one per thread).
    static CEL: RefCell<Option<kube::core::cel::Validator>> = const { RefCell::new(None) };
}

fn cache() -> std::sync::MutexGuard<'static, [Option<Arc<KindSchemas>>; 3]> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The schemas of `kind`, compiled if they are not cached.
pub(super) fn of(kind: Kind) -> Arc<KindSchemas> {
    let slot = match kind {
        Kind::McpTool => 0,
        Kind::McpClient => 1,
        Kind::McpPolicy => 2,
    };
    // Compiled under the lock: concurrent loads need them too and would only compile twice.
    cache()[slot]
        .get_or_insert_with(|| Arc::new(build(kind)))
        .clone()
}

/// Runs the CEL rules of `schemas` on `value` with this thread's evaluator.
pub(super) fn validate_cel(
    schemas: &KindSchemas,
    value: &Value,
) -> Result<(), kube::core::cel::ValidationErrors> {
    CEL.with(|cel| {
        cel.borrow_mut()
            .get_or_insert_with(kube::core::cel::Validator::new)
            .validate_compiled(&schemas.cel, value, None)
    })
}

/// Drops the compiled schemas and this thread's CEL evaluator; the next document that is not
/// already known valid compiles its kind's schemas again (a few milliseconds). Verdicts do not
/// change. Returns how many kinds were cached.
pub fn release_schemas() -> usize {
    CEL.with(|cel| cel.borrow_mut().take());
    cache().iter_mut().filter_map(Option::take).count()
}

fn build(kind: Kind) -> KindSchemas {
    let crd = match kind {
        Kind::McpTool => McpTool::crd(),
        Kind::McpClient => McpClient::crd(),
        Kind::McpPolicy => McpPolicy::crd(),
    };
    let raw = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("derived CRDs carry an openAPIV3Schema"),
    )
    .expect("a schema serializes");
    let closed = closed_schema(&raw);
    let openapi = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&closed)
        .expect("the generated CRD schema is valid JSON Schema");
    let cel = kube::core::cel::compile_schema(&raw);
    assert!(
        !cel.has_errors(),
        "the CRD's CEL rules compile: {:?}",
        cel.compilation_errors()
    );
    KindSchemas { raw, openapi, cel }
}

/// A copy of a CRD schema in which every object with declared `properties` (outside `metadata`,
/// which the API server owns with `apiVersion` and `kind`) rejects undeclared ones, as `kubectl
/// apply --validate=strict` would: the API server silently prunes them, which hides typos.
pub fn closed_schema(schema: &Value) -> Value {
    let mut closed = schema.clone();
    if let Some(props) = closed.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, prop) in props.iter_mut() {
            if name != "metadata" {
                close_objects(prop);
            }
        }
    }
    closed
}

/// Marks every object schema with declared properties as closed, so unknown fields are reported
/// instead of silently pruned.
fn close_objects(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if map.contains_key("properties") && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Some(props) = child.as_object_mut() {
                    props.values_mut().for_each(close_objects);
                }
            }
            "items" | "additionalProperties" => close_objects(child),
            "allOf" | "anyOf" | "oneOf" => {
                if let Some(list) = child.as_array_mut() {
                    list.iter_mut().for_each(close_objects);
                }
            }
            _ => {}
        }
    }
}
