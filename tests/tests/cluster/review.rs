//! `mcp-warden-operator review` as a person with the RBAC docs/access-reviews.md documents.

use crate::status::{clients, key, same_time};
use jiff::Timestamp;
use mcp_warden_crds::McpClient;
use mcp_warden_tests::cluster::{AuditEvent, ControlPlane, parse_table, run_bounded, wait_for};
use serde_json::{Value, json};
use std::time::Duration;

/// `mcp-warden-operator review <args>` with `kubeconfig`; stdout.
fn review_cli(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let bin = mcp_warden_tests::cluster::operator_bin()?;
    let mut cmd = std::process::Command::new(bin);
    for v in mcp_warden_tests::cluster::PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg("review")
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(60))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "review {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn report_entry(report: &Value, ns: &str, name: &str) -> Result<Value, String> {
    report["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["namespace"] == ns && c["name"] == name)
        .cloned()
        .ok_or(format!("the report has no {ns}/{name}"))
}

/// A person reviews, with exactly the RBAC docs/access-reviews.md says the commands need (list
/// mcptools and mcppolicies cluster-wide; list, get and patch mcpclients), as a ServiceAccount
/// token so the audit log names them.
pub(crate) fn review(cp: &ControlPlane, seen: Timestamp) -> Result<(), String> {
    cp.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reviewer, namespace: default}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: mcp-warden-reviewer}\n\
         rules:\n- apiGroups: [mcpwarden.io]\n  resources: [mcptools, mcppolicies]\n  verbs: [list]\n\
         - apiGroups: [mcpwarden.io]\n  resources: [mcpclients]\n  verbs: [list, get, patch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
         metadata: {name: mcp-warden-reviewer}\nroleRef: {apiGroup: rbac.authorization.k8s.io, \
         kind: ClusterRole, name: mcp-warden-reviewer}\nsubjects:\n\
         - {kind: ServiceAccount, name: reviewer, namespace: default}\n",
    )?;
    let kubeconfig = cp.dir.join("reviewer.kubeconfig");
    cp.service_account_kubeconfig("default", "reviewer", &kubeconfig)?;
    let report: Value =
        serde_json::from_str(&review_cli(&kubeconfig, &["report", "--format", "json"])?)
            .map_err(|e| format!("review report --format json: {e}"))?;
    if report["problems"] != json!([]) {
        return Err(format!("the report has problems: {}", report["problems"]));
    }
    // The report says what kubectl get says, for every client.
    for c in clients(cp)? {
        let (ns, name) = key(&c);
        let entry = report_entry(&report, &ns, &name)?;
        let status = c.status.clone().unwrap_or_default();
        let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let same = |field: &str, t: Option<Timestamp>| {
            entry[field]
                .as_str()
                .and_then(|v| v.parse::<Timestamp>().ok())
                == t
        };
        if entry["phase"] != json!(phase)
            || !same("reviewDue", status.review_due.as_ref().map(|t| t.0))
            || !same("lastSeen", status.last_seen.as_ref().map(|t| t.0))
        {
            return Err(format!("report entry {entry} vs status {status:?}"));
        }
    }
    // lastSeen survived the leader handover (the new leader keeps it in status).
    let alpha = report_entry(&report, "demo", "agent-alpha")?;
    if alpha["lastSeen"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t.as_second())
        != Some(seen.as_second())
    {
        return Err(format!(
            "agent-alpha's lastSeen after the handover: {}",
            alpha["lastSeen"]
        ));
    }
    let finance = report_entry(&report, "agents", "finance-agent")?;
    let overdue = finance["phase"] == "ReviewOverdue";
    if overdue
        != finance["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f == "review-overdue")
    {
        return Err(format!(
            "finance-agent: phase and flags disagree: {finance}"
        ));
    }
    // Approve: spec.review moves, the operator moves REVIEW-DUE and the phase.
    let audit_from = cp.audit().len();
    review_cli(
        &kubeconfig,
        &[
            "approve",
            "agents/finance-agent",
            "--by",
            "alice@example.com",
        ],
    )?;
    let c = cp.kubectl_json(&["-n", "agents", "get", "mcpclient", "finance-agent"])?;
    let client: McpClient = serde_json::from_value(c.clone()).map_err(|e| e.to_string())?;
    let review = client
        .spec
        .review
        .clone()
        .ok_or("finance-agent lost spec.review")?;
    if review.last_reviewed_by.as_deref() != Some("alice@example.com") {
        return Err(format!("spec.review after approve: {review:?}"));
    }
    let due = mcp_warden_policy::lifecycle::review_due(&client);
    let row = wait_for(
        "finance-agent's new REVIEW-DUE",
        Duration::from_secs(20),
        || {
            let (_, rows) = parse_table(&cp.kubectl(&["-n", "agents", "get", "mcpclients"])?);
            Ok(rows
                .into_iter()
                .find(|r| r["NAME"] == "finance-agent")
                .filter(|r| same_time(&r["REVIEW-DUE"], due)))
        },
    )?;
    let want = format!(
        "{:?}",
        mcp_warden_policy::lifecycle::phase(&client, Timestamp::now())
    );
    if row["PHASE"] != want || want == "ReviewOverdue" {
        return Err(format!(
            "finance-agent after approve: {row:?} (want {want})"
        ));
    }
    let patched_by: Vec<AuditEvent> = cp
        .audit()
        .into_iter()
        .skip(audit_from)
        .filter(|e| e.verb == "patch" && e.resource == "mcpclients")
        .collect();
    if patched_by.len() != 1 || patched_by[0].user != "system:serviceaccount:default:reviewer" {
        return Err(format!(
            "the approval's patch in the audit log: {patched_by:?}"
        ));
    }
    let after: Value =
        serde_json::from_str(&review_cli(&kubeconfig, &["report", "--format", "json"])?)
            .map_err(|e| e.to_string())?;
    let finance = report_entry(&after, "agents", "finance-agent")?;
    if finance["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f == "review-overdue")
        || finance["lastReviewedBy"] != "alice@example.com"
    {
        return Err(format!("the report after approve: {finance}"));
    }
    eprintln!(
        "review approve: finance-agent {} -> {} (REVIEW-DUE {})",
        if overdue {
            "ReviewOverdue"
        } else {
            "not overdue"
        },
        row["PHASE"],
        row["REVIEW-DUE"]
    );
    Ok(())
}
