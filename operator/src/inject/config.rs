//! What the injector puts in every pod: image, operator URL and CA, token audience, resources.
//! Built once from the flags (`cli::SidecarArgs`) and checked then, so a typo fails the
//! operator's start rather than every pod creation.

/// The sidecar's settings, the same for every pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectConfig {
    /// The sidecar image reference.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    pub image_pull_policy: String,
    /// The push API URL the sidecars connect to.
    pub operator_url: String,
    /// PEM of the CA that signed the push API's certificate, put in `MCP_WARDEN_OPERATOR_CA`.
    pub operator_ca: Option<String>,
    /// The audience of the projected ServiceAccount token (the operator's `--audience`).
    pub audience: String,
    /// CPU request (a Kubernetes quantity).
    pub cpu_request: String,
    /// Memory request (a Kubernetes quantity).
    pub memory_request: String,
    /// Memory limit (a Kubernetes quantity).
    pub memory_limit: String,
}

/// A flag the injector cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not one of the three pull policies.
    #[error("--sidecar-image-pull-policy {0:?}: use Always, IfNotPresent or Never")]
    PullPolicy(String),
    /// Not a Kubernetes quantity.
    #[error("{flag} {value:?} is not a Kubernetes quantity (like 50m, 32Mi, 0.5)")]
    Quantity {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
    },
    /// Not an http(s) URL.
    #[error("--operator-url {0:?} is not an https:// (or, for development, http://) URL")]
    OperatorUrl(String),
    /// The CA file holds no PEM certificate.
    #[error("--operator-ca-file {0}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    OperatorCa(String),
    /// An empty string.
    #[error("{0} must not be empty")]
    Empty(&'static str),
}

impl InjectConfig {
    /// Checks every field; the `cli` calls this before serving or printing anything.
    ///
    /// # Errors
    ///
    /// The first field that the API server (or the sidecar) would refuse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (flag, value) in [
            ("--sidecar-image", &self.image),
            ("--audience", &self.audience),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty(flag));
            }
        }
        if !matches!(
            self.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(ConfigError::PullPolicy(self.image_pull_policy.clone()));
        }
        for (flag, value) in [
            ("--sidecar-cpu-request", &self.cpu_request),
            ("--sidecar-memory-request", &self.memory_request),
            ("--sidecar-memory-limit", &self.memory_limit),
        ] {
            if !is_quantity(value) {
                return Err(ConfigError::Quantity {
                    flag,
                    value: value.clone(),
                });
            }
        }
        match url::Url::parse(&self.operator_url) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => {}
            _ => return Err(ConfigError::OperatorUrl(self.operator_url.clone())),
        }
        Ok(())
    }
}

/// A Kubernetes resource quantity: `<number><suffix>`, the suffix binary (Ki…Ei), decimal
/// (n, u, m, "", k, M…E) or an exponent (e3).
fn is_quantity(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let digits_end = body
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(digits_end);
    let number_ok = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = matches!(
        suffix,
        "" | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
            | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
        .is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()));
    number_ok && suffix_ok
}

#[cfg(test)]
mod tests {
    use super::is_quantity;

    #[test]
    fn quantities_as_the_api_server_reads_them() {
        for ok in [
            "50m", "32Mi", "128Mi", "1", "0.5", "1e3", "2Gi", "100k", "+1",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "50 m", "32MB", "1.2.3", "Mi", ".", "1e", "fifty"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
