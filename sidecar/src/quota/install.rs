//! Installing a RuleSet's limits ([`Quotas::update`]) and creating a client's state on its
//! first call ([`Quotas::first_call`]).
//!
//! ```text
//!  update(rules), under the update lock:
//!    new Index: a ClientSlot per McpClient (its limits), a PolicyDef per McpPolicy
//!    clients that have called keep their ClientLive (cells, detector, counter) ─► new slot
//!    clients and policies gone ─► their metric series removed
//!  first tools/call of a client: ClientLive created, under the same lock, in the Index in force
//! ```
//!
//! A client that never called has no state and no `mcp_warden_quota_decisions_total` series:
//! they appear with its first call. Creating the state under the update lock makes it either
//! precede an update (which then carries it over) or follow it (and go into the new Index), so
//! no call's count is lost to a concurrent reload.

use super::{
    Quotas,
    state::{ClientLive, ClientSlot, Index, PolicyDef, Slot, lock},
};
use mcp_warden_policy::{ObjectRef, RuleSet};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

impl Quotas {
    /// Installs the limits of `rules`, keeping the state of limits whose definition did not
    /// change. Call it whenever a RuleSet is installed.
    pub fn update(&self, rules: &RuleSet) {
        let _serial = lock(&self.update_lock);
        let old = self.index.load_full();
        let tool = if old.initialized && *old.tool == rules.tool {
            old.tool.clone()
        } else {
            Arc::new(rules.tool.clone())
        };
        let policies: HashMap<Arc<ObjectRef>, PolicyDef> = rules
            .policies
            .iter()
            .map(|p| {
                let object = old
                    .policies
                    .get_key_value(&p.object)
                    .map_or_else(|| Arc::new(p.object.clone()), |(o, _)| o.clone());
                let def = PolicyDef {
                    object: object.clone(),
                    rate: p.rate_limit,
                    daily: p.daily_quota,
                };
                (object, def)
            })
            .collect();
        let mut lifted = Vec::new();
        let clients: HashMap<Arc<ObjectRef>, ClientSlot> = rules
            .clients
            .iter()
            .map(|c| {
                let old_slot = old.clients.get(&c.object);
                let object =
                    old_slot.map_or_else(|| Arc::new(c.object.clone()), |s| s.object.clone());
                let live = OnceLock::new();
                if let Some(kept) = old_slot.and_then(|s| s.live.get()) {
                    let mut st = lock(&kept.state);
                    st.pairs.retain(|_, v| {
                        v.retain(|p| policies.contains_key(&*p.policy));
                        !v.is_empty()
                    });
                    if st.runaway.clear_if(c.runaway_cleared_at) {
                        lifted.push(c.object.clone());
                    }
                    drop(st);
                    let _ = live.set(kept.clone());
                }
                let slot = ClientSlot {
                    object: object.clone(),
                    rate: c.rate_limit,
                    daily: c.daily_calls,
                    suspend_on_runaway: c.suspend_on_runaway,
                    cleared_at: c.runaway_cleared_at,
                    live,
                };
                (object, slot)
            })
            .collect();
        let gone = old
            .clients
            .keys()
            .filter(|o| !clients.contains_key(&***o))
            .chain(
                old.policies
                    .keys()
                    .filter(|o| !policies.contains_key(&***o)),
            )
            .map(|o| &**o)
            .chain(std::iter::once(&*old.tool).filter(|t| old.initialized && **t != *tool));
        for object in gone {
            self.metrics.forget(object);
        }
        let new = Index {
            initialized: true,
            tool,
            clients,
            policies,
        };
        {
            let mut flags = lock(&self.flags);
            flags.retain(|c, _| new.clients.contains_key(c));
            for c in &lifted {
                if flags.remove(c).is_some() {
                    tracing::info!(client = %c, "runaway flag cleared by {}", mcp_warden_policy::compile::RUNAWAY_CLEARED_AT_ANNOTATION);
                }
            }
            self.publish_flags(&flags, &new);
        }
        self.index.store(Arc::new(new));
    }

    /// Creates `client`'s state on its first call. `index` is the caller's snapshot; it is
    /// replaced by the Index in force when the state has to be created (a reload may have
    /// come in between).
    pub(crate) fn first_call(&self, index: &mut Arc<Index>, client: &ObjectRef) {
        if index
            .clients
            .get(client)
            .is_some_and(|s| s.live.get().is_none())
        {
            let _serial = lock(&self.update_lock);
            *index = self.index.load_full();
            if let Some(def) = index.clients.get(client) {
                def.live.get_or_init(|| self.new_live(def));
            }
        }
    }

    /// `client` in `index`, after [`Self::first_call`].
    pub(crate) fn slot<'a>(&self, index: &'a Index, client: &ObjectRef) -> Option<Slot<'a>> {
        let def = index.clients.get(client)?;
        // Set by `first_call`; `get_or_init` only keeps this total.
        let live = def.live.get_or_init(|| self.new_live(def));
        Some(Slot { def, live })
    }

    fn new_live(&self, def: &ClientSlot) -> Arc<ClientLive> {
        Arc::new(ClientLive {
            allowed: self.metrics.decision("allowed", &def.object),
            state: Mutex::default(),
        })
    }
}
