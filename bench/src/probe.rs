//! Timed probes against running processes: revocation propagation (CR file write → first
//! denial at the sidecar) and operator push latency (CR file write → new bundle on the watch).
//!
//! ```text
//! revocation: loop { write suspended; t0; call echo until 403 → sample; write active; call until 200 }
//! push:       GET /v1/watch (NDJSON) ── first bundle ──► loop { write change; t0; read lines until a
//!             bundle with a new version → sample }
//! ```
//!
//! Files are replaced atomically (write a sibling, rename), as a ConfigMap update does.

use serde::Serialize;
use serde_json::Value;
use std::{
    io::{BufRead, BufReader},
    path::Path,
    time::{Duration, Instant},
};

/// Samples in milliseconds, with their summary.
#[derive(Debug, Serialize)]
pub struct Samples {
    /// What was measured.
    pub what: String,
    /// Every sample, in ms, in the order taken.
    pub samples_ms: Vec<f64>,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile (nearest rank), ms.
    pub p95_ms: f64,
    /// Largest, ms (with 20 samples this is the p99 estimate).
    pub max_ms: f64,
}

impl Samples {
    /// Summarizes `samples`.
    pub fn new(what: &str, samples: &[Duration]) -> Self {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        Self {
            what: what.to_owned(),
            samples_ms: ms,
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// Replaces `path` with `text` atomically.
pub fn replace_file(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// One `tools/call echo` with `token`; the HTTP status.
fn call_status(agent: &ureq::Agent, url: &str, token: &str) -> Result<u16, String> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"probe"}}}"#;
    let reply = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .send(body)
        .map_err(|e| format!("POST {url}: {e}"))?;
    Ok(reply.status().as_u16())
}

/// Calls until the status is `want` (200 or 403), for at most 5 s; returns when it was seen.
fn until_status(agent: &ureq::Agent, url: &str, token: &str, want: u16) -> Result<Instant, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = call_status(agent, url, token)?;
        if status == want {
            return Ok(Instant::now());
        }
        if status != 200 && status != 403 {
            return Err(format!("unexpected HTTP {status} from {url}"));
        }
        if Instant::now() > deadline {
            return Err(format!("no HTTP {want} within 5 s (last {status})"));
        }
    }
}

/// Revocation propagation: `samples` times, write `suspended` to `file` and time the first 403
/// for `token`, then write `active` back and wait for the 200.
pub fn revocation(
    what: &str,
    url: &str,
    token: &str,
    file: &Path,
    active: &str,
    suspended: &str,
    samples: usize,
) -> Result<Samples, String> {
    let agent = agent();
    until_status(&agent, url, token, 200)?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        replace_file(file, suspended)?;
        let written = Instant::now();
        out.push(until_status(&agent, url, token, 403)? - written);
        replace_file(file, active)?;
        until_status(&agent, url, token, 200)?;
    }
    Ok(Samples::new(what, &out))
}

/// Reads NDJSON lines until a bundle whose version differs from `seen`; returns its version.
fn next_bundle(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    seen: &str,
) -> Result<String, String> {
    for line in lines {
        let line = line.map_err(|e| format!("watch stream: {e}"))?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("watch line: {e}"))?;
        if v["type"] == "bundle" {
            let version = v["bundle"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if version != seen {
                return Ok(version);
            }
        }
    }
    Err("the watch stream ended".into())
}

/// Operator push latency through the real push API: watch as pod `namespace/pod` with
/// `labels`, then `samples` times replace `file` with the next of `versions` (cycled) and time the
/// new bundle's arrival.
pub fn push_latency(
    operator: &str,
    namespace: &str,
    pod: &str,
    labels: &str,
    file: &Path,
    versions: &[String],
    samples: usize,
) -> Result<Samples, String> {
    let url = format!("{operator}/v1/watch?namespace={namespace}&pod={pod}&labels={labels}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Bounded, but long enough for 20 full reloads of a large inventory.
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .into();
    let reply = agent
        .get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if reply.status() != 200 {
        return Err(format!("GET {url}: HTTP {}", reply.status()));
    }
    let mut lines = BufReader::new(reply.into_body().into_reader()).lines();
    let mut version = next_bundle(&mut lines, "")?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let text = versions
            .get((i + 1) % versions.len().max(1))
            .ok_or("no file versions")?;
        replace_file(file, text)?;
        let written = Instant::now();
        version = next_bundle(&mut lines, &version)?;
        out.push(written.elapsed());
    }
    Ok(Samples::new(
        "operator push (file write → new bundle on the watch)",
        &out,
    ))
}
