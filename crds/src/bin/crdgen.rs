//! Writes the CRD YAML generated from the Rust types: `crds/manifests/<plural>.yaml` (for
//! `kubectl apply -f crds/manifests/`) and `charts/mcp-warden/crds/<plural>.yaml`.
//!
//! `crdgen` (from anywhere in the repo) rewrites both; `crdgen --stdout` prints them instead.

use std::{fs, path::PathBuf};

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let to_stdout = std::env::args().any(|a| a == "--stdout");
    for (stem, crd) in mcp_warden_crds::crds() {
        let yaml = mcp_warden_crds::crd_yaml(&crd);
        if to_stdout {
            #[allow(clippy::print_stdout)]
            {
                print!("---\n{yaml}");
            }
            continue;
        }
        for dir in ["crds/manifests", "charts/mcp-warden/crds"] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join(format!("{stem}.yaml")), &yaml)?;
        }
    }
    Ok(())
}
