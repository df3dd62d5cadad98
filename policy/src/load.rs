//! Reading CRs from YAML or JSON text, validated exactly as the API server would.
//!
//! ```text
//! text ──split──► documents ──► JSON value ──┬─ apiVersion/kind/metadata checks
//!                  (YAML multi-doc,          ├─ OpenAPI schema of the CRD (types, enums, bounds)
//!                   `kind: List` items)      ├─ CEL rules of the CRD (x-kubernetes-validations)
//!                                            └─ typed decode ──► Resource
//! ```
//!
//! Every problem is reported, each with the document it came from and a field path
//! (`spec.tools[0].scopes`), so a person editing a standalone file can fix them all at once.
//!
//! Validation is the expensive part (a 3,000-object file took over a second): the CEL rules are
//! compiled once per kind (see [`release_schemas`]), and the digest of every document found
//! valid is remembered, so a reload after a one-line change revalidates one document and
//! decodes the rest.

use crate::resource::{Kind, Resource};
use mcp_warden_crds::{API_VERSION, McpClient, McpPolicy, McpTool};
pub use schemas::{closed_schema, release_schemas};

mod schemas;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::{
    collections::HashSet,
    fmt,
    sync::{Mutex, OnceLock},
};

/// One problem found in one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// Where the text came from (a file path, `<stdin>`, a bundle).
    pub source: String,
    /// 1-based index of the YAML document in the source.
    pub document: usize,
    /// `Kind/namespace/name` when known.
    pub object: Option<String>,
    /// The field the problem is in, e.g. `spec.tools[0].scopes` (empty for the whole document).
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.source, self.document)?;
        if let Some(object) = &self.object {
            write!(f, ", {object}")?;
        }
        f.write_str(")")?;
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one source. Nothing is loaded from a source with any problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Parses every mcp-warden object in `text` (multi-document YAML, JSON, or `kind: List`).
///
/// `source` names the text in error messages. Documents that are empty are skipped; any
/// other document must be a valid McpTool, McpClient or McpPolicy.
pub fn load(source: &str, text: &str) -> Result<Vec<Resource>, LoadErrors> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = |path: &str, message: String| LoadError {
            source: source.to_owned(),
            document: index + 1,
            object: None,
            path: path.to_owned(),
            message,
        };
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                errors.push(at("", format!("not valid YAML or JSON: {e}")));
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        let items = match value.get("kind").and_then(Value::as_str) {
            Some("List") => match value.get("items") {
                Some(Value::Array(items)) => items.clone(),
                _ => {
                    errors.push(at("items", "a List needs an `items` array".to_owned()));
                    continue;
                }
            },
            _ => vec![value],
        };
        for item in items {
            match load_value(&item) {
                Ok(resource) => resources.push(resource),
                Err((object, problems)) => {
                    errors.extend(problems.into_iter().map(|(path, message)| LoadError {
                        object: object.clone(),
                        ..at(&path, message)
                    }))
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(LoadErrors(errors))
    }
}

type Problems = Vec<(String, String)>;

/// Digests of documents found valid, so that reloading a large file revalidates only what
/// changed (the same bytes always give the same verdict). 32 bytes a document, forgotten when
/// there are more than `MAX_VALIDATED`.
struct Validated(Mutex<HashSet<[u8; 32]>>);

const MAX_VALIDATED: usize = 200_000;

impl Validated {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }

    fn insert(&self, digest: [u8; 32]) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= MAX_VALIDATED {
            set.clear();
        }
        set.insert(digest);
    }
}

fn validated() -> &'static Validated {
    static VALIDATED: OnceLock<Validated> = OnceLock::new();
    VALIDATED.get_or_init(|| Validated(Mutex::default()))
}

/// Every problem of an object of `kind`: metadata, the CRD's OpenAPI schema (closed), list-map
/// keys, and its CEL rules.
fn problems(kind: Kind, value: &Value) -> Problems {
    let mut problems = metadata_problems(value);
    let schemas = schemas::of(kind);
    problems.extend(schema_problems(&schemas.openapi, value));
    list_key_problems(&schemas.raw, value, "", &mut problems);
    let cel = schemas::validate_cel(&schemas, value);
    if let Err(errors) = cel {
        problems.extend(
            errors
                .into_vec()
                .into_iter()
                .map(|e| (e.field_path, e.message)),
        );
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Validates and decodes one object given as JSON.
fn load_value(value: &Value) -> Result<Resource, (Option<String>, Problems)> {
    let Some(object) = value.as_object() else {
        return Err((
            None,
            vec![(String::new(), "expected a mapping (an object)".into())],
        ));
    };
    let kind_str = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = value.pointer("/metadata/name").and_then(Value::as_str);
    let namespace = value.pointer("/metadata/namespace").and_then(Value::as_str);
    let label = name.map(|n| format!("{kind_str}/{}/{n}", namespace.unwrap_or("default")));
    let fail = |path: &str, message: String| Err((label.clone(), vec![(path.to_owned(), message)]));

    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if api_version != API_VERSION {
        return fail(
            "apiVersion",
            format!("must be {API_VERSION} (found {api_version:?})"),
        );
    }
    let Some(kind) = Kind::from_kind(kind_str) else {
        return fail(
            "kind",
            format!("must be McpTool, McpClient or McpPolicy (found {kind_str:?})"),
        );
    };
    let digest: [u8; 32] = serde_json::to_vec(value)
        .map(|bytes| Sha256::digest(bytes).into())
        .unwrap_or_default();
    if !validated().contains(&digest) {
        let problems = problems(kind, value);
        if !problems.is_empty() {
            return Err((label, problems));
        }
        validated().insert(digest);
    }
    let decoded = match kind {
        Kind::McpTool => decode::<McpTool>(value).map(Resource::Tool),
        Kind::McpClient => decode::<McpClient>(value).map(Resource::Client),
        Kind::McpPolicy => decode::<McpPolicy>(value).map(Resource::Policy),
    };
    decoded.map_err(|p| (label, vec![p]))
}

fn decode<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        (
            if path == "." { String::new() } else { path },
            e.inner().to_string(),
        )
    })
}

/// `metadata.name` is required and must be a DNS subdomain; a namespace must be a DNS label.
fn metadata_problems(value: &Value) -> Problems {
    let mut problems = Vec::new();
    match value.pointer("/metadata/name").and_then(Value::as_str) {
        None => problems.push(("metadata.name".into(), "is required".into())),
        Some(name) if !is_dns_subdomain(name) => problems.push((
            "metadata.name".into(),
            format!("{name:?} must be lowercase letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit"),
        )),
        Some(_) => {}
    }
    if let Some(ns) = value.pointer("/metadata/namespace").and_then(Value::as_str)
        && !(is_dns_subdomain(ns) && ns.len() <= 63 && !ns.contains('.'))
    {
        problems.push((
            "metadata.namespace".into(),
            format!("{ns:?} must be a DNS label (lowercase letters, digits and '-', at most 63 characters)"),
        ));
    }
    problems
}

fn is_dns_subdomain(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| ok(c) || c == '-' || c == '.')
        && s.starts_with(ok)
        && s.ends_with(ok)
}

/// The OpenAPI checks: types, enums, required fields, unknown fields, lengths, formats.
fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Problems {
    let value = without_nulls(value);
    validator
        .iter_errors(&value)
        .map(|e| {
            (
                json_pointer_to_path(e.instance_path().as_str()),
                e.to_string(),
            )
        })
        .collect()
}

/// `x-kubernetes-list-type: map` lists must not repeat a key (nor `set` lists an item), as the
/// API server enforces.
fn list_key_problems(schema: &Value, value: &Value, path: &str, problems: &mut Problems) {
    let child = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                if let Some(s) = schema.pointer(&format!("/properties/{name}")) {
                    list_key_problems(s, v, &child(name), problems);
                }
            }
        }
        Value::Array(items) => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
            let mut seen = HashSet::new();
            for (i, item) in items.iter().enumerate() {
                let identity = match list_type {
                    Some("map") => keys
                        .iter()
                        .map(|k| format!("{k}={}", item.get(k).unwrap_or(&Value::Null)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Some("set") => item.to_string(),
                    _ => String::new(),
                };
                if list_type.is_some() && !seen.insert(identity.clone()) {
                    problems.push((
                        format!("{path}[{i}]"),
                        format!("Duplicate value: {identity}"),
                    ));
                }
                if let Some(s) = schema.get("items") {
                    list_key_problems(s, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// The API server treats `field: null` of a nullable field as absent; so do we.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// `/spec/tools/0/scopes` → `spec.tools[0].scopes`.
pub(crate) fn json_pointer_to_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment.parse::<usize>().is_ok() {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_becomes_field_path() {
        assert_eq!(
            json_pointer_to_path("/spec/tools/0/scopes"),
            "spec.tools[0].scopes"
        );
        assert_eq!(json_pointer_to_path(""), "");
    }

    /// A valid McpPolicy named `name`.
    fn policy(name: &str) -> String {
        format!(
            "apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  clients: [{{name: bot}}]\n  tools: [{{toolRef: pay}}]\n"
        )
    }

    /// `text` with an empty `toolRef` is refused by the CEL rules, at that field.
    fn assert_empty_tool_ref_refused(text: &str) {
        let refused = text.replace("toolRef: pay", "toolRef: \"\"");
        let errors = load("a.yaml", &refused).expect_err("invalid").0;
        assert!(
            errors.iter().any(|e| e.path == "spec.tools[0].toolRef"),
            "{errors:?}"
        );
    }

    #[test]
    fn remembered_documents_give_the_same_verdicts_and_a_change_is_checked_again() {
        let valid = policy("remembered");
        let first = load("a.yaml", &valid).expect("valid");
        assert_eq!(
            load("a.yaml", &valid).expect("still valid"),
            first,
            "same result"
        );
        // One field changed to something the CEL rules refuse: validated again, refused.
        for _ in 0..2 {
            assert_empty_tool_ref_refused(&valid);
        }
    }

    #[test]
    fn released_schemas_are_compiled_again_and_give_the_same_verdicts() {
        let valid = policy("released");
        load("a.yaml", &valid).expect("valid");
        assert!(
            release_schemas() >= 1,
            "the policy schema was compiled and cached"
        );
        // Not yet known: validated with freshly compiled schemas, CEL rules included.
        assert_empty_tool_ref_refused(&valid);
        assert!(release_schemas() >= 1, "compiled again");
        let other = valid.replace("name: bot", "name: other-bot");
        load("a.yaml", &other).expect("still valid");
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let text = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpPolicy
metadata: {name: p, namespace: team}
spec:
  clients: []
  tools: [{toolRef: "", names: []}]
  rateLimit: {requests: 0, period: 0s}
  bogus: 1
"#;
        let errors = load("p.yaml", text).expect_err("invalid").0;
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "spec",
            "spec.tools[0].toolRef",
            "spec.tools[0].names",
            "spec.rateLimit.requests",
            "spec.rateLimit.period",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        assert!(
            errors.iter().any(|e| e.message.contains("bogus")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .all(|e| e.object.as_deref() == Some("McpPolicy/team/p"))
        );
    }

    #[test]
    fn skips_empty_documents_and_reads_lists() {
        let text = r#"
---
---
apiVersion: v1
kind: List
items:
- apiVersion: mcpwarden.io/v1alpha1
  kind: McpClient
  metadata: {name: a}
  spec: {owner: me, identity: {issuer: "https://idp.example", clientId: a}}
"#;
        let loaded = load("list.yaml", text).expect("valid");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].object_ref().to_string(), "McpClient/default/a");
    }

    #[test]
    fn malformed_time_and_wrong_kind_are_rejected() {
        let text = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: a}
spec: {owner: me, identity: {issuer: "https://idp.example", clientId: a}, expiresAt: "next tuesday"}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpServer
metadata: {name: b}
"#;
        let errors = load("x.yaml", text).expect_err("invalid").0;
        assert!(
            errors
                .iter()
                .any(|e| e.document == 1 && e.path == "spec.expiresAt"),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.document == 2 && e.path == "kind"),
            "{errors:?}"
        );
    }
}
