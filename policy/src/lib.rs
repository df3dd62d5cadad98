//! Pure policy logic for mcp-warden: no I/O, no async runtime.
//!
//! ```text
//! YAML/JSON ──load──► Resource ──apply──► Inventory ──select(workload)──► Bundle{version}
//!                                                                            │ (operator pushes it,
//!                                                                            │  or file mode builds it)
//!                                                                            ▼
//!        Decision ◄──decide(principal, call, now)── RuleSet ◄──compile──── Bundle
//! ```
//!
//! The operator and the sidecar run exactly this code, so a file-mode sidecar and an
//! operator-fed one enforce the same thing for the same CRs (same `Bundle::version`).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod capability;
pub mod compile;
pub mod decide;
pub mod duration;
pub mod glob;
pub mod inventory;
pub mod lifecycle;
pub mod load;
pub mod resource;
pub mod selector;

pub use bundle::{Bundle, Workload, bundle_for_tools, select};
pub use capability::Capability;
pub use compile::{CompileError, Problem, RuleSet, compile};
pub use decide::{Call, Caller, Decision, Principal, authenticate, decide};
pub use inventory::Inventory;
pub use load::{LoadError, LoadErrors, load, release_schemas};
pub use resource::{DEFAULT_NAMESPACE, Kind, ObjectRef, Resource};

/// The maps a call looks up (entry names, granted names, client ids): foldhash, several times
/// faster than SipHash on short keys. Their keys come from CRs; a request only looks up, so
/// flooding one with colliding keys would take the power to write CRs.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
