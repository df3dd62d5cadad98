//! `Recorder::prepare`: an event → a [`Prepared`] head. Redacts a copy of the arguments and the
//! captured result (only when a rule finds something), renders, and when the record passes
//! `maxRecordBytes` replaces the biggest payload by a marker (hash, size, keys) and renders again.

use super::fields::clip;
use super::render::render;
use super::{MIN_RECORD_BYTES, Prepared, Product, RecordKind, SEAL_MAX_BYTES};
use crate::audit::event::{AuditEvent, Outcome};
use crate::audit::redact::{HmacKey, Redaction};
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Renders events: redaction key, sidecar-wide redaction, size cap and product.
#[derive(Clone, Debug)]
pub struct Recorder {
    key: HmacKey,
    always: Redaction,
    max_record_bytes: usize,
    product: Product,
}

impl Recorder {
    /// A recorder. `always` is applied to every call on top of the tool's own rules;
    /// `max_record_bytes` is raised to [`MIN_RECORD_BYTES`] if lower.
    pub fn new(key: HmacKey, always: Redaction, max_record_bytes: usize, product: Product) -> Self {
        Self {
            key,
            always,
            max_record_bytes: max_record_bytes.max(MIN_RECORD_BYTES),
            product,
        }
    }

    /// The size cap of one line, newline included.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// The product in `metadata.product`.
    pub fn product(&self) -> &Product {
        &self.product
    }

    /// The redaction key.
    pub fn key(&self) -> &HmacKey {
        &self.key
    }

    /// Renders one event with the tool's redaction rules.
    pub fn prepare(&self, ev: &AuditEvent, redaction: &Redaction) -> Prepared {
        let kind = if ev.outcome == Outcome::Forwarding {
            RecordKind::Request
        } else {
            RecordKind::Outcome
        };
        // Redact a copy of the arguments (only when a rule finds something) and of the result.
        let mut redacted = 0;
        const NULL: &Value = &Value::Null;
        let mut arguments = Cow::Borrowed(ev.arguments.as_ref().unwrap_or(NULL));
        if redaction.finds(&arguments) || self.always.finds(&arguments) {
            let owned = arguments.to_mut();
            redacted += redaction.apply(owned, &self.key);
            redacted += self.always.apply(owned, &self.key);
        }
        let mut result = match (&ev.response.result, redaction.capture_response()) {
            (Some(r), true) if kind == RecordKind::Outcome => {
                let mut r = r.clone();
                redacted += redaction.apply(&mut r, &self.key);
                redacted += self.always.apply(&mut r, &self.key);
                Some(r)
            }
            _ => None,
        };
        let budget = self.max_record_bytes - SEAL_MAX_BYTES;
        let mut truncated: Option<usize> = None;
        loop {
            let head = render(
                ev,
                kind,
                &self.product,
                &arguments,
                result.as_ref(),
                redacted,
                truncated,
            );
            if head.len() <= budget {
                return Prepared {
                    head,
                    kind,
                    time_ms: record_time(ev).as_millisecond(),
                };
            }
            let untruncated = *truncated.get_or_insert(head.len() + SEAL_MAX_BYTES);
            // Shrink the biggest payload first: captured result, then arguments.
            if let Some(r) = result.as_ref().filter(|r| !is_marker(r)) {
                result = Some(marker(r));
            } else if !is_marker(&arguments) && !arguments.is_null() {
                arguments = Cow::Owned(marker(&arguments));
            } else {
                // Both payloads are markers and the record is still too big: impossible with the
                // text caps and MIN_RECORD_BYTES, but never loop forever.
                let head = render(
                    ev,
                    kind,
                    &self.product,
                    &Value::Null,
                    None,
                    redacted,
                    Some(untruncated),
                );
                return Prepared {
                    head,
                    kind,
                    time_ms: record_time(ev).as_millisecond(),
                };
            }
        }
    }
}

/// The marker that replaces a payload too big for the record.
fn marker(v: &Value) -> Value {
    let mut buf = Vec::new();
    crate::audit::redact::canonical_json(v, &mut buf);
    let mut m = json!({
        "mcp_warden_truncated": true,
        "original_bytes": buf.len(),
        "sha256": hex::encode(Sha256::digest(&buf)),
    });
    if let Value::Object(map) = v {
        m["keys"] = Value::Array(
            map.keys()
                .take(64)
                .map(|k| Value::String(clip(k).into()))
                .collect(),
        );
    }
    m
}

fn is_marker(v: &Value) -> bool {
    v.get("mcp_warden_truncated") == Some(&Value::Bool(true))
}

pub(super) fn record_time(ev: &AuditEvent) -> Timestamp {
    ev.ended.unwrap_or(ev.started)
}
