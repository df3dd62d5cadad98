//! How a lone durable record gets to the disk fastest here (issue #21: "segments preallocated so
//! that fdatasync has no metadata to journal, or `O_DSYNC` writes into them — measure which is
//! faster"). Bounded: `records` records of `record_bytes` per mode, one at a time with a pause
//! between them (nothing else in flight, as for a lone call), into files under `dir`.
//!
//! ```text
//! append + fdatasync       what the spool does: the file grows, so each sync journals i_size
//! prezeroed + fdatasync    overwrite a segment written with zeros beforehand: data only
//! append, O_DSYNC          each write(2) is durable by itself (the size still changes)
//! prezeroed, O_DSYNC       both
//! fallocated + fdatasync   fallocate(2) only: unwritten extents, converted (journaled) on write
//! ```

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
    time::{Duration, Instant},
};

/// One mode's latencies (µs) per record, write to durable.
#[derive(Debug)]
pub struct Figures {
    /// The mode.
    pub mode: &'static str,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

#[derive(Clone, Copy)]
enum Prepare {
    Nothing,
    Zeros,
    Fallocate,
}

/// Runs every mode `rounds` times, interleaved (so that a busy moment of the machine does not
/// land on one mode only), and returns each mode's figures over all its records.
pub fn measure(
    dir: &Path,
    records: usize,
    record_bytes: usize,
    rounds: usize,
) -> io::Result<Vec<Figures>> {
    let modes: [(&'static str, Prepare, bool); 5] = [
        ("append + fdatasync", Prepare::Nothing, false),
        ("prezeroed + fdatasync", Prepare::Zeros, false),
        ("append, O_DSYNC", Prepare::Nothing, true),
        ("prezeroed, O_DSYNC", Prepare::Zeros, true),
        ("fallocated + fdatasync", Prepare::Fallocate, false),
    ];
    fs::create_dir_all(dir)?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..rounds {
        for (i, (_, prepare, dsync)) in modes.iter().enumerate() {
            samples[i].extend(one(dir, records, record_bytes, *prepare, *dsync)?);
        }
    }
    Ok(modes
        .iter()
        .zip(samples)
        .map(|((mode, _, _), mut s)| {
            s.sort_by(f64::total_cmp);
            let at = |q: f64| s[((s.len() as f64 * q) as usize).min(s.len() - 1)];
            Figures {
                mode,
                p50: at(0.5),
                p90: at(0.9),
                p99: at(0.99),
            }
        })
        .collect())
}

fn one(
    dir: &Path,
    records: usize,
    record_bytes: usize,
    prepare: Prepare,
    dsync: bool,
) -> io::Result<Vec<f64>> {
    let path = dir.join("fsync-modes.seg");
    let _ = fs::remove_file(&path);
    let size = (records * record_bytes) as u64;
    {
        let f = File::create(&path)?;
        match prepare {
            Prepare::Nothing => {}
            Prepare::Zeros => {
                let zeros = vec![0u8; 1 << 20];
                let mut left = size;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    (&f).write_all(&zeros[..n])?;
                    left -= n as u64;
                }
            }
            Prepare::Fallocate => {
                use std::os::fd::AsRawFd;
                #[allow(unsafe_code)]
                // SAFETY: a valid descriptor, plain integers.
                let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        f.sync_all()?;
    }
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(if dsync { libc::O_DSYNC } else { 0 })
        .open(&path)?;
    let mut line = vec![b'x'; record_bytes];
    *line.last_mut().expect("a record has bytes") = b'\n';
    let mut out = Vec::with_capacity(records);
    for i in 0..records {
        let started = Instant::now();
        f.write_all_at(&line, (i * record_bytes) as u64)?;
        if !dsync {
            f.sync_data()?;
        }
        out.push(started.elapsed().as_secs_f64() * 1e6);
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(f);
    fs::remove_file(&path)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_mode_is_measured() {
        let tmp = tempfile::tempdir().unwrap();
        let figures = super::measure(tmp.path(), 3, 128, 1).unwrap();
        assert_eq!(figures.len(), 5);
        assert!(figures.iter().all(|f| f.p50 > 0.0 && f.p50 <= f.p99));
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "cleaned up"
        );
    }
}
