//! The hash chain: `seal` closes a head with `metadata.uid`, `metadata.sequence` and the tags
//! (instance, previous hash, own hash); the readers below get them back from a line without
//! re-serializing it (`verify`, spool recovery, sinks).

use super::{SEAL_MAX_BYTES, TAG_HASH, TAG_INSTANCE, TAG_PREV};
use serde_json::Value;
use sha2::{Digest, Sha256};

const HASH_PREFIX: &[u8] = b"{\"name\":\"mcp_warden.chain.hash\",\"value\":\"sha256:";
const HASH_SUFFIX: &[u8] = b"\"}]}}";

/// Closes a head into a full line (appended to `out`, newline included) and returns its hash.
pub fn seal(
    head: &[u8],
    uid: &str,
    sequence: u64,
    instance: &str,
    prev: &[u8; 32],
    out: &mut Vec<u8>,
) -> [u8; 32] {
    let start = out.len();
    out.extend_from_slice(head);
    out.extend_from_slice(b",\"uid\":\"");
    out.extend_from_slice(uid.as_bytes());
    out.extend_from_slice(b"\",\"sequence\":");
    out.extend_from_slice(sequence.to_string().as_bytes());
    out.extend_from_slice(b",\"tags\":[{\"name\":\"mcp_warden.instance\",\"value\":\"");
    out.extend_from_slice(instance.as_bytes());
    out.extend_from_slice(b"\"},{\"name\":\"mcp_warden.chain.prev\",\"value\":\"sha256:");
    out.extend_from_slice(hex::encode(prev).as_bytes());
    out.extend_from_slice(b"\"},");
    out.extend_from_slice(HASH_PREFIX);
    let hash_at = out.len();
    out.extend_from_slice(&[b'0'; 64]);
    out.extend_from_slice(HASH_SUFFIX);
    let hash: [u8; 32] = Sha256::digest(&out[start..]).into();
    out[hash_at..hash_at + 64].copy_from_slice(hex::encode(hash).as_bytes());
    out.push(b'\n');
    hash
}

/// Why a line is not a sealed record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line does not end with the chain hash tag.
    #[error("not an mcp-warden audit record (no chain hash at the end of the line)")]
    NotSealed,
}

/// The hash a line claims, and the one its content gives. Equal unless the line was edited.
pub fn line_hashes(line: &[u8]) -> Result<([u8; 32], [u8; 32]), LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let body = line.strip_suffix(HASH_SUFFIX).ok_or(LineError::NotSealed)?;
    if body.len() < 64 + HASH_PREFIX.len() {
        return Err(LineError::NotSealed);
    }
    let (before, hex_part) = body.split_at(body.len() - 64);
    if !before.ends_with(HASH_PREFIX) {
        return Err(LineError::NotSealed);
    }
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut claimed).map_err(|_| LineError::NotSealed)?;
    let mut h = Sha256::new();
    h.update(before);
    h.update([b'0'; 64]);
    h.update(HASH_SUFFIX);
    Ok((claimed, h.finalize().into()))
}

/// `metadata.sequence` of a sealed line, read from its tail without parsing the JSON: `seal`
/// writes it within the last [`SEAL_MAX_BYTES`] of the line.
pub fn line_sequence(line: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\",\"sequence\":";
    let line = &line[line.len().saturating_sub(SEAL_MAX_BYTES)..];
    let at = line.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// The chain fields of a parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainFields {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.sequence`.
    pub sequence: u64,
    /// The instance tag.
    pub instance: String,
    /// The previous record's hash.
    pub prev: [u8; 32],
    /// This record's claimed hash.
    pub hash: [u8; 32],
}

/// Reads the chain fields from a parsed record.
pub fn chain_fields(record: &Value) -> Option<ChainFields> {
    let meta = record.get("metadata")?;
    let tag = |name: &str| {
        meta.get("tags")?
            .as_array()?
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?
            .get("value")?
            .as_str()
            .map(str::to_owned)
    };
    let hash = |v: String| {
        let mut out = [0u8; 32];
        hex::decode_to_slice(v.strip_prefix("sha256:")?, &mut out).ok()?;
        Some(out)
    };
    Some(ChainFields {
        uid: meta.get("uid")?.as_str()?.to_owned(),
        sequence: meta.get("sequence")?.as_u64()?,
        instance: tag(TAG_INSTANCE)?,
        prev: hash(tag(TAG_PREV)?)?,
        hash: hash(tag(TAG_HASH)?)?,
    })
}
