//! `bench-upstream`: the benchmark's MCP server (see `mcp_warden_bench::upstream`). Prints
//! `listening <addr>` once bound.

use clap::Parser;
use mcp_warden_bench::upstream::{Upstream, serve};
use std::{net::SocketAddr, process::ExitCode};

#[derive(Debug, Parser)]
#[command(
    name = "bench-upstream",
    about = "A minimal, fast MCP server for benchmarks"
)]
struct Args {
    /// Where to listen (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How many tools `tools/list` returns (`echo`, `tool_001`, …).
    #[arg(long, default_value_t = 20)]
    tools: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => eprintln!("listening {addr}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        serve(listener, Upstream::new(args.tools)).await;
        ExitCode::SUCCESS
    })
}
