//! Name and URI patterns: `*` matches any run of characters, everything else matches itself;
//! in resource patterns an RFC 6570 expression (`{id}`) also matches a run of characters.
//!
//! ```text
//! Glob::new("refund_*")                    tool and prompt names: `*` only
//! Glob::uri("file:///{+path}")             resources: `*`, `{+x}`/`{#x}` (any run),
//!                                          other `{x}` (a run without '/', one path segment)
//! matches(text): `*` only ──► greedy scan, O(len)
//!                with `{x}` ──► the set of reachable positions, O(parts × len)
//! ```
//!
//! A URI template's own text (`demo://items/{id}`, from `resources/templates/list` or a
//! completion's `ref/resource`) is matched like a URI: a grant `demo://items/*` covers it, a
//! grant `demo://items/1` does not.

/// A name, URI, glob or URI template.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Glob {
    pattern: String,
    /// The pattern cut into parts, when it holds a URI-template expression.
    parts: Option<Box<[Part]>>,
}

/// One piece of a URI pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    Literal(Box<str>),
    /// `*`, `{+x}`, `{#x}`: any run of characters.
    Any,
    /// `{x}`, `{/x}`, `{?x}` …: a run of characters without `/`.
    Segment,
}

impl Glob {
    /// A tool or prompt name, or a glob of one.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            parts: None,
        }
    }

    /// A resource URI, URI glob or URI template.
    pub fn uri(pattern: impl Into<String>) -> Self {
        let pattern = pattern.into();
        let parts = pattern.contains('{').then(|| parts(&pattern));
        Self { pattern, parts }
    }

    /// Whether the pattern matches exactly one text (no `*`, no template expression).
    pub fn is_literal(&self) -> bool {
        self.parts.is_none() && !self.pattern.contains('*')
    }

    /// How many literal characters the pattern has: more means more specific.
    pub fn specificity(&self) -> usize {
        match &self.parts {
            None => self.pattern.chars().filter(|&c| c != '*').count(),
            Some(parts) => parts
                .iter()
                .map(|p| match p {
                    Part::Literal(l) => l.chars().count(),
                    Part::Any | Part::Segment => 0,
                })
                .sum(),
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        match &self.parts {
            None => star_matches(&self.pattern, text),
            Some(parts) => parts_match(parts, text),
        }
    }
}

/// `*`-only matching: each `*` takes the shortest run that lets the rest follow.
fn star_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*` at all
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Cuts a URI pattern into literals, `*` and template expressions. An unclosed `{` is literal.
fn parts(pattern: &str) -> Box<[Part]> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        let expression = (c == '{').then(|| rest.find('}')).flatten();
        let (part, len) = match (c, expression) {
            ('*', _) => (Some(Part::Any), 1),
            ('{', Some(end)) if rest[1..].starts_with(['+', '#']) => (Some(Part::Any), end + 1),
            ('{', Some(end)) => (Some(Part::Segment), end + 1),
            _ => (None, c.len_utf8()),
        };
        match part {
            Some(part) => {
                if !literal.is_empty() {
                    out.push(Part::Literal(std::mem::take(&mut literal).into()));
                }
                out.push(part);
            }
            None => literal.push(c),
        }
        rest = &rest[len..];
    }
    if !literal.is_empty() {
        out.push(Part::Literal(literal.into()));
    }
    out.into()
}

/// Matching with the set of positions of `text` each prefix of `parts` can reach.
fn parts_match(parts: &[Part], text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut reach = vec![false; bytes.len() + 1];
    reach[0] = true;
    for part in parts {
        let mut next = vec![false; bytes.len() + 1];
        match part {
            Part::Literal(l) => {
                for (at, _) in reach.iter().enumerate().filter(|(_, r)| **r) {
                    if bytes[at..].starts_with(l.as_bytes()) {
                        next[at + l.len()] = true;
                    }
                }
            }
            Part::Any => {
                if let Some(first) = reach.iter().position(|r| *r) {
                    next[first..].fill(true);
                }
            }
            Part::Segment => {
                let mut open = false;
                for at in 0..=bytes.len() {
                    open = reach[at] || (open && bytes[at - 1] != b'/');
                    next[at] = open;
                }
            }
        }
        reach = next;
    }
    reach[bytes.len()]
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs() {
        let cases = [
            ("refund", "refund", true),
            ("refund", "refunds", false),
            ("*", "", true),
            ("*", "anything", true),
            ("refund_*", "refund_card", true),
            ("refund_*", "refund_", true),
            ("refund_*", "xrefund_card", false),
            ("*_read", "db_read", true),
            ("*_read", "db_reader", false),
            ("get_*_by_id", "get_user_by_id", true),
            ("get_*_by_id", "get_by_id", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            // Braces in a name pattern are literal.
            ("x{id}", "x{id}", true),
            ("x{id}", "x1", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(name),
                want,
                "{pattern} vs {name}"
            );
        }
        assert!(Glob::new("x").is_literal());
        assert_eq!(Glob::new("refund_*").specificity(), 7);
    }

    #[test]
    fn uri_templates() {
        let cases = [
            ("demo://items/{id}", "demo://items/7", true),
            ("demo://items/{id}", "demo://items/", true),
            ("demo://items/{id}", "demo://items/7/secret", false),
            ("demo://items/{id}/text", "demo://items/7/text", true),
            ("demo://items/{id}/text", "demo://items/7/8/text", false),
            ("file:///{+path}", "file:///etc/passwd", true),
            ("file:///docs/{+path}", "file:///etc/passwd", false),
            ("file:///{a}{b}", "file:///ab", true),
            ("docs://*", "docs://a/b", true),
            ("docs://*/x", "docs://a/b/x", true),
            ("docs://{id}*", "docs://a/b", true),
            // A template's own text, as `resources/templates/list` shows it.
            ("demo://items/*", "demo://items/{id}", true),
            ("demo://items/{id}", "demo://items/{id}", true),
            ("demo://items/1", "demo://items/{id}", false),
            ("file:///docs/*", "file:///{+path}", false),
            // An unclosed brace is literal.
            ("a{b", "a{b", true),
            ("a{b", "ab", false),
        ];
        for (pattern, uri, want) in cases {
            assert_eq!(Glob::uri(pattern).matches(uri), want, "{pattern} vs {uri}");
        }
        assert!(Glob::uri("demo://x").is_literal());
        assert!(!Glob::uri("demo://{x}").is_literal());
        assert_eq!(Glob::uri("demo://{x}/a").specificity(), 9);
    }

    #[test]
    fn long_hostile_uris_match_in_linear_passes() {
        let pattern = Glob::uri("a{x}a{x}a{x}a{x}a{x}a{x}b");
        let text = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
