//! The operator's NetworkPolicy per McpTool, written through the real API server (no CNI runs:
//! the policies are checked as objects, not enforced).

use crate::NS;
use mcp_warden_tests::cluster::{ControlPlane, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// The operator's NetworkPolicy of McpTool `ns/tool`, once it exists.
fn tool_policy(cp: &ControlPlane, ns: &str, tool: &str) -> Result<Value, String> {
    let name = format!("mcp-warden-tool-{tool}");
    wait_for(
        &format!("NetworkPolicy {ns}/{name}"),
        Duration::from_secs(15),
        || {
            Ok(cp
                .kubectl_json(&[
                    "-n",
                    ns,
                    "get",
                    "networkpolicy",
                    &name,
                    "--show-managed-fields",
                ])
                .ok())
        },
    )
}

fn policy_gone(cp: &ControlPlane, ns: &str, tool: &str, why: &str) -> Result<(), String> {
    let name = format!("mcp-warden-tool-{tool}");
    wait_for(why, Duration::from_secs(30), || {
        let out = cp.kubectl(&[
            "-n",
            ns,
            "get",
            "networkpolicy",
            "--ignore-not-found",
            &name,
        ])?;
        Ok(out.trim().is_empty().then_some(()))
    })
}

/// Every example McpTool with a selector has its NetworkPolicy; a scratch McpTool's policy
/// follows its selector and goes with it. (No CNI runs here: the policies are not enforced,
/// only their objects are checked.)
pub(crate) fn network_policies(cp: &ControlPlane) -> Result<(), String> {
    let mut problems = Vec::new();
    for (ns, tool) in [("demo", "everything"), ("payments", "payments-api")] {
        let policy = tool_policy(cp, ns, tool)?;
        let owner = cp.kubectl_json(&["-n", ns, "get", "mcptool", tool])?;
        let spec = &policy["spec"];
        let want = json!({
            "podSelector": owner["spec"]["server"]["selector"],
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": "mcp", "protocol": "TCP"}]},
                {"ports": [{"port": "mcpwarden-admin", "protocol": "TCP"}],
                 "from": [{"namespaceSelector": {"matchLabels":
                     {"kubernetes.io/metadata.name": NS}}}]},
            ],
        });
        if *spec != want {
            problems.push(format!("{ns}/{tool}: spec {spec}, expected {want}"));
        }
        let refs = &policy["metadata"]["ownerReferences"];
        if refs[0]["uid"] != owner["metadata"]["uid"] || refs[0]["kind"] != "McpTool" {
            problems.push(format!("{ns}/{tool}: owner references {refs}"));
        }
        let managers: Vec<&str> = policy["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        if managers != ["mcp-warden-operator"] {
            problems.push(format!("{ns}/{tool}: field managers {managers:?}"));
        }
    }
    let scratch = |selector: &str| {
        format!(
            "apiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {{name: scratch, namespace: demo}}\n\
             spec:\n  owner: test\n  server: {{{selector}resource: 'https://scratch.example/mcp'}}\n  \
             authentication: {{issuers: [{{issuer: 'https://idp.example'}}]}}\n"
        )
    };
    cp.apply(&scratch("selector: {matchLabels: {app: scratch}}, "))?;
    let policy = tool_policy(cp, "demo", "scratch")?;
    if policy["spec"]["podSelector"] != json!({"matchLabels": {"app": "scratch"}}) {
        problems.push(format!("demo/scratch: {}", policy["spec"]));
    }
    cp.kubectl(&[
        "-n",
        "demo",
        "patch",
        "mcptool",
        "scratch",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/server/selector"}]"#,
    ])?;
    policy_gone(
        cp,
        "demo",
        "scratch",
        "the operator to delete the policy of a tool without selector",
    )?;
    cp.apply(&scratch("selector: {matchLabels: {app: scratch}}, "))?;
    tool_policy(cp, "demo", "scratch")?;
    cp.kubectl(&["-n", "demo", "delete", "mcptool", "scratch"])?;
    policy_gone(
        cp,
        "demo",
        "scratch",
        "the garbage collector to delete the policy with its McpTool",
    )?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
