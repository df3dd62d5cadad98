//! Where the repository and the third-party test peers are.

use std::{
    env,
    path::{Path, PathBuf},
};

/// The root of the repository (the workspace).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here
        .parent()
        .expect("the test-support crate lives in a folder of the workspace");
    root.canonicalize().unwrap_or_else(|_| root.to_path_buf())
}

/// Where `scripts/peers.sh` (`make peers`) installs the third-party test peers: `$PEERS_DIR`
/// when set (a relative path is taken from the repository root, as `make` would), else
/// `<repo>/.peers`.
pub fn peers_dir() -> PathBuf {
    match env::var_os("PEERS_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        None => repo_root().join(".peers"),
    }
}
