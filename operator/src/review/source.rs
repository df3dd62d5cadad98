//! Where a review's objects come from: the cluster, or CR files plus a status snapshot.
//!
//! ```text
//! cluster: list McpTool + McpPolicy (all namespaces: grants cross namespaces)
//!          list McpClient (--namespace, or all)                    ──► Inventory with status
//! files:   files::read_paths (policy::load: schema + CEL, as the sidecar)
//!          + snapshot (`kubectl get mcpclients -o yaml`: a List, or one object; JSON too)
//!            each item's .status applied to the object of the same kind/namespace/name
//! ```

use super::ReviewError;
use crate::files;
use kube::{Api, Client, api::ListParams};
use mcp_warden_crds::{McpClient, McpClientStatus, McpPolicy, McpTool, McpToolStatus};
use mcp_warden_policy::{DEFAULT_NAMESPACE, Inventory, Resource};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Lists the three kinds through the API, with the caller's credentials.
pub async fn from_cluster(
    client: &Client,
    namespace: Option<&str>,
) -> Result<Inventory, ReviewError> {
    let lp = ListParams::default();
    let hint = |what: &'static str| {
        move |e: kube::Error| match e {
            kube::Error::Api(s) if s.code == 403 => ReviewError::Usage(format!(
                "not allowed to list {what}: the report needs list on mcptools and mcppolicies in \
                 every namespace and on the mcpclients reviewed ({})",
                s.message
            )),
            e => e.into(),
        }
    };
    let tools = Api::<McpTool>::all(client.clone())
        .list(&lp)
        .await
        .map_err(hint("McpTools"))?;
    let policies = Api::<McpPolicy>::all(client.clone())
        .list(&lp)
        .await
        .map_err(hint("McpPolicies"))?;
    let clients = match namespace {
        Some(ns) => Api::<McpClient>::namespaced(client.clone(), ns),
        None => Api::<McpClient>::all(client.clone()),
    }
    .list(&lp)
    .await
    .map_err(hint("McpClients"))?;
    Ok(Inventory::from_resources(
        tools
            .items
            .into_iter()
            .map(Resource::Tool)
            .chain(policies.items.into_iter().map(Resource::Policy))
            .chain(clients.items.into_iter().map(Resource::Client)),
    ))
}

/// Loads CR files and folders, then applies the statuses of `snapshot`. Returns the inventory
/// and the snapshot items that match no loaded object (as warnings).
pub fn from_files(
    paths: &[PathBuf],
    snapshot: Option<&Path>,
) -> Result<(Inventory, Vec<String>), ReviewError> {
    let mut inventory = files::read_paths(paths).map_err(ReviewError::Files)?;
    let mut unmatched = Vec::new();
    if let Some(path) = snapshot {
        let text = std::fs::read_to_string(path).map_err(|e| ReviewError::Snapshot {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        unmatched =
            apply_snapshot(&mut inventory, &text).map_err(|message| ReviewError::Snapshot {
                path: path.display().to_string(),
                message,
            })?;
    }
    Ok((inventory, unmatched))
}

/// Applies the `.status` of every item of a snapshot (YAML or JSON; a `List` or one object).
/// Items of other kinds, or without a status, are skipped; items naming no known object are
/// returned.
pub fn apply_snapshot(inventory: &mut Inventory, text: &str) -> Result<Vec<String>, String> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let items: Vec<Value> = match doc.get("items") {
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err("`items` must be a list".into()),
        None => vec![doc],
    };
    let mut unmatched = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("McpClient");
        let meta = item.get("metadata");
        let field = |f: &str| meta.and_then(|m| m.get(f)).and_then(Value::as_str);
        let Some(name) = field("name") else {
            return Err(format!("items[{i}]: metadata.name is missing"));
        };
        let key = (
            field("namespace").unwrap_or(DEFAULT_NAMESPACE).to_owned(),
            name.to_owned(),
        );
        let Some(status) = item.get("status").filter(|s| !s.is_null()) else {
            continue;
        };
        let bad =
            |e: serde_json::Error| format!("items[{i}] ({kind} {}/{}): status: {e}", key.0, key.1);
        let applied = match kind {
            "McpClient" => {
                let status: McpClientStatus =
                    serde_json::from_value(status.clone()).map_err(bad)?;
                inventory.clients().get(&key).cloned().map(|mut o| {
                    o.status = Some(status);
                    Resource::Client(o)
                })
            }
            "McpTool" => {
                let status: McpToolStatus = serde_json::from_value(status.clone()).map_err(bad)?;
                inventory.tools().get(&key).cloned().map(|mut o| {
                    o.status = Some(status);
                    Resource::Tool(o)
                })
            }
            _ => continue,
        };
        match applied {
            Some(r) => inventory.apply(r),
            None => unmatched.push(format!(
                "the status snapshot has {kind} {}/{}, which no CR file declares",
                key.0, key.1
            )),
        }
    }
    Ok(unmatched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_snapshot_is_refused_with_the_item_named() {
        let mut inventory = Inventory::default();
        let err = apply_snapshot(
            &mut inventory,
            "items:\n- {kind: McpClient, metadata: {name: bot, namespace: agents}, status: {calls24h: many}}\n",
        )
        .expect_err("a string is no count");
        assert!(
            err.starts_with("items[0] (McpClient agents/bot): status: "),
            "{err}"
        );
        let err = apply_snapshot(&mut inventory, "items: {}").expect_err("not a list");
        assert!(err.contains("`items` must be a list"), "{err}");
        let err = apply_snapshot(&mut inventory, "- [unclosed").expect_err("not YAML");
        assert!(err.starts_with("not YAML or JSON"), "{err}");
        let unmatched = apply_snapshot(
            &mut inventory,
            "{kind: McpClient, metadata: {name: ghost, namespace: agents}, status: {calls24h: 1}}",
        )
        .expect("one object is fine");
        assert_eq!(
            unmatched,
            vec!["the status snapshot has McpClient agents/ghost, which no CR file declares"]
        );
    }
}
