//! The cluster mode as `main` wires it (`run::run`), on kube-fake-client + the watch shim, with
//! the TokenReview API scripted: a sidecar's HTTPS stream gets its pod's bundle and the
//! revocation, another pod's stream is refused, usage reports reach McpClient status, the admin
//! port reports readiness and metrics, and shutdown releases the Lease.
//!
//! The real suite (`tests/tests/cluster/`) cannot show: a bypass report naming a pod address and
//! the McpTool condition it sets (no Pod gets an address there: no kubelet, no CNI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use mcp_warden_crds::{McpClient, McpTool};
use mcp_warden_operator::{
    clock::SystemClock, leader::LeaseSettings, metrics::Metrics, netpol::NetworkPolicySettings,
    run, status_writer::StatusSettings, watch::WatchSettings,
};
use mcp_warden_test_support::{eventually_await, tls::self_signed};
use serde_json::{Value, json};
use std::{sync::Arc, time::Duration};
use support::{create, create_pod, fake_cluster, with_tokenreview};
use tokio::sync::mpsc;

const AUDIENCE: &str = "mcp-warden-operator";

const CRS: &str = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: pay, namespace: team}
spec:
  owner: team
  server: {selector: {matchLabels: {app: pay}}, resource: "https://pay.example/mcp"}
  authentication: {issuers: [{issuer: "https://idp.example"}]}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpClient
metadata: {name: bot, namespace: agents}
spec: {owner: me, identity: {issuer: "https://idp.example", clientId: bot}}
---
apiVersion: mcpwarden.io/v1alpha1
kind: McpPolicy
metadata: {name: bot-pay, namespace: team}
spec: {clients: [{name: bot, namespace: agents}], tools: [{toolRef: pay}]}
"#;

/// One HTTPS request; the response status and its body as a stream of lines.
async fn https(
    port: u16,
    roots: &Arc<rustls::RootCertStore>,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, mpsc::UnboundedReceiver<String>) {
    let mut sender = support::tls::connect(port, roots).await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(d) = frame.data_ref() {
                buf.extend_from_slice(d);
            }
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if tx
                    .send(String::from_utf8_lossy(&line).trim().to_owned())
                    .is_err()
                {
                    return;
                }
            }
        }
        if !buf.is_empty() {
            let _ = tx.send(String::from_utf8_lossy(&buf).trim().to_owned());
        }
    });
    (status, rx)
}

async fn next_line(rx: &mut mpsc::UnboundedReceiver<String>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a line in time")
        .expect("open");
    serde_json::from_str(&line).unwrap()
}

async fn admin_get(port: u16, path: &str) -> (StatusCode, String) {
    support::http(port, http::Method::GET, path, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_serves_authenticated_sidecars_and_writes_status() {
    let (shimmed, _) = fake_cluster().await;
    let client = with_tokenreview(shimmed.clone(), AUDIENCE);
    create_pod(&shimmed, "team", "pay-0", &[("app", "pay")]).await;
    create_pod(&shimmed, "team", "web-0", &[("app", "web")]).await;
    create(&shimmed, CRS).await;

    let tls = self_signed();
    let push = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (push_port, admin_port) = (
        push.local_addr().unwrap().port(),
        admin.local_addr().unwrap().port(),
    );
    let mut lease = LeaseSettings::new("mcp-warden-operator", "mcp-warden", "operator-0");
    lease.lease_duration = Duration::from_secs(2);
    lease.retry_period = Duration::from_millis(200);
    let metrics = Metrics::new();
    let cluster = run::Cluster {
        watch: WatchSettings::default(),
        lease: Some(lease),
        audience: AUDIENCE.into(),
        tls: Some(tls.server.clone()),
        heartbeat: Duration::from_secs(1),
        status: StatusSettings {
            debounce: Duration::from_millis(50),
            usage_refresh: Duration::from_millis(200),
            ..StatusSettings::default()
        },
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
        network_policies: Some(NetworkPolicySettings {
            admin_from: vec!["monitoring".into()],
        }),
        upstream_auth: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run::run(
        client.clone(),
        cluster,
        push,
        Some(admin),
        async move {
            let _ = stop_rx.await;
        },
    ));

    eventually_await("/ready", Duration::from_secs(10), || async {
        (admin_get(admin_port, "/ready").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(admin_get(admin_port, "/live").await.0, StatusCode::OK);

    // pay-0's own token: its bundle, at once.
    let (status, mut stream) = https(
        push_port,
        &tls.roots,
        "GET",
        "/v1/watch?namespace=team&pod=pay-0",
        "token-pay-0",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first = next_line(&mut stream).await;
    assert_eq!(first["type"], "bundle");
    assert_eq!(first["bundle"]["clients"][0]["spec"]["suspended"], false);
    // pay-0's token asking for web-0: refused.
    let (status, mut refused) = https(
        push_port,
        &tls.roots,
        "GET",
        "/v1/watch?namespace=team&pod=web-0",
        "token-pay-0",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .recv()
            .await
            .unwrap()
            .contains("bound to pod team/pay-0, not team/web-0")
    );
    // web-0 with its own token: nothing governs it.
    let (status, mut web) = https(
        push_port,
        &tls.roots,
        "GET",
        "/v1/watch?namespace=team&pod=web-0",
        "token-web-0",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next_line(&mut web).await["type"], "empty");

    // Revocation: suspend the client; the next non-heartbeat line carries it.
    let started = tokio::time::Instant::now();
    Api::<McpClient>::namespaced(shimmed.clone(), "agents")
        .patch(
            "bot",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspended": true}})),
        )
        .await
        .unwrap();
    let line = loop {
        let line = next_line(&mut stream).await;
        if line["type"] != "heartbeat" {
            break line;
        }
    };
    let took = started.elapsed();
    assert_eq!(line["bundle"]["clients"][0]["spec"]["suspended"], true);
    assert_ne!(line["bundle"]["version"], first["bundle"]["version"]);
    println!(
        "CR write → pushed line on the HTTPS stream: {:.1} ms",
        took.as_secs_f64() * 1000.0
    );

    // Usage from pay-0 reaches bot's status; a report for another pod is refused.
    let report = |pod: &str| {
        json!({"namespace": "team", "pod": pod, "bootId": "b", "seq": 1,
               "clients": [{"namespace": "agents", "name": "bot", "calls": 7, "denials": {"suspended": 7},
                            "lastSeen": "2026-01-01T00:00:00Z"}]})
    };
    let (status, _) = https(
        push_port,
        &tls.roots,
        "POST",
        "/v1/usage",
        "token-pay-0",
        Some(report("web-0")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = https(
        push_port,
        &tls.roots,
        "POST",
        "/v1/usage",
        "token-pay-0",
        Some(report("pay-0")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let bot = eventually_await("usage in status", Duration::from_secs(5), || async {
        Api::<McpClient>::namespaced(shimmed.clone(), "agents")
            .get("bot")
            .await
            .unwrap()
            .status
            .filter(|s| s.calls_24h == Some(7))
    })
    .await;
    assert_eq!(bot.denials_24h, Some(7));
    assert_eq!(bot.phase, Some(mcp_warden_crds::ClientPhase::Suspended));
    assert_eq!(
        bot.last_seen.map(|t| t.0.to_string()),
        Some("2026-01-01T00:00:00Z".to_string())
    );

    // A bypass check in a report: the McpTool's Bypassable condition names the pod and address;
    // the next check of the same pod (loopback only) turns it False.
    let bypass_report = |seq: u64, reachable: &[&str]| {
        json!({"namespace": "team", "pod": "pay-0", "bootId": "b", "seq": seq,
               "bypassable": {"namespace": "team", "name": "pay", "port": 8080,
                              "checked": ["10.0.0.5"], "reachable": reachable}})
    };
    let bypassable = |want: &'static str| {
        let shimmed = shimmed.clone();
        async move {
            let tool = Api::<McpTool>::namespaced(shimmed, "team")
                .get("pay")
                .await
                .unwrap();
            let status = tool.status?;
            status
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Bypassable" && c.reason == want)
        }
    };
    for (seq, reachable, reason) in [
        (2, vec!["10.0.0.5:8080"], "UpstreamReachable"),
        (3, vec![], "LoopbackOnly"),
    ] {
        let (status, _) = https(
            push_port,
            &tls.roots,
            "POST",
            "/v1/usage",
            "token-pay-0",
            Some(bypass_report(seq, &reachable)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let c = eventually_await(reason, Duration::from_secs(5), || bypassable(reason)).await;
        match reason {
            "UpstreamReachable" => {
                assert_eq!(c.status, "True");
                assert!(
                    c.message.contains("pod team/pay-0 at 10.0.0.5:8080"),
                    "{}",
                    c.message
                );
            }
            _ => assert_eq!(c.status, "False"),
        }
    }

    // The McpTool's NetworkPolicy: its selector, the sidecar's ports, owned by the McpTool.
    let policy = eventually_await("the NetworkPolicy", Duration::from_secs(5), || async {
        Api::<NetworkPolicy>::namespaced(shimmed.clone(), "team")
            .get_opt("mcp-warden-tool-pay")
            .await
            .unwrap()
    })
    .await;
    let tool = Api::<McpTool>::namespaced(shimmed.clone(), "team")
        .get("pay")
        .await
        .unwrap();
    let owner = &policy.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), Some(&owner.uid)),
        ("McpTool", "pay", tool.metadata.uid.as_ref())
    );
    assert_eq!(
        serde_json::to_value(policy.spec.unwrap()).unwrap(),
        json!({
            "podSelector": {"matchLabels": {"app": "pay"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": "mcp", "protocol": "TCP"}]},
                {"ports": [{"port": "mcpwarden-admin", "protocol": "TCP"}],
                 "from": [{"namespaceSelector": {"matchLabels":
                     {"kubernetes.io/metadata.name": "monitoring"}}}]},
            ],
        })
    );

    // Metrics (the gauges refresh every 5 s).
    let needles = [
        r#"mcp_warden_operator_watched_objects{kind="McpClient"} 1"#,
        r#"mcp_warden_operator_watched_objects{kind="Pod"} 2"#,
        "mcp_warden_operator_connected_sidecars 2",
        "mcp_warden_operator_leader 1",
        r#"mcp_warden_operator_usage_reports_total{result="accepted"} 3"#,
        r#"mcp_warden_operator_usage_reports_total{result="refused"} 1"#,
        r#"mcp_warden_operator_status_writes_total{kind="McpClient",result="ok"}"#,
        "mcp_warden_operator_push_latency_seconds_bucket",
        "mcp_warden_operator_bundles_pushed_total",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        let (_, text) = admin_get(admin_port, "/metrics").await;
        let missing: Vec<&str> = needles
            .iter()
            .copied()
            .filter(|n| !text.contains(n))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop((stream, web));

    // Shutdown releases the Lease.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("stops")
        .unwrap();
    let lease = Api::<Lease>::namespaced(shimmed, "mcp-warden")
        .get("mcp-warden-operator")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity,
        None,
        "released on shutdown"
    );
}
