//! `--source files:<dir>`: the operator serves bundles built from CR files instead of a cluster,
//! reloading them when they change. Used by demos and by the parity test (a sidecar fed through
//! the operator must enforce exactly what a sidecar reading the same files does).

use crate::index::Index;
use mcp_warden_policy::{Inventory, LoadErrors, load};
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Reads every `.yaml`/`.yml`/`.json` file of `dir` (non-recursive, name order) into an inventory.
pub fn read_dir(dir: &Path) -> Result<(Inventory, [u8; 32]), String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        hasher.update(file.as_os_str().as_encoded_bytes());
        hasher.update(text.as_bytes());
        match load(&file.display().to_string(), &text) {
            Ok(r) => resources.extend(r),
            Err(LoadErrors(e)) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors).to_string());
    }
    Ok((
        Inventory::from_resources(resources),
        hasher.finalize().into(),
    ))
}

/// Loads `dir` into the index now, then every 200 ms when its content changed. A load with
/// errors keeps what is in force.
pub async fn watch(dir: PathBuf, index: Index) {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let dir2 = dir.clone();
        let Ok(result) = tokio::task::spawn_blocking(move || read_dir(&dir2)).await else {
            continue;
        };
        match result {
            Ok((inventory, digest)) if Some(digest) != last => {
                last = Some(digest);
                let (tools, clients, policies) = inventory.len();
                index.replace_all(inventory);
                tracing::info!(dir = %dir.display(), tools, clients, policies, "CR files loaded");
            }
            Ok(_) => {}
            Err(error) => tracing::error!("CR files rejected, keeping the previous ones:\n{error}"),
        }
    }
}
