//! The operator's index: every CR and every governed pod, and one bundle channel per connected
//! sidecar.
//!
//! ```text
//! watch events / file loads ──apply/delete/reset──► Index { Inventory, pods }
//!                                                     │ republish(): for each subscribed pod
//!                                                     │   select(inventory, pod) → Bundle
//!                                                     ▼   send only when the version changed
//!                               watch::Sender<Option<Arc<Bundle>>> per (namespace, pod) ──► push stream
//! ```
//!
//! Pure bookkeeping under a lock; no I/O. Every operator replica builds the same bundles from the
//! same CRs (the version is a content hash), so sidecars may connect to any replica.

use mcp_warden_policy::{Bundle, Inventory, Kind, Resource, Workload, select};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

/// `(namespace, pod name)`.
pub type PodKey = (String, String);

/// The latest bundle for one pod (`None`: nothing governs it yet).
pub type BundleRx = watch::Receiver<Option<Arc<Bundle>>>;

/// Shared index: cheap to clone, synchronised internally.
#[derive(Clone, Debug, Default)]
pub struct Index {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    inventory: Inventory,
    /// Pods known from the cluster (labels), by key.
    pods: BTreeMap<PodKey, BTreeMap<String, String>>,
    /// Channels of pods with a connected sidecar.
    subscribers: HashMap<PodKey, watch::Sender<Option<Arc<Bundle>>>>,
}

impl Index {
    /// Runs `f` on the inventory, then republishes every subscribed pod's bundle.
    pub fn update(&self, f: impl FnOnce(&mut Inventory)) {
        let mut inner = self.inner.lock().expect("index lock");
        f(&mut inner.inventory);
        inner.republish();
    }

    /// Adds or replaces one CR.
    pub fn apply(&self, resource: Resource) {
        self.update(|inv| inv.apply(resource));
    }

    /// Removes one CR.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) {
        self.update(|inv| {
            inv.delete(kind, namespace, name);
        });
    }

    /// Replaces every CR (a file reload, or the initial list of all kinds).
    pub fn replace_all(&self, inventory: Inventory) {
        self.update(|inv| *inv = inventory);
    }

    /// Records a pod's labels (from a Pod watch).
    pub fn apply_pod(&self, namespace: &str, name: &str, labels: BTreeMap<String, String>) {
        let mut inner = self.inner.lock().expect("index lock");
        let key = (namespace.to_owned(), name.to_owned());
        if inner.pods.get(&key) != Some(&labels) {
            inner.pods.insert(key.clone(), labels);
            inner.republish_pod(&key);
        }
    }

    /// Forgets a pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut inner = self.inner.lock().expect("index lock");
        let key = (namespace.to_owned(), name.to_owned());
        inner.pods.remove(&key);
        inner.republish_pod(&key);
    }

    /// The bundle channel of a pod. `labels` stand in for the Pod's own labels when the pod is not
    /// known from the cluster (the `--source files` mode).
    pub fn subscribe(&self, namespace: &str, pod: &str, labels: Option<BTreeMap<String, String>>) -> BundleRx {
        let mut inner = self.inner.lock().expect("index lock");
        let key = (namespace.to_owned(), pod.to_owned());
        if let Some(labels) = labels {
            inner.pods.entry(key.clone()).or_insert(labels);
        }
        if let Some(tx) = inner.subscribers.get(&key) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        inner.subscribers.insert(key.clone(), tx);
        inner.republish_pod(&key);
        rx
    }

    /// Drops channels nobody listens to any more.
    pub fn prune(&self) {
        let mut inner = self.inner.lock().expect("index lock");
        inner.subscribers.retain(|_, tx| tx.receiver_count() > 0);
    }

    /// How many objects of each kind, and how many pods have a connected sidecar.
    pub fn counts(&self) -> ((usize, usize, usize), usize) {
        let inner = self.inner.lock().expect("index lock");
        (inner.inventory.len(), inner.subscribers.len())
    }

    /// A copy of the inventory (for status computation and reports).
    pub fn inventory(&self) -> Inventory {
        self.inner.lock().expect("index lock").inventory.clone()
    }
}

impl Inner {
    fn republish(&mut self) {
        let keys: Vec<PodKey> = self.subscribers.keys().cloned().collect();
        for key in keys {
            self.republish_pod(&key);
        }
    }

    fn republish_pod(&mut self, key: &PodKey) {
        let Some(tx) = self.subscribers.get(key) else { return };
        let bundle = self.pods.get(key).map(|labels| {
            select(
                &self.inventory,
                &Workload {
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    labels: labels.clone(),
                },
            )
        });
        let bundle = bundle.filter(|b| !b.is_empty()).map(Arc::new);
        tx.send_if_modified(|current| {
            let same = current.as_ref().map(|b| &b.version) == bundle.as_ref().map(|b| &b.version);
            if !same {
                *current = bundle;
            }
            !same
        });
    }
}
