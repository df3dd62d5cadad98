//! Opening a spool: the directory layout, the lock (one process per spool), the instance id
//! (kept for life), recovery of the tail, and the writer thread started on what it found.

use super::SpoolError;
use super::handle::{MsgBox, Spool, valid_name};
use super::recover::recover;
use super::shared::{Shared, SharedState};
use super::writer::{self, Synced, Writer};
use crate::audit::config::{AckLevel, SpoolConfig};
use crate::audit::janitor::Janitor;
use crate::audit::metrics::AuditMetrics;
use crate::audit::record::Product;
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64},
        mpsc,
    },
    time::{Instant, SystemTime},
};
use tokio::sync::{Semaphore, watch};

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
            syncing: AtomicBool::new(false),
            metrics,
        });
        let active = recovered.segments.last().cloned();
        let file = match &active {
            Some(s) => Some(Arc::new(OpenOptions::new().append(true).open(&s.path)?)),
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
            deferred_urgent: 0,
            deferred_since: None,
            buf: Vec::with_capacity(4096),
            bytes: recovered.segments.iter().map(|s| s.bytes).sum(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            dropped_ranges: Vec::new(),
            drop_notice_due: false,
            last_drop_notice: None,
            closed: false,
            janitor: Janitor::start(shared.metrics.clone())?,
            lock: Some(lock),
        };
        let mut writer = writer;
        if recovered.last_seq() > 0 && cfg.checkpoint_interval.is_some() {
            // Before anyone can append: the startup checkpoint follows the recovered records.
            // The writer thread syncs it as it starts.
            writer.checkpoint("startup", recovered.truncated_bytes);
        }
        let writer = Arc::new(Mutex::new(writer));
        let thread_writer = writer.clone();
        let thread = std::thread::Builder::new()
            .name("audit-spool".into())
            .spawn(move || {
                crate::sched::batch();
                writer::run(thread_writer, rx);
            })?;
        let spool = Self {
            shared,
            writer,
            durable: cfg.ack == AckLevel::Durable,
            tx,
            permits: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            thread: Arc::new(Mutex::new(Some(thread))),
        };
        spool.refresh_gauges();
        Ok(spool)
    }
}
