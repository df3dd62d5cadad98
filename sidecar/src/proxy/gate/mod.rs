//! The gate: who is calling, and what becomes of each message.
//!
//! ```text
//! request head ──► identify (once per request) ──► Access         identify.rs
//!                  (refused: Refusal, answered before the body is read)
//! parsed payload ──► Facts::gather (the session tables, read once)  facts.rs
//!   ──► decide(messages, era, caller, rules, facts) ──► [Outcome]   decide.rs   (pure)
//!   ──► quotas may turn an allowed call into Denial::Throttled      (proxy/throttle.rs)
//!   ──► observe::outcomes: decision log, metrics, usage             observe.rs
//!   ──► any refused: deny::answer (one encoder), audit Denied records
//!       all allowed: audit Forwarding records, upstream             (proxy/post.rs)
//! ```

mod decide;
mod facts;
mod identify;
pub mod observe;

pub use decide::{Outcome, decide};
pub use facts::Facts;
pub use identify::{Access, Refusal, identify};
pub use observe::{Event, record};

#[cfg(test)]
mod tests;
