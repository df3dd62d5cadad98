//! The spool: durable appends with contiguous sequences, restart continuity and tail recovery,
//! the `block` and `dropOldest` cap policies, acknowledged cursors, metrics, and a throughput
//! figure (printed, never asserted).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod audit_support;

use audit_support::*;
use mcp_warden_sidecar::audit::{Auditor, Outcome, Redaction, SpoolError, verify};
use mcp_warden_test_support::eventually_async;
use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

fn redaction() -> Redaction {
    Redaction::new(["/card/number", "ssn"], false).unwrap()
}

/// Appends `n` events with ids `first..first+n`, `concurrency` at a time; returns the receipts'
/// sequences.
async fn append_many(auditor: &Auditor, first: u64, n: u64, concurrency: u64) -> Vec<u64> {
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let a = auditor.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            let mut i = first + w;
            while i < first + n {
                seqs.push(
                    a.record(&call_event(i), &redaction())
                        .await
                        .unwrap()
                        .sequence,
                );
                i += concurrency;
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

fn segment_files(spool: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(spool.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_are_contiguous_and_continue_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cfg = config(&spool, "", " []");
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let seqs = append_many(&auditor, 1, 500, 16).await;
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
    auditor.shutdown(Duration::from_secs(5)).await;

    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let seqs = append_many(&auditor, 501, 10, 2).await;
    assert_eq!(seqs, (501..=510).collect::<Vec<_>>());
    let instance = auditor.spool().instance().to_owned();
    auditor.shutdown(Duration::from_secs(5)).await;

    let report = verify::verify(std::slice::from_ref(&spool), false).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let s = &report.instances[&instance];
    assert_eq!((s.first, s.last, s.records), (1, 510, 510));
    for f in segment_files(&spool) {
        for v in read_jsonl(&f) {
            assert_good_record(&v);
            assert!(!v.to_string().contains(SECRET_CARD));
        }
    }
}

/// The spool's threads yield to the request path (see `sched`): the writer runs as SCHED_BATCH,
/// so handing it a record does not preempt the worker that sent it; the janitor, which syncs and
/// deletes segments, as SCHED_IDLE, so a woken worker preempts it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_spool_writer_is_a_batch_thread_and_its_janitor_idle() {
    use mcp_warden_sidecar::sched;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&tmp.path().join("spool"), "", " []");
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    auditor.record(&call_event(1), &redaction()).await.unwrap();
    // Other tests of this binary run their own spools at the same time: every writer and
    // janitor of the process is checked, and there is at least this one.
    let writers = sched::threads_named("audit-spool");
    assert!(!writers.is_empty(), "no writer thread");
    for w in &writers {
        assert_eq!(sched::policy_of(w), Some(3), "SCHED_BATCH");
    }
    let janitors = sched::threads_named("audit-chores");
    assert!(!janitors.is_empty(), "no janitor thread");
    for j in &janitors {
        assert_eq!(sched::policy_of(j), Some(5), "SCHED_IDLE");
    }
    auditor.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_the_chain_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cfg = config(&spool, "  checkpointInterval: 1h", " []");
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    append_many(&auditor, 1, 20, 1).await;
    auditor.shutdown(Duration::from_secs(5)).await; // + a shutdown checkpoint: 21 records
    let last = segment_files(&spool).pop().unwrap();
    // A crash mid-write: a complete record with a broken hash, then half a line.
    let good = fs::read_to_string(&last).unwrap();
    let mut forged = good
        .lines()
        .nth(3)
        .unwrap()
        .replace("\"sequence\":4,", "\"sequence\":22,");
    forged.push('\n');
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(forged.as_bytes()).unwrap();
    let half = b"{\"class_uid\":6003,\"metadata\":{\"trunc";
    f.write_all(half).unwrap();
    drop(f);

    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    assert_eq!(auditor.spool().durable_sequence(), 21);
    let r = auditor.record(&call_event(99), &redaction()).await.unwrap();
    assert_eq!(r.sequence, 23, "22 is the startup checkpoint");
    auditor.shutdown(Duration::from_secs(5)).await;
    let report = verify::verify(std::slice::from_ref(&spool), false).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let records: Vec<_> = segment_files(&spool)
        .iter()
        .flat_map(|f| read_jsonl(f))
        .collect();
    let startup = records
        .iter()
        .find(|v| {
            v.pointer("/unmapped/mcp_warden/checkpoint/reason")
                .and_then(|r| r.as_str())
                == Some("startup")
        })
        .expect("a startup checkpoint");
    let cut = startup["unmapped"]["mcp_warden"]["checkpoint"]["recovered_truncated_bytes"]
        .as_u64()
        .unwrap();
    assert_eq!(cut as usize, forged.len() + half.len());
    for v in &records {
        assert_good_record(v);
    }
}

#[tokio::test]
async fn one_process_per_spool() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cfg = config(&spool, "", " []");
    let a = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let err = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap_err();
    assert!(
        matches!(
            err,
            mcp_warden_sidecar::audit::AuditError::Spool(SpoolError::Locked(_))
        ),
        "{err}"
    );
    a.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_full_with_block_refuses_new_calls_then_resumes_when_the_sink_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let capture = Capture::default();
    capture.down.store(true, Ordering::SeqCst);
    let url = capture.serve().await;
    let cfg = config(
        &spool,
        "  maxBytes: 65536\n  segmentBytes: 8192\n  whenFull: block",
        &format!("\n  - name: hook\n    batchRecords: 50\n    http: {{ url: \"{url}/ingest\" }}"),
    );
    let registry = prometheus::Registry::new();
    let auditor = Auditor::start(&cfg, &registry).unwrap();
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 1..=2000 {
        // New calls: request-phase records, subject to the cap.
        let mut ev = call_event(i);
        ev.outcome = Outcome::Forwarding;
        match auditor.record(&ev, &redaction()).await {
            Ok(r) => acked.push(r.sequence),
            Err(e) => {
                assert!(e.is_full(), "{e}");
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        refused,
        5,
        "the spool never filled: {:?} {}",
        auditor.spool().stats(),
        capture.requests.load(Ordering::SeqCst)
    );
    assert!(auditor.is_full());
    assert_eq!(auditor.metrics().appends_refused.get(), 5);
    assert!(auditor.spool().stats().bytes <= 65536);
    // The final record of an admitted call still goes in.
    let mut fin = call_event(5000);
    fin.outcome = Outcome::Answered;
    acked.push(auditor.record(&fin, &redaction()).await.unwrap().sequence);
    let mut req = call_event(5001);
    req.outcome = Outcome::Forwarding;
    assert!(
        auditor
            .record(&req, &redaction())
            .await
            .unwrap_err()
            .is_full()
    );

    // The sink recovers: the spool drains and new calls are admitted again.
    capture.down.store(false, Ordering::SeqCst);
    let t0 = Instant::now();
    let r = loop {
        match auditor.record(&req, &redaction()).await {
            Ok(r) => break r,
            Err(e) if e.is_full() && t0.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("not admitted again: {e}"),
        }
    };
    acked.push(r.sequence);
    assert!(!auditor.is_full());
    assert!(
        auditor.shutdown(Duration::from_secs(20)).await,
        "did not drain"
    );
    let got: BTreeSet<u64> = sequences(&dedup_by_uid(&capture.records()))
        .into_iter()
        .collect();
    for s in &acked {
        assert!(
            got.contains(s),
            "acknowledged record {s} never reached the sink"
        );
    }
    let last = *got.last().unwrap();
    assert_eq!(got, (1..=last).collect(), "gap at the sink");
    assert!(
        auditor
            .metrics()
            .ship_retries
            .with_label_values(&["hook"])
            .get()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_counts_exactly_what_it_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let capture = Capture::default();
    capture.down.store(true, Ordering::SeqCst);
    let url = capture.serve().await;
    let cfg = config(
        &spool,
        "  maxBytes: 65536\n  segmentBytes: 8192\n  whenFull: dropOldest\n  checkpointInterval: 1h",
        &format!("\n  - name: hook\n    batchRecords: 50\n    http: {{ url: \"{url}/ingest\" }}"),
    );
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let seqs = append_many(&auditor, 1, 1500, 8).await; // never refused
    assert_eq!(seqs.len(), 1500);
    let dropped = auditor.metrics().records_dropped.get();
    assert!(dropped > 0, "nothing was dropped");
    assert!(auditor.spool().stats().bytes <= 65536 + 8192);
    let last = auditor.spool().durable_sequence();
    capture.down.store(false, Ordering::SeqCst);
    assert!(
        auditor.shutdown(Duration::from_secs(20)).await,
        "did not drain"
    );
    // Making room for the drop notices may have dropped a few more: count after the end.
    let dropped = auditor.metrics().records_dropped.get();

    let received = dedup_by_uid(&capture.records());
    let got: BTreeSet<u64> = sequences(&received).into_iter().collect();
    let total_last = *got.last().unwrap();
    assert!(total_last >= last);
    let missing: Vec<u64> = (1..=total_last).filter(|s| !got.contains(s)).collect();
    let counted: BTreeSet<u64> = received
        .iter()
        .filter_map(|v| v.pointer("/unmapped/mcp_warden/checkpoint/dropped_ranges"))
        .flat_map(|r| r.as_array().unwrap().clone())
        .flat_map(|r| r[0].as_u64().unwrap()..=r[1].as_u64().unwrap())
        .collect();
    let missing_set: BTreeSet<u64> = missing.iter().copied().collect();
    assert_eq!(
        missing.len() as u64,
        dropped,
        "the drop counter must match the records that never arrived; missing but not declared: {:?}; declared but received: {:?}",
        missing_set.difference(&counted).collect::<Vec<_>>(),
        counted.difference(&missing_set).collect::<Vec<_>>()
    );
    // The checkpoints that announce the drops arrived, and name exactly the missing ranges
    // (each checkpoint declares every range dropped so far: a later one repeats the earlier's).
    let mut declared = BTreeSet::new();
    for v in &received {
        if let Some(ranges) = v.pointer("/unmapped/mcp_warden/checkpoint/dropped_ranges") {
            for r in ranges.as_array().unwrap() {
                declared.extend(r[0].as_u64().unwrap()..=r[1].as_u64().unwrap());
            }
        }
    }
    assert_eq!(declared, missing_set);
    // And `verify` accepts the declared gaps as warnings, the rest of the chain being intact.
    let file = tmp.path().join("received.jsonl");
    fs::write(&file, capture.raw_lines().concat()).unwrap();
    let report = verify::verify(&[file], true).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("dropped by policy")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipping_resumes_from_the_acknowledged_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let out = tmp.path().join("archive");
    let sinks = format!(
        "\n  - name: archive\n    file: {{ dir: {} }}",
        out.display()
    );
    let cfg = config(&spool, "", &sinks);
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    append_many(&auditor, 1, 300, 8).await;
    assert!(auditor.shutdown(Duration::from_secs(10)).await);
    let cursor = spool.join("cursors/archive.cursor");
    assert_eq!(fs::read_to_string(&cursor).unwrap().trim(), "300");
    assert_eq!(read_jsonl(&out.join("audit.jsonl")).len(), 300);
    // Shipped segments were deleted (only the active one is kept).
    assert_eq!(segment_files(&spool).len(), 1);

    // As if the process died between writing to the sink and saving the cursor.
    fs::write(&cursor, "250\n").unwrap();
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    append_many(&auditor, 301, 10, 1).await;
    assert!(auditor.shutdown(Duration::from_secs(10)).await);
    let lines = read_jsonl(&out.join("audit.jsonl"));
    assert_eq!(
        lines.len(),
        310 + 50,
        "records 251..=300 are sent again (at least once)"
    );
    let unique = dedup_by_uid(&lines);
    assert_eq!(sequences(&unique), (1..=310).collect::<Vec<_>>());
    let report = verify::verify(std::slice::from_ref(&out), true).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.duplicates_skipped, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let capture = Capture::default();
    capture.down.store(true, Ordering::SeqCst);
    let url = capture.serve().await;
    let cfg = config(
        &spool,
        "",
        &format!("\n  - name: hook\n    http: {{ url: \"{url}/ingest\" }}"),
    );
    let registry = prometheus::Registry::new();
    let auditor = Auditor::start(&cfg, &registry).unwrap();
    append_many(&auditor, 1, 40, 4).await;
    let m = auditor.metrics();
    assert_eq!(m.records_written.with_label_values(&["outcome"]).get(), 40);
    assert!(m.fsyncs.get() >= 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    auditor.spool().refresh_gauges();
    assert_eq!(m.spool_records.get(), 40);
    assert!(m.spool_bytes.get() > 0);
    assert!(m.oldest_unshipped_age.with_label_values(&["hook"]).get() >= 1.0);
    capture.down.store(false, Ordering::SeqCst);
    eventually_async("the sink to catch up", Duration::from_secs(10), || {
        (m.sink_acked_sequence.with_label_values(&["hook"]).get() == 40).then_some(())
    })
    .await;
    auditor.spool().refresh_gauges();
    assert_eq!(m.records_shipped.with_label_values(&["hook"]).get(), 40);
    assert_eq!(m.spool_records.get(), 0);
    assert_eq!(
        m.oldest_unshipped_age.with_label_values(&["hook"]).get(),
        0.0
    );
    assert!(m.ship_retries.with_label_values(&["hook"]).get() >= 1);
    let names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    for n in &names {
        assert!(n.starts_with("mcp_warden_audit_"), "{n}");
    }
    for want in [
        "mcp_warden_audit_records_written_total",
        "mcp_warden_audit_records_shipped_total",
        "mcp_warden_audit_ship_retries_total",
        "mcp_warden_audit_spool_records",
        "mcp_warden_audit_spool_bytes",
        "mcp_warden_audit_records_dropped_total",
        "mcp_warden_audit_oldest_unshipped_age_seconds",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    assert!(
        String::from_utf8(text)
            .unwrap()
            .contains("mcp_warden_audit_records_shipped_total{sink=\"hook\"} 40")
    );
    auditor.shutdown(Duration::from_secs(5)).await;
}

/// Records per second into the spool with fsync batching (printed; no timing assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_into_the_spool_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let auditor =
        Arc::new(Auditor::start(&config(&spool, "", " []"), &prometheus::Registry::new()).unwrap());
    let n: u64 = 20_000;
    let event = call_event(1);
    let t = Instant::now();
    for _ in 0..2_000 {
        std::hint::black_box(auditor.recorder().prepare(&event, &redaction()));
    }
    let render_us = t.elapsed().as_secs_f64() * 1e6 / 2_000.0;
    let t = Instant::now();
    let seqs = append_many(&auditor, 1, n, 256).await;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let m = auditor.metrics();
    let fsyncs = m.fsyncs.get();
    println!(
        "audit spool throughput: {n} records in {secs:.3}s = {:.0} records/s ({} build); {fsyncs} fsyncs, \
         {:.0} records per fsync; render {render_us:.1} µs/record; median append→durable ≈ {:.2} ms",
        n as f64 / secs,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        n as f64 / fsyncs.max(1) as f64,
        histogram_median(&m.append_duration) * 1e3,
    );
    auditor.shutdown(Duration::from_secs(5)).await;
}

fn histogram_median(h: &prometheus::Histogram) -> f64 {
    use prometheus::core::Collector;
    let mf = h.collect();
    let hist = mf[0].get_metric()[0].get_histogram();
    let total = hist.get_sample_count();
    hist.get_bucket()
        .iter()
        .find(|b| b.cumulative_count() * 2 >= total)
        .map_or(f64::NAN, |b| b.upper_bound())
}

/// With `ack: durable` a call costs one fdatasync, not two: its final record is written at once
/// but made durable by the next request-phase record's fdatasync, or after `fsyncMaxDelay`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_record_is_synced_with_the_next_request_record() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cfg = config(&spool, "  fsyncMaxDelay: 3s", " []");
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let m = auditor.metrics().clone();
    let written = |uid: &str| {
        segment_files(&spool)
            .iter()
            .any(|f| fs::read_to_string(f).unwrap().contains(uid))
    };

    let a = auditor.clone();
    let first_final = tokio::spawn(async move { a.record(&call_event(1), &redaction()).await });
    eventually_async("the final record written", Duration::from_secs(2), || {
        written("call-000001").then_some(())
    })
    .await;
    assert_eq!(m.fsyncs.get(), 0, "written, not yet synced");
    assert!(!first_final.is_finished(), "answered only once durable");
    assert_eq!(auditor.spool().durable_sequence(), 0);

    let mut request = call_event(2);
    request.outcome = Outcome::Forwarding;
    let started = Instant::now();
    auditor.record(&request, &redaction()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(1), first_final)
        .await
        .expect("the final record rides on the request record's fdatasync")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(first.sequence, 1);
    assert_eq!(m.fsyncs.get(), 1, "one fdatasync for both records");
    assert_eq!(auditor.spool().durable_sequence(), 2);

    // A final record with no request record after it is synced after fsyncMaxDelay.
    let started = Instant::now();
    let lone = tokio::time::timeout(
        Duration::from_secs(10),
        auditor.record(&call_event(3), &redaction()),
    )
    .await
    .expect("synced after fsyncMaxDelay")
    .unwrap();
    assert_eq!(lone.sequence, 3);
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "not before fsyncMaxDelay: {:?}",
        started.elapsed()
    );
    assert_eq!(m.fsyncs.get(), 2);
    auditor.shutdown(Duration::from_secs(5)).await;
}

/// Group commit with `ack: durable`: request-phase records appended while a caller's fdatasync
/// runs join the next one; each is answered only once durable, and the sequences stay
/// contiguous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_request_records_share_their_fdatasyncs() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let cfg = config(&spool, "", " []");
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let a = auditor.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..8 {
                let mut request = call_event(w * 8 + i);
                request.outcome = Outcome::Forwarding;
                let r = a.record(&request, &redaction()).await.unwrap();
                assert!(
                    a.spool().durable_sequence() >= r.sequence,
                    "answered once durable"
                );
                seqs.push(r.sequence);
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=256).collect::<Vec<_>>());
    // How much they share depends on the machine (a debug build renders a record in longer
    // than this disk syncs one): never more syncs than records, the ratio printed.
    let fsyncs = auditor.metrics().fsyncs.get();
    assert!((1..=256).contains(&fsyncs), "{fsyncs} fdatasyncs");
    eprintln!("group commit: 256 request records, {fsyncs} fdatasyncs");
    auditor.shutdown(Duration::from_secs(5)).await;
    let report = verify::verify(std::slice::from_ref(&spool), false).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}
