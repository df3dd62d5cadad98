//! Every configuration under `examples/` is valid: it loads with `mcp_warden_policy::load`
//! (schema, CEL rules, metadata, typed decoding), holds the objects we expect, refers only to
//! objects it declares, and, as a cross-check independent of the loader, each object validates
//! against its CRD's `openAPIV3Schema` with the `jsonschema` crate.

use mcp_warden_policy::{Kind, ObjectRef, Resource, load};
use mcp_warden_test_support::repo_root;
use mcp_warden_tests::{
    closed_schema, crd_schema, display, read, subdirs, yaml_documents, yaml_files,
};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The example folders and how many McpTools, McpClients and McpPolicies each holds.
const EXPECTED: &[(&str, [usize; 3])] = &[
    ("everything", [1, 4, 2]),
    ("payments", [1, 5, 5]),
    ("upstream-auth", [1, 1, 1]),
];

fn example_dirs() -> Vec<PathBuf> {
    subdirs(&repo_root().join("examples"))
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads every YAML file of one example folder; panics with every problem found.
fn load_folder(dir: &Path) -> Vec<Resource> {
    let files = yaml_files(dir);
    assert!(!files.is_empty(), "{} holds no YAML file", display(dir));
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match load(&display(&file), &read(&file)) {
            Ok(loaded) => {
                assert!(!loaded.is_empty(), "{} holds no object", display(&file));
                resources.extend(loaded);
            }
            Err(errors) => problems.push(errors.to_string()),
        }
    }
    assert!(
        problems.is_empty(),
        "the example {} does not load:\n{}",
        display(dir),
        problems.join("\n")
    );
    resources
}

#[test]
fn every_example_loads_without_problems() {
    for dir in example_dirs() {
        let resources = load_folder(&dir);
        let mut seen = BTreeSet::new();
        for resource in &resources {
            let object = resource.object_ref();
            assert!(
                seen.insert(object.clone()),
                "{}: {object} is declared twice",
                display(&dir)
            );
        }
    }
}

#[test]
fn examples_hold_the_expected_objects() {
    let found: Vec<String> = example_dirs().iter().map(|d| folder_name(d)).collect();
    let expected: Vec<String> = EXPECTED
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        found, expected,
        "the example folders changed; update EXPECTED in this test"
    );
    let in_folders: usize = example_dirs().iter().map(|d| yaml_files(d).len()).sum();
    assert_eq!(
        yaml_files(&repo_root().join("examples")).len(),
        in_folders,
        "every example YAML file must be in a folder of examples/ (one folder = one config)"
    );
    for (name, [tools, clients, policies]) in EXPECTED {
        let resources = load_folder(&repo_root().join("examples").join(name));
        let count = |kind: Kind| resources.iter().filter(|r| r.kind() == kind).count();
        assert_eq!(
            [
                count(Kind::McpTool),
                count(Kind::McpClient),
                count(Kind::McpPolicy)
            ],
            [*tools, *clients, *policies],
            "examples/{name}: [McpTool, McpClient, McpPolicy] counts"
        );
    }
}

/// Cross-object consistency the loader leaves to status conditions: in an example, every policy
/// names McpTools and McpClients the same folder declares, and every label selector matches some
/// client.
#[test]
fn example_policies_refer_to_declared_objects() {
    for dir in example_dirs() {
        let resources = load_folder(&dir);
        let refs: BTreeSet<ObjectRef> = resources.iter().map(Resource::object_ref).collect();
        let clients: Vec<_> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::Client(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut problems = Vec::new();
        for resource in &resources {
            let Resource::Policy(policy) = resource else {
                continue;
            };
            let me = resource.object_ref();
            for grant in &policy.spec.tools {
                let tool = ObjectRef::new(Kind::McpTool, &me.namespace, &grant.tool_ref);
                if !refs.contains(&tool) {
                    problems.push(format!("{me}: toolRef {tool} is not declared"));
                }
            }
            for client in &policy.spec.clients {
                let namespace = client.namespace.as_deref().unwrap_or(&me.namespace);
                let client = ObjectRef::new(Kind::McpClient, namespace, &client.name);
                if !refs.contains(&client) {
                    problems.push(format!("{me}: client {client} is not declared"));
                }
            }
            if let Some(selector) = &policy.spec.client_selector {
                let namespaces: Vec<&str> = if selector.namespaces.is_empty() {
                    vec![me.namespace.as_str()]
                } else {
                    selector.namespaces.iter().map(String::as_str).collect()
                };
                let wanted = selector.selector.match_labels.clone().unwrap_or_default();
                let matches = clients.iter().any(|c| {
                    let ns = c
                        .metadata
                        .namespace
                        .as_deref()
                        .unwrap_or(mcp_warden_policy::DEFAULT_NAMESPACE);
                    let labels = c.metadata.labels.clone().unwrap_or_default();
                    (namespaces.contains(&"*") || namespaces.contains(&ns))
                        && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
                });
                if !matches {
                    problems.push(format!(
                        "{me}: clientSelector matches no declared McpClient"
                    ));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "{}:\n  {}",
            display(&dir),
            problems.join("\n  ")
        );
    }
}

/// Validates every example object against its CRD schema, as given and closed (no unknown
/// fields), with `jsonschema` directly.
#[test]
fn example_objects_validate_against_the_crd_schemas() {
    let mut validators: BTreeMap<String, [jsonschema::Validator; 2]> = BTreeMap::new();
    for kind in [Kind::McpTool, Kind::McpClient, Kind::McpPolicy] {
        let schema =
            crd_schema(kind.as_str()).unwrap_or_else(|| panic!("no CRD schema for {kind}"));
        let build = |schema: &Value| {
            jsonschema::draft7::options()
                .should_validate_formats(true)
                .build(schema)
                .unwrap_or_else(|e| panic!("the {kind} CRD schema is not valid JSON Schema: {e}"))
        };
        validators.insert(
            kind.as_str().to_owned(),
            [build(&schema), build(&closed_schema(&schema))],
        );
    }
    let mut checked = 0;
    let mut problems = Vec::new();
    for dir in example_dirs() {
        for file in yaml_files(&dir) {
            let source = display(&file);
            for (i, object) in yaml_documents(&source, &read(&file))
                .into_iter()
                .enumerate()
            {
                let kind = object
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(pair) = validators.get(kind) else {
                    problems.push(format!(
                        "{source} document {}: unexpected kind {kind:?}",
                        i + 1
                    ));
                    continue;
                };
                for validator in pair {
                    for error in validator.iter_errors(&object) {
                        problems.push(format!(
                            "{source} document {}: {}: {error}",
                            i + 1,
                            error.instance_path()
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "examples that break the CRD schemas:\n  {}",
        problems.join("\n  ")
    );
    let expected: usize = EXPECTED
        .iter()
        .map(|(_, counts)| counts.iter().sum::<usize>())
        .sum();
    assert_eq!(checked, expected, "objects checked against the CRD schemas");
}
