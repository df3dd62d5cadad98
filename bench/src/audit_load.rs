//! Audit load: how many records per second the pipeline makes durable in the spool, and what one
//! record adds to a call, for `ack: durable` and `ack: written`, with a file sink shipping.
//!
//! ```text
//! config_yaml(dir, ack) ──► Auditor::start (spool + file sink)
//!   throughput: `appenders` tasks × (request record, final record) as a call makes them,
//!               until `records` are acknowledged                                         ──► records/s
//!   latency:    one caller, the request record (what a call waits for) timed `samples`
//!               times, one after the other                                               ──► p50/p99 µs
//! ```

use jiff::Timestamp;
use mcp_warden_crds::Risk;
use mcp_warden_policy::{Capability, Kind, ObjectRef};
use mcp_warden_sidecar::audit::{
    AuditConfig, AuditEvent, Auditor, ClientInfo, DecisionInfo, DecisionMode, Outcome,
    PrincipalInfo, Redaction, ResponseInfo, ServerInfo, ToolInfo, TransportInfo,
};
use serde::Serialize;
use serde_json::json;
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

/// A fully populated `tools/call` record of the bench's `echo`, final phase, answered OK.
pub fn call_event(i: u64) -> AuditEvent {
    let start = Timestamp::now();
    let obj = |kind, name: &str| ObjectRef::new(kind, "bench", name);
    AuditEvent {
        call_uid: format!("bench-call-{i:08}"),
        started: start,
        ended: Some(start),
        method: "tools/call".into(),
        jsonrpc_id: Some(i.to_string()),
        tool: Some(ToolInfo {
            capability: Capability::Tool,
            name: "echo".into(),
            mcp_tool: Some(obj(Kind::McpTool, "bench")),
            risk: Some(Risk::Low),
        }),
        arguments: Some(json!({"message": "hello", "password": "hunter2"})),
        principal: Some(PrincipalInfo {
            issuer: "http://127.0.0.1:9410".into(),
            subject: Some("bench-client-0001".into()),
            client_id: Some("bench-client-0001".into()),
            token_id: Some(format!("jti-{i}")),
            scopes: vec!["bench:call".into(), "mcp:tools".into()],
        }),
        client: Some(ClientInfo {
            object: obj(Kind::McpClient, "bench-client-0001"),
            owner: "owner-1@example.com".into(),
        }),
        decision: Some(DecisionInfo {
            allowed: true,
            reason: "allowed".into(),
            decided_by: Some(obj(Kind::McpPolicy, "bench-policy-0001")),
            mode: DecisionMode::Enforce,
            detail: None,
        }),
        outcome: Outcome::Answered,
        response: ResponseInfo {
            http_status: Some(200),
            upstream_status: Some(200),
            is_error: Some(false),
            ..ResponseInfo::default()
        },
        transport: TransportInfo {
            src: "127.0.0.1:53124".parse().ok(),
            session_id: None,
            protocol_version: Some("2025-06-18".into()),
            http_method: Some("POST".into()),
            path: Some("/mcp".into()),
            user_agent: Some("wrk".into()),
            bytes_in: 120,
            bytes_out: 110,
            ..TransportInfo::default()
        },
        server: ServerInfo {
            name: "bench".into(),
            resource: Some("http://127.0.0.1:9401/mcp".into()),
            upstream: "127.0.0.1:9402".parse().ok(),
        },
        count: None,
        server_request: None,
        upstream_auth: None,
    }
}

/// The audit configuration the sidecar runs with in the bench: the spool in `<dir>/spool`, a file
/// sink in `<dir>/sink` rotating at 100 MiB and keeping 8 files (a bench run writes tens of GB of
/// records; an unbounded archive fills the disk), `ack` as given (`durable` or `written`).
pub fn config_yaml(dir: &Path, ack: &str) -> String {
    format!(
        "spool:\n  dir: {spool}\n  ack: {ack}\n  checkpointInterval: null\nredaction:\n  keyFile: {key}\n  alwaysRedact: [password]\nsinks:\n  - name: archive\n    file: {{dir: {sink}, maxFiles: 8}}\n",
        spool = dir.join("spool").display(),
        key = dir.join("hmac.key").display(),
        sink = dir.join("sink").display(),
    )
}

/// Writes `<dir>/audit.yaml` and its key; returns the config file's path.
pub fn write_config(dir: &Path, ack: &str) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("hmac.key"), "bench-audit-key-0123456789abcdef\n")?;
    let path = dir.join("audit.yaml");
    std::fs::write(&path, config_yaml(dir, ack))?;
    Ok(path)
}

/// The figures of one ack level.
#[derive(Debug, Serialize)]
pub struct AuditFigures {
    /// `durable` or `written`.
    pub ack: String,
    /// Records acknowledged per second with `appenders` concurrent callers.
    pub records_per_second: f64,
    /// Concurrent callers of the throughput run.
    pub appenders: usize,
    /// Records of the throughput run.
    pub records: u64,
    /// One caller, one record at a time: median time of `Auditor::record`, µs.
    pub single_p50_us: f64,
    /// … and its 99th percentile, µs.
    pub single_p99_us: f64,
}

/// Measures one ack level in a fresh folder `dir` (single-threaded runtime: one core).
pub async fn measure(
    dir: &Path,
    ack: &str,
    appenders: usize,
    records: u64,
    samples: usize,
) -> Result<AuditFigures, String> {
    let path = write_config(dir, ack).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let cfg = AuditConfig::from_yaml(&text).map_err(|e| e.to_string())?;
    let auditor = Arc::new(
        Auditor::start(&cfg, &prometheus::Registry::new()).map_err(|e| format!("audit: {e}"))?,
    );
    let redaction = Arc::new(Redaction::none());
    let final_record = Arc::new(call_event(0));
    let mut request = call_event(0);
    request.outcome = Outcome::Forwarding;
    request.ended = None;
    let request = Arc::new(request);
    // Warm-up (segment creation, first fsync).
    for _ in 0..100 {
        auditor
            .record(&request, &redaction)
            .await
            .map_err(|e| e.to_string())?;
    }
    let per_task = records / appenders.max(1) as u64;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(appenders);
    for _ in 0..appenders {
        let (a, r) = (auditor.clone(), redaction.clone());
        let events = [request.clone(), final_record.clone()];
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                let e = &events[(i % 2) as usize];
                a.record(e, &r).await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed();
    let done = per_task * appenders as u64;
    let mut times: Vec<Duration> = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        auditor
            .record(&request, &redaction)
            .await
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    times.sort();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    auditor.shutdown(Duration::from_secs(5)).await;
    Ok(AuditFigures {
        ack: ack.to_owned(),
        records_per_second: done as f64 / elapsed.as_secs_f64(),
        appenders,
        records: done,
        single_p50_us: pct(0.5),
        single_p99_us: pct(0.99),
    })
}
