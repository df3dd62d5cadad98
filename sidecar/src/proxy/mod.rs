//! The MCP Streamable HTTP proxy.
