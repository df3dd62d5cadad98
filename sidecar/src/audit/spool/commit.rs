//! Committing a batch: one `write(2)` into the active segment, then (with `ack: durable`) one
//! `fdatasync` for everything written since the last one, and the waiters answered. A failed
//! write or sync cuts the segment back to what is known good and refuses the rest.

use super::SpoolError;
use super::shared::SegMeta;
use super::writer::{Synced, Writer};
use crate::audit::config::AckLevel;
use crate::audit::record::RecordKind;
use std::{
    io::Write,
    time::{Instant, SystemTime},
};

impl Writer {
    /// The size of the active segment (read per record: no copy of its metadata).
    pub(super) fn active_bytes(&self) -> Option<u64> {
        let st = self.shared.state.lock().expect("not poisoned");
        st.segments.back().map(|s| s.bytes)
    }

    pub(super) fn active_meta(&self) -> Option<SegMeta> {
        self.shared
            .state
            .lock()
            .expect("not poisoned")
            .segments
            .back()
            .cloned()
    }

    /// Answers the deferred records once they are durable: at once with `ack: written`; with
    /// `ack: durable` when `now` or when they waited `fsyncMaxDelay` or are `fsyncMaxRecords`
    /// many, after one fdatasync. A failed fdatasync cuts the spool back to the last good one and
    /// refuses everything written since.
    pub(super) fn settle(&mut self, now: bool) {
        if self.deferred.is_empty() {
            return;
        }
        if self.cfg.ack == AckLevel::Durable {
            let due = now
                || self.deferred.len() >= self.cfg.fsync_max_records
                || self
                    .deferred_since
                    .is_some_and(|t| t.elapsed() >= self.cfg.fsync_max_delay);
            if !due {
                return;
            }
            if let Err(e) = self.sync() {
                tracing::error!(error = %e, "audit spool fdatasync failed; the records written since the last one are refused");
                self.cut_back_to_synced();
                for p in self.deferred.drain(..) {
                    self.shared.metrics.append_errors.inc();
                    p.reply.send(Err(e.clone()));
                }
                self.deferred_since = None;
                return;
            }
        }
        self.deferred_since = None;
        let ok = std::mem::take(&mut self.deferred);
        let m = &self.shared.metrics;
        let Some(last) = ok.last().map(|p| p.receipt.sequence) else {
            return;
        };
        let mut st = self.shared.state.lock().expect("not poisoned");
        st.batch_times
            .push_back((ok[0].receipt.sequence, SystemTime::now()));
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

    /// fdatasyncs the active segment and remembers what it covered.
    pub(super) fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some(f) = &self.file {
            f.sync_data()?;
            self.shared.metrics.fsyncs.inc();
        }
        self.mark_synced();
        Ok(())
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

    /// Appends the buffer to the active segment (not synced: see [`Writer::settle`]).
    pub(super) fn write_out(&mut self, buf: &[u8]) -> Result<(), SpoolError> {
        if buf.is_empty() {
            return Ok(());
        }
        let f = self
            .file
            .as_mut()
            .expect("a segment is opened before the first record is sealed");
        f.write_all(buf)?;
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
