//! `--source files:<dir>`: the operator serves bundles built from CR files instead of a cluster,
//! reloading them when they change. Used by demos, the bench and the parity test (a sidecar fed
//! through the operator must enforce exactly what a sidecar reading the same files does).
//!
//! ```text
//! every 50 ms: stamp(each file) changed? (or every 5 s: hash each file)
//!   └─yes─► content hash changed? ──► parse that file ──► inventory of all files ──► Index
//! ```
//!
//! A change costs the parse of the files that changed, not of the whole folder. With the
//! bench's 13,000 CRs in 12 files, one changed client reaches the watch in a median 50 ms (it
//! was 200 ms when every 200 ms poll parsed the whole folder), and an idle operator uses 0.6 %
//! of a core.

use crate::index::Index;
use mcp_warden_policy::{Inventory, LoadErrors, Resource, load};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
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
pub fn read_dir(dir: &Path) -> Result<Inventory, String> {
    let files = cr_files(dir)?;
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        match load(&file.display().to_string(), &text) {
            Ok(r) => resources.extend(r),
            Err(LoadErrors(e)) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors).to_string());
    }
    Ok(Inventory::from_resources(resources))
}

/// Reads CR files and folders (each folder as [`read_dir`] does) into one inventory; every
/// problem of every file is reported.
pub fn read_paths(paths: &[PathBuf]) -> Result<Inventory, String> {
    let mut inventory = Inventory::default();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match read_dir(path) {
                Ok(inv) => {
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

/// How often the folder's file stamps are compared.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Every this many polls each file's content is hashed even when no stamp changed (an edit can
/// keep the length and, within the clock's resolution, the modification time).
const FULL_CHECK_EVERY: u32 = 100;

/// Name-independent outside view of a file: length, modification time, inode.
type Stamp = (u64, Option<SystemTime>, u64);

/// A CR file as last read: what it held, or why it was refused.
#[derive(Debug)]
struct CrFile {
    stamp: Stamp,
    digest: [u8; 32],
    parsed: Result<Vec<Resource>, String>,
}

/// The folder as last read, file by file: a change re-parses only the files that changed.
#[derive(Debug, Default)]
pub struct Folder {
    files: BTreeMap<PathBuf, CrFile>,
    polls: u32,
}

impl Folder {
    /// Brings the cache up to date with `dir`. Returns `None` when no file's content changed,
    /// else the new inventory or every problem of every file.
    pub fn refresh(&mut self, dir: &Path) -> Option<Result<Inventory, String>> {
        self.polls = self.polls.wrapping_add(1);
        let full = self.polls.is_multiple_of(FULL_CHECK_EVERY);
        let paths = match cr_files(dir) {
            Ok(paths) => paths,
            Err(e) => return Some(Err(e)),
        };
        let mut changed = paths.len() != self.files.len();
        self.files.retain(|path, _| paths.contains(path));
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // replaced mid-poll: the next poll sees it
            };
            let stamp = (meta.len(), meta.modified().ok(), meta.ino());
            let known = self.files.get(&path);
            if !full && known.is_some_and(|r| r.stamp == stamp) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            if known.is_some_and(|r| r.digest == digest) {
                self.files.get_mut(&path).expect("known").stamp = stamp;
                continue;
            }
            let parsed = load(&path.display().to_string(), &text).map_err(|e| e.to_string());
            self.files.insert(
                path,
                CrFile {
                    stamp,
                    digest,
                    parsed,
                },
            );
            changed = true;
        }
        changed.then(|| self.inventory())
    }

    fn inventory(&self) -> Result<Inventory, String> {
        let errors: Vec<&str> = self
            .files
            .values()
            .filter_map(|r| r.parsed.as_ref().err().map(String::as_str))
            .collect();
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let resources = self.files.values().filter_map(|r| r.parsed.as_ref().ok());
        Ok(Inventory::from_resources(resources.flatten().cloned()))
    }
}

/// Loads `dir` into the index whenever a file's content changes (checked every
/// [`POLL_INTERVAL`]; only the changed files are parsed again). A load with errors keeps what
/// is in force and is reported once per change.
pub async fn watch(dir: PathBuf, folder: Folder, index: Index) {
    let mut folder = Some(folder);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (dir2, mut f) = (dir.clone(), folder.take().unwrap_or_default());
        let Ok((f, result)) = tokio::task::spawn_blocking(move || {
            let result = f.refresh(&dir2);
            (f, result)
        })
        .await
        else {
            continue; // a panic while reading: start again from an empty cache
        };
        folder = Some(f);
        match result {
            Some(Ok(inventory)) => {
                let (tools, clients, policies) = inventory.len();
                index.replace_all(inventory);
                tracing::info!(dir = %dir.display(), tools, clients, policies, "CR files loaded");
            }
            Some(Err(error)) => {
                tracing::error!("CR files rejected, keeping the previous ones:\n{error}")
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The payments example in a folder of its own.
    fn example() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/payments");
        for file in ["tool.yaml", "clients.yaml", "policies.yaml"] {
            fs::copy(from.join(file), dir.path().join(file)).expect("copy");
        }
        dir
    }

    fn owner(inventory: &Inventory) -> &str {
        let key = ("agents".to_owned(), "support-bot".to_owned());
        &inventory.clients()[&key].spec.owner
    }

    fn append(path: &Path, text: &str) {
        let before = fs::read_to_string(path).expect("read");
        fs::write(path, before + text).expect("write");
    }

    #[test]
    fn only_a_change_reports_and_only_changed_files_are_parsed_again() {
        let dir = example();
        let mut folder = Folder::default();
        let first = folder
            .refresh(dir.path())
            .expect("first read")
            .expect("valid");
        assert_eq!(first.len(), (1, 5, 5));
        assert!(folder.refresh(dir.path()).is_none(), "nothing changed");

        // Same length, same modification time, same inode: the stamp cannot see this edit.
        let clients = dir.path().join("clients.yaml");
        let mtime = fs::metadata(&clients)
            .and_then(|m| m.modified())
            .expect("mtime");
        let text = fs::read_to_string(&clients).expect("read");
        fs::write(
            &clients,
            text.replace("owner: team-support", "owner: team-xupport"),
        )
        .unwrap();
        fs::File::options()
            .write(true)
            .open(&clients)
            .unwrap()
            .set_modified(mtime)
            .unwrap();

        // Another file changes: it alone is parsed again, so the hidden edit is not seen yet.
        append(&dir.path().join("policies.yaml"), "# a comment\n");
        let second = folder
            .refresh(dir.path())
            .expect("a change")
            .expect("valid");
        assert_eq!(owner(&second), "team-support");

        // The periodic full check hashes every file and finds it.
        let found = (0..FULL_CHECK_EVERY).find_map(|_| folder.refresh(dir.path()));
        assert_eq!(
            owner(&found.expect("full check").expect("valid")),
            "team-xupport"
        );
    }

    #[test]
    fn a_broken_file_is_reported_once_and_a_fix_reloads() {
        let dir = example();
        let mut folder = Folder::default();
        folder
            .refresh(dir.path())
            .expect("first read")
            .expect("valid");
        let clients = dir.path().join("clients.yaml");
        let good = fs::read_to_string(&clients).unwrap();
        fs::write(&clients, "kind: McpClient\nspec: [").unwrap();
        let error = folder.refresh(dir.path()).expect("a change").unwrap_err();
        assert!(error.contains("clients.yaml"), "{error}");
        assert!(
            folder.refresh(dir.path()).is_none(),
            "reported once, not every poll"
        );

        fs::write(&clients, good).unwrap();
        let fixed = folder
            .refresh(dir.path())
            .expect("a change")
            .expect("valid");
        assert_eq!(owner(&fixed), "team-support");

        fs::remove_file(&clients).unwrap();
        let without = folder
            .refresh(dir.path())
            .expect("a file went")
            .expect("valid");
        assert_eq!(without.clients().len(), 0);
    }
}
