//! Documented options change what they say; the CRDs, values documentation and upgrades.

use super::*;

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

#[test]
fn upstream_auth_wires_the_operator_its_secrets_rule_and_identity_key() {
    use base64::Engine as _;
    let results = helm::run(&[
        helm::render_job(&json!({})),
        helm::render_job(&json!({"upstreamAuth": {"credentials": true,
                                                  "identity": {"enabled": true}}})),
        helm::render_job(&json!({"upstreamAuth": {"identity": {"enabled": true,
                                                               "existingSecret": "my-key"}}})),
    ]);
    let r: Vec<Render> = results
        .iter()
        .map(|x| helm::parse_render(x).unwrap())
        .collect();
    let reads_secrets = |render: &Render| {
        render.one("ClusterRole")["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|rule| rule["resources"] == json!(["secrets"]))
    };
    let identity_volume = |render: &Render| {
        let pod = &render.one("Deployment")["spec"]["template"]["spec"];
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "identity")
            .map(|v| v["secret"]["secretName"].clone())
    };
    let has_arg = |render: &Render, flag: &str| args(render).iter().any(|(k, _)| k == flag);
    // Off by default: no Secret is read, no key is held.
    assert_eq!(arg(&r[0], "--upstream-credentials"), "false");
    assert!(!reads_secrets(&r[0]));
    assert!(!has_arg(&r[0], "--upstream-identity-key"));
    assert!(identity_volume(&r[0]).is_none());
    assert!(
        r[0].all("Secret")
            .iter()
            .all(|s| s["metadata"]["name"] != "mcp-warden-operator-identity")
    );
    // On: the flag, list/watch on Secrets, and a generated key the operator can load.
    assert_eq!(arg(&r[1], "--upstream-credentials"), "true");
    let rule = r[1].one("ClusterRole")["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["resources"] == json!(["secrets"]))
        .cloned()
        .unwrap();
    assert_eq!(
        rule["verbs"],
        json!(["list", "watch"]),
        "no get: the watch is all it needs"
    );
    assert_eq!(
        arg(&r[1], "--upstream-identity-key"),
        "/etc/mcp-warden/identity/key.pem"
    );
    assert_eq!(
        identity_volume(&r[1]),
        Some(json!("mcp-warden-operator-identity"))
    );
    let mounts =
        &r[1].one("Deployment")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "identity" && m["mountPath"] == "/etc/mcp-warden/identity"),
        "{mounts}"
    );
    let secret = r[1]
        .all("Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "mcp-warden-operator-identity")
        .unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["key.pem"].as_str().unwrap())
        .unwrap();
    let pem = String::from_utf8(pem).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8: {pem}"
    );
    let pair = mcp_warden_wire::keys::key_pair(&pem).unwrap_or_else(|e| panic!("{e}: {pem}"));
    assert!(!pair.kid().is_empty());
    // The user's own Secret: mounted, none generated, no Secrets rule unless asked.
    assert_eq!(identity_volume(&r[2]), Some(json!("my-key")));
    assert!(
        r[2].all("Secret")
            .iter()
            .all(|s| s["metadata"]["name"] != "mcp-warden-operator-identity")
    );
    assert!(!reads_secrets(&r[2]));
}
