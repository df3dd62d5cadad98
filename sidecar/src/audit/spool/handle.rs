//! The spool handle: what the proxy and the shippers call. An append is admitted by a permit
//! (`maxInFlight`), queued to the writer thread and answered once durable (see [`AckLevel`]).
//!
//! [`AckLevel`]: crate::audit::config::AckLevel

use super::reader::SpoolReader;
use super::shared::{Shared, gauge, refresh_gauges};
use super::{Admission, Receipt, SpoolError, SpoolStats};
use crate::audit::record::Prepared;
use std::{
    fs, io,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Instant,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

pub(super) enum Msg {
    Append {
        prepared: Prepared,
        admission: Admission,
        queued: Instant,
        reply: Reply,
        /// `None` for records nobody waits for (final records, checkpoints).
        _permit: Option<OwnedSemaphorePermit>,
    },
    Acked,
    Flush(oneshot::Sender<()>),
    Checkpoint(&'static str, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The spool. Cheap to clone; the writer thread stops at [`Spool::shutdown`] or when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct Spool {
    pub(super) shared: Arc<Shared>,
    pub(super) tx: mpsc::Sender<MsgBox>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Where the outcome of an append goes: to the task awaiting it, or, for a record nobody waits
/// for, to the log when it failed.
pub(super) struct Reply(pub(super) Option<oneshot::Sender<Result<Receipt, SpoolError>>>);

impl Reply {
    pub(super) fn send(self, result: Result<Receipt, SpoolError>) {
        match (self.0, result) {
            (Some(tx), result) => {
                let _ = tx.send(result);
            }
            (None, Err(e)) => {
                tracing::warn!(error = %e, "audit record lost (a call's final record or a checkpoint)")
            }
            (None, Ok(_)) => {}
        }
    }
}

/// `mpsc::Sender<Msg>` is not `Debug`; this wrapper is.
pub(super) struct MsgBox(pub(super) Msg);

impl std::fmt::Debug for MsgBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

pub(super) fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Spool {
    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Appends a record; resolves once it is durable (see [`AckLevel`]). The call may be
    /// forwarded upstream only after this returned `Ok`.
    pub async fn append(
        &self,
        prepared: Prepared,
        admission: Admission,
    ) -> Result<Receipt, SpoolError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SpoolError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(MsgBox(Msg::Append {
                prepared,
                admission,
                queued: Instant::now(),
                reply: Reply(Some(reply)),
                _permit: Some(permit),
            }))
            .map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)?
    }

    /// Appends the final record of an admitted call without waiting for it: nothing acts on its
    /// durability (the answer has gone out), so no task waits for the writer and no permit is
    /// taken (each such call holds one while its request record is written). A failure is logged
    /// by the writer.
    pub fn append_final(&self, prepared: Prepared) -> Result<(), SpoolError> {
        self.tx
            .send(MsgBox(Msg::Append {
                prepared,
                admission: Admission::Final,
                queued: Instant::now(),
                reply: Reply(None),
                _permit: None,
            }))
            .map_err(|_| SpoolError::Closed)
    }

    /// Whether new calls are currently refused (full, policy `block`).
    pub fn is_full(&self) -> bool {
        self.shared.full.load(Ordering::Relaxed)
    }

    /// Waits until everything appended before is durable.
    pub async fn flush(&self) -> Result<(), SpoolError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(MsgBox(Msg::Flush(tx)))
            .map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)
    }

    /// Writes a checkpoint record now (if checkpoints are on and records were written since the
    /// last one) and waits until it is durable.
    pub async fn checkpoint(&self, reason: &'static str) -> Result<(), SpoolError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(MsgBox(Msg::Checkpoint(reason, tx)))
            .map_err(|_| SpoolError::Closed)?;
        rx.await.map_err(|_| SpoolError::Closed)
    }

    /// Flushes and stops the writer. Further appends fail with `Closed`.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(MsgBox(Msg::Shutdown(tx))).is_ok() {
            let _ = rx.await;
        }
        self.shared.durable.send_modify(|_| {});
        let handle = self.thread.lock().expect("not poisoned").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }

    /// The last durable sequence (0 before the first record).
    pub fn durable_sequence(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// Registers a sink (loading its cursor) and returns its reader. A sink seen for the first
    /// time starts at the oldest record in the spool.
    pub fn reader(&self, sink: &str) -> Result<SpoolReader, SpoolError> {
        if !valid_name(sink, 64) || sink.contains('.') {
            return Err(SpoolError::Config(format!(
                "sink name {sink:?} must match [A-Za-z0-9_-]{{1,64}}"
            )));
        }
        let cursor_path = self
            .shared
            .dir
            .join("cursors")
            .join(format!("{sink}.cursor"));
        let acked = match fs::read_to_string(&cursor_path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| {
                SpoolError::Config(format!(
                    "{} is not a sequence number",
                    cursor_path.display()
                ))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.first_sequence().saturating_sub(1)
            }
            Err(e) => return Err(e.into()),
        };
        let cell = {
            let mut sinks = self.shared.sinks.lock().expect("not poisoned");
            if sinks.contains_key(sink) {
                return Err(SpoolError::Config(format!(
                    "sink {sink:?} is registered twice"
                )));
            }
            let cell = Arc::new(AtomicU64::new(acked));
            sinks.insert(sink.to_owned(), cell.clone());
            cell
        };
        self.shared
            .metrics
            .sink_acked_sequence
            .with_label_values(&[sink])
            .set(gauge(acked));
        Ok(SpoolReader::new(
            self.shared.clone(),
            self.tx.clone(),
            sink,
            cell,
            cursor_path,
        ))
    }

    pub(super) fn first_sequence(&self) -> u64 {
        let st = self.shared.state.lock().expect("not poisoned");
        st.segments
            .iter()
            .find(|s| s.end >= s.start)
            .map_or_else(|| st.segments.back().map_or(1, |s| s.start), |s| s.start)
    }

    /// A point-in-time view.
    pub fn stats(&self) -> SpoolStats {
        let st = self.shared.state.lock().expect("not poisoned");
        SpoolStats {
            instance: self.shared.instance.clone(),
            first_sequence: st
                .segments
                .iter()
                .find(|s| s.end >= s.start)
                .map_or(0, |s| s.start),
            last_sequence: *self.shared.durable.borrow(),
            bytes: st.segments.iter().map(|s| s.bytes).sum(),
            segments: st.segments.len(),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            refused: st.refused,
            sinks: self.shared.sink_cursors(),
        }
    }

    /// Recomputes the depth, bytes and age gauges (done by the writer after every batch and once
    /// a second).
    pub fn refresh_gauges(&self) {
        refresh_gauges(&self.shared);
    }
}
