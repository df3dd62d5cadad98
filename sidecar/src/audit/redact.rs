//! Redaction: values at configured JSON pointers, or under configured key names at any depth, are
//! replaced by `hmac-sha256:<hex>`, an HMAC keyed with a configured secret. Equal values give equal
//! hashes (so calls still correlate: "the same card number twice"), but nobody without the key can
//! test a guess against a record.
//!
//! What is hashed: a string's UTF-8 bytes; any other value's canonical JSON (object keys sorted, no
//! whitespace). Rules come from `McpTool.spec.tools[].audit.redact` (per tool) plus the sidecar-wide
//! `alwaysRedact` key names. Key names and pointer tokens match the way case-insensitive decoders
//! read keys (ASCII case and the Unicode letters that fold to ASCII, `proxy::jsonrpc::fold`), so
//! `Card_Number` or `pa\u{17F}sword` is redacted like `card_number`, `password`: an upstream
//! built on Go's `encoding/json` would read them as those. Every matching value is hashed, even
//! one that looks like a hash already (a caller could otherwise forge one and keep a secret in
//! clear, or copy another record's hash to fake a correlation).

use crate::proxy::jsonrpc::fold;
use hmac::{Hmac, Mac};
use mcp_warden_crds::ToolAuditSpec;
use serde_json::Value;
use sha2::Sha256;
use std::{fmt, path::Path, sync::Arc};

/// Prefix of every redacted value.
pub const REDACTED_PREFIX: &str = "hmac-sha256:";

/// The shortest accepted key.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a key or a rule is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RedactionError {
    /// The key file could not be read.
    #[error("reading the redaction key {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The key is too short.
    #[error("the redaction key has {0} bytes; at least {MIN_KEY_BYTES} are required")]
    KeyTooShort(usize),
    /// A rule is neither a JSON pointer nor a bare key name.
    #[error("redaction rule {0:?} is neither a JSON pointer (\"/a/b\") nor a bare key name")]
    BadRule(String),
}

/// The HMAC secret. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct HmacKey(Arc<[u8]>);

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    /// A key from bytes (at least 16).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, RedactionError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(RedactionError::KeyTooShort(bytes.len()));
        }
        Ok(Self(bytes.into()))
    }

    /// A key from a file (e.g. a mounted Secret); one trailing newline is ignored.
    pub fn from_file(path: &Path) -> Result<Self, RedactionError> {
        let mut bytes = std::fs::read(path).map_err(|source| RedactionError::KeyFile {
            path: path.display().to_string(),
            source,
        })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Self::new(bytes)
    }

    /// A random key: hashes then correlate only within this process's lifetime.
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(bytes.to_vec().into())
    }

    /// `hmac-sha256:<hex>` of a value (see the module docs for what is hashed).
    pub fn digest(&self, value: &Value) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        match value {
            Value::String(s) => mac.update(s.as_bytes()),
            other => {
                let mut buf = Vec::new();
                canonical_json(other, &mut buf);
                mac.update(&buf);
            }
        }
        format!(
            "{REDACTED_PREFIX}{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

/// Writes `value` as JSON with object keys sorted and no whitespace.
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(v, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// The redaction rules of one tool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redaction {
    /// Parsed JSON pointers (reference tokens, unescaped and folded).
    pointers: Vec<Vec<String>>,
    /// Bare key names, folded.
    keys: Vec<String>,
    capture_response: bool,
}

impl Redaction {
    /// No redaction, no response capture.
    pub fn none() -> Self {
        Self::default()
    }

    /// Rules as `McpTool` writes them: JSON pointers (`/card/number`) or bare key names
    /// (`password`).
    pub fn new<S: AsRef<str>>(
        rules: impl IntoIterator<Item = S>,
        capture_response: bool,
    ) -> Result<Self, RedactionError> {
        let mut out = Self {
            capture_response,
            ..Self::default()
        };
        for rule in rules {
            let rule = rule.as_ref();
            if let Some(pointer) = rule.strip_prefix('/') {
                out.pointers.push(
                    pointer
                        .split('/')
                        .map(|t| fold(&t.replace("~1", "/").replace("~0", "~")))
                        .collect(),
                );
            } else if !rule.is_empty() && !rule.contains('/') {
                let key = fold(rule);
                if !out.keys.contains(&key) {
                    out.keys.push(key);
                }
            } else {
                return Err(RedactionError::BadRule(rule.to_owned()));
            }
        }
        Ok(out)
    }

    /// From a tool entry's `audit` block (`None`: nothing to redact, no capture).
    pub fn from_spec(spec: Option<&ToolAuditSpec>) -> Result<Self, RedactionError> {
        match spec {
            None => Ok(Self::none()),
            Some(spec) => Self::new(&spec.redact, spec.capture_response),
        }
    }

    /// Whether the tool's response content is recorded.
    pub fn capture_response(&self) -> bool {
        self.capture_response
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty() && self.keys.is_empty()
    }

    /// Replaces every configured value in `value` with its keyed hash; returns how many values
    /// were replaced.
    pub fn apply(&self, value: &mut Value, key: &HmacKey) -> usize {
        let mut n = 0;
        for pointer in &self.pointers {
            n += at_pointer(value, pointer, &mut |target| {
                *target = Value::String(key.digest(target));
            });
        }
        if !self.keys.is_empty() {
            n += self.redact_keys(value, key);
        }
        n
    }

    /// Whether [`apply`](Self::apply) would replace anything in `value` (no copy needed if not).
    pub fn finds(&self, value: &Value) -> bool {
        self.pointers.iter().any(|p| found_at_pointer(value, p))
            || (!self.keys.is_empty() && self.finds_key(value))
    }

    fn matches_key(&self, k: &str) -> bool {
        let k = fold(k);
        self.keys.contains(&k)
    }

    fn finds_key(&self, value: &Value) -> bool {
        match value {
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| self.matches_key(k) || self.finds_key(v)),
            Value::Array(items) => items.iter().any(|v| self.finds_key(v)),
            _ => false,
        }
    }

    fn redact_keys(&self, value: &mut Value, key: &HmacKey) -> usize {
        let mut n = 0;
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if self.matches_key(k) {
                        *v = Value::String(key.digest(v));
                        n += 1;
                    } else {
                        n += self.redact_keys(v, key);
                    }
                }
            }
            Value::Array(items) => {
                for v in items {
                    n += self.redact_keys(v, key);
                }
            }
            _ => {}
        }
        n
    }
}

/// Calls `f` on every value at the (folded) pointer `tokens`: an object member matches a token
/// whatever its case or folding, so a pointer may reach several values. Returns how many.
fn at_pointer(value: &mut Value, tokens: &[String], f: &mut impl FnMut(&mut Value)) -> usize {
    let Some((first, rest)) = tokens.split_first() else {
        f(value);
        return 1;
    };
    match value {
        Value::Object(map) => map
            .iter_mut()
            .filter(|(k, _)| fold(k) == *first)
            .map(|(_, v)| at_pointer(v, rest, f))
            .sum(),
        Value::Array(items) => match array_index(first).and_then(|i| items.get_mut(i)) {
            Some(v) => at_pointer(v, rest, f),
            None => 0,
        },
        _ => 0,
    }
}

/// Whether [`at_pointer`] would reach a value (the shared form, for `finds`).
fn found_at_pointer(value: &Value, tokens: &[String]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return true;
    };
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| fold(k) == *first && found_at_pointer(v, rest)),
        Value::Array(items) => array_index(first)
            .and_then(|i| items.get(i))
            .is_some_and(|v| found_at_pointer(v, rest)),
        _ => false,
    }
}

/// A JSON pointer token as an array index (no sign, no leading zero).
fn array_index(t: &str) -> Option<usize> {
    if t.starts_with('+') || (t.len() > 1 && t.starts_with('0')) {
        return None;
    }
    t.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> HmacKey {
        HmacKey::new(b"0123456789abcdef0123".to_vec()).unwrap()
    }

    #[test]
    fn pointers_and_keys_at_any_depth_are_replaced() {
        let r =
            Redaction::new(["/card/number", "password", "/items/1/ssn", "/a~1b"], false).unwrap();
        for (rule, hit) in [
            ("/card/number", true),
            ("/card/cvv", false),
            ("password", true),
        ] {
            let one = Redaction::new([rule], false).unwrap();
            let v = json!({"card": {"number": "4111"}, "nested": [{"PASSWORD": "x"}]});
            assert_eq!(one.finds(&v), hit, "{rule}");
            assert_eq!(one.apply(&mut v.clone(), &key()) > 0, hit, "{rule}");
        }
        let mut v = json!({
            "card": {"number": "4111111111111111", "exp": "12/30"},
            "nested": {"deep": [{"Password": "hunter2"}]},
            "items": [{"ssn": "keep-0"}, {"ssn": "078-05-1120"}],
            "a/b": 7,
        });
        assert_eq!(r.apply(&mut v, &key()), 4);
        let text = v.to_string();
        for secret in ["4111111111111111", "hunter2", "078-05-1120"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["card"]["exp"], "12/30");
        assert_eq!(v["items"][0]["ssn"], "keep-0");
        assert!(v["a/b"].as_str().unwrap().starts_with(REDACTED_PREFIX));
    }

    #[test]
    fn folded_keys_are_redacted_and_forged_hashes_hashed_again() {
        let r = Redaction::new(["/card_number", "password"], false).unwrap();
        let forged = format!("{REDACTED_PREFIX}{}", "4111".repeat(16));
        let mut v = json!({
            "Card_Number": "4111-1",
            "CARD_NUMBER": "4111-2",
            "pa\u{17F}sword": "hunter2",
            "nested": {"PASSWORD": forged.clone(), "pass\u{17F}": "not-a-rule"},
        });
        assert!(r.finds(&v));
        assert_eq!(r.apply(&mut v, &key()), 4);
        let text = v.to_string();
        for secret in ["4111-1", "4111-2", "hunter2", forged.as_str()] {
            assert!(!text.contains(secret), "{secret} left in clear: {text}");
        }
        assert_eq!(v["nested"]["pass\u{17F}"], "not-a-rule");
        // A digest is never taken for redacted: the same rules hash it again.
        let digest = v["Card_Number"].clone();
        assert_eq!(r.apply(&mut v, &key()), 4);
        assert_ne!(v["Card_Number"], digest);
    }

    #[test]
    fn equal_values_hash_equal_and_keys_matter() {
        let k = key();
        assert_eq!(k.digest(&json!("x")), k.digest(&json!("x")));
        assert_ne!(k.digest(&json!("x")), k.digest(&json!("y")));
        assert_eq!(
            k.digest(&json!({"a":1,"b":2})),
            k.digest(&json!({"b":2,"a":1}))
        );
        let other = HmacKey::new(b"another key of 16+ bytes".to_vec()).unwrap();
        assert_ne!(k.digest(&json!("x")), other.digest(&json!("x")));
        // Known answer: HMAC-SHA256(key, "x"), computed independently.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123").unwrap();
        mac.update(b"x");
        assert_eq!(
            k.digest(&json!("x")),
            format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn bad_rules_and_short_keys_are_refused() {
        assert!(Redaction::new(["a/b"], false).is_err());
        assert!(Redaction::new([""], false).is_err());
        assert!(HmacKey::new(b"short".to_vec()).is_err());
        assert_eq!(format!("{:?}", key()), "HmacKey(..)");
    }
}
