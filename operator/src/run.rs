//! The cluster mode, wired: watches → index → push API (HTTPS, TokenReview) and usage reports;
//! Lease election → status writer; admin endpoints. `main` builds a [`Cluster`] from flags and a
//! `kube::Client` from the environment; tests run the same function on a fake API server.

use crate::{
    admin,
    clock::Clock,
    index::Index,
    leader::{self, LeaseSettings},
    metrics::Metrics,
    netpol::{self, NetworkPolicySettings},
    push,
    status_writer::{StatusSettings, StatusWriter},
    tokenreview::TokenReviewAuthorizer,
    upstream_auth::{self, UpstreamAuth},
    usage::{ScopedUsage, UsageEndpoint, UsageStore},
    watch::{self, InvalidObjects, Sinks, WatchSettings},
};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;

/// Everything the cluster mode needs besides the client and the listeners.
#[derive(Clone)]
pub struct Cluster {
    /// What to watch.
    pub watch: WatchSettings,
    /// Leader election; `None`: this replica always writes status.
    pub lease: Option<LeaseSettings>,
    /// The audience sidecars' tokens must carry.
    pub audience: String,
    /// HTTPS for the push API; `None`: plain HTTP (development).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Heartbeat interval on idle streams.
    pub heartbeat: Duration,
    /// Status writer settings.
    pub status: StatusSettings,
    /// Wall clock for status.
    pub clock: Arc<dyn Clock>,
    /// Metrics (shared with the caller, e.g. to read them in tests).
    pub metrics: Metrics,
    /// One NetworkPolicy per McpTool (`netpol`); `None`: none.
    pub network_policies: Option<NetworkPolicySettings>,
    /// Upstream credentials (`upstream_auth`): the labelled Secrets are watched and pushed, the
    /// JWKS served; `None`: no Secret is read.
    pub upstream_auth: Option<Arc<UpstreamAuth>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("watch", &self.watch)
            .field("lease", &self.lease)
            .field("audience", &self.audience)
            .field("tls", &self.tls.is_some())
            .field("heartbeat", &self.heartbeat)
            .field("status", &self.status)
            .field("network_policies", &self.network_policies)
            .field("upstream_auth", &self.upstream_auth.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs the operator against the API server behind `client` until `shutdown` resolves:
/// `admin` answers at once (`/ready` turns 200 after every watch listed once), `push` is served
/// from then on. On shutdown the Lease, when held, is released.
pub async fn run(
    client: kube::Client,
    cluster: Cluster,
    push_listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let metrics = cluster.metrics.clone();
    let index = Index::default();
    let invalid = InvalidObjects::default();
    let usage = UsageStore::default();
    let sinks = Sinks {
        index: index.clone(),
        invalid: invalid.clone(),
        usage: Some(usage.clone()),
        metrics: Some(metrics.clone()),
    };
    let (synced, watches) = watch::watches(client.clone(), cluster.watch.clone(), sinks);
    let watches = tokio::spawn(watches);
    let secrets = cluster
        .upstream_auth
        .clone()
        .map(|auth| tokio::spawn(upstream_auth::watch_secrets(client.clone(), auth)));
    let refresh = tokio::spawn(admin::refresh(
        index.clone(),
        invalid.clone(),
        metrics.clone(),
        Duration::from_secs(5),
    ));
    if let Some(listener) = admin_listener {
        let ready = synced.clone();
        tokio::spawn(admin::serve(
            listener,
            metrics.clone(),
            Arc::new(move || ready.is_synced()),
            stop(),
        ));
    }

    let (leader_tx, leader_rx) = tokio::sync::watch::channel(cluster.lease.is_none());
    let elector = match cluster.lease.clone() {
        Some(lease) => Some(tokio::spawn(leader::run(
            client.clone(),
            lease,
            leader_tx,
            Some(metrics.clone()),
            stop(),
        ))),
        None => {
            metrics.leader.set(1);
            None
        }
    };
    let leading = cluster.lease.is_some().then(|| leader_rx.clone());
    if let Some(settings) = cluster.network_policies.clone() {
        tokio::spawn(netpol::run(
            client.clone(),
            index.clone(),
            leader_rx.clone(),
            settings,
            metrics.clone(),
            stop(),
        ));
    }
    let writer = StatusWriter::new(
        client.clone(),
        index.clone(),
        usage.clone(),
        invalid,
        cluster.clock.clone(),
        leader_rx,
        cluster.status.clone(),
        metrics.clone(),
    );
    tokio::spawn(writer.run(stop()));

    // Serve sidecars only from a complete index: before the first list a sidecar would be told
    // "nothing governs you" and deny everything.
    tokio::select! {
        () = synced.wait() => {}
        () = stop() => {}
    }
    let authorizer: Arc<dyn push::Authorizer> = Arc::new(
        TokenReviewAuthorizer::new(client.clone(), &cluster.audience).with_metrics(metrics.clone()),
    );
    // Reports keep only what the pod's bundle holds (a pod cannot touch another team's clients).
    let usage_endpoint = ScopedUsage {
        endpoint: UsageEndpoint {
            store: usage,
            authorizer: authorizer.clone(),
            clock: cluster.clock.clone(),
            metrics: Some(metrics.clone()),
            leading,
        },
        index: index.clone(),
    };
    let settings = push::PushSettings {
        heartbeat: cluster.heartbeat,
        labels_from_query: false,
    };
    let extensions = push::Extensions {
        tls: cluster.tls.clone(),
        usage: Some(Arc::new(usage_endpoint)),
        upstream_auth: cluster.upstream_auth.clone(),
    };
    push::serve_with(
        push_listener,
        index,
        settings,
        authorizer,
        extensions,
        stop(),
    )
    .await;
    if let Some(elector) = elector {
        // Let the elector release the Lease so a successor takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
    }
    watches.abort();
    refresh.abort();
    if let Some(secrets) = secrets {
        secrets.abort();
    }
}
