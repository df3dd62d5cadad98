//! A listed JSON array (`result.tools`, `result.tasks`) read in one pass for the one string
//! member that names each element; the elements kept are then copied byte for byte.
//!
//! ```text
//! [ element , … ] ──Listed::read: each element read once (Named)──► [(name, element text)]
//!   an object, no key twice, member `key` a string ──► listed
//!   anything else (not an object, a duplicate or undecodable key,
//!   `key` missing or not a string)               ──► dropped, never asked about (fail closed)
//! Listed::kept(keep) ──► "[" the listed elements whose name passes keep, in order "]"
//! ```
//!
//! Only `key`'s value is decoded (borrowed unless it has escapes); the other members, nested
//! `key`s included, are checked and skipped. Keys are compared decoded: `"na\u006de"` is `name`,
//! so a `name` hidden behind escapes counts as a duplicate.

use super::{object::Text, walk};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny};
use std::{borrow::Cow, fmt};

/// The readable elements of a JSON array, in order: (name, the element's exact text).
#[derive(Debug)]
pub(super) struct Listed<'a>(Vec<(Cow<'a, str>, &'a str)>);

impl<'a> Listed<'a> {
    /// Reads the JSON value at the start of `text`, its elements named by member `key` when it
    /// is an array: (the elements if it is an array, the value's text, the text after it).
    /// `None` when `text` does not start with a JSON value.
    pub(super) fn read(text: &'a str, key: &str) -> Option<(Option<Self>, &'a str, &'a str)> {
        if !text.starts_with('[') {
            let (value, after) = walk::value(text)?;
            return Some((None, value, after));
        }
        let mut listed = Vec::new();
        let mut keys = Vec::new();
        let after = walk::sequence(text, '[', ']', |element| {
            let named = Named {
                key,
                keys: &mut keys,
            };
            let (name, after) = match walk::read(element, named) {
                Some(read) => read,
                // Not an object, `key` not a string, or a key that cannot be decoded (a lone
                // surrogate): skipped whole.
                None => (None, walk::value(element)?.1),
            };
            if let Some(name) = name {
                listed.push((name, &element[..element.len() - after.len()]));
            }
            Some(after)
        })?;
        let value = &text[..text.len() - after.len()];
        Some((Some(Listed(listed)), value, after))
    }

    /// The elements whose name passes `keep` (asked once each, in order), as a JSON array.
    pub(super) fn kept(&self, mut keep: impl FnMut(&str) -> bool) -> String {
        let size = self.0.iter().map(|(_, e)| e.len() + 1).sum::<usize>();
        let mut out = String::with_capacity(2 + size);
        out.push('[');
        for (name, element) in &self.0 {
            if keep(name) {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(element);
            }
        }
        out.push(']');
        out
    }
}

/// Reads one JSON object for its string member `key`: `Some(name)` when the object has no key
/// twice and `key` is a string, `None` when `key` is missing or some key is there twice, an error
/// when the value is not an object or `key` not a string. `keys` is scratch space, reused from
/// element to element.
struct Named<'k, 'a> {
    key: &'k str,
    keys: &'k mut Vec<Cow<'a, str>>,
}

impl<'de> DeserializeSeed<'de> for Named<'_, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> de::Visitor<'de> for Named<'_, 'de> {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.keys.clear();
        let mut name = None;
        while let Some(Text(key)) = map.next_key()? {
            if key == self.key {
                // Not a string (or a lone surrogate): an error, and the element is dropped.
                let Text(value) = map.next_value()?;
                name = Some(value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            self.keys.push(key);
        }
        self.keys.sort_unstable();
        let unique = self.keys.windows(2).all(|pair| pair[0] != pair[1]);
        Ok(name.filter(|_| unique))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::filter::reference::{Members, mutations};
    use serde_json::value::RawValue;

    const SEEDS: &[&str] = &[
        r#"[{"name":"echo","inputSchema":{"name":"x"}},{"na\u006de":"ab"},7,"echo",null,{"name":1}]"#,
        " [ { \"name\" : \"ab\" } ,\n{\"x\":[1,{\"name\":\"y\"}],\"name\":\"zz\"} , [ ] ] ",
        r#"[{"name":"a","name":"b"},{"a":1,"\u0061":2,"name":"c"},{"\ud800":1,"name":"d"},{"name":"\ud800"}]"#,
        r#"[{"name":"\ud83d\ude00","d":"\ud800"},{"name":"e\u0301"},{},-0,1e999]"#,
    ];

    /// (name, element text) of each element serde_json reads as an object without duplicate
    /// keys and a string `name`; `None` when `text` is not a JSON array.
    fn reference(text: &str) -> Option<Vec<(String, String)>> {
        let elements: Vec<Box<RawValue>> = serde_json::from_str(text).ok()?;
        let named = elements.iter().filter_map(|element| {
            let name = Members::parse(element.get())?.string("name")?;
            Some((name, element.get().to_owned()))
        });
        Some(named.collect())
    }

    fn walked(text: &str) -> Option<Vec<(String, String)>> {
        let (listed, _, after) = Listed::read(walk::skip_whitespace(text), "name")?;
        let listed = listed.filter(|_| walk::skip_whitespace(after).is_empty())?;
        let named = listed
            .0
            .iter()
            .map(|(n, e)| (n.to_string(), (*e).to_owned()));
        Some(named.collect())
    }

    #[test]
    fn names_exactly_the_elements_serde_json_reads() {
        let mut read = 0;
        for text in mutations(SEEDS, 40_000) {
            let walked = walked(&text);
            assert_eq!(walked, reference(&text), "{text}");
            read += usize::from(walked.is_some());
        }
        assert!(read > 1_000, "the edits leave many texts readable ({read})");
    }

    #[test]
    fn only_objects_with_one_string_name_and_no_key_twice_are_listed() {
        let names =
            |text: &str| walked(text).map(|l| l.into_iter().map(|(n, _)| n).collect::<Vec<_>>());
        assert_eq!(names(SEEDS[0]).unwrap(), ["echo", "ab"]);
        assert_eq!(names(SEEDS[1]).unwrap(), ["ab", "zz"]);
        assert!(names(SEEDS[2]).unwrap().is_empty());
        assert_eq!(names(SEEDS[3]).unwrap(), ["\u{1f600}", "e\u{301}"]);
        for text in [
            r#"[{"name":"a"},]"#,
            r#"[{"name":"a"} {"name":"b"}]"#,
            r#"[{"name":"a"}"#,
            "[1x]",
        ] {
            assert_eq!(names(text), None, "{text}");
        }
    }

    #[test]
    fn kept_elements_keep_their_order_and_text() {
        let text = "[ {\"name\":\"b\" , \"x\" : [ 1 ]} ,{\"name\":\"a\"},\n{\"name\":\"c\"} ]";
        let (Some(listed), value, "") = Listed::read(text, "name").unwrap() else {
            panic!("an array");
        };
        assert_eq!(value, text);
        let mut asked = Vec::new();
        let kept = listed.kept(|name| {
            asked.push(name.to_owned());
            name != "a"
        });
        assert_eq!(kept, "[{\"name\":\"b\" , \"x\" : [ 1 ]},{\"name\":\"c\"}]");
        assert_eq!(asked, ["b", "a", "c"]);
        assert_eq!(
            Listed::read("{}", "name").unwrap().0.map(|l| l.0.len()),
            None
        );
    }
}
