//! `mcp-warden`: operator tooling. `audit verify` checks record files for tampering and loss;
//! `audit query` answers "what did this agent call, when, and what came back"; `audit ship`
//! drains a spool to its sinks (e.g. one left behind by a dead pod).

#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand, ValueEnum};
use mcp_warden_policy::Capability;
use mcp_warden_sidecar::audit::{
    self, AuditConfig, AuditEvent, Auditor, DecisionInfo, Outcome, PrincipalInfo, Redaction,
    ServerInfo, ToolInfo, TransportInfo, query, verify,
};
use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

#[derive(Parser, Debug)]
#[command(name = "mcp-warden", version, about = "mcp-warden operator tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Audit records: verify, query, ship.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Check record files (a spool directory, a directory of .jsonl files, or files) for edited,
    /// missing, duplicated and reordered records; names the first broken record. Exit 1 if any.
    Verify {
        /// Skip exact re-deliveries (same uid, same hash), as found in SIEM exports.
        #[arg(long)]
        dedup: bool,
        /// Spool directories, directories of .jsonl files, or files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Every call made by a client in a period, with identity and response.
    Query(QueryArgs),
    /// Ship a spool's records to the configured sinks.
    Ship {
        /// The audit configuration (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Stop once every sink has everything (default: run until SIGINT/SIGTERM).
        #[arg(long)]
        until_drained: bool,
        /// On stop, how long sinks may take to catch up.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        drain_timeout: Duration,
    },
    /// Append synthetic tools/call records (load and crash tests). Prints `acked <sequence>` per
    /// durable record.
    #[command(hide = true)]
    Load {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        count: u64,
        /// Number used for the first call's JSON-RPC id (ids are start..start+count).
        #[arg(long, default_value_t = 1)]
        start: u64,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Pause between calls of one worker.
        #[arg(long, value_parser = parse_duration)]
        delay: Option<Duration>,
        #[arg(long, default_value = "load-session")]
        session: String,
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        drain_timeout: Duration,
    },
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// McpClient (`name` or `namespace/name`), OAuth client_id, or subject.
    #[arg(long)]
    client: String,
    /// Start (inclusive): 2026-11-24, 2026-11-24T07:00 (UTC) or RFC 3339.
    #[arg(long)]
    from: String,
    /// End (exclusive; a bare date means the end of that day).
    #[arg(long)]
    to: String,
    /// Only this tool.
    #[arg(long)]
    tool: Option<String>,
    /// Only this Mcp-Session-Id.
    #[arg(long)]
    session: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Spool directories, directories of .jsonl files, or files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// One line per call.
    Table,
    /// The OCSF records, one per line.
    Jsonl,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    mcp_warden_policy::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let Command::Audit(cmd) = cli.command;
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cmd: AuditCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        AuditCommand::Verify { dedup, paths } => {
            let report = verify::verify(&paths, dedup)?;
            for w in &report.warnings {
                writeln!(out, "warning: {w}")?;
            }
            if report.files.is_empty() {
                writeln!(out, "BROKEN: no record files found")?;
                return Ok(ExitCode::FAILURE);
            }
            if report.ok() {
                for (instance, s) in &report.instances {
                    writeln!(
                        out,
                        "ok: instance {instance}: {} records, sequence {}..={}, {} checkpoints, chain intact",
                        s.records, s.first, s.last, s.checkpoints
                    )?;
                }
                writeln!(
                    out,
                    "ok: {} files, {} duplicates skipped",
                    report.files.len(),
                    report.duplicates_skipped
                )?;
                Ok(ExitCode::SUCCESS)
            } else {
                writeln!(out, "BROKEN: first broken record: {}", report.problems[0])?;
                for p in report.problems.iter().skip(1).take(20) {
                    writeln!(out, "  also: {p}")?;
                }
                if report.problems.len() > 21 {
                    writeln!(out, "  … {} more", report.problems.len() - 21)?;
                }
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Query(q) => {
            let filter = query::QueryFilter {
                client: Some(q.client),
                from: Some(query::parse_time(&q.from, false)?),
                to: Some(query::parse_time(&q.to, true)?),
                tool: q.tool,
                session: q.session,
            };
            let rows = query::query(&q.paths, &filter)?;
            for r in &rows {
                match q.output {
                    Format::Table => writeln!(out, "{}", query::table_row(r))?,
                    Format::Jsonl => writeln!(out, "{r}")?,
                }
            }
            if matches!(q.output, Format::Table) {
                writeln!(out, "{} calls", rows.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Ship {
            config,
            until_drained,
            drain_timeout,
        } => {
            drop(out);
            let cfg = AuditConfig::from_yaml(&std::fs::read_to_string(&config)?)?;
            runtime()?.block_on(async move {
                let auditor = Auditor::start(&cfg, &prometheus::Registry::new())?;
                if until_drained {
                    let deadline = Instant::now() + Duration::from_secs(24 * 3600);
                    while Instant::now() < deadline {
                        let st = auditor.spool().stats();
                        if st.sinks.values().all(|a| *a >= st.last_sequence) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } else {
                    wait_for_signal().await;
                }
                let drained = auditor.shutdown(drain_timeout).await;
                Ok::<_, Box<dyn std::error::Error>>(if drained {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
        AuditCommand::Load {
            config,
            count,
            start,
            concurrency,
            delay,
            session,
            drain_timeout,
        } => {
            drop(out);
            let cfg = AuditConfig::from_yaml(&std::fs::read_to_string(&config)?)?;
            runtime()?.block_on(load(
                cfg,
                count,
                start,
                concurrency.max(1),
                delay,
                session,
                drain_timeout,
            ))
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// A synthetic, fully populated tools/call event: request-phase for even ids, final (answered)
/// for odd ones, as calls make them (a final record is made durable with the next request one).
fn synthetic(id: u64, session: &str) -> AuditEvent {
    let now = jiff::Timestamp::now();
    let answered = id % 2 == 1;
    AuditEvent {
        call_uid: audit::new_call_uid(),
        started: now,
        ended: answered.then_some(now),
        method: "tools/call".into(),
        jsonrpc_id: Some(id.to_string()),
        tool: Some(ToolInfo {
            capability: Capability::Tool,
            name: "echo".into(),
            mcp_tool: None,
            risk: None,
        }),
        arguments: Some(serde_json::json!({"i": id, "pad": "x".repeat((id % 300) as usize)})),
        principal: Some(PrincipalInfo {
            issuer: "http://127.0.0.1/issuer".into(),
            subject: Some("agent-load".into()),
            client_id: Some("agent-load".into()),
            token_id: None,
            scopes: vec!["mcp:tools.call".into()],
        }),
        client: None,
        decision: Some(DecisionInfo {
            allowed: true,
            reason: "allowed".into(),
            ..DecisionInfo::default()
        }),
        outcome: if answered {
            Outcome::Answered
        } else {
            Outcome::Forwarding
        },
        response: if answered {
            audit::ResponseInfo {
                http_status: Some(200),
                upstream_status: Some(200),
                is_error: Some(false),
                ..Default::default()
            }
        } else {
            audit::ResponseInfo::default()
        },
        transport: TransportInfo {
            session_id: Some(session.to_owned()),
            src: Some("127.0.0.1:40000".parse().expect("an address")),
            ..TransportInfo::default()
        },
        server: ServerInfo {
            name: "load-server".into(),
            ..ServerInfo::default()
        },
        count: None,
        server_request: None,
        upstream_auth: None,
    }
}

async fn load(
    cfg: AuditConfig,
    count: u64,
    start: u64,
    concurrency: usize,
    delay: Option<Duration>,
    session: String,
    drain_timeout: Duration,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let auditor = Auditor::start(&cfg, &prometheus::Registry::new())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start));
    let end = start + count;
    let began = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (auditor, tx, next, session) =
            (auditor.clone(), tx.clone(), next.clone(), session.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if id >= end {
                    return Ok::<(), audit::AuditError>(());
                }
                let r = auditor
                    .record(&synthetic(id, &session), &Redaction::none())
                    .await?;
                let _ = tx.send(r.sequence);
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
            }
        }));
    }
    drop(tx);
    let printer = tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        while let Some(seq) = rx.blocking_recv() {
            if writeln!(out, "acked {seq}")
                .and_then(|()| out.flush())
                .is_err()
            {
                break;
            }
        }
    });
    let mut failed = false;
    for w in workers {
        if let Ok(Err(e)) = w.await {
            eprintln!("append failed: {e}");
            failed = true;
        }
    }
    let _ = printer.await;
    let elapsed = began.elapsed();
    let drained = auditor.shutdown(drain_timeout).await;
    eprintln!(
        "appended {count} records in {:.3}s ({:.0}/s); sinks drained: {drained}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    Ok(if failed || !drained {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
