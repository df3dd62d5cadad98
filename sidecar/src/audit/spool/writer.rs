//! The writer thread: takes what is queued (at most `fsyncMaxRecords`, collecting for at most
//! `fsyncMaxDelay`), seals each record (uid, sequence, chain) into one buffer, and hands the
//! batch to `commit.rs`; writes checkpoints and does the housekeeping once a second.

use super::handle::{Msg, MsgBox, Reply};
use super::shared::{Shared, refresh_gauges};
use super::{Admission, Receipt, SpoolError};
use crate::audit::config::{FullPolicy, SpoolConfig};
use crate::audit::event::uuid_v7;
use crate::audit::janitor::Janitor;
use crate::audit::record::{self, CheckpointInfo, Product, RecordKind};
use jiff::Timestamp;
use std::{
    fs::File,
    sync::{Arc, atomic::Ordering, mpsc},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

/// Drop notices (checkpoints naming the dropped ranges) are written at most this often.
pub(super) const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) cfg: SpoolConfig,
    pub(super) product: Product,
    pub(super) file: Option<File>,
    pub(super) next_seq: u64,
    pub(super) prev: [u8; 32],
    /// (next_seq, prev) as of the last successful write.
    pub(super) committed: (u64, [u8; 32]),
    /// What the last fdatasync covered (`ack: durable`).
    pub(super) synced: Synced,
    /// Written, waiting for the next fdatasync (`ack: durable`, final records).
    pub(super) deferred: Vec<Pending>,
    /// When the oldest deferred record was written.
    pub(super) deferred_since: Option<Instant>,
    pub(super) bytes: u64,
    pub(super) since_checkpoint: u64,
    pub(super) last_checkpoint: Instant,
    /// Every range dropped since open (merged).
    pub(super) dropped_ranges: Vec<(u64, u64)>,
    /// Drops not yet announced by a checkpoint.
    pub(super) drop_notice_due: bool,
    pub(super) last_drop_notice: Option<Instant>,
    /// Some(truncated bytes) when the spool was reopened with records in it.
    pub(super) startup: Option<u64>,
    pub(super) janitor: Janitor,
    pub(super) _lock: File,
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

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<MsgBox>) {
        if let Some(truncated) = self.startup.take()
            && self.cfg.checkpoint_interval.is_some()
        {
            self.checkpoint("startup", truncated);
        }
        let tick = Duration::from_secs(1);
        let mut next_tick = Instant::now() + tick;
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        while shutdown.is_none() {
            let due = self
                .deferred_since
                .map_or(next_tick, |t| (t + self.cfg.fsync_max_delay).min(next_tick));
            let first = match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(MsgBox(m)) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.settle(false);
                    if Instant::now() >= next_tick {
                        self.housekeeping();
                        next_tick = Instant::now() + tick;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.settle(true);
                    break;
                }
            };
            let opened = Instant::now();
            let mut batch = vec![first];
            let mut appends = 1;
            while appends < self.cfg.fsync_max_records
                && opened.elapsed() < self.cfg.fsync_max_delay
            {
                match rx.try_recv() {
                    Ok(MsgBox(m)) => {
                        appends += usize::from(matches!(m, Msg::Append { .. }));
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            shutdown = self.process(batch);
            if self.drop_notice_due
                && self
                    .last_drop_notice
                    .is_none_or(|t| t.elapsed() >= DROP_NOTICE_EVERY)
            {
                self.checkpoint("drop", 0);
            }
            if Instant::now() >= next_tick {
                self.housekeeping();
                next_tick = Instant::now() + tick;
            }
        }
        self.janitor.wait();
        refresh_gauges(&self.shared);
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
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
        self.process(vec![Msg::Append {
            prepared,
            admission: Admission::Final,
            queued: Instant::now(),
            reply: Reply(None),
            _permit: None,
        }]);
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

    /// Writes one batch; returns the shutdown waiter if the batch asked to stop.
    pub(super) fn process(&mut self, batch: Vec<Msg>) -> Option<oneshot::Sender<()>> {
        let mut buf = Vec::with_capacity(batch.len() * 1024);
        let mut pending: Vec<Pending> = Vec::new();
        let mut flushes = Vec::new();
        let mut shutdown = None;
        let mut acked = false;
        let mut checkpoint = None;
        self.committed = (self.next_seq, self.prev);
        let m = self.shared.metrics.clone();
        let mut failed: Option<SpoolError> = None;
        for msg in batch {
            match msg {
                Msg::Append {
                    prepared,
                    admission,
                    queued,
                    reply,
                    _permit,
                } => {
                    if failed.is_some() {
                        reply.send(Err(SpoolError::Closed));
                        continue;
                    }
                    let est = (prepared.head.len() + record::SEAL_MAX_BYTES) as u64;
                    if self.over_cap(buf.len() as u64 + est) {
                        match (self.cfg.when_full, admission) {
                            (FullPolicy::Block, Admission::New) => {
                                self.shared.full.store(true, Ordering::Relaxed);
                                self.shared.state.lock().expect("not poisoned").refused += 1;
                                m.appends_refused.inc();
                                reply.send(Err(SpoolError::Full));
                                continue;
                            }
                            (FullPolicy::Block, Admission::Final) => {}
                            (FullPolicy::DropOldest, _) => {
                                if let Err(e) = self.make_room(&mut buf, est) {
                                    failed = Some(e);
                                    reply.send(Err(SpoolError::Closed));
                                    continue;
                                }
                            }
                        }
                    } else if admission == Admission::New {
                        self.shared.full.store(false, Ordering::Relaxed);
                    }
                    let ready = if self.file.is_none() {
                        self.new_segment_after(None)
                    } else {
                        self.maybe_rotate(&mut buf, est)
                    };
                    if let Err(e) = ready {
                        failed = Some(e);
                        reply.send(Err(SpoolError::Closed));
                        continue;
                    }
                    let uid = uuid_v7(Timestamp::now());
                    let seq = self.next_seq;
                    self.prev = record::seal(
                        &prepared.head,
                        &uid,
                        seq,
                        &self.shared.instance,
                        &self.prev,
                        &mut buf,
                    );
                    self.next_seq += 1;
                    pending.push(Pending {
                        reply,
                        receipt: Receipt { sequence: seq, uid },
                        queued,
                        kind: prepared.kind,
                        urgent: admission == Admission::New
                            || prepared.kind == RecordKind::Checkpoint,
                    });
                }
                Msg::Acked => acked = true,
                Msg::Flush(tx) => flushes.push(tx),
                Msg::Checkpoint(reason, tx) => {
                    checkpoint = Some(reason);
                    flushes.push(tx);
                }
                Msg::Shutdown(tx) => shutdown = Some(tx),
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => self.write_out(&buf),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "audit spool write failed; the unwritten part of the batch is refused");
            // Undo what was not written: cut the active segment back to its last good write and
            // rewind the sequence and the chain to it.
            if let (Some(f), Some(active)) = (&self.file, self.active_meta()) {
                let _ = f.set_len(active.bytes);
            }
            (self.next_seq, self.prev) = self.committed;
        }
        let committed = self.committed.0;
        let (ok, refused): (Vec<Pending>, Vec<Pending>) = pending
            .into_iter()
            .partition(|p| p.receipt.sequence < committed);
        let urgent = ok.iter().any(|p| p.urgent)
            || !flushes.is_empty()
            || checkpoint.is_some()
            || shutdown.is_some();
        if !ok.is_empty() {
            self.deferred_since.get_or_insert_with(Instant::now);
        }
        self.deferred.extend(ok);
        self.settle(urgent);
        if let Err(e) = result {
            for p in refused {
                m.append_errors.inc();
                p.reply.send(Err(e.clone()));
            }
        }
        if acked {
            self.cleanup();
        }
        if let Some(reason) = checkpoint
            && ((self.cfg.checkpoint_interval.is_some() && self.since_checkpoint > 0)
                || self.drop_notice_due)
        {
            self.checkpoint(reason, 0);
        }
        for f in flushes {
            let _ = f.send(());
        }
        shutdown
    }
}
