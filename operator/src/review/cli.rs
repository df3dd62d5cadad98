//! `mcp-warden-operator review …`: the command line of access reviews.
//!
//! ```text
//! review report  [-n NS] [--format markdown|csv|json] [--from-files DIR|FILE…] [--status FILE]
//!                [--now RFC3339]                      ──source──► model::build ──render──► stdout
//! review approve <NS/NAME | NAME -n NS> --by PERSON [--at RFC3339] [--dry-run]
//!                                                     ──approve──► the McpClient's spec.review
//! ```
//!
//! Without `--from-files` both talk to the cluster of the kubeconfig's current context, as the
//! person running them. Warnings and errors go to stderr; the exit code is 1 on error, 2 on a
//! bad argument.

use super::{
    ReviewError,
    approve::{Approval, approve, target},
    model::build,
    render::{Format, render},
    source,
};
use jiff::Timestamp;
use std::{io::Write, path::PathBuf, process::ExitCode};

/// `review` arguments.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    command: ReviewCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ReviewCommand {
    /// Print the access review: every McpClient's owner, dates, last use, grants and flags.
    Report(ReportArgs),
    /// Record a review of an McpClient (spec.review.lastReviewedAt/lastReviewedBy).
    Approve(ApproveArgs),
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Only the McpClients of this namespace (McpTools and McpPolicies are read from every
    /// namespace, since grants cross namespaces).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Read CR files or folders instead of the cluster (repeat for several).
    #[arg(long = "from-files", value_name = "PATH")]
    from_files: Vec<PathBuf>,
    /// With --from-files: a status snapshot (`kubectl get mcpclients -o yaml`, YAML or JSON)
    /// whose `.status` fields are used.
    #[arg(long, value_name = "FILE", requires = "from_files")]
    status: Option<PathBuf>,
    /// The clock of the report (RFC 3339); default: now. For reproducible reports.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ApproveArgs {
    /// The McpClient: `<namespace>/<name>`, or `<name>` with -n.
    client: String,
    /// The McpClient's namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Who reviewed it (e.g. alice@example.com).
    #[arg(long)]
    by: String,
    /// When it was reviewed (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Print the patch and check the client exists; write nothing.
    #[arg(long)]
    dry_run: bool,
}

fn parse_time(flag: &str, text: Option<&str>) -> Result<Timestamp, ReviewError> {
    match text {
        None => Ok(Timestamp::now()),
        Some(t) => t.parse().map_err(|e| {
            ReviewError::Usage(format!(
                "{flag} {t:?} is not an RFC 3339 time such as 2026-11-24T12:00:00Z: {e}"
            ))
        }),
    }
}

fn stdout(text: &str) -> Result<(), ReviewError> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| ReviewError::Usage(format!("cannot write the output: {e}")))
}

async fn cluster() -> Result<kube::Client, ReviewError> {
    kube::Client::try_default().await.map_err(|e| {
        ReviewError::Usage(format!(
            "no Kubernetes configuration (kubeconfig or in-cluster), or use --from-files: {e}"
        ))
    })
}

async fn report(args: ReportArgs) -> Result<(), ReviewError> {
    let now = parse_time("--now", args.now.as_deref())?;
    let inventory = if args.from_files.is_empty() {
        source::from_cluster(&cluster().await?, args.namespace.as_deref()).await?
    } else {
        let (inventory, warnings) = source::from_files(&args.from_files, args.status.as_deref())?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        inventory
    };
    let report = build(&inventory, args.namespace.as_deref(), now);
    for p in &report.problems {
        eprintln!("warning: {p}");
    }
    stdout(&render(&report, args.format))
}

async fn approve_cmd(args: ApproveArgs) -> Result<(), ReviewError> {
    let now = Timestamp::now();
    let at = parse_time("--at", args.at.as_deref())?;
    let client = cluster().await?;
    let (ns, name) = target(
        &args.client,
        args.namespace.as_deref(),
        client.default_namespace(),
    )?;
    let approval = Approval::new(&ns, &name, &args.by, at, now)?;
    let stored = approve(&client, &approval, args.dry_run).await?;
    if args.dry_run {
        return stdout(&format!(
            "would patch McpClient {ns}/{name} (merge patch, field manager {}):\n{}\n",
            super::approve::FIELD_MANAGER,
            approval.patch()
        ));
    }
    let due = mcp_warden_policy::lifecycle::review_due(&stored)
        .map(|t| format!("; next review due {t}"))
        .unwrap_or_default();
    stdout(&format!(
        "McpClient {ns}/{name}: review recorded at {} by {}{due}\n",
        approval.at, approval.by
    ))
}

/// Runs a `review` command.
pub fn run(args: ReviewArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match args.command {
            ReviewCommand::Report(a) => report(a).await,
            ReviewCommand::Approve(a) => approve_cmd(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if matches!(e, ReviewError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}
