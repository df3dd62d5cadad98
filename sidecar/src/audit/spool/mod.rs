//! The durable spool: append-only segment files written by the callers themselves under one
//! lock, a group commit for `ack: durable`, a writer thread for what nobody waits on, per-sink
//! acknowledged cursors.
//!
//! ```text
//! <dir>/lock                       held (flock) by the process that owns the spool
//! <dir>/instance                   the instance id written in every record
//! <dir>/segments/<seq:020>.jsonl   sealed records, one per line; the name is the first sequence
//! <dir>/cursors/<sink>.cursor      last sequence acknowledged by that sink (decimal)
//!
//! append(prepared), on the caller's task ──► lock(Writer): cap policy, seal (uid, sequence,
//!     chain), write(2) ──► written: durable seq, answered ─────────────────────┐
//!                      └─► durable: group commit (a caller leads one fdatasync  │
//!                          on the blocking pool, later callers join the next) ─┤
//! writer thread: final records' fsyncMaxDelay, checkpoints, deletions, gauges   │
//! SpoolReader (per sink) ◄─────── reads lines ≤ durable seq ◄──────────────────┘
//!       ack(seq) ──► cursor file ──► janitor deletes segments every sink has acknowledged
//! ```
//!
//! Group commit (`ack: durable`): a caller whose record someone waits on (a request-phase or
//! refusal record, a checkpoint) and that finds no fdatasync in flight has one run, outside the
//! lock, on tokio's blocking pool (never on the async worker: with one worker a sync there would
//! stop every other call for its milliseconds, and nothing would join it); callers arriving
//! meanwhile append and wait, and the leader syncs again for them as soon as its sync returns. Under load a sync covers everything written while the previous one
//! ran; when idle a record is synced at once. A final record (nobody waits on it before acting)
//! is written at once but synced with the next record that needs it, or by the writer thread
//! after `fsyncMaxDelay`: a call costs one fsync, not two.
//!
//! Recovery: the last segment is scanned; a torn or unverifiable tail (never acknowledged: it was
//! not yet synced) is cut off, and the sequence and the chain continue from the last good record.
//!
//! One concept per file:
//!
//! ```text
//! open.rs      the directory, the lock, the instance id, recovery → a running writer
//! recover.rs   scan the last segment, cut a torn tail, find where sequence and chain continue
//! handle.rs    Spool: append (admission: permits), flush, checkpoint, readers, stats
//! shared.rs    what the writer publishes to handles and readers: segments, durable seq, gauges
//! writer.rs    Writer::append (cap, seal, write on the caller's thread); the writer thread
//! commit.rs    write(2), the group commit, answering waiters, cutting back after a failure
//! segments.rs  rotation, the cap (block / dropOldest), deleting what every sink has
//! reader.rs    SpoolReader: a sink's records after its cursor, acknowledgements
//! ```

mod commit;
mod handle;
mod open;
mod reader;
mod recover;
mod segments;
mod shared;
mod writer;

pub use handle::Spool;
pub use reader::{Batch, SpoolReader};

use std::{collections::BTreeMap, io, sync::Arc};

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
