//! The benchmark's policy set, issuers and tokens, written to a folder.
//!
//! ```text
//! Fixture::generate(params) ──► <dir>/keys/{rs,es}.pem        (openssl genpkey: RSA 2048, P-256)
//!                           ──► <dir>/config/tool.yaml        1 McpTool, 200 tool entries, 2 issuers
//!                           ──► <dir>/config/clients.yaml     1,000 McpClients (even: RS256 issuer,
//!                           │                                 odd: ES256 issuer), rate limit that never triggers
//!                           ──► <dir>/config/policies.yaml    2,000 McpPolicies (policy i < 1,000 grants
//!                           │                                 `echo` to bench-client-i, each lists 3 clients, 5 tools)
//!                           ──► <dir>/issuers.json            [{listen, issuer, jwks}] for `bench-tool issuer`
//!                           ──► <dir>/tokens.txt              one access token per client, client order
//!                           ──► <dir>/wrk-tokens.lua          wrk script: tools/call echo, rotating 200 tokens
//! ```
//!
//! Tokens are RFC 9068 shaped (`typ: at+jwt`, `client_id`, `scope`), audience = the sidecar's
//! resource, valid for 12 h.

use crate::upstream::tool_name;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use serde_json::{Value, json};
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

/// Sizes and addresses of the generated set (also the flags of `bench-tool gen`).
#[derive(Clone, Debug, clap::Args)]
pub struct Params {
    /// McpClients.
    #[arg(long, default_value_t = 1_000)]
    pub clients: usize,
    /// Tool entries of the McpTool.
    #[arg(long, default_value_t = 200)]
    pub tools: usize,
    /// McpPolicies (at least `clients`, so each client is granted `echo`).
    #[arg(long, default_value_t = 2_000)]
    pub policies: usize,
    /// `http://127.0.0.1:<port>` of the RS256 issuer.
    #[arg(long)]
    pub issuer_rs: String,
    /// `http://127.0.0.1:<port>` of the ES256 issuer.
    #[arg(long)]
    pub issuer_es: String,
    /// The sidecar's public resource URL (token audience).
    #[arg(long)]
    pub resource: String,
    /// The upstream MCP URL.
    #[arg(long)]
    pub upstream: String,
}

impl Params {
    /// A set of the given sizes whose two issuers get ports free on 127.0.0.1 right now (tests
    /// and micro-benches).
    pub fn on_free_ports(
        clients: usize,
        tools: usize,
        policies: usize,
        resource: &str,
        upstream: &str,
    ) -> Self {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| format!("http://{a}"))
                .unwrap_or_else(|_| "http://127.0.0.1:1".into())
        };
        Self {
            clients,
            tools,
            policies,
            issuer_rs: free(),
            issuer_es: free(),
            resource: resource.to_owned(),
            upstream: upstream.to_owned(),
        }
    }
}

/// Why the fixture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// `openssl` failed or is missing.
    #[error("openssl genpkey failed ({0}): install openssl (Debian: apt-get install openssl)")]
    OpenSsl(String),
    /// Key or token trouble.
    #[error("signing: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// Writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// The namespace of every generated object.
pub const NAMESPACE: &str = "bench";
/// The scope every tool requires and every token carries.
pub const SCOPE: &str = "bench:call";

/// The name of client `i`.
pub fn client_name(i: usize) -> String {
    format!("bench-client-{i:04}")
}

fn write(path: &Path, text: &str) -> Result<(), FixtureError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| FixtureError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| FixtureError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A new private key in PKCS#8 PEM, from `openssl genpkey`.
fn genpkey(args: &[&str]) -> Result<String, FixtureError> {
    let out = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .map_err(|e| FixtureError::OpenSsl(e.to_string()))?;
    if !out.status.success() {
        return Err(FixtureError::OpenSsl(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| FixtureError::OpenSsl(e.to_string()))
}

/// One signing issuer: its key and public JWKS.
#[derive(Clone)]
pub struct SigningIssuer {
    /// `iss`.
    pub issuer: String,
    /// RS256 or ES256.
    pub alg: Algorithm,
    /// The key id.
    pub kid: String,
    key: EncodingKey,
    /// The public JWKS document.
    pub jwks: Value,
}

impl std::fmt::Debug for SigningIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIssuer")
            .field("issuer", &self.issuer)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningIssuer {
    /// An issuer signing with the PKCS#8 PEM `pem` (RSA for RS256, P-256 for ES256).
    pub fn from_pem(issuer: &str, alg: Algorithm, pem: &str) -> Result<Self, FixtureError> {
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes())?,
            _ => EncodingKey::from_rsa_pem(pem.as_bytes())?,
        };
        let kid = format!("{alg:?}-1").to_lowercase();
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg)?)
            .map_err(jsonwebtoken::errors::Error::from)?;
        jwk["kid"] = Value::from(kid.clone());
        jwk["use"] = Value::from("sig");
        Ok(Self {
            issuer: issuer.to_owned(),
            alg,
            kid,
            key,
            jwks: json!({"keys": [jwk]}),
        })
    }

    /// A new RS256 (RSA 2048) or ES256 (P-256) issuer.
    pub fn generate(issuer: &str, alg: Algorithm) -> Result<(Self, String), FixtureError> {
        let pem = match alg {
            Algorithm::ES256 => {
                genpkey(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])?
            }
            _ => genpkey(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])?,
        };
        Ok((Self::from_pem(issuer, alg, &pem)?, pem))
    }

    /// An access token for `client_id`, audience `resource`, valid 12 h from `now`.
    pub fn token(
        &self,
        client_id: &str,
        resource: &str,
        now: Timestamp,
        jti: &str,
    ) -> Result<String, FixtureError> {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        let iat = now.as_second();
        let claims = json!({
            "iss": self.issuer, "aud": resource, "sub": client_id, "client_id": client_id,
            "scope": format!("{SCOPE} mcp:tools"), "iat": iat, "exp": iat + 12 * 3600, "jti": jti,
        });
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// The McpTool: 200 tool entries (`echo`, `tool_001`, …), both issuers, a 24 h token lifetime.
pub fn tool_yaml(p: &Params) -> String {
    let mut out = format!(
        "apiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {{name: bench, namespace: {NAMESPACE}}}\nspec:\n  owner: team-bench\n  server:\n    selector: {{matchLabels: {{app: bench}}}}\n    resource: \"{}\"\n    upstream: \"{}\"\n  authentication:\n    maxTokenLifetime: 24h\n    issuers:\n    - {{issuer: \"{}\", algorithms: [RS256]}}\n    - {{issuer: \"{}\", algorithms: [ES256]}}\n  tools:\n",
        p.resource, p.upstream, p.issuer_rs, p.issuer_es
    );
    for t in 0..p.tools {
        let _ = writeln!(out, "  - {{name: {}, scopes: [\"{SCOPE}\"]}}", tool_name(t));
    }
    out
}

/// The issuer of client `i`: even → RS256, odd → ES256.
pub fn issuer_of(p: &Params, i: usize) -> &str {
    if i.is_multiple_of(2) {
        &p.issuer_rs
    } else {
        &p.issuer_es
    }
}

/// One McpClient; `suspended` for the revocation probes.
pub fn client_yaml(p: &Params, i: usize, suspended: bool) -> String {
    format!(
        "apiVersion: mcpwarden.io/v1alpha1\nkind: McpClient\nmetadata: {{name: {name}, namespace: {NAMESPACE}, labels: {{team: t{team}}}}}\nspec:\n  owner: owner-{i}@example.com\n  identity: {{issuer: \"{iss}\", clientId: {name}}}\n  suspended: {suspended}\n  quota: {{rateLimit: {{requests: 100000, period: 1s, burst: 100000}}, dailyCalls: 1000000000}}\n",
        name = client_name(i),
        team = i % 20,
        iss = issuer_of(p, i),
    )
}

/// Every McpClient, client 0 suspended or not.
pub fn clients_yaml(p: &Params, first_suspended: bool) -> String {
    (0..p.clients)
        .map(|i| client_yaml(p, i, i == 0 && first_suspended))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The McpPolicies: policy `i` lists three clients and five tools; policies below `clients`
/// grant `echo` to `bench-client-i`.
pub fn policies_yaml(p: &Params) -> String {
    let n = p.clients.max(1);
    let tools = p.tools.max(2);
    let mut out = String::new();
    for i in 0..p.policies.max(p.clients) {
        let clients = [i % n, (i * 7 + 3) % n, (i * 13 + 5) % n]
            .map(|c| format!("{{name: {}}}", client_name(c)))
            .join(", ");
        let mut names: Vec<String> = (0..4)
            .map(|j| tool_name(1 + (i * 3 + j * 17) % (tools - 1)))
            .collect();
        names.insert(
            0,
            if i < p.clients {
                "echo".into()
            } else {
                tool_name(1 + i % (tools - 1))
            },
        );
        names.sort();
        names.dedup();
        let _ = write!(
            out,
            "{}apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {{name: bench-policy-{i:04}, namespace: {NAMESPACE}}}\nspec:\n  clients: [{clients}]\n  tools: [{{toolRef: bench, names: [{}]}}]\n  rateLimit: {{requests: 100000, period: 1s}}\n",
            if i == 0 { "" } else { "---\n" },
            names.join(", ")
        );
    }
    out
}

/// A wrk script: POST tools/call `echo` to `path`, rotating through `tokens`.
pub fn wrk_script(tokens: &[String]) -> String {
    let list = tokens
        .iter()
        .map(|t| format!("  \"{t}\""))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        r#"-- generated by bench-tool gen: tools/call echo, one token of {n} per request in turn
local tokens = {{
{list}
}}
local i = 0
wrk.method = "POST"
wrk.body = '{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hello"}}}}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
request = function()
  i = i % #tokens + 1
  wrk.headers["Authorization"] = "Bearer " .. tokens[i]
  return wrk.format()
end
response = function(status, headers, body)
  if status ~= 200 then
    error("HTTP " .. status .. ": " .. body)
  end
end
"#,
        n = tokens.len()
    )
}

/// Writes the whole fixture into `dir`.
pub fn generate(dir: &Path, p: &Params) -> Result<(), FixtureError> {
    let (rs, rs_pem) = SigningIssuer::generate(&p.issuer_rs, Algorithm::RS256)?;
    let (es, es_pem) = SigningIssuer::generate(&p.issuer_es, Algorithm::ES256)?;
    write(&dir.join("keys/rs.pem"), &rs_pem)?;
    write(&dir.join("keys/es.pem"), &es_pem)?;
    write(&dir.join("config/tool.yaml"), &tool_yaml(p))?;
    write(&dir.join("config/clients.yaml"), &clients_yaml(p, false))?;
    write(&dir.join("clients-suspended.yaml"), &clients_yaml(p, true))?;
    write(&dir.join("config/policies.yaml"), &policies_yaml(p))?;
    let issuers = json!([
        {"issuer": rs.issuer, "jwks": rs.jwks},
        {"issuer": es.issuer, "jwks": es.jwks},
    ]);
    write(&dir.join("issuers.json"), &issuers.to_string())?;
    let now = Timestamp::now();
    let mut tokens = Vec::with_capacity(p.clients);
    for i in 0..p.clients {
        let issuer = if i.is_multiple_of(2) { &rs } else { &es };
        tokens.push(issuer.token(&client_name(i), &p.resource, now, &format!("jti-{i}"))?);
    }
    write(&dir.join("tokens.txt"), &(tokens.join("\n") + "\n"))?;
    let rotation: Vec<String> = tokens.iter().take(200).cloned().collect();
    write(&dir.join("wrk-tokens.lua"), &wrk_script(&rotation))?;
    Ok(())
}
