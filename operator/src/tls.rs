//! The serving certificate of the push API and the webhook, reloaded when its files change.
//!
//! ```text
//! --tls-cert / --tls-key (a Secret volume: cert-manager or the chart rewrites it in place)
//!   start: load, or refuse to start (a bad pair is an error the user must fix)
//!   every TLS handshake: ReloadingCert::resolve ──► the pair in force
//!     at most every RECHECK: mtime or length of either file changed?
//!       ──► load again: ok ──► in force for the next handshakes (logged)
//!                       error (half-written pair) ──► the old pair stays, retried next time
//! ```
//!
//! Without this a renewed certificate would only be served after a restart, and an expired one
//! would make the webhook (`failurePolicy: Fail`) block every pod creation in governed
//! namespaces.

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

/// How often the files are looked at (on a handshake; no timer).
pub const RECHECK: Duration = Duration::from_secs(10);

/// A certificate and key pair that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM.
    #[error("cannot read the {what} {path}: {message}")]
    Read {
        /// Certificate or key.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The key does not fit the provider (or the certificate).
    #[error("invalid certificate or key: {0}")]
    Invalid(String),
}

/// `(modified, length)` of both files: what says they changed.
type Stamp = [(Option<SystemTime>, u64); 2];

#[derive(Debug)]
struct State {
    key: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

/// Serves the pair found in two PEM files, reloading it when they change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [one(cert), one(key)]
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |what, path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| read("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(read("certificate", cert, &"no CERTIFICATE block"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| read("key", key, &e))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(certs, private, &provider)
        .map_err(|e| TlsError::Invalid(e.to_string()))?;
    Ok(Arc::new(certified))
}

impl ReloadingCert {
    /// Loads the pair now (an error here stops the operator: nothing to serve with).
    pub fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let loaded = load(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(State {
                key: loaded,
                stamp: stamp(cert, key),
                checked: Instant::now(),
            }),
        })
    }

    /// The pair in force, after reloading it if the files changed (checked at most every
    /// `recheck`).
    pub fn current(&self, recheck: Duration) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= recheck {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != state.stamp {
                match load(&self.cert, &self.key) {
                    Ok(key) => {
                        state.key = key;
                        state.stamp = now;
                        tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(
                            "the changed certificate cannot be loaded yet, the previous one stays: {e}"
                        )
                    }
                }
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current(RECHECK))
    }
}

/// A server configuration (HTTP/2 and HTTP/1.1 by ALPN) serving the reloading pair.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let resolver = ReloadingCert::new(cert, key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Invalid(e.to_string()))?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) {
        let cert = rcgen::generate_simple_self_signed(vec![name.into()]).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    }

    fn serial(key: &CertifiedKey) -> Vec<u8> {
        key.end_entity_cert().unwrap().to_vec()
    }

    #[test]
    fn a_renewed_pair_is_served_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "one.example");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let reloading = ReloadingCert::new(&cert, &key).unwrap();
        let first = serial(&reloading.current(RECHECK));

        write_pair(dir.path(), "two.example");
        assert_eq!(
            serial(&reloading.current(RECHECK)),
            first,
            "not before RECHECK"
        );
        let second = serial(&reloading.current(Duration::ZERO));
        assert_ne!(second, first, "renewed pair served");

        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nbroken\n").unwrap();
        assert_eq!(
            serial(&reloading.current(Duration::ZERO)),
            second,
            "a half-written pair keeps the previous one"
        );
    }

    #[test]
    fn a_bad_pair_at_start_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), "nothing").unwrap();
        std::fs::write(dir.path().join("tls.key"), "nothing").unwrap();
        let err = ReloadingCert::new(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.crt"), "{err}");
    }
}
