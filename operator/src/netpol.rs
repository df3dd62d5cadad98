//! One NetworkPolicy per McpTool with a `server.selector`: the governed pods accept traffic only
//! on the sidecar's `mcp` port (and its admin port from the namespaces allowed to scrape it), so
//! nobody reaches the MCP server around the sidecar. `--network-policies=false` (chart value
//! `networkPolicy.perTool: false`) turns this off.
//!
//! ```text
//! Index::changes ──► debounce ──► leader? ──► for each McpTool: desired(tool) (pure)
//!   Some(policy) and not already applied ──► PATCH networkpolicies/<name> (server-side apply,
//!                                            field manager mcp-warden-operator, forced)
//!   None (no selector) and not already gone ──► DELETE networkpolicies/<name> (404 is fine)
//! McpTool deleted ──► the garbage collector deletes its policy (owner reference)
//! ```
//!
//! The ports are named (`mcp`, `mcpwarden-admin`): the injector names the sidecar's ports so,
//! whatever port a pod's `mcpwarden.io/proxy-port` annotation chose. A selected pod without the
//! sidecar has no such port and accepts nothing. NetworkPolicies add up: another policy that
//! admits more to the same pods widens this one.

use crate::{
    inject::{ADMIN_PORT_NAME, PROXY_PORT_NAME},
    metrics::Metrics,
    status_writer::FIELD_MANAGER,
};
use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use mcp_warden_crds::{API_VERSION, McpTool};
use mcp_warden_policy::inventory::Key;
use std::{
    collections::{BTreeMap, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
};
use tokio::sync::watch;

/// The label every policy made here carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mcp-warden-operator");

/// What the policies admit besides the sidecar's MCP port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkPolicySettings {
    /// Namespaces whose pods may reach the sidecar's admin port (metrics, probes): the
    /// operator's and the monitoring namespaces.
    pub admin_from: Vec<String>,
}

/// The name of `tool`'s policy: `mcp-warden-tool-<tool>` (a hash ends names too long).
pub fn name(tool: &str) -> String {
    let name = format!("mcp-warden-tool-{tool}");
    if name.len() <= 253 {
        return name;
    }
    let mut h = DefaultHasher::new();
    tool.hash(&mut h);
    format!("{}-{:08x}", &name[..240], h.finish() as u32)
}

fn named_port(name: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    }
}

/// The policy `tool` should have; `None` without a selector or uid (nothing to select, or no
/// owner to collect it with).
pub fn desired(tool: &McpTool, settings: &NetworkPolicySettings) -> Option<NetworkPolicy> {
    let selector: &LabelSelector = tool.spec.server.selector.as_ref()?;
    let meta = &tool.metadata;
    let (tool_name, uid) = (meta.name.clone()?, meta.uid.clone()?);
    let mut ingress = vec![NetworkPolicyIngressRule {
        ports: Some(vec![named_port(PROXY_PORT_NAME)]),
        from: None,
    }];
    if !settings.admin_from.is_empty() {
        let from = settings.admin_from.iter().map(|ns| NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    ns.clone(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        });
        ingress.push(NetworkPolicyIngressRule {
            ports: Some(vec![named_port(ADMIN_PORT_NAME)]),
            from: Some(from.collect()),
        });
    }
    Some(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(name(&tool_name)),
            namespace: meta.namespace.clone(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_owned(),
                MANAGED_BY.1.to_owned(),
            )])),
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.into(),
                kind: "McpTool".into(),
                name: tool_name,
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector.clone()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}

fn digest(p: &NetworkPolicy) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(p).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Keeps every McpTool's policy applied while this replica leads, until `shutdown` resolves.
pub async fn run(
    client: Client,
    index: crate::index::Index,
    mut leader: watch::Receiver<bool>,
    settings: NetworkPolicySettings,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut changes = index.changes();
    // What this replica last did per McpTool: Some(digest) applied, None deleted.
    let mut done: HashMap<Key, Option<u64>> = HashMap::new();
    let mut first = true;
    let mut leadership_moves = true;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = async {}, if std::mem::take(&mut first) => {}
            r = changes.changed() => if r.is_err() { return },
            r = leader.changed(), if leadership_moves => leadership_moves = r.is_ok(),
            // Policies deleted behind our back come back within a few minutes.
            () = tokio::time::sleep(std::time::Duration::from_secs(300)) => done.clear(),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
        changes.borrow_and_update();
        if !*leader.borrow_and_update() {
            done.clear();
            continue;
        }
        let inventory = index.inventory();
        done.retain(|k, _| inventory.tools().contains_key(k));
        for (key, tool) in inventory.tools() {
            let want = desired(tool, &settings);
            let d = want.as_ref().map(digest);
            if done.get(key) == Some(&d) {
                continue;
            }
            let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &key.0);
            let policy = name(&key.1);
            let result = match &want {
                Some(p) => api
                    .patch(
                        &policy,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(p),
                    )
                    .await
                    .map(|_| ()),
                None => match api.delete(&policy, &DeleteParams::default()).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    r => r.map(|_| ()),
                },
            };
            match result {
                Ok(()) => {
                    done.insert(key.clone(), d);
                }
                Err(error) => {
                    tracing::warn!(namespace = %key.0, tool = %key.1, %policy, %error, "NetworkPolicy write failed");
                    metrics.error("network_policy");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_admits_the_sidecar_ports_only() {
        let text = "apiVersion: mcpwarden.io/v1alpha1\nkind: McpTool\nmetadata: {name: pay, namespace: team, uid: u-1}\nspec:\n  owner: me\n  server: {selector: {matchLabels: {app: pay}}, resource: 'https://pay.example/mcp'}\n  authentication: {issuers: [{issuer: 'https://idp.example'}]}\n";
        let mut tool: McpTool = serde_yaml::from_str(text).expect("a tool");
        let settings = NetworkPolicySettings {
            admin_from: vec!["mcp-warden".into()],
        };
        let p = serde_json::to_value(desired(&tool, &settings).expect("a policy")).unwrap();
        assert_eq!(p["metadata"]["name"], "mcp-warden-tool-pay");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            p["spec"],
            serde_json::json!({
                "podSelector": {"matchLabels": {"app": "pay"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"ports": [{"port": "mcp", "protocol": "TCP"}]},
                    {"ports": [{"port": "mcpwarden-admin", "protocol": "TCP"}],
                     "from": [{"namespaceSelector": {"matchLabels":
                         {"kubernetes.io/metadata.name": "mcp-warden"}}}]},
                ],
            })
        );
        tool.spec.server.selector = None;
        assert!(desired(&tool, &settings).is_none());
        assert!(name(&"x".repeat(253)).len() <= 253);
    }
}
