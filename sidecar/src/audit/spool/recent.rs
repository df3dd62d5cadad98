//! The newest sealed lines, in memory, for sinks that are caught up: they read their batch from
//! here instead of from the segment file (no blocking-pool hop, no `read(2)`). Each record is
//! still rendered and hashed once: the line kept is the one written.
//!
//! ```text
//! Writer::append ── line ──► arena (BytesMut, 1 MiB blocks) ── split ──► Recent: (seq, Bytes)…
//!                                                                   ▲ bounded: MAX_BYTES
//! SpoolReader::next_batch(from, upto) ── all of from..=upto here? ──┘ yes: a Batch; no: the file
//! ```

use super::reader::Batch;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// How many bytes of recent lines are kept.
const MAX_BYTES: usize = 4 << 20;
/// The arena's block size: lines are copied into it and split off, one allocation per block.
const BLOCK: usize = 1 << 20;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Recent {
    /// (sequence, line with its newline), contiguous sequences.
    lines: VecDeque<(u64, Bytes)>,
    bytes: usize,
    arena: BytesMut,
}

impl Recent {
    /// Keeps the line of `sequence` (which follows the last one kept, or starts afresh).
    pub(super) fn push(&mut self, sequence: u64, line: &[u8]) {
        if self
            .lines
            .back()
            .is_some_and(|(last, _)| *last + 1 != sequence)
        {
            self.clear();
        }
        if self.arena.capacity() - self.arena.len() < line.len() {
            self.arena = BytesMut::with_capacity(BLOCK.max(line.len()));
        }
        self.arena.extend_from_slice(line);
        let line = self.arena.split().freeze();
        self.bytes += line.len();
        self.lines.push_back((sequence, line));
        while self.bytes > MAX_BYTES
            && let Some((_, old)) = self.lines.pop_front()
        {
            self.bytes -= old.len();
        }
    }

    /// Forgets the lines from `sequence` on (they were cut back after a failed write or sync).
    pub(super) fn cut_from(&mut self, sequence: u64) {
        while self.lines.back().is_some_and(|(s, _)| *s >= sequence) {
            if let Some((_, line)) = self.lines.pop_back() {
                self.bytes -= line.len();
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
    }

    /// `from..=upto` (at most `max` records) as a batch, when every one of them is here.
    pub(super) fn batch(&self, from: u64, upto: u64, max: usize) -> Option<Batch> {
        let (first, _) = self.lines.front()?;
        let (last, _) = self.lines.back()?;
        if from < *first || upto > *last || from > upto {
            return None;
        }
        let skip = usize::try_from(from - first).ok()?;
        let take = usize::try_from(upto - from + 1).ok()?.min(max);
        let lines = self.lines.range(skip..skip + take);
        let mut jsonl = Vec::with_capacity(lines.clone().map(|(_, l)| l.len()).sum());
        let mut sequences = Vec::with_capacity(take);
        for (s, l) in lines {
            jsonl.extend_from_slice(l);
            sequences.push(*s);
        }
        Some(Batch::from_lines(jsonl.into(), sequences))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &Recent, from: u64, upto: u64, max: usize) -> Option<(Vec<u64>, String)> {
        r.batch(from, upto, max).map(|b| {
            let text = String::from_utf8(b.jsonl.to_vec()).unwrap();
            (b.sequences, text)
        })
    }

    #[test]
    fn a_batch_is_served_only_when_every_line_is_here() {
        let mut r = Recent::default();
        for s in 5..=9 {
            r.push(s, format!("{{\"s\":{s}}}\n").as_bytes());
        }
        assert_eq!(
            lines(&r, 6, 8, 10),
            Some((vec![6, 7, 8], "{\"s\":6}\n{\"s\":7}\n{\"s\":8}\n".into()))
        );
        assert_eq!(lines(&r, 6, 9, 2).unwrap().0, vec![6, 7], "at most max");
        assert_eq!(lines(&r, 4, 9, 10), None, "4 is not here: read the file");
        assert_eq!(lines(&r, 9, 10, 10), None, "10 is not here yet");

        r.cut_from(8);
        assert_eq!(lines(&r, 8, 8, 10), None, "cut back");
        r.push(8, b"{\"s\":\"8 again\"}\n");
        assert_eq!(lines(&r, 7, 8, 10).unwrap().0, vec![7, 8]);

        r.push(20, b"{}\n");
        assert_eq!(
            lines(&r, 7, 7, 10),
            None,
            "a jump in the sequence starts afresh"
        );
        assert_eq!(lines(&r, 20, 20, 10).unwrap().0, vec![20]);
    }

    #[test]
    fn the_bytes_kept_are_bounded() {
        let mut r = Recent::default();
        let line = vec![b'x'; 64 * 1024];
        for s in 1..=200 {
            r.push(s, &line);
        }
        assert!(r.bytes <= MAX_BYTES);
        assert_eq!(r.lines.back().unwrap().0, 200);
        assert!(r.batch(1, 1, 1).is_none(), "the oldest are gone");
    }
}
