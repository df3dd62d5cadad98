//! Usage reports, sidecar → operator, over real HTTPS: the operator's push server (in process,
//! with its real `/v1/usage` endpoint and usage store) behind a certificate only the given CA
//! vouches for, and the real sidecar binary in operator mode in front of server-everything.
//!
//! Proves that `--operator-ca` is what the sidecar trusts, that the projected-token file is sent
//! on both the watch and the reports, and that calls, denials by reason, last seen and the tools
//! the upstream lists reach the store McpClient/McpTool status is computed from.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use jiff::Timestamp;
use mcp_warden_operator::{
    clock::SystemClock,
    files,
    index::Index,
    push::{self, Authorizer, Extensions, PushSettings},
    usage::{UsageEndpoint, UsageStore},
};
use mcp_warden_test_support::{Proc, eventually, repo_root, server_everything, tls::self_signed};
use mcp_warden_tests::{
    mcp::Session,
    procs::{SidecarAddrs, enforced_version, metric_lines, sidecar},
};
use serde_json::json;
use std::{path::Path, sync::Arc, time::Duration};

/// Admits exactly `Bearer <token>`, for any pod of namespace `demo`.
struct Token(String);

impl Authorizer for Token {
    fn authorize(&self, headers: &http::HeaderMap, namespace: &str, _: &str) -> Result<(), String> {
        let sent = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent == Some(&format!("Bearer {}", self.0)) && namespace == "demo" {
            Ok(())
        } else {
            Err("wrong token".into())
        }
    }
}

struct Operator {
    url: String,
    store: UsageStore,
    ca_pem: String,
    _runtime: tokio::runtime::Runtime,
}

/// The push API with TLS (a self-signed certificate for `localhost`) and `/v1/usage`.
fn operator(token: &str, leading: Option<tokio::sync::watch::Receiver<bool>>) -> Operator {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tls = self_signed();
    let index = Index::default();
    let inventory = files::read_dir(&repo_root().join("examples/everything")).unwrap();
    index.replace_all(inventory);
    let store = UsageStore::default();
    let authorizer: Arc<dyn Authorizer> = Arc::new(Token(token.to_owned()));
    let usage = UsageEndpoint {
        store: store.clone(),
        authorizer: authorizer.clone(),
        clock: Arc::new(SystemClock),
        metrics: None,
        leading,
    };
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let settings = PushSettings {
        heartbeat: Duration::from_secs(1),
        labels_from_query: true,
    };
    let extensions = Extensions {
        tls: Some(tls.server),
        usage: Some(Arc::new(usage)),
        ..Extensions::default()
    };
    runtime.spawn(async move {
        push::serve_with(
            listener,
            index,
            settings,
            authorizer,
            extensions,
            std::future::pending(),
        )
        .await;
    });
    Operator {
        url: format!("https://localhost:{port}"),
        store,
        ca_pem: tls.cert_pem,
        _runtime: runtime,
    }
}

/// The real sidecar in operator mode for pod `demo/<pod>`, trusting `ca` (when given), sending
/// the token in `token_file`, reporting every second; tokenless calls act as agent-beta.
fn reporting_sidecar(
    op: &Operator,
    upstream: &str,
    pod: &str,
    ca: Option<&Path>,
    token_file: &Path,
) -> (Proc, SidecarAddrs) {
    let mut args = vec![
        "--operator",
        op.url.as_str(),
        "--pod-namespace",
        "demo",
        "--pod-name",
        pod,
        "--pod-labels",
        "app=server-everything",
        "--upstream",
        upstream,
        "--anonymous-client",
        "demo/agent-beta",
        "--token-file",
        token_file.to_str().unwrap(),
        "--usage-interval-seconds",
        "1",
    ];
    if let Some(ca) = ca {
        args.extend(["--operator-ca", ca.to_str().unwrap()]);
    }
    sidecar(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a reporting sidecar for `pod`, runs `block` (which makes its reports fail), makes one
/// call, and waits until a report failed with `result`: nothing reached the store yet.
fn one_call_held_back(
    op: &Operator,
    upstream: &str,
    pod: &str,
    files: (&Path, &Path),
    block: impl FnOnce(),
    result: &str,
) -> Proc {
    let (ca, token_file) = files;
    let (sidecar, addrs) = reporting_sidecar(op, upstream, pod, Some(ca), token_file);
    eventually("the first bundle", Duration::from_secs(10), || {
        enforced_version(&addrs.admin).is_some()
    });
    block();
    let mut session = Session::connect(&format!("{}/mcp", addrs.base), None).unwrap();
    let reply = session.call_tool("echo", json!({"message": "a"})).unwrap();
    assert!(reply.is_success());
    eventually(
        &format!("a report failing with {result}"),
        Duration::from_secs(10),
        || {
            metric_lines(&addrs.admin, "mcp_warden_usage_reports_total")
                .iter()
                .any(|l| l.contains(&format!("result=\"{result}\"")))
        },
    );
    assert!(
        !op.store
            .view(Timestamp::now())
            .clients
            .contains_key(&beta())
    );
    sidecar
}

fn beta() -> (String, String) {
    ("demo".to_owned(), "agent-beta".to_owned())
}

/// Waits until the store counts exactly one call of agent-beta, and still one a while later.
fn arrives_once(op: &Operator) {
    let calls = || {
        op.store
            .view(Timestamp::now())
            .clients
            .get(&beta())
            .map(|c| c.calls_24h)
    };
    eventually("the kept report", Duration::from_secs(10), || {
        calls() == Some(1)
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(calls(), Some(1), "not counted twice");
}

#[test]
fn calls_denials_and_listed_tools_reach_the_operator_over_https() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "projected-sa-token\n").unwrap();
    let op = operator("projected-sa-token", None);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &op.ca_pem).unwrap();
    // Without the CA the operator's certificate is not trusted: nothing is enforced.
    let (_untrusting, addrs) = reporting_sidecar(&op, &upstream, "pod-0", None, &token_file);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        enforced_version(&addrs.admin),
        None,
        "a self-signed operator is not trusted by default"
    );

    let (sidecar, addrs) = reporting_sidecar(&op, &upstream, "pod-1", Some(&ca), &token_file);
    eventually(
        "the first bundle over HTTPS",
        Duration::from_secs(10),
        || enforced_version(&addrs.admin).is_some(),
    );
    let mut session = Session::connect(&format!("{}/mcp", addrs.base), None).unwrap();
    let listed = session.request("tools/list", json!({})).unwrap();
    assert!(listed.is_success());
    for _ in 0..3 {
        assert!(
            session
                .call_tool("echo", json!({"message": "hi"}))
                .unwrap()
                .is_success()
        );
    }
    let denied = session
        .call_tool("toggle-simulated-logging", json!({}))
        .unwrap();
    assert!(!denied.is_success(), "agent-beta may not call it");

    let key = ("demo".to_owned(), "agent-beta".to_owned());
    eventually("the usage report", Duration::from_secs(10), || {
        op.store
            .view(Timestamp::now())
            .clients
            .get(&key)
            .is_some_and(|c| c.calls_24h == 4)
    });
    let view = op.store.view(Timestamp::now());
    let client = &view.clients[&key];
    assert_eq!(client.denials_24h, 1, "{client:?}");
    assert_eq!(client.denials_by_reason.keys().collect::<Vec<_>>().len(), 1);
    assert!(client.last_seen.is_some_and(|t| t <= Timestamp::now()));
    let tools = &view.tools[&("demo".to_owned(), "everything".to_owned())];
    assert!(
        tools.contains("echo") && tools.contains("toggle-simulated-logging"),
        "every tool the upstream lists, shown or hidden: {tools:?}"
    );
    let reporters = op.store.reporters();
    assert_eq!(
        reporters.get(&("demo".to_owned(), "pod-1".to_owned())),
        Some(&enforced_version(&addrs.admin)),
        "the report names the bundle in force"
    );
    assert!(
        !reporters.contains_key(&("demo".to_owned(), "pod-0".to_owned())),
        "the untrusting sidecar reported nothing"
    );
    // Counted once the operator's answer is back (just after the store has the report).
    eventually("sent reports counted", Duration::from_secs(5), || {
        metric_lines(&addrs.admin, "mcp_warden_usage_reports_total")
            .iter()
            .any(|l| l.contains("result=\"sent\""))
    });
    drop(sidecar);
}

#[test]
fn reports_with_a_wrong_token_are_refused_and_kept_for_later() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "right").unwrap();
    let op = operator("right", None);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &op.ca_pem).unwrap();
    // The kubelet rotates the token to one the operator refuses: reports fail and are kept.
    let rotate = || std::fs::write(&token_file, "wrong").unwrap();
    let files = (ca.as_path(), token_file.as_path());
    let _sidecar = one_call_held_back(&op, &upstream, "pod-2", files, rotate, "failed");
    // A valid token again: the kept report arrives, counted once.
    std::fs::write(&token_file, "right").unwrap();
    arrives_once(&op);
}

#[test]
fn a_report_a_follower_refuses_is_sent_again_until_the_leader_takes_it() {
    let (_upstream, upstream) = server_everything().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let (lead, leading) = tokio::sync::watch::channel(false);
    let op = operator("t", Some(leading));
    std::fs::write(&ca, &op.ca_pem).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let files = (ca.as_path(), token_file.as_path());
    let _sidecar = one_call_held_back(&op, &upstream, "pod-3", files, || {}, "not_leader");
    // This replica becomes the leader: the kept report arrives, once.
    lead.send(true).unwrap();
    arrives_once(&op);
}
