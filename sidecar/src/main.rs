//! `mcp-warden-sidecar`: the governing proxy in front of one MCP server.
//!
//! `run` (standalone: `--config`) serves MCP clients and enforces the CRs; `check` validates a
//! configuration exactly as `run` would compile it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use mcp_warden_sidecar::{
    admin, audit,
    auth::Authenticator,
    bypass,
    metrics::Metrics,
    proxy, quota, runtime,
    settings::Settings,
    source::{file, link, operator, reload},
    state::Live,
    tls,
    upstream_auth::{self, UpstreamAuth},
    usage,
};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

#[derive(Debug, Parser)]
#[command(
    name = "mcp-warden-sidecar",
    version,
    about = "Governs an MCP server: identity, per-tool authorization, quotas, audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MCP clients in front of the upstream server (the default).
    Run(RunArgs),
    /// Validate a standalone configuration (CR YAML file or folder) and exit: 0 valid, 1 invalid.
    Check {
        /// The McpTool/McpClient/McpPolicy YAML file, or a folder of them.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        select: SelectArgs,
    },
}

#[derive(Debug, Clone, Args)]
struct SelectArgs {
    /// Select the McpTool by pod: `<namespace>/<name>` (default: the only McpTool of the config).
    #[arg(long)]
    workload: Option<String>,
    /// The workload's labels, `k=v,k2=v2`, matched against each McpTool's `server.selector`.
    #[arg(long, requires = "workload")]
    labels: Option<String>,
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Standalone mode: the CR YAML file (or folder) to enforce; reloaded when it changes.
    #[arg(long, conflicts_with = "operator")]
    config: Option<PathBuf>,
    /// Operator mode: the operator's push API base URL; bundles stream from there.
    #[arg(long)]
    operator: Option<String>,
    /// Operator mode: this pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// Operator mode: this pod's name.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// Operator mode: this pod's labels `k=v,…` (for an operator without Pod watches).
    #[arg(long, requires = "operator")]
    pod_labels: Option<String>,
    /// Operator mode: file with the bearer token for the operator (projected ServiceAccount token).
    #[arg(long, requires = "operator")]
    token_file: Option<PathBuf>,
    /// Operator mode: where the last good bundle is kept across restarts (an emptyDir).
    #[arg(long, requires = "operator")]
    state_dir: Option<PathBuf>,
    /// Operator mode: the CA certificate(s) (PEM file) the operator's serving certificate must
    /// chain to; default: the system's roots.
    #[arg(long, requires = "operator", conflicts_with = "operator_ca_pem")]
    operator_ca: Option<PathBuf>,
    /// Operator mode: the same CA as PEM text (set by the injector from the operator's CA).
    #[arg(long, env = "MCP_WARDEN_OPERATOR_CA", hide_env_values = true)]
    operator_ca_pem: Option<String>,
    /// Operator mode, for tests and debugging: open connections to this address instead of the
    /// --operator URL's host and port; the operator's certificate is still verified for the
    /// URL's host name (like curl's --connect-to).
    #[arg(long, requires = "operator")]
    operator_connect_to: Option<SocketAddr>,
    /// Operator mode: seconds between usage reports to the operator (0: no reports).
    #[arg(long, default_value_t = 10)]
    usage_interval_seconds: u64,
    /// Seconds between checks that the upstream cannot be reached around the sidecar, on the
    /// pod's own addresses (0: no checks; see docs/bypass.md).
    #[arg(long, env = "MCP_WARDEN_BYPASS_CHECK_SECONDS", default_value_t = 30)]
    bypass_check_seconds: u64,
    /// Operator mode: reconnect when the operator sends nothing (not even a heartbeat) this long.
    #[arg(long, default_value_t = 30)]
    operator_idle_timeout_seconds: u64,
    #[command(flatten)]
    select: SelectArgs,
    /// Where MCP clients connect.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// The admin endpoints (/ready, /live, /metrics).
    #[arg(long, default_value = "0.0.0.0:9901")]
    admin_listen: SocketAddr,
    /// The upstream MCP endpoint (overrides the McpTool's server.upstream).
    #[arg(long)]
    upstream: Option<String>,
    /// The canonical resource URI clients use, when it differs from the McpTool's server.resource.
    #[arg(long)]
    public_url: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// The memory all request bodies being read and decided may take, each counted as 4 × its
    /// size (bytes and parsed JSON): a bound under floods; only authenticated callers' bodies
    /// are read.
    #[arg(long, env = "MCP_WARDEN_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes_in_flight: usize,
    /// The memory all upstream answers being read may take (a JSON answer whole, an SSE event
    /// at a time), each counted as 4 × its size: one answer may be at most a quarter of it
    /// (8 MiB by default); a larger one is withheld. With the body budget, it bounds what
    /// callers and the upstream can make the sidecar hold.
    #[arg(long, env = "MCP_WARDEN_MAX_ANSWER_BYTES_IN_FLIGHT", default_value_t = 32 * 1024 * 1024)]
    max_answer_bytes_in_flight: usize,
    /// The most requests being decided at once (503 with Retry-After above it; open streams
    /// do not count).
    #[arg(
        long,
        env = "MCP_WARDEN_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    max_concurrent_requests: usize,
    /// Longest wait for the upstream's response headers, in seconds (streams are not limited).
    #[arg(long, default_value_t = 300)]
    upstream_timeout_seconds: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// TESTS ONLY: requests without a token act as this McpClient (`namespace/name` or `name`),
    /// holding every scope. Refused unless --listen is a loopback address.
    #[arg(long)]
    anonymous_client: Option<String>,
    /// Standalone: the private key (PKCS#8 PEM, P-256 or Ed25519) that signs the upstream
    /// identity JWT (`McpTool.spec.upstreamAuth.identity`); re-read when it changes, the old key
    /// staying in the admin port's `/.well-known/jwks.json` for two minutes.
    #[arg(long, conflicts_with = "operator")]
    upstream_identity_key: Option<PathBuf>,
    /// Standalone: how long a new --upstream-identity-key is published in the JWKS before it
    /// signs (the upstream's JWKS cache must have it by then).
    #[arg(long, default_value_t = 60, requires = "upstream_identity_key")]
    upstream_identity_key_publish_seconds: u64,
    /// Standalone: the folder of upstream credentials, `<dir>/<secret name>/<key>` (a Secret
    /// volume's layout), read every 200 ms (`upstreamAuth.credentials`, the token exchange's
    /// client secret).
    #[arg(long, conflicts_with = "operator")]
    upstream_secrets_dir: Option<PathBuf>,
    /// Write `{"listen": "...", "admin": "..."}` here once both ports are bound.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Share daily budgets and per-client rates with the other replicas through this Redis
    /// (`redis://[user:password@]host:port[/db]`).
    #[arg(long)]
    redis_url: Option<String>,
    /// While Redis is unreachable: `fail-closed` (tools/call gets 503) or `local-only` (each
    /// replica enforces its share of the budgets).
    #[arg(long, default_value = "fail-closed", requires = "redis_url")]
    redis_fail_mode: String,
    /// Replicas of this server sharing the budgets (divides them in local-only mode).
    #[arg(long, default_value_t = 1, requires = "redis_url")]
    redis_replicas: u32,
    /// Do not count 2026-07-28 multi-round-trip retries of a tools/call against quotas (only
    /// retries carrying a requestState the upstream issued to the same caller, once).
    #[arg(long)]
    no_count_mrtr_retries: bool,
    /// Audit every tools/call and refusal: the audit configuration (YAML, see docs/audit.md).
    #[arg(long, conflicts_with = "audit_dir")]
    audit_config: Option<PathBuf>,
    /// Audit with defaults: the spool in `<dir>/spool`, JSON lines in `<dir>/audit.jsonl`.
    #[arg(long)]
    audit_dir: Option<PathBuf>,
    /// On exit, how long the audit sinks get to ship what is spooled, in seconds.
    #[arg(long, default_value_t = 10)]
    audit_drain_seconds: u64,
    /// Runtime worker threads (default: one per CPU the pod may use, after its CPU limit).
    #[arg(long, env = "MCP_WARDEN_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Most threads for blocking work (file audit sinks, spool reads, reloads, DNS lookups).
    #[arg(long, env = "MCP_WARDEN_MAX_BLOCKING_THREADS", default_value_t = runtime::DEFAULT_MAX_BLOCKING_THREADS)]
    max_blocking_threads: usize,
}

impl RunArgs {
    fn runtime(&self) -> runtime::RuntimeConfig {
        runtime::RuntimeConfig {
            worker_threads: self.worker_threads,
            max_blocking_threads: self.max_blocking_threads,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

fn selection(args: &SelectArgs) -> Result<file::Selection, String> {
    match args.workload.as_deref() {
        None => Ok(file::Selection::OnlyTool),
        Some(w) => file::workload(w, args.labels.as_deref()).map(file::Selection::Workload),
    }
}

fn main() -> ExitCode {
    mcp_warden_sidecar::memory::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { config, select }) => check(&config, &select),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

#[allow(clippy::print_stdout)]
fn check(path: &std::path::Path, select: &SelectArgs) -> ExitCode {
    let selection = match selection(select) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match file::load_config(path, &selection) {
        Ok((bundle, rules)) => {
            println!(
                "ok: {} governs {} ({} tool, {} resource and {} prompt entries, {} clients, {} policies), version {}",
                rules.tool,
                rules.resource,
                rules.tools.list.len(),
                rules.resources.list.len(),
                rules.prompts.list.len(),
                rules.clients.len(),
                rules.policies.len(),
                bundle.version
            );
            for p in &rules.problems {
                println!(
                    "warning: {}: {} ({}): {}",
                    p.object, p.condition, p.reason, p.message
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match runtime::build(args.runtime()) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(args: RunArgs) -> Result<(), String> {
    let selection = selection(&args.select)?;
    if let Some(name) = &args.anonymous_client {
        if !args.listen.ip().is_loopback() {
            return Err(format!(
                "--anonymous-client is for tests only and needs a loopback --listen address, not {}",
                args.listen
            ));
        }
        tracing::warn!(
            client = %name,
            "TEST MODE: --anonymous-client is set: requests WITHOUT a token act as McpClient {name} with every scope. Never use this in production."
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(|e| e.to_string())?),
        _ => None,
    };
    let live = Arc::new(Live::default());
    let metrics = Metrics::new();
    let upstream_auth = Arc::new(UpstreamAuth {
        keys: Arc::new(upstream_auth::Keys::new(Duration::from_secs(
            args.upstream_identity_key_publish_seconds,
        ))),
        ..UpstreamAuth::default()
    });
    let mut credential_watchers = Vec::new();
    if let Some(path) = &args.upstream_identity_key {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read --upstream-identity-key {}: {e}",
                path.display()
            )
        })?;
        upstream_auth
            .keys
            .rotate_to(&pem)
            .map_err(|e| format!("--upstream-identity-key {}: {e}", path.display()))?;
        let keys = upstream_auth.keys.clone();
        credential_watchers.push(tokio::spawn(upstream_auth::keys::watch_file(
            path.clone(),
            keys,
        )));
    }
    if let Some(dir) = &args.upstream_secrets_dir {
        let values = upstream_auth::secret::read_dir(dir)
            .map_err(|e| format!("cannot read --upstream-secrets-dir {}: {e}", dir.display()))?;
        upstream_auth.secrets.replace(values);
        let secrets = upstream_auth.secrets.clone();
        credential_watchers.push(tokio::spawn(upstream_auth::secret::watch_dir(
            dir.clone(),
            secrets,
        )));
    }
    let mut reporter = None;
    let bypass = (args.bypass_check_seconds > 0).then(Arc::<bypass::Bypass>::default);
    let watcher = match (&args.config, &args.operator) {
        (Some(path), None) => {
            reload::load_and_install(path, &selection, &live, &metrics);
            tokio::spawn(reload::watch(
                path.clone(),
                selection,
                live.clone(),
                metrics.clone(),
            ))
        }
        (None, Some(operator)) => {
            let (Some(namespace), Some(pod)) = (args.pod_namespace.clone(), args.pod_name.clone())
            else {
                return Err("operator mode needs --pod-namespace and --pod-name (or POD_NAMESPACE and POD_NAME)".into());
            };
            let trust =
                match (&args.operator_ca, &args.operator_ca_pem) {
                    (Some(path), _) => link::Trust::Pem(std::fs::read(path).map_err(|e| {
                        format!("cannot read --operator-ca {}: {e}", path.display())
                    })?),
                    (None, Some(pem)) => link::Trust::Pem(pem.clone().into_bytes()),
                    (None, None) => link::Trust::System,
                };
            let mut link = link::Link::new(operator, &trust, args.token_file.clone())
                .map_err(|e| e.to_string())?;
            if let Some(addr) = args.operator_connect_to {
                tracing::info!(%addr, operator = %operator, "--operator-connect-to: connecting to {addr}, verifying the certificate for the URL's host");
                link = link.connecting_to(addr).map_err(|e| e.to_string())?;
            }
            if args.usage_interval_seconds > 0 {
                reporter = Some(usage::Reporter {
                    link: link.unpooled().map_err(|e| e.to_string())?,
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    interval: Duration::from_secs(args.usage_interval_seconds),
                    bypass: bypass.clone(),
                });
            }
            let source = operator::StreamSource {
                link,
                namespace,
                pod,
                labels: args.pod_labels.clone(),
                state_dir: args.state_dir.clone(),
                idle_timeout: Duration::from_secs(args.operator_idle_timeout_seconds.max(1)),
            };
            operator::load_persisted(&source, &live, &metrics);
            tokio::spawn(operator::run(
                source,
                live.clone(),
                metrics.clone(),
                upstream_auth.clone(),
            ))
        }
        _ => return Err("give --config <file|folder> (standalone) or --operator <url>".into()),
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.admin_listen))?;
    let (listen, admin_addr) = (
        listener.local_addr().map_err(|e| e.to_string())?,
        admin_listener.local_addr().map_err(|e| e.to_string())?,
    );
    let admin = tokio::spawn(admin::serve(
        admin_listener,
        live.clone(),
        metrics.clone(),
        upstream_auth.keys.clone(),
    ));
    tracing::info!(%listen, admin = %admin_addr, tls = tls.is_some(), "listening");
    if let Some(file) = &args.ready_file {
        let body =
            serde_json::json!({"listen": listen.to_string(), "admin": admin_addr.to_string()});
        std::fs::write(file, body.to_string())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }

    let mut quota_config = quota::QuotaConfig {
        count_mrtr_retries: !args.no_count_mrtr_retries,
        ..quota::QuotaConfig::default()
    };
    if let Some(url) = &args.redis_url {
        let mut redis = quota::RedisConfig::new(url.parse()?);
        redis.fail_mode = args.redis_fail_mode.parse()?;
        redis.replicas = args.redis_replicas.max(1);
        tracing::info!(fail_mode = %args.redis_fail_mode, replicas = redis.replicas, "quotas shared through Redis");
        quota_config.redis = Some(redis);
    }
    let quotas = quota::Quotas::new(quota_config, metrics.registry())
        .map_err(|e| format!("quota metrics: {e}"))?;
    let audit_config = match (&args.audit_config, &args.audit_dir) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(
                audit::AuditConfig::from_yaml(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            )
        }
        (None, Some(dir)) => Some(audit::AuditConfig::in_dir(dir)),
        (None, None) => None,
    };
    let auditor = match &audit_config {
        Some(cfg) => {
            let auditor = audit::Auditor::start(cfg, metrics.registry())
                .map_err(|e| format!("audit: {e}"))?;
            tracing::info!(spool = %cfg.spool.dir.display(), sinks = cfg.sinks.len(), "audit trail on");
            Some(auditor)
        }
        None => None,
    };
    let shared = Arc::new(proxy::Shared {
        audit: auditor.clone(),
        quotas,
        live,
        auth: Authenticator::new(),
        settings: Settings {
            listen,
            upstream_override: args.upstream,
            public_url: args.public_url,
            anonymous_client: args.anonymous_client,
            max_body_bytes: args.max_body_bytes,
            max_body_bytes_in_flight: args.max_body_bytes_in_flight,
            max_answer_bytes_in_flight: args.max_answer_bytes_in_flight,
            max_concurrent_requests: args.max_concurrent_requests.max(1),
            upstream_timeout: Duration::from_secs(args.upstream_timeout_seconds),
            ..Settings::default()
        },
        metrics,
        usage: reporter.is_some().then(Arc::default),
        upstream_auth,
    });
    let reports = reporter.map(|r| tokio::spawn(usage::run(r, shared.clone())));
    let checks = bypass.map(|b| {
        let every = Duration::from_secs(args.bypass_check_seconds);
        tokio::spawn(bypass::run(b, shared.clone(), every))
    });
    let result = proxy::serve(listener, tls, shared, shutdown_signal()).await;
    watcher.abort();
    for w in credential_watchers {
        w.abort();
    }
    if let Some(reports) = reports {
        reports.abort();
    }
    if let Some(checks) = checks {
        checks.abort();
    }
    admin.abort();
    if let Some(auditor) = auditor {
        let drained = auditor
            .shutdown(Duration::from_secs(args.audit_drain_seconds))
            .await;
        tracing::info!(drained, "audit trail stopped");
    }
    tracing::info!("stopped");
    result.map_err(|e| format!("serving failed: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(
            ["mcp-warden-sidecar", "run", "--config", "x.yaml"]
                .iter()
                .chain(args),
        )
        .expect("valid arguments");
        match cli.command {
            Some(Command::Run(args)) => args,
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn runtime_threads_default_to_the_cpus_and_a_bounded_blocking_pool() {
        assert_eq!(
            run_args(&[]).runtime(),
            runtime::RuntimeConfig {
                worker_threads: None,
                max_blocking_threads: runtime::DEFAULT_MAX_BLOCKING_THREADS,
            }
        );
    }

    #[test]
    fn runtime_threads_are_settable() {
        let config = run_args(&["--worker-threads", "2", "--max-blocking-threads", "4"]).runtime();
        assert_eq!(
            config,
            runtime::RuntimeConfig {
                worker_threads: Some(2),
                max_blocking_threads: 4,
            }
        );
    }
}
