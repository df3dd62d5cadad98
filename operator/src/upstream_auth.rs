//! Upstream credentials for the sidecars (`McpTool.spec.upstreamAuth`, issue 22): the Secret
//! values an McpTool references and the identity JWT's signing key, pushed only to that
//! McpTool's sidecars; the JWKS the upstreams verify against.
//!
//! ```text
//! Secrets ── cluster: watcher(Secrets labelled mcpwarden.io/upstream-credentials=true)
//!            files:   --upstream-secrets-dir <dir>/<namespace>/<name>/<key>, polled 100 ms
//!   └─► UpstreamAuth (values in memory only) ──changes──► push.rs: per watch,
//!        for_bundle(pod's bundle) = the refs of its McpTool, its namespace only
//!        ──► {"type":"upstreamAuth","credentials":{…}} when it differs from the last one sent
//! keys ── --upstream-identity-key FILE (signs) [--upstream-identity-next-key FILE (published
//!         ahead)], polled 200 ms; a replaced key stays published for OVERLAP
//!   └─► GET /v1/jwks (public keys only, unauthenticated)
//! ```
//!
//! Values never reach a log, a status, a metric or a bundle version: the bundle carries only the
//! McpTool's references, and this line is sent beside it.

use k8s_openapi::api::core::v1::Secret;
use mcp_warden_policy::Bundle;
use mcp_warden_wire::{
    UpstreamCredentials,
    keys::{PublicJwk, key_pair},
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// The label a Secret carries to be read by the operator (it reads no other Secret).
pub const SECRET_LABEL: &str = "mcpwarden.io/upstream-credentials";

/// How long a replaced signing key stays in the JWKS: twice the longest identity JWT lifetime.
pub const OVERLAP: Duration = Duration::from_secs(120);

/// `(namespace, name)` → key → value.
type SecretValues = BTreeMap<(String, String), BTreeMap<String, String>>;

#[derive(Default)]
struct KeySet {
    /// The signing key's PEM and public JWK.
    signing: Option<(String, PublicJwk)>,
    /// A key published ahead of signing.
    next: Option<PublicJwk>,
    /// Replaced keys, published until the instant.
    retired: Vec<(PublicJwk, Instant)>,
}

/// The Secret values and identity keys of every McpTool's sidecars.
pub struct UpstreamAuth {
    secrets: RwLock<SecretValues>,
    keys: RwLock<KeySet>,
    changes: watch::Sender<u64>,
}

impl Default for UpstreamAuth {
    fn default() -> Self {
        Self {
            secrets: RwLock::default(),
            keys: RwLock::default(),
            changes: watch::Sender::new(0),
        }
    }
}

impl std::fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("UpstreamAuth")
            .field("secrets", &secrets)
            .finish_non_exhaustive()
    }
}

impl UpstreamAuth {
    /// Wakes on every change of a value or key.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Sets (`Some`) or removes (`None`) one Secret's values.
    pub fn set_secret(&self, namespace: &str, name: &str, data: Option<BTreeMap<String, String>>) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        let changed = match data {
            Some(d) => secrets.insert(key, d.clone()).as_ref() != Some(&d),
            None => secrets.remove(&key).is_some(),
        };
        drop(secrets);
        if changed {
            self.changed();
        }
    }

    /// Replaces every Secret's values (a re-list, a folder read).
    pub fn replace_secrets(&self, all: SecretValues) {
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        if *secrets != all {
            *secrets = all;
            drop(secrets);
            self.changed();
        }
    }

    /// Installs the signing key (and the one published ahead of it). A signing key that is
    /// replaced stays published for [`OVERLAP`].
    pub fn set_keys(&self, signing: Option<&str>, next: Option<&str>) -> Result<(), String> {
        let signing = signing
            .map(|pem| key_pair(pem).map(|p| (pem.to_owned(), p.jwk)))
            .transpose()?;
        let next = next.map(|pem| key_pair(pem).map(|p| p.jwk)).transpose()?;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let before = (
            keys.signing.as_ref().map(|(_, j)| j.clone()),
            keys.next.clone(),
        );
        if let Some((_, old)) = &keys.signing
            && signing.as_ref().is_none_or(|(_, new)| new != old)
        {
            let old = old.clone();
            keys.retired.push((old, now + OVERLAP));
        }
        keys.retired.retain(|(j, until)| {
            *until > now && signing.as_ref().is_none_or(|(_, s)| s != j) && next.as_ref() != Some(j)
        });
        keys.signing = signing;
        keys.next = next;
        let after = (
            keys.signing.as_ref().map(|(_, j)| j.clone()),
            keys.next.clone(),
        );
        drop(keys);
        if before != after {
            self.changed();
        }
        Ok(())
    }

    /// The public keys upstreams verify the identity JWT with: signing, next, then retired.
    fn published(&self) -> Vec<PublicJwk> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        keys.signing
            .iter()
            .map(|(_, j)| j.clone())
            .chain(keys.next.clone())
            .chain(
                keys.retired
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(j, _)| j.clone()),
            )
            .collect()
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        mcp_warden_wire::keys::jwks(&self.published())
    }

    /// What the sidecars of `bundle`'s McpTool need: the values of the Secrets it references
    /// (in its own namespace) and, when it asks for an identity JWT, the signing key. `None`
    /// when it has no `upstreamAuth`.
    pub fn for_bundle(&self, bundle: &Bundle) -> Option<UpstreamCredentials> {
        let tool = bundle.tools.first()?;
        let spec = tool.spec.upstream_auth.as_ref()?;
        let namespace = tool
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| mcp_warden_policy::DEFAULT_NAMESPACE.to_owned());
        let refs = spec
            .credentials
            .iter()
            .map(|c| &c.secret_ref)
            .chain(spec.token_exchange.iter().map(|x| &x.client_secret_ref));
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut values = BTreeMap::new();
        for r in refs {
            if let Some(v) = secrets
                .get(&(namespace.clone(), r.name.clone()))
                .and_then(|d| d.get(&r.key))
            {
                values.insert(format!("{}/{}", r.name, r.key), v.clone());
            }
        }
        drop(secrets);
        let mut credentials = UpstreamCredentials {
            secrets: values,
            ..UpstreamCredentials::default()
        };
        if spec.identity.is_some() {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            credentials.signing_key = keys.signing.as_ref().map(|(pem, _)| pem.clone());
            drop(keys);
            credentials.published_keys = self.published().into_iter().skip(1).collect();
        }
        Some(credentials)
    }
}

/// A Secret's `data` as text (values that are not UTF-8 cannot be headers: left out, named in
/// a warning, never shown).
pub fn secret_values(secret: &Secret) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        match String::from_utf8(v.0.clone()) {
            Ok(text) => {
                values.insert(k.clone(), text);
            }
            Err(_) => tracing::warn!(
                secret = secret.metadata.name.as_deref().unwrap_or_default(),
                key = %k,
                "an upstream credential is not UTF-8 text: left out"
            ),
        }
    }
    values
}

/// Cluster mode: watches the Secrets labelled [`SECRET_LABEL`]`=true` into `auth`.
pub async fn watch_secrets(client: kube::Client, auth: Arc<UpstreamAuth>) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    let api: kube::Api<Secret> = kube::Api::all(client);
    let config = watcher::Config::default().labels(&format!("{SECRET_LABEL}=true"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut listed = SecretValues::new();
    while let Some(event) = stream.next().await {
        let key = |s: &Secret| {
            (
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default(),
            )
        };
        match event {
            Ok(watcher::Event::Apply(s)) => {
                let (ns, name) = key(&s);
                auth.set_secret(&ns, &name, Some(secret_values(&s)));
            }
            Ok(watcher::Event::Delete(s)) => {
                let (ns, name) = key(&s);
                auth.set_secret(&ns, &name, None);
            }
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(s)) => {
                listed.insert(key(&s), secret_values(&s));
            }
            Ok(watcher::Event::InitDone) => auth.replace_secrets(std::mem::take(&mut listed)),
            Err(e) => tracing::warn!(error = %e, "watching upstream credential Secrets"),
        }
    }
}

/// Files mode: `<dir>/<namespace>/<name>/<key>` (names starting with '.' skipped; one trailing
/// newline dropped).
pub fn read_secrets_dir(dir: &Path) -> std::io::Result<SecretValues> {
    let mut all = SecretValues::new();
    for namespace in visible_dirs(dir)? {
        for secret in visible_dirs(&namespace)? {
            let mut values = BTreeMap::new();
            for key in std::fs::read_dir(&secret)? {
                let path = key?.path();
                let name = file_name(&path);
                if name.starts_with('.') || !path.is_file() {
                    continue;
                }
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                    values.insert(name, text);
                }
            }
            all.insert((file_name(&namespace), file_name(&secret)), values);
        }
    }
    Ok(all)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn visible_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !file_name(&path).starts_with('.') {
            dirs.push(path);
        }
    }
    Ok(dirs)
}

/// How often the files mode's folder and the key files are read.
pub const POLL: Duration = Duration::from_millis(100);

/// Reads the key files and (files mode) the Secret folder every [`POLL`] into `auth`; what
/// cannot be read keeps what is in force (logged once per different error).
pub async fn watch_files(
    key: Option<PathBuf>,
    next_key: Option<PathBuf>,
    secrets_dir: Option<PathBuf>,
    auth: Arc<UpstreamAuth>,
) {
    let mut last_error: Option<String> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (key, next_key, secrets_dir, auth) = (
            key.clone(),
            next_key.clone(),
            secrets_dir.clone(),
            auth.clone(),
        );
        let read = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let read = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| {
                        std::fs::read_to_string(p)
                            .map_err(|e| format!("cannot read {}: {e}", p.display()))
                    })
                    .transpose()
            };
            if key.is_some() || next_key.is_some() {
                auth.set_keys(read(&key)?.as_deref(), read(&next_key)?.as_deref())?;
            }
            if let Some(dir) = &secrets_dir {
                let values = read_secrets_dir(dir)
                    .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
                auth.replace_secrets(values);
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match read {
            Ok(()) => last_error = None,
            Err(e) if last_error.as_ref() != Some(&e) => {
                tracing::warn!(error = %e, "upstream credentials not (re)loaded; what is in force stays");
                last_error = Some(e);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_warden_crds::{
        McpTool, McpToolSpec, SecretKeyRef, UpstreamAuthSpec, UpstreamCredentialSpec,
        UpstreamIdentitySpec,
    };
    use mcp_warden_test_support::tls::self_signed;

    fn bundle(namespace: &str, identity: bool) -> Bundle {
        let mut tool = McpTool::new(
            "t",
            McpToolSpec {
                upstream_auth: Some(UpstreamAuthSpec {
                    identity: identity.then(UpstreamIdentitySpec::default),
                    credentials: vec![UpstreamCredentialSpec {
                        secret_ref: SecretKeyRef {
                            name: "api".into(),
                            key: "token".into(),
                        },
                        header: "X-Api-Key".into(),
                        prefix: String::new(),
                    }],
                    token_exchange: None,
                }),
                ..McpToolSpec::default()
            },
        );
        tool.metadata.namespace = Some(namespace.into());
        Bundle::new([tool], [], [])
    }

    fn kids(auth: &UpstreamAuth) -> Vec<String> {
        mcp_warden_wire::keys::kids(&auth.jwks())
    }

    #[test]
    fn the_next_key_is_published_ahead_and_a_replaced_key_stays() {
        let auth = UpstreamAuth::default();
        let (one, two) = (self_signed().key_pem, self_signed().key_pem);
        let kid = |pem: &str| {
            key_pair(pem)
                .map(|p| p.kid().to_owned())
                .unwrap_or_default()
        };
        assert!(auth.set_keys(Some(&one), None).is_ok());
        assert_eq!(kids(&auth), [kid(&one)]);
        assert!(auth.set_keys(Some(&one), Some(&two)).is_ok());
        assert_eq!(
            kids(&auth),
            [kid(&one), kid(&two)],
            "the next key is published"
        );
        let pushed = auth.for_bundle(&bundle("team-a", true)).unwrap_or_default();
        assert_eq!(
            pushed.signing_key.as_deref(),
            Some(one.as_str()),
            "the current key signs"
        );
        assert_eq!(pushed.published_keys.len(), 1);
        assert!(auth.set_keys(Some(&two), None).is_ok());
        assert_eq!(
            kids(&auth),
            [kid(&two), kid(&one)],
            "the replaced key stays (OVERLAP)"
        );
        assert!(auth.set_keys(Some("not a key"), None).is_err());
        assert_eq!(
            kids(&auth),
            [kid(&two), kid(&one)],
            "a bad key changes nothing"
        );
    }

    #[test]
    fn a_tool_gets_only_its_own_namespaces_referenced_values() {
        let auth = UpstreamAuth::default();
        let mut rx = auth.subscribe();
        auth.set_secret(
            "team-a",
            "api",
            Some(BTreeMap::from([
                ("token".into(), "a-value".into()),
                ("other".into(), "not-referenced".into()),
            ])),
        );
        auth.set_secret(
            "team-b",
            "api",
            Some(BTreeMap::from([("token".into(), "b-value".into())])),
        );
        assert!(rx.has_changed().unwrap_or(false));
        let a = auth
            .for_bundle(&bundle("team-a", false))
            .unwrap_or_default();
        assert_eq!(
            a.secrets,
            BTreeMap::from([("api/token".into(), "a-value".into())])
        );
        assert_eq!(a.signing_key, None);
        let c = auth
            .for_bundle(&bundle("team-c", false))
            .unwrap_or_default();
        assert!(c.secrets.is_empty(), "{c:?}");
        assert!(auth.for_bundle(&Bundle::new([], [], [])).is_none());
        rx.mark_unchanged();
        auth.set_secret(
            "team-b",
            "api",
            Some(BTreeMap::from([("token".into(), "b-value".into())])),
        );
        assert!(!rx.has_changed().unwrap_or(true), "no change, no wake-up");
    }
}
