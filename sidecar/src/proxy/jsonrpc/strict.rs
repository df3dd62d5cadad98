//! Reading a client's JSON so that the sidecar and any upstream see the same message.
//!
//! ```text
//! bytes ──serde_json + StrictValue──► Value      a key twice in any object ──► refused
//!   message and params level (and params.ref, .task, ._meta, .notifications):
//!     a key equal to a governed key only under case or Unicode folding  ──► refused
//!     (`Name`, `METHOD`, `taſkId`, `\u212Aey`: Go's encoding/json and other case-insensitive
//!      decoders would read them as the governed key the sidecar did not decide)
//!     two keys equal under folding                                       ──► refused
//!     a governed value of the wrong type (`name`, `uri`, `taskId` … not a string) ──► refused
//! ```
//!
//! The sidecar forwards the body as received (no re-serialization, no copy), so it refuses every
//! shape that two JSON readers could read differently; see `docs/denials.md` ("one reading").

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Keys of a JSON-RPC message.
pub const MESSAGE_KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// Keys of MCP `params` (every revision) that the sidecar reads, records or relays meaning to.
pub const PARAM_KEYS: [&str; 23] = [
    "name",
    "uri",
    "arguments",
    "taskId",
    "task",
    "_meta",
    "cursor",
    "ref",
    "argument",
    "context",
    "requestId",
    "reason",
    "level",
    "protocolVersion",
    "capabilities",
    "clientInfo",
    "progressToken",
    "requestState",
    "inputResponses",
    "ttl",
    "type",
    "notifications",
    "resourceSubscriptions",
];

/// `params` members whose value must be a string when present (`type`: a completion's
/// `ref.type`, which decides whether its `name` or its `uri` is granted).
pub const STRING_PARAMS: [&str; 5] = ["name", "uri", "taskId", "cursor", "type"];

/// The objects inside `params` whose keys are checked as well.
pub const NESTED: [&str; 4] = ["ref", "task", "_meta", "notifications"];

/// Parses JSON, refusing an object that has a key twice at any depth.
pub fn value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A key folded the way case-insensitive decoders compare keys: ASCII case, and the two
/// non-ASCII letters whose simple case folding is an ASCII letter (U+017F `ſ` → `s`, U+212A
/// KELVIN SIGN → `k`), as Go's `encoding/json` does.
pub fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Checks the keys of one object against the keys a reader governs: `Err` names the first key
/// that is a folded variant of a governed key, or that folds equal to another key.
pub fn check_keys(object: &Map<String, Value>, governed: &[&str]) -> Result<(), String> {
    let mut seen: Vec<(String, &str)> = Vec::with_capacity(object.len());
    for key in object.keys() {
        let folded = fold(key);
        if let Some(g) = governed.iter().find(|g| fold(g) == folded)
            && *g != key
        {
            return Err(format!(
                "the key {key:?} differs from the key {g:?} only by case or Unicode folding"
            ));
        }
        if let Some((_, other)) = seen.iter().find(|(f, _)| *f == folded) {
            return Err(format!(
                "the keys {other:?} and {key:?} differ only by case or Unicode folding"
            ));
        }
        seen.push((folded, key));
    }
    Ok(())
}

/// Checks `params` (an object): its keys, the keys of the governed objects inside it, and the
/// types of the governed values.
pub fn check_params(params: &Map<String, Value>) -> Result<(), String> {
    check_keys(params, &PARAM_KEYS)?;
    for key in STRING_PARAMS {
        if params.get(key).is_some_and(|v| !v.is_string()) {
            return Err(format!("\"params.{key}\" must be a string"));
        }
    }
    for key in NESTED {
        if let Some(Value::Object(inner)) = params.get(key) {
            check_keys(inner, &PARAM_KEYS)?;
            for k in STRING_PARAMS {
                if inner.get(k).is_some_and(|v| !v.is_string()) {
                    return Err(format!("\"params.{key}.{k}\" must be a string"));
                }
            }
        }
    }
    Ok(())
}

/// `serde_json::Value`, except that a key twice in one object is an error.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue)?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_twice_at_any_depth_is_refused() {
        for body in [
            r#"{"a":1,"a":2}"#,
            r#"{"params":{"name":"echo","name":"get-env"}}"#,
            r#"{"x":[{"deep":{"k":1,"k":1}}]}"#,
            r#"{"n\u0061me":1,"name":2}"#,
        ] {
            let e = value(body.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("appears twice"), "{body}: {e}");
        }
        assert_eq!(
            value(br#"{"a":{"b":[1,2.5,"x",null,true]}}"#).unwrap(),
            serde_json::json!({"a":{"b":[1,2.5,"x",null,true]}})
        );
    }

    #[test]
    fn trailing_bytes_and_bad_text_are_refused() {
        for body in [
            &b"{} {}"[..],
            b"{}x",
            b"\xEF\xBB\xBF{}",
            b"{\"a\":\"\xff\"}",
            br#"{"a":"\ud800"}"#,
        ] {
            assert!(value(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn folded_variants_of_governed_keys_are_refused() {
        let object = |text: &str| match value(text.as_bytes()).unwrap() {
            Value::Object(o) => o,
            other => panic!("{other}"),
        };
        for (text, governed) in [
            (r#"{"name":"echo","Name":"get-env"}"#, &PARAM_KEYS[..]),
            (r#"{"NAME":"get-env"}"#, &PARAM_KEYS[..]),
            ("{\"ta\u{17F}kId\":\"t\"}", &PARAM_KEYS[..]),
            ("{\"ta\\u017fkId\":\"t\"}", &PARAM_KEYS[..]),
            ("{\"tas\u{212A}Id\":\"t\"}", &PARAM_KEYS[..]),
            (r#"{"METHOD":"tools/call"}"#, &MESSAGE_KEYS[..]),
            (r#"{"Foo":1,"foo":2}"#, &MESSAGE_KEYS[..]),
        ] {
            assert!(check_keys(&object(text), governed).is_err(), "{text}");
        }
        for text in [
            r#"{"name":"echo","arguments":{"Name":"x","name":"y"}}"#,
            r#"{"name":"echo","vendorKey":1}"#,
        ] {
            assert_eq!(check_params(&object(text)), Ok(()), "{text}");
        }
    }

    #[test]
    fn governed_values_must_be_strings() {
        for text in [
            r#"{"name":1}"#,
            r#"{"uri":["a"]}"#,
            r#"{"taskId":null}"#,
            r#"{"ref":{"type":"ref/prompt","name":{"x":1}}}"#,
            r#"{"ref":{"type":"ref/prompt","Name":"p"}}"#,
            r#"{"_meta":{"PROGRESSTOKEN":1}}"#,
        ] {
            let Value::Object(o) = value(text.as_bytes()).unwrap() else {
                unreachable!()
            };
            assert!(check_params(&o).is_err(), "{text}");
        }
    }
}
