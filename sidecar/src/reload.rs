//! Hot reload of the standalone configuration.
//!
//! ```text
//! every 200 ms: fingerprint(config files) changed? ──► load_config ──ok──► Live::install (atomic)
//!                                                        └─err─► keep the RuleSet in force; log + count
//! ```
//!
//! Polling the content (not inotify) also catches Kubernetes ConfigMap updates, which swap a
//! symlink, and editors that replace the file. A change is enforced for the next request within
//! one poll period plus the compile time.

use crate::{
    config::{self, Selection},
    metrics::Metrics,
    state::{Active, Live},
};
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// How often the file is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A digest of the configuration's bytes (every file of a folder, in name order), or `None` when
/// it cannot be read.
pub fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    for file in files {
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
    match config::load_config(path, selection) {
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
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = fingerprint(&path);
        if current.is_none() || current == last {
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
