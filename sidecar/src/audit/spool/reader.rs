//! Reading for the sinks: each [`SpoolReader`] reads durable records after its cursor (on the
//! blocking pool, from the segment files) and persists acknowledgements to its cursor file.

use super::SpoolError;
use super::handle::{Msg, MsgBox};
use super::shared::{SegMeta, Shared, gauge};
use crate::audit::record;
use bytes::Bytes;
use std::{
    fs::{self, File},
    io::{self, BufRead, BufReader, Seek, SeekFrom},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};
use tokio::sync::watch;

/// How long a short batch waits for more records before it is read (see `next_batch`).
const COALESCE: Duration = Duration::from_millis(5);
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
    /// A batch of `jsonl` (whole lines, each ending with `\n`) holding `sequences`, in order.
    pub fn from_lines(jsonl: Bytes, sequences: Vec<u64>) -> Self {
        let ends: Vec<usize> = jsonl
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        debug_assert_eq!(ends.len(), sequences.len());
        Self {
            jsonl,
            ends,
            sequences,
        }
    }

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
    /// A reader for `name`, positioned just after its cursor (`acked`).
    pub(super) fn new(
        shared: Arc<Shared>,
        tx: mpsc::Sender<MsgBox>,
        name: &str,
        acked: Arc<AtomicU64>,
        cursor_path: PathBuf,
    ) -> Self {
        let next = acked.load(Ordering::Relaxed) + 1;
        let durable = shared.durable.subscribe();
        Self {
            shared,
            tx,
            name: name.to_owned(),
            acked,
            cursor_path,
            pos: None,
            next,
            durable,
        }
    }

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

    /// Waits (up to `wait`) for durable records past the read position (and, for a short batch,
    /// up to [`COALESCE`] more for the records that follow) and reads up to
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
        // Coalesce: with records answered one at a time, a batch per record would cost the sink
        // a blocking-pool read, a write and a cursor rename for each. A short batch waits a
        // moment (never past `wait`) for the records that follow.
        let ready = (*self.durable.borrow()).saturating_sub(self.next) + 1;
        if ready < max_records as u64 {
            tokio::time::sleep_until((tokio::time::Instant::now() + COALESCE).min(deadline)).await;
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
