//! Quotas and runaway protection for `tools/call`, `resources/read`, `prompts/get` and
//! `completion/complete`: per-client, per-client×tool and per-tool rates (GCRA with bursts),
//! daily budgets per UTC day, shared across replicas through Redis. A resource or prompt counts
//! where a tool does, under the key of the entry that governs it ([`use_key`]).
//!
//! ```text
//!  proxy: decide(..) = Allow{client, policy} ──► Quotas::check(rules, client, policy, tool, now)
//!    │                                               │
//!    │        runaway-suspended? ──────────────────► Suspended            → 429, no Retry-After
//!    │        local tier (all limits, one lock per client + one per tool shard):
//!    │          peek every limit ── any refuses ──► Limited (nothing consumed)  → 429 + Retry-After
//!    │          else commit (reserve) all
//!    │        shared limits and Redis up? ── one EVALSHA (check.lua, all-or-nothing):
//!    │          refused ──► undo the local reservation ──► Limited
//!    │          error ──► fail-closed: undo ──► Unavailable                → 503 + Retry-After
//!    │                    local-only: undo, redo locally with budget ÷ replicas
//!    └──────────────────────────────────────────► Allowed{RateLimit headers} → forward
//! ```
//!
//! # Limits (from the compiled [`RuleSet`])
//!
//! | reason | definition | scope | shared through Redis |
//! |---|---|---|---|
//! | `client_rate` | McpClient `spec.quota.rateLimit` | the client, all tools | yes |
//! | `client_daily` | McpClient `spec.quota.dailyCalls` | the client, per UTC day | yes |
//! | `policy_rate` | granting McpPolicy `spec.rateLimit` | client × tool | no (per replica) |
//! | `policy_daily` | granting McpPolicy `spec.dailyQuota` | client × tool, per UTC day | yes |
//! | `tool_rate` | McpTool `spec.tools[].rateLimit`, else `spec.rateLimit` | the tool, all callers | no (per replica) |
//!
//! **Atomic across limits.** Every applicable limit is peeked first and committed only if all
//! of them conform, under the client's lock and the tool shard's lock (always taken in that
//! order). The GCRA state is managed here rather than by `governor`, whose keyed limiters
//! consume on `check` and offer no way to give a cell back; the math is the same as governor's
//! and the Redis script's, with time an explicit argument (tests pass a manual clock). In
//! cluster mode the local reservation is given back if Redis refuses or fails.
//!
//! **What counts.** `tools/call`, `resources/read`, `prompts/get` and `completion/complete`
//! (see [`Quotas::counts`]). The proxy must never call [`Quotas::check`] for notifications,
//! responses, GET streams, DELETE, `initialize`, `ping`, lists or (un)subscriptions; MRTR retries count unless [`QuotaConfig::count_mrtr_retries`] is off, and even
//! then a retry is exempt only when its `requestState` is one the upstream issued to the same
//! caller, used once (`proxy::session`): a made-up `requestState` does not skip quotas.
//!
//! **Reloads.** [`Quotas::update`] (call it whenever a new RuleSet is installed) keeps the state
//! of every limit whose definition did not change; a changed rate starts afresh; a daily count
//! is kept across a changed budget (the calls were made today all the same).
//!
//! **Cluster mode.** With a [`RedisConfig`], `client_rate`, `client_daily` and `policy_daily`
//! are also checked in Redis, on the Redis server's clock, in one round trip, and only when the
//! local tier passed (the local tier sees a subset of the calls, so what it refuses Redis
//! would refuse too). When Redis fails, [`FailMode`] applies until a probe (one call per
//! `probe_interval`) succeeds again; both transitions are logged and counted.

mod gcra;
mod install;
mod local;
mod metrics;
mod outcome;
pub mod resp;
mod runaway;
mod shared;
mod state;

pub use metrics::QuotaMetrics;
pub use outcome::{
    Allowed, HttpAnswer, LimitKind, LimitStatus, Limited, QUOTA_UNAVAILABLE_CODE, QuotaOutcome,
    RATE_LIMITED_CODE, Suspended, Unavailable, ceil_secs,
};
pub use resp::{RedisError, RedisTarget};
pub use runaway::RunawayConfig;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use local::{Local, Mode};
use mcp_warden_policy::{Capability, ObjectRef, RuleSet, compile::Rate};
use prometheus::Registry;
use resp::Pool;
use shared::Shared;
use state::{Call, Index, TOOL_SHARDS, ToolShard, lock, nanos};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64},
    },
    time::{Duration, Instant},
};

/// The methods that count: a use of a tool, resource or prompt.
pub const COUNTED: [&str; 4] = [
    "tools/call",
    "resources/read",
    "prompts/get",
    "completion/complete",
];

/// The key a use is counted under (per client × key for the policy's limits, per key for the
/// entry's `rateLimit`) and that entry's rate. A tool's key is its name, its rate the tool
/// entry's `rateLimit`, else the McpTool's `spec.rateLimit`. A resource's or prompt's key is
/// the pattern of the entry that governs it, `resource:<uri pattern>` / `prompt:<name
/// pattern>` (`resource:*` / `prompt:*` for names no entry declares), its rate the entry's own
/// `rateLimit`: a caller inventing URIs cannot create new counters (MCP tool names hold no
/// `:`, so no tool's key is one of these).
pub fn use_key(rules: &RuleSet, capability: Capability, name: &str) -> (String, Option<Rate>) {
    let entry = rules.entries(capability).entry(name);
    match capability {
        Capability::Tool => (
            name.to_owned(),
            entry.and_then(|e| e.rate_limit).or(rules.tool_rate_limit),
        ),
        Capability::Resource | Capability::Prompt => {
            let pattern = entry.map_or("*", |e| e.pattern.as_str());
            (
                format!("{capability}:{pattern}"),
                entry.and_then(|e| e.rate_limit),
            )
        }
    }
}

/// The shared-store script.
pub const CHECK_SCRIPT: &str = include_str!("check.lua");

/// What happens to calls that need Redis while it is unreachable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailMode {
    /// Refuse them: [`QuotaOutcome::Unavailable`], answered 503.
    #[default]
    FailClosed,
    /// Enforce locally, each replica taking `1 / replicas` of every shared budget and rate.
    LocalOnly,
}

impl std::str::FromStr for FailMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail-closed" => Ok(Self::FailClosed),
            "local-only" => Ok(Self::LocalOnly),
            other => Err(format!(
                "{other:?} is not a fail mode: use fail-closed or local-only"
            )),
        }
    }
}

/// The shared store.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Where Redis is (`--redis-url`).
    pub target: RedisTarget,
    /// What to do while it is unreachable.
    pub fail_mode: FailMode,
    /// Replicas of this server, dividing the shared budgets in local-only mode.
    pub replicas: u32,
    /// Longest wait for one Redis check (connecting included).
    pub timeout: Duration,
    /// While Redis is down, one call per interval tries it again.
    pub probe_interval: Duration,
    /// Connections per sidecar.
    pub pool_size: usize,
    /// Prefix of every key (`<prefix>:{<tool ns>/<tool>/<client ns>/<client>}:…`).
    pub key_prefix: String,
}

impl RedisConfig {
    /// Defaults for `target`: fail-closed, 1 replica, 100 ms timeout, 1 s probes, 4
    /// connections, prefix `mcp-warden`.
    pub fn new(target: RedisTarget) -> Self {
        Self {
            target,
            fail_mode: FailMode::FailClosed,
            replicas: 1,
            timeout: Duration::from_millis(100),
            probe_interval: Duration::from_secs(1),
            pool_size: 4,
            key_prefix: "mcp-warden".into(),
        }
    }
}

/// Quota engine settings (everything that is not in the CRs).
#[derive(Clone, Debug)]
pub struct QuotaConfig {
    /// The shared store, or `None` for per-replica quotas.
    pub redis: Option<RedisConfig>,
    /// Runaway detection.
    pub runaway: RunawayConfig,
    /// Whether MRTR retries (2026-07-28 multi-round-trip `tools/call` rounds) count.
    pub count_mrtr_retries: bool,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            redis: None,
            runaway: RunawayConfig::default(),
            count_mrtr_retries: true,
        }
    }
}

/// A client currently flagged `RunawayDetected` on this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunawayFlag {
    /// The McpClient.
    pub client: ObjectRef,
    /// When it was flagged.
    pub since: Timestamp,
    /// Whether it is denied until cleared (`suspendOnRunaway`).
    pub suspended: bool,
}

/// The quota engine of one sidecar. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Quotas {
    cfg: QuotaConfig,
    index: ArcSwap<Index>,
    update_lock: Mutex<()>,
    tools: Vec<Mutex<ToolShard>>,
    hasher: std::collections::hash_map::RandomState,
    redis: Option<Shared>,
    metrics: QuotaMetrics,
    flags: Mutex<BTreeMap<ObjectRef, Timestamp>>,
}

impl Quotas {
    /// An engine with no limits until [`Self::update`]; its metrics go into `registry`.
    pub fn new(cfg: QuotaConfig, registry: &Registry) -> prometheus::Result<Self> {
        let metrics = QuotaMetrics::new(registry, cfg.redis.is_some())?;
        let redis = cfg.redis.as_ref().map(|r| Shared {
            pool: Pool::new(r.target.clone(), CHECK_SCRIPT, r.pool_size, r.timeout),
            cfg: r.clone(),
            up: AtomicBool::new(true),
            next_probe: Mutex::new(Instant::now()),
            epoch: AtomicU64::new(0),
        });
        Ok(Self {
            cfg,
            index: ArcSwap::from_pointee(Index {
                initialized: false,
                tool: Arc::new(ObjectRef::new(mcp_warden_policy::Kind::McpTool, "", "")),
                clients: HashMap::new(),
                policies: HashMap::new(),
            }),
            update_lock: Mutex::new(()),
            tools: (0..TOOL_SHARDS)
                .map(|_| Mutex::new(ToolShard::default()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            redis,
            metrics,
            flags: Mutex::new(BTreeMap::new()),
        })
    }

    /// The settings.
    pub fn config(&self) -> &QuotaConfig {
        &self.cfg
    }

    /// Whether a message is subject to quotas: a use of a tool, resource or prompt
    /// ([`COUNTED`]), and MRTR retries only when configured. Everything else (lists,
    /// `resources/subscribe`, `resources/unsubscribe`, …) must never reach [`Self::check`].
    pub fn counts(&self, method: &str, mrtr_retry: bool) -> bool {
        COUNTED.contains(&method) && (!mrtr_retry || self.cfg.count_mrtr_retries)
    }

    pub(crate) fn publish_flags(&self, flags: &BTreeMap<ObjectRef, Timestamp>, index: &Index) {
        self.metrics.runaway_flags(flags.keys().map(|c| {
            let suspended = index.clients.get(c).is_some_and(|s| s.suspend_on_runaway);
            (c, suspended)
        }));
    }

    /// The clients flagged `RunawayDetected` on this replica at `now` (for the metric, the
    /// log and the McpClient status). Flags that are not suspensions lift once a whole window
    /// passes without the condition.
    pub fn runaway_flags(&self, now: Timestamp) -> Vec<RunawayFlag> {
        let index = self.index.load_full();
        let snapshot: Vec<(ObjectRef, Timestamp)> = lock(&self.flags)
            .iter()
            .map(|(c, t)| (c.clone(), *t))
            .collect();
        let mut out = Vec::with_capacity(snapshot.len());
        let mut lifted = false;
        for (client, since) in snapshot {
            let Some(slot) = index.clients.get(&client) else {
                continue;
            };
            if let (false, Some(live)) = (slot.suspend_on_runaway, slot.live.get()) {
                let mut st = lock(&live.state);
                if st.runaway.flagged.is_some() && st.runaway.stale(&self.cfg.runaway, nanos(now)) {
                    st.runaway.flagged = None;
                    drop(st);
                    lock(&self.flags).remove(&client);
                    tracing::info!(client = %client, "runaway flag lifted: no longer running away");
                    lifted = true;
                    continue;
                }
            }
            out.push(RunawayFlag {
                client,
                since,
                suspended: slot.suspend_on_runaway,
            });
        }
        if lifted {
            self.publish_flags(&lock(&self.flags), &index);
        }
        out
    }

    /// Checks and, when allowed, counts one `tools/call` of `tool` by `client`, granted by
    /// `policy` (the McpClient and McpPolicy of `Decision::Allow`/`WouldDeny`), at `now`.
    /// All applicable limits are checked together: a refused call consumes nothing.
    pub async fn check(
        &self,
        rules: &RuleSet,
        client: &ObjectRef,
        policy: &ObjectRef,
        tool: &str,
        now: Timestamp,
    ) -> QuotaOutcome {
        self.check_use(rules, client, policy, Capability::Tool, tool, now)
            .await
    }

    /// [`Self::check`] for a use of any capability: a `tools/call` of a tool, a
    /// `resources/read` of a resource, a `prompts/get` of a prompt (or a completion of either),
    /// counted under [`use_key`] with the matched entry's `rateLimit`.
    pub async fn check_use(
        &self,
        rules: &RuleSet,
        client: &ObjectRef,
        policy: &ObjectRef,
        capability: Capability,
        name: &str,
        now: Timestamp,
    ) -> QuotaOutcome {
        let (key, tool_rate) = use_key(rules, capability, name);
        self.check_key(rules, client, policy, &key, tool_rate, now)
            .await
    }

    async fn check_key(
        &self,
        rules: &RuleSet,
        client: &ObjectRef,
        policy: &ObjectRef,
        tool: &str,
        tool_rate: Option<Rate>,
        now: Timestamp,
    ) -> QuotaOutcome {
        let mut index = self.index.load_full();
        if !index.initialized {
            self.update(rules);
            index = self.index.load_full();
        }
        self.first_call(&mut index, client);
        let slot = self.slot(&index, client);
        let pol = index.policies.get(policy);
        let call = Call {
            index: &index,
            slot,
            policy: pol.filter(|p| p.rate.is_some() || p.daily.is_some()),
            tool,
            tool_rate,
            now,
            now_ns: nanos(now),
        };
        // Policy limits live in the client's state: without a client there are none.
        let shared = slot.is_some_and(|s| {
            s.rate.is_some() || s.daily.is_some() || call.policy.is_some_and(|p| p.daily.is_some())
        });
        let outcome = match (&self.redis, shared) {
            (Some(redis), true) => self.check_shared(redis, &call).await,
            _ => match self.local(&call, Mode::Full, false) {
                Local::Done(outcome) => outcome,
                Local::Passed(limits, _) => QuotaOutcome::Allowed(Allowed { limits }),
            },
        };
        self.count(&call, client, &outcome);
        outcome
    }

    fn count(&self, call: &Call<'_>, client: &ObjectRef, outcome: &QuotaOutcome) {
        match (outcome, call.slot) {
            (QuotaOutcome::Allowed(_), Some(slot)) => slot.live.allowed.inc(),
            (QuotaOutcome::Limited(l), _) => {
                self.metrics.decision(l.reason.as_str(), &l.limit).inc()
            }
            _ => self.metrics.decision(outcome.reason(), client).inc(),
        }
    }
}
