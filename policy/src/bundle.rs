//! `Bundle`: the CRs that apply to one workload, with a content-hash version.
//!
//! The version depends only on what the objects say (not on document order, resourceVersion,
//! managed fields or status), so every operator replica, and a sidecar reading the same CRs from
//! a file, agree on it.

use crate::{
    inventory::{Inventory, Key, key},
    selector,
};
use mcp_warden_crds::{McpClient, McpPolicy, McpPolicySpec, McpTool};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    borrow::Borrow,
    collections::{BTreeMap, BTreeSet},
    io,
};

/// The CRs relevant to one workload: its McpTool(s), the policies that reference them, and the
/// clients those policies grant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// `sha256:<hex>` of the normalized content.
    pub version: String,
    /// The McpTools, sorted by namespace/name.
    pub tools: Vec<McpTool>,
    /// The McpClients, sorted by namespace/name.
    pub clients: Vec<McpClient>,
    /// The McpPolicies, sorted by namespace/name.
    pub policies: Vec<McpPolicy>,
}

/// A pod (or a standalone sidecar) asking which CRs govern it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
}

impl Bundle {
    /// Builds a bundle, normalizing and sorting the objects and computing the version.
    pub fn new(
        tools: impl IntoIterator<Item = McpTool>,
        clients: impl IntoIterator<Item = McpClient>,
        policies: impl IntoIterator<Item = McpPolicy>,
    ) -> Self {
        let mut bundle = Self {
            version: String::new(),
            tools: normalized(tools),
            clients: normalized(clients),
            policies: normalized(policies),
        };
        // Hash the JSON as it is written: the same bytes as `to_vec`, without holding them all.
        let mut hasher = HashWriter(Sha256::new());
        serde_json::to_writer(
            &mut hasher,
            &(&bundle.tools, &bundle.clients, &bundle.policies),
        )
        .expect("CRs serialize to JSON");
        bundle.version = format!("sha256:{}", hex::encode(hasher.0.finalize()));
        bundle
    }

    /// Whether the bundle governs nothing (no McpTool).
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// An `io::Write` feeding a SHA-256.
struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Drops what differs between copies of the same object (status, resourceVersion, uid, managed
/// fields, kubectl's last-applied annotation) and sorts by namespace/name.
fn normalized<T>(items: impl IntoIterator<Item = T>) -> Vec<T>
where
    T: kube::Resource + HasStatus,
{
    let mut items: Vec<T> = items
        .into_iter()
        .map(|mut o| {
            o.clear_status();
            let meta = o.meta_mut();
            meta.resource_version = None;
            meta.uid = None;
            meta.managed_fields = None;
            meta.generation = None;
            meta.self_link = None;
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                if annotations.is_empty() {
                    meta.annotations = None;
                }
            }
            if meta.namespace.is_none() {
                meta.namespace = Some(crate::DEFAULT_NAMESPACE.to_owned());
            }
            o
        })
        .collect();
    items.sort_by_key(|o| key(o.meta()));
    items
}

/// The CR kinds' status, which never enters a bundle.
trait HasStatus {
    fn clear_status(&mut self);
}

macro_rules! has_status {
    ($($t:ty),*) => {$(impl HasStatus for $t { fn clear_status(&mut self) { self.status = None; } })*};
}
has_status!(McpTool, McpClient, McpPolicy);

/// The bundle for a pod: the McpTools in its namespace whose `server.selector` matches its
/// labels, and everything that applies to them.
pub fn select(inventory: &Inventory, workload: &Workload) -> Bundle {
    let tools: Vec<Key> = inventory
        .tools
        .iter()
        .filter(|((ns, _), tool)| {
            *ns == workload.namespace
                && tool
                    .spec
                    .server
                    .selector
                    .as_ref()
                    .is_some_and(|s| selector::matches(s, &workload.labels))
        })
        .map(|(k, _)| k.clone())
        .collect();
    bundle_for_tools(inventory, &tools)
}

/// The bundle for the given McpTools: those tools, the policies in their namespace that reference
/// them, and the clients those policies grant.
pub fn bundle_for_tools(inventory: &Inventory, tools: &[Key]) -> Bundle {
    let wanted: BTreeSet<&Key> = tools.iter().collect();
    let policies: Vec<(&Key, &McpPolicy)> = inventory
        .policies
        .iter()
        .filter(|((ns, _), p)| {
            p.spec
                .tools
                .iter()
                .any(|g| wanted.contains(&(ns.clone(), g.tool_ref.clone())))
        })
        .collect();
    let mut clients = BTreeSet::new();
    for ((ns, _), policy) in &policies {
        clients.extend(granted_clients(inventory, ns, &policy.spec).found);
    }
    Bundle::new(
        tools.iter().filter_map(|k| inventory.tools.get(k).cloned()),
        clients
            .iter()
            .filter_map(|k| inventory.clients.get(k).cloned()),
        policies.into_iter().map(|(_, p)| p.clone()),
    )
}

/// The clients a policy names, and the names it refers to that do not exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantedClients {
    /// Keys of existing McpClients the policy grants.
    pub found: BTreeSet<Key>,
    /// `namespace/name` of McpClients named in `clients` that do not exist.
    pub missing: Vec<String>,
}

/// Resolves a policy's `clients` and `clientSelector` against the inventory's McpClients.
/// Cost: one lookup per named client, one scan per selected namespace.
pub fn granted_clients(
    inventory: &Inventory,
    policy_ns: &str,
    spec: &McpPolicySpec,
) -> GrantedClients {
    granted_clients_in(&inventory.clients, policy_ns, spec)
}

/// [`granted_clients`] against any map of McpClients by key (owned, or borrowed from a bundle).
pub(crate) fn granted_clients_in<C: Borrow<McpClient>>(
    clients: &BTreeMap<Key, C>,
    policy_ns: &str,
    spec: &McpPolicySpec,
) -> GrantedClients {
    let mut granted = GrantedClients::default();
    for r in &spec.clients {
        let k = (
            r.namespace.clone().unwrap_or_else(|| policy_ns.to_owned()),
            r.name.clone(),
        );
        if clients.contains_key(&k) {
            granted.found.insert(k);
        } else {
            granted.missing.push(format!("{}/{}", k.0, k.1));
        }
    }
    if let Some(sel) = &spec.client_selector {
        let namespaces: Vec<&str> = if sel.namespaces.is_empty() {
            vec![policy_ns]
        } else {
            sel.namespaces.iter().map(String::as_str).collect()
        };
        let in_scope = |ns: &str| namespaces.iter().any(|n| *n == "*" || *n == ns);
        let candidates: Box<dyn Iterator<Item = (&Key, &C)>> = if namespaces.contains(&"*") {
            Box::new(clients.iter())
        } else {
            Box::new(namespaces.iter().flat_map(|ns| {
                clients
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
            }))
        };
        let empty = BTreeMap::new();
        for (k, client) in candidates {
            let labels = client.borrow().metadata.labels.as_ref().unwrap_or(&empty);
            if in_scope(&k.0) && selector::matches(&sel.selector, labels) {
                granted.found.insert(k.clone());
            }
        }
    }
    granted
}
