//! `mcp-warden-operator`: watches the CRs, pushes each sidecar its bundle, writes status.
//!
//! Today: `run --source files:<dir>` serves bundles from CR files (demos, parity tests), and
//! `crds` prints the CustomResourceDefinitions.

use clap::{Parser, Subcommand};
use mcp_warden_operator::{files, index::Index, push};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

#[derive(Debug, Parser)]
#[command(name = "mcp-warden-operator", version, about = "Kubernetes operator for mcp-warden")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Serve sidecars their bundles.
    Run {
        /// Where the CRs come from: `files:<dir>` (no cluster; demos and tests).
        #[arg(long)]
        source: String,
        /// The push API address.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Seconds between heartbeats on idle watch streams.
        #[arg(long, default_value_t = 10)]
        heartbeat_seconds: u64,
        /// Write `{"listen": "..."}` here once the port is bound.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crds => {
            for (_, crd) in mcp_warden_crds::crds() {
                #[allow(clippy::print_stdout)]
                {
                    print!("---\n{}", mcp_warden_crds::crd_yaml(&crd));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            source,
            listen,
            heartbeat_seconds,
            ready_file,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let Some(dir) = source.strip_prefix("files:").map(PathBuf::from) else {
                tracing::error!("--source must be files:<dir> (the cluster source comes with the kube watches)");
                return ExitCode::from(2);
            };
            if !listen.ip().is_loopback() {
                tracing::error!("--source files serves bundles without authenticating callers: --listen must be a loopback address");
                return ExitCode::from(2);
            }
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            runtime.block_on(async move {
                let index = Index::default();
                match files::read_dir(&dir) {
                    Ok((inventory, _)) => index.replace_all(inventory),
                    Err(e) => tracing::error!("{e}"),
                }
                tokio::spawn(files::watch(dir, index.clone()));
                let listener = match tokio::net::TcpListener::bind(listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("cannot listen on {listen}: {e}");
                        return ExitCode::from(1);
                    }
                };
                let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                tracing::info!(listen = %bound, "push API listening");
                if let Some(file) = ready_file {
                    let _ = std::fs::write(file, serde_json::json!({ "listen": bound }).to_string());
                }
                let settings = push::PushSettings {
                    heartbeat: Duration::from_secs(heartbeat_seconds.max(1)),
                    labels_from_query: true,
                };
                push::serve(listener, index, settings, Arc::new(push::AllowAll), async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
                ExitCode::SUCCESS
            })
        }
    }
}
