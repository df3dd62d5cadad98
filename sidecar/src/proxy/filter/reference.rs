//! Tests' reference: serde_json's own reading of a JSON object (every value as raw text, no key
//! twice), which the one-pass walk must match exactly, and random edits of valid texts to compare
//! the two on.
//!
//! ```text
//! mutations(seeds) ──► texts ──► Object::parse / Listed::read   ┐ equal, text by text
//!                            └─► Members::parse (serde_json)     ┘
//! ```

use serde::{Deserialize, Deserializer, de};
use serde_json::value::RawValue;
use std::fmt;

/// An object's members as serde_json reads them: keys decoded, values as raw text.
pub(super) struct Members(pub(super) Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Members {
    /// `None` unless serde_json reads `text` as one object without duplicate keys.
    pub(super) fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The string value of member `key`, decoded.
    pub(super) fn string(&self, key: &str) -> Option<String> {
        let (_, value) = self.0.iter().find(|(k, _)| k == key)?;
        serde_json::from_str(value.get()).ok()
    }
}

/// `count` texts, each one of `seeds` with one to three random edits: a character deleted,
/// replaced by a JSON fragment, or a fragment inserted.
pub(super) fn mutations<'a>(
    seeds: &'a [&'a str],
    count: usize,
) -> impl Iterator<Item = String> + 'a {
    const FRAGMENTS: [&str; 21] = [
        "{", "}", "[", "]", ",", ":", " ", "\"", "\\", "\"name\"", "\"ab\"", "1", "-", "e", ".",
        "\\u00", "\\ud800", "\n", "null", "\"id\"", "\u{e9}",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    (0..count).map(move |_| {
        let mut text = seeds[next(seeds.len())].to_owned();
        for _ in 0..=next(3) {
            let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            let at = starts.get(next(starts.len().max(1))).copied().unwrap_or(0);
            let end = starts
                .iter()
                .find(|&&i| i > at)
                .copied()
                .unwrap_or(text.len());
            let fragment = FRAGMENTS[next(FRAGMENTS.len())];
            match next(3) {
                0 => text.replace_range(at..end, ""),
                1 => text.insert_str(at, fragment),
                _ => text.replace_range(at..end, fragment),
            }
        }
        text
    })
}
