//! The public side of the upstream identity JWT's signing keys: the sidecar names its key in
//! each JWT's `kid`, the operator (and a standalone sidecar's admin port) publishes the JWKS;
//! both derive the JWK and its id here, so they always agree.
//!
//! ```text
//! PKCS#8 PEM ──► P-256 (ES256) | Ed25519 (EdDSA) ──► public JWK {kty, crv, x[, y], kid, use, alg}
//!                                                     kid = RFC 7638 thumbprint (SHA-256)
//! ```

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, jwk::Jwk};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A public JWK as the JWKS lists it (every member is a string).
pub type PublicJwk = BTreeMap<String, String>;

/// A private key read from PEM: what signs, with which algorithm, and its public JWK.
pub struct KeyPair {
    /// The signing key.
    pub encoding: EncodingKey,
    /// `ES256` or `EdDSA`.
    pub algorithm: Algorithm,
    /// The public JWK, with `kid`, `use` and `alg`.
    pub jwk: PublicJwk,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("jwk", &self.jwk).finish()
    }
}

impl KeyPair {
    /// The key's id (`kid`).
    pub fn kid(&self) -> &str {
        self.jwk.get("kid").map_or("", String::as_str)
    }
}

/// Reads a PKCS#8 PEM private key: P-256 (ES256) or Ed25519 (EdDSA).
pub fn key_pair(pem: &str) -> Result<KeyPair, String> {
    let (encoding, algorithm) = match EncodingKey::from_ec_pem(pem.as_bytes()) {
        Ok(k) => (k, Algorithm::ES256),
        Err(ec) => match EncodingKey::from_ed_pem(pem.as_bytes()) {
            Ok(k) => (k, Algorithm::EdDSA),
            Err(_) => {
                return Err(format!(
                    "not a PKCS#8 P-256 or Ed25519 private key in PEM ({ec})"
                ));
            }
        },
    };
    let jwk = Jwk::from_encoding_key(&encoding, algorithm).map_err(|e| e.to_string())?;
    let jwk = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
    let mut public: PublicJwk = ["kty", "crv", "x", "y"]
        .into_iter()
        .filter_map(|k| Some((k.to_owned(), jwk.get(k)?.as_str()?.to_owned())))
        .collect();
    let kid = thumbprint(&public)?;
    public.insert("kid".into(), kid);
    public.insert("use".into(), "sig".into());
    let alg = if algorithm == Algorithm::ES256 {
        "ES256"
    } else {
        "EdDSA"
    };
    public.insert("alg".into(), alg.into());
    Ok(KeyPair {
        encoding,
        algorithm,
        jwk: public,
    })
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): the required members in lexicographic order.
fn thumbprint(jwk: &PublicJwk) -> Result<String, String> {
    let required: &[&str] = match jwk.get("kty").map(String::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        other => return Err(format!("unexpected key type {other:?}")),
    };
    let canonical: serde_json::Map<String, Value> = required
        .iter()
        .map(|k| {
            let v = jwk.get(*k).cloned().unwrap_or_default();
            ((*k).to_owned(), Value::String(v))
        })
        .collect();
    let text = serde_json::to_string(&canonical).map_err(|e| e.to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(text)))
}

/// A JWKS document of `keys`.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a PublicJwk>) -> Value {
    serde_json::json!({ "keys": keys.into_iter().collect::<Vec<_>>() })
}

/// The key ids of a JWKS document, in its order.
pub fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k["kid"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7517 A.1's EC key; the expected thumbprint was computed independently (Python:
    /// SHA-256 of `json.dumps(required members, sort_keys=True, separators=(',', ':'))`).
    #[test]
    fn thumbprints_follow_rfc_7638() {
        let ec: PublicJwk = [
            ("kty", "EC"),
            ("crv", "P-256"),
            ("x", "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4"),
            ("y", "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"),
            ("kid", "ignored"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            thumbprint(&ec).unwrap_or_default(),
            "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
        );
        assert!(thumbprint(&PublicJwk::new()).is_err());
    }

    /// RFC 8410 §10.3's Ed25519 private key, whose public key the RFC gives.
    #[test]
    fn an_ed25519_key_signs_eddsa_with_its_public_key_in_the_jwk() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let pair = key_pair(pem).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pair.algorithm, Algorithm::EdDSA);
        assert_eq!(pair.jwk.get("alg").map(String::as_str), Some("EdDSA"));
        assert_eq!(pair.jwk.get("crv").map(String::as_str), Some("Ed25519"));
        // 19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1, base64url.
        assert_eq!(
            pair.jwk.get("x").map(String::as_str),
            Some("Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE")
        );
        assert_eq!(pair.kid().len(), 43);
    }

    #[test]
    fn a_non_key_is_refused() {
        assert!(key_pair("not a key").is_err());
    }
}
