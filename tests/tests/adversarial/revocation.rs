//! Revocation of open streams, and the audit trail that remains verifiable.

use super::*;

/// Streams agent-alpha holds end within 1 s of the reload that suspends it.
pub(crate) fn revocation(s: &Stack) -> Result<(), String> {
    struct End {
        at: Instant,
        text: String,
    }
    pub(crate) fn watch(body: ureq::Body, lines: Arc<AtomicUsize>) -> mpsc::Receiver<End> {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(body.into_reader());
            let mut text = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        lines.fetch_add(1, Ordering::Relaxed);
                        if text.len() < (1 << 20) {
                            text.push_str(&line);
                        }
                    }
                }
            }
            let _ = tx.send(End {
                at: Instant::now(),
                text,
            });
        });
        rx
    }
    let alpha = s.connect(ALPHA, VERSION)?;
    let mark = s.tap.count();
    let mut streams = Vec::new();
    let (status, headers, body) =
        alpha.open("GET", None, &[("accept", "text/event-stream")], None)?;
    let sse = |h: &[(String, String)]| {
        h.iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"))
    };
    ensure!(
        status == 200 && sse(&headers),
        "GET stream: HTTP {status} {headers:?}"
    );
    streams.push((
        "GET stream",
        None,
        watch(body, Arc::default()),
        Arc::new(AtomicUsize::new(1)),
    ));
    if let Some((tool, args)) = s.kind.long_call() {
        let call = json!({"jsonrpc": "2.0", "id": 90, "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": {"progressToken": "p-90"}}});
        let (status, headers, body) =
            alpha.open("POST", Some(call.to_string().into_bytes()), &[], None)?;
        ensure!(
            status == 200 && sse(&headers),
            "{tool}: HTTP {status} {headers:?}"
        );
        let lines = Arc::new(AtomicUsize::new(0));
        streams.push((
            "tools/call stream",
            Some(tool),
            watch(body, lines.clone()),
            lines,
        ));
    }
    // Both reached the upstream, and the call is running (its first progress event arrived).
    let reached = poll(Duration::from_secs(15), || {
        let got = s.tap.since(mark);
        let get = got.iter().any(|g| g.method == "GET");
        let call = streams.len() == 1 || got.iter().any(|g| lossy(&g.body()).contains("\"id\":90"));
        let running = streams
            .iter()
            .all(|(_, _, _, lines)| lines.load(Ordering::Relaxed) > 0);
        (get && call && running).then_some(())
    });
    ensure!(
        reached.is_some(),
        "the streams did not open upstream within 15 s: {}",
        describe(&s.tap.since(mark))
    );
    thread::sleep(Duration::from_millis(300));
    let version =
        enforced_version(&s.addrs.admin).ok_or("the sidecar reports no config version")?;
    let text = std::fs::read_to_string(&s.config).unwrap();
    ensure!(
        text.contains(ALPHA_LINE),
        "agent-alpha's description line is not in the config"
    );
    let suspended = text.replacen(
        ALPHA_LINE,
        &format!(
            "{ALPHA_LINE}  suspended: true\n  suspensionReason: adversarial test of open streams\n"
        ),
        1,
    );
    let denied_before = audit_records(&s.audit)
        .iter()
        .filter(|r| reason(r) == "suspended")
        .count();
    let written = Instant::now();
    std::fs::write(&s.config, suspended).unwrap();
    let seen = poll(Duration::from_secs(10), || {
        (enforced_version(&s.addrs.admin).as_deref() != Some(version.as_str())).then(Instant::now)
    })
    .ok_or("the sidecar did not report a new config version within 10 s of the write")?;
    let mut failures = Vec::new();
    let mut timings = Vec::new();
    for (label, tool, rx, _) in &streams {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(end) => {
                ensure!(
                    end.at > written,
                    "{label} ended before the config was written"
                );
                let after_reload = end.at.saturating_duration_since(seen);
                timings.push(format!(
                    "{label}: ended {:?} after the write, {after_reload:?} after the new version was seen",
                    end.at - written
                ));
                if after_reload > Duration::from_secs(1) {
                    failures.push(format!(
                        "{label} ended {after_reload:?} after the reload (> 1 s)"
                    ));
                }
                if tool.is_some() {
                    let answered = parse_sse(&end.text).iter().any(|e| {
                        serde_json::from_str::<Value>(&e.data).is_ok_and(|m| {
                            m.get("id") == Some(&json!(90)) && m.get("result").is_some()
                        })
                    });
                    if answered {
                        failures.push(format!(
                            "{label}: the suspended caller still got the tool's result"
                        ));
                    }
                }
            }
            Err(_) => failures.push(format!(
                "{label} was still open 5 s after the reload ({:?} after the write)",
                written.elapsed()
            )),
        }
    }
    eprintln!(
        "[{}] revocation: new version seen {:?} after the write; {}",
        s.kind.name(),
        seen - written,
        timings.join("; ")
    );
    let records = poll(Duration::from_secs(5), || {
        let n = audit_records(&s.audit)
            .iter()
            .filter(|r| reason(r) == "suspended")
            .count();
        (n >= denied_before + streams.len()).then_some(n)
    });
    if records.is_none() {
        let n = audit_records(&s.audit)
            .iter()
            .filter(|r| reason(r) == "suspended")
            .count();
        failures.push(format!(
            "expected a Denied (suspended) audit record per revoked stream ({}), found {}",
            streams.len(),
            n - denied_before
        ));
    }
    let list = r#"{"jsonrpc":"2.0","id":91,"method":"tools/list"}"#;
    match s.quiet("suspended alpha's next request", || alpha.post(list)) {
        Ok(Ok(r)) => {
            if let Err(e) = expect_error(&r, 403, -31004, "suspended alpha's next request") {
                failures.push(e);
            }
        }
        Ok(Err(e)) | Err(e) => failures.push(e),
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

pub(crate) fn verify_audit(s: &Stack) -> Result<(), String> {
    let bin = workspace_bin("mcp-warden")?;
    let out = Command::new(bin)
        .args(["audit", "verify"])
        .arg(&s.audit)
        .output()
        .map_err(|e| e.to_string())?;
    ensure!(
        out.status.success(),
        "mcp-warden audit verify {}: {}\n{}",
        s.audit.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
