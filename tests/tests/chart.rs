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

#[test]
fn every_option_set_passes_kubernetes_validate_strict_for_1_29_and_1_36() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chart-renders");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = kubernetes_validate().unwrap_or_else(|m| panic!("{m}"));
    let renders = render_all();
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (i, (name, render)) in renders.iter().enumerate() {
        let file = dir.join(format!("render-{i}.yaml"));
        std::fs::write(&file, render.yaml()).unwrap();
        for o in &render.objects {
            let kind = o["kind"].as_str().unwrap();
            if !FOREIGN_KINDS.contains(&kind) {
                let id = format!(
                    "{}/{}",
                    kind.to_lowercase(),
                    o["metadata"]["name"].as_str().unwrap()
                );
                expected.push((file.clone(), id, *name));
            }
        }
        files.push(file);
    }
    // The chart's crds/, exactly as Helm loads them.
    for (file_name, text) in &renders[0].1.crds {
        let file = dir.join(file_name);
        std::fs::write(&file, text).unwrap();
        let crd: Value = serde_yaml::from_str(text).unwrap();
        let id = format!(
            "customresourcedefinition/{}",
            crd["metadata"]["name"].as_str().unwrap()
        );
        expected.push((file.clone(), id, "crds/"));
        files.push(file);
    }
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&bin)
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate --strict -k {version}:\n{text}"
        );
        let short = version.rsplit_once('.').unwrap().0;
        for (file, id, name) in &expected {
            let passed = text.lines().any(|l| {
                l.contains(&*file.to_string_lossy())
                    && l.contains(&format!("passed for resource {id} against version {short}"))
            });
            assert!(
                passed,
                "{id} ({name}) not reported as passed for {version}:\n{text}"
            );
        }
        // Only the foreign kinds may be skipped.
        for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
            assert!(
                FOREIGN_KINDS
                    .iter()
                    .any(|k| line.contains(&format!("kind {k} "))),
                "kubernetes-validate skipped a kind it should know: {line}"
            );
        }
    }
}

#[test]
fn every_option_set_lints_strict_without_warnings() {
    let mut jobs = Vec::new();
    for (_, values) in option_sets() {
        for kube in ["v1.29.0", "v1.36.0"] {
            jobs.push(
                json!({"op": "lint", "values": values, "strict": true, "kube_version": kube}),
            );
        }
    }
    for (job, result) in jobs.iter().zip(helm::run(&jobs)) {
        assert_eq!(result["ok"], true, "{job}: {result}");
        let report = &result["report"];
        assert_eq!(report["total_charts_linted"], 1, "{report}");
        assert_eq!(report["errors"], json!([]), "{job}: {report}");
        // Severity 1 is information ("icon is recommended"); 2 warning, 3 error.
        let serious: Vec<&Value> = report["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "{job}: lint warnings {serious:?}");
    }
}

#[test]
fn values_that_break_the_schema_are_refused() {
    let cases = [
        (json!({"replicas": 2}), "additional properties 'replicas'"),
        (
            json!({"webhook": {"failurePolicy": "Fail", "path": "/x"}}),
            "'path' not allowed",
        ),
        (json!({"replicaCount": "two"}), "/replicaCount"),
        (json!({"replicaCount": 0}), "minimum: got 0, want 1"),
        (
            json!({"webhook": {"failurePolicy": "Sometimes"}}),
            "'Fail', 'Ignore'",
        ),
        (
            json!({"webhook": {"reinvocationPolicy": "Always"}}),
            "/webhook/reinvocationPolicy",
        ),
        (
            json!({"webhook": {"timeoutSeconds": 31}}),
            "/webhook/timeoutSeconds",
        ),
        (json!({"antiAffinity": "maybe"}), "/antiAffinity"),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"certManager": {"enabled": "yes"}}),
            "/certManager/enabled",
        ),
        (
            json!({"certManager": {"issuerRef": {"kind": "Vault"}}}),
            "/certManager/issuerRef/kind",
        ),
        (
            json!({"sidecar": {"memoryLimit": "lots"}}),
            "/sidecar/memoryLimit",
        ),
        (json!({"ports": {"push": 70000}}), "/ports/push"),
        (
            json!({"networkPolicy": {"namespaces": ["Not_A_Name"]}}),
            "/networkPolicy/namespaces/0",
        ),
        (
            json!({"serviceMonitor": {"interval": "often"}}),
            "/serviceMonitor/interval",
        ),
        (
            json!({"tolerations": [{"key": "k", "operatorr": "Exists"}]}),
            "'operatorr' not allowed",
        ),
        (json!({"fullnameOverride": "Bad_Name"}), "/fullnameOverride"),
    ];
    let mut jobs: Vec<Value> = cases
        .iter()
        .map(|(values, _)| json!({"op": "schema", "values": values}))
        .collect();
    jobs.extend(cases.iter().map(|(values, _)| helm::render_job(values)));
    let results = helm::run(&jobs);
    let (schema, render) = results.split_at(cases.len());
    for (((values, needle), s), r) in cases.iter().zip(schema).zip(render) {
        assert_eq!(s["ok"], false, "the schema accepted {values}");
        let error = s["error"].as_str().unwrap();
        assert!(
            error.contains(needle),
            "{values}: expected {needle:?} in {error:?}"
        );
        // Installing is refused too (Helm validates values before rendering).
        assert_eq!(r["ok"], false, "rendering accepted {values}");
    }
    // Defaults pass the schema; a write-everything-twice mistake the schema cannot see is caught
    // by the template.
    let results = helm::run(&[
        json!({"op": "schema", "values": {}}),
        helm::render_job(&json!({"replicaCount": 2, "operator": {"leaderElection": false}})),
    ]);
    assert_eq!(results[0]["ok"], true, "{}", results[0]);
    assert!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("set replicaCount to 1")),
        "{}",
        results[1]
    );
}

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

#[test]
fn the_render_matches_the_install_contract() {
    let render = helm::render(&json!({})).unwrap();
    let fullname = "mcp-warden-operator";
    let service = render.one("Service");
    assert_eq!(service["metadata"]["name"], fullname);
    let ports: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let by_name = |n: &str| *ports.iter().find(|p| p["name"] == n).unwrap();
    // push 8443→--listen, webhook 443→--webhook-listen, metrics 9090→--admin-listen.
    assert_eq!(by_name("push")["port"], 8443);
    assert_eq!(
        target(&render, by_name("push")),
        port_of(&arg(&render, "--listen"))
    );
    assert_eq!(target(&render, by_name("push")), 8443);
    assert_eq!(by_name("webhook")["port"], 443);
    assert_eq!(
        target(&render, by_name("webhook")),
        port_of(&arg(&render, "--webhook-listen"))
    );
    assert_eq!(target(&render, by_name("webhook")), 9443);
    assert_eq!(by_name("metrics")["port"], 9090);
    assert_eq!(
        target(&render, by_name("metrics")),
        port_of(&arg(&render, "--admin-listen"))
    );
    // The Service selects the operator pods.
    let pod_labels = &render.one("Deployment")["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[k], v, "selector {k}");
    }
    // The sidecars' operator URL is the Service, on the push port: the contract's default.
    assert_eq!(
        arg(&render, "--operator-url"),
        format!("https://{fullname}.{NAMESPACE}.svc:8443")
    );

    // The webhook: both entries call the Service at /mutate, fail closed, never the operator.
    let mwc = render.one("MutatingWebhookConfiguration");
    let hooks = mwc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    let operator_name = &pod_labels["app.kubernetes.io/name"];
    assert_eq!(operator_name, fullname);
    let secret = render.one("Secret");
    for hook in hooks {
        let svc = &hook["clientConfig"]["service"];
        assert_eq!(svc["name"], fullname);
        assert_eq!(svc["namespace"], NAMESPACE);
        assert_eq!(svc["path"], "/mutate");
        assert_eq!(svc["port"], 443);
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(hook["rules"][0]["resources"], json!(["pods"]));
        assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
        let excludes_operator = hook["objectSelector"]["matchExpressions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["key"] == "app.kubernetes.io/name"
                    && e["operator"] == "NotIn"
                    && e["values"].as_array().unwrap().contains(operator_name)
            });
        assert!(
            excludes_operator,
            "{} does not exclude the operator: {hook}",
            hook["name"]
        );
        // Self-signed mode: the caBundle is the CA in the Secret the operator serves with.
        let ca_bundle = hook["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default();
        assert!(!ca_bundle.is_empty(), "no caBundle in {}", hook["name"]);
        assert_eq!(ca_bundle, secret["data"]["ca.crt"].as_str().unwrap());
    }
    let selects = |hook: &Value, key: &str, op: &str, values: Value| {
        hook["namespaceSelector"]["matchExpressions"]
            .as_array()
            .into_iter()
            .chain(hook["objectSelector"]["matchExpressions"].as_array())
            .flatten()
            .any(|e| e["key"] == key && e["operator"] == op && e["values"] == values)
    };
    assert!(selects(
        &hooks[0],
        "mcpwarden.io/inject",
        "In",
        json!(["enabled"])
    ));
    assert!(selects(
        &hooks[0],
        "mcpwarden.io/inject",
        "NotIn",
        json!(["false"])
    ));
    assert!(selects(
        &hooks[1],
        "mcpwarden.io/inject",
        "NotIn",
        json!(["enabled", "disabled"])
    ));
    assert!(selects(
        &hooks[1],
        "mcpwarden.io/inject",
        "In",
        json!(["true"])
    ));

    // TLS: the Secret the pod mounts is `<fullname>-tls`, and the flags point into the mount.
    let pod = &render.one("Deployment")["spec"]["template"]["spec"];
    assert_eq!(secret["metadata"]["name"], format!("{fullname}-tls"));
    assert_eq!(
        pod["volumes"][0]["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let mount = &pod["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["name"], pod["volumes"][0]["name"]);
    assert_eq!(mount["mountPath"], "/etc/mcp-warden/tls");
    assert_eq!(arg(&render, "--tls-cert"), "/etc/mcp-warden/tls/tls.crt");
    assert_eq!(arg(&render, "--tls-key"), "/etc/mcp-warden/tls/tls.key");
    assert_eq!(
        arg(&render, "--operator-ca-file"),
        "/etc/mcp-warden/tls/ca.crt"
    );
    let cert = &render.certs[0];
    assert_eq!(cert["signed_by_ca"], true, "{cert}");
    assert_eq!(cert["ca_is_ca"], true, "{cert}");
    assert_eq!(
        cert["dns_names"],
        json!([
            fullname,
            "mcp-warden-operator.mcp-warden",
            "mcp-warden-operator.mcp-warden.svc",
            "mcp-warden-operator.mcp-warden.svc.cluster.local"
        ])
    );

    // The rest of the contract's flags, with their defaults.
    for (flag, value) in [
        ("--audience", "mcp-warden-operator"),
        (
            "--sidecar-image",
            "ghcr.io/mcp-warden/mcp-warden-sidecar:0.1.0",
        ),
        ("--sidecar-image-pull-policy", "IfNotPresent"),
        ("--sidecar-cpu-request", "50m"),
        ("--sidecar-memory-request", "32Mi"),
        ("--sidecar-memory-limit", "128Mi"),
        ("--leader-election", "true"),
    ] {
        assert_eq!(arg(&render, flag), value, "{flag}");
    }
}

#[test]
fn the_operator_pod_is_hardened_and_probed() {
    let render = helm::render(&json!({})).unwrap();
    let deployment = render.one("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    let admin_port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "admin")
        .unwrap();
    assert_eq!(
        admin_port["containerPort"],
        port_of(&arg(&render, "--admin-listen"))
    );
    for (probe, path) in [
        ("startupProbe", "/live"),
        ("readinessProbe", "/ready"),
        ("livenessProbe", "/live"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    // The admin server answers those paths (operator/src/admin.rs routes).
    let admin = read(&repo_root().join("operator/src/admin.rs"));
    for route in ["\"/ready\"", "\"/live\"", "\"/metrics\""] {
        assert!(
            admin.contains(route),
            "operator/src/admin.rs has no route {route}"
        );
    }
    let env: BTreeSet<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains("POD_NAME") && env.contains("POD_NAMESPACE"),
        "{env:?}"
    );
    let pdb = render.one("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn documented_options_change_what_they_say() {
    let results = helm::run(&[
        helm::render_job(&json!({"certManager": {"enabled": true}})),
        helm::render_job(&json!({"certManager": {"enabled": true,
                                 "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}})),
        helm::render_job(&json!({"serviceMonitor": {"enabled": true}})),
        helm::render_job(
            &json!({"replicaCount": 3, "webhook": {"failurePolicy": "Ignore"},
                                 "networkPolicy": {"namespaces": ["demo"]}}),
        ),
        helm::render_job(
            &json!({"networkPolicy": {"enabled": false}, "replicaCount": 1,
                                 "operator": {"leaderElection": false}}),
        ),
        helm::render_job(&json!({"networkPolicy": {"perTool": false,
                                 "monitoringNamespaces": ["monitoring"]}})),
    ]);
    let r: Vec<Render> = results
        .iter()
        .map(|x| helm::parse_render(x).unwrap())
        .collect();

    // cert-manager: no generated Secret, no caBundle; the CA injector fills it from the
    // Certificate that writes the Secret the pod mounts, for the Service's names.
    let cm = &r[0];
    assert!(cm.all("Secret").is_empty());
    let cert = cm
        .all("Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == "mcp-warden-operator-tls")
        .unwrap();
    let mwc = cm.one("MutatingWebhookConfiguration");
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/{}", cert["metadata"]["name"].as_str().unwrap())
    );
    for hook in mwc["webhooks"].as_array().unwrap() {
        assert!(hook["clientConfig"].get("caBundle").is_none());
    }
    assert_eq!(cert["spec"]["dnsNames"].as_array().unwrap().len(), 4);
    assert_eq!(
        cert["spec"]["dnsNames"][2],
        "mcp-warden-operator.mcp-warden.svc"
    );
    assert_eq!(cm.all("Issuer").len(), 2, "self-signed → CA → Issuer chain");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "mcp-warden-operator-ca");
    assert_eq!(
        cm.one("Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "mcp-warden-operator-tls"
    );
    // A user-supplied issuer: no chain of our own.
    let own = &r[1];
    assert!(own.all("Issuer").is_empty());
    let cert = own.one("Certificate");
    assert_eq!(
        cert["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );

    // ServiceMonitor scrapes the Service's metrics port.
    let sm = r[2].one("ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        r[2].one("Service")["spec"]["selector"]
    );
    assert!(r[0].all("ServiceMonitor").is_empty());

    // Replicas, failurePolicy, governed-pod NetworkPolicy.
    assert_eq!(r[3].one("Deployment")["spec"]["replicas"], 3);
    for hook in r[3].one("MutatingWebhookConfiguration")["webhooks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(hook["failurePolicy"], "Ignore");
    }
    let governed = r[3]
        .all("NetworkPolicy")
        .into_iter()
        .find(|p| p["metadata"]["namespace"] == "demo")
        .unwrap();
    assert_eq!(
        governed["spec"]["podSelector"]["matchLabels"],
        json!({"mcpwarden.io/governed": "true"})
    );
    assert_eq!(
        governed["spec"]["ingress"][0],
        json!({"ports": [{"port": "mcp", "protocol": "TCP"}]})
    );
    assert_eq!(
        governed["spec"]["ingress"][1]["ports"][0]["port"],
        mcp_warden_operator::inject::ADMIN_PORT_NAME,
        "the port name the injector gives the sidecar's admin port"
    );
    let operator_policy = r[3]
        .all("NetworkPolicy")
        .into_iter()
        .find(|p| p["metadata"]["namespace"] == NAMESPACE)
        .unwrap();
    let allowed: Vec<&Value> = operator_policy["spec"]["ingress"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["port"])
        .collect();
    assert_eq!(
        allowed,
        [&json!("push"), &json!("webhook"), &json!("admin")]
    );

    // Per-McpTool NetworkPolicies (made by the operator): on by default, admin port open to the
    // release namespace and the monitoring ones; off: no flag, no permission.
    let netpol_rule = |r: &Render| {
        r.one("ClusterRole")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["resources"] == json!(["networkpolicies"]))
            .cloned()
    };
    assert_eq!(arg(&r[3], "--network-policies"), "true");
    assert_eq!(arg(&r[3], "--network-policy-admin-from"), NAMESPACE);
    assert_eq!(
        netpol_rule(&r[3]).map(|rule| rule["verbs"].clone()),
        Some(json!(["create", "patch", "delete"]))
    );
    assert_eq!(arg(&r[5], "--network-policies"), "false");
    assert!(
        args(&r[5])
            .iter()
            .all(|(k, _)| k != "--network-policy-admin-from")
    );
    assert_eq!(netpol_rule(&r[5]), None);

    // No NetworkPolicy; a single writer needs no Lease, so no Role.
    assert!(r[4].all("NetworkPolicy").is_empty());
    assert!(r[4].all("Role").is_empty());
    assert_eq!(arg(&r[4], "--leader-election"), "false");
}

#[test]
fn every_flag_the_chart_passes_is_one_the_operator_knows() {
    let bin = workspace_bin("mcp-warden-operator").unwrap_or_else(|m| panic!("{m}"));
    let out = Command::new(&bin).args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let known =
        |flag: &str| help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n"));
    let mut all_options = option_sets();
    all_options.push((
        "scoped",
        json!({"operator": {"watchNamespaces": ["a"], "podSelector": "x=y"}}),
    ));
    let jobs: Vec<Value> = all_options
        .iter()
        .map(|(_, v)| helm::render_job(v))
        .collect();
    for result in helm::run(&jobs) {
        let render = helm::parse_render(&result).unwrap();
        for (flag, _) in args(&render) {
            assert!(
                known(&flag),
                "the chart passes {flag}, which `mcp-warden-operator run` does not know:\n{help}"
            );
        }
    }
}

#[test]
fn the_chart_crds_are_the_generated_ones() {
    // crds/ is what crdgen writes (tests/tests/crd_yaml.rs checks the files); Helm loads them all.
    let render = helm::render(&json!({})).unwrap();
    let names: BTreeSet<&str> = render.crds.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from(["mcpclients.yaml", "mcppolicies.yaml", "mcptools.yaml"])
    );
    for (name, text) in &render.crds {
        assert_eq!(
            text,
            &read(&repo_root().join("charts/mcp-warden/crds").join(name)),
            "{name}"
        );
    }
}

#[test]
fn every_value_is_documented_in_values_yaml() {
    // A leaf value (`key: value`) needs a comment right above it, or above its parent mapping
    // (e.g. `resources.requests.cpu` under "Operator container resources").
    let text = read(&repo_root().join("charts/mcp-warden/values.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    let commented = |i: usize| i > 0 && lines[i - 1].trim_start().starts_with('#');
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut undocumented = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('-') {
            continue;
        }
        let Some((_, value)) = t.split_once(':') else {
            continue;
        };
        if value.trim().is_empty() || commented(i) {
            continue; // a parent mapping, or documented
        }
        let parent = (0..i).rev().find(|&j| {
            !lines[j].trim().is_empty()
                && !lines[j].trim_start().starts_with('#')
                && indent(lines[j]) < indent(line)
        });
        if !parent.is_some_and(commented) {
            undocumented.push(format!("line {}: {t}", i + 1));
        }
    }
    assert!(
        undocumented.is_empty(),
        "values without a comment in values.yaml:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn an_upgrade_keeps_the_generated_tls_and_its_ca_bundle() {
    // The first install's Secret, then upgrades rendered as Helm does against a cluster (`lookup`
    // answered by a stand-in API server holding that Secret, a damaged copy, or nothing).
    let first = helm::render(&json!({})).unwrap();
    let secret = first.one("Secret").clone();
    let mut damaged = secret.clone();
    damaged["data"].as_object_mut().unwrap().remove("ca.crt");
    let live = |objects: Value| json!({"op": "render-live", "values": {}, "objects": objects});
    let results = helm::run(&[
        live(json!([secret])),
        live(json!([damaged])),
        live(json!([])),
    ]);
    for r in &results {
        let asked = r["requests"].as_array().map(|a| {
            a.contains(&json!(
                "/api/v1/namespaces/mcp-warden/secrets/mcp-warden-operator-tls"
            ))
        });
        assert_eq!(asked, Some(true), "Helm did not look the Secret up: {r}");
    }
    let upgrades: Vec<Render> = results
        .iter()
        .map(|r| helm::parse_render(r).unwrap())
        .collect();
    let ca_bundles = |r: &Render| -> BTreeSet<String> {
        r.one("MutatingWebhookConfiguration")["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["clientConfig"]["caBundle"].as_str().unwrap().to_owned())
            .collect()
    };
    // Kept: same Secret, same caBundle (sidecars keep trusting the operator).
    assert_eq!(upgrades[0].one("Secret")["data"], secret["data"]);
    assert_eq!(
        ca_bundles(&upgrades[0]),
        BTreeSet::from([secret["data"]["ca.crt"].as_str().unwrap().to_owned()])
    );
    // Incomplete or missing: a new, consistent pair.
    for upgrade in &upgrades[1..] {
        let new = upgrade.one("Secret");
        assert_ne!(new["data"]["ca.crt"], secret["data"]["ca.crt"]);
        assert_eq!(
            ca_bundles(upgrade),
            BTreeSet::from([new["data"]["ca.crt"].as_str().unwrap().to_owned()])
        );
        assert_eq!(upgrade.certs[0]["signed_by_ca"], true);
    }
}
