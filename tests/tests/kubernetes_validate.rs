//! The generated CRD YAML is a valid `apiextensions.k8s.io/v1` CustomResourceDefinition for the
//! Kubernetes versions we support, per `kubernetes-validate --strict` (PyPI
//! `kubernetes-validate==1.37.0`, offline schemas for 1.25 to 1.37, installed by `make peers`).
//!
//! The tool exits 0 for documents whose kind it has no schema for, so a pass is only believed
//! when it prints `passed` for every file; and a deliberately broken CRD must be rejected, so we
//! know the check has teeth.

use mcp_warden_test_support::repo_root;
use mcp_warden_tests::{CRD_DIRS, KUBERNETES_VERSIONS, display, kubernetes_validate, yaml_files};
use serde::Deserialize;
use serde_yaml::Value;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

struct Run {
    success: bool,
    output: String,
}

/// Runs `kubernetes-validate --strict -k <version> <files>`; fails the test (never skips) when
/// the tool is not installed.
fn run(version: &str, files: &[PathBuf]) -> Run {
    let bin = kubernetes_validate().unwrap_or_else(|message| panic!("{message}"));
    let output = Command::new(&bin)
        .args(["--strict", "-k", version])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run `make peers`", bin.display()));
    Run {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn generated_crd_files() -> Vec<PathBuf> {
    let files: Vec<_> = CRD_DIRS
        .iter()
        .flat_map(|dir| yaml_files(&repo_root().join(dir)))
        .collect();
    let expected = CRD_DIRS.len() * mcp_warden_crds::crds().len();
    assert_eq!(
        files.len(),
        expected,
        "expected {expected} CRD files in {CRD_DIRS:?}, found {files:?}"
    );
    files
}

fn assert_all_pass(version: &str) {
    let files = generated_crd_files();
    let run = run(version, &files);
    assert!(
        run.success,
        "kubernetes-validate --strict -k {version} rejected the generated CRDs:\n{}",
        run.output
    );
    let short = version
        .rsplit_once('.')
        .map_or(version, |(major_minor, _)| major_minor);
    for file in &files {
        let passed = run.output.lines().any(|line| {
            line.contains(&*file.to_string_lossy())
                && line.contains("passed for resource customresourcedefinition/")
                && line.contains(&format!("against version {short}"))
        });
        assert!(
            passed,
            "kubernetes-validate did not report {} as passed against {version} (skipped?):\n{}",
            display(file),
            run.output
        );
    }
}

#[test]
fn generated_crds_pass_strict_validation_for_kubernetes_1_29() {
    assert_all_pass("1.29.0");
}

#[test]
fn generated_crds_pass_strict_validation_for_kubernetes_1_36() {
    assert_all_pass("1.36.0");
}

/// Writes a copy of the generated McpTool CRD, changed by `edit`, under the test's scratch
/// folder.
fn broken_crd(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let (_, crd) = mcp_warden_crds::crds()
        .into_iter()
        .find(|(stem, _)| *stem == "mcptools")
        .expect("the McpTool CRD");
    let mut yaml: Value =
        serde_yaml::from_str(&mcp_warden_crds::crd_yaml(&crd)).expect("the generated CRD is YAML");
    edit(&mut yaml);
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kubernetes-validate-{name}.yaml"));
    std::fs::write(
        &path,
        serde_yaml::to_string(&yaml).expect("YAML serializes"),
    )
    .expect("write the broken CRD");
    path
}

fn assert_rejected(path: &Path, expected_in_output: &str) {
    for version in KUBERNETES_VERSIONS {
        let run = run(version, &[path.to_path_buf()]);
        assert!(
            !run.success,
            "kubernetes-validate --strict -k {version} accepted a broken CRD ({}):\n{}",
            path.display(),
            run.output
        );
        assert!(
            run.output.contains(expected_in_output),
            "kubernetes-validate rejected {} against {version}, but not for {expected_in_output:?}:\n{}",
            path.display(),
            run.output
        );
    }
}

#[test]
fn kubernetes_validate_rejects_a_crd_with_an_unknown_field() {
    let path = broken_crd("unknown-field", |crd| {
        crd["spec"]
            .as_mapping_mut()
            .expect("spec is a mapping")
            .insert("bogusField".into(), true.into());
    });
    assert_rejected(&path, "bogusField");
}

#[test]
fn kubernetes_validate_rejects_a_crd_with_a_wrongly_typed_field() {
    // (Not `served: "yes"`: serde_yaml writes it unquoted, and YAML 1.1 readers take it as true.)
    let path = broken_crd("wrong-type", |crd| {
        crd["spec"]["scope"] = 42.into();
    });
    assert_rejected(&path, "42 is not of type 'string'");
}

/// The golden output of `mcp-warden-operator inject -f` (a Pod, a Deployment, a StatefulSet, a
/// CronJob, …, with the sidecar injected; kept current by the operator's `inject_cli` test) is
/// valid for both Kubernetes versions: native sidecar fields, probes, security context and the
/// projected token volume included.
#[test]
fn injected_workloads_pass_strict_validation() {
    let files = yaml_files(&repo_root().join("operator/tests/golden/inject"));
    assert!(files.len() >= 3, "golden files missing: {files:?}");
    for version in KUBERNETES_VERSIONS {
        let run = run(version, &files);
        assert!(
            run.success,
            "kubernetes-validate --strict -k {version} rejected injected manifests:\n{}",
            run.output
        );
        let short = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
        for file in &files {
            let text = mcp_warden_tests::read(file);
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let doc = Value::deserialize(doc).expect("golden files are YAML");
                let (Some(kind), Some(name)) =
                    (doc["kind"].as_str(), doc["metadata"]["name"].as_str())
                else {
                    continue;
                };
                let expected = format!(
                    "{} passed for resource {}/{name} against version {short}",
                    file.to_string_lossy(),
                    kind.to_lowercase()
                );
                assert!(
                    run.output.contains(&expected),
                    "not reported as passed (skipped?): {expected}\n{}",
                    run.output
                );
            }
        }
    }
}
