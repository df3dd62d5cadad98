//! RBAC exactness: the chart's ClusterRole and Role grant exactly the API calls the operator
//! makes, no more and no fewer.
//!
//! ```text
//! run::run (cluster mode, as main wires it) ──► recorder ──► TokenReview script ──► watch shim ──► kube-fake-client
//!                                                  │ method + path (+ ?watch) → (group, resource[/subresource], verb, namespace)
//!                                                  ▼
//!                               recorded calls  ==  rules of the rendered chart (Helm v4, helm-python-sdk)
//!                                  outside the release namespace → ClusterRole; inside it → Role
//! ```
//!
//! The run covers every code path that talks to the API server: the CR and Pod watches (list +
//! watch), status writes of the Lease holder, leader election (create, get, renew, release),
//! and a sidecar's TokenReview on the push API. A new API call in the operator fails this test
//! until the chart grants it; a grant the operator no longer uses fails it too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::{Method, Request, StatusCode};
use mcp_warden_crds::McpClient;
use mcp_warden_operator::{
    clock::SystemClock, leader::LeaseSettings, metrics::Metrics, netpol::NetworkPolicySettings,
    run, status_writer::StatusSettings, watch::WatchSettings,
};
use mcp_warden_test_support::eventually_await;
use mcp_warden_tests::helm;
use serde_json::json;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};
use support::{create, create_pod, fake_cluster, http_get, with_tokenreview};

const AUDIENCE: &str = "mcp-warden-operator";

const UNSELECTED_TOOL: &str = r#"
apiVersion: mcpwarden.io/v1alpha1
kind: McpTool
metadata: {name: standalone, namespace: team}
spec:
  owner: team
  server: {resource: "https://standalone.example/mcp"}
  authentication: {issuers: [{issuer: "https://idp.example"}]}
"#;

/// One kind of API call, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    verb: String,
    /// `None`: cluster-wide (all namespaces, or a cluster-scoped resource).
    namespace: Option<String>,
    /// The object's name, for requests on one object (RBAC's `resourceNames`).
    name: Option<String>,
}

/// What RBAC checks for a request (the API server's RequestInfo, for resource requests).
fn classify(method: &Method, path: &str, query: &str) -> Call {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, mut rest) = match segs.first() {
        Some(&"api") => (String::new(), &segs[2..]),
        Some(&"apis") => (segs[1].to_owned(), &segs[3..]),
        _ => panic!("not a resource request: {path}"),
    };
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        namespace = Some(rest[1].to_owned());
        rest = &rest[2..];
    }
    let resource = match rest.get(2) {
        Some(sub) => format!("{}/{sub}", rest[0]),
        None => rest[0].to_owned(),
    };
    let named = rest.len() >= 2;
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => panic!("unexpected method {m} {path}"),
    };
    Call {
        group,
        resource,
        verb: verb.to_owned(),
        namespace,
        name: named.then(|| rest[1].to_owned()),
    }
}

#[test]
fn classify_reads_paths_like_the_api_server() {
    let c = |m: Method, p: &str, q: &str| {
        let c = classify(&m, p, q);
        (c.group, c.resource, c.verb, c.namespace)
    };
    let s = |x: &str| x.to_owned();
    assert_eq!(
        c(
            Method::GET,
            "/apis/mcpwarden.io/v1alpha1/mcptools",
            "watch=true&resourceVersion=1"
        ),
        (s("mcpwarden.io"), s("mcptools"), s("watch"), None)
    );
    assert_eq!(
        c(Method::GET, "/api/v1/pods", "limit=500"),
        (s(""), s("pods"), s("list"), None)
    );
    assert_eq!(
        c(
            Method::PATCH,
            "/apis/mcpwarden.io/v1alpha1/namespaces/a/mcpclients/b/status",
            ""
        ),
        (
            s("mcpwarden.io"),
            s("mcpclients/status"),
            s("patch"),
            Some(s("a"))
        )
    );
    assert_eq!(
        c(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
            ""
        ),
        (
            s("coordination.k8s.io"),
            s("leases"),
            s("update"),
            Some(s("ns"))
        )
    );
    assert_eq!(
        c(
            Method::POST,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            ""
        ),
        (
            s("authentication.k8s.io"),
            s("tokenreviews"),
            s("create"),
            None
        )
    );
}

/// Wraps `inner`, recording every request the operator sends.
fn recorder(inner: kube::Client, calls: Arc<Mutex<BTreeSet<Call>>>) -> kube::Client {
    let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
        let (inner, calls) = (inner.clone(), calls.clone());
        async move {
            let call = classify(
                req.method(),
                req.uri().path(),
                req.uri().query().unwrap_or_default(),
            );
            // A server-side apply that creates its object is authorized as `create` too.
            let apply = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"application/apply-patch"));
            if apply && !call.resource.contains('/') {
                let get = Request::get(req.uri().clone())
                    .body(kube::client::Body::empty())
                    .unwrap();
                let exists = inner
                    .send(get)
                    .await
                    .map(|r| r.status() != StatusCode::NOT_FOUND);
                if matches!(exists, Ok(false)) {
                    calls.lock().unwrap().insert(Call {
                        verb: "create".into(),
                        ..call.clone()
                    });
                }
            }
            calls.lock().unwrap().insert(call);
            inner
                .send(req)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }
    });
    kube::Client::new(svc, "default")
}

/// `GET /v1/watch` on the push API (plain HTTP) with the pod's token: the status code.
async fn push_watch(port: u16, pod: &str) -> StatusCode {
    let path = format!("/v1/watch?namespace=team&pod={pod}");
    http_get(port, &path, Some(&format!("token-{pod}")))
        .await
        .status()
}

/// Every call the operator makes in a run that exercises all its API paths.
async fn recorded_calls(lease_namespace: &str, lease_name: &str) -> BTreeSet<Call> {
    let (shimmed, _) = fake_cluster().await;
    create_pod(&shimmed, "team", "pay-0", &[("app", "pay")]).await;
    create(&shimmed, include_str!("fixtures/team.yaml")).await;
    // Without a selector: its NetworkPolicy, if any, is deleted.
    create(&shimmed, UNSELECTED_TOOL).await;
    let calls = Arc::new(Mutex::new(BTreeSet::new()));
    let client = recorder(with_tokenreview(shimmed.clone(), AUDIENCE), calls.clone());

    let push = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let push_port = push.local_addr().unwrap().port();
    let mut lease = LeaseSettings::new(lease_name, lease_namespace, "operator-0");
    lease.lease_duration = Duration::from_secs(2);
    lease.retry_period = Duration::from_millis(100);
    let cluster = run::Cluster {
        watch: WatchSettings::default(),
        lease: Some(lease),
        audience: AUDIENCE.into(),
        tls: None,
        heartbeat: Duration::from_secs(1),
        status: StatusSettings {
            debounce: Duration::from_millis(20),
            usage_refresh: Duration::from_millis(100),
            ..StatusSettings::default()
        },
        clock: Arc::new(SystemClock),
        metrics: Metrics::new(),
        network_policies: Some(NetworkPolicySettings::default()),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run::run(client, cluster, push, None, async move {
        let _ = stop_rx.await;
    }));

    // Status written by the leader (so: Lease created, CRs listed and watched).
    eventually_await("status written", Duration::from_secs(10), || async {
        kube::Api::<McpClient>::namespaced(shimmed.clone(), "agents")
            .get("bot")
            .await
            .unwrap()
            .status
    })
    .await;
    // A sidecar authenticates (TokenReview); the push API serves once the watches listed.
    eventually_await("push API serving", Duration::from_secs(10), || async {
        match tokio::net::TcpStream::connect(("127.0.0.1", push_port)).await {
            Ok(_) => Some(()),
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(push_watch(push_port, "pay-0").await, StatusCode::OK);
    // The NetworkPolicy writer applied one and deleted the other.
    eventually_await("NetworkPolicies written", Duration::from_secs(10), || {
        let verbs: BTreeSet<String> = calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.resource == "networkpolicies")
            .map(|c| c.verb.clone())
            .collect();
        async move { (verbs.len() == 3).then_some(()) }
    })
    .await;
    // Renewals (get + update) happen every retry period.
    let renewed = |c: &BTreeSet<Call>| {
        c.iter()
            .any(|c| c.resource == "leases" && c.verb == "update")
    };
    eventually_await("a lease renewal", Duration::from_secs(5), || {
        let ok = renewed(&calls.lock().unwrap());
        async move { ok.then_some(()) }
    })
    .await;
    // Shutdown releases the Lease.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), operator)
        .await
        .expect("stops")
        .unwrap();
    calls.lock().unwrap().clone()
}

/// (group, resource, verb) → the names it is limited to (`None`: any), granted by the rules of
/// the rendered `kind` objects.
type Grants = BTreeMap<(String, String, String), Option<BTreeSet<String>>>;

fn grants(render: &helm::Render, kind: &str) -> Grants {
    let mut out = Grants::new();
    for role in render.all(kind) {
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "{kind} grants non-resource URLs: {rule}"
            );
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .unwrap_or_else(|| panic!("{kind} rule without {k}: {rule}"))
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            let names = rule
                .get("resourceNames")
                .map(|_| list("resourceNames").into_iter().collect::<BTreeSet<_>>());
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        assert!(
                            g != "*" && r != "*" && v != "*",
                            "{kind} uses a wildcard: {rule}"
                        );
                        // Two rules for one triple: the union of their names (any name wins).
                        let entry = out
                            .entry((g.clone(), r.clone(), v))
                            .or_insert(Some(BTreeSet::new()));
                        match (entry.as_mut(), &names) {
                            (Some(all), Some(these)) => all.extend(these.iter().cloned()),
                            _ => *entry = None,
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_exactly_the_api_calls_the_operator_makes() {
    let render = helm::render(&json!({})).unwrap_or_else(|e| panic!("the chart renders: {e}"));
    // The Lease the chart names (`--lease-name`), in the release namespace.
    let args =
        render.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    let lease_name = args
        .as_array()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str().unwrap().strip_prefix("--lease-name="))
        .expect("the chart passes --lease-name")
        .to_owned();
    let calls = recorded_calls(helm::NAMESPACE, &lease_name).await;

    let triple = |c: &Call| (c.group.clone(), c.resource.clone(), c.verb.clone());
    let cluster: BTreeSet<_> = calls
        .iter()
        .filter(|c| c.namespace.as_deref() != Some(helm::NAMESPACE))
        .map(triple)
        .collect();
    let own_namespace: BTreeSet<_> = calls
        .iter()
        .filter(|c| c.namespace.as_deref() == Some(helm::NAMESPACE))
        .map(triple)
        .collect();
    let show = |s: &BTreeSet<(String, String, String)>| {
        s.iter()
            .map(|(g, r, v)| format!("  {g:?} {r} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    println!("recorded (cluster-wide):\n{}", show(&cluster));
    println!("recorded (release namespace):\n{}", show(&own_namespace));

    // Sanity: the run exercised every path (or the comparison would prove little).
    for must in [
        ("mcpwarden.io", "mcptools", "watch"),
        ("mcpwarden.io", "mcpclients/status", "patch"),
        ("", "pods", "list"),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("networking.k8s.io", "networkpolicies", "create"),
        ("networking.k8s.io", "networkpolicies", "patch"),
        ("networking.k8s.io", "networkpolicies", "delete"),
    ] {
        let must = (must.0.to_owned(), must.1.to_owned(), must.2.to_owned());
        assert!(cluster.contains(&must), "the run did not exercise {must:?}");
    }
    for verb in ["create", "get", "update"] {
        let must = (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            verb.to_owned(),
        );
        assert!(
            own_namespace.contains(&must),
            "the run did not exercise {must:?}"
        );
    }

    for (kind, used, scope) in [
        ("ClusterRole", &cluster, "cluster-wide"),
        ("Role", &own_namespace, "release-namespace"),
    ] {
        let by_triple = grants(&render, kind);
        let granted: BTreeSet<_> = by_triple.keys().cloned().collect();
        assert_eq!(
            &granted,
            used,
            "{kind} ≠ {scope} calls.\nmissing from the chart:\n{}\nnever used by the operator:\n{}",
            show(&used.difference(&granted).cloned().collect()),
            show(&granted.difference(used).cloned().collect()),
        );
        // Grants limited by resourceNames cover the names the operator uses.
        let in_scope =
            |c: &&Call| (c.namespace.as_deref() == Some(helm::NAMESPACE)) == (kind == "Role");
        for call in calls.iter().filter(in_scope) {
            if let Some(Some(names)) = by_triple.get(&triple(call)) {
                let name = call.name.clone().unwrap_or_default();
                assert!(
                    names.contains(&name),
                    "{kind} limits {} {} to {names:?}, but the operator uses {name:?}",
                    call.resource,
                    call.verb
                );
            }
        }
    }

    // The grants reach the operator: bindings name the roles and the Deployment's ServiceAccount,
    // the Role lives where the Lease does.
    let sa = render.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"].clone();
    for (binding, role_kind) in [
        ("ClusterRoleBinding", "ClusterRole"),
        ("RoleBinding", "Role"),
    ] {
        let b = render.one(binding);
        let r = render.one(role_kind);
        assert_eq!(b["roleRef"]["kind"], role_kind);
        assert_eq!(b["roleRef"]["name"], r["metadata"]["name"]);
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": sa, "namespace": helm::NAMESPACE}])
        );
    }
    assert_eq!(render.one("Role")["metadata"]["namespace"], helm::NAMESPACE);
    assert_eq!(render.one("ServiceAccount")["metadata"]["name"], sa);
}
