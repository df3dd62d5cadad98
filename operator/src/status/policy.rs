//! McpPolicy status: `Accepted` and `ResolvedRefs`.

use super::*;

/// The status of one McpPolicy: `ResolvedRefs` names every missing McpTool and McpClient;
/// `Accepted` is false when no referenced McpTool exists (the policy grants nothing).
pub fn policy_status(
    inventory: &Inventory,
    key: &Key,
    policy: &McpPolicy,
    now: Timestamp,
) -> McpPolicyStatus {
    let current = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = policy.metadata.generation;
    let ns = &key.0;
    let mut missing_tools: Vec<String> = policy
        .spec
        .tools
        .iter()
        .map(|g| &g.tool_ref)
        .filter(|t| !inventory.tools().contains_key(&(ns.clone(), (*t).clone())))
        .map(|t| format!("{ns}/{t}"))
        .collect();
    missing_tools.sort();
    missing_tools.dedup();
    let granted = granted_clients(inventory, ns, &policy.spec);
    let mut missing_clients = granted.missing.clone();
    missing_clients.sort();
    missing_clients.dedup();
    let resolved_tools = policy.spec.tools.len()
        - policy
            .spec
            .tools
            .iter()
            .filter(|g| missing_tools.contains(&format!("{ns}/{}", g.tool_ref)))
            .count();

    let mut problems = Vec::new();
    if !missing_tools.is_empty() {
        problems.push(format!("McpTool {} not found", missing_tools.join(", ")));
    }
    if !missing_clients.is_empty() {
        problems.push(format!(
            "McpClient {} not found",
            missing_clients.join(", ")
        ));
    }
    let reason = match (missing_tools.is_empty(), missing_clients.is_empty()) {
        (true, true) => "ResolvedRefs",
        (false, true) => "ToolNotFound",
        (true, false) => "ClientNotFound",
        (false, false) => "RefsNotFound",
    };
    let resolved = if problems.is_empty() {
        let selector_note = if policy.spec.client_selector.is_some() {
            format!(
                "; clientSelector and names grant {} McpClient(s)",
                granted.found.len()
            )
        } else {
            String::new()
        };
        condition(
            current,
            "ResolvedRefs",
            true,
            reason,
            format!("every referenced McpTool and McpClient exists{selector_note}"),
            generation,
            now,
        )
    } else {
        condition(
            current,
            "ResolvedRefs",
            false,
            reason,
            problems.join("; "),
            generation,
            now,
        )
    };
    let accepted = if resolved_tools == 0 {
        condition(
            current,
            "Accepted",
            false,
            "NoTools",
            "none of the McpTools this policy references exists, so it grants nothing",
            generation,
            now,
        )
    } else {
        let mode = match policy.spec.mode {
            PolicyMode::Enforce => "enforced",
            PolicyMode::Audit => {
                "in audit mode: it records what it would decide and grants nothing"
            }
        };
        condition(
            current,
            "Accepted",
            true,
            "Accepted",
            format!("the policy is {mode}"),
            generation,
            now,
        )
    };
    McpPolicyStatus {
        observed_generation: generation,
        conditions: vec![accepted, resolved],
    }
}
