//! The operator-scale inventory (issue #6): 10,000 McpClients, 1,000 McpTools, 2,000 McpPolicies
//! as CR files for `mcp-warden-operator run --source files:<dir>`.
//!
//! ```text
//! <dir>/tools.yaml            1,000 McpTools in 50 namespaces (tools-NN), selector app=tool-NNNN
//! <dir>/clients-NN.yaml       10 files × 1,000 McpClients (agents-NN/cNNNN)
//! <dir>/policies.yaml         2,000 McpPolicies: policy j → tool j % 1,000, 5 clients each
//! ```
//!
//! The probed pod is `tools-00/tool-0000-0` (labels `app=tool-0000`); the changed client is
//! `agents-00/c0000`, granted tool-0000 by policy 0, so each change reaches that pod.

use std::fmt::Write as _;

/// McpTools.
pub const TOOLS: usize = 1_000;
/// McpClients.
pub const CLIENTS: usize = 10_000;
/// McpPolicies.
pub const POLICIES: usize = 2_000;
const TOOL_NAMESPACES: usize = 50;
const CLIENT_FILES: usize = 10;
/// Clients per file (and per namespace).
pub const CLIENTS_PER_FILE: usize = CLIENTS / CLIENT_FILES;

fn tool_ns(t: usize) -> String {
    format!("tools-{:02}", t % TOOL_NAMESPACES)
}

/// Every McpTool.
pub fn tools_yaml() -> String {
    let mut out = String::new();
    for t in 0..TOOLS {
        let _ = write!(
            out,
            "---\napiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {{name: tool-{t:04}, namespace: {ns}}}\nspec:\n  owner: team-{team}\n  server:\n    selector: {{matchLabels: {{app: tool-{t:04}}}}}\n    resource: \"https://tool-{t:04}.example/mcp\"\n    upstream: \"http://127.0.0.1:8080/mcp\"\n  authentication: {{issuers: [{{issuer: \"https://idp.example\"}}]}}\n  tools: [{{name: \"get_*\", scopes: [read]}}, {{name: \"set_*\", scopes: [write]}}]\n",
            ns = tool_ns(t),
            team = t % 40
        );
    }
    out
}

/// The McpClients of file `f` (namespace `agents-f`); `suspend_first` suspends `c{first}`.
pub fn clients_yaml(f: usize, suspend_first: bool) -> String {
    let mut out = String::new();
    for i in f * CLIENTS_PER_FILE..(f + 1) * CLIENTS_PER_FILE {
        let suspended = suspend_first && i == f * CLIENTS_PER_FILE;
        let _ = write!(
            out,
            "---\napiVersion: mcpwarden.io/v1alpha1\nkind: McpClient\nmetadata: {{name: c{i:04}, namespace: agents-{f:02}, labels: {{team: t{team}}}}}\nspec:\n  owner: owner-{i}@example.com\n  identity: {{issuer: \"https://idp.example\", clientId: c{i:04}}}\n  suspended: {suspended}\n",
            team = i % 20
        );
    }
    out
}

/// Every McpPolicy.
pub fn policies_yaml() -> String {
    let mut out = String::new();
    for j in 0..POLICIES {
        let t = j % TOOLS;
        let clients = (0..5)
            .map(|k| {
                let c = (j * 5 + k * 997) % CLIENTS;
                format!(
                    "{{name: c{c:04}, namespace: agents-{:02}}}",
                    c / CLIENTS_PER_FILE
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            out,
            "---\napiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {{name: policy-{j:04}, namespace: {ns}}}\nspec:\n  clients: [{clients}]\n  tools: [{{toolRef: tool-{t:04}, names: [\"get_*\"]}}]\n",
            ns = tool_ns(t)
        );
    }
    out
}

/// Writes the inventory into `dir`.
pub fn write(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("tools.yaml"), tools_yaml())?;
    for f in 0..CLIENT_FILES {
        std::fs::write(
            dir.join(format!("clients-{f:02}.yaml")),
            clients_yaml(f, false),
        )?;
    }
    std::fs::write(dir.join("policies.yaml"), policies_yaml())
}
