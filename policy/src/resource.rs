//! One typed mcp-warden object, and how objects are named.

use mcp_warden_crds::{McpClient, McpPolicy, McpTool};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The three kinds mcp-warden reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A governed MCP server.
    McpTool,
    /// An agent identity.
    McpClient,
    /// A grant of tools to clients.
    McpPolicy,
}

impl Kind {
    /// Parses a `kind` field.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "McpTool" => Some(Self::McpTool),
            "McpClient" => Some(Self::McpClient),
            "McpPolicy" => Some(Self::McpPolicy),
            _ => None,
        }
    }

    /// The `kind` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::McpTool => "McpTool",
            Self::McpClient => "McpClient",
            Self::McpPolicy => "McpPolicy",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one object: kind, namespace and name. Decisions and problems point at objects this way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's kind.
    pub kind: Kind,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl ObjectRef {
    /// Builds a reference.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

impl ObjectRef {
    /// `namespace/name` (without the kind), written where it is used: no `String` needed.
    pub fn ns_name(&self) -> NsName<'_> {
        NsName(self)
    }
}

/// See [`ObjectRef::ns_name`].
#[derive(Clone, Copy, Debug)]
pub struct NsName<'a>(&'a ObjectRef);

impl fmt::Display for NsName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.namespace, self.0.name)
    }
}

/// One typed object read from YAML or a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    /// An `McpTool`.
    Tool(McpTool),
    /// An `McpClient`.
    Client(McpClient),
    /// An `McpPolicy`.
    Policy(McpPolicy),
}

impl Resource {
    /// The kind of the object.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Tool(_) => Kind::McpTool,
            Self::Client(_) => Kind::McpClient,
            Self::Policy(_) => Kind::McpPolicy,
        }
    }

    /// The object's reference (namespace `default` when unset).
    pub fn object_ref(&self) -> ObjectRef {
        let meta = match self {
            Self::Tool(o) => &o.metadata,
            Self::Client(o) => &o.metadata,
            Self::Policy(o) => &o.metadata,
        };
        ObjectRef::new(
            self.kind(),
            meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
            meta.name.as_deref().unwrap_or_default(),
        )
    }
}

/// The namespace objects without one land in, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_name_leaves_out_the_kind() {
        let o = ObjectRef::new(Kind::McpPolicy, "team-a", "readers");
        assert_eq!(o.ns_name().to_string(), "team-a/readers");
        assert_eq!(o.to_string(), "McpPolicy/team-a/readers");
    }
}
