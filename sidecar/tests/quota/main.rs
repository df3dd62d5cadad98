//! The quota engine on a manual clock: bursts, refill, daily rollover at UTC midnight,
//! atomicity across limits, reloads, runaway detection, and the HTTP answers.

#[path = "../quota_support/mod.rs"]
mod quota_support;

use futures::executor::block_on;
use mcp_warden_policy::RuleSet;
use mcp_warden_sidecar::quota::{
    LimitKind, QUOTA_UNAVAILABLE_CODE, QuotaConfig, QuotaOutcome, Quotas, RATE_LIMITED_CODE,
    Unavailable,
};
use prometheus::{Encoder, Registry, TextEncoder};
use quota_support::*;
use serde_json::{Value, json};
use std::time::Duration;

fn engine() -> (Quotas, Registry) {
    let registry = Registry::new();
    let quotas = Quotas::new(QuotaConfig::default(), &registry).expect("metrics register");
    (quotas, registry)
}

fn call(
    q: &Quotas,
    rules: &RuleSet,
    who: &str,
    pol: &str,
    tool: &str,
    clock: &Clock,
) -> QuotaOutcome {
    block_on(q.check(rules, &client_ref(who), &policy_ref(pol), tool, clock.now()))
}

/// The refusing limit, or `None` when allowed.
fn refused_by(o: &QuotaOutcome) -> Option<LimitKind> {
    match o {
        QuotaOutcome::Allowed(_) => None,
        QuotaOutcome::Limited(l) => Some(l.reason),
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn remaining(o: &QuotaOutcome, kind: LimitKind) -> u64 {
    match o {
        QuotaOutcome::Allowed(a) => {
            a.limits
                .iter()
                .find(|l| l.kind == kind)
                .unwrap_or_else(|| panic!("{kind:?} not among {:?}", a.limits))
                .remaining
        }
        other => panic!("not allowed: {other:?}"),
    }
}

fn metrics_text(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encodes");
    String::from_utf8(out).expect("utf-8")
}

const NOON: &str = "2026-11-24T12:00:00Z";

mod answers;
mod capabilities;
mod concurrency;
mod limits;
mod runaway;
