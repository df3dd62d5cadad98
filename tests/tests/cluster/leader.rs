//! The operator replicas on the host and their Lease: one leader, a follower, and the handovers
//! after SIGKILL and SIGTERM of the leader.

use crate::{
    DEPLOYMENT, LEASE, LEASE_SECONDS, NS, RETRY,
    status::{check_table, status_writers},
};
use jiff::Timestamp;
use mcp_warden_tests::cluster::{ControlPlane, HostOperator, OperatorLaunch, wait_for};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

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

pub(crate) fn start_replicas(
    cp: &ControlPlane,
    operators: &mut Vec<HostOperator>,
) -> Result<(), String> {
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

pub(crate) fn handover(cp: &ControlPlane, operators: &mut Vec<HostOperator>) -> Result<(), String> {
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
