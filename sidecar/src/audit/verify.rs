//! `mcp-warden audit verify`: checks record files (a spool, a file sink's directory, or a SIEM
//! export) for edited records (own hash), broken links (`chain.prev`), gaps, duplicates and
//! records out of order, per instance, and names the first broken record.
//!
//! Files are ordered by their first record's sequence; records within a file must be in order.
//! Gaps that a checkpoint declares as dropped (policy `dropOldest`) are warnings, not problems.
//! With `dedup`, an exact re-delivery of a record already seen (same uid, same hash) is skipped,
//! as a SIEM fed at least once will hold some.

use super::record::{self, EVENT_CHECKPOINT};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    fs::File,
    io::{self, BufRead, BufReader},
    path::{Path, PathBuf},
};

/// What is wrong with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not JSON, or not a sealed mcp-warden record.
    Unreadable,
    /// Its content does not match its own hash: edited after it was written.
    Edited,
    /// Its predecessor's hash is not the one it links to.
    ChainBroken,
    /// Sequence numbers are missing before it.
    Gap,
    /// It comes before a record with a lower sequence number.
    OutOfOrder,
    /// Its sequence number was seen before.
    Duplicate,
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreadable => "unreadable",
            Self::Edited => "edited",
            Self::ChainBroken => "chain broken",
            Self::Gap => "gap",
            Self::OutOfOrder => "out of order",
            Self::Duplicate => "duplicate",
        })
    }
}

/// One problem, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What.
    pub kind: ProblemKind,
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The record's sequence, when readable.
    pub sequence: Option<u64>,
    /// The record's uid, when readable.
    pub uid: Option<String>,
    /// Explanation.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(s) = self.sequence {
            write!(f, "sequence {s} ")?;
        }
        if let Some(u) = &self.uid {
            write!(f, "(uid {u}) ")?;
        }
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// One instance's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceSummary {
    /// Lowest sequence seen.
    pub first: u64,
    /// Highest sequence seen.
    pub last: u64,
    /// Records checked (duplicates skipped by `dedup` excluded).
    pub records: u64,
    /// Checkpoint records among them.
    pub checkpoints: u64,
}

/// The result.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Files read, in the order checked.
    pub files: Vec<PathBuf>,
    /// Per instance.
    pub instances: BTreeMap<String, InstanceSummary>,
    /// Problems in the order found; the first names the first broken record.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not tampering (declared drops, a partial range).
    pub warnings: Vec<String>,
    /// Exact re-deliveries skipped (`dedup`).
    pub duplicates_skipped: u64,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Expands paths: a spool directory (its `segments/`), a directory (its `*.jsonl`), or files.
pub fn collect_files(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let dir = if p.join("segments").is_dir() {
                p.join("segments")
            } else {
                p.clone()
            };
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    Ok(out)
}

/// Reads every line of a file (newline kept off).
pub(crate) fn for_each_line(path: &Path, mut f: impl FnMut(usize, &[u8])) -> io::Result<()> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        n += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if !line.is_empty() {
            f(n, &line);
        }
    }
}

/// Orders files by (instance, first sequence) of their first readable record.
pub(crate) fn order_files(files: Vec<PathBuf>) -> io::Result<Vec<PathBuf>> {
    let mut keyed = Vec::new();
    for f in files {
        let mut key: Option<(String, u64)> = None;
        let mut reader = BufReader::new(File::open(&f)?);
        let mut line = Vec::new();
        for _ in 0..16 {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if let Some(c) = serde_json::from_slice::<Value>(&line)
                .ok()
                .as_ref()
                .and_then(record::chain_fields)
            {
                key = Some((c.instance, c.sequence));
                break;
            }
        }
        keyed.push((key.is_none(), key, f));
    }
    keyed.sort();
    Ok(keyed.into_iter().map(|(_, _, f)| f).collect())
}

/// Whether `from..=to` lies entirely inside the union of `ranges` (inclusive pairs).
fn covered(ranges: &[(u64, u64)], from: u64, to: u64) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut next = from;
    for (a, b) in sorted {
        if a > next {
            break;
        }
        if b >= next {
            next = b.saturating_add(1);
        }
        if next > to {
            return true;
        }
    }
    next > to
}

#[derive(Default)]
struct Walk {
    expected: Option<u64>,
    prev: Option<([u8; 32], PathBuf, usize)>,
    seen: HashMap<u64, (String, [u8; 32])>,
}

/// Verifies files (see the module docs).
pub fn verify(paths: &[PathBuf], dedup: bool) -> io::Result<VerifyReport> {
    let files = order_files(collect_files(paths)?)?;
    let mut report = VerifyReport {
        files: files.clone(),
        ..VerifyReport::default()
    };
    // Pass 1: every sequence present per instance, and the declared drops.
    let mut present: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut dropped: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    for f in &files {
        for_each_line(f, |_, line| {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                return;
            };
            let Some(c) = record::chain_fields(&v) else {
                return;
            };
            present
                .entry(c.instance.clone())
                .or_default()
                .insert(c.sequence);
            if v.pointer("/metadata/event_code").and_then(Value::as_str) == Some(EVENT_CHECKPOINT)
                && let Some(ranges) = v
                    .pointer("/unmapped/mcp_warden/checkpoint/dropped_ranges")
                    .and_then(Value::as_array)
            {
                for r in ranges {
                    if let (Some(a), Some(b)) = (
                        r.get(0).and_then(Value::as_u64),
                        r.get(1).and_then(Value::as_u64),
                    ) {
                        dropped.entry(c.instance.clone()).or_default().push((a, b));
                    }
                }
            }
        })?;
    }
    // Pass 2: walk in order.
    let mut walks: HashMap<String, Walk> = HashMap::new();
    for f in &files {
        for_each_line(f, |n, line| {
            let problem = |kind, seq, uid: Option<&str>, detail: String| Problem {
                kind,
                file: f.clone(),
                line: n,
                sequence: seq,
                uid: uid.map(str::to_owned),
                detail,
            };
            let v = match serde_json::from_slice::<Value>(line) {
                Ok(v) => v,
                Err(e) => {
                    report.problems.push(problem(
                        ProblemKind::Unreadable,
                        None,
                        None,
                        format!("not JSON: {e}"),
                    ));
                    return;
                }
            };
            let Some(c) = record::chain_fields(&v) else {
                report.problems.push(problem(
                    ProblemKind::Unreadable,
                    None,
                    None,
                    "no metadata.uid/sequence/chain tags".into(),
                ));
                return;
            };
            let (seq, uid) = (c.sequence, c.uid.as_str());
            let (claimed, actual) = match record::line_hashes(line) {
                Ok(h) => h,
                Err(e) => {
                    report.problems.push(problem(
                        ProblemKind::Unreadable,
                        Some(seq),
                        Some(uid),
                        e.to_string(),
                    ));
                    return;
                }
            };
            let w = walks.entry(c.instance.clone()).or_default();
            let summary = report
                .instances
                .entry(c.instance.clone())
                .or_insert(InstanceSummary {
                    first: seq,
                    last: seq,
                    ..InstanceSummary::default()
                });
            if let Some((first_uid, first_hash)) = w.seen.get(&seq) {
                if dedup && first_uid == uid && *first_hash == claimed && claimed == actual {
                    report.duplicates_skipped += 1;
                } else {
                    report.problems.push(problem(
                        ProblemKind::Duplicate,
                        Some(seq),
                        Some(uid),
                        format!("sequence {seq} was already seen (uid {first_uid})"),
                    ));
                }
                return;
            }
            w.seen.insert(seq, (uid.to_owned(), claimed));
            summary.records += 1;
            summary.first = summary.first.min(seq);
            summary.last = summary.last.max(seq);
            if v.pointer("/metadata/event_code").and_then(Value::as_str) == Some(EVENT_CHECKPOINT) {
                summary.checkpoints += 1;
            }
            if claimed != actual {
                report.problems.push(problem(
                    ProblemKind::Edited,
                    Some(seq),
                    Some(uid),
                    "the record does not match its own hash: it was changed after it was written"
                        .into(),
                ));
            }
            match w.expected {
                Some(e) if seq < e => {
                    report.problems.push(problem(
                        ProblemKind::OutOfOrder,
                        Some(seq),
                        Some(uid),
                        format!("sequence {seq} comes after sequence {}", e - 1),
                    ));
                    return; // keep walking from the higher record
                }
                Some(e) if seq > e => {
                    let present = present.get(&c.instance);
                    let declared = dropped
                        .get(&c.instance)
                        .is_some_and(|d| covered(d, e, seq - 1));
                    if present.is_some_and(|p| p.range(e..seq).next().is_some()) {
                        report.problems.push(problem(
                            ProblemKind::OutOfOrder,
                            Some(seq),
                            Some(uid),
                            format!("sequence {seq} comes before sequence {e}"),
                        ));
                    } else if declared {
                        report.warnings.push(format!(
                            "instance {}: sequences {e}..={} were dropped by policy (declared in a checkpoint)",
                            c.instance,
                            seq - 1
                        ));
                    } else {
                        report.problems.push(problem(
                            ProblemKind::Gap,
                            Some(seq),
                            Some(uid),
                            if seq - e == 1 {
                                format!("sequence {e} is missing before it")
                            } else {
                                format!("sequences {e}..={} are missing before it", seq - 1)
                            },
                        ));
                    }
                }
                Some(_) => {
                    if let Some((prev, pf, pl)) = &w.prev
                        && *prev != c.prev
                    {
                        report.problems.push(Problem {
                            kind: ProblemKind::ChainBroken,
                            file: pf.clone(),
                            line: *pl,
                            sequence: Some(seq - 1),
                            uid: None,
                            detail: format!(
                                "sequence {seq} ({}:{n}) links to a different hash: sequence {} was replaced or re-hashed",
                                f.display(),
                                seq - 1
                            ),
                        });
                    }
                }
                None => {
                    let declared = dropped
                        .get(&c.instance)
                        .is_some_and(|d| seq > 1 && covered(d, 1, seq - 1));
                    if seq != 1 && declared {
                        report.warnings.push(format!(
                            "instance {}: sequences 1..={} were dropped by policy (declared in a checkpoint)",
                            c.instance,
                            seq - 1
                        ));
                    } else if seq != 1 && c.prev != record::GENESIS {
                        report.warnings.push(format!(
                            "instance {}: the files start at sequence {seq}; earlier records are not among them",
                            c.instance
                        ));
                    }
                }
            }
            w.expected = Some(seq + 1);
            w.prev = Some((claimed, f.clone(), n));
        })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::covered;

    #[test]
    fn coverage_of_ranges() {
        assert!(covered(&[(1, 5), (6, 9)], 2, 9));
        assert!(covered(&[(6, 9), (1, 5)], 1, 9));
        assert!(!covered(&[(1, 5), (7, 9)], 1, 9));
        assert!(!covered(&[], 1, 1));
        assert!(covered(&[(3, 3)], 3, 3));
    }
}
