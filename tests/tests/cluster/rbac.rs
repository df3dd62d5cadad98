//! The chart's RBAC against what the operator did: nothing refused, nothing granted unused.

use crate::{DEPLOYMENT, NS, SERVICE_ACCOUNT};
use mcp_warden_tests::cluster::{AuditEvent, ControlPlane, HostOperator};
use std::collections::BTreeSet;

pub(crate) fn rbac(cp: &ControlPlane, operators: &[HostOperator]) -> Result<(), String> {
    let user = format!("system:serviceaccount:{NS}:{SERVICE_ACCOUNT}");
    let events: Vec<AuditEvent> = cp.audit().into_iter().filter(|e| e.user == user).collect();
    let refused: Vec<&AuditEvent> = events.iter().filter(|e| e.code == 403).collect();
    let mut problems = Vec::new();
    if !refused.is_empty() {
        problems.push(format!(
            "the API server refused the operator (403, missing permission):\n{}",
            refused
                .iter()
                .map(|e| format!(
                    "  {} {}/{} {}/{}",
                    e.verb, e.group, e.resource, e.namespace, e.name
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    for op in operators {
        let warnings: Vec<String> = op
            .proc
            .log()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(str::to_owned)
            .collect();
        if !warnings.is_empty() {
            eprintln!("operator {} warned:\n{}", op.identity, warnings.join("\n"));
        }
        let log = op.proc.log().to_lowercase();
        if log.contains("forbidden") || log.contains(" 403") || log.contains("code: 403") {
            problems.push(format!(
                "operator {} logged a refusal:\n{}",
                op.identity,
                op.proc.log()
            ));
        }
    }
    // What the operator used, against what the chart grants.
    // A server-side apply that creates its object (201) is authorized as `create` as well.
    let used: BTreeSet<(String, String, String)> = events
        .iter()
        .flat_map(|e| {
            let created = (e.verb == "patch" && e.code == 201).then_some("create");
            [Some(e.verb.as_str()), created]
                .into_iter()
                .flatten()
                .map(|v| (e.group.clone(), e.resource.clone(), v.to_owned()))
        })
        .collect();
    let mut granted = Vec::new();
    let role = cp.kubectl_json(&["-n", NS, "get", "role", DEPLOYMENT])?;
    let cluster_role = cp.kubectl_json(&["get", "clusterrole", &format!("{DEPLOYMENT}-{NS}")])?;
    for (scope, r) in [("Role", &role), ("ClusterRole", &cluster_role)] {
        for rule in r["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().into_iter().flatten() {
                for res in rule["resources"].as_array().into_iter().flatten() {
                    for v in rule["verbs"].as_array().into_iter().flatten() {
                        granted.push((
                            scope,
                            g.as_str().unwrap_or_default().to_owned(),
                            res.as_str().unwrap_or_default().to_owned(),
                            v.as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    let unused: Vec<String> = granted
        .iter()
        .filter(|(_, g, r, v)| !used.contains(&(g.clone(), r.clone(), v.clone())))
        .map(|(s, g, r, v)| format!("{s}: {v} {g}/{r}"))
        .collect();
    eprintln!(
        "the operator's requests ({}): {:?}\ngranted but never used: {unused:?}",
        events.len(),
        used
    );
    if !unused.is_empty() {
        problems.push(format!(
            "the chart grants what the operator never used: {unused:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
