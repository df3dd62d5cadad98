//! Committing: one `write(2)` per record into the active segment, then (with `ack: durable`) a
//! group commit, one `fdatasync` for everything written since the last one, run by one of the
//! callers waiting for it, and the waiters answered. A failed write or sync cuts the segment
//! back to what is known good and refuses the rest.

use super::SpoolError;
use super::writer::{Pending, Synced, Writer, lock};
use crate::audit::record::RecordKind;
use std::{
    fs::File,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Instant, SystemTime},
};

/// One fdatasync, run outside the writer's lock: the segment, what it will cover, and the
/// records answered when it is done.
struct SyncJob {
    file: Arc<File>,
    covers: Synced,
    batch: Vec<Pending>,
}

impl Writer {
    /// The size of the active segment (read per record: no copy of its metadata).
    pub(super) fn active_bytes(&self) -> Option<u64> {
        let st = self.shared.state.lock().expect("not poisoned");
        st.segments.back().map(|s| s.bytes)
    }

    /// Answers records `first..=last` (in order) as durable: publishes the durable sequence
    /// (readers wake up), counts them and wakes their waiters.
    pub(super) fn answered(
        &mut self,
        first: u64,
        last: u64,
        ok: impl ExactSizeIterator<Item = Pending>,
    ) {
        let m = &self.shared.metrics;
        let mut st = self.shared.state.lock().expect("not poisoned");
        st.batch_times.push_back((first, SystemTime::now()));
        if st.batch_times.len() > 65_536 {
            st.batch_times.pop_front();
        }
        drop(st);
        m.batch_records.observe(ok.len() as f64);
        self.shared.durable.send_replace(last);
        let now = Instant::now();
        for p in ok {
            if p.kind != RecordKind::Checkpoint {
                self.since_checkpoint += 1;
            }
            m.records_written.with_label_values(&[p.kind.label()]).inc();
            m.append_duration
                .observe(now.duration_since(p.queued).as_secs_f64());
            p.reply.send(Ok(p.receipt));
        }
    }

    /// Whether the deferred records should be synced now: someone waits on one, or they are
    /// `fsyncMaxRecords` many or the oldest waited `fsyncMaxDelay`.
    pub(super) fn sync_due(&self) -> bool {
        !self.deferred.is_empty()
            && (self.deferred_urgent > 0
                || self.deferred.len() >= self.cfg.fsync_max_records
                || self
                    .deferred_since
                    .is_some_and(|t| t.elapsed() >= self.cfg.fsync_max_delay))
    }

    /// Takes the deferred records for one fdatasync, if one is due (or any are there, `forced`).
    fn begin_sync(&mut self, forced: bool) -> Option<SyncJob> {
        if !(self.sync_due() || (forced && !self.deferred.is_empty())) {
            return None;
        }
        let file = self.file.clone()?;
        let covers = Synced {
            next_seq: self.committed.0,
            prev: self.committed.1,
            active_bytes: self.active_bytes().unwrap_or(0),
        };
        self.deferred_urgent = 0;
        self.deferred_since = None;
        Some(SyncJob {
            file,
            covers,
            batch: std::mem::take(&mut self.deferred),
        })
    }

    /// Answers a sync's records, or after a failed fdatasync cuts the spool back to the last good
    /// one and refuses everything written since.
    fn end_sync(&mut self, job: SyncJob, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                self.shared.metrics.fsyncs.inc();
                if job.covers.next_seq > self.synced.next_seq {
                    self.synced = job.covers;
                }
                let (Some(first), Some(last)) = (job.batch.first(), job.batch.last()) else {
                    return;
                };
                let (first, last) = (first.receipt.sequence, last.receipt.sequence);
                self.answered(first, last, job.batch.into_iter());
            }
            Err(e) => {
                tracing::error!(error = %e, "audit spool fdatasync failed; the records written since the last one are refused");
                let e = SpoolError::from(e);
                self.cut_back_to_synced();
                let refused = job
                    .batch
                    .into_iter()
                    .chain(std::mem::take(&mut self.deferred));
                for p in refused {
                    self.shared.metrics.append_errors.inc();
                    p.reply.send(Err(e.clone()));
                }
                self.deferred_urgent = 0;
                self.deferred_since = None;
            }
        }
    }

    pub(super) fn mark_synced(&mut self) {
        self.synced = Synced {
            next_seq: self.committed.0,
            prev: self.committed.1,
            active_bytes: self.active_bytes().unwrap_or(0),
        };
    }

    /// After a failed fdatasync: the page cache may have dropped what it did not cover.
    pub(super) fn cut_back_to_synced(&mut self) {
        let s = self.synced;
        if let Some(f) = &self.file {
            let _ = f.set_len(s.active_bytes);
        }
        (self.next_seq, self.prev) = (s.next_seq, s.prev);
        self.committed = (s.next_seq, s.prev);
        let mut st = self.shared.state.lock().expect("not poisoned");
        if let Some(active) = st.segments.back_mut() {
            self.bytes -= active.bytes.saturating_sub(s.active_bytes);
            active.bytes = s.active_bytes;
            active.end = s.next_seq - 1;
        }
    }

    /// Appends the buffer to the active segment with one `write(2)` (not synced: see
    /// [`sync_deferred`]).
    pub(super) fn write_out(&mut self, buf: &[u8]) -> Result<(), SpoolError> {
        if buf.is_empty() {
            return Ok(());
        }
        let f = self
            .file
            .as_deref()
            .expect("a segment is opened before the first record is sealed");
        (&*f).write_all(buf)?;
        self.bytes += buf.len() as u64;
        self.committed = (self.next_seq, self.prev);
        self.shared.metrics.bytes_written.inc_by(buf.len() as u64);
        let mut st = self.shared.state.lock().expect("not poisoned");
        let active = st.segments.back_mut().expect("an active segment");
        active.bytes += buf.len() as u64;
        active.end = self.next_seq - 1;
        Ok(())
    }
}

/// The group commit (`ack: durable`). A caller whose record someone waits on comes here after
/// its append: when no sync is in flight it becomes the leader and runs fdatasync itself, outside
/// the writer's lock, so that other callers go on appending; callers that find a sync in flight
/// return at once and wait for their answer, which the leader gives with its next sync: it syncs
/// again as long as records it did not cover are due. One fdatasync covers everything written
/// before it started.
pub(super) fn sync_deferred(writer: &Mutex<Writer>) {
    let shared = lock(writer).shared.clone();
    while lead(writer, &shared.syncing, false) {}
}

/// Syncs until everything written before this call is durable, due or not (flushes,
/// checkpoints, shutdown: the writer thread), waiting for a sync another thread has in flight.
pub(super) fn sync_all(writer: &Mutex<Writer>) {
    let (shared, upto) = {
        let w = lock(writer);
        (w.shared.clone(), w.next_seq)
    };
    while !lock(writer).synced_upto(upto) {
        if !lead(writer, &shared.syncing, true) {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }
    // Callers that found this thread leading wait for it: their records are due now.
    sync_deferred(writer);
}

/// One turn as the leader, if no other is: syncs while records are due (the first one even if
/// not due, when `forced`). Returns whether it led and, after letting go, found records due
/// again (appended by callers that found it leading): then the caller leads another turn.
fn lead(writer: &Mutex<Writer>, syncing: &AtomicBool, mut forced: bool) -> bool {
    // SeqCst read-modify-writes on one flag: either a leader sees a record appended before a
    // caller's swap when it looks again after letting go, or that caller leads.
    if syncing.swap(true, Ordering::SeqCst) {
        return false;
    }
    loop {
        let Some(job) = lock(writer).begin_sync(std::mem::take(&mut forced)) else {
            break;
        };
        let result = job.file.sync_data();
        lock(writer).end_sync(job, result);
    }
    syncing.swap(false, Ordering::SeqCst);
    lock(writer).sync_due()
}
