//! The test plays the kubelet for the governed Pod (no kubelet runs here): it reads the Pod the
//! webhook mutated, mints the projected ServiceAccount token with TokenRequest bound to that Pod
//! (the audience the Pod spec says), and starts the sidecar container's command line and env on
//! the host in front of a real MCP server (server-everything).
//!
//! ```text
//! Pod governed/mcp-server-… (mutated) ──► initContainers[0]: args, env, mounts, token volume
//!   kubectl create token <sa> --bound-object-kind Pod --audience <spec> ──► <tmp>/<volume>/token
//!   mcp-warden-sidecar <the Pod's args> ──https (name: the Service's, CA: the env's)──► host operator
//!        (--operator-connect-to: the host cannot resolve the Service)   └─ TokenReview, bundle
//!   Python SDK ──Bearer (oidc-provider)──► sidecar ──► server-everything
//!   kubectl patch mcpclient … suspended ──► operator ──push──► sidecar: 403 (timed, 20 samples)
//!   sidecar ──usage report──► leader ──► kubectl get mcpclients: LAST-SEEN
//! ```
//!
//! What a host process must have changed, and nothing else: the listeners move to free
//! 127.0.0.1 ports, the mounted volumes to folders under the control plane's, the upstream's port
//! to server-everything's, `--operator-connect-to` to the host operator's push port, and
//! `--usage-interval-seconds 1` (the sidecar's default is 10 s; the Pod spec does not set it).

use crate::injection::GOVERNED;
use mcp_warden_test_support::{Idp, IdpOptions, Proc, free_port, peer_file, server_everything};
use mcp_warden_tests::{
    cluster::{AuditEvent, ControlPlane, HostOperator, http_get, parse_table, wait_for},
    mcp::Session,
    procs::workspace_bin,
    repo_root,
};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

/// The McpClient of the governed namespace the measurements use.
const CLIENT: &str = "agent-alpha";
/// Suspension samples.
const SAMPLES: usize = 20;
/// The slowest a suspension may take to be enforced.
const ENFORCED_WITHIN: Duration = Duration::from_secs(1);
/// The longest one sample is waited for before the step fails.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The sidecar of the governed Pod, running on the host.
struct PodSidecar {
    proc: Proc,
    /// `http://127.0.0.1:PORT/mcp`: where clients reach it (the McpTool's resource).
    url: String,
    /// `127.0.0.1:PORT` of its admin endpoints.
    admin: String,
}

pub(crate) fn kubelet(cp: &ControlPlane, op: &HostOperator) -> Result<(), String> {
    let pod = cp
        .kubectl_json(&["-n", GOVERNED, "get", "pods", "-l", "app=mcp-server"])?
        .get("items")
        .and_then(|i| i.as_array()?.first().cloned())
        .ok_or("no governed Pod")?;
    let pod_name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (upstream, upstream_url) = server_everything()?;
    let listen_port = free_port();
    let resource = format!("http://127.0.0.1:{listen_port}/mcp");
    let idp = IdpOptions::new(&resource).start()?;
    apply_governance(cp, &idp)?;
    let audit_from = cp.audit().len();
    let sidecar = start_sidecar(cp, &pod, op, &upstream_url, listen_port)?;
    let result = (|| {
        bundle_by_token_review(cp, op, &sidecar, &pod_name, audit_from)?;
        official_client_call(&sidecar, &idp)?;
        suspension(cp, &sidecar, &idp)?;
        last_seen(cp)
    })();
    result.map_err(|e| {
        format!(
            "{e}\n---- the governed Pod's sidecar ----\n{}\n---- server-everything ----\n{}",
            sidecar.proc.log(),
            upstream.log()
        )
    })
}

/// An McpTool selecting the Pod's labels, an McpClient whose identity the test's IdP issues, and
/// a policy granting it two tools.
fn apply_governance(cp: &ControlPlane, idp: &Idp) -> Result<(), String> {
    let issuer = &idp.issuer;
    let resource = &idp.resource;
    cp.apply(&format!(
        "apiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {{name: mcp-server, namespace: {GOVERNED}}}\n\
         spec:\n  owner: team-platform\n  server:\n    selector: {{matchLabels: {{app: mcp-server}}}}\n    \
         resource: '{resource}'\n    upstream: 'http://127.0.0.1:3001/mcp'\n  \
         authentication: {{issuers: [{{issuer: '{issuer}', algorithms: [RS256]}}]}}\n  \
         tools: [{{name: echo}}, {{name: get-sum}}]\n---\n\
         apiVersion: mcpwarden.io/v1alpha1\nkind: McpClient\nmetadata: {{name: {CLIENT}, namespace: {GOVERNED}}}\n\
         spec:\n  owner: alice@example.com\n  identity: {{issuer: '{issuer}', clientId: agent-alpha}}\n---\n\
         apiVersion: mcpwarden.io/v1alpha1\nkind: McpPolicy\nmetadata: {{name: alpha-tools, namespace: {GOVERNED}}}\n\
         spec:\n  clients: [{{name: {CLIENT}}}]\n  tools: [{{toolRef: mcp-server, names: [echo, get-sum]}}]\n"
    ))
    .map(|_| ())
}

/// `fieldRef` values of the downward API, from the Pod object.
fn field(pod: &Value, path: &str) -> Result<String, String> {
    match path {
        "metadata.name" | "metadata.namespace" => Ok(pod["metadata"][&path[9..]]
            .as_str()
            .unwrap_or_default()
            .to_owned()),
        // A Pending Pod has no addresses: empty, and the sidecar's bypass check falls back to
        // the host's own addresses (server-everything listens on loopback only).
        "status.podIPs" => Ok(pod["status"]["podIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["ip"].as_str())
            .collect::<Vec<_>>()
            .join(",")),
        other => Err(format!("fieldRef {other}: not played here")),
    }
}

/// What the kubelet would mount: each volume of the sidecar container as a folder under the
/// control plane's (so the control plane's stop also stops this process), the projected token
/// minted by TokenRequest bound to the Pod with the volume's audience. Mount path → folder.
fn mount_volumes(
    cp: &ControlPlane,
    pod: &Value,
    container: &Value,
) -> Result<Vec<(String, PathBuf)>, String> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    let root = cp.dir.join(format!("kubelet-{pod_name}"));
    let mut mounts = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = mount["name"].as_str().unwrap_or_default();
        let volume = pod["spec"]["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name))
            .ok_or(format!("the sidecar mounts {name}, which the Pod lacks"))?;
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if volume.get("emptyDir").is_some() {
        } else if let Some(sources) = volume["projected"]["sources"].as_array() {
            for source in sources {
                project(cp, pod, sa, source, &dir).map_err(|e| format!("volume {name}: {e}"))?;
            }
        } else {
            return Err(format!(
                "volume {name}: neither emptyDir nor projected: {volume}"
            ));
        }
        let path = mount["mountPath"].as_str().unwrap_or_default().to_owned();
        mounts.push((path, dir));
    }
    Ok(mounts)
}

/// One source of a projected volume, written into `dir` as the kubelet would: a
/// ServiceAccount token by TokenRequest bound to the Pod (its audience, else the API server's),
/// ConfigMap keys, downward-API fields.
fn project(
    cp: &ControlPlane,
    pod: &Value,
    sa: &str,
    source: &Value,
    dir: &std::path::Path,
) -> Result<(), String> {
    let write = |path: &str, text: &str| {
        let file = dir.join(path);
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))
    };
    let token = &source["serviceAccountToken"];
    if let Some(path) = token["path"].as_str() {
        let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let duration = format!(
            "--duration={}s",
            token["expirationSeconds"].as_i64().unwrap_or(3600)
        );
        let mut args = vec![
            "create",
            "token",
            sa,
            "-n",
            GOVERNED,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            pod_name,
            "--bound-object-uid",
            pod["metadata"]["uid"].as_str().unwrap_or_default(),
            duration.as_str(),
        ];
        if let Some(audience) = token["audience"].as_str() {
            args.extend(["--audience", audience]);
        }
        return write(path, cp.kubectl(&args)?.trim());
    }
    if let Some(name) = source["configMap"]["name"].as_str() {
        let map = cp.kubectl_json(&["-n", GOVERNED, "get", "configmap", name])?;
        for item in source["configMap"]["items"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = item["key"].as_str().unwrap_or_default();
            let path = item["path"].as_str().unwrap_or(key);
            write(path, map["data"][key].as_str().unwrap_or_default())?;
        }
        return Ok(());
    }
    if source.get("downwardAPI").is_some() {
        for item in source["downwardAPI"]["items"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = item["path"].as_str().unwrap_or_default();
            let field_path = item["fieldRef"]["fieldPath"].as_str().unwrap_or_default();
            write(path, &field(pod, field_path)?)?;
        }
        return Ok(());
    }
    Err(format!("a projection not played here: {source}"))
}

/// Starts the Pod's sidecar container on the host; waits until it listens.
fn start_sidecar(
    cp: &ControlPlane,
    pod: &Value,
    op: &HostOperator,
    upstream_url: &str,
    listen_port: u16,
) -> Result<PodSidecar, String> {
    let container = &pod["spec"]["initContainers"][0];
    if container["name"] != "mcp-warden-sidecar" {
        return Err(format!("initContainers[0] is not the sidecar: {container}"));
    }
    let mounts = mount_volumes(cp, pod, container)?;
    let admin_port = free_port();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect()
    };
    // The image's entrypoint is the sidecar binary; `command`, when the Pod sets one, must be it.
    let command = strings(&container["command"]);
    if !command.is_empty() && !command[0].ends_with("mcp-warden-sidecar") {
        return Err(format!("the sidecar's command is {command:?}"));
    }
    let args = strings(&container["args"]);
    let mut host_args = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") {
            host_args.push(arg.clone()); // the subcommand
            continue;
        }
        let value = it.next().ok_or(format!("{arg} has no value: {args:?}"))?;
        let moved = match arg.as_str() {
            "--listen" => format!("127.0.0.1:{listen_port}"),
            "--admin-listen" => format!("127.0.0.1:{admin_port}"),
            "--upstream" => {
                // The port server-everything listens on; the path the Pod spec says.
                let path = value.splitn(4, '/').nth(3).unwrap_or_default();
                let base = upstream_url.trim_end_matches("/mcp");
                format!("{base}/{path}")
            }
            _ => match mounts
                .iter()
                .find(|(m, _)| value.starts_with(&format!("{m}/")) || value == m)
            {
                Some((m, dir)) => dir
                    .join(value[m.len()..].trim_start_matches('/'))
                    .display()
                    .to_string(),
                None => value.clone(),
            },
        };
        host_args.extend([arg.clone(), moved]);
    }
    host_args.extend([
        "--operator-connect-to".to_owned(),
        op.push.clone(),
        "--usage-interval-seconds".to_owned(),
        "1".to_owned(),
    ]);
    let mut cmd = Command::new(workspace_bin("mcp-warden-sidecar")?);
    for v in mcp_warden_tests::cluster::PROXY_VARS {
        cmd.env_remove(v);
    }
    for env in container["env"].as_array().into_iter().flatten() {
        let name = env["name"].as_str().unwrap_or_default();
        let value = match (
            env["value"].as_str(),
            env["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Some(v), _) => v.to_owned(),
            (None, Some(path)) => field(pod, path)?,
            _ => return Err(format!("env {name}: only values and fieldRefs are played")),
        };
        cmd.env(name, value);
    }
    cmd.args(&host_args);
    eprintln!(
        "the governed Pod's sidecar on the host: mcp-warden-sidecar {}",
        host_args.join(" ")
    );
    let (proc, ()) = Proc::spawn(
        "mcp-warden-sidecar (governed Pod)",
        cmd,
        Duration::from_secs(30),
        |l| l.contains("listening").then_some(()),
    )?;
    cp.adopt("mcp-warden-sidecar", proc.id());
    Ok(PodSidecar {
        proc,
        url: format!("http://127.0.0.1:{listen_port}/mcp"),
        admin: format!("127.0.0.1:{admin_port}"),
    })
}

/// The sidecar is ready (it enforces a bundle) and got it from the host operator after a real
/// TokenReview of its Pod-bound token.
fn bundle_by_token_review(
    cp: &ControlPlane,
    op: &HostOperator,
    sidecar: &PodSidecar,
    pod: &str,
    audit_from: usize,
) -> Result<(), String> {
    let started = Instant::now();
    wait_for("the sidecar's /ready", Duration::from_secs(20), || {
        Ok(http_get(&format!("http://{}/ready", sidecar.admin))
            .ok()
            .filter(|(c, _)| *c == 200))
    })?;
    eprintln!(
        "the governed Pod's sidecar ready {:.1} s after its start",
        started.elapsed().as_secs_f64()
    );
    let connected = wait_for(
        "the operator's `sidecar connected` line",
        Duration::from_secs(10),
        || {
            Ok(op
                .proc
                .log()
                .lines()
                .find(|l| {
                    l.contains("sidecar connected") && l.contains(GOVERNED) && l.contains(pod)
                })
                .map(str::to_owned))
        },
    )?;
    let reviews: Vec<AuditEvent> = cp
        .audit()
        .into_iter()
        .skip(audit_from)
        .filter(|e| {
            e.group == "authentication.k8s.io" && e.resource == "tokenreviews" && e.verb == "create"
        })
        .collect();
    if reviews
        .iter()
        .all(|e| e.credential != op.credential || e.code != 201)
    {
        return Err(format!(
            "no TokenReview by the operator ({}) since the sidecar started: {reviews:?}",
            op.credential
        ));
    }
    eprintln!("operator: {}", connected.trim());
    Ok(())
}

/// Runs `tests/peers/py_client.py` (the official Python SDK); its JSON report.
fn python(url: &str, token: &str, action: &[&str]) -> Result<Value, String> {
    let python = peer_file("PEERS_PYTHON")?;
    let mut cmd = Command::new(python);
    cmd.arg(repo_root().join("tests/peers/py_client.py"))
        .args(["--token", token, "--mode", "legacy", "--timeout", "30", url])
        .args(action);
    let out = mcp_warden_tests::cluster::run_bounded(cmd, Duration::from_secs(45))?;
    serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "py_client printed no JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn alpha_token(idp: &Idp) -> Result<String, String> {
    idp.token("agent-alpha", "mcp:tools.list mcp:tools.call")
}

/// The official Python SDK lists the tools the policy grants and calls one through the sidecar.
fn official_client_call(sidecar: &PodSidecar, idp: &Idp) -> Result<(), String> {
    let token = alpha_token(idp)?;
    let list = python(&sidecar.url, &token, &["list"])?;
    let tools: Vec<&str> = list["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if list["ok"] != true || tools != ["echo", "get-sum"] && tools != ["get-sum", "echo"] {
        return Err(format!(
            "the Python SDK's tools/list through the sidecar: {list}"
        ));
    }
    let sum = python(
        &sidecar.url,
        &token,
        &["call", "get-sum", r#"{"a": 2, "b": 3}"#],
    )?;
    if sum["ok"] != true || !sum["result"].to_string().contains('5') {
        return Err(format!(
            "the Python SDK's get-sum through the sidecar: {sum}"
        ));
    }
    eprintln!(
        "the Python SDK called get-sum through the governed Pod's sidecar: {}",
        sum["result"]["content"]
    );
    Ok(())
}

fn patch_suspended(cp: &ControlPlane, suspended: bool) -> Result<(), String> {
    cp.kubectl(&[
        "-n",
        GOVERNED,
        "patch",
        "mcpclient",
        CLIENT,
        "--type",
        "merge",
        "-p",
        &json!({"spec": {"suspended": suspended}}).to_string(),
    ])
    .map(|_| ())
}

/// Calls `echo` until the answer's status is `want` (at most [`SAMPLE_TIMEOUT`]); the time from
/// `since`.
fn until_status(session: &mut Session, want: u16, since: Instant) -> Result<Duration, String> {
    let mut last = 0;
    while since.elapsed() < SAMPLE_TIMEOUT {
        last = session
            .call_tool("echo", json!({"message": "sample"}))?
            .status;
        if last == want {
            return Ok(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "no {want} within {SAMPLE_TIMEOUT:?} (last answer {last})"
    ))
}

fn summary(name: &str, samples: &[Duration]) -> String {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    format!(
        "{name}: min {:.0} ms, median {:.0} ms, max {:.0} ms ({} samples: {})",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len(),
        samples
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// `kubectl patch mcpclient … suspended: true` until a call through the sidecar is refused (403),
/// then back, 20 times: each time from the start of `kubectl patch`.
fn suspension(cp: &ControlPlane, sidecar: &PodSidecar, idp: &Idp) -> Result<(), String> {
    let token = alpha_token(idp)?;
    let mut session = Session::connect(&sidecar.url, Some(&token))?;
    let first = session.call_tool("echo", json!({"message": "before"}))?;
    if !first.is_success() {
        return Err(format!("echo before the suspension: {first:?}"));
    }
    let (mut suspend, mut resume) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        let t = Instant::now();
        patch_suspended(cp, true)?;
        suspend.push(until_status(&mut session, 403, t)?);
        let t = Instant::now();
        patch_suspended(cp, false)?;
        resume.push(until_status(&mut session, 200, t)?);
    }
    let after = session.call_tool("echo", json!({"message": "after"}))?;
    if !after.is_success() {
        return Err(format!("echo after the last resumption: {after:?}"));
    }
    eprintln!(
        "{}",
        summary(
            "suspended → 403 (from the start of kubectl patch)",
            &suspend
        )
    );
    eprintln!("{}", summary("resumed → 200", &resume));
    let slowest = suspend.iter().max().copied().unwrap_or_default();
    if slowest > ENFORCED_WITHIN {
        return Err(format!(
            "a suspension took {slowest:?} to be enforced (limit {ENFORCED_WITHIN:?})"
        ));
    }
    Ok(())
}

/// The sidecar's usage reports reach the leader, and `kubectl get mcpclients` shows LAST-SEEN.
fn last_seen(cp: &ControlPlane) -> Result<(), String> {
    // The client is new and only this sidecar serves it; it made at least one successful call
    // per resumption (counts arrive with the reports, every second, and the leader's refresh).
    let row: BTreeMap<String, String> = wait_for(
        "LAST-SEEN and CALLS-24H of governed/agent-alpha",
        Duration::from_secs(20),
        || {
            let table = cp.kubectl(&["get", "mcpclients", "-n", GOVERNED, "-o", "wide"])?;
            let (_, rows) = parse_table(&table);
            Ok(rows.into_iter().find(|r| r["NAME"] == CLIENT).filter(|r| {
                !r["LAST-SEEN"].is_empty()
                    && r["CALLS-24H"].parse::<usize>().is_ok_and(|c| c >= SAMPLES)
            }))
        },
    )?;
    eprintln!(
        "kubectl get mcpclients -n {GOVERNED}: {CLIENT} LAST-SEEN {} CALLS-24H {}",
        row["LAST-SEEN"], row["CALLS-24H"]
    );
    Ok(())
}
