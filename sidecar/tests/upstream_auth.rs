//! What the upstream learns about each call (issue 22, `McpTool.spec.upstreamAuth`), end to end
//! in standalone mode with real peers, all on 127.0.0.1:
//!
//! ```text
//! test ──token (oidc-provider)──► mcp-warden-sidecar (the binary, --upstream-identity-key,
//!        --upstream-secrets-dir, --audit-dir) ──► identity_upstream.py (Python MCP SDK + PyJWT:
//!        verifies the identity JWT against the sidecar's admin /.well-known/jwks.json, 401
//!        otherwise; records what it received)
//! ```
//!
//! * the upstream verifies the JWT with PyJWT and its claims name the caller, the McpClient, the
//!   McpTool and the grant; the caller's token never arrives;
//! * the credential from the Secret file arrives, and a rewritten file is in use within 1 s
//!   (measured, printed);
//! * a rotated signing key is published at once and signs 2 s later (`--upstream-identity-key-
//!   publish-seconds`), the upstream verifying every call throughout; both keys stay published;
//! * a missing credential refuses the call (502, `upstream_auth_failed`) and the upstream
//!   receives nothing;
//! * the audit records say what was applied, never a value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use mcp_warden_test_support::{
    Idp, IdpOptions, Proc, eventually,
    files::{UPSTREAM_AUTH_RESOURCE, config_for, identity_upstream, json_lines, write_atomically},
    tls::self_signed,
};
use mcp_warden_wire::keys::kids;
use proxy_support::post;
use serde_json::{Value, json};
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

/// How long a rotated identity key is published before it signs (the default is 60 s).
const PUBLISH_AHEAD_SECS: u64 = 2;

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": if tool == "echo" { json!({"message": "hi"}) } else { json!({}) }}})
    .to_string()
}

async fn jwks(admin: &str) -> Value {
    let reply = proxy_support::call(
        http::Method::GET,
        &format!("{admin}/.well-known/jwks.json"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 200);
    reply.json()
}

/// The sidecar binary (standalone, audited, with an identity key and a secrets folder) in
/// front of identity_upstream.py, for one configuration of `tests/fixtures/configs/`.
struct Stack {
    _dir: tempfile::TempDir,
    idp: Idp,
    sidecar: Proc,
    _upstream: Proc,
    resource: String,
    upstream: String,
    base: String,
    admin: String,
    key_file: PathBuf,
    secrets: PathBuf,
    audit: PathBuf,
    record: PathBuf,
}

impl Stack {
    /// `secrets`: the files `<name>/<key>` of the secrets folder, before the sidecar starts.
    fn start(config: &str, idp: IdpOptions, secrets: &[(&str, &str)]) -> Self {
        // Every port is bound at 0 by its own process: none is chosen before it is bound.
        let dir = tempfile::tempdir().unwrap();
        let jwks_url_file = dir.path().join("jwks-url");
        let record = dir.path().join("upstream.jsonl");
        let (upstream_proc, upstream) =
            identity_upstream(&jwks_url_file, &record, &[("JWKS_LIFESPAN", "1")]);
        let resource = UPSTREAM_AUTH_RESOURCE.to_owned();
        let idp = idp
            .resource(&resource)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let key_file = dir.path().join("identity.pem");
        std::fs::write(&key_file, self_signed().key_pem).unwrap();
        let secrets_dir = dir.path().join("secrets");
        for (file, value) in secrets {
            let path = secrets_dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            write_atomically(&path, value);
        }
        std::fs::create_dir_all(&secrets_dir).unwrap();
        let config_file = dir.path().join("config.yaml");
        let text = config_for(config, &resource, &upstream, &idp.issuer);
        std::fs::write(&config_file, text).unwrap();
        let audit = dir.path().join("audit");
        let ready = dir.path().join("ready.json");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-warden-sidecar"));
        cmd.arg("run")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--bypass-check-seconds", "0"])
            .arg("--config")
            .arg(&config_file)
            .arg("--upstream-identity-key")
            .arg(&key_file)
            .args([
                "--upstream-identity-key-publish-seconds",
                &PUBLISH_AHEAD_SECS.to_string(),
            ])
            .arg("--upstream-secrets-dir")
            .arg(&secrets_dir)
            .arg("--audit-dir")
            .arg(&audit)
            .arg("--ready-file")
            .arg(&ready);
        let (sidecar, ()) = Proc::spawn("mcp-warden-sidecar", cmd, Duration::from_secs(30), |l| {
            l.contains("listening").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let addrs: Value = eventually("the ready file", Duration::from_secs(10), || {
            serde_json::from_str::<Value>(&std::fs::read_to_string(&ready).ok()?).ok()
        });
        let admin = format!("http://{}", addrs["admin"].as_str().unwrap());
        write_atomically(&jwks_url_file, &format!("{admin}/.well-known/jwks.json"));
        Self {
            base: format!("http://{}/mcp", addrs["listen"].as_str().unwrap()),
            _dir: dir,
            idp,
            sidecar,
            _upstream: upstream_proc,
            resource,
            upstream,
            admin,
            key_file,
            secrets: secrets_dir,
            audit,
            record,
        }
    }

    /// The final audit records' `unmapped.mcp_warden`, once `ready` holds for them (10 s).
    async fn audit_until(&self, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let ext: Vec<Value> = json_lines(&self.audit.join("audit.jsonl"))
                .iter()
                .map(|r| r["unmapped"]["mcp_warden"].clone())
                .collect();
            if ready(&ext) {
                return ext;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{ext:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_credentials_reach_a_verifying_upstream() {
    let stack = Stack::start(
        "upstream-auth.yaml",
        IdpOptions::new(""),
        &[("upstream-api/token", "v1-credential\n")],
    );
    let Stack {
        idp,
        sidecar,
        resource,
        upstream,
        base,
        admin,
        key_file,
        secrets,
        record,
        ..
    } = &stack;
    let secret_file = secrets.join("upstream-api/token");

    let token = idp
        .token("agent-alpha", "mcp:tools.list mcp:tools.call")
        .unwrap();
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    // 1. The upstream verifies the JWT and answers who called.
    let first_key = kids(&jwks(admin).await);
    assert_eq!(first_key.len(), 1, "{first_key:?}");
    let reply = post(base, &headers, &call(1, "whoami")).await;
    assert_eq!(reply.status, 200, "{}\n{}", reply.text(), sidecar.log());
    let answer = reply.answer(&json!(1));
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    let claims: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("{answer}"));
    assert_eq!(claims["sub"], "agent-alpha", "{claims}");
    assert_eq!(claims["client_id"], "agent-alpha", "{claims}");
    assert_eq!(claims["mcp_client"], "demo/agent-alpha", "{claims}");
    assert_eq!(claims["mcp_tool"], "demo/verified", "{claims}");
    assert_eq!(claims["grants"], json!(["demo/all-tools"]), "{claims}");
    assert_eq!(claims["iss"], resource.as_str(), "{claims}");
    assert_eq!(claims["aud"], upstream.as_str(), "{claims}");
    assert_eq!(claims["act"]["sub"], "agent-alpha", "{claims}");
    assert_eq!(claims["act"]["iss"], idp.issuer.as_str(), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 30, "{claims}");
    let seen = json_lines(record);
    let last = seen.last().unwrap();
    assert!(last["error"].is_null(), "{last}");
    assert_eq!(last["credential"], "v1-credential", "{last}");
    assert!(
        last["authorization"].is_null(),
        "the caller's token reached the upstream: {last}"
    );

    // 2. A rewritten Secret file is sent within 1 s.
    let mut latencies = Vec::new();
    for (round, value) in ["v2-credential", "v3-credential", "v4-credential"]
        .iter()
        .enumerate()
    {
        let started = Instant::now();
        write_atomically(&secret_file, value);
        let mut id = 100 * (round as u64 + 1);
        let took = loop {
            id += 1;
            let reply = post(base, &headers, &call(id, "echo")).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            if json_lines(record).last().unwrap()["credential"] == *value {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{value} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        latencies.push(took);
    }
    eprintln!("Secret rotation reached the upstream's header after {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );

    // 3. A rotated key is published at once and signs PUBLISH_AHEAD later; the upstream
    //    (PyJWKClient, JWKS cached 1 s) verifies every call throughout; the old key stays.
    std::fs::write(key_file, self_signed().key_pem).unwrap();
    let started = Instant::now();
    let both = loop {
        let keys = kids(&jwks(admin).await);
        if keys.len() == 2 {
            break keys;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new key was not published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        both[1], first_key[0],
        "the old key stays published: {both:?}"
    );
    let published = started.elapsed();
    let mut id = 500;
    let switched = loop {
        id += 1;
        let reply = post(base, &headers, &call(id, "whoami")).await;
        let last = json_lines(record).last().unwrap().clone();
        assert_eq!(reply.status, 200, "{}\n{last}", reply.text());
        assert!(last["error"].is_null(), "the upstream refused: {last}");
        if last["kid"] == both[0].as_str() {
            break started.elapsed();
        }
        assert_eq!(last["kid"], first_key[0].as_str(), "{last}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new key never signed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "key rotation: the new key was in the JWKS after {published:?} and signed from {switched:?} (publish ahead {PUBLISH_AHEAD_SECS} s)"
    );
    assert!(switched >= Duration::from_secs(PUBLISH_AHEAD_SECS) - Duration::from_millis(300));
    assert_eq!(
        kids(&jwks(admin).await),
        both,
        "both keys stay published (overlap)"
    );

    // 4. No credential: the call is refused, the upstream receives nothing.
    std::fs::remove_dir_all(secrets.join("upstream-api")).unwrap();
    let before = json_lines(record).len();
    let started = Instant::now();
    let refused = loop {
        let reply = post(base, &headers, &call(600, "echo")).await;
        if reply.status == 502 {
            break reply;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = &refused.answer(&json!(600))["error"];
    assert_eq!(error["data"]["reason"], "upstream_auth_failed", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("upstream-api/token"),
        "{error}"
    );
    let sent_while_present = json_lines(record).len() - before;
    let refused_more = post(base, &headers, &call(601, "echo")).await;
    assert_eq!(refused_more.status, 502);
    assert_eq!(
        json_lines(record).len() - before,
        sent_while_present,
        "a refused call reached the upstream"
    );

    // 5. The audit says what was applied, never a value; the log holds no value either.
    let ext = stack
        .audit_until(|ext| {
            ext.iter().any(|m| {
                m["outcome"] == "answered" && m["upstream_auth"]["identity_jti"].is_string()
            }) && ext.iter().any(|m| m["outcome"] == "upstream_failed")
        })
        .await;
    let applied = ext
        .iter()
        .find(|m| m["outcome"] == "answered" && m["upstream_auth"]["identity_jti"].is_string())
        .unwrap();
    let failed = ext
        .iter()
        .find(|m| m["outcome"] == "upstream_failed")
        .unwrap();
    assert_eq!(
        applied["upstream_auth"]["credentials"],
        json!(["upstream-api/token"]),
        "{applied}"
    );
    assert!(
        failed["upstream_auth"]["identity_jti"].is_string(),
        "{failed}"
    );
    let audit_text = std::fs::read_to_string(stack.audit.join("audit.jsonl")).unwrap();
    for secret in [
        "v1-credential",
        "v2-credential",
        "v3-credential",
        "v4-credential",
        &token,
    ] {
        assert!(
            !audit_text.contains(secret),
            "a credential is in the audit trail"
        );
        assert!(
            !sidecar.log().contains(secret),
            "a credential is in the log"
        );
    }
}

/// The exchanged token's claims (the test reads what the upstream received; the IdP signed it).
fn claims_of(bearer: &str) -> Value {
    let token = bearer.strip_prefix("Bearer ").unwrap_or(bearer);
    mcp_warden_sidecar::auth::unverified_claims(token).unwrap()
}

/// How many exchanges the IdP granted (its `EXCHANGE` lines).
fn exchanges(idp: &Idp) -> usize {
    idp.proc
        .log()
        .lines()
        .filter(|l| l.starts_with("EXCHANGE "))
        .count()
}

/// RFC 8693 against the real oidc-provider (op.mjs's token-exchange grant): the upstream gets a
/// token for the API behind it, bound to the caller; it is cached per caller, exchanged once for
/// concurrent callers, refreshed before it expires, and a refused exchange refuses the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_exchange_is_cached_refreshed_once_and_fails_closed() {
    const API: &str = "https://api.ledger.test";
    // Issued tokens live 32 s: cached until 30 s before expiry, so refreshed after 2 s.
    let idp = IdpOptions::new("")
        .env("OP_EXCHANGE_AUDIENCES", API)
        .env("OP_EXCHANGE_TTL", "32")
        .env("OP_EXCHANGE_DENY", "agent-beta");
    let stack = Stack::start(
        "upstream-exchange.yaml",
        idp,
        &[("idp-client/secret", "sidecar-secret")],
    );
    let (idp, base) = (&stack.idp, &stack.base);
    let token_a = idp
        .token("agent-alpha", "mcp:tools.list mcp:tools.call")
        .unwrap();
    let token_b = idp
        .token("agent-alpha", "mcp:tools.list mcp:tools.call")
        .unwrap();
    let token_beta = idp.token("agent-beta", "mcp:tools.list").unwrap();
    let headers = |token: &str| {
        vec![
            ("authorization".to_owned(), format!("Bearer {token}")),
            ("mcp-protocol-version".to_owned(), "2025-06-18".to_owned()),
        ]
    };
    let send = |token: String, id: u64| {
        let base = base.clone();
        async move {
            let h = headers(&token);
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            post(&base, &h, &call(id, "echo")).await
        }
    };

    // 1. Exchanged once; the upstream gets a token for the API, bound to the caller.
    let first_at = Instant::now();
    let reply = send(token_a.clone(), 1).await;
    assert_eq!(
        reply.status,
        200,
        "{}\n{}",
        reply.text(),
        stack.sidecar.log()
    );
    assert_eq!(exchanges(idp), 1, "{}", idp.proc.log());
    let seen = json_lines(&stack.record).pop().unwrap();
    let bearer = seen["authorization"]
        .as_str()
        .unwrap_or_else(|| panic!("{seen}"));
    assert_ne!(
        bearer,
        format!("Bearer {token_a}"),
        "the caller's own token went upstream"
    );
    let exchanged = claims_of(bearer);
    assert_eq!(exchanged["aud"], API, "{exchanged}");
    assert_eq!(exchanged["sub"], "agent-alpha", "{exchanged}");
    assert_eq!(exchanged["act"]["sub"], "mcp-sidecar", "{exchanged}");
    assert_eq!(exchanged["iss"], idp.issuer.as_str(), "{exchanged}");

    // 2. Cached for the same caller.
    let reply = send(token_a.clone(), 2).await;
    assert_eq!(reply.status, 200);
    assert_eq!(exchanges(idp), 1, "a second exchange for a cached token");
    assert_eq!(
        json_lines(&stack.record).pop().unwrap()["authorization"],
        bearer
    );

    // 3. Eight concurrent calls of a new caller token: one exchange.
    let calls: Vec<_> = (0..8).map(|i| send(token_b.clone(), 10 + i)).collect();
    let replies = futures::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(
        exchanges(idp),
        2,
        "concurrent callers must share one exchange"
    );

    // 4. Refreshed once the cached token is within 30 s of its expiry (here: after 2 s).
    let mut id = 100;
    let refreshed = loop {
        id += 1;
        let reply = send(token_a.clone(), id).await;
        assert_eq!(reply.status, 200);
        if exchanges(idp) == 3 {
            break first_at.elapsed();
        }
        assert!(
            first_at.elapsed() < Duration::from_secs(10),
            "never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "token exchange: refreshed {refreshed:?} after the first (issued for 32 s, refreshed 30 s before expiry)"
    );
    assert!(refreshed >= Duration::from_secs(2), "{refreshed:?}");
    let new_bearer = json_lines(&stack.record).pop().unwrap()["authorization"].clone();
    assert_ne!(new_bearer, bearer, "the refreshed token is sent");

    // 5. The IdP refuses agent-beta's token: the call is refused, the upstream gets nothing.
    let before = json_lines(&stack.record).len();
    let refused = send(token_beta.clone(), 200).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    let error = &refused.answer(&json!(200))["error"];
    assert_eq!(error["data"]["reason"], "upstream_auth_failed", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("invalid_grant"), "{message}");
    assert_eq!(
        json_lines(&stack.record).len(),
        before,
        "a refused call reached the upstream"
    );

    // 6. The audit records the exchange's issuer, audience and outcome; never a token.
    let ext = stack
        .audit_until(|ext| {
            ["exchanged", "cached", "failed"].iter().all(|o| {
                ext.iter()
                    .any(|m| m["upstream_auth"]["exchange"]["outcome"] == *o)
            })
        })
        .await;
    let failed = ext
        .iter()
        .find(|m| m["upstream_auth"]["exchange"]["outcome"] == "failed")
        .unwrap();
    assert_eq!(failed["outcome"], "upstream_failed", "{failed}");
    assert_eq!(
        failed["upstream_auth"]["exchange"],
        json!({"issuer": format!("{}/token", idp.issuer), "audience": API, "outcome": "failed"})
    );
    let audit_text = std::fs::read_to_string(stack.audit.join("audit.jsonl")).unwrap();
    let exchanged_token = bearer.trim_start_matches("Bearer ");
    for secret in [
        token_a.as_str(),
        token_b.as_str(),
        exchanged_token,
        "sidecar-secret",
    ] {
        assert!(
            !audit_text.contains(secret),
            "a token or secret in the audit trail"
        );
        assert!(
            !stack.sidecar.log().contains(secret),
            "a token or secret in the log"
        );
    }
}
