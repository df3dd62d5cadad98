//! What the writer thread shares with the handles and the readers: the segment list, the
//! durable sequence (a watch channel readers wait on), sink cursors, and the gauges computed
//! from them.

use crate::audit::metrics::AuditMetrics;
use std::sync::Arc;
use std::{
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::SystemTime,
};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub(super) struct SegMeta {
    pub(super) start: u64,
    /// Last sequence in the segment; `start - 1` while empty.
    pub(super) end: u64,
    pub(super) bytes: u64,
    pub(super) path: PathBuf,
}

#[derive(Debug, Default)]
pub(super) struct SharedState {
    pub(super) segments: VecDeque<SegMeta>,
    /// (first sequence of a write batch, when it was written), for the oldest-unshipped age.
    pub(super) batch_times: VecDeque<(u64, SystemTime)>,
    pub(super) refused: u64,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) instance: String,
    pub(super) state: Mutex<SharedState>,
    pub(super) sinks: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    pub(super) durable: watch::Sender<u64>,
    pub(super) dropped: AtomicU64,
    pub(super) full: AtomicBool,
    /// A group commit's fdatasync is in flight (`commit::sync_deferred`).
    pub(super) syncing: AtomicBool,
    pub(super) metrics: AuditMetrics,
}

impl Shared {
    /// Each registered sink's acknowledged sequence.
    pub(super) fn sink_cursors(&self) -> BTreeMap<String, u64> {
        self.sinks
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

pub(super) fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join("segments").join(format!("{start:020}.jsonl"))
}

pub(super) fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn refresh_gauges(shared: &Shared) {
    let m = &shared.metrics;
    let last = *shared.durable.borrow();
    let sinks = shared.sink_cursors();
    let st = shared.state.lock().expect("not poisoned");
    let first = st
        .segments
        .iter()
        .find(|s| s.end >= s.start)
        .map_or(last + 1, |s| s.start);
    let min_acked = sinks
        .values()
        .copied()
        .min()
        .unwrap_or(first.saturating_sub(1));
    let unshipped_from = min_acked.max(first.saturating_sub(1));
    let records: u64 = st
        .segments
        .iter()
        .filter(|s| s.end >= s.start)
        .map(|s| s.end.saturating_sub(unshipped_from.max(s.start - 1)))
        .sum();
    m.spool_records.set(gauge(records));
    m.spool_bytes
        .set(gauge(st.segments.iter().map(|s| s.bytes).sum()));
    m.spool_segments.set(gauge(st.segments.len() as u64));
    m.last_sequence.set(gauge(last));
    let now = SystemTime::now();
    for (name, acked) in &sinks {
        m.sink_acked_sequence
            .with_label_values(&[name])
            .set(gauge(*acked));
        let age = if *acked >= last {
            0.0
        } else {
            let next = acked + 1;
            st.batch_times
                .iter()
                .take_while(|(seq, _)| *seq <= next)
                .last()
                .or(st.batch_times.front())
                .and_then(|(_, t)| now.duration_since(*t).ok())
                .map_or(0.0, |d| d.as_secs_f64())
        };
        m.oldest_unshipped_age.with_label_values(&[name]).set(age);
    }
    m.spool_full.set(if shared.full.load(Ordering::Relaxed) {
        1.0
    } else {
        0.0
    });
}
