//! Segments: starting a new one (and syncing the folder), rotating at `segmentBytes`, the cap
//! (`block` refuses, `dropOldest` deletes the oldest), and handing segments every sink has
//! acknowledged to the janitor.

use super::SpoolError;
use super::shared::{SegMeta, segment_path};
use super::writer::Writer;
use crate::audit::config::AckLevel;
use crate::audit::janitor::Chore;
use std::{
    fs::{self, File, OpenOptions},
    sync::{Arc, atomic::Ordering},
};

impl Writer {
    /// Starts a new segment for `self.next_seq` (the previous one must be flushed). With
    /// `ack: durable` the folder is synced at once (the new name must survive a power loss before
    /// a record in it is acknowledged); with `ack: written` by `closed`'s background sync.
    pub(super) fn new_segment_after(
        &mut self,
        closed: Option<Arc<File>>,
    ) -> Result<(), SpoolError> {
        let path = segment_path(&self.shared.dir, self.next_seq);
        let f = Arc::new(OpenOptions::new().create(true).append(true).open(&path)?);
        let dir = File::open(self.shared.dir.join("segments"))?;
        if self.cfg.ack == AckLevel::Durable {
            dir.sync_all()?;
        } else {
            // `ack: written` promises the page cache, not the disk: the closed segment and the
            // folder go to disk in the background, not on the thread every call's request record
            // waits for (an fdatasync of a 16 MiB segment takes tens of milliseconds).
            self.janitor.hand(Chore::Sync { closed, dir });
        }
        self.file = Some(f);
        self.shared
            .state
            .lock()
            .expect("not poisoned")
            .segments
            .push_back(SegMeta {
                start: self.next_seq,
                end: self.next_seq - 1,
                bytes: 0,
                path,
            });
        Ok(())
    }

    /// Closes the active segment (flushing `buf` into it first) when the next record would make
    /// it too big.
    pub(super) fn maybe_rotate(&mut self, buf: &mut Vec<u8>, est: u64) -> Result<(), SpoolError> {
        let Some(active) = self.active_bytes() else {
            return Ok(());
        };
        let size = active + buf.len() as u64;
        if size == 0 || size + est <= self.cfg.segment_bytes {
            return Ok(());
        }
        self.rotate(buf)
    }

    pub(super) fn rotate(&mut self, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
        self.write_out(buf)?;
        buf.clear();
        if self.cfg.ack == AckLevel::Durable
            && let Some(f) = &self.file
        {
            f.sync_data()?;
            self.shared.metrics.fsyncs.inc();
        }
        let closed = self.file.take();
        self.new_segment_after(closed)?;
        self.mark_synced();
        Ok(())
    }

    /// Policy `dropOldest`: deletes the oldest segments until `est` more bytes fit.
    pub(super) fn make_room(&mut self, buf: &mut Vec<u8>, est: u64) -> Result<(), SpoolError> {
        let sinks_min = self.min_acked();
        loop {
            if !self.over_cap(buf.len() as u64 + est) {
                return Ok(());
            }
            let count = self
                .shared
                .state
                .lock()
                .expect("not poisoned")
                .segments
                .len();
            if count <= 1 {
                if self
                    .active_bytes()
                    .is_some_and(|a| a + buf.len() as u64 > 0)
                {
                    // Only the active segment is left: close it so it can go.
                    self.rotate(buf)?;
                    continue;
                }
                return Ok(());
            }
            let oldest = self
                .shared
                .state
                .lock()
                .expect("not poisoned")
                .segments
                .pop_front()
                .expect("two segments");
            fs::remove_file(&oldest.path)?;
            self.bytes = self.bytes.saturating_sub(oldest.bytes);
            if oldest.end >= oldest.start {
                let from = oldest.start.max(sinks_min.map_or(0, |a| a + 1));
                if from <= oldest.end {
                    let n = oldest.end - from + 1;
                    self.shared.dropped.fetch_add(n, Ordering::Relaxed);
                    self.shared.metrics.records_dropped.inc_by(n);
                    self.note_dropped(from, oldest.end);
                }
            }
        }
    }

    /// Adds a dropped range to the cumulative list (merged, the last 1024 kept).
    pub(super) fn note_dropped(&mut self, from: u64, to: u64) {
        self.drop_notice_due = true;
        match self.dropped_ranges.last_mut() {
            Some((_, end)) if *end + 1 >= from => *end = (*end).max(to),
            _ => self.dropped_ranges.push((from, to)),
        }
        if self.dropped_ranges.len() > 1024 {
            self.dropped_ranges.remove(0);
        }
    }

    /// Whether `extra` more bytes would pass the cap. Segments the janitor has yet to delete
    /// count; when the bytes fit only without them, this waits for the janitor.
    pub(super) fn over_cap(&self, extra: u64) -> bool {
        let need = self.bytes + extra;
        if need > self.cfg.max_bytes {
            return true;
        }
        if need + self.janitor.pending() > self.cfg.max_bytes {
            self.janitor.wait();
        }
        false
    }

    pub(super) fn min_acked(&self) -> Option<u64> {
        self.shared
            .sinks
            .lock()
            .expect("not poisoned")
            .values()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
    }

    /// Deletes closed segments every registered sink has acknowledged.
    pub(super) fn cleanup(&mut self) {
        let Some(min) = self.min_acked() else { return };
        loop {
            let victim = {
                let mut st = self.shared.state.lock().expect("not poisoned");
                match st.segments.front() {
                    Some(s) if st.segments.len() > 1 && s.end <= min => st.segments.pop_front(),
                    _ => None,
                }
            };
            let Some(seg) = victim else { break };
            self.bytes = self.bytes.saturating_sub(seg.bytes);
            self.janitor.hand(Chore::Delete {
                path: seg.path,
                bytes: seg.bytes,
            });
            let mut st = self.shared.state.lock().expect("not poisoned");
            while st.batch_times.len() > 1
                && st.batch_times.get(1).is_some_and(|(s, _)| *s <= min + 1)
            {
                st.batch_times.pop_front();
            }
        }
        if self.bytes < self.cfg.max_bytes {
            self.shared.full.store(false, Ordering::Relaxed);
        }
    }
}
