//! `mcp-warden-operator inject -f`, the real binary, against golden files: each input in
//! `tests/fixtures/inject/` gives exactly `tests/golden/inject/<same name>`.
//!
//! `REFRESH_GOLDEN=1 cargo test -p mcp-warden-operator --test inject_cli` rewrites the golden
//! files instead of failing (review the diff before committing). The `tests` crate validates the
//! golden files with `kubernetes-validate --strict`.
//!
//! No API server is involved (`inject -f` works offline): nothing here is in the real suite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub)
}

fn inject(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-warden-operator"))
        .arg("inject")
        .args(args)
        .current_dir(dir("fixtures/inject"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "inject failed ({:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Compares with (or, with `REFRESH_GOLDEN=1`, rewrites) `golden/inject/<name>`.
fn assert_golden(name: &str, actual: &str) {
    let path = dir("golden/inject").join(name);
    if std::env::var_os("REFRESH_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        eprintln!("REFRESH_GOLDEN=1: rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or("the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "{} differs from the injector's output (first at {line}); run \
             REFRESH_GOLDEN=1 cargo test -p mcp-warden-operator --test inject_cli and review the diff.\n\
             output:\n{actual}",
            path.display()
        );
    }
}

#[test]
fn pod_matches_golden() {
    let output = inject(&["-f", "pod.yaml"], None);
    assert_golden("pod.yaml", &stdout(&output));
}

#[test]
fn deployment_matches_golden() {
    let output = inject(&["-f", "deployment.yaml"], None);
    assert_golden("deployment.yaml", &stdout(&output));
}

#[test]
fn multi_document_file_matches_golden_and_notes_the_opted_out_job() {
    let output = inject(
        &[
            "-f",
            "multi.yaml",
            "--operator-url",
            "https://warden.mcp-warden.svc:8443",
            "--operator-ca-file",
            "ca.pem",
            "--sidecar-image",
            "registry.example/mcp-warden-sidecar:dev",
            "--sidecar-image-pull-policy",
            "Always",
            "--audience",
            "warden",
        ],
        None,
    );
    assert_golden("multi.yaml", &stdout(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Job one-off: left as is (opted out by the pod label"),
        "{stderr}"
    );
}

#[test]
fn stdin_gives_the_same_output_and_reinjection_is_a_no_op() {
    let pod = std::fs::read_to_string(dir("fixtures/inject/pod.yaml")).unwrap();
    let once = stdout(&inject(&["-f", "-"], Some(&pod)));
    assert_eq!(
        once,
        std::fs::read_to_string(dir("golden/inject/pod.yaml")).unwrap()
    );
    let output = inject(&["-f", "-"], Some(&once));
    assert_eq!(
        stdout(&output),
        once,
        "an injected pod is printed unchanged"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("already injected"));
}

#[test]
fn errors_name_the_document_and_what_to_fix() {
    let no_port = "kind: Service\nmetadata: {name: s}\n---\n\
                   kind: Pod\nmetadata: {name: stdio}\nspec: {containers: [{name: a, image: a}]}\n";
    let output = inject(&["-f", "-"], Some(no_port));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("document 2 (Pod stdio)") && stderr.contains("mcpwarden.io/upstream-port"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing printed on error");

    let output = inject(&["-f", "-"], Some("kind: Pod\nspec: [unclosed\n"));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("document 1"));

    let output = inject(&["-f", "pod.yaml", "--sidecar-memory-limit", "lots"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--sidecar-memory-limit"));

    let output = inject(&["-f", "missing.yaml"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.yaml"));
}
