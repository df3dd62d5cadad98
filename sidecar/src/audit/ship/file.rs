//! Rotating JSONL files: `<dir>/<prefix>.jsonl`, fsynced per batch, rotated to
//! `<prefix>-<first sequence:020>.jsonl` at `maxFileBytes`, oldest deleted beyond `maxFiles`.
//! The lines are the spool's, byte for byte, so `mcp-warden audit verify` and `query` work on them.
//! A batch leaves the page cache once it is synced (`pagecache::drop_cached`).
//!
//! Whole lines only: a batch is whole lines and is appended with one `write(2)`; a write that
//! failed part-way is cut back, and a file found ending in a partial line (a crash in the middle
//! of a write) is cut back to its last newline before anything is appended, so no record is ever
//! glued to half of another.

use super::{Delivery, SinkError};
use crate::audit::config::FileSinkConfig;
use crate::audit::pagecache;
use crate::audit::record;
use crate::audit::spool::Batch;
use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
};

/// See the module docs.
#[derive(Debug)]
pub struct FileSink {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    cfg: FileSinkConfig,
    file: Option<File>,
    size: u64,
    first_seq: Option<u64>,
}

impl FileSink {
    /// A sink writing into `cfg.dir`.
    pub fn new(cfg: FileSinkConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                cfg,
                file: None,
                size: 0,
                first_seq: None,
            })),
        }
    }

    pub(super) async fn send(&mut self, batch: &Batch) -> Result<Delivery, SinkError> {
        let state = self.state.clone();
        let buf = batch.jsonl.clone();
        let first = batch.sequences.first().copied();
        tokio::task::spawn_blocking(move || state.lock().expect("not poisoned").write(&buf, first))
            .await
            .map_err(|e| SinkError::Io(io::Error::other(e.to_string())))??;
        Ok(Delivery::Delivered)
    }
}

/// Cuts `f` back to its last newline (a partial last line is a write a crash interrupted, never
/// acknowledged: the spool sends it again) and returns the length kept.
fn whole_lines(mut f: &File) -> io::Result<u64> {
    let len = f.metadata()?.len();
    let mut keep = len;
    let mut chunk = [0u8; 4096];
    while keep > 0 {
        let n = chunk.len().min(usize::try_from(keep).unwrap_or(usize::MAX));
        f.seek(SeekFrom::Start(keep - n as u64))?;
        f.read_exact(&mut chunk[..n])?;
        match chunk[..n].iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                keep = keep - n as u64 + i as u64 + 1;
                break;
            }
            None => keep -= n as u64,
        }
    }
    if keep < len {
        tracing::warn!(
            cut = len - keep,
            "audit file sink: a partial last line (interrupted write) was cut"
        );
        f.set_len(keep)?;
    }
    Ok(keep)
}

impl State {
    fn current(&self) -> PathBuf {
        self.cfg.dir.join(format!("{}.jsonl", self.cfg.prefix))
    }

    fn write(&mut self, buf: &[u8], first: Option<u64>) -> Result<(), SinkError> {
        if self.file.is_none() {
            fs::create_dir_all(&self.cfg.dir)?;
            let path = self.current();
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)?;
            self.size = whole_lines(&f)?;
            self.first_seq = if self.size > 0 {
                let mut line = Vec::new();
                BufReader::new(File::open(&path)?).read_until(b'\n', &mut line)?;
                record::line_sequence(&line)
            } else {
                None
            };
            self.file = Some(f);
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.cfg.max_file_bytes {
            self.rotate()?;
            return self.write(buf, first);
        }
        debug_assert!(
            buf.last().is_none_or(|b| *b == b'\n'),
            "a batch is whole lines"
        );
        let f = self.file.as_mut().expect("open");
        if let Err(e) = f.write_all(buf).and_then(|()| f.sync_data()) {
            // Cut a partial write back (the batch is sent again): a line is in the file whole
            // or not at all. The handle is reopened (and the tail checked again) next time.
            let _ = f.set_len(self.size);
            self.file = None;
            return Err(e.into());
        }
        // Written once, read back rarely: keeping it cached only fills the pod's memory, and
        // freeing 100 MiB of cached pages when the file is deleted would take one long system
        // call on the CPU that serves calls.
        let _ = pagecache::drop_cached(f, self.size, buf.len() as u64);
        if self.size == 0 {
            self.first_seq = first;
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        self.file = None;
        let mut target = self.cfg.dir.join(format!(
            "{}-{:020}.jsonl",
            self.cfg.prefix,
            self.first_seq.unwrap_or_default()
        ));
        if target.exists() {
            // Never overwrite (a spool whose chain restarted reuses sequence numbers).
            target =
                target.with_extension(format!("{}.jsonl", jiff::Timestamp::now().as_millisecond()));
        }
        fs::rename(self.current(), &target)?;
        File::open(&self.cfg.dir)?.sync_all()?;
        if self.cfg.max_files > 0 {
            let prefix = format!("{}-", self.cfg.prefix);
            let mut rotated: Vec<PathBuf> = fs::read_dir(&self.cfg.dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".jsonl"))
                })
                .collect();
            rotated.sort();
            while rotated.len() > self.cfg.max_files {
                let victim = rotated.remove(0);
                fs::remove_file(&victim)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sink's file after sending `lines` (sequences from `first`) into a file holding
    /// `before`.
    async fn file_after(before: &str, lines: &[&str], first: u64) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        fs::write(&path, before).unwrap();
        let mut sink = FileSink::new(FileSinkConfig {
            dir: tmp.path().to_owned(),
            prefix: "audit".into(),
            max_file_bytes: 1 << 20,
            max_files: 4,
        });
        let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let sequences = (first..).take(lines.len()).collect();
        let batch = Batch::from_lines(jsonl.into_bytes().into(), sequences);
        sink.send(&batch).await.unwrap();
        fs::read_to_string(&path).unwrap()
    }

    #[tokio::test]
    async fn a_partial_last_line_is_cut_before_appending() {
        // A crash in the middle of a write left half a record behind.
        let text = file_after(
            "{\"seq\":1}\n{\"seq\":2,\"ha",
            &["{\"seq\":2}", "{\"seq\":3}"],
            2,
        )
        .await;
        assert_eq!(text, "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).expect("whole lines only");
        }
    }

    #[tokio::test]
    async fn a_file_of_whole_lines_is_kept_as_it_is() {
        let text = file_after("{\"seq\":1}\n", &["{\"seq\":2}"], 2).await;
        assert_eq!(text, "{\"seq\":1}\n{\"seq\":2}\n");
    }
}
