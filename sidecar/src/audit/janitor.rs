//! The spool's janitor: chores the spool writer hands off so that calls never wait for them.
//!
//! ```text
//! writer ── rotate (ack: written) ── Sync { closed segment, folder } ──┐
//!        ── cleanup ──────────────── Delete { shipped segment } ───────┤ bounded queue
//!                                                                      ▼
//!                               audit-chores thread (SCHED_IDLE): fdatasync │ unlink
//!                                    (bytes not yet deleted still count against the cap)
//! ```
//!
//! Each chore is a few milliseconds of kernel time per 16 MiB segment (writing back or freeing
//! 4,096 cached pages) that nothing waits for. On the writer's thread, a deletion held up every
//! record queued behind it, and the calls waiting on them, for ~2 ms; on a batch thread a sync
//! kept the tokio worker off the CPU as long (`crate::sched`). The janitor runs them as an idle
//! thread, in [`STEP`]-sized system calls of ~0.1 ms each with a short sleep between them:
//! `sync_file_range` starts the write-back of one step, then `fdatasync` only waits; before a
//! deletion, `posix_fadvise(DONTNEED)` drops the cached pages one step at a time. Neither the
//! idle policy nor short calls was enough (`perf sched`, 4,000 req/s): the kernel preempts no
//! system call here, and a worker that was already runnable (preempted by a kernel thread, say)
//! is not a wake-up, while EEVDF keeps running a thread that wakes with lag owed to it until its
//! next tick. Sleeping takes the janitor off the CPU: its longest run fell from ~2 ms to 0.2 ms.
//! With one 16 MiB call per chore, the worker had waited 2–3 ms at each rotation and each
//! deletion: the sidecar's p99 at 4,000 req/s.
//!
//! An idle thread may starve while the CPU is saturated. The queue is therefore short
//! ([`QUEUE`]): when it is full, the writer does the chore itself, so the spool's disk use and
//! the unsynced tail stay bounded as before. A deleted segment's bytes count against the spool's
//! cap until the unlink is done ([`Janitor::pending`]).

use super::metrics::AuditMetrics;
use super::pagecache;
use prometheus::IntCounter;
use std::{
    fs::{self, File},
    io,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

/// Chores queued before the writer does them itself.
const QUEUE: usize = 4;

/// Bytes of a segment handled per system call.
const STEP: u64 = 512 << 10;

/// The janitor sleeps this long between two steps.
const PAUSE: Duration = Duration::from_micros(50);

/// Work handed off by the spool writer.
pub(super) enum Chore {
    /// `ack: written` rotation: sync the closed segment's data, then the folder (for the new
    /// segment's name).
    Sync {
        closed: Option<Arc<File>>,
        dir: File,
    },
    /// A segment every sink has acknowledged.
    Delete { path: PathBuf, bytes: u64 },
    /// Answered once every chore queued before it is done.
    Barrier(mpsc::Sender<()>),
}

/// The handle the spool writer holds. Dropping it finishes the queued chores.
pub(super) struct Janitor {
    tx: Option<SyncSender<Chore>>,
    thread: Option<JoinHandle<()>>,
    pending: Arc<AtomicU64>,
    metrics: AuditMetrics,
}

impl Janitor {
    /// Starts the janitor's thread.
    pub(super) fn start(metrics: AuditMetrics) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Chore>(QUEUE);
        let pending = Arc::new(AtomicU64::new(0));
        let (p, c) = (pending.clone(), metrics.fsyncs.clone());
        let thread = std::thread::Builder::new()
            .name("audit-chores".into())
            .spawn(move || {
                crate::sched::idle();
                for chore in rx {
                    run(chore, &p, &c);
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            pending,
            metrics,
        })
    }

    /// Queues `chore`, or does it now when the janitor is [`QUEUE`] chores behind.
    pub(super) fn hand(&self, chore: Chore) {
        if let Chore::Delete { bytes, .. } = &chore {
            self.pending.fetch_add(*bytes, Ordering::Relaxed);
        }
        let chore = match self.tx.as_ref().map(|tx| tx.try_send(chore)) {
            Some(Ok(())) => return,
            Some(Err(TrySendError::Full(c) | TrySendError::Disconnected(c))) => c,
            None => unreachable!("the sender lives until drop"),
        };
        self.metrics.chores_inline.inc();
        run(chore, &self.pending, &self.metrics.fsyncs);
    }

    /// Waits until every chore handed so far is done.
    pub(super) fn wait(&self) {
        let (tx, rx) = mpsc::channel();
        if self
            .tx
            .as_ref()
            .is_some_and(|q| q.send(Chore::Barrier(tx)).is_ok())
        {
            let _ = rx.recv();
        }
    }

    /// Bytes of the segments handed for deletion and not deleted yet.
    pub(super) fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(chore: Chore, pending: &AtomicU64, fsyncs: &IntCounter) {
    match chore {
        Chore::Sync { closed, dir } => {
            let synced =
                |c: Arc<File>| in_steps(&c, pagecache::write_back).and_then(|()| c.sync_data());
            if closed.is_none_or(|c| synced(c).is_ok()) && dir.sync_all().is_ok() {
                fsyncs.inc();
            }
        }
        Chore::Delete { path, bytes } => {
            // Best effort: unlink frees whatever is still cached.
            if let Ok(f) = File::open(&path) {
                let _ = in_steps(&f, pagecache::drop_cached);
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "could not delete a shipped audit segment");
                }
            }
            pending.fetch_sub(bytes, Ordering::Relaxed);
        }
        Chore::Barrier(done) => {
            let _ = done.send(());
        }
    }
}

/// Calls `step(file, offset, STEP)` for each [`STEP`] of `f`, sleeping [`PAUSE`] after each.
fn in_steps(f: &File, step: fn(&File, u64, u64) -> io::Result<()>) -> io::Result<()> {
    let len = f.metadata()?.len();
    (0..len).step_by(STEP as usize).try_for_each(|off| {
        step(f, off, STEP)?;
        std::thread::sleep(PAUSE);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn file_of(dir: &std::path::Path, name: &str, bytes: usize) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, vec![b'x'; bytes]).expect("write");
        path
    }

    #[test]
    fn a_chore_is_done_in_steps_of_half_a_mebibyte() {
        static SEEN: Mutex<Vec<u64>> = Mutex::new(Vec::new());
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = File::open(file_of(tmp.path(), "seg", (STEP * 2 + 10) as usize)).expect("open");
        in_steps(&f, |_, off, _| {
            SEEN.lock().expect("not poisoned").push(off);
            Ok(())
        })
        .expect("steps");
        assert_eq!(*SEEN.lock().expect("not poisoned"), [0, STEP, 2 * STEP]);
        // The real steps succeed on a real file.
        in_steps(&f, pagecache::write_back).expect("sync_file_range");
        in_steps(&f, pagecache::drop_cached).expect("posix_fadvise");
    }

    #[test]
    fn deletions_count_until_done_and_the_caller_takes_over_when_the_queue_is_full() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let metrics = AuditMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let janitor = Janitor::start(metrics.clone()).expect("start");
        let paths: Vec<_> = (0..10)
            .map(|i| file_of(tmp.path(), &format!("seg{i}"), 700 << 10))
            .collect();
        for path in &paths {
            janitor.hand(Chore::Delete {
                path: path.clone(),
                bytes: 700 << 10,
            });
        }
        // Each deletion takes the janitor two steps and two pauses; ten handed at once overflow
        // its queue of four, and the caller does the rest itself.
        let inline = metrics.chores_inline.get();
        assert!((1..=10).contains(&inline), "{inline} done inline");
        let closed = File::open(file_of(tmp.path(), "closed", 1 << 20)).expect("open");
        let dir = File::open(tmp.path()).expect("dir");
        janitor.hand(Chore::Sync {
            closed: Some(Arc::new(closed)),
            dir,
        });
        // `wait` returns when every chore is done, wherever.
        janitor.wait();
        assert_eq!(janitor.pending(), 0, "every deleted byte is accounted for");
        assert!(
            paths.iter().all(|p| !p.exists()),
            "every segment is deleted"
        );
        assert_eq!(metrics.fsyncs.get(), 1);
        // A segment that is already gone is not an error.
        janitor.hand(Chore::Delete {
            path: tmp.path().join("gone"),
            bytes: 1,
        });
        drop(janitor);
    }
}
