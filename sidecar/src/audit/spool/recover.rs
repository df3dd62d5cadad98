//! Recovery: list the segments, scan the last one (complete lines, own hash, contiguous
//! sequences, chain links), cut the first bad line and everything after it (a torn write that
//! was never acknowledged), and continue sequence and chain from the last good record.

use super::shared::SegMeta;
use crate::audit::record::{self, GENESIS};
use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader},
    path::Path,
};

pub(super) struct Recovered {
    pub(super) segments: Vec<SegMeta>,
    pub(super) next_seq: u64,
    pub(super) prev: [u8; 32],
    pub(super) truncated_bytes: u64,
}

impl Recovered {
    pub(super) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }
}

/// Lists the segments, cuts a bad tail off the last one and finds where the chain continues.
pub(super) fn recover(dir: &Path) -> io::Result<Recovered> {
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
pub(super) fn scan_tail(path: &Path, start: u64) -> io::Result<(u64, [u8; 32], u64)> {
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
