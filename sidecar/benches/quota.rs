//! Cost of one local quota check with limits for 1,000 clients × 200 tools, every limit kind
//! applying to each call (client rate + daily, policy rate + daily, tool rate). Prints the
//! median and tail of individually timed checks (the timer itself adds some 20–40 ns), and the
//! average over a batch. No assertion: the target is ≤ 5 µs median, read it from the output.
//!
//! `cargo bench -p mcp-warden-sidecar --bench quota`

#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../tests/quota_support/mod.rs"]
mod quota_support;

use futures::executor::block_on;
use mcp_warden_sidecar::quota::{QuotaConfig, Quotas};
use prometheus::Registry;
use quota_support::*;
use serde_json::json;
use std::{
    hint::black_box,
    time::{Duration, Instant},
};

const CLIENTS: usize = 1_000;
const TOOLS: usize = 200;
const POLICIES: usize = 10;
const SAMPLES: usize = 200_000;

fn main() {
    let started = Instant::now();
    let tool_names: Vec<String> = (0..TOOLS).map(|t| format!("tool_{t}")).collect();
    let entries: Vec<(&str, Option<serde_json::Value>)> = tool_names
        .iter()
        .map(|n| (n.as_str(), Some(rate(1_000_000, "1s", 1_000_000))))
        .collect();
    let client_names: Vec<String> = (0..CLIENTS).map(|c| format!("client-{c}")).collect();
    let clients = client_names
        .iter()
        .map(|n| {
            client(
                n,
                json!({"rateLimit": rate(1_000_000, "1s", 1_000_000), "dailyCalls": 1_000_000_000u64}),
                &[],
            )
        })
        .collect();
    let per_policy = CLIENTS / POLICIES;
    let policies = (0..POLICIES)
        .map(|p| {
            let named: Vec<&str> = client_names[p * per_policy..(p + 1) * per_policy]
                .iter()
                .map(String::as_str)
                .collect();
            policy(
                &format!("policy-{p}"),
                &named,
                &["tool_*"],
                Some(rate(1_000_000, "1s", 1_000_000)),
                Some(1_000_000_000),
            )
        })
        .collect();
    let rules = rules(tool(&entries, None), clients, policies);
    let client_refs: Vec<_> = client_names.iter().map(|n| client_ref(n)).collect();
    let policy_refs: Vec<_> = (0..POLICIES)
        .map(|p| policy_ref(&format!("policy-{p}")))
        .collect();
    let quotas = Quotas::new(QuotaConfig::default(), &Registry::new()).unwrap();
    quotas.update(&rules);
    println!(
        "setup: {CLIENTS} clients × {TOOLS} tools, {POLICIES} policies, compiled in {:?}",
        started.elapsed()
    );

    let clock = Clock::at("2026-11-24T12:00:00Z");
    let check = |c: usize, t: usize| {
        let outcome = block_on(quotas.check(
            &rules,
            &client_refs[c],
            &policy_refs[c / per_policy],
            &tool_names[t],
            clock.now(),
        ));
        assert!(outcome.is_allowed(), "{outcome:?}");
        black_box(outcome);
    };

    // Every client × tool pair once: 200,000 limit states in memory.
    let warm = Instant::now();
    for c in 0..CLIENTS {
        for t in 0..TOOLS {
            check(c, t);
        }
    }
    let warm = warm.elapsed();
    println!(
        "first call of each of {} client × tool pairs: {:.0} ns average",
        CLIENTS * TOOLS,
        warm.as_nanos() as f64 / (CLIENTS * TOOLS) as f64
    );

    // Random pairs, each check timed on its own.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pairs: Vec<(usize, usize)> = (0..SAMPLES)
        .map(|_| ((next() as usize) % CLIENTS, (next() as usize) % TOOLS))
        .collect();
    let mut samples: Vec<Duration> = Vec::with_capacity(SAMPLES);
    for &(c, t) in &pairs {
        let t0 = Instant::now();
        check(c, t);
        samples.push(t0.elapsed());
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "check (5 limits, allowed), {SAMPLES} random pairs: median {:?}, p90 {:?}, p99 {:?}, max {:?}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );

    let batch = Instant::now();
    for &(c, t) in &pairs {
        check(c, t);
    }
    println!(
        "batch of {SAMPLES}: {:.0} ns per check on average",
        batch.elapsed().as_nanos() as f64 / SAMPLES as f64
    );
}
