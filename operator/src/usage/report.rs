//! A report's entries checked: malformed ones dropped (`validate`), and those outside the
//! reporting pod's bundle (`scope`).

use super::*;

/// Checks a report's envelope (namespace, pod, bootId, entry count): an error refuses the whole
/// report. Then drops each malformed entry (a client, runaway flag or tool list without a
/// bounded namespace and name, a client with a bad denial reason, tool name or entry pattern)
/// and keeps the
/// rest; returns how many were dropped.
pub fn validate(report: &mut UsageReport) -> Result<usize, String> {
    let name_ok = |s: &str| !s.is_empty() && s.len() <= 253;
    if !name_ok(&report.namespace) || !name_ok(&report.pod) {
        return Err("namespace and pod are required".into());
    }
    if report.boot_id.is_empty() || report.boot_id.len() > 128 {
        return Err("bootId is required (at most 128 characters)".into());
    }
    let tool_counts: usize = report
        .clients
        .iter()
        .map(|c| c.tools.len() + c.resources.len() + c.prompts.len())
        .sum();
    if report.clients.len() + report.runaway.len() + report.tools.len() + tool_counts > MAX_ENTRIES
    {
        return Err(format!("at most {MAX_ENTRIES} entries per report"));
    }
    let before = report.clients.len() + report.runaway.len() + report.tools.len();
    report.clients.retain(|c| {
        name_ok(&c.namespace)
            && name_ok(&c.name)
            && c.denials.keys().all(|r| !r.is_empty() && r.len() <= 64)
            && c.tools
                .keys()
                .all(|t| !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control))
            // Entry patterns: a name glob, or a URI pattern (as McpTool allows, ≤ 2048).
            && c.resources
                .keys()
                .chain(c.prompts.keys())
                .all(|p| !p.is_empty() && p.len() <= 2048 && !p.chars().any(char::is_control))
    });
    report
        .runaway
        .retain(|f| name_ok(&f.namespace) && name_ok(&f.name));
    report
        .tools
        .retain(|t| name_ok(&t.namespace) && name_ok(&t.name));
    let mut dropped = before - (report.clients.len() + report.runaway.len() + report.tools.len());
    let text_ok = |s: &str| s.len() <= 64 && !s.chars().any(char::is_control);
    if report.bypassable.as_ref().is_some_and(|b| {
        !name_ok(&b.namespace)
            || !name_ok(&b.name)
            || b.checked.len() > 16
            || b.reachable.len() > 16
            || !b.checked.iter().chain(&b.reachable).all(|a| text_ok(a))
            || b.not_checked.as_ref().is_some_and(|w| w.len() > 1024)
    }) {
        report.bypassable = None;
        dropped += 1;
    }
    Ok(dropped)
}

/// Drops the entries of `report` outside `bundle` (all of them without a bundle); returns how
/// many.
pub fn scope(report: &mut UsageReport, bundle: Option<&Bundle>) -> usize {
    let key = |m: &kube::api::ObjectMeta| {
        (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        )
    };
    let clients: BTreeSet<Key> = bundle
        .map(|b| b.clients.iter().map(|c| key(&c.metadata)).collect())
        .unwrap_or_default();
    let tools: BTreeSet<Key> = bundle
        .map(|b| b.tools.iter().map(|t| key(&t.metadata)).collect())
        .unwrap_or_default();
    let before = report.clients.len() + report.runaway.len() + report.tools.len();
    let known =
        |ns: &str, name: &str, set: &BTreeSet<Key>| set.contains(&(ns.to_owned(), name.to_owned()));
    report
        .clients
        .retain(|c| known(&c.namespace, &c.name, &clients));
    report
        .runaway
        .retain(|f| known(&f.namespace, &f.name, &clients));
    report
        .tools
        .retain(|t| known(&t.namespace, &t.name, &tools));
    let mut dropped = before - (report.clients.len() + report.runaway.len() + report.tools.len());
    if report
        .bypassable
        .as_ref()
        .is_some_and(|b| !known(&b.namespace, &b.name, &tools))
    {
        report.bypassable = None;
        dropped += 1;
    }
    dropped
}
