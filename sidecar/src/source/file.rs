//! Standalone configuration: CR YAML from a file or a folder, compiled exactly as an
//! operator-pushed bundle would be.
//!
//! ```text
//! --config path ──read──► load (schema + CEL) ──► Inventory ──select──► Bundle ──compile──► RuleSet
//!                                                     ▲
//!                                    --workload ns/name --labels k=v   (default: the only McpTool)
//! ```
//!
//! The CRD schemas and CEL programs validation needs are dropped after every load
//! ([`mcp_warden_policy::release_schemas`]): a reload recompiles those of the kinds it has new
//! documents of, in milliseconds, instead of keeping a megabyte resident.

use mcp_warden_policy::{
    Bundle, CompileError, Inventory, LoadErrors, RuleSet, Workload, bundle_for_tools, compile,
    load, select,
};
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

/// Which McpTool of the file governs this sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// The file must hold exactly one McpTool.
    #[default]
    OnlyTool,
    /// The McpTools whose `server.selector` matches this workload.
    Workload(Workload),
}

/// Why a configuration cannot be enforced.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// One or more documents are invalid.
    #[error("{0}")]
    Invalid(LoadErrors),
    /// The valid objects do not make one governed server.
    #[error("{0}")]
    Compile(CompileError),
}

/// Reads every `.yaml`, `.yml` and `.json` file of `path` (a file, or a folder, non-recursively,
/// in name order) and compiles the configuration for `selection`.
pub fn load_config(path: &Path, selection: &Selection) -> Result<(Bundle, RuleSet), ConfigError> {
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match load(&file.display().to_string(), &read(file)?) {
            Ok(loaded) => resources.extend(loaded),
            Err(LoadErrors(e)) => errors.extend(e),
        }
    }
    // The sidecar loads once and then on edits: the compiled CRD schemas (a megabyte) are
    // compiled again by the next load that has a new document to validate (milliseconds).
    mcp_warden_policy::release_schemas();
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(LoadErrors(errors)));
    }
    let inventory = Inventory::from_resources(resources);
    let bundle = match selection {
        Selection::OnlyTool => {
            let tools: Vec<_> = inventory.tools().keys().cloned().collect();
            bundle_for_tools(&inventory, &tools)
        }
        Selection::Workload(w) => select(&inventory, w),
    };
    // The bundle holds copies of what applies: free the rest before compiling.
    drop(inventory);
    let rules = compile(&bundle).map_err(ConfigError::Compile)?;
    Ok((bundle, rules))
}

/// Parses `--workload ns/name` and `--labels k=v,k2=v2`.
pub fn workload(spec: &str, labels: Option<&str>) -> Result<Workload, String> {
    let (namespace, name) = spec
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .ok_or_else(|| format!("--workload must be <namespace>/<name>, got {spec:?}"))?;
    let mut map = BTreeMap::new();
    for pair in labels
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            format!("--labels must be k=v pairs separated by commas, got {pair:?}")
        })?;
        map.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(Workload {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels: map,
    })
}
