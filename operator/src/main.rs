//! `mcp-warden-operator`: watches the CRs and pods, pushes each sidecar its bundle, writes
//! status and injects sidecars.
//!
//! Today: `crds` prints the CustomResourceDefinitions (`mcp-warden-operator crds | kubectl apply -f -`).

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-warden-operator",
    version,
    about = "Kubernetes operator for mcp-warden"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
}

fn main() {
    match Cli::parse().command {
        Command::Crds => {
            for (_, crd) in mcp_warden_crds::crds() {
                #[allow(clippy::print_stdout)]
                {
                    print!("---\n{}", mcp_warden_crds::crd_yaml(&crd));
                }
            }
        }
    }
}
