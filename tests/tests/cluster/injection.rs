//! Sidecar injection through real admission: the API server calls the host operator's webhook
//! over TLS for the Pods the ReplicaSet controller creates; with the webhook down they are refused.

use crate::{DEPLOYMENT, NS};
use mcp_warden_tests::cluster::{ControlPlane, HostOperator, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

pub(crate) const GOVERNED: &str = "governed";

/// The webhook reaches the host process through the chart's Service, turned into an
/// ExternalName for `localhost`: the API server then dials `localhost:<clientConfig.service.port>`
/// with TLS ServerName `mcp-warden-operator.mcp-warden.svc`, verified against the chart's
/// caBundle. The chart's webhook port is 443 (privileged, and shared by every run on the
/// machine), so the test also moves `clientConfig.service.port` of both entries to the port the
/// host operator's webhook listens on; nothing else of the chart's configuration changes.
pub(crate) fn injection(cp: &ControlPlane, op: &HostOperator) -> Result<(), String> {
    let port: u16 = op
        .webhook
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(format!("operator webhook address {:?}", op.webhook))?;
    cp.kubectl(&[
        "-n",
        NS,
        "patch",
        "service",
        DEPLOYMENT,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"localhost","clusterIP":null,"clusterIPs":null,"ipFamilies":null,"ipFamilyPolicy":null}}"#,
    ])?;
    let webhook_name = format!("{DEPLOYMENT}-{NS}");
    let patch = json!([
        {"op": "replace", "path": "/webhooks/0/clientConfig/service/port", "value": port},
        {"op": "replace", "path": "/webhooks/1/clientConfig/service/port", "value": port},
    ]);
    cp.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        &webhook_name,
        "--type",
        "json",
        "-p",
        &patch.to_string(),
    ])?;
    cp.kubectl(&["create", "namespace", GOVERNED])?;
    cp.kubectl(&[
        "label",
        "namespace",
        GOVERNED,
        "mcpwarden.io/inject=enabled",
    ])?;
    wait_for(
        "the default ServiceAccount of governed",
        Duration::from_secs(30),
        || {
            Ok(cp
                .kubectl(&[
                    "-n",
                    GOVERNED,
                    "get",
                    "serviceaccount",
                    "default",
                    "-o",
                    "name",
                ])
                .ok())
        },
    )?;
    let before = op.metric("mcp_warden_operator_admission_requests_total")?;
    // An MCP server's Deployment: the Deployment and ReplicaSet controllers create its Pod; the
    // API server calls the webhook on that creation.
    cp.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: mcp-server, namespace: {GOVERNED}}}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: mcp-server}}}}\n  template:\n    \
         metadata: {{labels: {{app: mcp-server}}}}\n    spec:\n      containers:\n      \
         - name: server\n        image: node:22-bookworm-slim\n        \
         ports: [{{name: http, containerPort: 3001}}]\n"
    ))?;
    let pod = wait_for("the MCP server's Pod", Duration::from_secs(30), || {
        let pods = cp.kubectl_json(&["-n", GOVERNED, "get", "pods", "-l", "app=mcp-server"])?;
        Ok(pods["items"].as_array().and_then(|p| p.first()).cloned())
    })
    .map_err(|e| {
        let events = cp
            .kubectl(&["-n", GOVERNED, "get", "events"])
            .unwrap_or_default();
        format!("{e}\nevents:\n{events}")
    })?;
    let spec = &pod["spec"];
    let sidecar = &spec["initContainers"][0];
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let joined = args.join(" ");
    let checks = [
        (
            "sidecar first among initContainers",
            sidecar["name"] == "mcp-warden-sidecar",
        ),
        ("native sidecar", sidecar["restartPolicy"] == "Always"),
        (
            "governed label",
            pod["metadata"]["labels"]["mcpwarden.io/governed"] == "true",
        ),
        (
            "the chart's operator URL",
            joined.contains("https://mcp-warden-operator.mcp-warden.svc:8443"),
        ),
        (
            "upstream on the server's port",
            joined.contains("http://127.0.0.1:3001/mcp"),
        ),
        (
            "the chart's sidecar image",
            sidecar["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("ghcr.io/mcp-warden/mcp-warden-sidecar:")),
        ),
        (
            "the app container kept",
            spec["containers"][0]["name"] == "server",
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if !failed.is_empty() {
        return Err(format!("the injected Pod lacks {failed:?}:\n{pod:#}"));
    }
    // The CA the sidecar is told to trust is the chart's (the caBundle the API server used).
    let ca_env = sidecar["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "MCP_WARDEN_OPERATOR_CA")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_default()
        .to_owned();
    let webhook = cp.kubectl_json(&["get", "mutatingwebhookconfiguration", &webhook_name])?;
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD
        .decode(
            webhook["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    if ca_env.trim() != String::from_utf8_lossy(&ca_bundle).trim() {
        return Err(
            "the sidecar's MCP_WARDEN_OPERATOR_CA is not the webhook's caBundle".to_owned(),
        );
    }
    let after = op.metric("mcp_warden_operator_admission_requests_total")?;
    if after <= before {
        return Err(format!(
            "the webhook counted no admission request ({before} -> {after})"
        ));
    }
    // A Pod that opts out is not sent to the webhook at all (objectSelector).
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: opted-out, namespace: {GOVERNED}, \
         labels: {{mcpwarden.io/inject: \"false\"}}}}\nspec:\n  containers:\n  \
         - {{name: app, image: busybox}}\n"
    ))?;
    let opted_out = cp.kubectl_json(&["-n", GOVERNED, "get", "pod", "opted-out"])?;
    if !opted_out["spec"]["initContainers"].is_null() {
        return Err("the opted-out Pod was injected".to_owned());
    }
    eprintln!(
        "the API server called the webhook over TLS (chart caBundle, ServerName \
         {DEPLOYMENT}.{NS}.svc via ExternalName localhost:{port}); Pod {} injected",
        pod["metadata"]["name"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `failurePolicy: Fail`: with no webhook answering, a Pod of an opted-in namespace is refused.
pub(crate) fn webhook_down(cp: &ControlPlane, op: &mut HostOperator) -> Result<(), String> {
    op.proc.kill();
    let refusal = cp.kubectl_refused(&[
        "-n",
        GOVERNED,
        "run",
        "ungoverned",
        "--image=node:22-bookworm-slim",
        "--port=3001",
        "--restart=Never",
    ])?;
    for words in [
        r#"failed calling webhook "namespace.inject.mcpwarden.io""#,
        "mcp-warden-operator.mcp-warden.svc",
        "connection refused",
    ] {
        if !refusal.contains(words) {
            return Err(format!("the refusal does not say {words:?}:\n{refusal}"));
        }
    }
    if cp
        .kubectl(&[
            "-n",
            GOVERNED,
            "get",
            "pod",
            "ungoverned",
            "--ignore-not-found",
            "-o",
            "name",
        ])?
        .trim()
        != ""
    {
        return Err("the ungoverned Pod exists".to_owned());
    }
    // An opted-out Pod does not depend on the webhook.
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: opted-out-2, namespace: {GOVERNED}, \
         labels: {{mcpwarden.io/inject: \"false\"}}}}\nspec:\n  containers:\n  \
         - {{name: app, image: busybox}}\n"
    ))?;
    eprintln!("webhook down, Pod refused: {}", refusal.trim());
    Ok(())
}
