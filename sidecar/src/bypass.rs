//! Is there a way around the sidecar? The MCP server should answer on the pod's loopback only:
//! a server that also listens on the pod's own address (`0.0.0.0`) can be called directly, by
//! anyone who reaches the pod, and nothing here governs those calls.
//!
//! ```text
//! at start, then every --bypass-check-seconds (default 30; 0: never)
//!   upstream (--upstream, else the McpTool's server.upstream: state::Active::route)
//!     host not loopback ─────────────────► NotChecked (another pod or Service: whether it
//!                                           can be reached around us is not a local question)
//!     127.0.0.1 / ::1 / localhost, port P
//!       pod addresses: POD_IPS, else POD_IP (downward API status.podIPs / status.podIP, set by
//!                      the injector), else this network namespace's own addresses
//!                      (/proc/net/fib_trie, /proc/net/if_inet6); loopback and link-local left out
//!       TCP connect to each address:P, CONNECT_TIMEOUT each, all at once
//!         some connect ──► Reachable { those addresses }
//!         none         ──► LoopbackOnly
//!   ──► gauge mcp_warden_upstream_bypassable{port} 1/0 (absent while not checked)
//!   ──► a warning (or info) log line when the outcome changes
//!   ──► Bypass::take: each check's outcome once, in the next usage report (operator mode):
//!       the operator sets the McpTool condition `Bypassable`
//! ```

use crate::proxy::Shared;
use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Most addresses tried (a pod has one or two).
const MAX_ADDRESSES: usize = 16;

pub use mcp_warden_wire::usage::BypassReport;

#[derive(Debug, Default)]
struct Latest {
    report: Option<BypassReport>,
    unsent: bool,
}

/// The latest outcome, shared by the check loop and the usage reporter.
#[derive(Debug, Default)]
pub struct Bypass {
    latest: Mutex<Latest>,
}

impl Bypass {
    /// The latest outcome, if a check finished since the previous call.
    pub fn take(&self) -> Option<BypassReport> {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut latest.unsent)
            .then(|| latest.report.clone())
            .flatten()
    }

    /// The latest outcome (tests, diagnostics).
    pub fn latest(&self) -> Option<BypassReport> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.report.clone()
    }

    /// Keeps `report`; true when it differs from the previous outcome (ignoring the tool).
    fn set(&self, report: BypassReport) -> bool {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let changed = latest.report.as_ref().is_none_or(|r| {
            (&r.port, &r.reachable, &r.not_checked)
                != (&report.port, &report.reachable, &report.not_checked)
        });
        latest.report = Some(report);
        latest.unsent = true;
        changed
    }
}

/// The pod's own addresses, loopback and link-local left out: `POD_IPS` (comma-separated),
/// else `POD_IP`, else this network namespace's addresses.
pub fn pod_addresses() -> Vec<IpAddr> {
    let from_env = ["POD_IPS", "POD_IP"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
    let mut addresses: Vec<IpAddr> = match from_env {
        Some(list) => list
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect(),
        None => {
            let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
            let mut a = local_ipv4(&read("/proc/net/fib_trie"));
            a.extend(local_ipv6(&read("/proc/net/if_inet6")));
            a
        }
    };
    addresses.retain(|a| !a.is_loopback() && !a.is_unspecified() && !link_local(a));
    addresses.sort();
    addresses.dedup();
    addresses.truncate(MAX_ADDRESSES);
    addresses
}

fn link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The local IPv4 addresses of `/proc/net/fib_trie`: each `|-- <address>` leaf followed by a
/// `/32 host LOCAL` line.
pub fn local_ipv4(fib_trie: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut leaf: Option<IpAddr> = None;
    for line in fib_trie.lines().map(str::trim) {
        if let Some(a) = line.strip_prefix("|-- ") {
            leaf = a.parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(a) = leaf
        {
            out.push(a);
        }
    }
    out
}

/// The IPv6 addresses of `/proc/net/if_inet6` (32 hex digits, then index, prefix, scope, flags,
/// name); host-scoped (`10`) ones left out.
pub fn local_ipv6(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (hex, scope) = (fields.first()?, fields.get(3)?);
            let bits = u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)?;
            (*scope != "10").then(|| IpAddr::V6(Ipv6Addr::from(bits)))
        })
        .collect()
}

/// The loopback port of `upstream`, or why it is not checked.
pub fn loopback_port(upstream: &str) -> Result<u16, String> {
    let url = url::Url::parse(upstream).map_err(|e| format!("the upstream {upstream:?}: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if !loopback {
        return Err(format!(
            "the upstream {upstream} is not on this pod's loopback: whether it can be reached \
             without the sidecar depends on that host's network, not checked here"
        ));
    }
    url.port_or_known_default()
        .ok_or_else(|| format!("the upstream {upstream} has no port"))
}

/// Tries `port` on every address at once; the `address:port`s that accepted a connection.
pub async fn reachable(addresses: &[IpAddr], port: u16, timeout: Duration) -> Vec<SocketAddr> {
    let tries = addresses.iter().map(|a| {
        let to = SocketAddr::new(*a, port);
        async move {
            let connected = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(to)).await;
            matches!(connected, Ok(Ok(_))).then_some(to)
        }
    });
    futures::future::join_all(tries)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// One check of the upstream `shared` forwards to; `None` while there is neither `--upstream`
/// nor a configuration.
pub async fn check(shared: &Shared) -> Option<BypassReport> {
    let active = shared.live.current();
    let upstream = match (&shared.settings.upstream_override, &active) {
        (Some(u), _) => u.clone(),
        (None, Some(a)) => a.route(&shared.settings).upstream.clone(),
        (None, None) => return None,
    };
    let mut report = BypassReport::default();
    if let Some(a) = &active {
        report.namespace.clone_from(&a.rules.tool.namespace);
        report.name.clone_from(&a.rules.tool.name);
    }
    let port = match loopback_port(&upstream) {
        Ok(port) => port,
        Err(why) => {
            report.not_checked = Some(why);
            return Some(report);
        }
    };
    let addresses = pod_addresses();
    if addresses.is_empty() {
        report.not_checked = Some("the pod has no address besides loopback".into());
        return Some(report);
    }
    report.port = Some(port);
    report.checked = addresses.iter().map(ToString::to_string).collect();
    report.reachable = reachable(&addresses, port, CONNECT_TIMEOUT)
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    Some(report)
}

/// Checks at start and every `interval`, until the task is aborted.
pub async fn run(bypass: Arc<Bypass>, shared: Arc<Shared>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(report) = check(&shared).await else {
            continue;
        };
        let bypassable = (!report.reachable.is_empty()).then_some(report.reachable.len());
        shared
            .metrics
            .set_upstream_bypassable(report.port, bypassable.is_some());
        if bypass.set(report.clone()) {
            match (&report.not_checked, bypassable) {
                (Some(why), _) => tracing::info!("bypass check: not checked: {why}"),
                (None, Some(_)) => tracing::warn!(
                    port = report.port,
                    reachable = %report.reachable.join(", "),
                    "the upstream answers on the pod's own address: clients can reach the MCP server without the sidecar (bind it to 127.0.0.1, or apply a NetworkPolicy)"
                ),
                (None, None) => tracing::info!(
                    port = report.port,
                    checked = %report.checked.join(", "),
                    "bypass check: the upstream answers on loopback only"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_read_from_proc() {
        let trie = "Main:\n  +-- 0.0.0.0/1 2 0 2\n     +-- 10.77.0.0/30 2 0 1\n        |-- 10.77.0.0\n           /30 link UNICAST\n        |-- 10.77.0.2\n           /32 host LOCAL\n        |-- 10.77.0.3\n           /32 link BROADCAST\n        |-- 127.0.0.1\n           /32 host LOCAL\n";
        let v4: Vec<String> = local_ipv4(trie).iter().map(ToString::to_string).collect();
        assert_eq!(v4, ["10.77.0.2", "127.0.0.1"]);
        let inet6 = "00000000000000000000000000000001 01 80 10 80 lo\n\
                     fe80000000000000983802fffece1d67 02 40 20 c0 eth0\n\
                     fd000000000000000000000000000005 02 40 00 80 eth0\n";
        let v6: Vec<String> = local_ipv6(inet6).iter().map(ToString::to_string).collect();
        assert_eq!(v6, ["fe80::9838:2ff:fece:1d67", "fd00::5"]);
    }

    #[test]
    fn only_loopback_upstreams_are_checked() {
        assert_eq!(loopback_port("http://127.0.0.1:8080/mcp"), Ok(8080));
        assert_eq!(loopback_port("http://[::1]:81/"), Ok(81));
        assert_eq!(loopback_port("http://localhost/mcp"), Ok(80));
        let why = loopback_port("http://pay.team.svc:8080/mcp").unwrap_err();
        assert!(why.contains("not on this pod's loopback"), "{why}");
    }

    #[test]
    fn the_wire_format_is_the_operators() {
        let r = BypassReport {
            namespace: "team".into(),
            name: "pay".into(),
            port: Some(8080),
            checked: vec!["10.0.0.5".into()],
            reachable: vec!["10.0.0.5:8080".into()],
            not_checked: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"namespace": "team", "name": "pay", "port": 8080,
                "checked": ["10.0.0.5"], "reachable": ["10.0.0.5:8080"]})
        );
        let remote = BypassReport {
            not_checked: Some("why".into()),
            ..BypassReport::default()
        };
        assert_eq!(serde_json::to_value(&remote).unwrap()["notChecked"], "why");
    }

    #[test]
    fn each_outcome_is_taken_once() {
        let bypass = Bypass::default();
        assert_eq!(bypass.take(), None);
        let r = BypassReport {
            port: Some(1),
            reachable: vec!["10.0.0.1:1".into()],
            ..BypassReport::default()
        };
        assert!(bypass.set(r.clone()), "a first outcome is a change");
        assert!(!bypass.set(r.clone()), "the same again is not");
        assert_eq!(bypass.take(), Some(r));
        assert_eq!(bypass.take(), None);
    }
}
