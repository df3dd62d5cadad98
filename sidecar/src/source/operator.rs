//! Operator mode: the configuration comes from the operator's push stream.
//!
//! ```text
//! start: state-dir/bundle.json ──compile──► Live (stale) when the operator is unreachable
//! loop:  GET {operator}/v1/watch?namespace&pod  (Bearer: projected ServiceAccount token)
//!          line {"type":"bundle"}    ──compile──► Live::install, persist to state-dir
//!                                     (a bundle that fails to compile keeps the RuleSet in force)
//!          line {"type":"empty"}     ──► Live::clear (nothing governs this pod: deny all)
//!          line {"type":"heartbeat"} ──► liveness only
//!        stream ends, errors or stays silent for 3 heartbeats ──► reconnect with jittered
//!        exponential backoff (100 ms … 15 s); the RuleSet in force stays.
//! ```
//!
//! The same `compile` as file mode, so both enforce the same thing for the same CRs.

use crate::{
    metrics::Metrics,
    source::link::Link,
    state::{Active, Live},
    upstream_auth::UpstreamAuth,
};
use bytes::{Bytes, BytesMut};
use http::Method;
use http_body_util::BodyExt;
use mcp_warden_policy::{Bundle, compile};
use mcp_warden_wire::PushMessage;
use rand::Rng;
use std::{path::PathBuf, sync::Arc, time::Duration};

/// Where and how to watch.
#[derive(Debug, Clone)]
pub struct StreamSource {
    /// The operator (`https://mcp-warden-operator.mcp-warden.svc:8443`), its CA and the token.
    pub link: Link,
    /// This pod's namespace.
    pub namespace: String,
    /// This pod's name.
    pub pod: String,
    /// This pod's labels (`k=v,…`), sent for operators without Pod watches (files mode).
    pub labels: Option<String>,
    /// Where the last good bundle is kept across restarts.
    pub state_dir: Option<PathBuf>,
    /// Reconnect when nothing arrives for this long.
    pub idle_timeout: Duration,
}

const BUNDLE_FILE: &str = "bundle.json";

/// Installs a bundle if it compiles; returns whether it did.
fn install(bundle: Bundle, live: &Live, metrics: &Metrics) -> bool {
    match compile(&bundle) {
        Ok(rules) => {
            let version = bundle.version.clone();
            let installed = live.install(Active::new(rules, bundle));
            // The bundle's decoding and compiling temporaries are free now: hand their pages back.
            crate::memory::release_free_memory();
            if installed {
                metrics.config_installed(&version);
                tracing::info!(%version, "configuration in force");
            }
            true
        }
        Err(error) => {
            metrics.config_rejected();
            tracing::error!(version = %bundle.version, "bundle rejected, the configuration in force stays: {error}");
            false
        }
    }
}

/// Loads the persisted bundle, when there is one and nothing is in force yet.
pub fn load_persisted(source: &StreamSource, live: &Live, metrics: &Metrics) {
    let Some(path) = source.state_dir.as_ref().map(|d| d.join(BUNDLE_FILE)) else {
        return;
    };
    let Ok(text) = std::fs::read(&path) else {
        return;
    };
    match serde_json::from_slice::<Bundle>(&text) {
        Ok(bundle) => {
            if install(bundle, live, metrics) {
                metrics.set_stale(true);
                tracing::warn!(path = %path.display(), "enforcing the persisted bundle until the operator answers");
            }
        }
        Err(e) => tracing::error!(path = %path.display(), "persisted bundle unreadable: {e}"),
    }
}

fn persist(source: &StreamSource, bundle: &Bundle) {
    let Some(dir) = &source.state_dir else { return };
    let tmp = dir.join(format!("{BUNDLE_FILE}.tmp"));
    let result = serde_json::to_vec(bundle)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, dir.join(BUNDLE_FILE)));
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), "cannot persist the bundle: {e}");
    }
}

/// Watches the operator forever.
pub async fn run(
    source: StreamSource,
    live: Arc<Live>,
    metrics: Metrics,
    upstream_auth: Arc<UpstreamAuth>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut heard = false;
        let sinks = Sinks {
            live: &live,
            metrics: &metrics,
            upstream_auth: &upstream_auth,
        };
        match watch_once(&source, sinks, &mut heard).await {
            Ok(()) => tracing::warn!("the operator closed the watch; reconnecting"),
            Err(e) => {
                tracing::warn!(operator = %source.link.base(), "watch failed: {e}; reconnecting")
            }
        }
        if heard {
            backoff = Duration::from_millis(100);
        }
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(Duration::from_secs(15));
    }
}

/// Where the stream's lines go.
#[derive(Clone, Copy)]
struct Sinks<'a> {
    live: &'a Live,
    metrics: &'a Metrics,
    upstream_auth: &'a UpstreamAuth,
}

async fn watch_once(
    source: &StreamSource,
    sinks: Sinks<'_>,
    heard: &mut bool,
) -> Result<(), String> {
    let mut query = vec![
        ("namespace", source.namespace.as_str()),
        ("pod", source.pod.as_str()),
    ];
    if let Some(labels) = &source.labels {
        query.push(("labels", labels));
    }
    let url = source.link.url("v1/watch", &query);
    let request = source
        .link
        .request(Method::GET, &url, None, Bytes::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(source.idle_timeout, source.link.send(request))
        .await
        .map_err(|_| "the operator did not answer in time".to_owned())??;
    if !response.status().is_success() {
        return Err(format!("the operator answered {}", response.status()));
    }
    let mut body = response.into_body();
    let mut buffer = BytesMut::new();
    loop {
        let frame = tokio::time::timeout(source.idle_timeout, body.frame())
            .await
            .map_err(|_| "no message or heartbeat from the operator in time".to_owned())?;
        let Some(frame) = frame else { return Ok(()) };
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        if buffer.len() > 64 * 1024 * 1024 {
            return Err("a bundle line exceeds 64 MiB".into());
        }
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line = buffer.split_to(end + 1);
            handle_line(&line[..end], source, sinks);
            *heard = true;
        }
    }
}

fn handle_line(line: &[u8], source: &StreamSource, sinks: Sinks<'_>) {
    let Sinks { live, metrics, .. } = sinks;
    let message: PushMessage<'_> = match serde_json::from_slice(line) {
        Ok(m) => m,
        Err(e) => {
            metrics.config_rejected();
            tracing::error!("unreadable message from the operator: {e}");
            return;
        }
    };
    match message {
        PushMessage::Bundle { bundle } => {
            metrics.set_stale(false);
            let bundle = bundle.into_owned();
            if install(bundle.clone(), live, metrics) {
                persist(source, &bundle);
            }
        }
        PushMessage::Empty { reason } => {
            metrics.set_stale(false);
            if live.is_ready() {
                tracing::warn!(
                    reason,
                    "the operator withdrew this pod's configuration: denying every request"
                );
            }
            live.clear();
            metrics.config_cleared();
        }
        PushMessage::Heartbeat { .. } => {}
        PushMessage::UpstreamAuth { credentials } => {
            // Held in memory only: never persisted to the state dir, never logged.
            let auth = sinks.upstream_auth;
            if let Some(pem) = &credentials.signing_key
                && let Err(e) = auth.keys.install(
                    &crate::upstream_auth::KeyMaterial { pem: pem.clone() },
                    &credentials
                        .published_keys
                        .iter()
                        .map(|k| serde_json::json!(k))
                        .collect::<Vec<_>>(),
                )
            {
                tracing::error!(error = %e, "the operator's upstream identity key is unusable");
            }
            let values = credentials
                .secrets
                .into_iter()
                .map(|(k, v)| (k, Arc::<str>::from(v)))
                .collect();
            if auth.secrets.replace(values) {
                tracing::info!(secrets = ?auth.secrets.names(), "upstream credentials from the operator");
            }
        }
        PushMessage::Unknown => tracing::debug!("ignoring an unknown message type"),
    }
}
