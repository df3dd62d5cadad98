//! The McpClient status the leader writes, as `kubectl get mcpclients` prints it, and who wrote
//! it (the audit log).

use crate::{NS, SERVICE_ACCOUNT};
use jiff::Timestamp;
use mcp_warden_crds::McpClient;
use mcp_warden_tests::cluster::{ControlPlane, HostOperator, parse_table, wait_for};
use serde_json::Value;
use std::{collections::BTreeMap, time::Duration};

pub(crate) fn clients(cp: &ControlPlane) -> Result<Vec<McpClient>, String> {
    let list = cp.kubectl_json(&["get", "mcpclients", "-A"])?;
    list["items"]
        .as_array()
        .ok_or("no items")?
        .iter()
        .map(|i| serde_json::from_value(i.clone()).map_err(|e| e.to_string()))
        .collect()
}

pub(crate) fn key(c: &McpClient) -> (String, String) {
    (
        c.metadata.namespace.clone().unwrap_or_default(),
        c.metadata.name.clone().unwrap_or_default(),
    )
}

/// Status patches in the audit log since `from` (index), by token.
pub(crate) fn status_writers(cp: &ControlPlane, from: usize) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for e in cp.audit().iter().skip(from) {
        if e.verb == "patch" && e.resource.ends_with("/status") {
            *by.entry(e.credential.clone()).or_default() += 1;
        }
    }
    by
}

pub(crate) fn same_time(cell: &str, t: Option<Timestamp>) -> bool {
    match t {
        None => cell.is_empty(),
        Some(t) => cell.parse::<Timestamp>().is_ok_and(|c| c == t),
    }
}

/// Every McpClient's status is current, and the table shows it.
pub(crate) fn check_table(cp: &ControlPlane) -> Result<(), String> {
    let now = Timestamp::now();
    let clients = clients(cp)?;
    let by_key: BTreeMap<_, _> = clients.iter().map(|c| (key(c), c)).collect();
    for c in &clients {
        let status = c
            .status
            .as_ref()
            .ok_or(format!("{:?} has no status", key(c)))?;
        if status.observed_generation != c.metadata.generation {
            return Err(format!(
                "{:?}: status not of the current generation",
                key(c)
            ));
        }
    }
    let (headers, rows) = parse_table(&cp.kubectl(&["get", "mcpclients", "-A"])?);
    let want = [
        "NAMESPACE",
        "NAME",
        "OWNER",
        "PHASE",
        "EXPIRES",
        "REVIEW-DUE",
        "LAST-SEEN",
        "AGE",
    ];
    if headers != want {
        return Err(format!("kubectl get mcpclients -A columns: {headers:?}"));
    }
    if rows.len() != clients.len() {
        return Err(format!("{} rows for {} clients", rows.len(), clients.len()));
    }
    for row in &rows {
        let k = (row["NAMESPACE"].clone(), row["NAME"].clone());
        let c = by_key.get(&k).ok_or(format!("row {k:?} is no client"))?;
        let phase = format!("{:?}", mcp_warden_policy::lifecycle::phase(c, now));
        let checks = [
            ("OWNER", row["OWNER"] == c.spec.owner),
            ("PHASE", row["PHASE"] == phase),
            (
                "EXPIRES",
                same_time(&row["EXPIRES"], c.spec.expires_at.as_ref().map(|t| t.0)),
            ),
            (
                "REVIEW-DUE",
                same_time(
                    &row["REVIEW-DUE"],
                    mcp_warden_policy::lifecycle::review_due(c),
                ),
            ),
        ];
        for (col, ok) in checks {
            if !ok {
                return Err(format!(
                    "{k:?}: {col} is {:?}; from the spec: phase {phase}, expires {:?}, review due {:?}",
                    row[col],
                    c.spec.expires_at,
                    mcp_warden_policy::lifecycle::review_due(c)
                ));
            }
        }
    }
    let (wide, rows) = parse_table(&cp.kubectl(&["get", "mcpclients", "-A", "-o", "wide"])?);
    if wide[..7] != want[..7] || !wide.ends_with(&["TOOLS".to_owned(), "CALLS-24H".to_owned()]) {
        return Err(format!("-o wide columns: {wide:?}"));
    }
    for row in &rows {
        let k = (row["NAMESPACE"].clone(), row["NAME"].clone());
        let c = by_key[&k];
        let tools = serde_json::to_string(&c.status.as_ref().unwrap().effective_tools).unwrap();
        if row["TOOLS"] != tools && !(row["TOOLS"] == "[]" && tools == "[]") {
            return Err(format!("{k:?}: TOOLS {:?}, status {tools}", row["TOOLS"]));
        }
    }
    Ok(())
}

/// The operator's requests the API server refused (403), if any.
fn refused(cp: &ControlPlane) -> Option<String> {
    let user = format!("system:serviceaccount:{NS}:{SERVICE_ACCOUNT}");
    let refused: Vec<String> = cp
        .audit()
        .iter()
        .filter(|e| e.user == user && e.code == 403)
        .map(|e| {
            format!(
                "  {} {}/{} {}/{}",
                e.verb, e.group, e.resource, e.namespace, e.name
            )
        })
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "the API server refused the operator (403: the chart lacks a permission):\n{}",
            refused.join("\n")
        )
    })
}

pub(crate) fn status_columns(
    cp: &ControlPlane,
    a: &HostOperator,
    b: &HostOperator,
) -> Result<(), String> {
    // A refused request (a permission the chart lacks) fails at once, saying which.
    wait_for("every McpClient's status", Duration::from_secs(30), || {
        if let Some(refused) = refused(cp) {
            return Ok(Some(Err(refused)));
        }
        check_table(cp).map(|()| Some(Ok(())))
    })??;
    let writers = status_writers(cp, 0);
    if writers.keys().any(|w| *w != a.credential) || writers.is_empty() {
        return Err(format!(
            "status patches by token (leader {}): {writers:?}",
            a.credential
        ));
    }
    if b.metric("mcp_warden_operator_status_writes_total")? != 0.0 {
        return Err("the follower counts status writes".to_owned());
    }
    // The managed fields say who owns status.
    let list = cp.kubectl_json(&["get", "mcpclients", "-A", "--show-managed-fields"])?;
    for item in list["items"].as_array().into_iter().flatten() {
        let managers: Vec<&Value> = item["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["subresource"] == "status")
            .collect();
        if managers.len() != 1 || managers[0]["manager"] != "mcp-warden-operator" {
            return Err(format!(
                "status managers of {}: {managers:?}",
                item["metadata"]["name"]
            ));
        }
    }
    eprintln!("{}", cp.kubectl(&["get", "mcpclients", "-A"])?);
    eprintln!("status patches by the leader's token: {writers:?}");
    // The tools and policies too.
    let policies = cp.kubectl_json(&["get", "mcppolicies", "-A"])?;
    for p in policies["items"].as_array().into_iter().flatten() {
        let accepted = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True");
        if !accepted {
            return Err(format!(
                "policy {} not Accepted: {}",
                p["metadata"]["name"], p["status"]
            ));
        }
    }
    Ok(())
}
