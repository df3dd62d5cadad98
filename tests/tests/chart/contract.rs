//! The render agrees with the operator: flags, ports, Service name, webhook path, TLS, a hardened pod.

use super::*;

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
