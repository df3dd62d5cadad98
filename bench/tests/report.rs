//! `bench-tool report` on a hand-made results folder: the A/B figures of both ack levels reach
//! the targets table, the performance page and the README block; the floor (bare proxy) is shown
//! beside them and never judged against a target.

#![allow(clippy::unwrap_used)]

use mcp_warden_bench::report;
use std::{fs, path::Path};

fn wrk(dir: &Path, side: &str, rps: f64, requests: u64) {
    fs::write(
        dir.join(format!("wrk-{side}-1.txt")),
        format!(
            "Running 10s test @ http://127.0.0.1:1/mcp\n  1 threads and 32 connections\n  {requests} requests in 10.00s, 20.00MB read\nRequests/sec: {rps:.2}\nTransfer/sec: 2.00MB\n"
        ),
    )
    .unwrap();
}

fn oha(dir: &Path, rate: u32, side: &str, p50_us: f64, p99_us: f64) {
    let v = serde_json::json!({
        "summary": {"requestsPerSec": f64::from(rate)},
        "latencyPercentiles": {"p50": p50_us / 1e6, "p90": p50_us / 1e6, "p99": p99_us / 1e6, "p99.9": p99_us / 1e6},
        "statusCodeDistribution": {"200": rate * 10},
    });
    fs::write(dir.join(format!("oha-{rate}-{side}-1.json")), v.to_string()).unwrap();
}

/// One repetition: direct 40,000 req/s; through `rps` with `cpu_us` sidecar CPU per call; added
/// p50 = `added_us` at both rates.
fn ab(dir: &Path, rps: f64, cpu_us: f64, added_us: f64) {
    fs::create_dir_all(dir).unwrap();
    wrk(dir, "direct", 40_000.0, 400_000);
    for rate in [1000, 4000] {
        oha(dir, rate, "direct", 100.0, 200.0);
    }
    side(dir, "through", "cpu", rps, cpu_us, added_us);
}

/// The figures of one proxy side (`through`, or `floor` with CPU files `cpu-floor-*`).
fn side(dir: &Path, side: &str, cpu: &str, rps: f64, cpu_us: f64, added_us: f64) {
    let requests = 100_000;
    wrk(dir, side, rps, requests);
    let ticks = cpu_us * requests as f64 / 1e6 * 100.0;
    fs::write(
        dir.join(format!("{cpu}-wrk-1.txt")),
        format!("1000 {}", 1000.0 + ticks),
    )
    .unwrap();
    for rate in [1000, 4000] {
        oha(dir, rate, side, 100.0 + added_us, 200.0 + 2.0 * added_us);
        fs::write(dir.join(format!("{cpu}-oha-{rate}-1.txt")), "0 10").unwrap();
    }
}

#[test]
fn both_ack_levels_reach_the_targets_table_and_the_readme() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("bench/results/20261124T000000Z");
    fs::create_dir_all(&results).unwrap();
    fs::write(
        results.join("machine.txt"),
        "date: 2026-11-24T00:00:00Z\ncpus: 2\nclk_tck: 100\npinning: sidecar CPU 0, upstream + load generators CPU 1\nreps: 1; seconds: 10; rates: 1000 4000; connections: 32\n",
    )
    .unwrap();
    ab(&results, 12_000.0, 80.0, 400.0);
    ab(&results.join(report::WRITTEN_DIR), 20_000.0, 50.0, 60.0);
    side(&results, "floor", "cpu-floor", 30_000.0, 25.0, 70.0);
    for (side, p50) in [("direct", 100.0), ("through", 1100.0), ("floor", 300.0)] {
        let v =
            serde_json::json!({"latencyPercentiles": {"p50": p50 / 1e6, "p99": 2.0 * p50 / 1e6}});
        fs::write(
            results.join(format!("shape-progress-{side}-1.json")),
            v.to_string(),
        )
        .unwrap();
    }
    fs::write(results.join("rss-idle-kb.txt"), "20480\n").unwrap();
    fs::write(results.join("rss-idle-anon-kb.txt"), "7168\n").unwrap();
    fs::write(results.join("rss-idle-file-kb.txt"), "13312\n").unwrap();
    let doc = tmp.path().join("performance.md");
    let readme = tmp.path().join("README.md");
    fs::write(
        &readme,
        "# x\n<!-- bench:begin -->\nold\n<!-- bench:end -->\ntail\n",
    )
    .unwrap();

    report::write(&results, &doc, &readme).unwrap();

    let doc = fs::read_to_string(doc).unwrap();
    let row = |what: &str| {
        doc.lines()
            .find(|l| l.starts_with(&format!("| {what} |")))
            .unwrap_or_else(|| panic!("no row {what:?} in\n{doc}"))
            .to_owned()
    };
    // 80 µs per call → 12,500 per core, missed (≥ 25,000 with durable); 50 µs → 20,000, missed
    // (≥ 28,000 with written).
    assert!(
        row("tools/call per sidecar core (req/s), ack: durable")
            .contains("| ≥ 25,000 | 12500 (12500–12500) | **missed** |"),
        "{doc}"
    );
    assert!(
        row("sidecar CPU per tools/call (µs), ack: written")
            .contains("| ≤ 35 | 50.0 (50.0–50.0) | **missed** |"),
        "{doc}"
    );
    // Latency goals are above the floor's (written adds 60 and 120, the floor 70 and 140).
    assert!(
        row("added latency p50 at 1000 req/s above the floor (µs), ack: written")
            .contains("| ≤ +20 | -10 (60 − floor 70) | met |"),
        "{doc}"
    );
    assert!(
        row("added latency p99 at 4000 req/s above the floor (µs), ack: written")
            .contains("| ≤ +150 | -20 (120 − floor 140) | met |"),
        "{doc}"
    );
    assert!(!doc.contains("above the floor (µs), ack: durable"));
    assert!(
        row("sidecar RSS idle, 1,000-client policy set")
            .contains("| ≤ 16 MiB | 20.0 MiB | **missed** |")
    );
    assert!(row("… of which anonymous (this sidecar's own memory)").contains("| 7.0 MiB |"));
    assert!(doc.contains("shared by every sidecar of the same image on a node) | 13.0 MiB |"));
    assert!(doc.contains("### ack: durable") && doc.contains("### ack: written"));
    assert!(
        row("through (req/s)")
            .contains("| 12000 (12000–12000) | 20000 (20000–20000) | 30000 (30000–30000) |"),
        "{doc}"
    );
    // The floor: its own latency table and CPU, never a target.
    assert!(row("proxy CPU per call (µs)").ends_with("| 25.0 (25.0–25.0) |"));
    assert!(doc.contains("### floor: a bare pass-through proxy"));
    assert!(!doc.contains("ack: floor"));
    // Every latency against the floor's of the same run: above it, and the ratio.
    assert!(
        doc.contains("| 1000 | p50 | 400 (400–400) | +330 | × 5.71 |"),
        "{doc}"
    );
    // The SSE shape: 1,000 µs added where the floor adds 200: 800 above, 8 µs per event.
    assert!(
        row("progress").starts_with(
            "| progress | p50 | 1000 (1000–1000) | 200 (200–200) | 800 (800–800) | × 5.00 | 8.0 |"
        ),
        "{doc}"
    );

    let readme = fs::read_to_string(readme).unwrap();
    assert!(
        readme.starts_with("# x\n<!-- bench:begin -->\n| figure |"),
        "{readme}"
    );
    assert!(readme.ends_with("<!-- bench:end -->\ntail\n"));
    assert!(readme.contains("ack: written") && !readme.contains("old\n"));
    assert!(
        readme.contains("a bare pass-through proxy in the sidecar's place adds p50 70 (70–70) µs and p99 140 (140–140) µs at 1,000 req/s and uses 25.0 (25.0–25.0) µs CPU per call"),
        "{readme}"
    );
    assert!(
        !readme.contains("audit records/s"),
        "the README keeps the proxy goals"
    );
}

#[test]
fn a_run_without_the_written_pass_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("r");
    fs::create_dir_all(&results).unwrap();
    fs::write(
        results.join("machine.txt"),
        "clk_tck: 100\nreps: 1; seconds: 10; rates: 1000; connections: 32\n",
    )
    .unwrap();
    ab(&results, 12_000.0, 80.0, 400.0);
    let (doc, readme) = (tmp.path().join("p.md"), tmp.path().join("R.md"));
    fs::write(&readme, "<!-- bench:begin -->\n<!-- bench:end -->\n").unwrap();
    report::write(&results, &doc, &readme).unwrap();
    let doc = fs::read_to_string(doc).unwrap();
    assert!(
        doc.contains("| through (req/s) | 12000 (12000–12000) | not run | not run |"),
        "{doc}"
    );
    assert!(
        !doc.contains("), ack: written |"),
        "no written targets without the written pass"
    );
    assert!(
        !doc.contains("### floor"),
        "no floor table without floor runs"
    );
}
