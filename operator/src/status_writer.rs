//! Writes the status [`status::compute`] asks for: server-side apply on the status subresource,
//! only what differs, only while this replica leads.
//!
//! ```text
//! triggers: Index::changes ─┐
//!   InvalidObjects::changes ├─► debounce ─► leader? ─► compute(inventory, pods, usage, now)
//!   UsageStore::urgent      │                            │ for each object: desired != current
//!   leadership gained       │                            │   and not already written (memo)
//!   clock at next boundary ─┤                            ▼
//!   usage refresh period ───┘             PATCH …/status (apply, fieldManager mcp-warden-operator)
//! ```
//!
//! - **No loops.** A write is skipped when the desired status equals the one the watch shows, or
//!   equals the one this writer last applied less than `rewrite_after` ago (the watch may not have
//!   caught up; a real API server also turns a no-op apply into no event).
//! - **Time-based transitions** (expiry, review due) need no event: the loop sleeps on
//!   [`Clock::sleep_until`] the earliest `lifecycle::next_transition` of every McpClient.
//! - **Usage** counts (`calls24h`, …) change with every report; they are re-read every
//!   `usage_refresh`, so a busy client costs one write per period, not one per report. Runaway
//!   flags and tool lists are urgent and re-read at once.

use crate::{
    clock::Clock,
    index::Index,
    metrics::Metrics,
    status::{self, Desired},
    usage::{UsageStore, UsageView},
    watch::InvalidObjects,
};
use futures::StreamExt;
use jiff::Timestamp;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
};
use mcp_warden_crds::{API_VERSION, McpClient, McpPolicy, McpTool};
use mcp_warden_policy::{Kind, inventory::Key};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::Duration,
};
use tokio::{sync::watch, time::Instant};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "mcp-warden-operator";

/// Status writer settings.
#[derive(Clone, Debug)]
pub struct StatusSettings {
    /// Quiet time after a trigger before computing (batches bursts of watch events).
    pub debounce: Duration,
    /// How often usage counts are re-read.
    pub usage_refresh: Duration,
    /// After this long, a status this writer applied but the watch never showed is applied again.
    pub rewrite_after: Duration,
    /// Concurrent writes.
    pub concurrency: usize,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            usage_refresh: Duration::from_secs(60),
            rewrite_after: Duration::from_secs(300),
            concurrency: 8,
        }
    }
}

/// The leader-gated status loop.
pub struct StatusWriter {
    client: Client,
    index: Index,
    usage: UsageStore,
    invalid: InvalidObjects,
    clock: Arc<dyn Clock>,
    leader: watch::Receiver<bool>,
    settings: StatusSettings,
    metrics: Metrics,
    /// What we last applied to each object, and when.
    written: HashMap<(Kind, Key), (u64, Instant)>,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("settings", &self.settings)
            .field("written", &self.written.len())
            .finish_non_exhaustive()
    }
}

/// One status write to make.
#[derive(Debug)]
struct Write {
    kind: Kind,
    key: Key,
    status: Value,
    digest: u64,
}

fn digest(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

/// A status as JSON with its lists explicit: `[]` rather than absent, so an emptied list is
/// emptied by the apply (rather than left to field-removal semantics).
fn explicit<T: serde::Serialize>(status: &T, lists: &[&str]) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        for l in lists {
            o.entry(*l).or_insert_with(|| json!([]));
        }
    }
    v
}

impl StatusWriter {
    /// A writer; `leader` says when this replica may write.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        index: Index,
        usage: UsageStore,
        invalid: InvalidObjects,
        clock: Arc<dyn Clock>,
        leader: watch::Receiver<bool>,
        settings: StatusSettings,
        metrics: Metrics,
    ) -> Self {
        Self {
            client,
            index,
            usage,
            invalid,
            clock,
            leader,
            settings,
            metrics,
            written: HashMap::new(),
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut changes = self.index.changes();
        let mut invalid = self.invalid.changes();
        let mut urgent = self.usage.urgent();
        let mut usage_view: Option<(UsageView, Instant)> = None;
        let mut next: Option<Timestamp> = None;
        // A dropped sender means leadership is fixed from now on (no election).
        let mut leadership_moves = true;
        let mut first = true;
        loop {
            let boundary = next.map(|t| self.clock.sleep_until(t));
            let boundary = async move {
                match boundary {
                    Some(f) => f.await,
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = async {}, if std::mem::take(&mut first) => {}
                r = changes.changed() => if r.is_err() { return },
                r = invalid.changed() => if r.is_err() { return },
                r = urgent.changed() => {
                    if r.is_err() { return }
                    usage_view = None;
                }
                r = self.leader.changed(), if leadership_moves => leadership_moves = r.is_ok(),
                () = boundary => {}
                () = tokio::time::sleep(self.settings.usage_refresh) => usage_view = None,
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.settings.debounce) => {}
            }
            changes.borrow_and_update();
            invalid.borrow_and_update();
            if urgent.has_changed().unwrap_or(false) {
                urgent.borrow_and_update();
                usage_view = None;
            }
            let leading = *self.leader.borrow_and_update();
            self.metrics
                .status_passes
                .with_label_values(&[if leading { "true" } else { "false" }])
                .inc();
            if !leading {
                // What we wrote as leader says nothing about what a successor wrote since.
                self.written.clear();
                next = None;
                continue;
            }
            let now = self.clock.now();
            if usage_view
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() >= self.settings.usage_refresh)
            {
                usage_view = Some((self.usage.view(now), Instant::now()));
            }
            let view = usage_view.as_ref().map(|(v, _)| v).expect("just set");
            next = self.pass(view, now).await;
        }
    }

    /// Computes every status and writes the ones that differ; returns the next time boundary.
    async fn pass(&mut self, usage: &UsageView, now: Timestamp) -> Option<Timestamp> {
        let inventory = self.index.inventory();
        let pods = self.index.pods();
        let desired = status::compute(&inventory, &pods, usage, now);
        let mut writes = self.diff(&inventory, &desired);
        writes.extend(self.invalid_writes(now));
        if !writes.is_empty() {
            tracing::debug!(writes = writes.len(), "writing status");
        }
        let client = self.client.clone();
        let leader = self.leader.clone();
        let metrics = self.metrics.clone();
        let results: Vec<(Kind, Key, u64, bool)> = futures::stream::iter(writes)
            .map(|w| {
                let (client, leader, metrics) = (client.clone(), leader.clone(), metrics.clone());
                async move {
                    if !*leader.borrow() {
                        return (w.kind, w.key, w.digest, false);
                    }
                    let ok = match apply_status(&client, w.kind, &w.key, &w.status).await {
                        Ok(()) => true,
                        Err(error) => {
                            tracing::warn!(kind = %w.kind, namespace = %w.key.0, name = %w.key.1, %error, "status write failed");
                            metrics.error("status");
                            false
                        }
                    };
                    let result = if ok { "ok" } else { "error" };
                    metrics.status_writes.with_label_values(&[w.kind.as_str(), result]).inc();
                    (w.kind, w.key, w.digest, ok)
                }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for (kind, key, digest, ok) in results {
            if ok {
                self.written.insert((kind, key), (digest, Instant::now()));
            }
        }
        // Forget memos of objects that are gone.
        let invalid = self.invalid.snapshot();
        self.written.retain(|(kind, key), _| {
            let known = match kind {
                Kind::McpTool => inventory.tools().contains_key(key),
                Kind::McpClient => inventory.clients().contains_key(key),
                Kind::McpPolicy => inventory.policies().contains_key(key),
            };
            known || invalid.contains_key(&mcp_warden_policy::ObjectRef::new(*kind, &key.0, &key.1))
        });
        status::next_transition(&inventory, now)
    }

    /// Whether a write of `digest` to `(kind, key)` is still in flight as far as we know.
    fn recently_written(&self, kind: Kind, key: &Key, digest: u64) -> bool {
        self.written
            .get(&(kind, key.clone()))
            .is_some_and(|(d, at)| *d == digest && at.elapsed() < self.settings.rewrite_after)
    }

    fn diff(&self, inventory: &mcp_warden_policy::Inventory, desired: &Desired) -> Vec<Write> {
        let mut writes = Vec::new();
        let mut push = |kind: Kind, key: &Key, differs: bool, status: Value| {
            if !differs {
                return;
            }
            let d = digest(&status);
            if !self.recently_written(kind, key, d) {
                writes.push(Write {
                    kind,
                    key: key.clone(),
                    status,
                    digest: d,
                });
            }
        };
        for (key, s) in &desired.tools {
            let current = inventory.tools().get(key).and_then(|o| o.status.as_ref());
            push(
                Kind::McpTool,
                key,
                current != Some(s),
                explicit(s, &["conditions", "toolsSeen", "undeclaredTools"]),
            );
        }
        for (key, s) in &desired.clients {
            let current = inventory.clients().get(key).and_then(|o| o.status.as_ref());
            push(
                Kind::McpClient,
                key,
                current != Some(s),
                explicit(
                    s,
                    &[
                        "conditions",
                        "effectiveTools",
                        "toolUsage",
                        "resourceUsage",
                        "promptUsage",
                    ],
                ),
            );
        }
        for (key, s) in &desired.policies {
            let current = inventory
                .policies()
                .get(key)
                .and_then(|o| o.status.as_ref());
            push(
                Kind::McpPolicy,
                key,
                current != Some(s),
                explicit(s, &["conditions"]),
            );
        }
        writes
    }

    /// An `InvalidSpec` condition for each object that does not deserialize (once per error and
    /// generation).
    fn invalid_writes(&self, now: Timestamp) -> Vec<Write> {
        self.invalid
            .snapshot()
            .into_iter()
            .filter_map(|(r, invalid)| {
                let key = (r.namespace.clone(), r.name.clone());
                let mut h = DefaultHasher::new();
                (&invalid.error, invalid.generation).hash(&mut h);
                let d = h.finish();
                if self.recently_written(r.kind, &key, d) {
                    return None;
                }
                let condition =
                    status::invalid_condition(r.kind, &invalid.error, invalid.generation, now);
                Some(Write {
                    kind: r.kind,
                    key,
                    status: json!({"conditions": [condition]}),
                    digest: d,
                })
            })
            .collect()
    }
}

fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::McpTool => ApiResource::erase::<McpTool>(&()),
        Kind::McpClient => ApiResource::erase::<McpClient>(&()),
        Kind::McpPolicy => ApiResource::erase::<McpPolicy>(&()),
    }
}

/// `PATCH /apis/mcpwarden.io/v1alpha1/namespaces/<ns>/<plural>/<name>/status`, server-side
/// apply with [`FIELD_MANAGER`], forced (the operator owns status). Dynamic, so objects that do
/// not deserialize can be given a condition too.
pub async fn apply_status(
    client: &Client,
    kind: Kind,
    key: &Key,
    status: &Value,
) -> Result<(), kube::Error> {
    let ar = api_resource(kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.0, &ar);
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": kind.as_str(),
        "metadata": {"name": key.1, "namespace": key.0},
        "status": status,
    });
    api.patch_status(
        &key.1,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}
