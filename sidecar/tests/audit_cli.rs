//! `mcp-warden audit verify` and `mcp-warden audit query`, run as the binary users run.

#![allow(clippy::unwrap_used)]

mod audit_support;

use audit_support::*;
use jiff::Timestamp;
use mcp_warden_policy::Kind;
use mcp_warden_sidecar::audit::{Auditor, ClientInfo, Outcome, Redaction, record};
use serde_json::Value;
use std::{fs, path::Path, process::Command, time::Duration};

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-warden"))
        .args(args)
        .output()
        .expect("mcp-warden runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 30 records: 10 per client over two days, one request without a final record.
async fn make_spool(dir: &Path) -> (std::path::PathBuf, String) {
    let spool = dir.join("spool");
    let auditor = Auditor::start(&config(&spool, "", " []"), &prometheus::Registry::new()).unwrap();
    let day1 = Timestamp::from_millisecond(1_795_506_591_000).unwrap(); // 2026-11-24T07:49:51Z
    for i in 1..=30u64 {
        let mut ev = call_event(i);
        let (client, tool, day_offset) = match i % 3 {
            0 => ("agent-alpha", "refund", 0),
            1 => ("agent-beta", "lookup", 0),
            _ => ("agent-alpha", "lookup", 1),
        };
        ev.client = Some(ClientInfo {
            object: objref(Kind::McpClient, client),
            owner: "team@example.com".into(),
        });
        ev.principal.as_mut().unwrap().subject = Some(format!("sub-{client}"));
        ev.principal.as_mut().unwrap().client_id = Some(client.into());
        ev.tool.as_mut().unwrap().name = tool.into();
        ev.started = day1 + Duration::from_secs(86_400 * day_offset + i);
        ev.ended = Some(ev.started + Duration::from_millis(5));
        ev.transport.session_id = Some(format!("session-{}", i % 2));
        if i == 30 {
            // The sidecar died before the answer: only the request record exists.
            ev.outcome = Outcome::Forwarding;
            ev.ended = None;
        }
        auditor.record(&ev, &Redaction::none()).await.unwrap();
    }
    let instance = auditor.spool().instance().to_owned();
    auditor.shutdown(Duration::from_secs(5)).await;
    (spool, instance)
}

fn lines_of(spool: &Path) -> Vec<String> {
    let seg = fs::read_dir(spool.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::read_to_string(seg)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_an_intact_spool_and_names_the_first_broken_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, instance) = make_spool(tmp.path()).await;
    let (code, out, err) = cli(&["audit", "verify", spool.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "ok: instance {instance}: 30 records, sequence 1..=30"
        )),
        "{out}"
    );
    let lines = lines_of(&spool);
    assert_eq!(lines.len(), 30);
    let file = tmp.path().join("records.jsonl");
    let check = |lines: &[String], dedup: bool| {
        write(&file, lines);
        let mut args = vec!["audit", "verify"];
        if dedup {
            args.push("--dedup");
        }
        args.push(file.to_str().unwrap());
        cli(&args)
    };
    let uid10 = serde_json::from_str::<Value>(&lines[9]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();

    // Untouched copy: fine.
    let (code, out, _) = check(&lines, false);
    assert_eq!(code, 0, "{out}");

    // An edited record (arguments changed).
    let mut edited = lines.clone();
    assert!(edited[9].contains("\"order\":\"o-10\""));
    edited[9] = edited[9].replace("\"order\":\"o-10\"", "\"order\":\"o-99\"");
    let (code, out, _) = check(&edited, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "first broken record: {}:10: sequence 10 (uid {uid10}) edited",
            file.display()
        )),
        "{out}"
    );

    // Edited and re-hashed by someone who knows the format: the next record's link catches it.
    let (_, actual) = record::line_hashes(edited[9].as_bytes()).unwrap();
    let (claimed, _) = record::line_hashes(lines[9].as_bytes()).unwrap();
    let mut forged = edited.clone();
    forged[9] = forged[9].replace(&hex::encode(claimed), &hex::encode(actual));
    let (code, out, _) = check(&forged, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "first broken record: {}:10: sequence 10 chain broken",
            file.display()
        )),
        "{out}"
    );

    // A deleted record.
    let mut deleted = lines.clone();
    deleted.remove(9);
    let (code, out, _) = check(&deleted, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{}:10: sequence 11", file.display()))
            && out.contains("gap: sequence 10 is missing before it"),
        "{out}"
    );

    // A reordered pair.
    let mut swapped = lines.clone();
    swapped.swap(9, 10);
    let (code, out, _) = check(&swapped, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "first broken record: {}:10: sequence 11",
            file.display()
        )) && out.contains("out of order: sequence 11 comes before sequence 10"),
        "{out}"
    );
    assert!(
        out.contains("also:") && out.contains("sequence 10 comes after sequence 11"),
        "{out}"
    );

    // A re-delivered record: a duplicate, unless deduplication is asked for.
    let mut dup = lines.clone();
    dup.insert(12, lines[4].clone());
    let (code, out, _) = check(&dup, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("duplicate"), "{out}");
    let (code, out, _) = check(&dup, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 duplicates skipped"), "{out}");

    // Not a record at all.
    let mut junk = lines.clone();
    junk.insert(3, "{\"hello\":1}".into());
    let (code, out, _) = check(&junk, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(":4: unreadable"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_answers_who_called_what_when_with_which_result() {
    let tmp = tempfile::tempdir().unwrap();
    let (spool, _) = make_spool(tmp.path()).await;
    let spool = spool.to_str().unwrap();
    let q = |extra: &[&str]| {
        let mut args = vec!["audit", "query"];
        args.extend_from_slice(extra);
        args.push(spool);
        cli(&args)
    };
    // Day one, agent-alpha: calls i ≡ 0 (mod 3): 3, 6, …, 30 → 10 calls, #30 without an outcome.
    let (code, out, err) = q(&[
        "--client",
        "agent-alpha",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-24",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("10 calls\n"), "{out}");
    assert!(
        out.lines()
            .all(|l| l.ends_with("calls") || l.contains("client=payments/agent-alpha")),
        "{out}"
    );
    assert!(
        out.contains("tool=refund decision=allowed outcome=answered status=Success(0)"),
        "{out}"
    );
    assert_eq!(
        out.matches("outcome=no outcome recorded").count(),
        1,
        "{out}"
    );
    assert!(!out.contains(SECRET_PASSWORD), "{out}");

    // The same client by namespace/name, by client_id and by subject; JSON output.
    for who in ["payments/agent-alpha", "sub-agent-alpha"] {
        let (_, out, _) = q(&[
            "--client",
            who,
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-26",
            "--output",
            "jsonl",
        ]);
        let rows: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 20, "{who}");
        for r in &rows {
            assert_good_record(r);
            assert_eq!(r["actor"]["app_uid"], "agent-alpha");
        }
    }
    // Narrowed by tool and session, and by time of day.
    let (_, out, _) = q(&[
        "--client",
        "agent-alpha",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--tool",
        "lookup",
    ]);
    assert!(out.ends_with("10 calls\n"), "{out}");
    let (_, out, _) = q(&[
        "--client",
        "agent-alpha",
        "--from",
        "2026-11-24",
        "--to",
        "2026-11-26",
        "--tool",
        "lookup",
        "--session",
        "session-0",
    ]);
    assert!(out.ends_with("5 calls\n"), "{out}");
    let (_, out, _) = q(&[
        "--client",
        "agent-beta",
        "--from",
        "2026-11-24T07:50:00Z",
        "--to",
        "2026-11-24T07:50:10Z",
    ]);
    // agent-beta calls at 07:49:51 + i s for i ≡ 1 (mod 3): i = 10, 13, 16 fall in [07:50:00, 07:50:10).
    assert!(out.ends_with("3 calls\n"), "{out}");
    let (code, _, err) = q(&[
        "--client",
        "x",
        "--from",
        "last tuesday",
        "--to",
        "2026-11-24",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a time"), "{err}");
}
