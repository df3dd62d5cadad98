//! Real rsyslog (Debian `rsyslogd`, from `make peers`) as the SIEM: RFC 5424 over TCP with
//! octet-counted framing, on a random loopback port. "Nothing lost" is checked the way the peers
//! report prescribes: set equality on `metadata.sequence` after deduplication by `metadata.uid`,
//! zero rejects, the collector's own counters, and the hash chain of what arrived.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod audit_support;
mod proxy_support;

use audit_support::*;
use mcp_warden_sidecar::audit::{Auditor, Redaction, verify};
use mcp_warden_test_support::{eventually_async, free_port, repo_root, server_everything};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

fn syslog_sink(address: &str, confirm: &str) -> String {
    format!(
        "\n  - name: siem\n    batchRecords: 500\n    syslog:\n      address: \"{address}\"\n      confirmAfter: {confirm}\n      timeout: 2s"
    )
}

/// `<dir>/audit.yaml`: the spool in `<dir>/spool`, one syslog sink to `siem`.
fn syslog_config(dir: &std::path::Path, siem: &Rsyslog) -> std::path::PathBuf {
    let path = dir.join("audit.yaml");
    let sink = syslog_sink(&siem.address(), "2s");
    std::fs::write(&path, config_yaml(&dir.join("spool"), "", &sink)).unwrap();
    path
}

async fn append_range(
    auditor: &Auditor,
    ids: std::ops::Range<u64>,
    concurrency: u64,
    pause: Option<Duration>,
    done: Arc<AtomicU64>,
) {
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (a, done) = (auditor.clone(), done.clone());
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = ids.start + w;
            while i < ids.end {
                a.record(&phase_event(i), &Redaction::none()).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                if let Some(p) = pause {
                    tokio::time::sleep(p).await;
                }
                i += concurrency;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn unique_sequences(records: &[Value]) -> BTreeSet<u64> {
    sequences(&dedup_by_uid(records)).into_iter().collect()
}

/// Waits (30 s at most) until rsyslog holds exactly the sequences `want` after deduplication by
/// uid; otherwise fails naming what is missing.
async fn wait_for_sequences(siem: &Rsyslog, want: &BTreeSet<u64>) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = siem.records();
        let got = unique_sequences(&records);
        if &got == want {
            return records;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = want.difference(&got).take(20).collect();
            let extra: Vec<_> = got.difference(want).take(20).collect();
            panic!(
                "rsyslog holds {} distinct sequences of {}: missing {missing:?}, unexpected {extra:?}",
                got.len(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_arrive_as_sequences_1_to_10000_without_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let siem = Rsyslog::start(&tmp.path().join("rsyslog"));
    let cfg = config(
        &tmp.path().join("spool"),
        "",
        &syslog_sink(&siem.address(), "500ms"),
    );
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let t0 = Instant::now();
    append_range(&auditor, 1..10_001, 32, None, Arc::new(AtomicU64::new(0))).await;
    let appended = t0.elapsed();
    assert!(
        auditor.shutdown(Duration::from_secs(60)).await,
        "the sink did not drain"
    );
    let records = eventually_async("10,000 records at rsyslog", Duration::from_secs(30), || {
        let r = siem.records();
        (r.len() >= 10_000).then_some(r)
    })
    .await;
    let seqs = sequences(&records);
    assert_eq!(seqs.len(), 10_000, "duplicates on a healthy connection");
    let set: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(set, (1..=10_000).collect::<BTreeSet<_>>(), "gap");
    assert_eq!(siem.rejected(), 0, "rsyslog rejected records as non-JSON");
    // rsyslog's own counters agree (impstats writes them every second).
    let port = siem.port;
    let stats = eventually_async("impstats to count 10,000", Duration::from_secs(5), || {
        let s = siem.stats();
        (s.get("audit_out").and_then(|o| o["processed"].as_u64()) == Some(10_000)).then_some(s)
    })
    .await;
    assert_eq!(stats[&format!("audit_in({port})")]["submitted"], 10_000);
    assert_eq!(stats["audit_out"]["failed"], 0);
    // What arrived is what was written: valid OCSF, and the hash chain is intact byte for byte.
    for (i, r) in records.iter().enumerate() {
        if i % 97 == 0 || i == records.len() - 1 {
            assert_good_record(r);
        }
    }
    let report = verify::verify(&[siem.dir.join("audit.jsonl")], false).unwrap();
    assert!(
        report.ok(),
        "{:?}",
        &report.problems[..report.problems.len().min(3)]
    );
    assert_eq!(report.instances.values().next().unwrap().records, 10_000);
    println!("10,000 records appended in {appended:.2?} and shipped to rsyslog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_killed_and_restarted_mid_stream_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut siem = Rsyslog::start(&tmp.path().join("rsyslog"));
    let cfg = config(
        &tmp.path().join("spool"),
        "",
        &syslog_sink(&siem.address(), "2s"),
    );
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    let n = 6_000;
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (a, done) = (auditor.clone(), done.clone());
        tokio::spawn(async move {
            append_range(&a, 1..n + 1, 4, Some(Duration::from_millis(2)), done).await
        })
    };
    eventually_async("1,500 appends", Duration::from_secs(60), || {
        (done.load(Ordering::SeqCst) >= 1_500).then_some(())
    })
    .await;
    let at_kill = siem.records().len();
    siem.kill9();
    tokio::time::sleep(Duration::from_millis(700)).await;
    siem.restart();
    writer.await.unwrap();
    assert!(at_kill < n as usize, "the kill was not mid-stream");
    assert!(
        auditor.shutdown(Duration::from_secs(60)).await,
        "the sink did not drain"
    );
    let want: BTreeSet<u64> = (1..=n).collect();
    let records = wait_for_sequences(&siem, &want).await;
    assert_eq!(siem.starts, 2);
    assert_eq!(siem.rejected(), 0);
    let retries = auditor
        .metrics()
        .ship_retries
        .with_label_values(&["siem"])
        .get();
    let resent = records.len() - n as usize;
    println!(
        "rsyslog kill -9 at {at_kill} records: {resent} records sent twice, {retries} failed sends; nothing lost"
    );
    let report = verify::verify(&[siem.dir.join("audit.jsonl")], true).unwrap();
    assert!(
        report.ok(),
        "{:?}",
        &report.problems[..report.problems.len().min(3)]
    );
}

/// Runs `mcp-warden audit load`, collecting the sequences it reports as durable.
fn spawn_load(
    config: &std::path::Path,
    count: u64,
    start: u64,
    acked: Arc<Mutex<Vec<u64>>>,
) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-warden"))
        .args(["audit", "load", "--config"])
        .arg(config)
        .args(["--count", &count.to_string(), "--start", &start.to_string()])
        .args([
            "--concurrency",
            "4",
            "--delay",
            "2ms",
            "--drain-timeout",
            "60s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(seq) = line.strip_prefix("acked ").and_then(|s| s.parse().ok()) {
                acked.lock().unwrap().push(seq);
            }
        }
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipper_killed_and_restarted_mid_stream_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let siem = Rsyslog::start(&tmp.path().join("rsyslog"));
    let cfg_path = syslog_config(tmp.path(), &siem);

    // First run: killed (SIGKILL) after 1,000 durable records.
    let first = Arc::new(Mutex::new(Vec::new()));
    let mut child = spawn_load(&cfg_path, 4_000, 1, first.clone());
    eventually_async("1,000 durable records", Duration::from_secs(60), || {
        (first.lock().unwrap().len() >= 1_000).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first: BTreeSet<u64> = first.lock().unwrap().iter().copied().collect();
    let at_kill = siem.records().len();
    assert!(first.len() < 4_000, "the kill was not mid-stream");

    // Second run: continues the sequence and ships what the first one left.
    let second = Arc::new(Mutex::new(Vec::new()));
    let mut child = spawn_load(&cfg_path, 1_000, 100_001, second.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the second run did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "second run failed: {status}");
    let second: BTreeSet<u64> = second.lock().unwrap().iter().copied().collect();
    assert_eq!(second.len(), 1_000);
    let last = *second.last().unwrap();
    assert!(
        *second.first().unwrap() > *first.last().unwrap(),
        "the sequence did not continue"
    );

    let want: BTreeSet<u64> = (1..=last).collect();
    let records = wait_for_sequences(&siem, &want).await;
    assert!(first.is_subset(&want) && second.is_subset(&want));
    assert_eq!(siem.rejected(), 0);
    println!(
        "shipper killed after {} durable records ({at_kill} at rsyslog): {} records in all, {} sent twice; nothing lost",
        first.len(),
        last,
        records.len() as u64 - last
    );
    // The chain runs unbroken across the crash.
    let report = verify::verify(&[siem.dir.join("audit.jsonl")], true).unwrap();
    assert!(
        report.ok(),
        "{:?}",
        &report.problems[..report.problems.len().min(3)]
    );
}

/// `mcp-warden-sidecar run` on `port` in front of `upstream`, auditing with `config`.
fn spawn_sidecar(port: u16, upstream: &str, config: &std::path::Path) -> std::process::Child {
    // One client, `echo` granted, no rate limit.
    let everything = repo_root().join("tests/fixtures/configs/revocation.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-warden-sidecar"))
        .arg("run")
        .arg("--config")
        .arg(everything)
        .args(["--upstream", upstream, "--anonymous-client", "test/looper"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", "127.0.0.1:0", "--audit-config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the sidecar did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// One `tools/call` of `echo` with `id`: whether it was answered 200 with a result. Never
/// panics: the sidecar may die under it.
async fn echo(url: &str, session: &[(&str, &str)], id: u64) -> bool {
    use http_body_util::BodyExt;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": format!("call {id}")}}})
    .to_string();
    let mut request = http::Request::post(url);
    for (k, v) in proxy_support::POST.iter().chain(session) {
        request = request.header(*k, *v);
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let answered = async {
        let response = proxy_support::client().request(request).await.ok()?;
        let ok = response.status() == 200;
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        Some(ok && text.contains("\"result\"") && text.contains(&format!("call {id}")))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), answered).await,
        Ok(Some(true))
    )
}

/// Calls until `stop` (at most 5,000 calls), from `next`, noting the ids answered.
async fn call_until(
    url: String,
    next: Arc<AtomicU64>,
    answered: Arc<Mutex<Vec<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let session = proxy_support::Session::open(&url, "2025-11-25").await;
    let headers = session.headers();
    for _ in 0..5_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = next.fetch_add(1, Ordering::Relaxed);
        if echo(&url, &headers, id).await {
            answered.lock().unwrap().push(id);
        } else if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_sidecar_killed_and_restarted_mid_stream_loses_no_answered_call() {
    let tmp = tempfile::tempdir().unwrap();
    let siem = Rsyslog::start(&tmp.path().join("rsyslog"));
    let (_everything, everything_url) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let cfg_path = syslog_config(tmp.path(), &siem);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let next = Arc::new(AtomicU64::new(1));
    let answered = Arc::new(Mutex::new(Vec::new()));

    // First life: SIGKILL while calls are in flight, after 300 answered calls.
    let mut sidecar = spawn_sidecar(port, &everything_url, &cfg_path);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(call_until(
        url.clone(),
        next.clone(),
        answered.clone(),
        stop.clone(),
    ));
    eventually_async("300 answered calls", Duration::from_secs(60), || {
        (answered.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    sidecar.kill().unwrap();
    sidecar.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let first = answered.lock().unwrap().len();
    let last_before_kill = answered.lock().unwrap().iter().copied().max().unwrap();

    // Second life on the same spool: 200 more calls, then a graceful stop (drains the sinks).
    let mut sidecar = spawn_sidecar(port, &everything_url, &cfg_path);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(call_until(
        url.clone(),
        next.clone(),
        answered.clone(),
        stop.clone(),
    ));
    eventually_async("200 more answered calls", Duration::from_secs(60), || {
        (answered.lock().unwrap().len() >= first + 200).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    Command::new("kill")
        .arg(sidecar.id().to_string())
        .status()
        .unwrap();
    sidecar.wait().unwrap();

    // Every sequence from 1 to the last arrived (after dedup by record id), and every answered
    // call has its records there.
    let last = eventually_async("records at rsyslog", Duration::from_secs(30), || {
        unique_sequences(&siem.records()).last().copied()
    })
    .await;
    let want: BTreeSet<u64> = (1..=last).collect();
    let records = wait_for_sequences(&siem, &want).await;
    let records = dedup_by_uid(&records);
    let answered: BTreeSet<u64> = answered.lock().unwrap().iter().copied().collect();
    let recorded: BTreeSet<u64> = records
        .iter()
        .filter(|r| r["unmapped"]["mcp_warden"]["outcome"] == "answered")
        .filter_map(|r| r["api"]["request"]["uid"].as_str()?.parse().ok())
        .collect();
    // The guarantee is the request record: durable before the call is forwarded. The final
    // record follows the answer, so a kill can take it with the call that was just answered
    // (calls are sequential: at most the last one or two before the kill).
    let missing: Vec<u64> = answered.difference(&recorded).copied().collect();
    assert!(
        missing
            .iter()
            .all(|id| *id + 2 >= last_before_kill && *id <= last_before_kill),
        "answered calls without a final record, other than those answered just before the kill \
         ({last_before_kill}): {missing:?}"
    );
    let forwarded: BTreeSet<u64> = records
        .iter()
        .filter(|r| r["unmapped"]["mcp_warden"]["outcome"] == "forwarding")
        .filter_map(|r| r["api"]["request"]["uid"].as_str()?.parse().ok())
        .collect();
    assert!(
        answered.is_subset(&forwarded),
        "every answered call was recorded before forwarding"
    );
    assert_eq!(siem.rejected(), 0);
    println!(
        "sidecar killed after {first} answered calls; {} answered in all, {last} records, none lost",
        answered.len()
    );
    let report = verify::verify(&[siem.dir.join("audit.jsonl")], true).unwrap();
    assert!(
        report.ok(),
        "{:?}",
        &report.problems[..report.problems.len().min(3)]
    );
}
