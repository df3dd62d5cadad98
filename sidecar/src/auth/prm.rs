//! RFC 9728 Protected Resource Metadata and the `WWW-Authenticate` challenges that point to it.

use mcp_warden_crds::Risk;
use mcp_warden_policy::RuleSet;
use serde_json::{Value, json};

/// The path-inserted PRM URL for a resource URI (RFC 9728 §3.1):
/// `https://h/mcp` → `https://h/.well-known/oauth-protected-resource/mcp`.
pub fn metadata_url(resource: &str) -> String {
    let (origin, path) = split_origin(resource);
    let path = path.trim_end_matches('/');
    format!("{origin}/.well-known/oauth-protected-resource{path}")
}

/// `scheme://host[:port]` and the path of an absolute URL.
fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

/// The PRM `scopes_supported`: the base scopes, the scopes policies require, and the scopes of
/// tool entries below `High` risk, sorted and deduplicated. A scope that only High or Critical
/// tools need (an admin scope) is left out: a client that falls back to `scopes_supported`
/// would ask the IdP for it, and an ordinary agent's whole token request would be refused. Such
/// a scope reaches the client through the step-up challenge of the call that needs it.
pub fn scopes_supported(rules: &RuleSet) -> Vec<&str> {
    let mut scopes: Vec<&str> = rules
        .base_scopes
        .iter()
        .chain(
            [&rules.tools, &rules.resources, &rules.prompts]
                .into_iter()
                .flat_map(|entries| &entries.list)
                .filter(|e| matches!(e.risk, Risk::Low | Risk::Medium))
                .flat_map(|e| e.scopes.iter()),
        )
        .chain(rules.policies.iter().flat_map(|p| p.scopes.iter()))
        .map(String::as_str)
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// The `scope` of the 401 challenge: what every caller asks for to begin. The McpTool's
/// `baseScopes`, else the scopes every McpPolicy requires of every call (their intersection),
/// else none. Never an admin scope: calls that need more are answered with a step-up challenge.
pub fn challenge_scopes(rules: &RuleSet) -> Vec<&str> {
    if !rules.base_scopes.is_empty() {
        return rules.base_scopes.iter().map(String::as_str).collect();
    }
    let mut policies = rules.policies.iter();
    let Some(first) = policies.next() else {
        return Vec::new();
    };
    let mut common: Vec<&str> = first.scopes.iter().map(String::as_str).collect();
    for p in policies {
        common.retain(|s| p.scopes.iter().any(|t| t == s));
    }
    common.sort_unstable();
    common.dedup();
    common
}

/// The PRM document for the rules in force.
pub fn document(rules: &RuleSet, resource: &str) -> Value {
    let scopes = scopes_supported(rules);
    json!({
        "resource": resource,
        "authorization_servers": rules.issuers.iter().map(|i| i.issuer.as_str()).collect::<Vec<_>>(),
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
    })
}

/// `Bearer resource_metadata="…"` (plus `error="invalid_token"` when a token was sent).
pub fn challenge(resource: &str, invalid_token: Option<&str>) -> String {
    let mut value = format!("Bearer resource_metadata=\"{}\"", metadata_url(resource));
    if let Some(description) = invalid_token {
        value.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            quote_safe(description)
        ));
    }
    value
}

/// `Bearer resource_metadata="…", scope="…"` (AUTH-03: the scope hint when `scopes` is not
/// empty), plus `error="invalid_token", error_description="…"` when a token was sent.
pub fn challenge_with_scope(resource: &str, scope: &str, invalid_token: Option<&str>) -> String {
    let mut value = format!("Bearer resource_metadata=\"{}\"", metadata_url(resource));
    let scope = quote_safe(scope);
    if !scope.is_empty() {
        value.push_str(&format!(", scope=\"{scope}\""));
    }
    if let Some(description) = invalid_token {
        value.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            quote_safe(description)
        ));
    }
    value
}

/// `Bearer error="insufficient_scope", scope="…", resource_metadata="…"`.
pub fn insufficient_scope(resource: &str, needed: &[String]) -> String {
    format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\"",
        quote_safe(&needed.join(" ")),
        metadata_url(resource)
    )
}

/// Keeps a header quoted-string safe (RFC 6750 §3 allows no `"` or `\` there).
fn quote_safe(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_inserted_metadata_url() {
        assert_eq!(
            metadata_url("https://h.example/mcp"),
            "https://h.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:9401/a/b/"),
            "http://127.0.0.1:9401/.well-known/oauth-protected-resource/a/b"
        );
        assert_eq!(
            metadata_url("https://h.example"),
            "https://h.example/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn challenges_are_quoted_safely() {
        assert_eq!(
            challenge("https://h/mcp", Some("bad \"sig\"")),
            "Bearer resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\", error=\"invalid_token\", error_description=\"bad sig\""
        );
        assert_eq!(
            challenge_with_scope("https://h/mcp", "a:read b", None),
            "Bearer resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\", scope=\"a:read b\""
        );
        assert_eq!(
            challenge_with_scope("https://h/mcp", "", Some("the token has expired")),
            "Bearer resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
        assert_eq!(
            insufficient_scope("https://h/mcp", &["a:read".into(), "b".into()]),
            "Bearer error=\"insufficient_scope\", scope=\"a:read b\", resource_metadata=\"https://h/.well-known/oauth-protected-resource/mcp\""
        );
    }
}
