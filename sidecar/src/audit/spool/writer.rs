//! The append side of the spool, behind one mutex. The task that decides a call appends its
//! record itself ([`Writer::append`]): the cap, rotation, the seal (uid, sequence, chain) and one
//! `write(2)` into the active segment, a short critical section on the caller's own thread, no
//! hand-off. With `ack: written` the record is answered there and then; with `ack: durable` the
//! caller goes on to the group commit (`commit.rs`).
//!
//! The writer *thread* ([`run`]) only does what nobody waits for: it syncs final records after
//! `fsyncMaxDelay`, writes checkpoints and drop notices, deletes what every sink acknowledged,
//! answers flushes and refreshes the gauges once a second.

use super::commit::{sync_all, sync_deferred};
use super::handle::{Msg, MsgBox, Reply};
use super::shared::{Shared, refresh_gauges};
use super::{Admission, Receipt, SpoolError};
use crate::audit::config::{AckLevel, FullPolicy, SpoolConfig};
use crate::audit::event::uuid_v7;
use crate::audit::janitor::Janitor;
use crate::audit::record::{self, CheckpointInfo, Prepared, Product, RecordKind};
use jiff::Timestamp;
use std::{
    fs::File,
    sync::{Arc, Mutex, MutexGuard, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// Drop notices (checkpoints naming the dropped ranges) are written at most this often.
pub(super) const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: SpoolConfig,
    pub(super) product: Product,
    /// The active segment (shared with a group commit's fdatasync in flight).
    pub(super) file: Option<Arc<File>>,
    pub(super) next_seq: u64,
    pub(super) prev: [u8; 32],
    /// (next_seq, prev) as of the last successful write.
    pub(super) committed: (u64, [u8; 32]),
    /// What the last fdatasync covered (`ack: durable`).
    pub(super) synced: Synced,
    /// Written, waiting for the next fdatasync (`ack: durable`).
    pub(super) deferred: Vec<Pending>,
    /// How many of `deferred` someone waits on before acting.
    pub(super) deferred_urgent: usize,
    /// When the oldest deferred record was written.
    pub(super) deferred_since: Option<Instant>,
    /// The sealed line being written (kept: no allocation per record).
    pub(super) buf: Vec<u8>,
    pub(super) bytes: u64,
    pub(super) since_checkpoint: u64,
    pub(super) last_checkpoint: Instant,
    /// Every range dropped since open (merged).
    pub(super) dropped_ranges: Vec<(u64, u64)>,
    /// Drops not yet announced by a checkpoint.
    pub(super) drop_notice_due: bool,
    pub(super) last_drop_notice: Option<Instant>,
    /// Shut down: appends are refused.
    pub(super) closed: bool,
    pub(super) janitor: Janitor,
    /// The spool's flock, released when the writer thread ends.
    pub(super) lock: Option<File>,
}

pub(super) struct Pending {
    pub(super) reply: Reply,
    pub(super) receipt: Receipt,
    pub(super) queued: Instant,
    pub(super) kind: RecordKind,
    /// Someone waits on it before acting (request-phase and refusal records, checkpoints).
    pub(super) urgent: bool,
}

/// The spool as of the last fdatasync: where to cut back to if a later one fails. Unsynced
/// records are only ever in the active segment (a rotation syncs the segment it closes).
#[derive(Clone, Copy)]
pub(super) struct Synced {
    pub(super) next_seq: u64,
    pub(super) prev: [u8; 32],
    /// Bytes of the active segment.
    pub(super) active_bytes: u64,
}

/// Locks the writer (a panic while it was held leaves a spool nobody can trust: propagate).
pub(super) fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    writer.lock().expect("not poisoned")
}

impl Writer {
    /// Appends one record on the caller's thread: cap, rotation, seal, one `write(2)`. Returns
    /// its receipt once written; with `ack: written` `reply` is answered at once, with
    /// `ack: durable` it waits in `deferred` for the group commit. A failure is sent to `reply`
    /// and returned.
    pub(super) fn append(
        &mut self,
        prepared: &Prepared,
        admission: Admission,
        reply: Reply,
    ) -> Result<Receipt, SpoolError> {
        let queued = Instant::now();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = self
            .seal_into(&mut buf, prepared, admission)
            .and_then(|receipt| self.write_out(&buf).map(|()| receipt));
        self.buf = buf;
        match result {
            Ok(receipt) => {
                self.defer(Pending {
                    reply,
                    receipt: receipt.clone(),
                    queued,
                    kind: prepared.kind,
                    urgent: admission == Admission::New || prepared.kind == RecordKind::Checkpoint,
                });
                Ok(receipt)
            }
            Err(e) => {
                if !matches!(e, SpoolError::Full | SpoolError::Closed) {
                    tracing::error!(error = %e, "audit spool write failed; the record is refused");
                    // Undo what was not written: cut the active segment back to its last good
                    // write and rewind the sequence and the chain to it.
                    if let (Some(f), Some(active)) = (&self.file, self.active_bytes()) {
                        let _ = f.set_len(active);
                    }
                    (self.next_seq, self.prev) = self.committed;
                    self.shared.metrics.append_errors.inc();
                }
                reply.send(Err(e.clone()));
                Err(e)
            }
        }
    }

    /// Makes room (or refuses), opens or rotates the segment, and seals the record into `buf`.
    fn seal_into(
        &mut self,
        buf: &mut Vec<u8>,
        prepared: &Prepared,
        admission: Admission,
    ) -> Result<Receipt, SpoolError> {
        if self.closed {
            return Err(SpoolError::Closed);
        }
        self.committed = (self.next_seq, self.prev);
        let est = (prepared.head.len() + record::SEAL_MAX_BYTES) as u64;
        if self.over_cap(est) {
            match (self.cfg.when_full, admission) {
                (FullPolicy::Block, Admission::New) => {
                    self.shared.full.store(true, Ordering::Relaxed);
                    self.shared.state.lock().expect("not poisoned").refused += 1;
                    self.shared.metrics.appends_refused.inc();
                    return Err(SpoolError::Full);
                }
                (FullPolicy::Block, Admission::Final) => {}
                (FullPolicy::DropOldest, _) => self.make_room(buf, est)?,
            }
        } else if admission == Admission::New {
            self.shared.full.store(false, Ordering::Relaxed);
        }
        if self.file.is_none() {
            self.new_segment_after(None)?;
        } else {
            self.maybe_rotate(buf, est)?;
        }
        let uid = uuid_v7(Timestamp::now());
        let sequence = self.next_seq;
        self.prev = record::seal(
            &prepared.head,
            &uid,
            sequence,
            &self.shared.instance,
            &self.prev,
            buf,
        );
        self.next_seq += 1;
        Ok(Receipt { sequence, uid })
    }

    /// A written record: answered now (`ack: written`) or kept for the group commit.
    fn defer(&mut self, p: Pending) {
        if self.cfg.ack == AckLevel::Written {
            let (first, last) = (p.receipt.sequence, p.receipt.sequence);
            self.answered(first, last, std::iter::once(p));
            return;
        }
        self.deferred_since.get_or_insert_with(Instant::now);
        self.deferred_urgent += usize::from(p.urgent);
        self.deferred.push(p);
    }

    pub(super) fn housekeeping(&mut self) {
        self.cleanup();
        if self.drop_notice_due {
            self.checkpoint("drop", 0);
        } else if let Some(every) = self.cfg.checkpoint_interval
            && self.last_checkpoint.elapsed() >= every
            && self.since_checkpoint > 0
        {
            self.checkpoint("interval", 0);
        }
        refresh_gauges(&self.shared);
    }

    /// Writes a checkpoint record. Room is made first (policy `dropOldest`), so that the record
    /// declares every drop that happened before it.
    pub(super) fn checkpoint(&mut self, reason: &'static str, recovered_truncated_bytes: u64) {
        let est = 4096 + 48 * self.dropped_ranges.len() as u64;
        if self.cfg.when_full == FullPolicy::DropOldest
            && self.over_cap(est)
            && let Err(e) = self.make_room(&mut Vec::new(), est)
        {
            tracing::error!(error = %e, "audit spool: could not make room for a checkpoint");
            return;
        }
        self.drop_notice_due = false;
        if reason == "drop" {
            self.last_drop_notice = Some(Instant::now());
        }
        let info = CheckpointInfo {
            reason,
            instance: self.shared.instance.clone(),
            records_since_last: self.since_checkpoint,
            first_retained_sequence: self.first_retained(),
            last_sequence: self.next_seq - 1,
            spool_bytes: self.bytes,
            dropped_total: self.shared.dropped.load(Ordering::Relaxed),
            dropped_ranges: self.dropped_ranges.clone(),
            recovered_truncated_bytes,
            sinks: self.shared.sink_cursors(),
        };
        let prepared = record::checkpoint_head(&info, &self.product, Timestamp::now());
        let _ = self.append(&prepared, Admission::Final, Reply::Log);
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }

    pub(super) fn first_retained(&self) -> u64 {
        let st = self.shared.state.lock().expect("not poisoned");
        st.segments
            .iter()
            .find(|s| s.end >= s.start)
            .map_or(self.next_seq, |s| s.start)
    }

    /// Whether every record written before `upto` (a `next_seq`) is durable, or was refused.
    pub(super) fn synced_upto(&self, upto: u64) -> bool {
        self.cfg.ack == AckLevel::Written
            || self.synced.next_seq >= upto
            || self.synced.next_seq >= self.committed.0
    }

    /// When the writer thread must look again: at the next tick, or when the oldest deferred
    /// record has waited `fsyncMaxDelay`.
    fn due(&self, next_tick: Instant) -> Instant {
        self.deferred_since
            .map_or(next_tick, |t| (t + self.cfg.fsync_max_delay).min(next_tick))
    }
}

/// The writer thread: control messages, the `fsyncMaxDelay` timer of final records, and the
/// housekeeping once a second.
pub(super) fn run(writer: Arc<Mutex<Writer>>, rx: mpsc::Receiver<MsgBox>) {
    sync_deferred(&writer); // the startup checkpoint
    let tick = Duration::from_secs(1);
    let mut next_tick = Instant::now() + tick;
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    while shutdown.is_none() {
        let due = lock(&writer).due(next_tick);
        let mut flushes = Vec::new();
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(MsgBox(Msg::Wake)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(MsgBox(Msg::Acked)) => lock(&writer).cleanup(),
            Ok(MsgBox(Msg::Flush(tx))) => flushes.push(tx),
            Ok(MsgBox(Msg::Checkpoint(reason, tx))) => {
                {
                    let mut w = lock(&writer);
                    if (w.cfg.checkpoint_interval.is_some() && w.since_checkpoint > 0)
                        || w.drop_notice_due
                    {
                        w.checkpoint(reason, 0);
                    }
                }
                flushes.push(tx);
            }
            Ok(MsgBox(Msg::Shutdown(tx))) => shutdown = Some(tx),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        {
            let mut w = lock(&writer);
            if w.drop_notice_due
                && w.last_drop_notice
                    .is_none_or(|t| t.elapsed() >= DROP_NOTICE_EVERY)
            {
                w.checkpoint("drop", 0);
            }
            if Instant::now() >= next_tick {
                w.housekeeping();
                next_tick = Instant::now() + tick;
            }
        }
        if flushes.is_empty() && shutdown.is_none() {
            // Final records past `fsyncMaxDelay`, checkpoints: synced when due.
            sync_deferred(&writer);
        } else {
            sync_all(&writer);
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
    sync_all(&writer);
    let mut w = lock(&writer);
    w.closed = true;
    w.file = None;
    w.lock = None;
    w.janitor.wait();
    refresh_gauges(&w.shared);
    drop(w);
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}
