//! The durable spool: append-only segment files, one writer thread with group commit, per-sink
//! acknowledged cursors.
//!
//! ```text
//! <dir>/lock                       held (flock) by the process that owns the spool
//! <dir>/instance                   the instance id written in every record
//! <dir>/segments/<seq:020>.jsonl   sealed records, one per line; the name is the first sequence
//! <dir>/cursors/<sink>.cursor      last sequence acknowledged by that sink (decimal)
//!
//! append(prepared) ──► queue ──► writer thread: seal (uid, sequence, chain), cap policy,
//!                                write(2) the batch, fdatasync ──► durable seq ──► receipts
//!                                                                      │
//! SpoolReader (per sink) ◄─────── reads lines ≤ durable seq ◄──────────┘
//!       ack(seq) ──► cursor file ──► janitor deletes segments every sink has acknowledged
//! ```
//!
//! Group commit: the writer takes what is queued (at most `fsyncMaxRecords`, collecting for at
//! most `fsyncMaxDelay`), writes it with one `write(2)` and one `fdatasync`, then answers. Under
//! load batches grow by themselves while the previous fsync runs; when idle a record is synced
//! at once. A batch of final records only (nobody waits on them before acting) is written at
//! once but synced with the next batch that needs it, or after `fsyncMaxDelay`: a call costs one
//! fsync, not two, and its request record never queues behind the previous call's final one.
//!
//! Recovery: the last segment is scanned; a torn or unverifiable tail (never acknowledged: it was
//! not yet synced) is cut off, and the sequence and the chain continue from the last good record.

use super::config::{AckLevel, FullPolicy, SpoolConfig};
use super::event::uuid_v7;
use super::janitor::{Chore, Janitor};
use super::metrics::AuditMetrics;
use super::record::{self, CheckpointInfo, GENESIS, Prepared, Product, RecordKind};
use bytes::Bytes;
use jiff::Timestamp;
use std::{
    collections::{BTreeMap, VecDeque},
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

/// Why an append (or opening the spool) failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool is at its cap and the policy is `block`: answer 503 until the sinks catch up.
    #[error("the audit spool is full")]
    Full,
    /// The spool was shut down, or its writer stopped.
    #[error("the audit spool is closed")]
    Closed,
    /// Another process holds the spool directory.
    #[error("the audit spool {0} is in use by another process")]
    Locked(String),
    /// A bad setting.
    #[error("audit spool configuration: {0}")]
    Config(String),
    /// The disk said no.
    #[error("audit spool I/O: {0}")]
    Io(Arc<io::Error>),
}

impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// File work moved to the blocking pool that panicked or was cancelled.
impl From<tokio::task::JoinError> for SpoolError {
    fn from(e: tokio::task::JoinError) -> Self {
        io::Error::other(e.to_string()).into()
    }
}

/// Proof that a record is in the spool (durable unless `ack: written`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// `metadata.sequence`.
    pub sequence: u64,
    /// `metadata.uid`.
    pub uid: String,
}

/// Whether the cap applies to an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new call or refused request: refused when the spool is full (policy `block`).
    New,
    /// The final record of a call whose request record is already in: always accepted (it may
    /// exceed the cap by the records of the calls in flight).
    Final,
}

/// A point-in-time view of the spool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// The instance id.
    pub instance: String,
    /// Oldest sequence still in the spool (0 when empty).
    pub first_sequence: u64,
    /// Last durable sequence (0 when none yet).
    pub last_sequence: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Records dropped by `dropOldest` since open.
    pub dropped: u64,
    /// Appends refused since open.
    pub refused: u64,
    /// Acknowledged sequence per registered sink.
    pub sinks: BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
struct SegMeta {
    start: u64,
    /// Last sequence in the segment; `start - 1` while empty.
    end: u64,
    bytes: u64,
    path: PathBuf,
}

#[derive(Debug, Default)]
struct SharedState {
    segments: VecDeque<SegMeta>,
    /// (first sequence of a write batch, when it was written), for the oldest-unshipped age.
    batch_times: VecDeque<(u64, SystemTime)>,
    refused: u64,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    instance: String,
    state: Mutex<SharedState>,
    sinks: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    durable: watch::Sender<u64>,
    dropped: AtomicU64,
    full: AtomicBool,
    metrics: AuditMetrics,
}

enum Msg {
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
    shared: Arc<Shared>,
    tx: mpsc::Sender<MsgBox>,
    permits: Arc<Semaphore>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// Where the outcome of an append goes: to the task awaiting it, or, for a record nobody waits
/// for, to the log when it failed.
struct Reply(Option<oneshot::Sender<Result<Receipt, SpoolError>>>);

impl Reply {
    fn send(self, result: Result<Receipt, SpoolError>) {
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
struct MsgBox(Msg);

impl std::fmt::Debug for MsgBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join("segments").join(format!("{start:020}.jsonl"))
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Spool {
    /// Opens (or creates) the spool in `cfg.dir`, recovers its tail, and starts the writer.
    /// `product` is used for checkpoint records.
    pub fn open(
        cfg: SpoolConfig,
        metrics: AuditMetrics,
        product: Product,
    ) -> Result<Self, SpoolError> {
        if cfg.max_bytes < 64 * 1024 {
            return Err(SpoolError::Config("maxBytes must be at least 65536".into()));
        }
        let segment_bytes = cfg.segment_bytes.clamp(4096, cfg.max_bytes / 4);
        fs::create_dir_all(cfg.dir.join("segments"))?;
        fs::create_dir_all(cfg.dir.join("cursors"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cfg.dir.join("lock"))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked(cfg.dir.display().to_string()));
        }
        let instance_path = cfg.dir.join("instance");
        let instance = match fs::read_to_string(&instance_path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = cfg
                    .instance
                    .clone()
                    .unwrap_or_else(|| hex::encode(rand::random::<[u8; 8]>()));
                if !valid_name(&id, 64) {
                    return Err(SpoolError::Config(format!(
                        "instance {id:?} must match [A-Za-z0-9._-]{{1,64}}"
                    )));
                }
                let tmp = cfg.dir.join("instance.tmp");
                fs::write(&tmp, format!("{id}\n"))?;
                File::open(&tmp)?.sync_all()?;
                fs::rename(&tmp, &instance_path)?;
                id
            }
            Err(e) => return Err(e.into()),
        };
        if !valid_name(&instance, 64) {
            return Err(SpoolError::Config(format!(
                "{} holds an invalid instance id",
                instance_path.display()
            )));
        }

        let recovered = recover(&cfg.dir)?;
        let (durable, _) = watch::channel(recovered.last_seq());
        let mut state = SharedState::default();
        for s in &recovered.segments {
            let mtime = fs::metadata(&s.path)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::now());
            if s.end >= s.start {
                state.batch_times.push_back((s.start, mtime));
            }
        }
        state.segments = recovered.segments.iter().cloned().collect();
        let shared = Arc::new(Shared {
            dir: cfg.dir.clone(),
            instance: instance.clone(),
            state: Mutex::new(state),
            sinks: Mutex::new(BTreeMap::new()),
            durable,
            dropped: AtomicU64::new(0),
            full: AtomicBool::new(false),
            metrics,
        });
        let active = recovered.segments.last().cloned();
        let file = match &active {
            Some(s) => Some(OpenOptions::new().append(true).open(&s.path)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel::<MsgBox>();
        let writer = Writer {
            shared: shared.clone(),
            cfg: SpoolConfig {
                segment_bytes,
                ..cfg.clone()
            },
            product,
            file,
            next_seq: recovered.next_seq,
            prev: recovered.prev,
            committed: (recovered.next_seq, recovered.prev),
            synced: Synced {
                next_seq: recovered.next_seq,
                prev: recovered.prev,
                active_bytes: active.as_ref().map_or(0, |s| s.bytes),
            },
            deferred: Vec::new(),
            deferred_since: None,
            bytes: recovered.segments.iter().map(|s| s.bytes).sum(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            dropped_ranges: Vec::new(),
            drop_notice_due: false,
            last_drop_notice: None,
            startup: (recovered.last_seq() > 0).then_some(recovered.truncated_bytes),
            janitor: Janitor::start(shared.metrics.clone())?,
            _lock: lock,
        };
        let thread = std::thread::Builder::new()
            .name("audit-spool".into())
            .spawn(move || {
                crate::sched::batch();
                writer.run(rx);
            })?;
        let spool = Self {
            shared,
            tx,
            permits: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            thread: Arc::new(Mutex::new(Some(thread))),
        };
        spool.refresh_gauges();
        Ok(spool)
    }

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
        Ok(SpoolReader {
            shared: self.shared.clone(),
            tx: self.tx.clone(),
            name: sink.to_owned(),
            acked: cell,
            cursor_path,
            pos: None,
            next: acked + 1,
            durable: self.shared.durable.subscribe(),
        })
    }

    fn first_sequence(&self) -> u64 {
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
            sinks: self
                .shared
                .sinks
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect(),
        }
    }

    /// Recomputes the depth, bytes and age gauges (done by the writer after every batch and once
    /// a second).
    pub fn refresh_gauges(&self) {
        refresh_gauges(&self.shared);
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn refresh_gauges(shared: &Shared) {
    let m = &shared.metrics;
    let last = *shared.durable.borrow();
    let sinks: Vec<(String, u64)> = shared
        .sinks
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
        .collect();
    let st = shared.state.lock().expect("not poisoned");
    let first = st
        .segments
        .iter()
        .find(|s| s.end >= s.start)
        .map_or(last + 1, |s| s.start);
    let min_acked = sinks
        .iter()
        .map(|(_, a)| *a)
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

struct Recovered {
    segments: Vec<SegMeta>,
    next_seq: u64,
    prev: [u8; 32],
    truncated_bytes: u64,
}

impl Recovered {
    fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
}

/// Lists the segments, cuts a bad tail off the last one and finds where the chain continues.
fn recover(dir: &Path) -> io::Result<Recovered> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir.join("segments"))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = entry.metadata()?.len();
        segments.push(SegMeta {
            start,
            end: 0,
            bytes,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.start);
    for i in 0..segments.len() {
        let end = segments.get(i + 1).map_or(0, |n| n.start - 1);
        segments[i].end = end;
    }
    let mut truncated_bytes = 0;
    while let Some(last) = segments.last_mut() {
        let (end, prev, good_len) = scan_tail(&last.path, last.start)?;
        if good_len < last.bytes {
            truncated_bytes += last.bytes - good_len;
            OpenOptions::new()
                .write(true)
                .open(&last.path)?
                .set_len(good_len)?;
            last.bytes = good_len;
        }
        if good_len == 0 {
            let start = last.start;
            fs::remove_file(&last.path)?;
            segments.pop();
            if segments.is_empty() {
                // Nothing left (or only a segment whose content never reached the disk): the
                // chain restarts here.
                return Ok(Recovered {
                    segments,
                    next_seq: start.max(1),
                    prev: GENESIS,
                    truncated_bytes,
                });
            }
            continue;
        }
        last.end = end;
        return Ok(Recovered {
            next_seq: end + 1,
            segments,
            prev,
            truncated_bytes,
        });
    }
    Ok(Recovered {
        segments,
        next_seq: 1,
        prev: GENESIS,
        truncated_bytes,
    })
}

/// Scans a segment: returns (last sequence, its hash, length of the good prefix).
fn scan_tail(path: &Path, start: u64) -> io::Result<(u64, [u8; 32], u64)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    let (mut good, mut expect, mut prev): (u64, u64, Option<[u8; 32]>) = (0, start, None);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let Ok((claimed, actual)) = record::line_hashes(&line) else {
            break;
        };
        if claimed != actual || record::line_sequence(&line) != Some(expect) {
            break;
        }
        if let Some(p) = prev {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                break;
            };
            if record::chain_fields(&v).map(|c| c.prev) != Some(p) {
                break;
            }
        }
        prev = Some(actual);
        good += n as u64;
        expect += 1;
    }
    Ok((expect - 1, prev.unwrap_or(GENESIS), good))
}

/// Drop notices (checkpoints naming the dropped ranges) are written at most this often.
const DROP_NOTICE_EVERY: Duration = Duration::from_secs(1);

struct Writer {
    shared: Arc<Shared>,
    cfg: SpoolConfig,
    product: Product,
    file: Option<File>,
    next_seq: u64,
    prev: [u8; 32],
    /// (next_seq, prev) as of the last successful write.
    committed: (u64, [u8; 32]),
    /// What the last fdatasync covered (`ack: durable`).
    synced: Synced,
    /// Written, waiting for the next fdatasync (`ack: durable`, final records).
    deferred: Vec<Pending>,
    /// When the oldest deferred record was written.
    deferred_since: Option<Instant>,
    bytes: u64,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Every range dropped since open (merged).
    dropped_ranges: Vec<(u64, u64)>,
    /// Drops not yet announced by a checkpoint.
    drop_notice_due: bool,
    last_drop_notice: Option<Instant>,
    /// Some(truncated bytes) when the spool was reopened with records in it.
    startup: Option<u64>,
    janitor: Janitor,
    _lock: File,
}

struct Pending {
    reply: Reply,
    receipt: Receipt,
    queued: Instant,
    kind: RecordKind,
    /// Someone waits on it before acting (request-phase and refusal records, checkpoints).
    urgent: bool,
}

/// The spool as of the last fdatasync: where to cut back to if a later one fails. Unsynced
/// records are only ever in the active segment (a rotation syncs the segment it closes).
#[derive(Clone, Copy)]
struct Synced {
    next_seq: u64,
    prev: [u8; 32],
    /// Bytes of the active segment.
    active_bytes: u64,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<MsgBox>) {
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

    fn housekeeping(&mut self) {
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
    fn checkpoint(&mut self, reason: &'static str, recovered_truncated_bytes: u64) {
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
            sinks: self
                .shared
                .sinks
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect(),
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

    fn first_retained(&self) -> u64 {
        let st = self.shared.state.lock().expect("not poisoned");
        st.segments
            .iter()
            .find(|s| s.end >= s.start)
            .map_or(self.next_seq, |s| s.start)
    }

    /// Writes one batch; returns the shutdown waiter if the batch asked to stop.
    fn process(&mut self, batch: Vec<Msg>) -> Option<oneshot::Sender<()>> {
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

    /// The size of the active segment (read per record: no copy of its metadata).
    fn active_bytes(&self) -> Option<u64> {
        let st = self.shared.state.lock().expect("not poisoned");
        st.segments.back().map(|s| s.bytes)
    }

    fn active_meta(&self) -> Option<SegMeta> {
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
    fn settle(&mut self, now: bool) {
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
    fn sync(&mut self) -> Result<(), SpoolError> {
        if let Some(f) = &self.file {
            f.sync_data()?;
            self.shared.metrics.fsyncs.inc();
        }
        self.mark_synced();
        Ok(())
    }

    fn mark_synced(&mut self) {
        self.synced = Synced {
            next_seq: self.committed.0,
            prev: self.committed.1,
            active_bytes: self.active_bytes().unwrap_or(0),
        };
    }

    /// After a failed fdatasync: the page cache may have dropped what it did not cover.
    fn cut_back_to_synced(&mut self) {
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
    fn write_out(&mut self, buf: &[u8]) -> Result<(), SpoolError> {
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

    /// Starts a new segment for `self.next_seq` (the previous one must be flushed). With
    /// `ack: durable` the folder is synced at once (the new name must survive a power loss before
    /// a record in it is acknowledged); with `ack: written` by `closed`'s background sync.
    fn new_segment_after(&mut self, closed: Option<File>) -> Result<(), SpoolError> {
        let path = segment_path(&self.shared.dir, self.next_seq);
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
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
    fn maybe_rotate(&mut self, buf: &mut Vec<u8>, est: u64) -> Result<(), SpoolError> {
        let Some(active) = self.active_bytes() else {
            return Ok(());
        };
        let size = active + buf.len() as u64;
        if size == 0 || size + est <= self.cfg.segment_bytes {
            return Ok(());
        }
        self.rotate(buf)
    }

    fn rotate(&mut self, buf: &mut Vec<u8>) -> Result<(), SpoolError> {
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
    fn make_room(&mut self, buf: &mut Vec<u8>, est: u64) -> Result<(), SpoolError> {
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
    fn note_dropped(&mut self, from: u64, to: u64) {
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
    fn over_cap(&self, extra: u64) -> bool {
        let need = self.bytes + extra;
        if need > self.cfg.max_bytes {
            return true;
        }
        if need + self.janitor.pending() > self.cfg.max_bytes {
            self.janitor.wait();
        }
        false
    }

    fn min_acked(&self) -> Option<u64> {
        self.shared
            .sinks
            .lock()
            .expect("not poisoned")
            .values()
            .map(|a| a.load(Ordering::Relaxed))
            .min()
    }

    /// Deletes closed segments every registered sink has acknowledged.
    fn cleanup(&mut self) {
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

/// A batch of records read for one sink: the spool's bytes as they are on disk (each line ends with
/// `\n`), read in one piece, so a sink that writes JSON lines (file, stdout) sends `jsonl` as it is
/// and the others walk `lines()` without a copy per record.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The records, newline-terminated, in sequence order.
    pub jsonl: Bytes,
    /// Where each line ends in `jsonl` (past its newline).
    ends: Vec<usize>,
    /// Their sequence numbers.
    pub sequences: Vec<u64>,
}

impl Batch {
    /// The last sequence in the batch.
    pub fn last_sequence(&self) -> Option<u64> {
        self.sequences.last().copied()
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The lines, newline excluded.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let line = &self.jsonl[start..end - 1];
            start = end;
            line
        })
    }
}

/// Reads a sink's records after its cursor, in order.
#[derive(Debug)]
pub struct SpoolReader {
    shared: Arc<Shared>,
    tx: mpsc::Sender<MsgBox>,
    name: String,
    acked: Arc<AtomicU64>,
    cursor_path: PathBuf,
    pos: Option<ReadPos>,
    next: u64,
    durable: watch::Receiver<u64>,
}

#[derive(Debug)]
struct ReadPos {
    seg_start: u64,
    reader: BufReader<File>,
    /// Byte offset of `next` in the segment.
    offset: u64,
    next: u64,
}

impl SpoolReader {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last acknowledged sequence.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// The next sequence `next_batch` will return (or a later one, when records were dropped).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Reads again from just after the acknowledged cursor (after a failed delivery).
    pub fn rewind(&mut self) {
        self.next = self.acked() + 1;
    }

    /// Whether durable records are waiting past the read position.
    pub fn has_more(&self) -> bool {
        *self.durable.borrow() >= self.next
    }

    /// Waits (up to `wait`) for durable records past the read position and reads up to
    /// `max_records` of them. An empty batch means none arrived in time.
    pub async fn next_batch(
        &mut self,
        max_records: usize,
        wait: Duration,
    ) -> Result<Batch, SpoolError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let upto = *self.durable.borrow_and_update();
            if upto >= self.next {
                break;
            }
            match tokio::time::timeout_at(deadline, self.durable.changed()).await {
                Err(_) => return Ok(Batch::default()),
                Ok(Err(_)) => return Err(SpoolError::Closed),
                Ok(Ok(())) => {}
            }
        }
        let upto = *self.durable.borrow();
        let shared = self.shared.clone();
        let mut pos = self.pos.take();
        let next = self.next;
        let (batch, pos) = tokio::task::spawn_blocking(move || {
            let r = read_batch(&shared, &mut pos, next, upto, max_records.max(1));
            (r, pos)
        })
        .await?;
        self.pos = pos;
        let (batch, next) = batch?;
        // Past the batch, and past records dropped before they could be read.
        self.next = next;
        Ok(batch)
    }

    /// Records that the sink has everything up to `sequence`: persists the cursor and lets the
    /// writer delete what every sink has. The file work runs on the blocking pool: a rename can
    /// wait for the filesystem journal for milliseconds, which would stall every call on the
    /// worker.
    pub async fn ack(&mut self, sequence: u64) -> Result<(), SpoolError> {
        if sequence <= self.acked() {
            return Ok(());
        }
        let path = self.cursor_path.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("tmp");
            fs::write(&tmp, format!("{sequence}\n"))?;
            fs::rename(&tmp, &path)
        })
        .await??;
        self.acked.store(sequence, Ordering::Relaxed);
        self.shared
            .metrics
            .sink_acked_sequence
            .with_label_values(&[&self.name])
            .set(gauge(sequence));
        let _ = self.tx.send(MsgBox(Msg::Acked));
        Ok(())
    }
}

fn read_batch(
    shared: &Shared,
    pos: &mut Option<ReadPos>,
    mut from: u64,
    upto: u64,
    max: usize,
) -> Result<(Batch, u64), SpoolError> {
    let segments: Vec<SegMeta> = shared
        .state
        .lock()
        .expect("not poisoned")
        .segments
        .iter()
        .cloned()
        .collect();
    let mut batch = Batch::default();
    let mut jsonl = Vec::new();
    if pos
        .as_ref()
        .is_some_and(|p| p.next != from || !segments.iter().any(|s| s.start == p.seg_start))
    {
        *pos = None;
    }
    let mut line = Vec::with_capacity(2048);
    while batch.ends.len() < max && from <= upto {
        if pos.is_none() {
            // The segment holding `from`, or the first one after it (records before it were
            // dropped).
            let Some(seg) = segments
                .iter()
                .find(|s| s.start <= from && from <= s.end)
                .or_else(|| segments.iter().find(|s| s.start > from))
            else {
                break;
            };
            from = from.max(seg.start);
            if from > upto {
                break;
            }
            let file = match File::open(&seg.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted under us (dropOldest): skip past it.
                    from = from.max(seg.end + 1);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut reader = BufReader::with_capacity(256 * 1024, file);
            let (mut seq, mut offset) = (seg.start, 0u64);
            while seq < from {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    return Err(io::Error::other(format!(
                        "{} ends before sequence {from}",
                        seg.path.display()
                    ))
                    .into());
                }
                offset += n as u64;
                seq += 1;
            }
            *pos = Some(ReadPos {
                seg_start: seg.start,
                reader,
                offset,
                next: seq,
            });
        }
        let p = pos.as_mut().expect("positioned");
        let start = jsonl.len();
        let n = p.reader.read_until(b'\n', &mut jsonl)?;
        if n == 0 || jsonl.last() != Some(&b'\n') {
            jsonl.truncate(start);
            // The end of this segment: go on with the next one.
            let seg_start = p.seg_start;
            *pos = None;
            match segments.iter().find(|s| s.start > seg_start) {
                Some(next) => {
                    from = from.max(next.start);
                    continue;
                }
                None => break,
            }
        }
        let seq = record::line_sequence(&jsonl[start..]).unwrap_or(p.next);
        p.offset += n as u64;
        p.next = seq + 1;
        from = seq + 1;
        batch.sequences.push(seq);
        batch.ends.push(jsonl.len());
    }
    if let Some(p) = pos.as_mut() {
        // Forget read-ahead past the durable point: it may still change.
        p.reader.seek(SeekFrom::Start(p.offset))?;
    }
    batch.jsonl = jsonl.into();
    Ok((batch, from))
}
