//! A usage report, authenticated by a TokenReview of a Pod-bound token, reaching LAST-SEEN.

use jiff::Timestamp;
use mcp_warden_tests::cluster::{ControlPlane, HostOperator, curl_https, parse_table, wait_for};
use serde_json::json;
use std::time::Duration;

const SVC_HOST: &str = "mcp-warden-operator.mcp-warden.svc";

pub(crate) fn usage_report(
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
