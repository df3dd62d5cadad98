//! Shipping: one task per sink reads the spool from the sink's acknowledged cursor, sends batches,
//! retries with exponential backoff, and acknowledges what the sink has.
//!
//! ```text
//! SpoolReader(cursor) ─► batch ─► Sink::send ─┬─ Delivered ─────────────► ack(last) → cursor file
//!                                             ├─ Unconfirmed(syslog) ──► ack once the connection
//!                                             │                          stayed healthy `confirmAfter`
//!                                             └─ Err ─► backoff, rewind to the cursor, send again
//! ```
//!
//! Delivery is at least once: after a crash or a broken connection, records after the cursor are
//! sent again. Consumers deduplicate by `metadata.uid` (or `metadata.sequence` per instance).

mod file;
mod http;
mod syslog;

pub use file::FileSink;
pub use http::HttpSink;
pub use syslog::SyslogSink;

use super::config::{RetryConfig, SinkConfig, TlsConfig};
use super::metrics::AuditMetrics;
use super::spool::{Batch, SpoolReader};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{io::AsyncWriteExt, sync::watch};

/// Why a send failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Network or file I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The receiver answered with an error.
    #[error("{0}")]
    Rejected(String),
    /// A bad setting (not retried at startup).
    #[error("{0}")]
    Config(String),
}

/// What a successful send means.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver has the records (fsynced file, 2xx answer, written to stdout).
    Delivered,
    /// Written to a connection without acknowledgements; delivered once the connection stays
    /// healthy for the given time.
    Unconfirmed(Duration),
}

/// A configured sink.
#[derive(Debug)]
pub enum Sink {
    /// Rotating JSONL files.
    File(FileSink),
    /// Standard output.
    Stdout,
    /// RFC 5424 over TCP/TLS.
    Syslog(SyslogSink),
    /// HTTP POST.
    Http(HttpSink),
}

impl Sink {
    /// Builds the sink of a configuration entry (no I/O yet).
    pub fn from_config(cfg: &SinkConfig) -> Result<Self, SinkError> {
        let kinds = [
            cfg.file.is_some(),
            cfg.stdout.is_some(),
            cfg.syslog.is_some(),
            cfg.http.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(SinkError::Config(format!(
                "sink {:?} must have exactly one of file, stdout, syslog, http",
                cfg.name
            )));
        }
        if let Some(f) = &cfg.file {
            return Ok(Self::File(FileSink::new(f.clone())));
        }
        if cfg.stdout.is_some() {
            return Ok(Self::Stdout);
        }
        if let Some(s) = &cfg.syslog {
            return Ok(Self::Syslog(SyslogSink::new(s.clone())?));
        }
        let h = cfg.http.as_ref().expect("one kind");
        Ok(Self::Http(HttpSink::new(h.clone())?))
    }

    /// Sends one batch.
    pub async fn send(&mut self, batch: &Batch) -> Result<Delivery, SinkError> {
        match self {
            Self::File(f) => f.send(batch).await,
            Self::Stdout => {
                let mut out = tokio::io::stdout();
                out.write_all(&batch.jsonl).await?;
                out.flush().await?;
                Ok(Delivery::Delivered)
            }
            Self::Syslog(s) => s.send(batch).await,
            Self::Http(h) => h.send(batch).await,
        }
    }

    /// Whether records sent without confirmation can still be trusted to arrive.
    fn healthy(&self) -> bool {
        match self {
            Self::Syslog(s) => s.healthy(),
            _ => true,
        }
    }

    /// Closes connections gracefully.
    async fn close(&mut self) {
        if let Self::Syslog(s) = self {
            s.close().await;
        }
    }
}

/// A rustls client configuration (ring provider) from a [`TlsConfig`].
pub fn client_tls(cfg: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, SinkError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    SinkError::Config(format!("reading CA file {}: {e}", path.display()))
                })?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| SinkError::Config(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SinkError::Config(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| SinkError::Config(format!("reading {}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| SinkError::Config(format!("reading {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SinkError::Config(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(SinkError::Config("certFile and keyFile go together".into())),
    };
    Ok(Arc::new(config))
}

/// The delay before retry number `attempt` (0-based): `initial · 2^attempt`, at most `max`,
/// ±20 % jitter.
pub fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let base = retry
        .initial
        .saturating_mul(1u32 << attempt.min(20))
        .min(retry.max);
    let jitter: f64 = rand::random_range(0.8..1.2);
    base.mul_f64(jitter).min(retry.max)
}

/// After a batch smaller than the sink's batch size, how long a shipper lets records gather
/// before it reads again. At low rates this turns one read, send and cursor write per record into
/// one per LINGER; a full batch is followed at once. Delivery to the SIEM is at most this much
/// later; a call's durability does not depend on it (the spool has the record already).
pub const LINGER: Duration = Duration::from_millis(25);

/// Ships one sink until `stop` turns true and the spool is drained for it (or forever).
pub async fn run_shipper(
    mut reader: SpoolReader,
    mut sink: Sink,
    batch_records: usize,
    retry: RetryConfig,
    metrics: AuditMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let name = reader.name().to_owned();
    let shipped = metrics.records_shipped.with_label_values(&[&name]);
    let retries = metrics.ship_retries.with_label_values(&[&name]);
    // Sent but not yet confirmed: (last sequence, records, confirm at).
    let mut unconfirmed: VecDeque<(u64, u64, Instant)> = VecDeque::new();
    let mut attempt: u32 = 0;
    loop {
        // Confirm what has been on a healthy connection long enough.
        if !unconfirmed.is_empty() && sink.healthy() {
            let now = Instant::now();
            let mut last = None;
            while let Some((seq, n, at)) = unconfirmed.front().copied() {
                if at > now {
                    break;
                }
                unconfirmed.pop_front();
                shipped.inc_by(n);
                last = Some(seq);
            }
            if let Some(seq) = last
                && let Err(e) = reader.ack(seq).await
            {
                tracing::warn!(sink = %name, error = %e, "could not persist the audit cursor");
            }
        } else if !unconfirmed.is_empty() {
            // The connection broke: nothing unconfirmed can be trusted.
            tracing::warn!(sink = %name, records = unconfirmed.iter().map(|u| u.1).sum::<u64>(), "audit sink connection lost; resending unconfirmed records");
            unconfirmed.clear();
            reader.rewind();
        }
        let stopping = *stop.borrow();
        if stopping && unconfirmed.is_empty() && !reader.has_more() {
            break;
        }
        let wait = unconfirmed
            .front()
            .map_or(Duration::from_millis(500), |u| {
                u.2.saturating_duration_since(Instant::now())
            })
            .min(Duration::from_millis(500));
        let batch = tokio::select! {
            b = reader.next_batch(batch_records, wait) => b,
            _ = stop.changed(), if !stopping => continue,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(sink = %name, error = %e, "reading the audit spool failed");
                if matches!(e, super::spool::SpoolError::Closed) && unconfirmed.is_empty() {
                    break;
                }
                tokio::time::sleep(backoff(&retry, attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        let Some(last) = batch.last_sequence() else {
            continue;
        };
        let n = batch.len() as u64;
        let partial = batch.len() < batch_records;
        match sink.send(&batch).await {
            Ok(delivery) => {
                attempt = 0;
                match delivery {
                    Delivery::Delivered => {
                        shipped.inc_by(n);
                        if let Err(e) = reader.ack(last).await {
                            tracing::warn!(sink = %name, error = %e, "could not persist the audit cursor");
                        }
                    }
                    Delivery::Unconfirmed(after) => {
                        unconfirmed.push_back((last, n, Instant::now() + after));
                    }
                }
                if partial && !stopping {
                    tokio::select! {
                        _ = tokio::time::sleep(LINGER) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
            Err(e) => {
                retries.inc();
                let delay = backoff(&retry, attempt);
                tracing::warn!(sink = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "audit sink send failed");
                attempt = attempt.saturating_add(1);
                unconfirmed.clear();
                reader.rewind();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed(), if !stopping => {}
                }
            }
        }
    }
    sink.close().await;
}
