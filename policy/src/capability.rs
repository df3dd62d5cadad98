//! The three things an MCP server exposes and a policy grants: tools, resources and prompts.
//!
//! ```text
//! McpTool.spec.tools / resources / prompts ──► Entries (what each requires; exact first, then
//!                                              globs by specificity; defaultAction for the rest)
//! McpPolicy.spec.tools[].names / resources / prompts ──► Grants per client (exact names by id,
//!                                              then globs, each in grant order)
//! ```
//!
//! Tools and prompts are matched by name (`*` globs); resources by URI, URI glob or RFC 6570
//! template (`Glob::uri`).

use crate::FastMap;
use crate::glob::Glob;
use mcp_warden_crds::{DefaultAction, Risk, ToolAuditSpec};
use std::{fmt, sync::Arc};

/// What a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// A tool, by name (`tools/call`).
    Tool,
    /// A resource, by URI (`resources/read`, `resources/subscribe`), or a resource template by
    /// its template text (`resources/templates/list`, `completion/complete`).
    Resource,
    /// A prompt, by name (`prompts/get`, `completion/complete`).
    Prompt,
}

impl Capability {
    /// All of them, in order.
    pub const ALL: [Self; 3] = [Self::Tool, Self::Resource, Self::Prompt];

    /// The pattern of a name or URI of this capability.
    pub fn pattern(self, text: &str) -> Glob {
        match self {
            Self::Resource => Glob::uri(text),
            Self::Tool | Self::Prompt => Glob::new(text),
        }
    }

    /// Lowercase singular (`tool`, `resource`, `prompt`), for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Resource => "resource",
            Self::Prompt => "prompt",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rate with a burst, compiled from a `RateLimit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Calls per `period`.
    pub requests: u32,
    /// The period.
    pub period: std::time::Duration,
    /// Calls allowed back to back.
    pub burst: u32,
}

/// What one entry of the McpTool (a tool, resource or prompt, or a glob of them) requires.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The name, URI, glob or template as written.
    pub pattern: Glob,
    /// Scopes the token must carry.
    pub scopes: Vec<String>,
    /// Declared risk.
    pub risk: Risk,
    /// Cap on uses by all callers.
    pub rate_limit: Option<Rate>,
    /// Audit redaction and capture.
    pub audit: Option<ToolAuditSpec>,
}

/// The entries of one capability, indexed: exact names by hash, then globs by specificity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entries {
    /// In order of precedence (exact names first, then globs by specificity).
    pub list: Vec<Entry>,
    /// What undeclared names get.
    pub default_action: DefaultAction,
    exact: FastMap<String, usize>,
    /// Where the glob entries start in `list`.
    globs_from: usize,
}

impl Entries {
    /// Indexes `list` (any order) with the default action for names it does not match.
    pub fn new(mut list: Vec<Entry>, default_action: DefaultAction) -> Self {
        // Exact names first; globs by specificity (longest literal first), ties by pattern text.
        list.sort_by(|a, b| {
            let key = |e: &Entry| {
                (
                    !e.pattern.is_literal(),
                    std::cmp::Reverse(e.pattern.specificity()),
                )
            };
            key(a)
                .cmp(&key(b))
                .then_with(|| a.pattern.as_str().cmp(b.pattern.as_str()))
        });
        let exact = list
            .iter()
            .enumerate()
            .filter(|(_, e)| e.pattern.is_literal())
            .map(|(i, e)| (e.pattern.as_str().to_owned(), i))
            .collect();
        let globs_from = list.partition_point(|e| e.pattern.is_literal());
        Self {
            list,
            default_action,
            exact,
            globs_from,
        }
    }

    /// The entry governing `name`: the exact entry, else the most specific glob.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        if let Some(&i) = self.exact.get(name) {
            return Some(&self.list[i]);
        }
        self.list[self.globs_from..]
            .iter()
            .find(|e| e.pattern.matches(name))
    }

    /// The scopes `name` requires, or `None` when it is not declared and undeclared names are
    /// denied (nobody may use it, whatever the grants).
    pub fn scopes(&self, name: &str) -> Option<&[String]> {
        match self.entry(name) {
            Some(entry) => Some(&entry.scopes),
            None if self.default_action == DefaultAction::Allow => Some(&[]),
            None => None,
        }
    }
}

/// One client's grants of one capability: exact names, then globs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grants {
    /// `(name id, policy index)` sorted by name id, each name's policies in grant order. Names
    /// are interned once per RuleSet in `names` (a HashMap of Strings per client took most of
    /// the memory of 1,000 clients).
    exact: Box<[(u32, u32)]>,
    /// The names granted by exact name, shared by every client of the RuleSet.
    names: Arc<GrantNames>,
    /// Glob grants, in grant order.
    glob: Box<[(Glob, usize)]>,
}

/// The interned names of a RuleSet's exact grants of one capability: name → id.
#[derive(Clone, Default, PartialEq)]
pub struct GrantNames(FastMap<Box<str>, u32>);

impl fmt::Debug for GrantNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GrantNames({} names)", self.0.len())
    }
}

/// Builds every client's grants of one capability.
#[derive(Debug)]
pub struct GrantsBuilder {
    names: FastMap<Box<str>, u32>,
    exact: Vec<Vec<(u32, u32)>>,
    glob: Vec<Vec<(Glob, usize)>>,
}

impl GrantsBuilder {
    /// For `clients` clients.
    pub fn new(clients: usize) -> Self {
        Self {
            names: FastMap::default(),
            exact: vec![Vec::new(); clients],
            glob: vec![Vec::new(); clients],
        }
    }

    /// Client `client` is granted `pattern` by policy `policy`.
    pub fn grant(&mut self, client: usize, pattern: &Glob, policy: usize) {
        if pattern.is_literal() {
            let next = u32::try_from(self.names.len()).expect("fewer than 2^32 names");
            let id = *self.names.entry(pattern.as_str().into()).or_insert(next);
            let policy = u32::try_from(policy).expect("fewer than 2^32 policies");
            self.exact[client].push((id, policy));
        } else {
            self.glob[client].push((pattern.clone(), policy));
        }
    }

    /// Each client's grants, in client order.
    pub fn build(self) -> impl Iterator<Item = Grants> {
        let names = Arc::new(GrantNames(self.names));
        self.exact
            .into_iter()
            .zip(self.glob)
            .map(move |(mut exact, glob)| {
                // Stable: each name's policies stay in grant order.
                exact.sort_by_key(|&(name, _)| name);
                Grants {
                    exact: exact.into_boxed_slice(),
                    names: names.clone(),
                    glob: glob.into_boxed_slice(),
                }
            })
    }
}

impl Grants {
    /// Policy indexes granting `name`: exact grants, then glob grants, each in grant order
    /// (policy order, then name order within a policy).
    pub fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = usize> + 'a {
        let exact: &[(u32, u32)] = match self.names.0.get(name) {
            Some(&id) => {
                let start = self.exact.partition_point(|&(n, _)| n < id);
                let len = self.exact[start..].partition_point(|&(n, _)| n == id);
                &self.exact[start..start + len]
            }
            None => &[],
        };
        exact.iter().map(|&(_, p)| p as usize).chain(
            self.glob
                .iter()
                .filter(move |(g, _)| g.matches(name))
                .map(|(_, p)| *p),
        )
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.glob.is_empty()
    }
}
