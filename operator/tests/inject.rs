//! The injector's rules, on the pure function: who is injected (namespace and pod opt-in and
//! opt-out), idempotence, every refusal with the annotation or flag it names, and the flags'
//! checks.
//!
//! The real suite (`tests/tests/cluster/`) shows one opt-in and one opt-out through real admission;
//! every rule and refusal of the pure function is here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Pod;
use mcp_warden_operator::inject::{
    ConfigError, InjectConfig, InjectError, Injection, SkipReason, inject,
};
use std::collections::BTreeMap;

fn config() -> InjectConfig {
    InjectConfig {
        image: "ghcr.io/mcp-warden/mcp-warden-sidecar:test".into(),
        image_pull_policy: "IfNotPresent".into(),
        operator_url: "https://mcp-warden-operator.mcp-warden.svc:8443".into(),
        operator_ca: None,
        audience: "mcp-warden-operator".into(),
        cpu_request: "50m".into(),
        memory_request: "32Mi".into(),
        memory_limit: "128Mi".into(),
    }
}

/// A pod with one container on port 8080, plus `meta` (YAML flow mapping entries) in metadata.
fn pod(meta: &str) -> Pod {
    serde_yaml::from_str(&format!(
        "metadata: {{name: p, namespace: ns, {meta}}}\n\
         spec: {{containers: [{{name: app, image: app, ports: [{{containerPort: 8080}}]}}]}}"
    ))
    .unwrap()
}

fn namespace(value: Option<&str>) -> BTreeMap<String, String> {
    value
        .map(|v| BTreeMap::from([("mcpwarden.io/inject".to_owned(), v.to_owned())]))
        .unwrap_or_default()
}

fn injected(pod: &Pod, ns: Option<&BTreeMap<String, String>>) -> bool {
    match inject(pod, ns, &config()).unwrap() {
        Injection::Patch { .. } => true,
        Injection::Skip(_) => false,
    }
}

fn skip_reason(pod: &Pod, ns: Option<&BTreeMap<String, String>>) -> SkipReason {
    match inject(pod, ns, &config()).unwrap() {
        Injection::Skip(reason) => reason,
        other => panic!("expected a skip, got {other:?}"),
    }
}

fn error(pod: &Pod) -> InjectError {
    inject(pod, None, &config()).expect_err("refused")
}

#[test]
fn namespace_and_pod_opt_in_and_opt_out() {
    let enabled = namespace(Some("enabled"));
    let disabled = namespace(Some("disabled"));
    let unlabelled = namespace(None);
    let plain = pod("");
    let label_true = pod("labels: {mcpwarden.io/inject: 'true'}");
    let annotation_true = pod("annotations: {mcpwarden.io/inject: 'true'}");
    let label_false = pod("labels: {mcpwarden.io/inject: 'false'}");
    let annotation_false = pod("annotations: {mcpwarden.io/inject: 'false'}");

    // Namespace enabled: every pod unless it opts out.
    assert!(injected(&plain, Some(&enabled)));
    assert!(matches!(
        skip_reason(&label_false, Some(&enabled)),
        SkipReason::OptedOut(by) if by.contains("label")
    ));
    assert!(matches!(
        skip_reason(&annotation_false, Some(&enabled)),
        SkipReason::OptedOut(by) if by.contains("annotation")
    ));
    // Namespace not labelled: only pods that ask, by label or annotation.
    assert_eq!(
        skip_reason(&plain, Some(&unlabelled)),
        SkipReason::NotOptedIn
    );
    assert!(injected(&label_true, Some(&unlabelled)));
    assert!(injected(&annotation_true, Some(&unlabelled)));
    // Namespace disabled: never, even when the pod asks.
    assert!(matches!(
        skip_reason(&label_true, Some(&disabled)),
        SkipReason::OptedOut(by) if by.contains("namespace")
    ));
    // Labels unknown (the webhook, inject -f): the namespaceSelector already chose; only the
    // pod's own opt-out counts.
    assert!(injected(&plain, None));
    assert!(!injected(&label_false, None));
    assert!(!injected(&annotation_false, None));
    // An opt-out wins over an opt-in on the same pod.
    let both =
        pod("labels: {mcpwarden.io/inject: 'true'}, annotations: {mcpwarden.io/inject: 'false'}");
    assert!(!injected(&both, Some(&enabled)));
}

#[test]
fn the_operators_own_pods_are_never_injected() {
    let operator = pod("labels: {app.kubernetes.io/name: mcp-warden-operator}");
    assert_eq!(skip_reason(&operator, None), SkipReason::OperatorPod);
}

#[test]
fn injecting_an_injected_pod_changes_nothing() {
    for meta in [
        "",
        "labels: {app: x}, annotations: {mcpwarden.io/upstream-path: /rpc}",
    ] {
        let original = pod(meta);
        let Injection::Patch { patch, .. } = inject(&original, None, &config()).unwrap() else {
            panic!("not injected");
        };
        let mut value = serde_json::to_value(&original).unwrap();
        json_patch::patch(&mut value, &patch).unwrap();
        let once: Pod = serde_json::from_value(value).unwrap();
        assert_eq!(skip_reason(&once, None), SkipReason::AlreadyInjected);
    }
}

#[test]
fn the_operator_ca_goes_into_the_sidecar_env() {
    let mut cfg = config();
    cfg.operator_ca = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    let Injection::Patch { patch, .. } = inject(&pod(""), None, &cfg).unwrap() else {
        panic!("not injected");
    };
    let patch = serde_json::to_value(&patch).unwrap();
    let sidecar = patch
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/spec/initContainers")
        .unwrap();
    let env = sidecar["value"][0]["env"].as_array().unwrap();
    let ca = env
        .iter()
        .find(|e| e["name"] == "MCP_WARDEN_OPERATOR_CA")
        .expect("the CA in the env");
    assert_eq!(ca["value"], cfg.operator_ca.unwrap().as_str());
}

#[test]
fn pods_that_cannot_get_the_sidecar_are_refused_with_what_to_fix() {
    let cases = [
        (
            "annotations: {mcpwarden.io/proxy-port: http}",
            "mcpwarden.io/proxy-port",
        ),
        (
            "annotations: {mcpwarden.io/upstream-port: nope}",
            "mcpwarden.io/upstream-port",
        ),
        (
            "annotations: {mcpwarden.io/upstream-port: '70000'}",
            "mcpwarden.io/upstream-port",
        ),
        (
            "annotations: {mcpwarden.io/upstream-path: 'mcp'}",
            "mcpwarden.io/upstream-path",
        ),
        (
            "annotations: {mcpwarden.io/upstream-path: '/a b'}",
            "mcpwarden.io/upstream-path",
        ),
        (
            "annotations: {mcpwarden.io/proxy-port: '8080'}",
            "mcpwarden.io/proxy-port",
        ),
        (
            "annotations: {mcpwarden.io/proxy-port: '9901'}",
            "mcpwarden.io/proxy-port",
        ),
        (
            "annotations: {mcpwarden.io/upstream-port: '9901'}",
            "admin port",
        ),
    ];
    for (meta, expected) in cases {
        let message = error(&pod(meta)).to_string();
        assert!(message.contains(expected), "{meta}: {message}");
    }
    let taken: Pod = serde_yaml::from_str(
        "metadata: {name: p}\nspec: {containers: [{name: app, image: a, ports: [{containerPort: 3000}]}, \
         {name: side, image: s, ports: [{containerPort: 9080}]}]}",
    )
    .unwrap();
    assert!(matches!(error(&taken), InjectError::PortConflict(m) if m.contains("\"side\"")));
    let container: Pod = serde_yaml::from_str(
        "metadata: {name: p}\nspec: {containers: [{name: mcp-warden-sidecar, image: a, ports: [{containerPort: 3000}]}]}",
    )
    .unwrap();
    assert!(matches!(
        error(&container),
        InjectError::NameTaken {
            what: "container",
            ..
        }
    ));
    let volume: Pod = serde_yaml::from_str(
        "metadata: {name: p}\nspec: {containers: [{name: a, image: a, ports: [{containerPort: 3000}]}], \
         volumes: [{name: mcp-warden-state, emptyDir: {}}]}",
    )
    .unwrap();
    assert!(matches!(
        error(&volume),
        InjectError::NameTaken { what: "volume", .. }
    ));
    let no_port: Pod =
        serde_yaml::from_str("metadata: {name: p}\nspec: {containers: [{name: a, image: a}]}")
            .unwrap();
    assert_eq!(error(&no_port), InjectError::NoUpstreamPort);
    let no_spec: Pod = serde_yaml::from_str("metadata: {name: p}").unwrap();
    assert_eq!(error(&no_spec), InjectError::NoSpec);
}

#[test]
fn bad_flags_are_refused_at_start() {
    let with = |edit: fn(&mut InjectConfig)| {
        let mut cfg = config();
        edit(&mut cfg);
        cfg.validate()
    };
    assert_eq!(with(|_| {}), Ok(()));
    assert!(matches!(
        with(|c| c.image_pull_policy = "Sometimes".into()),
        Err(ConfigError::PullPolicy(_))
    ));
    assert!(matches!(
        with(|c| c.memory_limit = "128MB".into()),
        Err(ConfigError::Quantity {
            flag: "--sidecar-memory-limit",
            ..
        })
    ));
    assert!(matches!(
        with(|c| c.operator_url = "mcp-warden-operator:8443".into()),
        Err(ConfigError::OperatorUrl(_))
    ));
    assert!(matches!(
        with(|c| c.image = " ".into()),
        Err(ConfigError::Empty("--sidecar-image"))
    ));
}

#[test]
fn manifests_inject_lists_and_leave_other_kinds_alone() {
    let yaml = "apiVersion: v1\nkind: List\nitems:\n\
                - {apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {a: b}}\n\
                - apiVersion: apps/v1\n  kind: DaemonSet\n  metadata: {name: d}\n  spec:\n    \
                selector: {matchLabels: {app: d}}\n    template:\n      metadata: {labels: {app: d}}\n      \
                spec: {containers: [{name: s, image: s, ports: [{containerPort: 7000}]}]}\n";
    let out = mcp_warden_operator::inject::manifest::inject_manifests(yaml, &config()).unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(&out.yaml).unwrap();
    assert_eq!(
        doc["items"][0]["data"]["a"], "b",
        "the ConfigMap is unchanged"
    );
    let template = &doc["items"][1]["spec"]["template"];
    assert_eq!(
        template["spec"]["initContainers"][0]["name"],
        "mcp-warden-sidecar"
    );
    assert!(
        template["spec"]["initContainers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&"http://127.0.0.1:7000/mcp".into())
    );
    assert_eq!(
        template["metadata"]["labels"]["mcpwarden.io/governed"],
        "true"
    );
    assert!(out.notes.is_empty(), "{:?}", out.notes);
}
