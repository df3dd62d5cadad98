//! `--source files:<dir>`: the operator serves bundles built from CR files instead of a cluster,
//! reloading them when they change. Used by demos and by the parity test (a sidecar fed through
//! the operator must enforce exactly what a sidecar reading the same files does).

use crate::index::Index;
use mcp_warden_policy::{Inventory, LoadErrors, Resource, load};
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// The `.yaml`/`.yml`/`.json` files of `dir` (non-recursive), in name order.
fn cr_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads every `.yaml`/`.yml`/`.json` file of `dir` (non-recursive, name order) into an inventory.
pub fn read_dir(dir: &Path) -> Result<(Inventory, [u8; 32]), String> {
    let files = cr_files(dir)?;
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

/// Reads CR files and folders (each folder as [`read_dir`] does) into one inventory; every
/// problem of every file is reported.
pub fn read_paths(paths: &[PathBuf]) -> Result<Inventory, String> {
    let mut inventory = Inventory::default();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match read_dir(path) {
                Ok((inv, _)) => {
                    for o in inv.tools().values() {
                        inventory.apply(Resource::Tool(o.clone()));
                    }
                    for o in inv.clients().values() {
                        inventory.apply(Resource::Client(o.clone()));
                    }
                    for o in inv.policies().values() {
                        inventory.apply(Resource::Policy(o.clone()));
                    }
                }
                Err(e) => errors.push(e),
            }
            continue;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        match load(&path.display().to_string(), &text) {
            Ok(r) => r.into_iter().for_each(|r| inventory.apply(r)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(inventory)
    } else {
        Err(errors.join("\n"))
    }
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
