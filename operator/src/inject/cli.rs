//! The injection flags (shared by `run` and `inject`) and `mcp-warden-operator inject -f`.
//!
//! ```text
//! inject -f pod.yaml|-  ──read──► manifest::inject_manifests ──► stdout (YAML), notes ──► stderr
//! ```

use super::{ConfigError, InjectConfig, manifest};
use std::{io::Read, path::PathBuf, process::ExitCode};

/// The sidecar image when `--sidecar-image` is not given: this operator's version.
pub const DEFAULT_SIDECAR_IMAGE: &str = concat!(
    "ghcr.io/mcp-warden/mcp-warden-sidecar:",
    env!("CARGO_PKG_VERSION")
);

/// What the injector puts in pods (flags of `run` and `inject`).
#[derive(Debug, Clone, clap::Args)]
pub struct SidecarArgs {
    /// The sidecar image.
    #[arg(long, default_value = DEFAULT_SIDECAR_IMAGE)]
    pub sidecar_image: String,
    /// The sidecar's imagePullPolicy (Always, IfNotPresent, Never).
    #[arg(long, default_value = "IfNotPresent")]
    pub sidecar_image_pull_policy: String,
    /// The push API URL the sidecars connect to.
    #[arg(
        long,
        default_value = "https://mcp-warden-operator.mcp-warden.svc:8443"
    )]
    pub operator_url: String,
    /// PEM file of the CA that signed the push API's certificate; its content is put in the
    /// sidecars' `MCP_WARDEN_OPERATOR_CA` env.
    #[arg(long)]
    pub operator_ca_file: Option<PathBuf>,
    /// The sidecar's CPU request.
    #[arg(long, default_value = "50m")]
    pub sidecar_cpu_request: String,
    /// The sidecar's memory request.
    #[arg(long, default_value = "32Mi")]
    pub sidecar_memory_request: String,
    /// The sidecar's memory limit.
    #[arg(long, default_value = "128Mi")]
    pub sidecar_memory_limit: String,
}

impl SidecarArgs {
    /// The checked configuration; reads `--operator-ca-file`.
    ///
    /// # Errors
    ///
    /// A message naming the flag to fix.
    pub fn config(&self, audience: &str) -> Result<InjectConfig, String> {
        let operator_ca = match &self.operator_ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    format!("--operator-ca-file: cannot read {}: {e}", path.display())
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(ConfigError::OperatorCa(path.display().to_string()).to_string());
                }
                Some(pem)
            }
        };
        let cfg = InjectConfig {
            image: self.sidecar_image.clone(),
            image_pull_policy: self.sidecar_image_pull_policy.clone(),
            operator_url: self.operator_url.clone(),
            operator_ca,
            audience: audience.to_owned(),
            cpu_request: self.sidecar_cpu_request.clone(),
            memory_request: self.sidecar_memory_request.clone(),
            memory_limit: self.sidecar_memory_limit.clone(),
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// `mcp-warden-operator inject`: prints manifests with the sidecar injected.
#[derive(Debug, Clone, clap::Args)]
pub struct InjectArgs {
    /// The manifest file (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, List;
    /// multi-document YAML); `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub filename: PathBuf,
    /// The audience of the sidecar's projected ServiceAccount token (the operator's `--audience`).
    #[arg(long, default_value = "mcp-warden-operator")]
    pub audience: String,
    /// The sidecar's settings.
    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

fn read_input(path: &PathBuf) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// Runs `inject`: 0 printed, 1 a manifest cannot be injected, 2 bad flags or input.
pub fn run(args: &InjectArgs) -> ExitCode {
    let cfg = match args.sidecar.config(&args.audience) {
        Ok(cfg) => cfg,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let text = match read_input(&args.filename) {
        Ok(text) => text,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match manifest::inject_manifests(&text, &cfg) {
        Ok(injected) => {
            for note in &injected.notes {
                eprintln!("{note}");
            }
            #[allow(clippy::print_stdout)]
            {
                print!("{}", injected.yaml);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
