//! A JSON object read as its members in order, each value kept as raw text, so that a rewritten
//! response differs from the upstream's only where the proxy changed it.
//!
//! ```text
//! text ──Object::parse──► [(key, value text)]   one walk; keys unescaped; None: not one JSON
//!                                               object, or a key twice (unreadable: the caller
//!                                               fails closed)
//!        parse_with(read) ──► the same, each value read by `read` as the walk passes it
//!        get / set ──► to_json ──► {"key":value,…}   keys re-encoded, values as read or set
//! ```

use super::walk;
use serde::Deserialize;
use std::{borrow::Cow, marker::PhantomData};

/// A JSON object whose members keep their order and exact text, borrowed from the input where
/// they can be.
#[derive(Debug)]
pub(super) struct Object<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Object<'a> {
    /// `None` unless `text` is one JSON object without duplicate keys.
    pub(super) fn parse(text: &'a str) -> Option<Self> {
        Self::parse_with(text, |_, value| walk::value(value))
    }

    /// Like `parse`, each member's value read by `read(key, the text at the value)`, which
    /// returns the value's text and the text after it (`None`: unreadable). A duplicate key is
    /// found before its value is read.
    pub(super) fn parse_with(
        text: &'a str,
        mut read: impl FnMut(&str, &'a str) -> Option<(&'a str, &'a str)>,
    ) -> Option<Self> {
        let mut members: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::new();
        let after = walk::sequence(text, '{', '}', |member| {
            let (Text(key), after) = walk::read(member, PhantomData::<Text<'a>>)?;
            if members.iter().any(|(k, _)| *k == key) {
                return None;
            }
            let at_value = walk::skip_whitespace(after).strip_prefix(':')?;
            let (value, after) = read(&key, walk::skip_whitespace(at_value))?;
            members.push((key, Cow::Borrowed(value)));
            Some(after)
        })?;
        walk::skip_whitespace(after)
            .is_empty()
            .then_some(Object(members))
    }

    /// The raw text of member `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Replaces member `key`'s value (raw JSON text), or appends the member.
    pub(super) fn set(&mut self, key: &str, value: String) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = Cow::Owned(value),
            None => self.0.push((Cow::Owned(key.to_owned()), Cow::Owned(value))),
        }
    }

    /// The object as JSON text: each key re-encoded, each value as it was read or set.
    pub(super) fn to_json(&self) -> String {
        let size = self
            .0
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>();
        let mut out = String::with_capacity(2 + size);
        out.push('{');
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::from(&**key).to_string());
            out.push(':');
            out.push_str(value);
        }
        out.push('}');
        out
    }
}

/// A JSON string, borrowed from the input unless it has escapes (decoded; a lone surrogate is an
/// error, as for `String`).
#[derive(Deserialize)]
pub(super) struct Text<'a>(#[serde(borrow)] pub(super) Cow<'a, str>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::filter::reference::{Members, mutations};

    const SEEDS: &[&str] = &[
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},7],"nextCursor":"c"}}"#,
        " { \"id\" : -1.5e3 ,\n\t\"result\" : { \"a\" : [ true , false , null ] } , \"x\":{} } ",
        r#"{"\u0069d":"\ud83d\ude00","result":{"x":"\ud800","y":[[],{}]},"z":"\""}"#,
        r#"{"id":1,"result":{},"error":{"code":-32603,"message":"m"}}"#,
    ];

    #[test]
    fn reads_exactly_what_serde_json_reads() {
        let mut read = 0;
        for text in mutations(SEEDS, 40_000) {
            let walked = Object::parse(&text).map(|o| {
                (o.0.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>()
            });
            let reference = Members::parse(&text).map(|m| {
                (m.0.into_iter())
                    .map(|(k, v)| (k, v.get().to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(walked, reference, "{text}");
            read += usize::from(walked.is_some());
        }
        assert!(read > 1_000, "the edits leave many texts readable ({read})");
    }

    #[test]
    fn a_key_twice_even_behind_escapes_makes_an_object_unreadable() {
        for text in [
            r#"{"id":1,"id":1}"#,
            r#"{"id":1,"\u0069d":2}"#,
            r#"{"result":{},"x":0,"result":{}}"#,
        ] {
            assert!(Object::parse(text).is_none(), "{text}");
        }
        let object = Object::parse(r#" {"\u0069d" : 1 ,"x":{"x":1,"x":2}} "#).unwrap();
        assert_eq!(object.get("id"), Some("1"));
        assert_eq!(object.to_json(), r#"{"id":1,"x":{"x":1,"x":2}}"#);
    }
}
