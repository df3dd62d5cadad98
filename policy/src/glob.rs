//! Tool-name globs: `*` matches any run of characters, everything else matches itself.

/// A tool name or glob.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Wraps a pattern.
    pub fn new(pattern: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
        }
    }

    /// Whether the pattern has no `*` (matches exactly one name).
    pub fn is_literal(&self) -> bool {
        !self.pattern.contains('*')
    }

    /// How many literal characters the pattern has: more means more specific.
    pub fn specificity(&self) -> usize {
        self.pattern.chars().filter(|&c| c != '*').count()
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.pattern.split('*');
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
}
