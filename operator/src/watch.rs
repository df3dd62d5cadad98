//! Cluster watches: McpTool, McpClient, McpPolicy and the Pods of governed namespaces, fed into
//! the [`Index`].
//!
//! ```text
//! watcher(Api<DeserializeGuard<McpTool>>) ─┐  Init … InitApply* … InitDone ─► Index::reset(kind, ns)
//! watcher(Api<DeserializeGuard<McpClient>>)├─ Apply(ok)                    ─► Index::apply
//! watcher(Api<DeserializeGuard<McpPolicy>>)┤  Apply(does not deserialize)  ─► warn, InvalidObjects,
//!                                          │                                 Index::delete (fail closed)
//!                                          │  Delete                       ─► Index::delete
//! metadata_watcher(Api<Pod>, labels)  ─────┘  pods: labels only            ─► Index::{reset,apply,delete}_pod
//! ```
//!
//! An object that does not deserialize (schema skew, a hand-edited object) never stops the
//! operator (Linkerd's `DeserializeGuard` pattern). Unlike Linkerd it is also *removed* from the
//! index: an McpClient we cannot read must not keep the grants of its previous version. It gets
//! an `InvalidSpec` condition from the status writer.
//!
//! Managed fields and kubectl's last-applied annotation are dropped before indexing (they never
//! reach a bundle and would double the memory held per object).

use crate::{index::Index, metrics::Metrics, usage::UsageStore};
use futures::{StreamExt, future::join_all};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event, watcher},
    },
};
use mcp_warden_crds::{McpClient, McpPolicy, McpTool};
use mcp_warden_policy::{Kind, ObjectRef, Resource};
use serde::de::DeserializeOwned;
use std::{
    collections::BTreeMap,
    fmt::Debug,
    sync::{Arc, Mutex},
    time::Instant,
};
use tokio::sync::watch;

/// What the operator watches.
#[derive(Clone, Debug, Default)]
pub struct WatchSettings {
    /// Namespaces whose CRs and Pods are watched; empty means every namespace. Must include the
    /// namespaces of the McpClients that policies name (an unwatched client is a missing one).
    pub namespaces: Vec<String>,
    /// Label selector for the Pods to index (e.g. `mcpwarden.io/inject=true`); `None`: every
    /// Pod of the watched namespaces. McpTools select among these.
    pub pod_selector: Option<String>,
}

/// An object skipped because it does not deserialize.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The deserialization error.
    pub error: String,
    /// The object's `metadata.generation`.
    pub generation: Option<i64>,
}

/// Objects skipped because they do not deserialize, by reference. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct InvalidObjects {
    inner: Arc<Mutex<BTreeMap<ObjectRef, Invalid>>>,
    changes: Arc<watch::Sender<u64>>,
}

impl InvalidObjects {
    fn set(&self, r: ObjectRef, invalid: Option<Invalid>) {
        let mut inner = self.inner.lock().expect("invalid lock");
        let changed = match invalid {
            Some(i) => inner.insert(r, i.clone()) != Some(i),
            None => inner.remove(&r).is_some(),
        };
        drop(inner);
        if changed {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn reset(&self, kind: Kind, namespace: Option<&str>, objects: Vec<(ObjectRef, Invalid)>) {
        let mut inner = self.inner.lock().expect("invalid lock");
        inner.retain(|r, _| r.kind != kind || namespace.is_some_and(|n| n != r.namespace));
        inner.extend(objects);
        drop(inner);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Every skipped object.
    pub fn snapshot(&self) -> BTreeMap<ObjectRef, Invalid> {
        self.inner.lock().expect("invalid lock").clone()
    }

    /// Sees a new value when the set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// How many watches have not completed their first list yet (`/ready` waits for 0).
#[derive(Clone, Debug)]
pub struct Synced(Arc<watch::Sender<usize>>);

impl Synced {
    fn new(pending: usize) -> Self {
        Self(Arc::new(watch::Sender::new(pending)))
    }

    fn done(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Whether every watch has listed once.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow() == 0
    }

    /// Resolves once every watch has listed once.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Everything a watch feeds.
#[derive(Clone, Debug)]
pub struct Sinks {
    /// The index of CRs and pods.
    pub index: Index,
    /// Objects that do not deserialize.
    pub invalid: InvalidObjects,
    /// Forgets deleted pods' runaway flags and tool lists.
    pub usage: Option<UsageStore>,
    /// Metrics.
    pub metrics: Option<Metrics>,
}

/// The watches of `settings`, and the readiness handle that tracks their first list. The future
/// runs until dropped.
pub fn watches(
    client: Client,
    settings: WatchSettings,
    sinks: Sinks,
) -> (Synced, impl Future<Output = ()>) {
    let scopes: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    let synced = Synced::new(scopes.len() * 4);
    let mut tasks: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    for ns in scopes {
        tasks.push(Box::pin(watch_crs::<McpTool>(
            client.clone(),
            ns.clone(),
            Resource::Tool,
            sinks.clone(),
            synced.clone(),
        )));
        tasks.push(Box::pin(watch_crs::<McpClient>(
            client.clone(),
            ns.clone(),
            Resource::Client,
            sinks.clone(),
            synced.clone(),
        )));
        tasks.push(Box::pin(watch_crs::<McpPolicy>(
            client.clone(),
            ns.clone(),
            Resource::Policy,
            sinks.clone(),
            synced.clone(),
        )));
        tasks.push(Box::pin(watch_pods(
            client.clone(),
            ns,
            settings.pod_selector.clone(),
            sinks.clone(),
            synced.clone(),
        )));
    }
    (synced, async move {
        join_all(tasks).await;
    })
}

fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// Drops what never reaches a bundle and only costs memory.
fn slim<K: kube::Resource>(mut o: K) -> K {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
        if a.is_empty() {
            meta.annotations = None;
        }
    }
    o
}

fn object_ref<K: kube::Resource>(kind: Kind, o: &K) -> ObjectRef {
    let meta = o.meta();
    ObjectRef::new(
        kind,
        meta.namespace
            .clone()
            .unwrap_or_else(|| mcp_warden_policy::DEFAULT_NAMESPACE.to_owned()),
        meta.name.clone().unwrap_or_default(),
    )
}

async fn watch_crs<K>(
    client: Client,
    namespace: Option<String>,
    wrap: fn(K) -> Resource,
    sinks: Sinks,
    synced: Synced,
) where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Default
        + Send
        + Sync
        + 'static,
{
    let kind = wrap(K::default()).kind();
    let label = kind.as_str();
    let stream = watcher(
        api::<DeserializeGuard<K>>(client, namespace.as_deref()),
        watcher::Config::default(),
    )
    .default_backoff();
    futures::pin_mut!(stream);
    let mut listed: Vec<Resource> = Vec::new();
    let mut bad: Vec<(ObjectRef, Invalid)> = Vec::new();
    let mut first = true;
    let count = |event: &str| {
        if let Some(m) = &sinks.metrics {
            m.watch_events.with_label_values(&[label, event]).inc();
        }
    };
    let invalid = |r: &ObjectRef, e: &kube::core::error_boundary::InvalidObject| {
        tracing::warn!(object = %r, error = %e.error, "ignoring an object that does not deserialize");
        Invalid {
            error: e.error.clone(),
            generation: e.metadata.generation,
        }
    };
    while let Some(event) = stream.next().await {
        match event {
            Err(error) => {
                tracing::warn!(kind = label, %error, "watch error (retrying with backoff)");
                if let Some(m) = &sinks.metrics {
                    m.error("watch");
                }
            }
            Ok(Event::Init) => {
                listed.clear();
                bad.clear();
            }
            Ok(Event::InitApply(guard)) => {
                let r = object_ref(kind, &guard);
                match guard.0 {
                    Ok(o) => listed.push(wrap(slim(o))),
                    Err(e) => bad.push((r.clone(), invalid(&r, &e))),
                }
            }
            Ok(Event::InitDone) => {
                count("list");
                let start = Instant::now();
                let n = listed.len();
                sinks
                    .index
                    .reset(kind, namespace.as_deref(), std::mem::take(&mut listed));
                sinks
                    .invalid
                    .reset(kind, namespace.as_deref(), std::mem::take(&mut bad));
                tracing::info!(kind = label, namespace = ?namespace, objects = n, took_ms = start.elapsed().as_millis(), "listed");
                if std::mem::take(&mut first) {
                    synced.done();
                }
            }
            Ok(Event::Apply(guard)) => {
                count("apply");
                let start = Instant::now();
                let r = object_ref(kind, &guard);
                match guard.0 {
                    Ok(o) => {
                        sinks.invalid.set(r, None);
                        sinks.index.apply(wrap(slim(o)));
                    }
                    Err(e) => {
                        let i = invalid(&r, &e);
                        sinks.index.delete(kind, &r.namespace, &r.name);
                        sinks.invalid.set(r, Some(i));
                    }
                }
                if let Some(m) = &sinks.metrics {
                    m.push_latency
                        .with_label_values(&[label])
                        .observe(start.elapsed().as_secs_f64());
                }
            }
            Ok(Event::Delete(guard)) => {
                count("delete");
                let start = Instant::now();
                let r = object_ref(kind, &guard);
                sinks.index.delete(kind, &r.namespace, &r.name);
                sinks.invalid.set(r, None);
                if let Some(m) = &sinks.metrics {
                    m.push_latency
                        .with_label_values(&[label])
                        .observe(start.elapsed().as_secs_f64());
                }
            }
        }
    }
}

fn pod_key(p: &PartialObjectMeta<Pod>) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

fn labels(p: &PartialObjectMeta<Pod>) -> BTreeMap<String, String> {
    p.metadata.labels.clone().unwrap_or_default()
}

async fn watch_pods(
    client: Client,
    namespace: Option<String>,
    selector: Option<String>,
    sinks: Sinks,
    synced: Synced,
) {
    let mut config = watcher::Config::default();
    if let Some(s) = &selector {
        config = config.labels(s);
    }
    let stream = watcher(
        api::<PartialObjectMeta<Pod>>(client, namespace.as_deref()),
        config,
    )
    .default_backoff();
    futures::pin_mut!(stream);
    let mut listed = BTreeMap::new();
    let mut first = true;
    let count = |event: &str| {
        if let Some(m) = &sinks.metrics {
            m.watch_events.with_label_values(&["Pod", event]).inc();
        }
    };
    while let Some(event) = stream.next().await {
        match event {
            Err(error) => {
                tracing::warn!(kind = "Pod", %error, "watch error (retrying with backoff)");
                if let Some(m) = &sinks.metrics {
                    m.error("watch");
                }
            }
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(p)) => {
                listed.insert(pod_key(&p), labels(&p));
            }
            Ok(Event::InitDone) => {
                count("list");
                sinks
                    .index
                    .reset_pods(namespace.as_deref(), std::mem::take(&mut listed));
                if std::mem::take(&mut first) {
                    synced.done();
                }
            }
            Ok(Event::Apply(p)) => {
                count("apply");
                let (ns, name) = pod_key(&p);
                sinks.index.apply_pod(&ns, &name, labels(&p));
            }
            Ok(Event::Delete(p)) => {
                count("delete");
                let (ns, name) = pod_key(&p);
                sinks.index.delete_pod(&ns, &name);
                if let Some(usage) = &sinks.usage {
                    usage.forget_pod(&ns, &name);
                }
            }
        }
    }
}
