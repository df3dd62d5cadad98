//! The Helm chart `charts/mcp-warden`, with the real Helm library (helm-python-sdk 0.2.2 = Helm
//! v4) and `kubernetes-validate --strict`: every documented option renders, lints strict and
//! validates for Kubernetes 1.29 and 1.36; values that break `values.schema.json` are refused;
//! and the render agrees with the operator (flags, ports, Service name, webhook path, TLS).

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::repo_root;
use mcp_warden_tests::{
    KUBERNETES_VERSIONS,
    helm::{self, NAMESPACE, Render},
    kubernetes_validate,
    procs::workspace_bin,
    read,
};
use serde_json::{Value, json};
use std::{collections::BTreeSet, process::Command};

/// Every documented option, alone or combined as an operator would.
fn option_sets() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        ("cert-manager", json!({"certManager": {"enabled": true}})),
        (
            "cert-manager with an issuer",
            json!({"certManager": {"enabled": true,
                    "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}),
        ),
        (
            "service monitor",
            json!({"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}}),
        ),
        (
            "cert-manager and service monitor",
            json!({"certManager": {"enabled": true}, "serviceMonitor": {"enabled": true}}),
        ),
        ("one replica", json!({"replicaCount": 1})),
        (
            "three replicas, hard anti-affinity",
            json!({"replicaCount": 3, "antiAffinity": "hard"}),
        ),
        (
            "no network policy, no PDB",
            json!({"networkPolicy": {"enabled": false}, "podDisruptionBudget": {"enabled": false}}),
        ),
        (
            "network policies for governed namespaces",
            json!({"networkPolicy": {"namespaces": ["demo", "payments"],
                                     "monitoringNamespaces": ["monitoring"]}}),
        ),
        (
            "no per-McpTool network policies",
            json!({"networkPolicy": {"perTool": false}}),
        ),
        (
            "upstream credentials and a generated identity key",
            json!({"upstreamAuth": {"credentials": true, "identity": {"enabled": true}}}),
        ),
        (
            "failurePolicy Ignore",
            json!({"webhook": {"failurePolicy": "Ignore"}}),
        ),
        (
            "scoped watches, single writer",
            json!({"replicaCount": 1,
                   "operator": {"leaderElection": false, "watchNamespaces": ["demo", "agents"],
                                "podSelector": "mcpwarden.io/governed=true"}}),
        ),
        (
            "everything set",
            json!({"fullnameOverride": "warden", "imagePullSecrets": [{"name": "regcred"}],
                   "priorityClassName": "system-cluster-critical",
                   "nodeSelector": {"kubernetes.io/os": "linux"},
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra",
                                    "effect": "NoSchedule"}],
                   "podAnnotations": {"a": "b"}, "podLabels": {"team": "platform"},
                   "serviceAccount": {"annotations": {"x": "y"}},
                   "image": {"tag": "0.1.0-dev", "pullPolicy": "Always"},
                   "sidecar": {"image": {"repository": "registry.local/sidecar", "tag": "dev"}}}),
        ),
    ]
}

/// Renders every option set (one Helm run).
fn render_all() -> Vec<(&'static str, Render)> {
    let sets = option_sets();
    let jobs: Vec<Value> = sets.iter().map(|(_, v)| helm::render_job(v)).collect();
    let results = helm::run(&jobs);
    sets.into_iter()
        .zip(results)
        .map(|((name, _), result)| {
            let render = helm::parse_render(&result)
                .unwrap_or_else(|e| panic!("option set {name:?} does not render: {e}"));
            (name, render)
        })
        .collect()
}

/// Kinds kubernetes-validate has no schema for (CRDs of cert-manager and the Prometheus
/// Operator); their shape is asserted below instead.
const FOREIGN_KINDS: [&str; 3] = ["Issuer", "Certificate", "ServiceMonitor"];

/// `--flag=value` arguments of the operator container.
fn args(render: &Render) -> Vec<(String, String)> {
    let deployment = render.one("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"][0], "run");
    container["args"].as_array().unwrap()[1..]
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            let (k, v) = a
                .split_once('=')
                .unwrap_or_else(|| panic!("{a} is not --flag=value"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn arg(render: &Render, flag: &str) -> String {
    args(render)
        .into_iter()
        .find(|(k, _)| k == flag)
        .unwrap_or_else(|| panic!("{flag} is not passed"))
        .1
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The container port a Service port's targetPort names (or is).
fn target(render: &Render, service_port: &Value) -> i64 {
    let ports = &render.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"];
    match &service_port["targetPort"] {
        Value::String(name) => ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == *name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_i64()
            .unwrap(),
        n => n.as_i64().unwrap(),
    }
}

mod contract;
mod options;
mod validate;
