//! Upstream credentials in operator mode (issue 22), real binaries on loopback: the operator
//! (`--source files`, `--upstream-identity-key`, `--upstream-secrets-dir`) pushes the McpTool's
//! Secret values and signing key to its sidecar (`--operator`); the upstream, a Python MCP SDK
//! server, verifies each call's identity JWT with PyJWT against the OPERATOR's `GET /v1/jwks`
//! (`tests/peers/identity_upstream.py`); a changed Secret reaches the upstream's header within
//! 1 s (measured and printed), without a restart.
//!
//! ```text
//! oidc-provider ──token──► test ──► sidecar ──identity JWT + X-Api-Key──► identity_upstream.py
//!                                     ▲ upstreamAuth line                    │ JWKS
//! secrets/<ns>/<name>/<key> ──► operator ◄───────────────────────────────────┘ GET /v1/jwks
//! ```

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_test_support::{
    IdpOptions, eventually,
    files::{
        UPSTREAM_AUTH_RESOURCE, identity_upstream, json_lines, upstream_auth_config,
        write_atomically,
    },
    tls,
};
use mcp_warden_tests::{
    mcp::Session,
    procs::{enforced_version, operator_files_with, sidecar},
};
use serde_json::{Value, json};
use std::{
    path::Path,
    time::{Duration, Instant},
};

fn last_record(path: &Path) -> Value {
    json_lines(path).pop().unwrap_or(Value::Null)
}

#[test]
fn the_operator_pushes_keys_and_secrets_and_a_rotation_reaches_the_upstream_within_a_second() {
    // Every port is bound at 0 by its own process: none is chosen before it is bound.
    let dir = tempfile::tempdir().unwrap();
    let jwks_url_file = dir.path().join("jwks-url");
    let record = dir.path().join("upstream.jsonl");
    let (_upstream_proc, upstream) = identity_upstream(&jwks_url_file, &record, &[]);
    let resource = UPSTREAM_AUTH_RESOURCE;
    let idp = IdpOptions::new(resource)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let crs = dir.path().join("crs");
    std::fs::create_dir_all(&crs).unwrap();
    std::fs::write(
        crs.join("config.yaml"),
        upstream_auth_config(resource, &upstream, &idp.issuer),
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(secrets.join("demo/upstream-api")).unwrap();
    let secret_file = secrets.join("demo/upstream-api/token");
    write_atomically(&secret_file, "v1-credential");
    // Another namespace's Secret of the same name: never sent to this McpTool's sidecar.
    std::fs::create_dir_all(secrets.join("other/upstream-api")).unwrap();
    write_atomically(&secrets.join("other/upstream-api/token"), "other-team");
    let key = dir.path().join("identity.pem");
    std::fs::write(&key, tls::self_signed().key_pem).unwrap();

    let key_arg = key.display().to_string();
    let secrets_arg = secrets.display().to_string();
    let (operator_proc, operator) = operator_files_with(
        &crs,
        0,
        &[
            "--upstream-identity-key",
            &key_arg,
            "--upstream-secrets-dir",
            &secrets_arg,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    write_atomically(&jwks_url_file, &format!("{operator}/v1/jwks"));
    let (sidecar_proc, addrs) = sidecar(&[
        "--operator",
        &operator,
        "--pod-namespace",
        "demo",
        "--pod-name",
        "verified-0",
        "--pod-labels",
        "app=verified",
        "--operator-idle-timeout-seconds",
        "3",
        "--bypass-check-seconds",
        "0",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    eventually("the first bundle", Duration::from_secs(10), || {
        enforced_version(&addrs.admin).is_some()
    });

    let token = idp
        .token("agent-alpha", "mcp:tools.list mcp:tools.call")
        .unwrap();
    let mut session = Session::connect(&format!("{}/mcp", addrs.base), Some(&token))
        .unwrap_or_else(|e| panic!("{e}\n{}", sidecar_proc.log()));
    let reply = session.call_tool("whoami", json!({})).unwrap();
    assert!(
        reply.is_success(),
        "{reply:?}\n{:?}\n{}",
        last_record(&record),
        sidecar_proc.log()
    );
    let text = reply.body.as_ref().unwrap()["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(claims["sub"], "agent-alpha", "{claims}");
    assert_eq!(claims["mcp_client"], "demo/agent-alpha", "{claims}");
    assert_eq!(claims["aud"], upstream.as_str(), "{claims}");
    assert_eq!(claims["iss"], resource, "{claims}");
    let seen = last_record(&record);
    assert_eq!(seen["credential"], "v1-credential", "{seen}");
    assert!(seen["authorization"].is_null(), "{seen}");

    let mut latencies = Vec::new();
    for value in ["v2-credential", "v3-credential", "v4-credential"] {
        let started = Instant::now();
        write_atomically(&secret_file, value);
        let took = loop {
            let reply = session.call_tool("echo", json!({"message": "x"})).unwrap();
            assert!(reply.is_success(), "{reply:?}");
            if last_record(&record)["credential"] == value {
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{value} never arrived"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        latencies.push(took);
    }
    eprintln!("operator mode: a Secret change reached the upstream's header after {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );
    for secret in ["v1-credential", "v4-credential", "other-team", &token] {
        assert!(
            !operator_proc.log().contains(secret),
            "a value in the operator's log"
        );
        assert!(
            !sidecar_proc.log().contains(secret),
            "a value in the sidecar's log"
        );
    }
    let state = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(state, "v4-credential");
}
