//! Helpers shared by the workspace's tests (the sidecar's and the operator's integration tests,
//! `mcp-warden-tests`, `mcp-warden-e2e`, the bench smoke test): one copy of each, so a fix to how
//! a peer is found, a process is started or a wait is bounded reaches every suite.
//!
//! | module | holds |
//! | --- | --- |
//! | [`paths`] | the repository root, `$PEERS_DIR` |
//! | [`peers`] | variables of `$PEERS_DIR/env.sh` (`make peers`), `server-everything` |
//! | [`proc`] | [`Proc`]: a child process killed on drop, started when a line of its output says it is ready; [`free_port`] |
//! | [`oidc`] | [`Idp`]: the real oidc-provider (`tests/peers/oidc-provider/op.mjs`) minting tokens |
//! | [`wait`] | [`eventually`] and its forms: poll a check until it holds, always bounded in time |
//! | [`tls`] | a fresh self-signed certificate for `localhost` |
//!
//! A missing peer is an error (or a panic, in the panicking forms) that says to run
//! `make peers`: no test skips itself because a peer is absent.

#![forbid(unsafe_code)]

pub mod files;
pub mod oidc;
pub mod paths;
pub mod peers;
pub mod proc;
pub mod tls;
pub mod wait;

pub use oidc::{Idp, IdpOptions, oidc_provider};
pub use paths::{peers_dir, repo_root};
pub use peers::{peer, peer_file, peer_var, server_everything};
pub use proc::{Proc, free_port};
pub use wait::{eventually, eventually_async, eventually_await, poll, try_eventually};
