//! Revocation in standalone mode: suspending a client by editing the config file takes effect
//! for its very next requests, without a restart and without dropping the session: 20 times, the
//! time from the write to the first denial stays under one second.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{repo_root, server_everything};
use mcp_warden_tests::{mcp::Session, procs::sidecar};
use serde_json::json;
use std::time::{Duration, Instant};

const SAMPLES: usize = 20;

/// Calls `echo` until `want_allowed` holds, for at most 5 s; returns when it first held.
fn first_answer(session: &mut Session, want_allowed: bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = session
            .call_tool("echo", json!({"message": "hi"}))
            .expect("the sidecar answers");
        if reply.is_success() == want_allowed {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no {} within 5 s: {reply:?}",
            if want_allowed { "allow" } else { "denial" }
        );
    }
}

#[test]
fn suspending_a_client_in_the_file_denies_it_within_a_second() {
    let (_upstream, upstream_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("everything.yaml");
    let active =
        std::fs::read_to_string(repo_root().join("tests/fixtures/configs/revocation.yaml"))
            .unwrap();
    let suspended = active.replacen("suspended: false", "suspended: true", 1);
    assert_ne!(active, suspended);
    std::fs::write(&config, &active).unwrap();

    let (_sidecar, addrs) = sidecar(&[
        "--config",
        config.to_str().unwrap(),
        "--upstream",
        &upstream_url,
        "--anonymous-client",
        "test/looper",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let mut session =
        Session::connect(&format!("{}/mcp", addrs.base), None).unwrap_or_else(|e| panic!("{e}"));
    first_answer(&mut session, true);

    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        std::fs::write(&config, &suspended).unwrap();
        let written = Instant::now();
        samples.push(first_answer(&mut session, false) - written);
        std::fs::write(&config, &active).unwrap();
        first_answer(&mut session, true);
    }
    samples.sort();
    let max = *samples.last().unwrap();
    println!(
        "revocation (file write → first denial) over {SAMPLES} samples: min {:?}, median {:?}, max {max:?}",
        samples[0],
        samples[SAMPLES / 2]
    );
    assert!(
        max < Duration::from_secs(1),
        "slowest revocation took {max:?}: {samples:?}"
    );
}
