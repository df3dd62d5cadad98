//! The injector and the sidecar agree: the sidecar the injector writes into a pod
//! (`operator/tests/golden/inject/deployment.yaml`, the output of `inject -f`) starts with
//! exactly those arguments, connects to a real operator (`run --source files:examples/payments`)
//! and enforces its pod's bundle.
//!
//! What the kubelet would provide is substituted: the operator's URL, the token file and the
//! state directory (no projected volumes here), loopback instead of `0.0.0.0`, `--pod-name` and
//! `--pod-namespace` for the downward-API env, and `--pod-labels` because a files-mode operator
//! has no Pod objects to read labels from.
#![allow(clippy::unwrap_used)]

use mcp_warden_test_support::repo_root;
use mcp_warden_tests::{
    procs::{enforced_version, operator_files, sidecar},
    read,
};
use serde_yaml::Value;
use std::time::{Duration, Instant};

/// The injected sidecar's args and the pod template's labels, from the golden Deployment.
fn injected() -> (Vec<String>, String) {
    let text = read(&repo_root().join("operator/tests/golden/inject/deployment.yaml"));
    let deployment: Value = serde_yaml::from_str(&text).unwrap();
    let template = &deployment["spec"]["template"];
    let sidecar = &template["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"].as_str(), Some("mcp-warden-sidecar"));
    let args = sidecar["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let labels = template["metadata"]["labels"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{}={}", k.as_str().unwrap(), v.as_str().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    (args, labels)
}

#[test]
fn the_injected_sidecar_connects_to_the_operator_and_enforces_its_bundle() {
    let (args, labels) = injected();
    assert_eq!(args[0], "run");
    let (operator, url) = operator_files(&repo_root().join("examples/payments")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let token = scratch.path().join("token");
    std::fs::write(&token, "not-checked-in-files-mode").unwrap();
    let state = scratch.path().join("state");
    std::fs::create_dir(&state).unwrap();

    // Keep every injected flag; replace the values only the pod's environment can give, and
    // leave out the listen addresses (`procs::sidecar` binds loopback ports itself).
    let mut run = Vec::new();
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} has no value"));
        match flag.as_str() {
            "--listen" | "--admin-listen" => continue,
            "--operator" => run.extend([flag.clone(), url.clone()]),
            "--token-file" => run.extend([flag.clone(), token.display().to_string()]),
            "--state-dir" => run.extend([flag.clone(), state.display().to_string()]),
            _ => run.extend([flag.clone(), value.clone()]),
        }
    }
    run.extend(
        [
            "--pod-name",
            "payments-mcp-0",
            "--pod-namespace",
            "payments",
            "--pod-labels",
            &labels,
        ]
        .map(str::to_owned),
    );
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let (sidecar, addrs) = sidecar(&run).unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    while enforced_version(&addrs.admin).is_none() {
        assert!(
            Instant::now() < deadline,
            "the injected sidecar enforces no bundle after 15 s\nsidecar:\n{}\noperator:\n{}",
            sidecar.log(),
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        operator
            .log()
            .contains("sidecar connected namespace=payments pod=payments-mcp-0"),
        "{}",
        operator.log()
    );
    // The JSON log format the injector asks for.
    assert!(
        sidecar
            .log()
            .lines()
            .any(|l| l.starts_with("{\"timestamp\"")),
        "{}",
        sidecar.log()
    );
}
