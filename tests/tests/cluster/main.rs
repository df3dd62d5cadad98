//! The chart, the CRDs and the operator against a REAL control plane (etcd, kube-apiserver with
//! RBAC and an audit log, kube-controller-manager; `tests/src/cluster.rs`), driven with the real
//! `kubectl` and `helm` CLIs, as a platform team would in its first hour.
//!
//! One control plane for this binary, one `#[test]` running the steps in order (each step needs
//! the state the previous ones left; the first failure stops the run and prints the API server's
//! log tail and every host operator's output):
//!
//! | step | module | checks |
//! | --- | --- | --- |
//! | install | `install` | `helm install` creates every object of the chart; the three CRDs become Established |
//! | broken samples | `samples` | every file of `tests/fixtures/broken/` is refused by the API server (schema, CEL, strict field validation) with the field and words the client-side loader uses, or the documented server wording |
//! | examples | `samples` | `kubectl apply -f examples/payments/` and `examples/everything/` succeed |
//! | upgrade | `install` | `helm upgrade` with changed values changes the Deployment's flags (new ReplicaSet), removes the disabled NetworkPolicy, and leaves every other object and the CRDs untouched (same resourceVersion) |
//! | operators | `leader` | two replicas of `mcp-warden-operator run` on the host, with the Deployment's own args and a TokenRequest token of the chart's ServiceAccount each: one holds the Lease |
//! | status | `status` | `kubectl get mcpclients -A` (and `-o wide`) print OWNER, PHASE, EXPIRES, REVIEW-DUE as the operator computed them from the spec; the audit log shows only the leader's token patching status |
//! | usage | `usage` | a usage report (TokenReview of a token bound to a real Pod) moves LAST-SEEN and CALLS-24H; a follower refuses reports (503) but serves bundles |
//! | network policies | `netpol` | the operator keeps a NetworkPolicy per McpTool with a selector (its selector, the sidecar's `mcp` port, owned by the McpTool, applied by field manager `mcp-warden-operator`); removes it when the selector goes; the garbage collector deletes it with the McpTool |
//! | explain | `samples` | `kubectl explain mcpclient.spec` documents every field |
//! | handover | `leader` | SIGKILL of the leader: the follower takes the Lease within lease duration + retry period of the last renewal (measured) and writes status from then on; SIGTERM of a leader hands over at once |
//! | review | `review` | `review report` and `review approve` as a ServiceAccount with the documented RBAC |
//! | injection | `injection` | the API server calls the host operator's webhook (chart caBundle, Service name) for the Pod the ReplicaSet controller creates; an opted-out Pod is not sent |
//! | kubelet | `kubelet` | the test plays the kubelet for the governed Pod: TokenRequest bound to it, the sidecar container's args and env on the host in front of server-everything; the bundle comes through a real TokenReview, the Python SDK calls through it, a suspension is enforced within 1 s (20 samples), LAST-SEEN shows the usage report |
//! | webhook down | `injection` | `failurePolicy: Fail`: Pods of an opted-in namespace are refused while no webhook answers |
//! | rbac | `rbac` | no request of the operator's ServiceAccount was refused (403) by the API server, and no operator logged a refusal; every permission the chart grants was used |
//! | uninstall | `install` | `helm uninstall` removes every object it created (Pods by garbage collection) and keeps the CRDs and the custom resources |
//!
//! Needs `make k8s-bins` (run by `make test`) and the workspace's `mcp-warden-operator` binary.

#![allow(clippy::unwrap_used)] // a panic is how a test reports its failure

use mcp_warden_tests::cluster::{ControlPlane, HostOperator};
use std::time::{Duration, Instant};

mod injection;
mod install;
mod kubelet;
mod leader;
mod netpol;
mod rbac;
mod review;
mod samples;
mod status;
mod usage;

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
    let installed = t.step("helm install", || install::install(cp))?;
    t.step("broken samples refused by the API server", || {
        samples::broken_samples(cp)
    })?;
    t.step("kubectl apply examples", || samples::examples(cp))?;
    t.step("helm upgrade", || install::upgrade(cp, &installed))?;
    t.step("two operator replicas, one Lease", || {
        leader::start_replicas(cp, operators)
    })?;
    t.step("status in kubectl get mcpclients", || {
        status::status_columns(cp, &operators[0], &operators[1])
    })?;
    let seen = t.step("usage report to LAST-SEEN", || {
        usage::usage_report(cp, &operators[0], &operators[1])
    })?;
    t.step("a NetworkPolicy per McpTool", || {
        netpol::network_policies(cp)
    })?;
    t.step("kubectl explain", || samples::explain(cp))?;
    t.step("leader killed: handover", || {
        leader::handover(cp, operators)
    })?;
    t.step("review report and approve", || review::review(cp, seen))?;
    t.step("injection through real admission", || {
        injection::injection(cp, &operators[2])
    })?;
    t.step("the kubelet played: the governed Pod's sidecar", || {
        kubelet::kubelet(cp, &operators[2])
    })?;
    t.step("webhook down: pod creation refused", || {
        injection::webhook_down(cp, &mut operators[2])
    })?;
    t.step("RBAC: nothing refused, nothing unused", || {
        rbac::rbac(cp, operators)
    })?;
    operators.clear();
    t.step("helm uninstall", || install::uninstall(cp, &installed))?;
    Ok(())
}
