//! The identity JWT's signing keys, and the JWKS that publishes them.
//!
//! ```text
//! standalone: --upstream-identity-key FILE (PKCS#8 PEM, P-256 → ES256, Ed25519 → EdDSA)
//!               polled every 200 ms: a new key is published at once and signs after
//!               publish_ahead (verifiers' JWKS caches have it by then); the old one stays
//!               published for OVERLAP after that, so JWTs it signed still verify
//! operator:   the push stream's `upstreamKeys` line: the signing key and the keys still
//!               published (the operator keeps the overlap)
//! JWKS:       the admin port's /.well-known/jwks.json (standalone) and the operator's
//!               /v1/jwks/<namespace>/<tool> (operator mode)
//! ```
//!
//! Private keys are never logged and never leave the process except as the public JWK.

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// How long a replaced key stays in the JWKS: twice the longest identity JWT lifetime.
pub const OVERLAP: Duration = Duration::from_secs(120);

/// How often the standalone key file is read.
pub const POLL: Duration = Duration::from_millis(200);

/// A private key as it is configured or pushed (PKCS#8 PEM). `Debug` shows its id only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMaterial {
    /// The key's PEM.
    pub pem: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(..)")
    }
}

/// A key ready to sign.
pub(crate) struct Signing {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) key: EncodingKey,
    /// The public JWK (with `kid`, `alg`, `use`).
    jwk: Value,
}

impl Signing {
    /// Reads a PKCS#8 PEM key: P-256 (ES256) or Ed25519 (EdDSA).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        let pair = mcp_warden_wire::keys::key_pair(pem)?;
        Ok(Self {
            kid: pair.kid().to_owned(),
            alg: pair.algorithm,
            jwk: json!(pair.jwk),
            key: pair.encoding,
        })
    }
}

/// One key: it signs from `from` (until a newer key does), and is published until `until`.
struct Entry {
    signing: Arc<Signing>,
    from: Instant,
    until: Option<Instant>,
}

#[derive(Default)]
struct Set {
    /// Oldest first.
    keys: Vec<Entry>,
    /// Public keys the operator still publishes (not signing).
    published: Vec<Value>,
}

/// The signing key in force and the keys the JWKS publishes.
///
/// A rotated key is published [`Keys::publish_ahead`] before it signs, so verifiers that cache
/// the JWKS (PyJWT's `PyJWKClient` refetches at most every 30 s by default) have it before the
/// first JWT it signs; the replaced key stays published for [`OVERLAP`] after that.
pub struct Keys {
    set: ArcSwap<Set>,
    publish_ahead: Duration,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(PUBLISH_AHEAD)
    }
}

/// How long a rotated key is published before it signs (default).
pub const PUBLISH_AHEAD: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.set.load();
        f.debug_struct("Keys")
            .field(
                "kids",
                &set.keys
                    .iter()
                    .map(|e| e.signing.kid.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("published", &set.published.len())
            .finish()
    }
}

impl Keys {
    /// Keys whose rotations are published `publish_ahead` before they sign.
    pub fn new(publish_ahead: Duration) -> Self {
        Self {
            set: ArcSwap::default(),
            publish_ahead,
        }
    }

    /// How long a rotated key is published before it signs.
    pub fn publish_ahead(&self) -> Duration {
        self.publish_ahead
    }

    /// The key that signs now: the newest one whose time has come.
    pub(crate) fn current(&self) -> Option<Arc<Signing>> {
        let now = Instant::now();
        let set = self.set.load();
        set.keys
            .iter()
            .rev()
            .find(|e| e.from <= now)
            .map(|e| e.signing.clone())
    }

    /// The id of the key that signs now.
    pub fn current_kid(&self) -> Option<String> {
        self.current().map(|s| s.kid.clone())
    }

    /// Standalone rotation: `pem` becomes the newest key. The first key signs at once; a later
    /// one is published now and signs after [`Keys::publish_ahead`], and the keys it replaces
    /// stay published for [`OVERLAP`] after that. Returns whether the key is new.
    pub fn rotate_to(&self, pem: &str) -> Result<bool, String> {
        let signing = Signing::from_pem(pem)?;
        let old = self.set.load_full();
        if old
            .keys
            .last()
            .is_some_and(|e| e.signing.kid == signing.kid)
        {
            return Ok(false);
        }
        let now = Instant::now();
        let from = if old.keys.is_empty() {
            now
        } else {
            now + self.publish_ahead
        };
        let mut keys: Vec<Entry> = old
            .keys
            .iter()
            .filter(|e| e.until.is_none_or(|t| t > now) && e.signing.kid != signing.kid)
            .map(|e| Entry {
                signing: e.signing.clone(),
                from: e.from,
                until: Some(e.until.map_or(from + OVERLAP, |t| t.min(from + OVERLAP))),
            })
            .collect();
        keys.push(Entry {
            signing: Arc::new(signing),
            from,
            until: None,
        });
        self.set.store(Arc::new(Set {
            keys,
            published: Vec::new(),
        }));
        Ok(true)
    }

    /// Installs the operator's keys: `signing` signs now, `published` (public JWKs) stay in the
    /// JWKS as long as the operator sends them (the operator publishes a next key ahead).
    pub fn install(&self, signing: &KeyMaterial, published: &[Value]) -> Result<(), String> {
        let signing = Signing::from_pem(&signing.pem)?;
        let published = published
            .iter()
            .filter(|j| j.get("kid") != Some(&json!(signing.kid)))
            .cloned()
            .collect();
        self.set.store(Arc::new(Set {
            keys: vec![Entry {
                signing: Arc::new(signing),
                from: Instant::now(),
                until: None,
            }],
            published,
        }));
        Ok(())
    }

    /// The JWKS: every key published now, newest first.
    pub fn jwks(&self) -> Value {
        let set = self.set.load();
        let now = Instant::now();
        let keys: Vec<&Value> = set
            .keys
            .iter()
            .rev()
            .filter(|e| e.until.is_none_or(|t| t > now))
            .map(|e| &e.signing.jwk)
            .chain(set.published.iter())
            .collect();
        json!({ "keys": keys })
    }
}

/// Standalone: reads `path` every [`POLL`] and rotates to the key it holds. A missing or
/// unreadable file keeps the keys in force (logged once per change).
pub async fn watch_file(path: PathBuf, keys: Arc<Keys>) {
    super::poll(POLL, "upstream identity key", || {
        let (path, keys) = (path.clone(), keys.clone());
        async move {
            let pem = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let changed = keys.rotate_to(&pem)?;
            if changed {
                tracing::info!(
                    signing = keys.current_kid().unwrap_or_default(),
                    publish_ahead = ?keys.publish_ahead(),
                    "upstream identity key published; it signs after publish_ahead (at once if it is the first)"
                );
            }
            Ok(())
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_test_support::tls::self_signed;

    fn kids(keys: &Keys) -> Vec<String> {
        mcp_warden_wire::keys::kids(&keys.jwks())
    }

    #[test]
    fn a_rotated_key_is_published_before_it_signs_and_the_old_one_stays() {
        let keys = Keys::new(Duration::from_millis(300));
        assert!(keys.current().is_none(), "no key: nothing signs");
        let (one, two) = (self_signed().key_pem, self_signed().key_pem);
        assert_eq!(keys.rotate_to(&one), Ok(true));
        let first = keys.current_kid().unwrap_or_default();
        assert_eq!(kids(&keys).len(), 1, "the first key signs at once");
        assert_eq!(kids(&keys)[0], first);
        assert_eq!(
            keys.rotate_to(&one),
            Ok(false),
            "the same key again changes nothing"
        );
        assert_eq!(keys.rotate_to(&two), Ok(true));
        let published = kids(&keys);
        assert_eq!(published.len(), 2);
        assert_eq!(published[1], first);
        assert_eq!(
            keys.current_kid(),
            Some(first.clone()),
            "not before publish_ahead"
        );
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(keys.current_kid().as_ref(), Some(&published[0]));
        assert_eq!(
            kids(&keys),
            published,
            "the old key stays published (OVERLAP)"
        );
        assert!(keys.rotate_to("not a key").is_err());
        assert_eq!(
            keys.current_kid().as_ref(),
            Some(&published[0]),
            "a bad key changes nothing"
        );
    }

    #[test]
    fn the_operators_keys_sign_at_once_with_the_published_ones_listed() {
        let keys = Keys::default();
        let pem = self_signed().key_pem;
        let next = json!({"kid": "next", "kty": "EC"});
        assert!(keys.install(&KeyMaterial { pem }, &[next]).is_ok());
        let signing = keys.current_kid().unwrap_or_default();
        assert_eq!(kids(&keys), [signing, "next".to_owned()]);
        assert_eq!(
            format!(
                "{:?}",
                KeyMaterial {
                    pem: "secret".into()
                }
            ),
            "KeyMaterial(..)"
        );
    }
}
