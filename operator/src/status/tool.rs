//! McpTool status: governed pods, tools seen and undeclared, `Ready`, `Bypassable`.

use super::*;

/// The `Bypassable` condition of an McpTool from its pods' latest bypass checks.
pub fn bypass_condition(
    current: &[Condition],
    reports: &[(PodKey, BypassReport)],
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let cond = |status: Option<bool>, reason: &str, message: String| {
        let mut c = condition(
            current,
            "Bypassable",
            status.unwrap_or(false),
            reason,
            message,
            generation,
            now,
        );
        if status.is_none() {
            c.status = "Unknown".into();
            c.last_transition_time = current
                .iter()
                .find(|c| c.type_ == "Bypassable" && c.status == "Unknown")
                .map_or_else(|| time(now), |c| c.last_transition_time.clone());
        }
        c
    };
    let reachable: Vec<String> = reports
        .iter()
        .filter(|(_, r)| !r.reachable.is_empty())
        .map(|((ns, pod), r)| format!("pod {ns}/{pod} at {}", r.reachable.join(", ")))
        .collect();
    let checked = reports
        .iter()
        .filter(|(_, r)| r.not_checked.is_none())
        .count();
    if !reachable.is_empty() {
        let mut shown = reachable[..reachable.len().min(3)].join("; ");
        if reachable.len() > 3 {
            shown.push_str(&format!(" (and {} more pods)", reachable.len() - 3));
        }
        cond(
            Some(true),
            "UpstreamReachable",
            format!(
                "the MCP server answers without the sidecar: {shown}; bind it to 127.0.0.1 or let a NetworkPolicy admit only the sidecar's port"
            ),
        )
    } else if checked > 0 {
        cond(
            Some(false),
            "LoopbackOnly",
            format!("the MCP server answers on loopback only in the {checked} pod(s) that checked"),
        )
    } else if let Some(((ns, pod), r)) = reports.first() {
        let why = r.not_checked.clone().unwrap_or_default();
        cond(None, "NotChecked", format!("pod {ns}/{pod}: {why}"))
    } else {
        cond(
            None,
            "NotReported",
            "no sidecar has reported a bypass check in the last 10 minutes".into(),
        )
    }
}

/// The status of one McpTool: pods its selector matches (in its namespace), the tools its
/// upstreams list (from usage reports), the ones `spec.tools` does not declare, whether its
/// upstream can be reached around the sidecar.
pub fn tool_status(
    key: &Key,
    tool: &McpTool,
    pods: &Pods,
    seen: Option<&BTreeSet<String>>,
    bypass: Option<&[(PodKey, BypassReport)]>,
    now: Timestamp,
) -> McpToolStatus {
    let current = tool
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = tool.metadata.generation;
    let governed = tool.spec.server.selector.as_ref().map(|sel| {
        pods.range((key.0.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == key.0)
            .filter(|(_, labels)| selector::matches(sel, labels))
            .count()
    });
    let tools_seen: Vec<String> = seen
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    let declared: Vec<Glob> = tool
        .spec
        .tools
        .iter()
        .map(|t| Glob::new(t.name.clone()))
        .collect();
    let undeclared: Vec<String> = tools_seen
        .iter()
        .filter(|name| !declared.iter().any(|g| g.matches(name)))
        .cloned()
        .collect();
    let ready = match governed {
        None => condition(
            current,
            "Ready",
            false,
            "NoSelector",
            "spec.server.selector is not set, so no pod is governed (standalone mode only)",
            generation,
            now,
        ),
        Some(0) => condition(
            current,
            "Ready",
            false,
            "NoPods",
            "no pod matches spec.server.selector",
            generation,
            now,
        ),
        Some(n) => {
            let note = if undeclared.is_empty() {
                String::new()
            } else {
                let action = match tool.spec.default_action {
                    DefaultAction::Deny => "hidden by defaultAction Deny",
                    DefaultAction::Allow => "allowed by defaultAction Allow",
                };
                format!("; {} undeclared tool(s) {action}", undeclared.len())
            };
            condition(
                current,
                "Ready",
                true,
                "Governed",
                format!("{n} pod(s) governed{note}"),
                generation,
                now,
            )
        }
    };
    let bypassable = bypass_condition(current, bypass.unwrap_or_default(), generation, now);
    McpToolStatus {
        observed_generation: generation,
        conditions: vec![ready, bypassable],
        governed_pods: Some(i32::try_from(governed.unwrap_or(0)).unwrap_or(i32::MAX)),
        tools_seen,
        undeclared_tools: undeclared,
    }
}
