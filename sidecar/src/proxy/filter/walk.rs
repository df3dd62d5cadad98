//! JSON text walked one value at a time: serde_json reads (and checks) each value, the walk
//! notes where it ends, so that a value's exact text can be kept, dropped or replaced without
//! reading the text a second time.
//!
//! ```text
//! sequence(text, '[', ']', item)   "[" item ("," item)* "]"   item(text at it) ──► text after it
//! read(text, seed)                 one value, read by a serde seed ──► (what it read, text after)
//! value(text)                      one value, checked, not kept ──► (its text, text after)
//! ```
//!
//! Whitespace and delimiters are JSON's (RFC 8259), as serde_json reads them; a value serde_json
//! refuses ends the walk (`None`).

use serde::de::{DeserializeSeed, IgnoredAny};
use std::marker::PhantomData;

/// Walks `open` item (`,` item)* `close`, or an empty `open` `close`, each item read by `item`
/// (given the text at the item, it returns the text after it): the text after `close`.
pub(super) fn sequence<'a>(
    text: &'a str,
    open: char,
    close: char,
    mut item: impl FnMut(&'a str) -> Option<&'a str>,
) -> Option<&'a str> {
    let mut rest = skip_whitespace(text).strip_prefix(open)?;
    if let Some(after) = skip_whitespace(rest).strip_prefix(close) {
        return Some(after);
    }
    loop {
        rest = skip_whitespace(item(skip_whitespace(rest))?);
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => return rest.strip_prefix(close),
        }
    }
}

/// The JSON value at the start of `text`, read by `seed`: (what it read, the text after it).
pub(super) fn read<'a, S: DeserializeSeed<'a>>(
    text: &'a str,
    seed: S,
) -> Option<(S::Value, &'a str)> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut deserializer).ok()?;
    let end = deserializer.into_iter::<IgnoredAny>().byte_offset();
    Some((value, text.get(end..)?))
}

/// The JSON value at the start of `text`: (its text, the text after it).
pub(super) fn value(text: &str) -> Option<(&str, &str)> {
    let (IgnoredAny, after) = read(text, PhantomData::<IgnoredAny>)?;
    text.split_at_checked(text.len() - after.len())
}

/// The text with its leading JSON whitespace removed.
pub(super) fn skip_whitespace(text: &str) -> &str {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
}
