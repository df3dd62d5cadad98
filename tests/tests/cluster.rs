//! The chart, the CRDs and the operator against a REAL control plane (etcd, kube-apiserver with
//! RBAC and an audit log, kube-controller-manager; `tests/src/cluster.rs`), driven with the real
//! `kubectl` and `helm` CLIs, as a platform team would in its first hour.
//!
//! One control plane for this binary, one `#[test]` running the steps in order (each step needs
//! the state the previous ones left; the first failure stops the run and prints the API server's
//! log tail and every host operator's output):
//!
//! | step | checks |
//! | --- | --- |
//! | install | `helm install` creates every object of the chart; the three CRDs become Established |
//! | broken samples | every file of `tests/fixtures/broken/` is refused by the API server (schema, CEL, strict field validation) with the field and words the client-side loader uses, or the documented server wording |
//! | examples | `kubectl apply -f examples/payments/` and `examples/everything/` succeed |
//! | upgrade | `helm upgrade` with changed values changes the Deployment's flags (new ReplicaSet), removes the disabled NetworkPolicy, and leaves every other object and the CRDs untouched (same resourceVersion) |
//! | operators | two replicas of `mcp-warden-operator run` on the host, with the Deployment's own args and a TokenRequest token of the chart's ServiceAccount each: one holds the Lease |
//! | status | `kubectl get mcpclients -A` (and `-o wide`) print OWNER, PHASE, EXPIRES, REVIEW-DUE as the operator computed them from the spec; the audit log shows only the leader's token patching status |
//! | usage | a usage report (TokenReview of a token bound to a real Pod) moves LAST-SEEN and CALLS-24H; a follower refuses reports (503) but serves bundles |
//! | network policies | the operator keeps a NetworkPolicy per McpTool with a selector (its selector, the sidecar's `mcp` port, owned by the McpTool, applied by field manager `mcp-warden-operator`); removes it when the selector goes; the garbage collector deletes it with the McpTool |
//! | explain | `kubectl explain mcpclient.spec` documents every field |
//! | handover | SIGKILL of the leader: the follower takes the Lease within lease duration + retry period of the last renewal (measured) and writes status from then on; SIGTERM of a leader hands over at once |
//! | rbac | no request of the operator's ServiceAccount was refused (403) by the API server, and no operator logged a refusal; every permission the chart grants was used |
//! | uninstall | `helm uninstall` removes every object it created (Pods by garbage collection) and keeps the CRDs and the custom resources |
//!
//! Needs `make k8s-bins` (run by `make test`) and the workspace's `mcp-warden-operator` binary.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use jiff::Timestamp;
use mcp_warden_crds::McpClient;
use mcp_warden_tests::{
    cluster::{
        AuditEvent, ControlPlane, HostOperator, OperatorLaunch, curl_https, parse_table,
        run_bounded, wait_for,
    },
    display, read, repo_root, yaml_files,
};
use serde_json::{Value, json};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

/// The chart installed: `MCP_WARDEN_CHART` (a folder or a packaged `.tgz`, e.g. a release
/// candidate), else `charts/mcp-warden`.
fn chart() -> String {
    std::env::var("MCP_WARDEN_CHART")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| {
            repo_root()
                .join("charts/mcp-warden")
                .to_string_lossy()
                .into_owned()
        })
}

/// The install contract's defaults.
const RELEASE: &str = "mcp-warden";
const NS: &str = "mcp-warden";
const DEPLOYMENT: &str = "mcp-warden-operator";
const SERVICE_ACCOUNT: &str = "mcp-warden-operator";
const LEASE: &str = "mcp-warden-operator";
const CRDS: [&str; 3] = [
    "mcptools.mcpwarden.io",
    "mcpclients.mcpwarden.io",
    "mcppolicies.mcpwarden.io",
];
/// The lease duration the upgrade sets (the chart's default is 15 s).
const LEASE_SECONDS: u64 = 6;
/// The operator's retry period for that duration (`max(duration / 5, 1 s)`, leader.rs).
const RETRY: Duration = Duration::from_millis(1200);
/// The usage refresh the upgrade sets (the chart's default is 60 s).
const USAGE_REFRESH_SECONDS: u64 = 2;

/// Fixtures the API server refuses in other words than the client-side loader, and why.
const SERVER_WORDS: [(&str, &str, &str); 3] = [
    (
        "tool-bad-namespace.yaml",
        r#"namespaces "payments.prod" not found"#,
        "admission (NamespaceLifecycle) runs before validation: a namespace that cannot exist is \
         not found",
    ),
    (
        "tool-wrong-api-version.yaml",
        r#"no matches for kind "McpTool" in version "mcpwarden.io/v1""#,
        "kubectl maps the kind through the server's discovery before sending (and the server \
         itself answers 404 to the raw POST)",
    ),
    (
        "wrong-kind.yaml",
        r#"no matches for kind "McpServer" in version "mcpwarden.io/v1alpha1""#,
        "as above",
    ),
];

/// What a step took, for the summary.
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn step<T>(
        &mut self,
        name: &'static str,
        f: impl FnOnce() -> Result<T, String>,
    ) -> Result<T, String> {
        let t = Instant::now();
        eprintln!("== {name}");
        let r = f().map_err(|e| format!("step `{name}`: {e}"));
        self.0.push((name, t.elapsed()));
        r
    }
}

#[test]
fn chart_crds_and_operator_on_a_real_control_plane() {
    let started = Instant::now();
    let cp = ControlPlane::start().unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "control plane at {} started in {:.1} s ({})",
        cp.url,
        cp.start_time.as_secs_f64(),
        cp.dir.display()
    );
    let mut timings = Timings(vec![("control plane start", cp.start_time)]);
    let mut operators: Vec<HostOperator> = Vec::new();
    let result = scenario(&cp, &mut timings, &mut operators);
    eprintln!("---- cluster suite timings ----");
    for (name, d) in &timings.0 {
        eprintln!("{:>8.1} s  {name}", d.as_secs_f64());
    }
    eprintln!("{:>8.1} s  total", started.elapsed().as_secs_f64());
    if let Err(e) = result {
        let refused: Vec<String> = cp
            .audit()
            .iter()
            .filter(|e| e.code == 403)
            .map(|e| {
                format!(
                    "  {} {} {}/{} {}/{}",
                    e.user, e.verb, e.group, e.resource, e.namespace, e.name
                )
            })
            .collect();
        if !refused.is_empty() {
            eprintln!(
                "---- requests the API server refused (403: a permission is missing) ----\n{}",
                refused.join("\n")
            );
        }
        for op in &operators {
            eprintln!(
                "---- output of operator {} ----\n{}",
                op.identity,
                op.proc.log()
            );
        }
        panic!(
            "{e}\n---- kube-apiserver log (tail) ----\n{}",
            cp.log_tail("kube-apiserver", 30)
        );
    }
    drop(operators);
}

fn scenario(
    cp: &ControlPlane,
    t: &mut Timings,
    operators: &mut Vec<HostOperator>,
) -> Result<(), String> {
    let installed = t.step("helm install", || install(cp))?;
    t.step("broken samples refused by the API server", || {
        broken_samples(cp)
    })?;
    t.step("kubectl apply examples", || examples(cp))?;
    t.step("helm upgrade", || upgrade(cp, &installed))?;
    t.step("two operator replicas, one Lease", || {
        start_replicas(cp, operators)
    })?;
    t.step("status in kubectl get mcpclients", || {
        status_columns(cp, &operators[0], &operators[1])
    })?;
    let seen = t.step("usage report to LAST-SEEN", || {
        usage_report(cp, &operators[0], &operators[1])
    })?;
    t.step("a NetworkPolicy per McpTool", || network_policies(cp))?;
    t.step("kubectl explain", || explain(cp))?;
    t.step("leader killed: handover", || handover(cp, operators))?;
    t.step("review report and approve", || review(cp, seen))?;
    t.step("injection through real admission", || {
        injection(cp, &operators[2])
    })?;
    t.step("webhook down: pod creation refused", || {
        webhook_down(cp, &mut operators[2])
    })?;
    t.step("RBAC: nothing refused, nothing unused", || {
        rbac(cp, operators)
    })?;
    operators.clear();
    t.step("helm uninstall", || uninstall(cp, &installed))?;
    Ok(())
}

// ---- install -------------------------------------------------------------------------------

/// An object of the release: `kind/name` with its namespace (empty: cluster-scoped).
type ObjectId = (String, String, String);

/// The objects `helm get manifest` lists, with their version now.
fn release_objects(cp: &ControlPlane) -> Result<BTreeMap<ObjectId, String>, String> {
    let manifest = cp.helm(&["get", "manifest", RELEASE, "-n", NS])?;
    let mut out = BTreeMap::new();
    for doc in mcp_warden_tests::yaml_documents("helm get manifest", &manifest) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut args = vec!["get", kind.as_str(), name.as_str()];
        if !ns.is_empty() {
            args.extend(["-n", ns.as_str()]);
        }
        let live = cp.kubectl_json(&args)?;
        // Objects with a spec generation are compared on it (their status moves on its own: the
        // Deployment's and the PDB's controllers write it); the others on resourceVersion.
        let version = match live["metadata"]["generation"].as_i64() {
            Some(g) => format!("generation {g}"),
            None => format!(
                "resourceVersion {}",
                live["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            ),
        };
        out.insert((kind, ns, name), version);
    }
    Ok(out)
}

fn crd_versions(cp: &ControlPlane) -> Result<BTreeMap<String, String>, String> {
    CRDS.iter()
        .map(|crd| {
            let live = cp.kubectl_json(&["get", "crd", crd])?;
            Ok((
                (*crd).to_owned(),
                live["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ))
        })
        .collect()
}

fn install(cp: &ControlPlane) -> Result<BTreeMap<ObjectId, String>, String> {
    let chart = chart();
    let out = cp.helm(&[
        "install",
        RELEASE,
        &chart,
        "-n",
        NS,
        "--create-namespace",
        "--timeout",
        "60s",
    ])?;
    if !out.contains("STATUS: deployed") {
        return Err(format!("helm install did not deploy:\n{out}"));
    }
    for crd in CRDS {
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=30s",
        ])?;
    }
    let objects = release_objects(cp)?;
    let kinds: BTreeSet<&str> = objects.keys().map(|(k, _, _)| k.as_str()).collect();
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "Secret",
        "MutatingWebhookConfiguration",
        "NetworkPolicy",
        "PodDisruptionBudget",
    ] {
        if !kinds.contains(kind) {
            return Err(format!("the release has no {kind}: {kinds:?}"));
        }
    }
    // The Deployment exists and its controller made the ReplicaSet and the (Pending: no
    // kubelet here) Pods; the operator itself runs on the host below.
    wait_for(
        "the operator Deployment's 2 Pods",
        Duration::from_secs(30),
        || {
            let pods = cp.kubectl_json(&[
                "-n",
                NS,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/name=mcp-warden-operator",
            ])?;
            Ok((pods["items"].as_array().map_or(0, Vec::len) == 2).then_some(()))
        },
    )?;
    eprintln!("installed {} objects: {kinds:?}", objects.len());
    Ok(objects)
}

// ---- broken samples ------------------------------------------------------------------------

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map_while(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
}

fn broken_samples(cp: &ControlPlane) -> Result<(), String> {
    for ns in ["payments", "agents", "demo", "analytics"] {
        cp.kubectl(&["create", "namespace", ns])?;
    }
    let files = yaml_files(&repo_root().join("tests/fixtures/broken"));
    if files.len() < 15 {
        return Err(format!("only {} broken samples", files.len()));
    }
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(file);
        let expect = header(&text, "expect:").ok_or(format!("{name}: no `# expect:`"))?;
        let words = header(&text, "message:");
        let server = cp
            .kubectl_refused(&["apply", "-f", &file.to_string_lossy()])
            .map_err(|e| format!("{}: {e}", display(file)))?;
        let server = server.trim().to_owned();
        let client = match mcp_warden_policy::load(&name, &text) {
            Ok(_) => "ACCEPTED".to_owned(),
            Err(errors) => errors
                .0
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let wanted: Vec<String> = match SERVER_WORDS.iter().find(|(f, _, _)| *f == name) {
            Some((_, words, _)) => vec![(*words).to_owned()],
            None => std::iter::once(expect.clone())
                .chain(words.clone())
                .collect(),
        };
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !server.contains(w.as_str()))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{name}: the API server's refusal does not mention {missing:?}:\n    {server}"
            ));
        }
        // The server's own answer to the wrong kind or version, without kubectl's mapping.
        if name == "wrong-kind.yaml" || name == "tool-wrong-api-version.yaml" {
            let doc = &mcp_warden_tests::yaml_documents(&name, &text)[0];
            let api = doc["apiVersion"].as_str().unwrap_or_default();
            let plural = format!(
                "{}s",
                doc["kind"].as_str().unwrap_or_default().to_lowercase()
            );
            let path = format!("/apis/{api}/namespaces/payments/{plural}");
            let raw =
                cp.kubectl_refused(&["create", "--raw", &path, "-f", &file.to_string_lossy()])?;
            if !raw.contains("NotFound") && !raw.contains("could not find the requested resource") {
                failures.push(format!("{name}: POST {path} was not answered 404: {raw}"));
            }
        }
        let first_line = server
            .lines()
            .find(|l| l.contains(&expect) || l.contains("not found") || l.contains("no matches"))
            .unwrap_or_else(|| server.lines().next().unwrap_or_default());
        table.push(format!(
            "  {name}\n      server: {}\n      client: {client}",
            first_line.chars().take(220).collect::<String>()
        ));
    }
    eprintln!(
        "broken samples, the API server's words vs the client-side loader's:\n{}",
        table.join("\n")
    );
    let left = cp.kubectl(&["get", "mcptools,mcpclients,mcppolicies", "-A", "-o", "name"])?;
    if !left.trim().is_empty() {
        failures.push(format!("refused samples left objects behind:\n{left}"));
    }
    if failures.is_empty() {
        eprintln!("{} broken samples refused by the API server", files.len());
        Ok(())
    } else {
        Err(format!(
            "{} of {} broken samples:\n  {}",
            failures.len(),
            files.len(),
            failures.join("\n  ")
        ))
    }
}

// ---- examples ------------------------------------------------------------------------------

fn examples(cp: &ControlPlane) -> Result<(), String> {
    let mut created = 0;
    for dir in ["examples/payments/", "examples/everything/"] {
        let out = cp.kubectl(&["apply", "-f", dir])?;
        created += out.lines().filter(|l| l.ends_with(" created")).count();
        if out.lines().any(|l| !l.ends_with(" created")) {
            return Err(format!("kubectl apply -f {dir}:\n{out}"));
        }
    }
    let names = cp.kubectl(&["get", "mcptools,mcpclients,mcppolicies", "-A", "-o", "name"])?;
    if names.lines().count() != created {
        return Err(format!(
            "{created} created, but the cluster holds:\n{names}"
        ));
    }
    eprintln!("{created} objects of examples/ created");
    Ok(())
}

// ---- upgrade -------------------------------------------------------------------------------

fn deployment_args(cp: &ControlPlane) -> Result<Vec<String>, String> {
    let d = cp.kubectl_json(&["-n", NS, "get", "deployment", DEPLOYMENT])?;
    Ok(d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect())
}

fn upgrade(cp: &ControlPlane, installed: &BTreeMap<ObjectId, String>) -> Result<(), String> {
    let before = release_objects(cp)?;
    let crds_before = crd_versions(cp)?;
    let chart = chart();
    cp.helm(&[
        "upgrade",
        RELEASE,
        &chart,
        "-n",
        NS,
        "--timeout",
        "60s",
        "--set",
        &format!("operator.leaseDurationSeconds={LEASE_SECONDS}"),
        "--set",
        &format!("operator.usageRefreshSeconds={USAGE_REFRESH_SECONDS}"),
        "--set",
        "networkPolicy.enabled=false",
    ])?;
    let after = release_objects(cp)?;
    let mut problems = Vec::new();
    // What should change: the Deployment's flags; the NetworkPolicy is gone.
    let args = deployment_args(cp)?;
    for flag in [
        format!("--lease-duration-seconds={LEASE_SECONDS}"),
        format!("--usage-refresh-seconds={USAGE_REFRESH_SECONDS}"),
    ] {
        if !args.contains(&flag) {
            problems.push(format!("the Deployment's args lack {flag}: {args:?}"));
        }
    }
    let np = (
        "NetworkPolicy".to_owned(),
        NS.to_owned(),
        DEPLOYMENT.to_owned(),
    );
    if after.contains_key(&np)
        || cp
            .kubectl(&["-n", NS, "get", "networkpolicy", DEPLOYMENT])
            .is_ok()
    {
        problems.push("the NetworkPolicy is still there".to_owned());
    }
    // What should not: every other object and the CRDs (same resourceVersion: not written).
    for (id, rv) in &before {
        if id.0 == "Deployment" || *id == np {
            continue;
        }
        match after.get(id) {
            None => problems.push(format!("{id:?} disappeared")),
            Some(now) if now != rv => {
                problems.push(format!("{id:?} was rewritten ({rv} -> {now})"));
            }
            Some(_) => {}
        }
    }
    if after.keys().any(|id| !before.contains_key(id)) {
        problems.push(format!(
            "new objects: {:?}",
            after
                .keys()
                .filter(|id| !before.contains_key(id))
                .collect::<Vec<_>>()
        ));
    }
    if crd_versions(cp)? != crds_before {
        problems.push("helm upgrade rewrote the CRDs".to_owned());
    }
    if before != *installed {
        problems.push("objects changed between install and upgrade".to_owned());
    }
    let history = cp.helm(&["history", RELEASE, "-n", NS])?;
    if history.lines().count() != 3 {
        problems.push(format!("helm history:\n{history}"));
    }
    // The Deployment controller rolls out a new ReplicaSet with the new flags.
    wait_for(
        "a ReplicaSet with the upgraded flags",
        Duration::from_secs(30),
        || {
            let rs = cp.kubectl_json(&[
                "-n",
                NS,
                "get",
                "replicasets",
                "-l",
                "app.kubernetes.io/name=mcp-warden-operator",
            ])?;
            Ok(rs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| {
                    r["spec"]["template"]["spec"]["containers"][0]["args"]
                        .as_array()
                        .is_some_and(|a| {
                            a.iter()
                                .any(|a| a == &format!("--lease-duration-seconds={LEASE_SECONDS}"))
                        })
                })
                .then_some(()))
        },
    )?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

// ---- network policies ----------------------------------------------------------------------

/// The operator's NetworkPolicy of McpTool `ns/tool`, once it exists.
fn tool_policy(cp: &ControlPlane, ns: &str, tool: &str) -> Result<Value, String> {
    let name = format!("mcp-warden-tool-{tool}");
    wait_for(
        &format!("NetworkPolicy {ns}/{name}"),
        Duration::from_secs(15),
        || {
            Ok(cp
                .kubectl_json(&[
                    "-n",
                    ns,
                    "get",
                    "networkpolicy",
                    &name,
                    "--show-managed-fields",
                ])
                .ok())
        },
    )
}

fn policy_gone(cp: &ControlPlane, ns: &str, tool: &str, why: &str) -> Result<(), String> {
    let name = format!("mcp-warden-tool-{tool}");
    wait_for(why, Duration::from_secs(30), || {
        let out = cp.kubectl(&[
            "-n",
            ns,
            "get",
            "networkpolicy",
            "--ignore-not-found",
            &name,
        ])?;
        Ok(out.trim().is_empty().then_some(()))
    })
}

/// Every example McpTool with a selector has its NetworkPolicy; a scratch McpTool's policy
/// follows its selector and goes with it. (No CNI runs here: the policies are not enforced,
/// only their objects are checked.)
fn network_policies(cp: &ControlPlane) -> Result<(), String> {
    let mut problems = Vec::new();
    for (ns, tool) in [("demo", "everything"), ("payments", "payments-api")] {
        let policy = tool_policy(cp, ns, tool)?;
        let owner = cp.kubectl_json(&["-n", ns, "get", "mcptool", tool])?;
        let spec = &policy["spec"];
        let want = json!({
            "podSelector": owner["spec"]["server"]["selector"],
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"port": "mcp", "protocol": "TCP"}]},
                {"ports": [{"port": "mcpwarden-admin", "protocol": "TCP"}],
                 "from": [{"namespaceSelector": {"matchLabels":
                     {"kubernetes.io/metadata.name": NS}}}]},
            ],
        });
        if *spec != want {
            problems.push(format!("{ns}/{tool}: spec {spec}, expected {want}"));
        }
        let refs = &policy["metadata"]["ownerReferences"];
        if refs[0]["uid"] != owner["metadata"]["uid"] || refs[0]["kind"] != "McpTool" {
            problems.push(format!("{ns}/{tool}: owner references {refs}"));
        }
        let managers: Vec<&str> = policy["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        if managers != ["mcp-warden-operator"] {
            problems.push(format!("{ns}/{tool}: field managers {managers:?}"));
        }
    }
    let scratch = |selector: &str| {
        format!(
            "apiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {{name: scratch, namespace: demo}}\n\
             spec:\n  owner: test\n  server: {{{selector}resource: 'https://scratch.example/mcp'}}\n  \
             authentication: {{issuers: [{{issuer: 'https://idp.example'}}]}}\n"
        )
    };
    cp.apply(&scratch("selector: {matchLabels: {app: scratch}}, "))?;
    let policy = tool_policy(cp, "demo", "scratch")?;
    if policy["spec"]["podSelector"] != json!({"matchLabels": {"app": "scratch"}}) {
        problems.push(format!("demo/scratch: {}", policy["spec"]));
    }
    cp.kubectl(&[
        "-n",
        "demo",
        "patch",
        "mcptool",
        "scratch",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/server/selector"}]"#,
    ])?;
    policy_gone(
        cp,
        "demo",
        "scratch",
        "the operator to delete the policy of a tool without selector",
    )?;
    cp.apply(&scratch("selector: {matchLabels: {app: scratch}}, "))?;
    tool_policy(cp, "demo", "scratch")?;
    cp.kubectl(&["-n", "demo", "delete", "mcptool", "scratch"])?;
    policy_gone(
        cp,
        "demo",
        "scratch",
        "the garbage collector to delete the policy with its McpTool",
    )?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

// ---- operators -----------------------------------------------------------------------------

fn launch(identity: &str) -> OperatorLaunch {
    OperatorLaunch {
        namespace: NS.to_owned(),
        deployment: DEPLOYMENT.to_owned(),
        identity: identity.to_owned(),
        webhook_port: 0,
    }
}

fn lease_holder(cp: &ControlPlane) -> Result<(String, Value), String> {
    let lease = cp.kubectl_json(&["-n", NS, "get", "lease", LEASE])?;
    Ok((
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        lease,
    ))
}

fn start_replicas(cp: &ControlPlane, operators: &mut Vec<HostOperator>) -> Result<(), String> {
    let a = HostOperator::start(cp, &launch("operator-a"))?;
    wait_for(
        "operator-a to take the Lease",
        Duration::from_secs(20),
        || Ok(lease_holder(cp).ok().filter(|(h, _)| h == "operator-a")),
    )?;
    operators.push(a);
    let b = HostOperator::start(cp, &launch("operator-b"))?;
    operators.push(b);
    let (a, b) = (&operators[0], &operators[1]);
    // Two retry periods: B has looked at the Lease and stays a follower.
    std::thread::sleep(2 * RETRY);
    let (holder, lease) = lease_holder(cp)?;
    if holder != "operator-a" {
        return Err(format!("the Lease moved to {holder}"));
    }
    if lease["spec"]["leaseDurationSeconds"] != json!(LEASE_SECONDS) {
        return Err(format!("Lease duration: {}", lease["spec"]));
    }
    if a.metric("mcp_warden_operator_leader")? != 1.0
        || b.metric("mcp_warden_operator_leader")? != 0.0
    {
        return Err("operator-a should say leader=1, operator-b leader=0".to_owned());
    }
    Ok(())
}

// ---- status --------------------------------------------------------------------------------

fn clients(cp: &ControlPlane) -> Result<Vec<McpClient>, String> {
    let list = cp.kubectl_json(&["get", "mcpclients", "-A"])?;
    list["items"]
        .as_array()
        .ok_or("no items")?
        .iter()
        .map(|i| serde_json::from_value(i.clone()).map_err(|e| e.to_string()))
        .collect()
}

fn key(c: &McpClient) -> (String, String) {
    (
        c.metadata.namespace.clone().unwrap_or_default(),
        c.metadata.name.clone().unwrap_or_default(),
    )
}

/// Status patches in the audit log since `from` (index), by token.
fn status_writers(cp: &ControlPlane, from: usize) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for e in cp.audit().iter().skip(from) {
        if e.verb == "patch" && e.resource.ends_with("/status") {
            *by.entry(e.credential.clone()).or_default() += 1;
        }
    }
    by
}

fn same_time(cell: &str, t: Option<Timestamp>) -> bool {
    match t {
        None => cell.is_empty(),
        Some(t) => cell.parse::<Timestamp>().is_ok_and(|c| c == t),
    }
}

/// Every McpClient's status is current, and the table shows it.
fn check_table(cp: &ControlPlane) -> Result<(), String> {
    let now = Timestamp::now();
    let clients = clients(cp)?;
    let by_key: BTreeMap<_, _> = clients.iter().map(|c| (key(c), c)).collect();
    for c in &clients {
        let status = c
            .status
            .as_ref()
            .ok_or(format!("{:?} has no status", key(c)))?;
        if status.observed_generation != c.metadata.generation {
            return Err(format!(
                "{:?}: status not of the current generation",
                key(c)
            ));
        }
    }
    let (headers, rows) = parse_table(&cp.kubectl(&["get", "mcpclients", "-A"])?);
    let want = [
        "NAMESPACE",
        "NAME",
        "OWNER",
        "PHASE",
        "EXPIRES",
        "REVIEW-DUE",
        "LAST-SEEN",
        "AGE",
    ];
    if headers != want {
        return Err(format!("kubectl get mcpclients -A columns: {headers:?}"));
    }
    if rows.len() != clients.len() {
        return Err(format!("{} rows for {} clients", rows.len(), clients.len()));
    }
    for row in &rows {
        let k = (row["NAMESPACE"].clone(), row["NAME"].clone());
        let c = by_key.get(&k).ok_or(format!("row {k:?} is no client"))?;
        let phase = format!("{:?}", mcp_warden_policy::lifecycle::phase(c, now));
        let checks = [
            ("OWNER", row["OWNER"] == c.spec.owner),
            ("PHASE", row["PHASE"] == phase),
            (
                "EXPIRES",
                same_time(&row["EXPIRES"], c.spec.expires_at.as_ref().map(|t| t.0)),
            ),
            (
                "REVIEW-DUE",
                same_time(
                    &row["REVIEW-DUE"],
                    mcp_warden_policy::lifecycle::review_due(c),
                ),
            ),
        ];
        for (col, ok) in checks {
            if !ok {
                return Err(format!(
                    "{k:?}: {col} is {:?}; from the spec: phase {phase}, expires {:?}, review due {:?}",
                    row[col],
                    c.spec.expires_at,
                    mcp_warden_policy::lifecycle::review_due(c)
                ));
            }
        }
    }
    let (wide, rows) = parse_table(&cp.kubectl(&["get", "mcpclients", "-A", "-o", "wide"])?);
    if wide[..7] != want[..7] || !wide.ends_with(&["TOOLS".to_owned(), "CALLS-24H".to_owned()]) {
        return Err(format!("-o wide columns: {wide:?}"));
    }
    for row in &rows {
        let k = (row["NAMESPACE"].clone(), row["NAME"].clone());
        let c = by_key[&k];
        let tools = serde_json::to_string(&c.status.as_ref().unwrap().effective_tools).unwrap();
        if row["TOOLS"] != tools && !(row["TOOLS"] == "[]" && tools == "[]") {
            return Err(format!("{k:?}: TOOLS {:?}, status {tools}", row["TOOLS"]));
        }
    }
    Ok(())
}

/// The operator's requests the API server refused (403), if any.
fn refused(cp: &ControlPlane) -> Option<String> {
    let user = format!("system:serviceaccount:{NS}:{SERVICE_ACCOUNT}");
    let refused: Vec<String> = cp
        .audit()
        .iter()
        .filter(|e| e.user == user && e.code == 403)
        .map(|e| {
            format!(
                "  {} {}/{} {}/{}",
                e.verb, e.group, e.resource, e.namespace, e.name
            )
        })
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "the API server refused the operator (403: the chart lacks a permission):\n{}",
            refused.join("\n")
        )
    })
}

fn status_columns(cp: &ControlPlane, a: &HostOperator, b: &HostOperator) -> Result<(), String> {
    // A refused request (a permission the chart lacks) fails at once, saying which.
    wait_for("every McpClient's status", Duration::from_secs(30), || {
        if let Some(refused) = refused(cp) {
            return Ok(Some(Err(refused)));
        }
        check_table(cp).map(|()| Some(Ok(())))
    })??;
    let writers = status_writers(cp, 0);
    if writers.keys().any(|w| *w != a.credential) || writers.is_empty() {
        return Err(format!(
            "status patches by token (leader {}): {writers:?}",
            a.credential
        ));
    }
    if b.metric("mcp_warden_operator_status_writes_total")? != 0.0 {
        return Err("the follower counts status writes".to_owned());
    }
    // The managed fields say who owns status.
    let list = cp.kubectl_json(&["get", "mcpclients", "-A", "--show-managed-fields"])?;
    for item in list["items"].as_array().into_iter().flatten() {
        let managers: Vec<&Value> = item["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["subresource"] == "status")
            .collect();
        if managers.len() != 1 || managers[0]["manager"] != "mcp-warden-operator" {
            return Err(format!(
                "status managers of {}: {managers:?}",
                item["metadata"]["name"]
            ));
        }
    }
    eprintln!("{}", cp.kubectl(&["get", "mcpclients", "-A"])?);
    eprintln!("status patches by the leader's token: {writers:?}");
    // The tools and policies too.
    let policies = cp.kubectl_json(&["get", "mcppolicies", "-A"])?;
    for p in policies["items"].as_array().into_iter().flatten() {
        let accepted = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True");
        if !accepted {
            return Err(format!(
                "policy {} not Accepted: {}",
                p["metadata"]["name"], p["status"]
            ));
        }
    }
    Ok(())
}

// ---- usage ---------------------------------------------------------------------------------

const SVC_HOST: &str = "mcp-warden-operator.mcp-warden.svc";

fn usage_report(
    cp: &ControlPlane,
    leader: &HostOperator,
    follower: &HostOperator,
) -> Result<Timestamp, String> {
    // A Pod the McpTool `demo/everything` selects (no kubelet: it stays Pending, but it exists
    // and the operator indexes it), and a token bound to it as kubelet would project it.
    cp.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: everything-0\n  namespace: demo\n  labels:\n    \
         app: server-everything\nspec:\n  containers:\n  - name: server\n    image: node:22\n",
    )?;
    let token = cp
        .kubectl(&[
            "create",
            "token",
            "default",
            "-n",
            "demo",
            "--audience",
            "mcp-warden-operator",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "everything-0",
            "--duration=1h",
        ])?
        .trim()
        .to_owned();
    let ca = cp.dir.join("operator-tls-operator-a/ca.crt");
    let auth = format!("Authorization: Bearer {token}");
    // The follower serves the pod its bundle (over the chart's certificate, by the Service's
    // name), after a TokenReview.
    let (code, body) = curl_https(
        SVC_HOST,
        &follower.push,
        &ca,
        "/v1/watch?namespace=demo&pod=everything-0",
        &["-H", &auth, "--max-time", "4"],
    )?;
    if code != 200 || !body.contains("everything") {
        return Err(format!("GET /v1/watch from the follower: {code} {body}"));
    }
    let seen = Timestamp::now() - jiff::SignedDuration::from_secs(1);
    let report = json!({
        "namespace": "demo", "pod": "everything-0", "bootId": "cluster-suite", "seq": 1,
        "clients": [{"namespace": "demo", "name": "agent-alpha", "calls": 3,
                     "lastSeen": seen.to_string(), "tools": {"echo": 3}}],
    })
    .to_string();
    let post = |op: &HostOperator| {
        curl_https(
            SVC_HOST,
            &op.push,
            &ca,
            "/v1/usage",
            &[
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data",
                &report,
            ],
        )
    };
    let (code, body) = post(follower)?;
    if code != 503 {
        return Err(format!("a follower took a usage report: {code} {body}"));
    }
    let (code, body) = post(leader)?;
    if !(200..300).contains(&code) {
        return Err(format!(
            "the leader refused the usage report: {code} {body}"
        ));
    }
    // Counts are written every usage refresh (2 s after the upgrade).
    let row = wait_for(
        "LAST-SEEN and CALLS-24H of demo/agent-alpha",
        Duration::from_secs(20),
        || {
            let (_, rows) =
                parse_table(&cp.kubectl(&["get", "mcpclients", "-n", "demo", "-o", "wide"])?);
            Ok(rows
                .into_iter()
                .find(|r| r["NAME"] == "agent-alpha")
                .filter(|r| r["CALLS-24H"] == "3" && !r["LAST-SEEN"].is_empty()))
        },
    )?;
    let c = cp.kubectl_json(&["get", "mcpclient", "-n", "demo", "agent-alpha"])?;
    let last_seen: Timestamp = c["status"]["lastSeen"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("status.lastSeen: {e}"))?;
    if last_seen.as_second() != seen.as_second() {
        return Err(format!("lastSeen {last_seen}, reported {seen}"));
    }
    if !row["LAST-SEEN"].ends_with('s') {
        return Err(format!("LAST-SEEN {:?} is not an age", row["LAST-SEEN"]));
    }
    eprintln!(
        "demo/agent-alpha: LAST-SEEN {} CALLS-24H {}",
        row["LAST-SEEN"], row["CALLS-24H"]
    );
    Ok(seen)
}

// ---- explain -------------------------------------------------------------------------------

fn explain(cp: &ControlPlane) -> Result<(), String> {
    let out = cp.kubectl(&["explain", "mcpclient.spec"])?;
    let schema = mcp_warden_tests::crd_schema("McpClient").ok_or("no McpClient schema")?;
    let fields = schema["properties"]["spec"]["properties"]
        .as_object()
        .ok_or("no spec properties")?;
    let text: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut missing = Vec::new();
    for (name, field) in fields {
        let first_words: String = field["description"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .take(6)
            .collect::<Vec<_>>()
            .join(" ");
        if !out
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("{name}\t")))
            || first_words.is_empty()
            || !text.contains(&first_words)
        {
            missing.push(format!("{name} ({first_words:?})"));
        }
    }
    if !out.contains("KIND:") || !out.contains("McpClient") || !missing.is_empty() {
        return Err(format!(
            "kubectl explain mcpclient.spec lacks {missing:?}:\n{out}"
        ));
    }
    eprintln!(
        "kubectl explain mcpclient.spec documents {} fields",
        fields.len()
    );
    Ok(())
}

// ---- handover ------------------------------------------------------------------------------

/// Polls the Lease until `who` holds it; the time from `since`.
fn wait_holder(
    cp: &ControlPlane,
    who: &str,
    since: Instant,
    timeout: Duration,
) -> Result<Duration, String> {
    wait_for(&format!("{who} to hold the Lease"), timeout, || {
        Ok(lease_holder(cp)
            .ok()
            .filter(|(h, _)| h == who)
            .map(|_| since.elapsed()))
    })
}

fn lease_time(lease: &Value, field: &str) -> Result<Timestamp, String> {
    lease["spec"][field]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("Lease {field}: {e}: {}", lease["spec"]))
}

/// `later - earlier`, zero when negative.
fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or_default()
}

fn patch_suspended(cp: &ControlPlane, name: &str, suspended: bool) -> Result<(), String> {
    cp.kubectl(&[
        "-n",
        "agents",
        "patch",
        "mcpclient",
        name,
        "--type",
        "merge",
        "-p",
        &json!({"spec": {"suspended": suspended}}).to_string(),
    ])
    .map(|_| ())
}

fn phase_of(cp: &ControlPlane, name: &str) -> Result<String, String> {
    let c = cp.kubectl_json(&["-n", "agents", "get", "mcpclient", name])?;
    Ok(c["status"]["phase"].as_str().unwrap_or_default().to_owned())
}

fn handover(cp: &ControlPlane, operators: &mut Vec<HostOperator>) -> Result<(), String> {
    let lease_duration = Duration::from_secs(LEASE_SECONDS);
    // Hard kill of the leader: no release; the follower waits the Lease out.
    let (_, lease) = lease_holder(cp)?;
    let killed_at = Instant::now();
    let killed_wall = Timestamp::now();
    operators[0].proc.kill();
    let last_renew = lease_time(&lease, "renewTime")?;
    wait_holder(cp, "operator-b", killed_at, lease_duration * 3)?;
    let (_, lease) = lease_holder(cp)?;
    // Measured on the Lease's own timestamps (one clock, the host's), not on the polling.
    let took = since(lease_time(&lease, "acquireTime")?, killed_wall);
    let gap = since(lease_time(&lease, "acquireTime")?, last_renew);
    eprintln!(
        "SIGKILL of the leader: operator-b acquired the Lease {:.1} s after the kill, {:.1} s \
         after the last renewal read before it (lease {LEASE_SECONDS} s, retry {:.1} s)",
        took.as_secs_f64(),
        gap.as_secs_f64(),
        RETRY.as_secs_f64()
    );
    // Expiry is judged from when the follower last saw the record change (at most one retry
    // period after the last renewal), and it looks once per retry period.
    if took > lease_duration + 2 * RETRY + Duration::from_millis(500) {
        return Err(format!("handover took {took:?} (lease {lease_duration:?})"));
    }
    if lease["spec"]["leaseTransitions"] != json!(1) {
        return Err(format!("leaseTransitions: {}", lease["spec"]));
    }
    // The new leader writes status, and is the only one to.
    let audit_from = cp.audit().len();
    patch_suspended(cp, "support-bot", true)?;
    wait_for("support-bot Suspended", Duration::from_secs(20), || {
        Ok((phase_of(cp, "support-bot")? == "Suspended").then_some(()))
    })?;
    let writers = status_writers(cp, audit_from);
    if writers.keys().any(|w| *w != operators[1].credential) || writers.is_empty() {
        return Err(format!(
            "status patches after the handover: {writers:?} (new leader {})",
            operators[1].credential
        ));
    }
    // A third replica joins; SIGTERM of the leader releases the Lease: a quick handover.
    operators.push(HostOperator::start(cp, &launch("operator-c"))?);
    std::thread::sleep(2 * RETRY);
    let stopped_at = Instant::now();
    let stopped_wall = Timestamp::now();
    operators[1].terminate()?;
    wait_holder(cp, "operator-c", stopped_at, lease_duration * 3)?;
    let (_, lease) = lease_holder(cp)?;
    let took = since(lease_time(&lease, "acquireTime")?, stopped_wall);
    eprintln!(
        "SIGTERM of the leader: operator-c holds the Lease {:.1} s later",
        took.as_secs_f64()
    );
    if took > 2 * RETRY + Duration::from_secs(2) {
        return Err(format!(
            "a released Lease was taken over only after {took:?}: the release did not work"
        ));
    }
    patch_suspended(cp, "support-bot", false)?;
    wait_for("support-bot Active again", Duration::from_secs(20), || {
        Ok((phase_of(cp, "support-bot")? != "Suspended").then_some(()))
    })?;
    check_table(cp)
}

// ---- review --------------------------------------------------------------------------------

/// `mcp-warden-operator review <args>` with `kubeconfig`; stdout.
fn review_cli(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let bin = mcp_warden_tests::cluster::operator_bin()?;
    let mut cmd = std::process::Command::new(bin);
    for v in mcp_warden_tests::cluster::PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .arg("review")
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(60))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "review {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn report_entry(report: &Value, ns: &str, name: &str) -> Result<Value, String> {
    report["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["namespace"] == ns && c["name"] == name)
        .cloned()
        .ok_or(format!("the report has no {ns}/{name}"))
}

/// A person reviews, with exactly the RBAC docs/access-reviews.md says the commands need (list
/// mcptools and mcppolicies cluster-wide; list, get and patch mcpclients), as a ServiceAccount
/// token so the audit log names them.
fn review(cp: &ControlPlane, seen: Timestamp) -> Result<(), String> {
    cp.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reviewer, namespace: default}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: mcp-warden-reviewer}\n\
         rules:\n- apiGroups: [mcpwarden.io]\n  resources: [mcptools, mcppolicies]\n  verbs: [list]\n\
         - apiGroups: [mcpwarden.io]\n  resources: [mcpclients]\n  verbs: [list, get, patch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
         metadata: {name: mcp-warden-reviewer}\nroleRef: {apiGroup: rbac.authorization.k8s.io, \
         kind: ClusterRole, name: mcp-warden-reviewer}\nsubjects:\n\
         - {kind: ServiceAccount, name: reviewer, namespace: default}\n",
    )?;
    let kubeconfig = cp.dir.join("reviewer.kubeconfig");
    cp.service_account_kubeconfig("default", "reviewer", &kubeconfig)?;
    let report: Value =
        serde_json::from_str(&review_cli(&kubeconfig, &["report", "--format", "json"])?)
            .map_err(|e| format!("review report --format json: {e}"))?;
    if report["problems"] != json!([]) {
        return Err(format!("the report has problems: {}", report["problems"]));
    }
    // The report says what kubectl get says, for every client.
    for c in clients(cp)? {
        let (ns, name) = key(&c);
        let entry = report_entry(&report, &ns, &name)?;
        let status = c.status.clone().unwrap_or_default();
        let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let same = |field: &str, t: Option<Timestamp>| {
            entry[field]
                .as_str()
                .and_then(|v| v.parse::<Timestamp>().ok())
                == t
        };
        if entry["phase"] != json!(phase)
            || !same("reviewDue", status.review_due.as_ref().map(|t| t.0))
            || !same("lastSeen", status.last_seen.as_ref().map(|t| t.0))
        {
            return Err(format!("report entry {entry} vs status {status:?}"));
        }
    }
    // lastSeen survived the leader handover (the new leader keeps it in status).
    let alpha = report_entry(&report, "demo", "agent-alpha")?;
    if alpha["lastSeen"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t.as_second())
        != Some(seen.as_second())
    {
        return Err(format!(
            "agent-alpha's lastSeen after the handover: {}",
            alpha["lastSeen"]
        ));
    }
    let finance = report_entry(&report, "agents", "finance-agent")?;
    let overdue = finance["phase"] == "ReviewOverdue";
    if overdue
        != finance["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f == "review-overdue")
    {
        return Err(format!(
            "finance-agent: phase and flags disagree: {finance}"
        ));
    }
    // Approve: spec.review moves, the operator moves REVIEW-DUE and the phase.
    let audit_from = cp.audit().len();
    review_cli(
        &kubeconfig,
        &[
            "approve",
            "agents/finance-agent",
            "--by",
            "alice@example.com",
        ],
    )?;
    let c = cp.kubectl_json(&["-n", "agents", "get", "mcpclient", "finance-agent"])?;
    let client: McpClient = serde_json::from_value(c.clone()).map_err(|e| e.to_string())?;
    let review = client
        .spec
        .review
        .clone()
        .ok_or("finance-agent lost spec.review")?;
    if review.last_reviewed_by.as_deref() != Some("alice@example.com") {
        return Err(format!("spec.review after approve: {review:?}"));
    }
    let due = mcp_warden_policy::lifecycle::review_due(&client);
    let row = wait_for(
        "finance-agent's new REVIEW-DUE",
        Duration::from_secs(20),
        || {
            let (_, rows) = parse_table(&cp.kubectl(&["-n", "agents", "get", "mcpclients"])?);
            Ok(rows
                .into_iter()
                .find(|r| r["NAME"] == "finance-agent")
                .filter(|r| same_time(&r["REVIEW-DUE"], due)))
        },
    )?;
    let want = format!(
        "{:?}",
        mcp_warden_policy::lifecycle::phase(&client, Timestamp::now())
    );
    if row["PHASE"] != want || want == "ReviewOverdue" {
        return Err(format!(
            "finance-agent after approve: {row:?} (want {want})"
        ));
    }
    let patched_by: Vec<AuditEvent> = cp
        .audit()
        .into_iter()
        .skip(audit_from)
        .filter(|e| e.verb == "patch" && e.resource == "mcpclients")
        .collect();
    if patched_by.len() != 1 || patched_by[0].user != "system:serviceaccount:default:reviewer" {
        return Err(format!(
            "the approval's patch in the audit log: {patched_by:?}"
        ));
    }
    let after: Value =
        serde_json::from_str(&review_cli(&kubeconfig, &["report", "--format", "json"])?)
            .map_err(|e| e.to_string())?;
    let finance = report_entry(&after, "agents", "finance-agent")?;
    if finance["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f == "review-overdue")
        || finance["lastReviewedBy"] != "alice@example.com"
    {
        return Err(format!("the report after approve: {finance}"));
    }
    eprintln!(
        "review approve: finance-agent {} -> {} (REVIEW-DUE {})",
        if overdue {
            "ReviewOverdue"
        } else {
            "not overdue"
        },
        row["PHASE"],
        row["REVIEW-DUE"]
    );
    Ok(())
}

// ---- injection -----------------------------------------------------------------------------

const GOVERNED: &str = "governed";

/// The webhook reaches the host process through the chart's Service, turned into an
/// ExternalName for `localhost`: the API server then dials `localhost:<clientConfig.service.port>`
/// with TLS ServerName `mcp-warden-operator.mcp-warden.svc`, verified against the chart's
/// caBundle. The chart's webhook port is 443 (privileged, and shared by every run on the
/// machine), so the test also moves `clientConfig.service.port` of both entries to the port the
/// host operator's webhook listens on; nothing else of the chart's configuration changes.
fn injection(cp: &ControlPlane, op: &HostOperator) -> Result<(), String> {
    let port: u16 = op
        .webhook
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(format!("operator webhook address {:?}", op.webhook))?;
    cp.kubectl(&[
        "-n",
        NS,
        "patch",
        "service",
        DEPLOYMENT,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"localhost","clusterIP":null,"clusterIPs":null,"ipFamilies":null,"ipFamilyPolicy":null}}"#,
    ])?;
    let webhook_name = format!("{DEPLOYMENT}-{NS}");
    let patch = json!([
        {"op": "replace", "path": "/webhooks/0/clientConfig/service/port", "value": port},
        {"op": "replace", "path": "/webhooks/1/clientConfig/service/port", "value": port},
    ]);
    cp.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        &webhook_name,
        "--type",
        "json",
        "-p",
        &patch.to_string(),
    ])?;
    cp.kubectl(&["create", "namespace", GOVERNED])?;
    cp.kubectl(&[
        "label",
        "namespace",
        GOVERNED,
        "mcpwarden.io/inject=enabled",
    ])?;
    wait_for(
        "the default ServiceAccount of governed",
        Duration::from_secs(30),
        || {
            Ok(cp
                .kubectl(&[
                    "-n",
                    GOVERNED,
                    "get",
                    "serviceaccount",
                    "default",
                    "-o",
                    "name",
                ])
                .ok())
        },
    )?;
    let before = op.metric("mcp_warden_operator_admission_requests_total")?;
    // An MCP server's Deployment: the Deployment and ReplicaSet controllers create its Pod; the
    // API server calls the webhook on that creation.
    cp.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: mcp-server, namespace: {GOVERNED}}}\n\
         spec:\n  replicas: 1\n  selector: {{matchLabels: {{app: mcp-server}}}}\n  template:\n    \
         metadata: {{labels: {{app: mcp-server}}}}\n    spec:\n      containers:\n      \
         - name: server\n        image: node:22-bookworm-slim\n        \
         ports: [{{name: http, containerPort: 3001}}]\n"
    ))?;
    let pod = wait_for("the MCP server's Pod", Duration::from_secs(30), || {
        let pods = cp.kubectl_json(&["-n", GOVERNED, "get", "pods", "-l", "app=mcp-server"])?;
        Ok(pods["items"].as_array().and_then(|p| p.first()).cloned())
    })
    .map_err(|e| {
        let events = cp
            .kubectl(&["-n", GOVERNED, "get", "events"])
            .unwrap_or_default();
        format!("{e}\nevents:\n{events}")
    })?;
    let spec = &pod["spec"];
    let sidecar = &spec["initContainers"][0];
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let joined = args.join(" ");
    let checks = [
        (
            "sidecar first among initContainers",
            sidecar["name"] == "mcp-warden-sidecar",
        ),
        ("native sidecar", sidecar["restartPolicy"] == "Always"),
        (
            "governed label",
            pod["metadata"]["labels"]["mcpwarden.io/governed"] == "true",
        ),
        (
            "the chart's operator URL",
            joined.contains("https://mcp-warden-operator.mcp-warden.svc:8443"),
        ),
        (
            "upstream on the server's port",
            joined.contains("http://127.0.0.1:3001/mcp"),
        ),
        (
            "the chart's sidecar image",
            sidecar["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("ghcr.io/mcp-warden/mcp-warden-sidecar:")),
        ),
        (
            "the app container kept",
            spec["containers"][0]["name"] == "server",
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if !failed.is_empty() {
        return Err(format!("the injected Pod lacks {failed:?}:\n{pod:#}"));
    }
    // The CA the sidecar is told to trust is the chart's (the caBundle the API server used).
    let ca_env = sidecar["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "MCP_WARDEN_OPERATOR_CA")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_default()
        .to_owned();
    let webhook = cp.kubectl_json(&["get", "mutatingwebhookconfiguration", &webhook_name])?;
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD
        .decode(
            webhook["webhooks"][0]["clientConfig"]["caBundle"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| e.to_string())?;
    if ca_env.trim() != String::from_utf8_lossy(&ca_bundle).trim() {
        return Err(
            "the sidecar's MCP_WARDEN_OPERATOR_CA is not the webhook's caBundle".to_owned(),
        );
    }
    let after = op.metric("mcp_warden_operator_admission_requests_total")?;
    if after <= before {
        return Err(format!(
            "the webhook counted no admission request ({before} -> {after})"
        ));
    }
    // A Pod that opts out is not sent to the webhook at all (objectSelector).
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: opted-out, namespace: {GOVERNED}, \
         labels: {{mcpwarden.io/inject: \"false\"}}}}\nspec:\n  containers:\n  \
         - {{name: app, image: busybox}}\n"
    ))?;
    let opted_out = cp.kubectl_json(&["-n", GOVERNED, "get", "pod", "opted-out"])?;
    if !opted_out["spec"]["initContainers"].is_null() {
        return Err("the opted-out Pod was injected".to_owned());
    }
    eprintln!(
        "the API server called the webhook over TLS (chart caBundle, ServerName \
         {DEPLOYMENT}.{NS}.svc via ExternalName localhost:{port}); Pod {} injected",
        pod["metadata"]["name"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// `failurePolicy: Fail`: with no webhook answering, a Pod of an opted-in namespace is refused.
fn webhook_down(cp: &ControlPlane, op: &mut HostOperator) -> Result<(), String> {
    op.proc.kill();
    let refusal = cp.kubectl_refused(&[
        "-n",
        GOVERNED,
        "run",
        "ungoverned",
        "--image=node:22-bookworm-slim",
        "--port=3001",
        "--restart=Never",
    ])?;
    for words in [
        r#"failed calling webhook "namespace.inject.mcpwarden.io""#,
        "mcp-warden-operator.mcp-warden.svc",
        "connection refused",
    ] {
        if !refusal.contains(words) {
            return Err(format!("the refusal does not say {words:?}:\n{refusal}"));
        }
    }
    if cp
        .kubectl(&[
            "-n",
            GOVERNED,
            "get",
            "pod",
            "ungoverned",
            "--ignore-not-found",
            "-o",
            "name",
        ])?
        .trim()
        != ""
    {
        return Err("the ungoverned Pod exists".to_owned());
    }
    // An opted-out Pod does not depend on the webhook.
    cp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: opted-out-2, namespace: {GOVERNED}, \
         labels: {{mcpwarden.io/inject: \"false\"}}}}\nspec:\n  containers:\n  \
         - {{name: app, image: busybox}}\n"
    ))?;
    eprintln!("webhook down, Pod refused: {}", refusal.trim());
    Ok(())
}

// ---- rbac ----------------------------------------------------------------------------------

fn rbac(cp: &ControlPlane, operators: &[HostOperator]) -> Result<(), String> {
    let user = format!("system:serviceaccount:{NS}:{SERVICE_ACCOUNT}");
    let events: Vec<AuditEvent> = cp.audit().into_iter().filter(|e| e.user == user).collect();
    let refused: Vec<&AuditEvent> = events.iter().filter(|e| e.code == 403).collect();
    let mut problems = Vec::new();
    if !refused.is_empty() {
        problems.push(format!(
            "the API server refused the operator (403, missing permission):\n{}",
            refused
                .iter()
                .map(|e| format!(
                    "  {} {}/{} {}/{}",
                    e.verb, e.group, e.resource, e.namespace, e.name
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    for op in operators {
        let warnings: Vec<String> = op
            .proc
            .log()
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .map(str::to_owned)
            .collect();
        if !warnings.is_empty() {
            eprintln!("operator {} warned:\n{}", op.identity, warnings.join("\n"));
        }
        let log = op.proc.log().to_lowercase();
        if log.contains("forbidden") || log.contains(" 403") || log.contains("code: 403") {
            problems.push(format!(
                "operator {} logged a refusal:\n{}",
                op.identity,
                op.proc.log()
            ));
        }
    }
    // What the operator used, against what the chart grants.
    // A server-side apply that creates its object (201) is authorized as `create` as well.
    let used: BTreeSet<(String, String, String)> = events
        .iter()
        .flat_map(|e| {
            let created = (e.verb == "patch" && e.code == 201).then_some("create");
            [Some(e.verb.as_str()), created]
                .into_iter()
                .flatten()
                .map(|v| (e.group.clone(), e.resource.clone(), v.to_owned()))
        })
        .collect();
    let mut granted = Vec::new();
    let role = cp.kubectl_json(&["-n", NS, "get", "role", DEPLOYMENT])?;
    let cluster_role = cp.kubectl_json(&["get", "clusterrole", &format!("{DEPLOYMENT}-{NS}")])?;
    for (scope, r) in [("Role", &role), ("ClusterRole", &cluster_role)] {
        for rule in r["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().into_iter().flatten() {
                for res in rule["resources"].as_array().into_iter().flatten() {
                    for v in rule["verbs"].as_array().into_iter().flatten() {
                        granted.push((
                            scope,
                            g.as_str().unwrap_or_default().to_owned(),
                            res.as_str().unwrap_or_default().to_owned(),
                            v.as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
        }
    }
    let unused: Vec<String> = granted
        .iter()
        .filter(|(_, g, r, v)| !used.contains(&(g.clone(), r.clone(), v.clone())))
        .map(|(s, g, r, v)| format!("{s}: {v} {g}/{r}"))
        .collect();
    eprintln!(
        "the operator's requests ({}): {:?}\ngranted but never used: {unused:?}",
        events.len(),
        used
    );
    if !unused.is_empty() {
        problems.push(format!(
            "the chart grants what the operator never used: {unused:?}"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

// ---- uninstall -----------------------------------------------------------------------------

fn uninstall(cp: &ControlPlane, installed: &BTreeMap<ObjectId, String>) -> Result<(), String> {
    let clients_before = cp.kubectl(&["get", "mcpclients", "-A", "-o", "name"])?;
    cp.helm(&["uninstall", RELEASE, "-n", NS, "--timeout", "60s"])?;
    let mut left = Vec::new();
    for (kind, ns, name) in installed.keys() {
        if kind == "NetworkPolicy" {
            continue; // already removed by the upgrade
        }
        let mut args = vec![
            "get",
            kind.as_str(),
            name.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        if !ns.is_empty() {
            args.extend(["-n", ns.as_str()]);
        }
        if !cp.kubectl(&args)?.trim().is_empty() {
            left.push(format!("{kind}/{name}"));
        }
    }
    if !left.is_empty() {
        return Err(format!("helm uninstall left {left:?}"));
    }
    // The Deployment's ReplicaSets and Pods go by garbage collection.
    wait_for(
        "the operator's Pods and ReplicaSets to be collected",
        Duration::from_secs(60),
        || {
            let out = cp.kubectl(&[
                "-n",
                NS,
                "get",
                "pods,replicasets",
                "-l",
                "app.kubernetes.io/name=mcp-warden-operator",
                "-o",
                "name",
            ])?;
            Ok(out.trim().is_empty().then_some(()))
        },
    )?;
    for crd in CRDS {
        let c = cp.kubectl_json(&["get", "crd", crd])?;
        let established = c["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if !established {
            return Err(format!("CRD {crd} is not Established after uninstall"));
        }
    }
    if cp.kubectl(&["get", "mcpclients", "-A", "-o", "name"])? != clients_before {
        return Err("the McpClients changed with helm uninstall".to_owned());
    }
    if !cp.helm(&["list", "-n", NS, "-q"])?.trim().is_empty() {
        return Err("helm still lists the release".to_owned());
    }
    Ok(())
}
