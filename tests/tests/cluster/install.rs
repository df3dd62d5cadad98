//! `helm install`, `helm upgrade` and `helm uninstall` of the chart: the objects of the release,
//! what an upgrade rewrites (only the Deployment) and what an uninstall leaves (the CRDs and the
//! custom resources).

use crate::{CRDS, DEPLOYMENT, LEASE_SECONDS, NS, RELEASE, USAGE_REFRESH_SECONDS};
use mcp_warden_tests::{
    cluster::{ControlPlane, wait_for},
    repo_root,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
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

pub(crate) fn install(cp: &ControlPlane) -> Result<BTreeMap<ObjectId, String>, String> {
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

fn deployment_args(cp: &ControlPlane) -> Result<Vec<String>, String> {
    let d = cp.kubectl_json(&["-n", NS, "get", "deployment", DEPLOYMENT])?;
    Ok(d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect())
}

pub(crate) fn upgrade(
    cp: &ControlPlane,
    installed: &BTreeMap<ObjectId, String>,
) -> Result<(), String> {
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

pub(crate) fn uninstall(
    cp: &ControlPlane,
    installed: &BTreeMap<ObjectId, String>,
) -> Result<(), String> {
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
