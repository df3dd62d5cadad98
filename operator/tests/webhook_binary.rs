//! The real `mcp-warden-operator run --webhook-listen` binary: it serves the webhook with the
//! injection flags it was given (image, CA, audience), counts requests in its metrics, and
//! refuses to start the webhook without TLS.
//!
//! The real suite (`tests/tests/cluster/`) cannot show: the binary refusing a webhook without TLS,
//! and injection flags other than the chart's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use k8s_openapi::api::core::v1::Pod;
use mcp_warden_test_support::{Proc, eventually_async, free_port, tls::self_signed};
use serde_json::Value;
use std::time::Duration;
use support::admission::{fixture, patch_of, post, response_of, sidecar};

/// A plain-HTTP GET on 127.0.0.1 (the admin port); the body.
async fn get_plain(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    text
}

#[tokio::test]
async fn the_real_binary_serves_the_webhook_with_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let tls = self_signed();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, &tls.cert_pem).unwrap();
    std::fs::write(&key_file, &tls.key_pem).unwrap();
    let crs = dir.path().join("crs");
    std::fs::create_dir(&crs).unwrap();
    let ready = dir.path().join("ready.json");
    let admin_port = free_port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-warden-operator"));
    cmd.arg("run")
        .arg(format!("--source=files:{}", crs.display()))
        .args(["--listen", "127.0.0.1:0", "--webhook-listen", "127.0.0.1:0"])
        .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
        .arg("--tls-cert")
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .arg("--ready-file")
        .arg(&ready)
        // The sidecars trust the CA that signed the push API: here the self-signed cert itself.
        .arg("--operator-ca-file")
        .arg(&cert_file)
        .args(["--sidecar-image", "registry.example/sidecar:dev"])
        .args(["--audience", "warden-test"]);
    let mut operator = Proc::start("mcp-warden-operator", cmd).unwrap_or_else(|e| panic!("{e}"));
    let webhook_port = eventually_async("the ready file", Duration::from_secs(30), || {
        assert!(
            operator.try_wait().is_none(),
            "the operator exited before it was ready:\n{}",
            operator.log()
        );
        let text = std::fs::read_to_string(&ready).ok()?;
        let v = serde_json::from_str::<Value>(&text).ok()?;
        let addr = v["webhook"].as_str()?;
        Some(addr.rsplit(':').next().unwrap().parse::<u16>().unwrap())
    })
    .await;
    let roots = tls.roots.clone();
    let body = fixture("create-replicaset-pod.json");
    let request: Value = serde_json::from_str(&body).unwrap();
    let (status, review) = post(webhook_port, &roots, "/mutate", body).await;
    let response = response_of(status, &review, "5f3c1a52-7b0e-4d1e-9a55-0d2f7e1c9b01");
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &patch_of(&response).expect("a patch")).unwrap();
    let pod: Pod = serde_json::from_value(object).unwrap();
    let sidecar = sidecar(&pod);
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/sidecar:dev")
    );
    let ca = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "MCP_WARDEN_OPERATOR_CA")
        .and_then(|e| e.value.clone());
    assert_eq!(ca, Some(tls.cert_pem.clone()));
    let token = serde_json::to_value(&pod.spec.as_ref().unwrap().volumes).unwrap();
    assert!(
        token.to_string().contains("\"audience\":\"warden-test\""),
        "{token}"
    );
    let metrics = get_plain(admin_port, "/metrics").await;
    assert!(
        metrics.contains(
            "mcp_warden_operator_admission_requests_total{operation=\"CREATE\",result=\"injected\"} 1"
        ),
        "{metrics}"
    );
    // With --tls-cert, files mode serves the push API over HTTPS too (sidecars' --operator-ca).
    let push_port = serde_json::from_str::<Value>(&std::fs::read_to_string(&ready).unwrap())
        .unwrap()["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let mut push = support::tls::connect(push_port, &roots).await;
    let watch = Request::get("/v1/watch?namespace=team-a&pod=weather-0&labels=app%3Dweather")
        .header(header::HOST, "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let watch = tokio::time::timeout(Duration::from_secs(10), push.send_request(watch))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(watch.status(), StatusCode::OK);
    // The webhook port is not the push API.
    let (status, _) = post(webhook_port, &roots, "/v1/watch", String::new()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the webhook port serves only /mutate"
    );
}

#[test]
fn the_webhook_needs_tls() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-warden-operator"))
        .args([
            "run",
            "--source",
            "files:/nonexistent",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--webhook-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--tls-cert"), "{stderr}");
}
