//! Audit configuration (YAML/JSON, camelCase). Durations are Go-style strings (`10ms`, `2s`, `1m`).
//!
//! ```yaml
//! spool:
//!   dir: /var/spool/mcp-warden/audit
//!   maxBytes: 1073741824         # cap of the segment files
//!   segmentBytes: 16777216
//!   whenFull: block              # or dropOldest
//!   fsyncMaxDelay: 10ms          # a record waits at most this long for its fsync batch …
//!   fsyncMaxRecords: 1000        # … and a batch holds at most this many records
//!   checkpointInterval: 1m       # omit or null: no checkpoint records
//!   ack: durable                 # or written (after write(2), before fsync)
//! redaction:
//!   keyFile: /etc/mcp-warden/audit/hmac.key
//!   alwaysRedact: [password, token]
//!   maxRecordBytes: 65536
//! sinks:
//!   - name: siem
//!     syslog: { address: "siem.example:6514", tls: { caFile: /etc/ssl/siem-ca.pem } }
//!   - name: archive
//!     file: { dir: /var/log/mcp-warden, maxFileBytes: 104857600, maxFiles: 10 }
//!   - name: hec
//!     http: { url: "https://splunk:8088/services/collector/event", format: splunkHec, tokenFile: /etc/hec }
//!   - name: console
//!     stdout: {}
//! ```

use serde::{Deserialize, Deserializer};
use std::{path::PathBuf, time::Duration};

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    mcp_warden_policy::duration::parse(&s).map_err(serde::de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| mcp_warden_policy::duration::parse(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// The whole audit pipeline.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// The local spool.
    pub spool: SpoolConfig,
    /// How records are redacted and capped.
    #[serde(default)]
    pub redaction: RedactionConfig,
    /// Where records are shipped.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Retry backoff of every sink.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl AuditConfig {
    /// Parses YAML (or JSON).
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }

    /// The `--audit-dir` layout: the spool in `<dir>/spool` and one rotating file sink `file`
    /// writing JSON lines to `<dir>/audit.jsonl`; every other setting at its default.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir: PathBuf = dir.into();
        Self {
            spool: SpoolConfig::new(dir.join("spool")),
            redaction: RedactionConfig::default(),
            sinks: vec![SinkConfig {
                name: "file".into(),
                batch_records: default_batch(),
                file: Some(FileSinkConfig {
                    dir,
                    prefix: default_prefix(),
                    max_file_bytes: default_file_bytes(),
                    max_files: 0,
                }),
                stdout: None,
                syslog: None,
                http: None,
            }],
            retry: RetryConfig::default(),
        }
    }
}

/// What to do when the spool reaches `maxBytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FullPolicy {
    /// Refuse new calls (`SpoolError::Full` → the proxy answers 503) until sinks catch up.
    #[default]
    Block,
    /// Delete the oldest segment, shipped or not, and count the records lost.
    DropOldest,
}

/// When `append` resolves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AckLevel {
    /// After fdatasync: survives power loss.
    #[default]
    Durable,
    /// After write(2): survives a crash of the process, not of the machine.
    Written,
}

/// The local spool.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpoolConfig {
    /// The spool directory (created if missing; one process at a time).
    pub dir: PathBuf,
    /// Cap of the segment files, in bytes.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Size at which the active segment is closed and a new one started (clamped to
    /// `maxBytes / 4`).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// What to do when full.
    #[serde(default)]
    pub when_full: FullPolicy,
    /// The longest a record waits for its fsync batch to close.
    #[serde(default = "default_fsync_delay", deserialize_with = "de_duration")]
    pub fsync_max_delay: Duration,
    /// The most records per fsync batch.
    #[serde(default = "default_fsync_records")]
    pub fsync_max_records: usize,
    /// How often a checkpoint record is written (when records were written since the last one).
    /// `None`: never (drop notices are still written).
    #[serde(default = "default_checkpoint", deserialize_with = "de_opt_duration")]
    pub checkpoint_interval: Option<Duration>,
    /// When `append` resolves.
    #[serde(default)]
    pub ack: AckLevel,
    /// Appends queued for the writer at most; further `append`s wait.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// The instance id written in every record, used when the spool is created (an existing
    /// spool keeps its id). Default: random. `[A-Za-z0-9._-]{1,64}`.
    #[serde(default)]
    pub instance: Option<String>,
}

impl SpoolConfig {
    /// Defaults for a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            when_full: FullPolicy::Block,
            fsync_max_delay: default_fsync_delay(),
            fsync_max_records: default_fsync_records(),
            checkpoint_interval: default_checkpoint(),
            ack: AckLevel::Durable,
            max_in_flight: default_in_flight(),
            instance: None,
        }
    }
}

fn default_max_bytes() -> u64 {
    1 << 30
}
fn default_segment_bytes() -> u64 {
    16 << 20
}
fn default_fsync_delay() -> Duration {
    Duration::from_millis(10)
}
fn default_fsync_records() -> usize {
    1000
}
fn default_checkpoint() -> Option<Duration> {
    Some(Duration::from_secs(60))
}
fn default_in_flight() -> usize {
    16_384
}

/// Redaction and size.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedactionConfig {
    /// The HMAC secret (at least 16 bytes). Without it a random key is used and hashes do not
    /// correlate across restarts.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Key names redacted in every tool's arguments and captured results.
    #[serde(default = "default_always")]
    pub always_redact: Vec<String>,
    /// Cap of one record line in bytes (at least 16 KiB).
    #[serde(default = "default_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for RedactionConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            always_redact: default_always(),
            max_record_bytes: default_record_bytes(),
        }
    }
}

fn default_always() -> Vec<String> {
    [
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
    ]
    .map(String::from)
    .to_vec()
}
fn default_record_bytes() -> usize {
    64 * 1024
}

/// Retry backoff: `initial`, doubled per failure up to `max`, with ±20 % jitter.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay.
    #[serde(default = "default_retry_initial", deserialize_with = "de_duration")]
    pub initial: Duration,
    /// Longest delay.
    #[serde(default = "default_retry_max", deserialize_with = "de_duration")]
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: default_retry_initial(),
            max: default_retry_max(),
        }
    }
}

fn default_retry_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}

/// One sink: a name (its cursor file and metrics label) and exactly one kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkConfig {
    /// `[A-Za-z0-9_-]{1,64}`, unique.
    pub name: String,
    /// Records per send, at most.
    #[serde(default = "default_batch")]
    pub batch_records: usize,
    /// Rotating JSONL files.
    #[serde(default)]
    pub file: Option<FileSinkConfig>,
    /// JSON lines on standard output.
    #[serde(default)]
    pub stdout: Option<StdoutSinkConfig>,
    /// RFC 5424 over TCP (optionally TLS) with octet-counting framing.
    #[serde(default)]
    pub syslog: Option<SyslogSinkConfig>,
    /// HTTP POST of batches.
    #[serde(default)]
    pub http: Option<HttpSinkConfig>,
}

fn default_batch() -> usize {
    500
}

/// Rotating JSONL files: `<dir>/<prefix>.jsonl`, rotated to `<prefix>-<first sequence>.jsonl`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The directory.
    pub dir: PathBuf,
    /// File name prefix.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Rotate when the current file reaches this size.
    #[serde(default = "default_file_bytes")]
    pub max_file_bytes: u64,
    /// Rotated files kept (oldest deleted); 0 keeps all.
    #[serde(default)]
    pub max_files: usize,
}

fn default_prefix() -> String {
    "audit".into()
}
fn default_file_bytes() -> u64 {
    100 << 20
}

/// Standard output (one JSON record per line).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StdoutSinkConfig {}

/// RFC 5424 syslog over TCP.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyslogSinkConfig {
    /// `host:port`.
    pub address: String,
    /// TLS (RFC 5425) when set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Syslog facility (13 = log audit).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// APP-NAME.
    #[serde(default = "default_app")]
    pub app_name: String,
    /// HOSTNAME (default: `$HOSTNAME`, else `-`).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Plain syslog has no acknowledgements: a batch counts as delivered only after the
    /// connection stayed healthy this long after it was written; on any connection error every
    /// unconfirmed record is sent again (duplicates are deduplicated by `metadata.uid`).
    #[serde(default = "default_confirm", deserialize_with = "de_duration")]
    pub confirm_after: Duration,
    /// Connect and write timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn default_facility() -> u8 {
    13
}
fn default_app() -> String {
    "mcp-warden".into()
}
fn default_confirm() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// TLS client settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM CA bundle; default: the Mozilla roots (webpki-roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name to verify (default: the host of `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Body format of the HTTP sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HttpFormat {
    /// A JSON array of records (`application/json`).
    #[default]
    JsonArray,
    /// Splunk HEC: concatenated `{"time","host","source","sourcetype","event"}` objects,
    /// `Authorization: Splunk <token>`.
    SplunkHec,
}

/// HTTP POST of batches.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Body format.
    #[serde(default)]
    pub format: HttpFormat,
    /// A file holding the token (`Authorization: Bearer <token>`, or `Splunk <token>` for HEC).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// CA bundle for `https://` (default: Mozilla roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// HEC `sourcetype`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
}

fn default_sourcetype() -> String {
    "ocsf:api_activity".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("config.rs")
            .split("//! ```yaml\n")
            .nth(1)
            .unwrap()
            .split("//! ```")
            .next()
            .unwrap()
            .lines()
            .map(|l| {
                l.strip_prefix("//! ")
                    .unwrap_or(l.trim_start_matches("//!"))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = AuditConfig::from_yaml(&text).unwrap();
        assert_eq!(c.sinks.len(), 4);
        assert_eq!(c.spool.fsync_max_delay, Duration::from_millis(10));
        assert_eq!(c.spool.checkpoint_interval, Some(Duration::from_secs(60)));
        assert!(c.sinks[0].syslog.as_ref().unwrap().tls.is_some());
        assert_eq!(
            c.sinks[2].http.as_ref().unwrap().format,
            HttpFormat::SplunkHec
        );
    }
}
