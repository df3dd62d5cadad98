//! `bench-tool`: the steps of `bench/run.sh` that are easier in Rust than in shell: fixtures,
//! the static issuer, the timed probes, the audit load, the report.

use clap::{Parser, Subcommand};
use mcp_warden_bench::{
    audit_load, fixture, fsync_modes, inventory, issuer, passthrough, probe, report,
};
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

#[derive(Debug, Parser)]
#[command(
    name = "bench-tool",
    about = "Fixtures, probes and the report of the mcp-warden benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the policy set, keys and tokens into --dir.
    Gen {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        params: fixture::Params,
    },
    /// Serve discovery and JWKS for the issuers of an issuers.json (until killed).
    Issuer {
        #[arg(long)]
        issuers: PathBuf,
    },
    /// A bare pass-through proxy to --upstream (the floor of added latency; until killed).
    Passthrough {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        upstream: http::Uri,
    },
    /// Revocation propagation: flip a client's `suspended` in --file, time the first 403.
    Revocation {
        /// What is measured (for the report).
        #[arg(long)]
        what: String,
        /// The sidecar's MCP URL.
        #[arg(long)]
        url: String,
        /// A file whose first line is the probed client's token.
        #[arg(long)]
        token_file: PathBuf,
        /// The file the sidecar (or operator) reads.
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        active: PathBuf,
        #[arg(long)]
        suspended: PathBuf,
        #[arg(long, default_value_t = 20)]
        samples: usize,
        /// Where the JSON figures go.
        #[arg(long)]
        out: PathBuf,
    },
    /// How a lone durable record reaches the disk fastest here: append + fdatasync, prezeroed
    /// segments, O_DSYNC, fallocate (bounded: `records` × `rounds` per mode).
    FsyncModes {
        /// A folder on the spool's filesystem.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 200)]
        records: usize,
        #[arg(long, default_value_t = 2048)]
        record_bytes: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Write the operator-scale inventory (10,000 / 1,000 / 2,000) into --dir.
    Inventory {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Operator push latency: flip a client in the inventory, time the new bundle on the watch.
    Push {
        /// The operator's push API base URL.
        #[arg(long)]
        operator: String,
        /// The inventory folder the operator reads.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 20)]
        samples: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Audit records per second into the spool and per-record latency, durable and written.
    Audit {
        /// A scratch folder (spools go under it).
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 256)]
        appenders: usize,
        #[arg(long, default_value_t = 50_000)]
        records: u64,
        #[arg(long, default_value_t = 2_000)]
        samples: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the audit configuration the bench sidecar uses into --dir; print its path.
    AuditConfig {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = "durable")]
        ack: String,
    },
    /// Summarize a results folder into docs/performance.md and the README table.
    Report {
        #[arg(long)]
        results: PathBuf,
        #[arg(long)]
        doc: PathBuf,
        #[arg(long)]
        readme: PathBuf,
    },
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Gen { dir, params } => fixture::generate(&dir, &params).map_err(|e| e.to_string()),
        Command::Issuer { issuers } => {
            let doc: serde_json::Value =
                serde_json::from_str(&read(&issuers)?).map_err(|e| e.to_string())?;
            runtime()?.block_on(issuer::serve(&doc))
        }
        Command::Passthrough { listen, upstream } => {
            // Multi-threaded like the sidecar (one worker per CPU it is pinned to).
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the runtime: {e}"))?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                passthrough::serve(listener, upstream).await;
                Ok(())
            })
        }
        Command::Revocation {
            what,
            url,
            token_file,
            file,
            active,
            suspended,
            samples,
            out,
        } => {
            let tokens = read(&token_file)?;
            let token = tokens.lines().next().ok_or("the token file is empty")?;
            let figures = probe::revocation(
                &what,
                &url,
                token,
                &file,
                &read(&active)?,
                &read(&suspended)?,
                samples,
            )?;
            write_json(&out, &figures)
        }
        Command::FsyncModes {
            dir,
            records,
            record_bytes,
            rounds,
        } => {
            let figures = fsync_modes::measure(&dir, records, record_bytes, rounds)
                .map_err(|e| e.to_string())?;
            #[allow(clippy::print_stdout)] // the figures are the output
            for f in figures {
                println!(
                    "{:24} p50 {:7.0} µs  p90 {:7.0} µs  p99 {:7.0} µs",
                    f.mode, f.p50, f.p90, f.p99
                );
            }
            Ok(())
        }
        Command::Inventory { dir } => inventory::write(&dir).map_err(|e| e.to_string()),
        Command::Push {
            operator,
            dir,
            samples,
            out,
        } => {
            let versions = [
                inventory::clients_yaml(0, false),
                inventory::clients_yaml(0, true),
            ];
            let figures = probe::push_latency(
                &operator,
                "tools-00",
                "tool-0000-0",
                "app%3Dtool-0000",
                &dir.join("clients-00.yaml"),
                &versions,
                samples,
            )?;
            write_json(&out, &figures)
        }
        Command::Audit {
            dir,
            appenders,
            records,
            samples,
            out,
        } => {
            let rt = runtime()?;
            let mut all = Vec::new();
            for ack in ["durable", "written"] {
                all.push(rt.block_on(audit_load::measure(
                    &dir.join(ack),
                    ack,
                    appenders,
                    records,
                    samples,
                ))?);
            }
            write_json(&out, &all)
        }
        Command::AuditConfig { dir, ack } => {
            let path = audit_load::write_config(&dir, &ack).map_err(|e| e.to_string())?;
            #[allow(clippy::print_stdout)] // the script reads the path
            {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::Report {
            results,
            doc,
            readme,
        } => report::write(&results, &doc, &readme),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
