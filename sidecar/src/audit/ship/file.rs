//! Rotating JSONL files: `<dir>/<prefix>.jsonl`, fsynced per batch, rotated to
//! `<prefix>-<first sequence:020>.jsonl` at `maxFileBytes`, oldest deleted beyond `maxFiles`.
//! The lines are the spool's, byte for byte, so `mcp-warden audit verify` and `query` work on them.
//! A batch leaves the page cache once it is synced (`pagecache::drop_cached`).

use super::{Delivery, SinkError};
use crate::audit::config::FileSinkConfig;
use crate::audit::pagecache;
use crate::audit::record;
use crate::audit::spool::Batch;
use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
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
            .map_err(|e| SinkError::Io(std::io::Error::other(e.to_string())))??;
        Ok(Delivery::Delivered)
    }
}

impl State {
    fn current(&self) -> PathBuf {
        self.cfg.dir.join(format!("{}.jsonl", self.cfg.prefix))
    }

    fn write(&mut self, buf: &[u8], first: Option<u64>) -> Result<(), SinkError> {
        if self.file.is_none() {
            fs::create_dir_all(&self.cfg.dir)?;
            let path = self.current();
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.size = f.metadata()?.len();
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
        let f = self.file.as_mut().expect("open");
        f.write_all(buf)?;
        f.sync_data()?;
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
