//! The live RuleSet, swapped atomically on reload. Requests take a snapshot (`Arc`) at their
//! start and keep it to the end, so a reload never changes the rules under a request.

use crate::audit::Redaction;
use arc_swap::ArcSwapOption;
use mcp_warden_policy::{Bundle, Capability, RuleSet};
use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, Ordering},
};

/// One enforced configuration.
#[derive(Debug)]
pub struct Active {
    /// The compiled rules.
    pub rules: RuleSet,
    /// The version (content hash) of the bundle they were compiled from. The bundle itself is
    /// not kept: the rules hold what enforcement needs, and a second copy of every CR doubled
    /// the memory of large policy sets.
    pub version: String,
    /// Whether the quota engine has seen these rules.
    quotas_synced: AtomicBool,
    /// The audit redaction of each tool, resource and prompt entry, in that order (`None`:
    /// invalid rules), then the no-rules one.
    redactions: OnceLock<Vec<Option<Arc<Redaction>>>>,
    /// The `scope` of the 401 challenge (`auth::prm::challenge_scopes`).
    challenge_scope: OnceLock<Arc<str>>,
    /// Where requests go under this configuration (with the process's settings).
    route: OnceLock<crate::proxy::service::Route>,
}

impl Active {
    /// A configuration ready to install.
    pub fn new(rules: RuleSet, bundle: Bundle) -> Self {
        Self {
            rules,
            version: bundle.version,
            quotas_synced: AtomicBool::new(false),
            redactions: OnceLock::new(),
            challenge_scope: OnceLock::new(),
            route: OnceLock::new(),
        }
    }

    /// The public URL, MCP path, host policy and upstream under these rules, computed once per
    /// configuration (the settings are the process's and do not change).
    pub fn route(&self, settings: &crate::settings::Settings) -> &crate::proxy::service::Route {
        self.route
            .get_or_init(|| crate::proxy::service::Route::new(&self.rules, settings))
    }

    /// The `scope` of the 401 challenge, computed once per configuration.
    pub fn challenge_scope(&self) -> Arc<str> {
        self.challenge_scope
            .get_or_init(|| {
                crate::auth::prm::challenge_scopes(&self.rules)
                    .join(" ")
                    .into()
            })
            .clone()
    }

    /// The audit redaction for a use of `used` (its entry's `audit`: a tool, resource or
    /// prompt entry), built once per configuration. `None` when the entry's redaction rules are
    /// invalid (fail closed).
    pub fn audit_redaction(&self, used: Option<(Capability, &str)>) -> Option<Arc<Redaction>> {
        let all = self.redactions.get_or_init(|| {
            let mut all: Vec<Option<Arc<Redaction>>> = Vec::new();
            for capability in Capability::ALL {
                for e in &self.rules.entries(capability).list {
                    all.push(match Redaction::from_spec(e.audit.as_ref()) {
                        Ok(r) => Some(Arc::new(r)),
                        Err(err) => {
                            tracing::error!(%capability, entry = ?e.pattern, error = %err, "invalid audit redaction rules: uses of this entry are refused");
                            None
                        }
                    });
                }
            }
            all.push(Some(Arc::new(Redaction::none())));
            all
        });
        let index = used.and_then(|(capability, name)| {
            let entry = self.rules.entries(capability).entry(name)?;
            // The entries of the capabilities before this one come first in `all`.
            let before: usize = Capability::ALL
                .iter()
                .take_while(|c| **c != capability)
                .map(|c| self.rules.entries(*c).list.len())
                .sum();
            let list = &self.rules.entries(capability).list;
            list.iter()
                .position(|e| std::ptr::eq(e, entry))
                .map(|i| before + i)
        });
        all[index.unwrap_or(all.len() - 1)].clone()
    }

    /// Brings the quota engine up to these rules, once (unchanged limits keep their state).
    pub fn sync_quotas(&self, quotas: &crate::quota::Quotas) {
        if !self.quotas_synced.load(Ordering::Acquire) {
            quotas.update(&self.rules);
            self.quotas_synced.store(true, Ordering::Release);
        }
    }
}

/// The configuration in force; `None` until the first valid one (then everything is denied
/// and `/ready` says not ready).
#[derive(Debug)]
pub struct Live {
    current: ArcSwapOption<Active>,
    /// Bumped by every install and clear: open streams re-check their caller (`proxy::revoke`).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            current: ArcSwapOption::default(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Live {
    /// The rules in force now.
    pub fn current(&self) -> Option<Arc<Active>> {
        self.current.load_full()
    }

    /// Installs a new configuration; returns whether the version changed.
    pub fn install(&self, active: Active) -> bool {
        let changed = self
            .current
            .load()
            .as_ref()
            .is_none_or(|old| old.version != active.version);
        self.current.store(Some(Arc::new(active)));
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        changed
    }

    /// Withdraws the configuration: every request is denied until the next install.
    pub fn clear(&self) {
        self.current.store(None);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Wakes on every change of the configuration in force.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether a valid configuration is in force.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }
}
