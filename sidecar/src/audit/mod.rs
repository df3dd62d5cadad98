//! The audit trail: one OCSF 1.8.0 API Activity (6003) record per call (`tools/call`,
//! `resources/read`, `resources/subscribe`, `prompts/get`, `completion/complete`), per refused
//! request and per request of the server to a client, made durable in a local spool before the call is forwarded, shipped to SIEM sinks at
//! least once, hash-chained for tamper evidence. See `docs/audit.md`.
//!
//! ```text
//! proxy ── AuditEvent ──► Auditor::record ──► Recorder::prepare (redact, cap, OCSF JSON)
//!                                        └──► Spool::append (caller's task): seal (uid, sequence,
//!                                             chain), write(2); durable: group commit ─► Receipt
//!                         shippers (one per sink) ◄── SpoolReader(cursor) ─► file │ stdout │
//!                                                                             syslog │ http
//! mcp-warden audit verify │ query  ◄── segment / sink files
//! ```
//!
//! For the proxy:
//!
//! ```text
//! let receipt = auditor.record(&event /* Outcome::Forwarding */, &redaction).await?; // 503 on Err
//! … forward, wait for the answer …
//! auditor.record_final(&final_event /* Outcome::Answered, … */, &redaction)?; // not awaited
//! ```

pub mod config;
pub mod event;
mod janitor;
pub mod metrics;
mod pagecache;
pub mod query;
pub mod record;
pub mod redact;
pub mod ship;
pub mod spool;
pub mod verify;

pub use config::{AckLevel, AuditConfig, FullPolicy, SinkConfig, SpoolConfig};
pub use event::{
    AuditEvent, ClientInfo, DecisionInfo, DecisionMode, JsonRpcError, Outcome, PrincipalInfo,
    ResponseInfo, ServerInfo, ServerRequestInfo, ToolInfo, TransportInfo, new_call_uid,
};
pub use metrics::AuditMetrics;
pub use record::{Prepared, Product, Recorder};
pub use redact::{HmacKey, Redaction, RedactionError};
pub use spool::{Admission, Receipt, Spool, SpoolError, SpoolStats};

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle};

/// Why the audit pipeline could not start or record.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Spool trouble (`Full` → answer 503).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The redaction key or rules.
    #[error(transparent)]
    Redaction(#[from] RedactionError),
    /// A sink's configuration.
    #[error("audit sink {name}: {source}")]
    Sink {
        /// The sink.
        name: String,
        /// Why.
        source: ship::SinkError,
    },
    /// Metrics registration.
    #[error("audit metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl AuditError {
    /// Whether the spool refused the record because it is full (policy `block`).
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Spool(SpoolError::Full))
    }
}

/// The running audit pipeline: recorder, spool and shippers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Auditor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    recorder: Recorder,
    spool: Spool,
    metrics: AuditMetrics,
    stop: watch::Sender<bool>,
    shippers: Mutex<Vec<JoinHandle<()>>>,
}

impl Auditor {
    /// Opens the spool, registers the metrics in `registry` and starts one shipper per sink.
    /// Must run inside a Tokio runtime.
    pub fn start(cfg: &AuditConfig, registry: &prometheus::Registry) -> Result<Self, AuditError> {
        let metrics = AuditMetrics::register(registry)?;
        Self::start_with_metrics(cfg, metrics)
    }

    /// As [`Auditor::start`], with metrics already registered.
    pub fn start_with_metrics(
        cfg: &AuditConfig,
        metrics: AuditMetrics,
    ) -> Result<Self, AuditError> {
        let key = match &cfg.redaction.key_file {
            Some(path) => HmacKey::from_file(path)?,
            None => {
                tracing::warn!(
                    "no audit redaction key configured: using a random one (hashes do not correlate across restarts)"
                );
                HmacKey::random()
            }
        };
        let always = Redaction::new(&cfg.redaction.always_redact, false)?;
        let recorder = Recorder::new(
            key,
            always,
            cfg.redaction.max_record_bytes,
            Product::default(),
        );
        // Build every sink before touching the spool, so a bad sink leaves nothing running.
        let mut sinks = Vec::new();
        for s in &cfg.sinks {
            let sink = ship::Sink::from_config(s).map_err(|source| AuditError::Sink {
                name: s.name.clone(),
                source,
            })?;
            sinks.push((s.name.clone(), s.batch_records.max(1), sink));
        }
        let spool = Spool::open(
            cfg.spool.clone(),
            metrics.clone(),
            recorder.product().clone(),
        )?;
        let (stop, _) = watch::channel(false);
        let mut readers = Vec::new();
        for (name, batch, sink) in sinks {
            readers.push((spool.reader(&name)?, batch, sink));
        }
        let shippers = readers
            .into_iter()
            .map(|(reader, batch, sink)| {
                tokio::spawn(ship::run_shipper(
                    reader,
                    sink,
                    batch,
                    cfg.retry.clone(),
                    metrics.clone(),
                    stop.subscribe(),
                ))
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                recorder,
                spool,
                metrics,
                stop,
                shippers: Mutex::new(shippers),
            }),
        })
    }

    /// Records one event. Resolves once the record is durable in the spool: for an
    /// [`Outcome::Forwarding`] event, forward the call only after `Ok`. `Err(e)` with
    /// `e.is_full()` means: answer 503. Request-phase and refusal records are subject to the
    /// spool cap; final records of admitted calls are always accepted.
    pub async fn record(
        &self,
        event: &AuditEvent,
        redaction: &Redaction,
    ) -> Result<Receipt, AuditError> {
        let prepared = self.inner.recorder.prepare(event, redaction);
        let admission = match event.outcome {
            Outcome::Forwarding | Outcome::Denied => Admission::New,
            _ => Admission::Final,
        };
        Ok(self.inner.spool.append(prepared, admission).await?)
    }

    /// Records the final event of an admitted call without waiting for the spool (see
    /// [`Spool::append_final`]); `Err` only when the spool is closed.
    pub fn record_final(
        &self,
        event: &AuditEvent,
        redaction: &Redaction,
    ) -> Result<(), AuditError> {
        let prepared = self.inner.recorder.prepare(event, redaction);
        Ok(self.inner.spool.append_final(prepared)?)
    }

    /// Whether new calls are currently refused (spool full, policy `block`): the proxy may answer
    /// 503 before doing any work.
    pub fn is_full(&self) -> bool {
        self.inner.spool.is_full()
    }

    /// The renderer (for tests and tools).
    pub fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    /// The metrics.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.inner.metrics
    }

    /// Graceful stop: writes a final checkpoint, lets every sink ship what is in the spool (at
    /// most `drain` long), then stops the writer. Returns whether every sink caught up; what is
    /// left is shipped after the next start.
    pub async fn shutdown(&self, drain: Duration) -> bool {
        let _ = self.inner.spool.checkpoint("shutdown").await;
        let _ = self.inner.spool.flush().await;
        let _ = self.inner.stop.send(true);
        let handles: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.shippers.lock().expect("not poisoned"));
        let deadline = tokio::time::Instant::now() + drain;
        let mut drained = true;
        for mut h in handles {
            if tokio::time::timeout_at(deadline, &mut h).await.is_err() {
                h.abort();
                drained = false;
            }
        }
        self.inner.spool.shutdown().await;
        drained
    }
}
