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
    IdpOptions, Proc, eventually,
    files::{json_lines, upstream_auth_config, write_atomically},
    free_port, peer, repo_root,
    tls::self_signed,
};
use proxy_support::post;
use serde_json::{Value, json};
use std::{
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

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_credentials_reach_a_verifying_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let upstream_port = free_port();
    let upstream = format!("http://127.0.0.1:{upstream_port}/mcp");
    let idp = IdpOptions::new(&resource)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let key_file = dir.path().join("identity.pem");
    std::fs::write(&key_file, self_signed().key_pem).unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("upstream-api")).unwrap();
    let secret_file = secrets.join("upstream-api/token");
    write_atomically(&secret_file, "v1-credential\n");
    let config_file = dir.path().join("config.yaml");
    std::fs::write(
        &config_file,
        upstream_auth_config(&resource, &upstream, &idp.issuer),
    )
    .unwrap();
    let audit = dir.path().join("audit");
    let ready = dir.path().join("ready.json");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-warden-sidecar"));
    cmd.arg("run")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--admin-listen",
            "127.0.0.1:0",
            "--bypass-check-seconds",
            "0",
        ])
        .arg("--config")
        .arg(&config_file)
        .arg("--upstream-identity-key")
        .arg(&key_file)
        .args([
            "--upstream-identity-key-publish-seconds",
            &PUBLISH_AHEAD_SECS.to_string(),
        ])
        .arg("--upstream-secrets-dir")
        .arg(&secrets)
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
    let base = format!("http://127.0.0.1:{port}/mcp");

    let record = dir.path().join("upstream.jsonl");
    let mut py = Command::new(peer("PEERS_PYTHON"));
    py.arg(repo_root().join("tests/peers/identity_upstream.py"))
        .arg(upstream_port.to_string())
        .env("JWKS_URL", format!("{admin}/.well-known/jwks.json"))
        .env("AUDIENCE", &upstream)
        .env("ISSUER", &resource)
        .env("CREDENTIAL_HEADER", "X-Api-Key")
        .env("RECORD", &record)
        .env("JWKS_LIFESPAN", "1");
    let (_upstream_proc, ()) =
        Proc::spawn("identity_upstream.py", py, Duration::from_secs(30), |l| {
            l.starts_with("READY").then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}"));

    let token = idp
        .token("agent-alpha", "mcp:tools.list mcp:tools.call")
        .unwrap();
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    // 1. The upstream verifies the JWT and answers who called.
    let first_key = kids(&jwks(&admin).await);
    assert_eq!(first_key.len(), 1, "{first_key:?}");
    let reply = post(&base, &headers, &call(1, "whoami")).await;
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
    let seen = json_lines(&record);
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
            let reply = post(&base, &headers, &call(id, "echo")).await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            if json_lines(&record).last().unwrap()["credential"] == *value {
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
    std::fs::write(&key_file, self_signed().key_pem).unwrap();
    let started = Instant::now();
    let both = loop {
        let keys = kids(&jwks(&admin).await);
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
        let reply = post(&base, &headers, &call(id, "whoami")).await;
        let last = json_lines(&record).last().unwrap().clone();
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
        kids(&jwks(&admin).await),
        both,
        "both keys stay published (overlap)"
    );

    // 4. No credential: the call is refused, the upstream receives nothing.
    std::fs::remove_dir_all(secrets.join("upstream-api")).unwrap();
    let before = json_lines(&record).len();
    let started = Instant::now();
    let refused = loop {
        let reply = post(&base, &headers, &call(600, "echo")).await;
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
    let sent_while_present = json_lines(&record).len() - before;
    let refused_more = post(&base, &headers, &call(601, "echo")).await;
    assert_eq!(refused_more.status, 502);
    assert_eq!(
        json_lines(&record).len() - before,
        sent_while_present,
        "a refused call reached the upstream"
    );

    // 5. The audit says what was applied, never a value; the log holds no value either.
    let started = Instant::now();
    let (applied, failed) = loop {
        let lines = json_lines(&audit.join("audit.jsonl"));
        let ext = |r: &Value| r["unmapped"]["mcp_warden"].clone();
        let applied = lines
            .iter()
            .map(ext)
            .find(|m| m["outcome"] == "answered" && m["upstream_auth"]["identity_jti"].is_string());
        let failed = lines
            .iter()
            .map(ext)
            .find(|m| m["outcome"] == "upstream_failed");
        if let (Some(a), Some(f)) = (applied, failed) {
            break (a, f);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{lines:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        applied["upstream_auth"]["credentials"],
        json!(["upstream-api/token"]),
        "{applied}"
    );
    assert!(
        failed["upstream_auth"]["identity_jti"].is_string(),
        "{failed}"
    );
    let audit_text = std::fs::read_to_string(audit.join("audit.jsonl")).unwrap();
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
