//! Every mcp-warden object the operator (or a standalone file) knows, keyed by namespace/name.
//!
//! Mirrors the kubert index trait Linkerd uses: `apply`, `delete`, `reset` per kind, all
//! synchronous and pure. Watches (operator) or file loads (sidecar) feed it; `select` reads it.

use crate::resource::{DEFAULT_NAMESPACE, Kind, Resource};
use mcp_warden_crds::{McpClient, McpPolicy, McpTool};
use std::collections::BTreeMap;

/// `(namespace, name)`.
pub type Key = (String, String);

/// The known objects of each kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inventory {
    pub(crate) tools: BTreeMap<Key, McpTool>,
    pub(crate) clients: BTreeMap<Key, McpClient>,
    pub(crate) policies: BTreeMap<Key, McpPolicy>,
}

impl Inventory {
    /// An inventory holding `resources` (later duplicates replace earlier ones).
    pub fn from_resources(resources: impl IntoIterator<Item = Resource>) -> Self {
        let mut inventory = Self::default();
        for resource in resources {
            inventory.apply(resource);
        }
        inventory
    }

    /// Adds or replaces one object.
    pub fn apply(&mut self, resource: Resource) {
        match resource {
            Resource::Tool(o) => {
                self.tools.insert(key(&o.metadata), o);
            }
            Resource::Client(o) => {
                self.clients.insert(key(&o.metadata), o);
            }
            Resource::Policy(o) => {
                self.policies.insert(key(&o.metadata), o);
            }
        }
    }

    /// Removes one object; returns whether it was known.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> bool {
        let k = (namespace.to_owned(), name.to_owned());
        match kind {
            Kind::McpTool => self.tools.remove(&k).is_some(),
            Kind::McpClient => self.clients.remove(&k).is_some(),
            Kind::McpPolicy => self.policies.remove(&k).is_some(),
        }
    }

    /// Replaces every object of `kind` with `resources` (a watch re-list). Resources of other
    /// kinds in the list are ignored.
    pub fn reset(&mut self, kind: Kind, resources: impl IntoIterator<Item = Resource>) {
        match kind {
            Kind::McpTool => self.tools.clear(),
            Kind::McpClient => self.clients.clear(),
            Kind::McpPolicy => self.policies.clear(),
        }
        for resource in resources.into_iter().filter(|r| r.kind() == kind) {
            self.apply(resource);
        }
    }

    /// The McpTools, by key.
    pub fn tools(&self) -> &BTreeMap<Key, McpTool> {
        &self.tools
    }

    /// The McpClients, by key.
    pub fn clients(&self) -> &BTreeMap<Key, McpClient> {
        &self.clients
    }

    /// The McpPolicies, by key.
    pub fn policies(&self) -> &BTreeMap<Key, McpPolicy> {
        &self.policies
    }

    /// How many objects of each kind: `(tools, clients, policies)`.
    pub fn len(&self) -> (usize, usize, usize) {
        (self.tools.len(), self.clients.len(), self.policies.len())
    }

    /// Whether no object is known.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }
}

/// The key of an object (namespace `default` when unset, as with `kubectl apply`).
pub fn key(meta: &kube::core::ObjectMeta) -> Key {
    (
        meta.namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
        meta.name.clone().unwrap_or_default(),
    )
}
