//! The spool handle: what the proxy and the shippers call. An append is admitted by a permit
//! (`maxInFlight`), written on the caller's thread (`writer.rs`) and answered once durable (see
//! [`AckLevel`]): at once with `ack: written`, after the group commit with `ack: durable`.
//!
//! [`AckLevel`]: crate::audit::config::AckLevel

use super::commit::sync_deferred;
use super::reader::SpoolReader;
use super::shared::{Shared, gauge, refresh_gauges};
use super::writer::{Writer, lock};
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
};
use tokio::sync::{Semaphore, oneshot};

/// What the writer thread is told (appends never go through it).
pub(super) enum Msg {
    /// A sink acknowledged: delete what every sink has.
    Acked,
    /// A final record now waits for a sync: its `fsyncMaxDelay` timer starts.
    Wake,
    Flush(oneshot::Sender<()>),
    Checkpoint(&'static str, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// The spool. Cheap to clone; the writer thread stops at [`Spool::shutdown`] or when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct Spool {
    pub(super) shared: Arc<Shared>,
    pub(super) writer: Arc<Mutex<Writer>>,
    /// `ack: durable`.
    pub(super) durable: bool,
    pub(super) tx: mpsc::Sender<MsgBox>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Where the outcome of an append goes.
pub(super) enum Reply {
    /// To a task awaiting it (`ack: durable`: after the group commit).
    Wait(oneshot::Sender<Result<Receipt, SpoolError>>),
    /// To the caller, which has it from [`Writer::append`] already.
    Caller,
    /// Nobody waits (a final record or a checkpoint): a failure goes to the log.
    Log,
}

impl Reply {
    pub(super) fn send(self, result: Result<Receipt, SpoolError>) {
        match (self, result) {
            (Self::Wait(tx), result) => {
                let _ = tx.send(result);
            }
            (Self::Log, Err(e)) => {
                tracing::warn!(error = %e, "audit record lost (a call's final record or a checkpoint)")
            }
            (Self::Log | Self::Caller, _) => {}
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

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
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
    /// forwarded upstream only after this returned `Ok`. The record is sealed and written on
    /// this thread; with `ack: durable` this task then joins (or leads) the group commit.
    pub async fn append(
        &self,
        prepared: Prepared,
        admission: Admission,
    ) -> Result<Receipt, SpoolError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SpoolError::Closed)?;
        if !self.durable {
            return lock(&self.writer).append(&prepared, admission, Reply::Caller);
        }
        let (tx, rx) = oneshot::channel();
        let urgent = {
            let mut w = lock(&self.writer);
            let was_idle = w.deferred.is_empty();
            w.append(&prepared, admission, Reply::Wait(tx))?;
            let urgent = w.sync_due();
            if !urgent && was_idle {
                // A final record alone: the writer thread syncs it after `fsyncMaxDelay`.
                let _ = self.tx.send(MsgBox(Msg::Wake));
            }
            urgent
        };
        if urgent {
            lead_elsewhere(&self.writer, &self.shared);
        }
        rx.await.map_err(|_| SpoolError::Closed)?
    }

    /// Appends the final record of an admitted call without waiting for its durability: nothing
    /// acts on it (the answer has gone out), and no permit is taken (each such call holds one
    /// while its request record is written). It is written now, on this thread; with
    /// `ack: durable` it is synced with the next record someone waits on, or after
    /// `fsyncMaxDelay`. A failure is logged.
    pub fn append_final(&self, prepared: Prepared) -> Result<(), SpoolError> {
        let (due, wake) = {
            let mut w = lock(&self.writer);
            let was_idle = w.deferred.is_empty();
            match w.append(&prepared, Admission::Final, Reply::Log) {
                Err(SpoolError::Closed) => return Err(SpoolError::Closed),
                Err(_) => return Ok(()),
                Ok(_) => {}
            }
            (w.sync_due(), was_idle && self.durable)
        };
        if due {
            lead_elsewhere(&self.writer, &self.shared);
        } else if wake {
            let _ = self.tx.send(MsgBox(Msg::Wake));
        }
        Ok(())
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

/// Leads the group commit off the async worker: the fdatasync (milliseconds on a virtual disk)
/// runs on the blocking pool while the worker goes on deciding other calls, whose records then
/// join the next sync. Run on this thread only outside a runtime (tests, shutdown). Nothing is
/// spawned while a leader is in flight: after letting go it looks for due records again (the
/// SeqCst flag in `commit::lead`), so this record is covered without another thread's wake-up.
fn lead_elsewhere(writer: &Arc<Mutex<Writer>>, shared: &Shared) {
    if shared.syncing.load(Ordering::SeqCst) {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let writer = writer.clone();
            drop(runtime.spawn_blocking(move || sync_deferred(&writer)));
        }
        Err(_) => sync_deferred(writer),
    }
}
