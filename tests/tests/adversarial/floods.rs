//! The cases on callers without a valid token: O(1) refusals, tallied records, bounded memory.

use super::*;

/// The one unauthenticated request; its tally record is checked by [`tally_record`].
pub(crate) fn unauthenticated_batch(s: &Stack) -> Result<(), String> {
    let body = Arc::new(batch_of_calls(1_700_000));
    let r = s.quiet("unauthenticated 1.7 MB batch", || {
        raw_post(
            &s.host_port(),
            &[
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
                ("MCP-Protocol-Version", VERSION),
            ],
            body,
        )
    })??;
    expect_error(&r, 401, -31001, "unauthenticated 1.7 MB batch")?;
    ensure!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("resource_metadata=")),
        "401 without the PRM challenge: {:?}",
        r.headers
    );
    let msgs = r.messages();
    ensure!(
        msgs.len() == 1 && msgs[0].get("id") == Some(&Value::Null),
        "the refusal of an unread body must be one error with id null: {}",
        r.summary()
    );
    Ok(())
}

pub(crate) fn tally_record(s: &Stack, sent: Instant) -> Result<(), String> {
    // The tally flushes every 10 s; the file sink follows the spool.
    let found = poll(
        Duration::from_secs(25).saturating_sub(sent.elapsed()),
        || {
            let r = unauthenticated_records(&s.audit);
            (!r.is_empty()).then_some(())
        },
    );
    ensure!(
        found.is_some(),
        "no audit record of the unauthenticated request within 25 s; records: {}",
        audit_records(&s.audit).len()
    );
    thread::sleep(Duration::from_millis(1500));
    let records = unauthenticated_records(&s.audit);
    ensure!(
        records.len() == 1,
        "expected one aggregated record for the one unauthenticated request, got {}: {}",
        records.len(),
        clip(&format!("{records:?}"), 1500)
    );
    let r = &records[0];
    ensure!(
        r["count"] == json!(1) && reason(r) == "unauthenticated",
        "the aggregated record should carry count 1 and reason unauthenticated: {r}"
    );
    ensure!(
        !r.to_string().contains("get-env"),
        "the unread body's tool names reached the audit trail: {r}"
    );
    Ok(())
}

pub(crate) fn flood(s: &Stack) -> Result<(), String> {
    const CALLERS: usize = 64;
    let body = Arc::new(batch_of_calls(4 << 20));
    let pid = s.sidecar.id();
    let before = rss_kib(pid).ok_or("cannot read the sidecar's VmRSS")?;
    let alpha = s.connect(ALPHA, VERSION)?;
    let (tool, args) = s.kind.good_call();
    let sampler = PeakRss::start(pid, before);
    let mark = s.tap.count();
    let addr = s.host_port();
    // A third without a token, a third with garbage, a third with a forged JWT naming the real
    // issuer, audience and key id (its signature is not the IdP's).
    let forged = forged_token(&s.idp.issuer);
    let flooders: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (body, addr) = (body.clone(), addr.clone());
            let auth = match i % 3 {
                0 => String::new(),
                1 => "Bearer not-a-jwt".to_owned(),
                _ => format!("Bearer {forged}"),
            };
            thread::spawn(move || {
                let mut headers = vec![
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json, text/event-stream"),
                ];
                if !auth.is_empty() {
                    headers.push(("Authorization", &auth));
                }
                raw_post(&addr, &headers, body)
            })
        })
        .collect();
    let mut during = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 50;
    while during.len() < 4 && Instant::now() < deadline {
        id += 1;
        during.push((id, alpha.call(id, tool, &args)));
        if flooders.iter().all(|h| h.is_finished()) {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let answers: Vec<Result<Resp, String>> =
        flooders.into_iter().map(|h| h.join().unwrap()).collect();
    let after = alpha.call(60, tool, &args);
    let peak = sampler.stop();
    eprintln!(
        "[{}] flood: sidecar VmRSS {} KiB before, peak {} KiB (limit {RSS_LIMIT_KIB} KiB)",
        s.kind.name(),
        before,
        peak
    );
    let mut failures = Vec::new();
    if peak >= RSS_LIMIT_KIB {
        failures.push(format!(
            "the sidecar's RSS peaked at {peak} KiB (≥ 128 MiB)"
        ));
    }
    let statuses: Vec<String> = answers
        .iter()
        .map(|a| match a {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("error ({e})"),
        })
        .collect();
    let refused = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|r| r.status == 401))
        .count();
    if refused != CALLERS {
        failures.push(format!(
            "{refused} of {CALLERS} unauthenticated POSTs got 401: {statuses:?}"
        ));
    }
    for (id, r) in &during {
        match r {
            Ok(r) if succeeded(r, *id) => {}
            Ok(r) => failures.push(format!("good call during the flood: {}", r.summary())),
            Err(e) => failures.push(format!("good call during the flood: {e}")),
        }
    }
    if during.is_empty() {
        failures.push("no good call was made during the flood".to_owned());
    }
    match after {
        Ok(r) if succeeded(&r, 60) => {}
        Ok(r) => failures.push(format!("good call after the flood: {}", r.summary())),
        Err(e) => failures.push(format!("good call after the flood: {e}")),
    }
    let got = s.tap.since(mark);
    let foreign: Vec<Recorded> = got
        .into_iter()
        .filter(|g| g.body_len() > 65536 || lossy(&g.body()).contains("get-env"))
        .collect();
    if !foreign.is_empty() {
        failures.push(format!(
            "the upstream received flood traffic: {}",
            describe(&foreign)
        ));
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n    "));
    Ok(())
}

/// The flood's 64 refusals are counted, not recorded one by one: one record per reason (missing,
/// invalid) and interval, counts summing to 64, besides the first request's record.
pub(crate) fn flood_tally(s: &Stack) -> Result<(), String> {
    let total = |records: &[Value]| -> u64 {
        records
            .iter()
            .map(|r| r["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let settled = poll(Duration::from_secs(25), || {
        let records = unauthenticated_records(&s.audit);
        (total(&records) >= 65).then_some(records)
    });
    let records = settled.unwrap_or_else(|| unauthenticated_records(&s.audit));
    let counts: Vec<Value> = records
        .iter()
        .map(|r| {
            json!([
                r["count"],
                r.pointer("/unmapped/mcp_warden/decision/detail")
            ])
        })
        .collect();
    eprintln!(
        "[{}] tokenless refusals in the audit trail: {counts:?}",
        s.kind.name()
    );
    ensure!(
        total(&records) == 65 && records.len() <= 7,
        "1 + 64 refused requests: expected ≤ 7 aggregated records (per reason and interval) whose counts sum to 65, got {} records with counts {counts:?}",
        records.len()
    );
    Ok(())
}
