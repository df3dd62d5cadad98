//! Benchmarks of mcp-warden (issue #8): the same workload directly against an upstream and
//! through the sidecar, interleaved, on one machine. `make bench` runs `bench/run.sh`.
//!
//! ```text
//! run.sh ──► bench-tool gen ──► policy set (1,000 clients / 200 tools / 2,000 policies), keys, tokens
//!        ──► bench-tool issuer (discovery + JWKS)    bench-upstream (CPU 1)    sidecar (CPU 0)
//!        ──► wrk / oha, A B A B … (CPU 1)  ──► bench/results/<timestamp>/ raw outputs
//!        ──► bench-tool revocation | push | audit  ──► JSON figures in the same folder
//!        ──► bench-tool report ──► docs/performance.md + the README table
//! ```
//!
//! `upstream` is the MCP server under test, `passthrough` the bare proxy that sets the floor, `fixture` and `inventory` write CRs and tokens,
//! `issuer` serves the keys, `probe` and `audit_load` measure, `fsync_modes` times a lone durable
//! record's ways to the disk, `report` summarizes.

pub mod alloc_count;
pub mod audit_load;
pub mod fixture;
pub mod fsync_modes;
pub mod inventory;
pub mod issuer;
pub mod passthrough;
pub mod probe;
pub mod report;
mod report_render;
pub mod upstream;
