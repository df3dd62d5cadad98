//! `mcp-warden-operator`: watches the CRs, pushes each sidecar its bundle, writes status.
//!
//! - `run` (in-cluster, or the kubeconfig's context): watches McpTool/McpClient/McpPolicy and the
//!   Pods of the governed namespaces, serves the push API over HTTPS to sidecars authenticated by
//!   TokenReview, takes usage reports, and writes status while it holds the leader Lease.
//! - `run --source files:<dir>`: serves bundles from CR files (demos, parity tests), no cluster.
//! - `crds`: prints the CustomResourceDefinitions.
//! - `review report|approve`: access reviews, with the caller's credentials (`review`).
//! - `inject -f <file|->`: prints the manifests with the sidecar injected (like `istioctl
//!   kube-inject`); `run --webhook-listen` serves the same injector as a mutating webhook.

use clap::{ArgAction, Parser, Subcommand};
use mcp_warden_operator::{
    admin,
    clock::SystemClock,
    files,
    index::Index,
    inject::cli::{InjectArgs, SidecarArgs},
    leader::LeaseSettings,
    metrics::Metrics,
    netpol::NetworkPolicySettings,
    push, run,
    status_writer::StatusSettings,
    upstream_auth::{self, UpstreamAuth},
    usage::{UsageEndpoint, UsageStore},
    watch::{InvalidObjects, WatchSettings},
    webhook,
};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

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
    /// Serve sidecars their bundles (and, with a cluster, write status).
    Run(Box<RunArgs>),
    /// Access reviews: report every McpClient's grants and flags, record reviews.
    Review(mcp_warden_operator::review::cli::ReviewArgs),
    /// Print manifests with the mcp-warden sidecar injected (Pods and workload templates).
    Inject(Box<InjectArgs>),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where the CRs come from: unset = the cluster (in-cluster config or the kubeconfig's current
    /// context); `files:<dir>` = CR files, no cluster (demos and tests).
    #[arg(long)]
    source: Option<String>,
    /// The push API address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Seconds between heartbeats on idle watch streams.
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Write `{"listen": "..."}` here once the port is bound.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The admin address (`/metrics`, `/ready`, `/live`). Default with a cluster: 0.0.0.0:9090;
    /// with `--source files`: none.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Namespaces whose CRs and Pods are watched (repeat or comma-separate); default: all. Must
    /// include the namespaces of the McpClients that policies name, or those grants are missing.
    #[arg(long = "namespace", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Label selector of the Pods to index (e.g. `mcpwarden.io/inject=true`); default: all Pods
    /// of the watched namespaces.
    #[arg(long)]
    pod_selector: Option<String>,
    /// Elect a leader with a Lease; only the leader writes status. `false`: this replica always
    /// writes (run a single replica then).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "mcp-warden-operator")]
    lease_name: String,
    /// The Lease's namespace (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mcp-warden")]
    lease_namespace: String,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// The audience sidecars' projected ServiceAccount tokens must carry.
    #[arg(long, default_value = "mcp-warden-operator")]
    audience: String,
    /// PEM certificate chain of the push API (HTTPS).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the push API.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve the push API over plain HTTP with a cluster (tokens travel in clear: development
    /// only).
    #[arg(long)]
    plaintext: bool,
    /// Seconds between refreshes of usage counts in status.
    #[arg(long, default_value_t = 60)]
    usage_refresh_seconds: u64,
    /// Serve the mutating admission webhook (`POST /mutate`, HTTPS with --tls-cert/--tls-key)
    /// here; unset: no webhook.
    #[arg(long)]
    webhook_listen: Option<SocketAddr>,
    /// Keep a NetworkPolicy per McpTool with a `server.selector`: its pods accept traffic only
    /// on the sidecar's ports (see docs/bypass.md).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    network_policies: bool,
    /// Namespaces whose pods may reach the sidecars' admin port through those NetworkPolicies
    /// (repeat or comma-separate; e.g. the operator's and Prometheus').
    #[arg(long = "network-policy-admin-from", value_delimiter = ',')]
    network_policy_admin_from: Vec<String>,
    /// Push upstream credentials to the sidecars of McpTools with `upstreamAuth` (issue 22):
    /// cluster mode watches the Secrets labelled `mcpwarden.io/upstream-credentials=true`
    /// (the operator then needs list/watch on Secrets; the chart's `upstreamAuth.credentials`).
    #[arg(long, default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    upstream_credentials: bool,
    /// The private key (PKCS#8 PEM, P-256 or Ed25519) that signs the sidecars' identity JWTs;
    /// re-read when it changes; the key it replaces stays in `GET /v1/jwks` for 2 minutes.
    #[arg(long)]
    upstream_identity_key: Option<PathBuf>,
    /// The key that will replace --upstream-identity-key, published in `GET /v1/jwks` ahead of
    /// signing (put the new key here, wait out the upstreams' JWKS caches, then swap the files).
    #[arg(long)]
    upstream_identity_next_key: Option<PathBuf>,
    /// `--source files` only: upstream credential values, `<dir>/<namespace>/<secret>/<key>`.
    #[arg(long)]
    upstream_secrets_dir: Option<PathBuf>,
    /// What the webhook injects.
    #[command(flatten)]
    sidecar: SidecarArgs,
}

/// The upstream credentials store, its file watcher started (`None` when nothing asks for it).
fn upstream_auth(args: &RunArgs, files_mode: bool) -> Option<Arc<UpstreamAuth>> {
    let secrets_dir = args.upstream_secrets_dir.clone().filter(|_| files_mode);
    let wanted = args.upstream_credentials
        || args.upstream_identity_key.is_some()
        || args.upstream_identity_next_key.is_some()
        || secrets_dir.is_some();
    if !wanted {
        return None;
    }
    let auth = Arc::new(UpstreamAuth::default());
    tokio::spawn(upstream_auth::watch_files(
        args.upstream_identity_key.clone(),
        args.upstream_identity_next_key.clone(),
        secrets_dir,
        auth.clone(),
    ));
    Some(auth)
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
        Command::Review(args) => mcp_warden_operator::review::cli::run(args),
        Command::Inject(args) => mcp_warden_operator::inject::cli::run(&args),
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match args.source.as_deref() {
                None => runtime.block_on(run_cluster(*args)),
                Some(source) => {
                    let Some(dir) = source.strip_prefix("files:").map(PathBuf::from) else {
                        tracing::error!("--source must be files:<dir> (or unset for the cluster)");
                        return ExitCode::from(2);
                    };
                    runtime.block_on(run_files(dir, *args))
                }
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!("cannot listen on {addr} ({what}): {e}");
            None
        }
    }
}

fn write_ready_file(
    file: Option<&PathBuf>,
    listener: &tokio::net::TcpListener,
    webhook: Option<SocketAddr>,
) -> String {
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some(file) = file {
        let mut ready = serde_json::json!({ "listen": bound });
        if let Some(webhook) = webhook {
            ready["webhook"] = webhook.to_string().into();
        }
        let _ = std::fs::write(file, ready.to_string());
    }
    bound
}

/// Starts the admission webhook when `--webhook-listen` is set; its bound address.
async fn start_webhook(
    args: &RunArgs,
    tls: Option<&Arc<rustls::ServerConfig>>,
    metrics: &Metrics,
) -> Result<Option<SocketAddr>, ExitCode> {
    let Some(addr) = args.webhook_listen else {
        return Ok(None);
    };
    let Some(tls) = tls else {
        tracing::error!(
            "--webhook-listen: the webhook is served over HTTPS only; give --tls-cert and --tls-key"
        );
        return Err(ExitCode::from(2));
    };
    let config = args.sidecar.config(&args.audience).map_err(|e| {
        tracing::error!("{e}");
        ExitCode::from(2)
    })?;
    let listener = bind(addr, "admission webhook")
        .await
        .ok_or(ExitCode::from(1))?;
    let bound = listener.local_addr().map_err(|_| ExitCode::from(1))?;
    tracing::info!(webhook = %bound, "admission webhook listening");
    let webhook = webhook::Webhook {
        config: Arc::new(config),
        metrics: metrics.clone(),
    };
    tokio::spawn(webhook::serve(listener, tls.clone(), webhook, terminated()));
    Ok(Some(bound))
}

async fn run_files(dir: PathBuf, args: RunArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        tracing::error!(
            "--source files serves bundles without authenticating callers: --listen must be a loopback address"
        );
        return ExitCode::from(2);
    }
    let index = Index::default();
    let mut folder = files::Folder::default();
    match folder.refresh(&dir) {
        Some(Ok(inventory)) => index.replace_all(inventory),
        Some(Err(e)) => tracing::error!("{e}"),
        None => {}
    }
    tokio::spawn(files::watch(dir, folder, index.clone()));
    let metrics = Metrics::new();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            match mcp_warden_operator::tls::server_config(cert, key).map_err(|e| e.to_string()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let webhook = match start_webhook(&args, tls.as_ref(), &metrics).await {
        Ok(bound) => bound,
        Err(code) => return code,
    };
    if let Some(addr) = args.admin_listen {
        let Some(admin_listener) = bind(addr, "admin").await else {
            return ExitCode::from(1);
        };
        tokio::spawn(admin::serve(
            admin_listener,
            metrics.clone(),
            Arc::new(|| true),
            terminated(),
        ));
        tokio::spawn(admin::refresh(
            index.clone(),
            InvalidObjects::default(),
            metrics.clone(),
            Duration::from_secs(5),
        ));
    }
    let Some(listener) = bind(args.listen, "push API").await else {
        return ExitCode::from(1);
    };
    let bound = write_ready_file(args.ready_file.as_ref(), &listener, webhook);
    tracing::info!(listen = %bound, tls = tls.is_some(), "push API listening");
    let settings = push::PushSettings {
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        labels_from_query: true,
    };
    // Usage reports are taken (sidecars need not special-case files mode) but no status is written.
    let usage = UsageEndpoint {
        store: UsageStore::default(),
        authorizer: Arc::new(push::AllowAll),
        clock: Arc::new(SystemClock),
        metrics: Some(metrics),
        leading: None,
    };
    let extensions = push::Extensions {
        tls,
        usage: Some(Arc::new(usage)),
        upstream_auth: upstream_auth(&args, true),
    };
    push::serve_with(
        listener,
        index,
        settings,
        Arc::new(push::AllowAll),
        extensions,
        terminated(),
    )
    .await;
    ExitCode::SUCCESS
}

async fn run_cluster(args: RunArgs) -> ExitCode {
    let tls = match (&args.tls_cert, &args.tls_key, args.plaintext) {
        (Some(cert), Some(key), _) => {
            match mcp_warden_operator::tls::server_config(cert, key).map_err(|e| e.to_string()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
        (_, _, true) => {
            tracing::warn!("--plaintext: sidecars' tokens travel unencrypted (development only)");
            None
        }
        _ => {
            tracing::error!("give --tls-cert and --tls-key (or --plaintext for development)");
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("no Kubernetes configuration (in-cluster or kubeconfig): {e}");
            return ExitCode::from(1);
        }
    };
    let admin_addr = args
        .admin_listen
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9090)));
    let Some(admin_listener) = bind(admin_addr, "admin").await else {
        return ExitCode::from(1);
    };
    let metrics = Metrics::new();
    let webhook = match start_webhook(&args, tls.as_ref(), &metrics).await {
        Ok(bound) => bound,
        Err(code) => return code,
    };
    let Some(listener) = bind(args.listen, "push API").await else {
        return ExitCode::from(1);
    };
    let bound = write_ready_file(args.ready_file.as_ref(), &listener, webhook);
    tracing::info!(listen = %bound, tls = tls.is_some(), "push API bound; serving once every watch has listed");
    let lease = args.leader_election.then(|| {
        let identity = args
            .identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("mcp-warden-operator-{}", std::process::id()));
        let mut lease = LeaseSettings::new(&args.lease_name, &args.lease_namespace, identity);
        lease.lease_duration = Duration::from_secs(args.lease_duration_seconds.max(2));
        lease.retry_period = (lease.lease_duration / 5).max(Duration::from_secs(1));
        lease
    });
    let cluster = run::Cluster {
        watch: WatchSettings {
            namespaces: args.namespaces.clone(),
            pod_selector: args.pod_selector.clone(),
        },
        lease,
        audience: args.audience.clone(),
        tls,
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        status: StatusSettings {
            usage_refresh: Duration::from_secs(args.usage_refresh_seconds.max(1)),
            ..StatusSettings::default()
        },
        clock: Arc::new(SystemClock),
        metrics,
        network_policies: args.network_policies.then(|| NetworkPolicySettings {
            admin_from: args.network_policy_admin_from.clone(),
        }),
        upstream_auth: upstream_auth(&args, false),
    };
    run::run(
        client,
        cluster,
        listener,
        Some(admin_listener),
        terminated(),
    )
    .await;
    ExitCode::SUCCESS
}
