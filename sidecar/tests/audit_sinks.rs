//! The sinks on the wire: RFC 5424 over TLS with octet counting, HTTP JSON batches and Splunk
//! HEC, retries with backoff, stdout through `mcp-warden audit ship`, and redaction across all of
//! them (configured fields never appear in clear anywhere; equal values hash equal everywhere).

#![allow(clippy::unwrap_used)]

mod audit_support;

use audit_support::*;
use mcp_warden_sidecar::audit::{Auditor, Redaction};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    path::Path,
    process::Command,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};
use tokio::io::AsyncReadExt;

/// A TLS syslog receiver on 127.0.0.1 keeping every byte it reads.
async fn tls_receiver() -> (String, Arc<Mutex<Vec<u8>>>) {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(fixture("audit-tls/server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("audit-tls/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let sink = bytes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, sink) = (acceptor.clone(), sink.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (format!("localhost:{}", addr.port()), bytes)
}

/// Splits RFC 6587 octet-counted frames.
fn frames(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let sp = bytes.iter().position(|b| *b == b' ').expect("a length");
        let len: usize = std::str::from_utf8(&bytes[..sp])
            .unwrap()
            .parse()
            .expect("digits");
        out.push(String::from_utf8(bytes[sp + 1..sp + 1 + len].to_vec()).unwrap());
        bytes = &bytes[sp + 1 + len..];
    }
    out
}

/// The JSON body of an RFC 5424 message, checking the header on the way.
fn syslog_body(frame: &str) -> Value {
    let (header, body) = frame.split_at(frame.find(" {").expect("a JSON body") + 1);
    let parts: Vec<&str> = header.splitn(7, ' ').collect();
    assert_eq!(parts[0], "<110>1", "PRI 13*8+6, version 1: {header}");
    assert!(
        parts[1].ends_with('Z') && parts[1].contains('T'),
        "timestamp: {header}"
    );
    assert_eq!(parts[3], "mcp-warden", "APP-NAME: {header}");
    assert_eq!(parts[5], "audit", "MSGID: {header}");
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        parts[6],
        format!("[meta sequenceId=\"{}\"] ", v["metadata"]["sequence"]),
        "structured data: {header}"
    );
    v
}

fn tool_redaction() -> Redaction {
    Redaction::new(["/card/number", "ssn"], true).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_holds_in_every_sink_and_equal_values_hash_equal() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let archive = tmp.path().join("archive");
    let (syslog_addr, syslog_bytes) = tls_receiver().await;
    let hec = Capture::default();
    let hec_url = hec.serve().await;
    std::fs::write(tmp.path().join("hec.token"), "00000000-hec-token\n").unwrap();
    let sinks = format!(
        "\n  - name: archive\n    file: {{ dir: {archive} }}\
         \n  - name: siem\n    syslog:\n      address: \"{syslog_addr}\"\n      confirmAfter: 200ms\n      tls: {{ caFile: {ca} }}\
         \n  - name: hec\n    http: {{ url: \"{hec_url}/services/collector/event\", format: splunkHec, tokenFile: {token} }}",
        archive = archive.display(),
        ca = fixture("audit-tls/ca.pem").display(),
        token = tmp.path().join("hec.token").display(),
    );
    let auditor =
        Auditor::start(&config(&spool, "", &sinks), &prometheus::Registry::new()).unwrap();
    for i in 1..=20 {
        auditor
            .record(&call_event(i), &tool_redaction())
            .await
            .unwrap();
    }
    assert!(
        auditor.shutdown(Duration::from_secs(20)).await,
        "sinks did not drain"
    );

    // stdout: a second process ships the same spool to a new sink.
    let ship_cfg = tmp.path().join("ship.yaml");
    std::fs::write(
        &ship_cfg,
        config_yaml(&spool, "", "\n  - name: console\n    stdout: {}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-warden"))
        .args(["audit", "ship", "--until-drained", "--config"])
        .arg(&ship_cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();

    let by_sink: Vec<(&str, Vec<Value>, String)> = vec![
        {
            let text = std::fs::read_to_string(archive.join("audit.jsonl")).unwrap();
            ("file", read_jsonl(&archive.join("audit.jsonl")), text)
        },
        {
            let raw = syslog_bytes.lock().unwrap().clone();
            let records = frames(&raw).iter().map(|f| syslog_body(f)).collect();
            ("syslog+tls", records, String::from_utf8(raw).unwrap())
        },
        {
            let bodies = hec.bodies.lock().unwrap().clone();
            for (headers, _) in &bodies {
                assert_eq!(headers["authorization"], "Splunk 00000000-hec-token");
            }
            let text: String = bodies
                .iter()
                .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
                .collect();
            let records = serde_json::Deserializer::from_str(&text)
                .into_iter::<Value>()
                .map(|e| {
                    let e = e.unwrap();
                    assert_eq!(e["sourcetype"], "ocsf:api_activity");
                    assert_eq!(e["time"].as_str().unwrap().len(), "1795506591.042".len());
                    e["event"].clone()
                })
                .collect();
            ("http hec", records, text)
        },
        {
            let records = stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            ("stdout", records, stdout.clone())
        },
        {
            let seg = std::fs::read_dir(spool.join("segments"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            let text = std::fs::read_to_string(&seg).unwrap();
            ("spool", read_jsonl(&seg), text)
        },
    ];
    let card_hash =
        by_sink[0].1[0]["api"]["request"]["data"]["arguments"]["card"]["number"].clone();
    assert!(card_hash.as_str().unwrap().starts_with("hmac-sha256:"));
    for (sink, records, text) in &by_sink {
        for secret in [SECRET_CARD, SECRET_SSN, SECRET_PASSWORD] {
            assert!(!text.contains(secret), "{sink}: {secret} in clear");
        }
        let seqs: BTreeSet<u64> = sequences(records).into_iter().collect();
        assert_eq!(seqs, (1..=20).collect(), "{sink}");
        for r in records {
            assert_good_record(r);
            let args = &r["api"]["request"]["data"]["arguments"];
            assert_eq!(
                args["card"]["number"], card_hash,
                "{sink}: equal values must hash equal"
            );
            assert_eq!(
                r["api"]["response"]["data"]["result"]["card"]["number"], card_hash,
                "{sink}"
            );
            assert!(
                args["customer"]["ssn"]
                    .as_str()
                    .unwrap()
                    .starts_with("hmac-sha256:")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_batches_are_retried_with_backoff_and_delivered_once() {
    let tmp = tempfile::tempdir().unwrap();
    let capture = Capture::default();
    capture.fail_first.store(3, Ordering::SeqCst);
    let url = capture.serve().await;
    let cfg = config(
        &tmp.path().join("spool"),
        "",
        &format!("\n  - name: hook\n    batchRecords: 7\n    http: {{ url: \"{url}/ingest\" }}"),
    );
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    for i in 1..=30 {
        auditor
            .record(&call_event(i), &Redaction::none())
            .await
            .unwrap();
    }
    assert!(auditor.shutdown(Duration::from_secs(20)).await);
    let m = auditor.metrics();
    assert_eq!(m.ship_retries.with_label_values(&["hook"]).get(), 3);
    assert_eq!(m.records_shipped.with_label_values(&["hook"]).get(), 30);
    let records = capture.records();
    assert_eq!(
        sequences(&records),
        (1..=30).collect::<Vec<_>>(),
        "each record exactly once, in order"
    );
    let bodies = capture.bodies.lock().unwrap();
    assert!(
        bodies
            .iter()
            .all(|(h, _)| h["content-type"] == "application/json")
    );
    assert!(bodies.len() >= 5, "batches of at most 7: {}", bodies.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sink_configuration_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    for (sinks, want) in [
        (
            "\n  - name: two\n    stdout: {}\n    file: { dir: /tmp/x }",
            "exactly one of",
        ),
        (
            "\n  - name: h\n    http: { url: \"ftp://x\" }",
            "must be http",
        ),
        (
            "\n  - name: s\n    syslog: { address: \"localhost:1\", tls: { caFile: /nonexistent.pem } }",
            "CA file",
        ),
    ] {
        let err =
            Auditor::start(&config(&spool, "", sinks), &prometheus::Registry::new()).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert!(
            !Path::new(&spool).join("lock").exists(),
            "the spool was opened"
        );
    }
}

/// Records `calls` calls with a file sink writing into `<dir>/archive` (`file_options` appended
/// to its settings) and shuts down once every record is shipped.
async fn ship_to_files(dir: &Path, batch_records: usize, file_options: &str, calls: u64) {
    let cfg = config(
        &dir.join("spool"),
        "",
        &format!(
            "\n  - name: archive\n    batchRecords: {batch_records}\n    file: {{ dir: {}{file_options} }}",
            dir.join("archive").display()
        ),
    );
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new()).unwrap();
    for i in 1..=calls {
        auditor
            .record(&call_event(i), &Redaction::none())
            .await
            .unwrap();
    }
    assert!(auditor.shutdown(Duration::from_secs(20)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_sink_rotates_keeps_max_files_and_stays_verifiable() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive");
    ship_to_files(tmp.path(), 5, ", maxFileBytes: 20000, maxFiles: 3", 60).await;
    let mut names: Vec<String> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(names[3], "audit.jsonl");
    assert!(
        names[..3].iter().all(|n| n.starts_with("audit-000")),
        "{names:?}"
    );
    // The kept files hold the newest records, contiguous up to 60, chain intact.
    let report =
        mcp_warden_sidecar::audit::verify::verify(std::slice::from_ref(&archive), false).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let s = report.instances.values().next().unwrap();
    assert_eq!(s.last, 60);
    assert!(s.first > 1, "old files were not deleted");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("earlier records are not among them"))
    );
    for f in &names {
        let size = std::fs::metadata(archive.join(f)).unwrap().len();
        assert!(size <= 20_000, "{f}: {size}");
    }
}

/// A synced batch leaves the page cache (the files are written once): at most the last,
/// partly written page of a file stays cached.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_file_sink_keeps_nothing_it_synced_in_the_page_cache() {
    let tmp = tempfile::tempdir().unwrap();
    ship_to_files(tmp.path(), 7, "", 100).await;
    let file = tmp.path().join("archive/audit.jsonl");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 100_000, "100 records: {size} bytes");
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(&file)
        .output()
        .expect("fincore (util-linux) is needed: apt-get install util-linux");
    assert!(out.status.success(), "{out:?}");
    let cached: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(cached <= 4096, "{cached} of {size} bytes still cached");
}
