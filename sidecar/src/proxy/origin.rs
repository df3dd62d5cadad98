//! DNS-rebinding protection: `Origin` and `Host` must name this server.
//!
//! ```text
//! request ──► Host (or the HTTP/2 :authority) ∈ allowed?  ──no──► 403, JSON-RPC error without id
//!         └─► Origin absent, or its host ∈ allowed?       ──no──► 403
//!   allowed = host of the public URL (settings.public_url or the McpTool's resource)
//!           ∪ localhost, 127.0.0.1, [::1]  ∪ settings.allowed_hosts
//! ```
//!
//! The proxy rewrites `Host` for the upstream, which disables the upstream's own rebinding check
//! (reference §0.5, HTTP-02), so the check happens here. Ports are not compared: a Service or an
//! ingress may expose the proxy on another port than the one it listens on, and a rebinding
//! attack is defeated by the host name alone.

use http::{HeaderMap, Uri, header};

/// Names always accepted: the loopback interface.
pub const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// `Origin` is present and names another host (or is opaque, like `null`).
    #[error("Forbidden: Origin {0:?} is not allowed")]
    Origin(String),
    /// `Host` names another host.
    #[error("Forbidden: Host {0:?} is not allowed")]
    Host(String),
    /// Neither `Host` nor `:authority`.
    #[error("Forbidden: the request names no Host")]
    MissingHost,
}

/// The host names this server answers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    allowed: Vec<String>,
}

impl HostPolicy {
    /// The policy for a public URL plus extra names (host names, `[v6]` literals).
    pub fn new(public_url: &str, extra: &[String]) -> Self {
        let mut allowed: Vec<String> = LOOPBACK.iter().map(|h| (*h).to_owned()).collect();
        if let Some(host) = url::Url::parse(public_url)
            .ok()
            .and_then(|u| u.host_str().map(normalize))
        {
            allowed.push(host);
        }
        allowed.extend(extra.iter().map(|h| normalize(h)));
        allowed.sort();
        allowed.dedup();
        Self { allowed }
    }

    /// Whether a bare host name (no port) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        self.allowed.iter().any(|a| *a == normalize(host))
    }

    /// Checks `Host` and the HTTP/2 `:authority` (each when present, one at least) and
    /// `Origin`.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), OriginError> {
        let mut hosts: Vec<String> = headers
            .get_all(header::HOST)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        hosts.extend(uri.authority().map(|a| a.as_str().to_owned()));
        if hosts.is_empty() {
            return Err(OriginError::MissingHost);
        }
        for host in hosts {
            if !host_of_authority(&host).is_some_and(|h| self.allows(h)) {
                return Err(OriginError::Host(host));
            }
        }
        for origin in headers.get_all(header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            let ok = url::Url::parse(&origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .and_then(|u| u.host_str().map(|h| self.allows(h)))
                .unwrap_or(false);
            if !ok {
                return Err(OriginError::Origin(origin));
            }
        }
        Ok(())
    }
}

/// Lowercase, without a trailing dot.
fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of `host[:port]` or `[v6][:port]`; `None` when malformed.
fn host_of_authority(authority: &str) -> Option<&str> {
    let authority = authority.trim();
    let (host, rest) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        authority.split_at(end + 1)
    } else {
        match authority.find(':') {
            Some(i) => authority.split_at(i),
            None => (authority, ""),
        }
    };
    let port_ok = match rest.strip_prefix(':') {
        None => rest.is_empty(),
        Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
    };
    (port_ok && !host.is_empty() && !host.contains('@')).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    fn policy() -> HostPolicy {
        HostPolicy::new(
            "https://MCP.Example.com:8443/mcp",
            &["alias.internal".into()],
        )
    }

    #[test]
    fn loopback_public_and_extra_hosts_pass() {
        let p = policy();
        let uri = Uri::from_static("/mcp");
        for host in [
            "localhost",
            "localhost:3100",
            "127.0.0.1:9",
            "[::1]",
            "[::1]:3100",
            "mcp.example.com",
            "MCP.EXAMPLE.COM:443",
            "mcp.example.com.",
            "alias.internal:80",
        ] {
            assert_eq!(p.check(&headers(Some(host), None), &uri), Ok(()), "{host}");
        }
        for origin in [
            "http://localhost:6274",
            "https://mcp.example.com",
            "http://[::1]:1",
            "http://127.0.0.1",
        ] {
            assert_eq!(
                p.check(&headers(Some("localhost"), Some(origin)), &uri),
                Ok(()),
                "{origin}"
            );
        }
    }

    #[test]
    fn rebinding_hosts_and_origins_are_refused() {
        let p = policy();
        let uri = Uri::from_static("/mcp");
        for host in [
            "evil.com",
            "evil.com:3100",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "[::2]:80",
            "localhost:abc",
            "user@localhost",
            "",
        ] {
            assert!(
                matches!(
                    p.check(&headers(Some(host), None), &uri),
                    Err(OriginError::Host(_))
                ),
                "{host}"
            );
        }
        for origin in [
            "http://evil.com",
            "null",
            "file://",
            "http://localhost.evil.com:80",
            "ftp://localhost",
        ] {
            assert!(
                matches!(
                    p.check(&headers(Some("localhost"), Some(origin)), &uri),
                    Err(OriginError::Origin(_))
                ),
                "{origin}"
            );
        }
    }

    #[test]
    fn http2_authority_stands_in_for_host() {
        let p = policy();
        let ok = Uri::from_static("https://localhost:3100/mcp");
        assert_eq!(p.check(&HeaderMap::new(), &ok), Ok(()));
        let bad = Uri::from_static("https://evil.com/mcp");
        assert!(p.check(&HeaderMap::new(), &bad).is_err());
        // Both are checked when both are present.
        assert!(p.check(&headers(Some("localhost"), None), &bad).is_err());
        assert!(p.check(&headers(Some("evil.com"), None), &ok).is_err());
        assert_eq!(
            p.check(&HeaderMap::new(), &Uri::from_static("/mcp")),
            Err(OriginError::MissingHost)
        );
    }
}
