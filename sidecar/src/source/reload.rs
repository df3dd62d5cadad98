//! Hot reload of the standalone configuration.
//!
//! ```text
//! every 200 ms: stamp(config files) changed? (or every 5 s)
//!   └─yes─► fingerprint(content) changed? ──► load_config ──ok──► Live::install (atomic)
//!                                                         └─err─► keep the RuleSet in force; log + count
//! ```
//!
//! Polling (not inotify) also catches Kubernetes ConfigMap updates, which swap a symlink, and
//! editors that replace the file. A change is enforced for the next request within one poll
//! period plus the compile time. The poll itself only looks at each file's name, length,
//! modification time and inode; the content (a megabyte for a thousand clients) is read and hashed
//! when those change, and every [`FULL_CHECK_EVERY`] polls in case an edit kept all four. Hashing
//! it every poll on the request thread delayed calls by about a millisecond each time.

use crate::{
    metrics::Metrics,
    source::file::{self, Selection},
    state::{Active, Live},
};
use sha2::{Digest, Sha256};
use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

/// How often the file is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Every this many polls the content is hashed even when no file's stamp changed.
pub const FULL_CHECK_EVERY: u32 = 25;

/// The files of the configuration: every file of a folder in name order, or the one file.
fn files(path: &Path) -> Option<Vec<PathBuf>> {
    if !path.is_dir() {
        return Some(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    Some(files)
}

/// What one file looks like from the outside.
type Stamp = (PathBuf, u64, Option<SystemTime>, u64);

/// Name, length, modification time and inode of every file (symlinks followed); `None` when
/// one cannot be read.
fn stamp(path: &Path) -> Option<Vec<Stamp>> {
    files(path)?
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(&f).ok()?;
            Some((f, m.len(), m.modified().ok(), m.ino()))
        })
        .collect()
}

/// A digest of the configuration's bytes (every file of a folder, in name order), or `None` when
/// it cannot be read.
pub fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    for file in files(path)? {
        hasher.update(file.as_os_str().as_encoded_bytes());
        hasher.update(std::fs::read(&file).ok()?);
    }
    Some(hasher.finalize().into())
}

/// Loads the configuration and installs it; on error keeps what is in force. Returns whether a
/// new version was installed.
pub fn load_and_install(
    path: &Path,
    selection: &Selection,
    live: &Live,
    metrics: &Metrics,
) -> bool {
    match file::load_config(path, selection) {
        Ok((bundle, rules)) => {
            let version = bundle.version.clone();
            for problem in &rules.problems {
                tracing::warn!(object = %problem.object, condition = problem.condition, reason = problem.reason, "{}", problem.message);
            }
            let changed = live.install(Active::new(rules, bundle));
            // The load's temporaries (and the replaced rules, unless a request still holds
            // them) are free now: hand their pages back.
            crate::memory::release_free_memory();
            if changed {
                metrics.config_installed(&version);
                tracing::info!(%version, path = %path.display(), "configuration in force");
            }
            changed
        }
        Err(error) => {
            metrics.config_rejected();
            if live.is_ready() {
                tracing::error!(path = %path.display(), "configuration rejected, the previous one stays in force:\n{error}");
            } else {
                tracing::error!(path = %path.display(), "configuration rejected; denying every request until a valid one is written:\n{error}");
            }
            false
        }
    }
}

/// Watches `path` until the task is dropped, reloading on every content change.
pub async fn watch(path: PathBuf, selection: Selection, live: Arc<Live>, metrics: Metrics) {
    let mut last = fingerprint(&path);
    let mut last_stamp = stamp(&path);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polls: u32 = 0;
    loop {
        tick.tick().await;
        polls = polls.wrapping_add(1);
        let now = stamp(&path);
        if now == last_stamp && !polls.is_multiple_of(FULL_CHECK_EVERY) {
            continue;
        }
        let current = fingerprint(&path);
        if current.is_none() {
            continue; // unreadable mid-swap: the stamp is not taken, so the next poll retries
        }
        last_stamp = now;
        if current == last {
            continue;
        }
        last = current;
        let (path, selection, live, metrics) = (
            path.clone(),
            selection.clone(),
            live.clone(),
            metrics.clone(),
        );
        // Parsing and CEL evaluation are CPU work: keep them off the request threads.
        let _ = tokio::task::spawn_blocking(move || {
            load_and_install(&path, &selection, &live, &metrics)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_sees_in_place_edits_of_the_same_size_and_replaced_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clients.yaml");
        std::fs::write(&file, "suspended: false\n").unwrap();
        let first = stamp(dir.path()).unwrap();
        assert_eq!(stamp(dir.path()).unwrap(), first, "nothing changed");
        // The same length, written in place a little later: the modification time moves.
        std::thread::sleep(Duration::from_millis(30));
        std::fs::write(&file, "suspended: true!\n").unwrap();
        let second = stamp(dir.path()).unwrap();
        assert_ne!(second, first);
        // Replaced by rename (editors, `kubectl` ConfigMap symlink swaps): a new inode.
        let tmp = dir.path().join("new");
        std::fs::write(&tmp, "suspended: true!\n").unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, "x").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        std::fs::remove_file(&other).unwrap();
        assert_ne!(stamp(dir.path()).unwrap(), second);
        // A new file in the folder.
        std::fs::write(dir.path().join("tools.yaml"), "").unwrap();
        assert_eq!(stamp(dir.path()).unwrap().len(), 2);
        assert_eq!(stamp(&dir.path().join("missing")), None);
    }
}
