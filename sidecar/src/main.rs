//! `mcp-warden-sidecar`: the governing proxy in front of one MCP server.

use clap::{Parser, Subcommand};
use mcp_warden_sidecar::config;
use std::{path::PathBuf, process::ExitCode};

#[derive(Debug, Parser)]
#[command(name = "mcp-warden-sidecar", version, about = "Governs an MCP server: identity, per-tool authorization, quotas, audit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a standalone configuration (CR YAML file or folder) and exit.
    Check {
        /// The McpTool/McpClient/McpPolicy YAML file, or a folder of them.
        #[arg(long)]
        config: PathBuf,
        /// Select the McpTool by pod: `<namespace>/<name>` (default: the only McpTool).
        #[arg(long)]
        workload: Option<String>,
        /// The workload's labels, `k=v,k2=v2`, matched against `server.selector`.
        #[arg(long, requires = "workload")]
        labels: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config,
            workload,
            labels,
        } => {
            let selection = match workload.as_deref().map(|w| config::workload(w, labels.as_deref())) {
                None => config::Selection::OnlyTool,
                Some(Ok(w)) => config::Selection::Workload(w),
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match config::load_config(&config, &selection) {
                Ok((bundle, rules)) => {
                    #[allow(clippy::print_stdout)]
                    {
                        println!(
                            "ok: {} governs {} ({} tool entries, {} clients, {} policies), version {}",
                            rules.tool,
                            rules.resource,
                            rules.entries.len(),
                            rules.clients.len(),
                            rules.policies.len(),
                            bundle.version
                        );
                        for p in &rules.problems {
                            println!("warning: {}: {} ({}): {}", p.object, p.condition, p.reason, p.message);
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
