//! Controller-test support: kube-fake-client behind a watch shim, CR fixtures, and an operator
//! harness (watches + status writer + optional leader election) on one shared client.
//!
//! The shim (from `shared/reference/k8s-testing.md` §2.4) records every successful write that
//! passes through it as a watch event and streams those to `?watch=true` requests, so
//! kube-runtime watchers run end to end against the in-memory fake. Like a real API server it
//! emits no event for a write that changed nothing (the fake bumps resourceVersion on every
//! write). It also counts status writes, so tests can assert how many reached the "server".
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod, networking::v1::NetworkPolicy};
use kube::{Api, api::PostParams};
use kube_fake_client::ClientBuilder;
use mcp_warden_crds::{McpClient, McpPolicy, McpTool};
use mcp_warden_operator::{
    clock::Clock,
    index::Index,
    leader::{self, LeaseSettings},
    metrics::Metrics,
    status_writer::{StatusSettings, StatusWriter},
    usage::UsageStore,
    watch::{self, InvalidObjects, Sinks, Synced, WatchSettings},
};
use mcp_warden_policy::{Resource, load};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{sync::broadcast, task::JoinHandle};

pub mod admission;
pub mod tls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Installs ring as rustls' provider (kube-fake-client also links aws-lc-rs; with both present
/// rustls panics unless one is installed).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// What went through the shim.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Write requests to a `/status` subresource, by path.
    pub status_writes: Arc<Mutex<HashMap<String, usize>>>,
    /// Requests, total.
    pub requests: Arc<AtomicUsize>,
}

impl Counters {
    /// Status writes, all paths.
    pub fn status_total(&self) -> usize {
        self.status_writes.lock().unwrap().values().sum()
    }

    /// Status writes to paths ending in `suffix` (`mcpclients/bot/status`).
    pub fn status_to(&self, suffix: &str) -> usize {
        self.status_writes
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }
}

#[derive(Clone)]
struct Events {
    log: Arc<Mutex<Vec<(String, Value)>>>,
    tx: broadcast::Sender<(String, Value)>,
    last: Arc<Mutex<HashMap<String, Value>>>,
    /// Serializes writes with their recording, so events are logged in commit order (as an API
    /// server's watch delivers them), even when writes race.
    writes: Arc<tokio::sync::Mutex<()>>,
}

fn normalized(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for f in ["resourceVersion", "generation", "managedFields"] {
            m.remove(f);
        }
    }
    o
}

/// "/apis/g/v/namespaces/ns/plural/name/status" -> ("/apis/g/v", Some(ns), plural)
fn split(path: &str) -> (String, Option<String>, String) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let base = if segs[0] == "api" { 2 } else { 3 };
    let prefix = format!("/{}", segs[..base].join("/"));
    let rest = &segs[base..];
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (prefix, Some(rest[1].to_string()), rest[2].to_string())
    } else {
        (prefix, None, rest[0].to_string())
    }
}

fn key(path: &str) -> String {
    let (p, _, r) = split(path);
    format!("{p}/{r}")
}

fn boxed(bytes: Bytes) -> BoxBody<Bytes, BoxError> {
    BoxBody::new(Full::new(bytes).map_err(|e| -> BoxError { match e {} }))
}

fn watching(ev: &Events, path: &str) -> BoxBody<Bytes, BoxError> {
    let (_, ns, _) = split(path);
    let k = key(path);
    // Under the log lock (which `record` holds while sending), so no event is lost or doubled
    // between the backlog and the live feed.
    let (rx, backlog) = {
        let log = ev.log.lock().unwrap();
        (ev.tx.subscribe(), log.clone())
    };
    let filt = move |(kk, e): &(String, Value)| {
        *kk == k
            && ns
                .as_ref()
                .is_none_or(|n| e["object"]["metadata"]["namespace"] == json!(n))
    };
    let f2 = filt.clone();
    let old = futures::stream::iter(backlog.into_iter().filter(move |x| filt(x)));
    let live = tokio_stream::wrappers::BroadcastStream::new(rx)
        .filter_map(move |x| futures::future::ready(x.ok().filter(|x| f2(x))));
    let s = old.chain(live).map(|(_, e)| {
        let mut line = serde_json::to_vec(&e).unwrap();
        line.push(b'\n');
        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(line)))
    });
    BoxBody::new(StreamBody::new(s))
}

/// Records a successful write as a watch event, unless it changed nothing.
fn record(ev: &Events, path: &str, method: &http::Method, bytes: &Bytes) {
    let Ok(obj) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    if obj.get("metadata").is_none() || obj["kind"].as_str().unwrap_or("").ends_with("List") {
        return;
    }
    let ty = match method.as_str() {
        "POST" => "ADDED",
        "DELETE" => "DELETED",
        _ => "MODIFIED",
    };
    let id = format!(
        "{}/{}/{}",
        key(path),
        obj["metadata"]["namespace"],
        obj["metadata"]["name"]
    );
    let n = normalized(&obj);
    let mut last = ev.last.lock().unwrap();
    if ty == "MODIFIED" && last.get(&id) == Some(&n) {
        return;
    }
    if ty == "DELETED" {
        last.remove(&id);
    } else {
        last.insert(id, n);
    }
    drop(last);
    let e = (key(path), json!({"type": ty, "object": obj}));
    let mut log = ev.log.lock().unwrap();
    log.push(e.clone());
    let _ = ev.tx.send(e);
}

/// Wraps the fake's client with the watch shim.
pub fn shim(fake: kube::Client) -> (kube::Client, Counters) {
    let (tx, _) = broadcast::channel(65536);
    let ev = Events {
        log: Default::default(),
        tx,
        last: Default::default(),
        writes: Default::default(),
    };
    let counters = Counters::default();
    let c2 = counters.clone();
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let (fake, ev, counters) = (fake.clone(), ev.clone(), c2.clone());
        async move {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let is_watch = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
            let path = req.uri().path().to_string();
            if is_watch {
                return Ok::<_, BoxError>(Response::new(watching(&ev, &path)));
            }
            let method = req.method().clone();
            if method != http::Method::GET && path.ends_with("/status") {
                *counters
                    .status_writes
                    .lock()
                    .unwrap()
                    .entry(path.clone())
                    .or_default() += 1;
            }
            let _serial = if method == http::Method::GET {
                None
            } else {
                Some(ev.writes.clone().lock_owned().await)
            };
            let resp = fake.send(req).await?;
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await?.to_bytes();
            if parts.status.is_success() && method != http::Method::GET {
                record(&ev, &path, &method, &bytes);
            }
            Ok(Response::from_parts(parts, boxed(bytes)))
        }
    });
    (kube::Client::new(svc, "default"), counters)
}

/// A fake API server knowing the three CRDs (with status subresources), behind the shim.
pub async fn fake_cluster() -> (kube::Client, Counters) {
    init();
    let fake = ClientBuilder::new()
        .with_resource::<McpTool>()
        .with_status_subresource::<McpTool>()
        .with_resource::<McpClient>()
        .with_status_subresource::<McpClient>()
        .with_resource::<McpPolicy>()
        .with_status_subresource::<McpPolicy>()
        .with_resource::<Lease>()
        .with_resource::<NetworkPolicy>()
        .build()
        .await
        .expect("fake client");
    shim(fake)
}

/// Creates every CR of `yaml` (through the shim, so watches see them).
pub async fn create(client: &kube::Client, yaml: &str) {
    for r in load("test.yaml", yaml).expect("valid CRs") {
        create_resource(client, r).await;
    }
}

/// Creates one CR.
pub async fn create_resource(client: &kube::Client, r: Resource) {
    let pp = PostParams::default();
    match r {
        Resource::Tool(o) => {
            let ns = o.metadata.namespace.clone().unwrap();
            Api::<McpTool>::namespaced(client.clone(), &ns)
                .create(&pp, &o)
                .await
                .expect("create tool");
        }
        Resource::Client(o) => {
            let ns = o.metadata.namespace.clone().unwrap();
            Api::<McpClient>::namespaced(client.clone(), &ns)
                .create(&pp, &o)
                .await
                .expect("create client");
        }
        Resource::Policy(o) => {
            let ns = o.metadata.namespace.clone().unwrap();
            Api::<McpPolicy>::namespaced(client.clone(), &ns)
                .create(&pp, &o)
                .await
                .expect("create policy");
        }
    }
}

/// Creates a pod with labels.
pub async fn create_pod(client: &kube::Client, ns: &str, name: &str, labels: &[(&str, &str)]) {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

/// How an operator instance decides whether it writes status.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// Always the leader (`--leader-election=false`).
    Always,
    /// Lease-based, with this identity.
    Lease(String),
}

/// One operator instance: watches, index, status writer (and elector) on a shared client.
pub struct Operator {
    pub index: Index,
    pub usage: UsageStore,
    pub invalid: InvalidObjects,
    pub metrics: Metrics,
    pub synced: Synced,
    pub leader: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    elector: Option<JoinHandle<()>>,
}

impl Operator {
    /// Starts an instance and waits for its first list.
    pub async fn start(
        client: &kube::Client,
        clock: Arc<dyn Clock>,
        leadership: Leadership,
    ) -> Self {
        let metrics = Metrics::new();
        let index = Index::default();
        let invalid = InvalidObjects::default();
        let usage = UsageStore::default();
        let sinks = Sinks {
            index: index.clone(),
            invalid: invalid.clone(),
            usage: Some(usage.clone()),
            metrics: Some(metrics.clone()),
        };
        let (synced, watches) = watch::watches(client.clone(), WatchSettings::default(), sinks);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = vec![tokio::spawn(watches)];
        let (leader_tx, leader_rx) =
            tokio::sync::watch::channel(matches!(leadership, Leadership::Always));
        let elector = match leadership {
            Leadership::Always => None,
            Leadership::Lease(identity) => {
                let mut settings =
                    LeaseSettings::new("mcp-warden-operator", "mcp-warden", identity);
                settings.lease_duration = Duration::from_secs(2);
                settings.retry_period = Duration::from_millis(200);
                Some(tokio::spawn(leader::run(
                    client.clone(),
                    settings,
                    leader_tx,
                    Some(metrics.clone()),
                    stopped(),
                )))
            }
        };
        let writer = StatusWriter::new(
            client.clone(),
            index.clone(),
            usage.clone(),
            invalid.clone(),
            clock,
            leader_rx.clone(),
            StatusSettings {
                debounce: Duration::from_millis(50),
                usage_refresh: Duration::from_millis(200),
                ..StatusSettings::default()
            },
            metrics.clone(),
        );
        tasks.push(tokio::spawn(writer.run(stopped())));
        tokio::time::timeout(Duration::from_secs(10), synced.wait())
            .await
            .expect("watches listed");
        Self {
            index,
            usage,
            invalid,
            metrics,
            synced,
            leader: leader_rx,
            stop,
            tasks,
            elector,
        }
    }

    /// Status writes this instance made (successful).
    pub fn writes(&self) -> u64 {
        ["McpTool", "McpClient", "McpPolicy"]
            .iter()
            .map(|k| {
                self.metrics
                    .status_writes
                    .with_label_values(&[k, "ok"])
                    .get()
            })
            .sum()
    }

    /// Status passes this instance ran as the leader.
    pub fn passes(&self) -> u64 {
        self.metrics
            .status_passes
            .with_label_values(&["true"])
            .get()
    }

    /// Whether it holds the lease.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops it (the elector releases the lease).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(e) = self.elector.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), e).await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(e) = &self.elector {
            e.abort();
        }
    }
}

/// The shimmed fake for everything, except TokenReview: `token-<pod>` is pod `team/<pod>`'s
/// projected token for `audience`.
pub fn with_tokenreview(shimmed: kube::Client, audience: &'static str) -> kube::Client {
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let shimmed = shimmed.clone();
        async move {
            if req.uri().path() != "/apis/authentication.k8s.io/v1/tokenreviews" {
                return shimmed.send(req).await.map_err(|e| Box::new(e) as BoxError);
            }
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let review: Value = serde_json::from_slice(&body).unwrap();
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            let audience_ok = review["spec"]["audiences"] == json!([audience]);
            let status = match token.strip_prefix("token-") {
                Some(pod) if audience_ok => json!({
                    "authenticated": true, "audiences": [audience],
                    "user": {"username": "system:serviceaccount:team:pay",
                             "extra": {"authentication.kubernetes.io/pod-name": [pod]}}}),
                _ => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            let answer = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                "spec": review["spec"], "status": status});
            Ok(Response::new(kube::client::Body::from(
                serde_json::to_vec(&answer).unwrap(),
            )))
        }
    });
    kube::Client::new(svc, "default")
}

/// An HTTP/1 connection to 127.0.0.1:`port`.
async fn connect(port: u16) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// A plain-HTTP request to 127.0.0.1:`port` (JSON body when given): status and body text.
pub async fn http(
    port: u16,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> (http::StatusCode, String) {
    let mut sender = connect(port).await;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost");
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let resp = sender
        .send_request(req.body(Full::new(bytes)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
