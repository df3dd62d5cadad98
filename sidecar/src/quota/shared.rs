//! The Redis tier: one script call per call the local tier passed, its health (fail mode,
//! probes, recovery) and the script's arguments and reply.

use super::{
    Allowed, FailMode, LimitKind, Limited, QuotaMetrics, QuotaOutcome, Quotas, RedisConfig,
    RedisError, Unavailable,
    local::{Local, Mode},
    resp::{Pool, Reply},
    state::{Call, ONE_DAY, lock},
};
use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

impl Quotas {
    pub(crate) async fn check_shared(&self, redis: &Shared, call: &Call<'_>) -> QuotaOutcome {
        let attempt = redis.route();
        if !attempt {
            return self.degraded(redis, call);
        }
        let (mut limits, reserved) = match self.local(call, Mode::Full, true) {
            Local::Done(outcome) => return outcome,
            Local::Passed(limits, reserved) => (limits, reserved),
        };
        let (keys, argv, kinds) = shared_args(call, &redis.cfg.key_prefix);
        let started = Instant::now();
        let result = redis.pool.eval(&keys, &argv).await;
        self.metrics.redis_observe(started.elapsed().as_secs_f64());
        match result.and_then(|r| parse_script_reply(&r, kinds.len())) {
            Ok(ScriptReply::Allowed(values)) => {
                redis.success(&self.metrics);
                for (kind, (remaining, reset_ms)) in kinds.iter().zip(values) {
                    if let Some(l) = limits.iter_mut().find(|l| l.kind == *kind) {
                        l.remaining = remaining;
                        l.reset = Duration::from_millis(reset_ms);
                    }
                }
                self.record(call, false);
                QuotaOutcome::Allowed(Allowed { limits })
            }
            Ok(ScriptReply::Refused {
                index,
                retry_ms,
                daily_left,
            }) => {
                redis.success(&self.metrics);
                self.undo(call, &reserved);
                let kind = kinds.get(index).copied().unwrap_or(LimitKind::ClientRate);
                let status = limits.iter().find(|l| l.kind == kind);
                self.record(call, kind.is_clients_own());
                QuotaOutcome::Limited(Limited {
                    reason: kind,
                    limit: call.limit_object(kind),
                    retry_after: Duration::from_millis(retry_ms.max(1)),
                    remaining: daily_left,
                    tool: call.tool.to_owned(),
                    quota: status.map_or(0, |s| s.quota),
                    window: status.map_or(ONE_DAY, |s| s.window),
                })
            }
            Err(error) => {
                self.undo(call, &reserved);
                redis.failure(&error, &self.metrics);
                self.degraded(redis, call)
            }
        }
    }

    /// A call needing Redis while Redis is down.
    fn degraded(&self, redis: &Shared, call: &Call<'_>) -> QuotaOutcome {
        match redis.cfg.fail_mode {
            FailMode::FailClosed => QuotaOutcome::Unavailable(Unavailable {
                retry_after: redis.cfg.probe_interval,
            }),
            FailMode::LocalOnly => {
                let mode = Mode::Degraded {
                    share: redis.cfg.replicas.max(1),
                    epoch: redis.epoch.load(Ordering::Acquire),
                };
                match self.local(call, mode, false) {
                    Local::Done(outcome) => outcome,
                    Local::Passed(limits, _) => QuotaOutcome::Allowed(Allowed { limits }),
                }
            }
        }
    }
}

/// Keys and arguments of the shared limits, in script order, with their kinds. Every key
/// starts `<prefix>:{<tool ns>/<tool>/<client ns>/<client>}` (one hash slot per pair).
fn shared_args(call: &Call<'_>, prefix: &str) -> (Vec<String>, Vec<String>, Vec<LimitKind>) {
    let (mut keys, mut argv, mut kinds) = (Vec::new(), Vec::new(), Vec::new());
    let Some(slot) = call.slot else {
        return (keys, argv, kinds);
    };
    let (tool, client) = (&call.index.tool, &slot.object);
    let key = format!(
        "{prefix}:{{{}/{}/{}/{}}}",
        tool.namespace, tool.name, client.namespace, client.name
    );
    if let Some(r) = slot.rate {
        keys.push(format!(
            "{}:rate:{}:{}:{}",
            key,
            r.requests,
            r.period.as_millis(),
            r.burst
        ));
        let emission_ms = r.period.as_secs_f64() * 1000.0 / f64::from(r.requests.max(1));
        argv.extend(["g".into(), format!("{emission_ms:.6}"), r.burst.to_string()]);
        kinds.push(LimitKind::ClientRate);
    }
    if let Some(d) = slot.daily {
        keys.push(format!("{key}:daily"));
        argv.extend(["d".into(), d.to_string(), "0".into()]);
        kinds.push(LimitKind::ClientDaily);
    }
    if let Some((p, d)) = call.policy.and_then(|p| p.daily.map(|d| (p, d))) {
        keys.push(format!(
            "{}:policy:{}/{}:daily:{}",
            key, p.object.namespace, p.object.name, call.tool
        ));
        argv.extend(["d".into(), d.to_string(), "0".into()]);
        kinds.push(LimitKind::PolicyDaily);
    }
    (keys, argv, kinds)
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) cfg: RedisConfig,
    pub(crate) up: AtomicBool,
    pub(crate) next_probe: Mutex<Instant>,
    /// Numbers the outages, so local-only rates start afresh at each.
    pub(crate) epoch: AtomicU64,
}

impl Shared {
    /// Whether this call should ask Redis: always while up; one call per probe interval while
    /// down.
    pub(crate) fn route(&self) -> bool {
        if self.up.load(Ordering::Acquire) {
            return true;
        }
        let mut next = lock(&self.next_probe);
        let now = Instant::now();
        if now >= *next {
            *next = now + self.cfg.probe_interval;
            true
        } else {
            false
        }
    }

    pub(crate) fn success(&self, metrics: &QuotaMetrics) {
        if !self.up.swap(true, Ordering::AcqRel) {
            metrics.redis_state(true);
            tracing::info!(
                addr = %self.cfg.target.addr,
                "Redis reachable again: shared quotas are enforced cluster-wide"
            );
        }
    }

    pub(crate) fn failure(&self, error: &RedisError, metrics: &QuotaMetrics) {
        metrics.redis_error(error.label());
        *lock(&self.next_probe) = Instant::now() + self.cfg.probe_interval;
        if self.up.swap(false, Ordering::AcqRel) {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            metrics.redis_state(false);
            match self.cfg.fail_mode {
                FailMode::FailClosed => tracing::error!(
                    addr = %self.cfg.target.addr, %error,
                    "Redis unreachable: calls under shared quotas are refused (503) until it answers again (fail-closed)"
                ),
                FailMode::LocalOnly => tracing::error!(
                    addr = %self.cfg.target.addr, %error, replicas = self.cfg.replicas,
                    "Redis unreachable: shared quotas are enforced locally, divided among the replicas (local-only)"
                ),
            }
        } else {
            tracing::debug!(%error, "Redis still unreachable");
        }
    }
}

enum ScriptReply {
    /// (remaining, reset ms) per shared limit.
    Allowed(Vec<(u64, u64)>),
    Refused {
        index: usize,
        retry_ms: u64,
        daily_left: Option<u64>,
    },
}

fn parse_script_reply(reply: &Reply, limits: usize) -> Result<ScriptReply, RedisError> {
    let bad = || RedisError::Protocol(format!("the quota script answered {reply:?}"));
    let Reply::Array(Some(items)) = reply else {
        return Err(bad());
    };
    let ints: Vec<i64> = items
        .iter()
        .map(|i| match i {
            Reply::Int(n) => Ok(*n),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    let u = |n: i64| u64::try_from(n).unwrap_or(0);
    match ints.as_slice() {
        [1, rest @ ..] if rest.len() == 2 * limits => Ok(ScriptReply::Allowed(
            rest.chunks(2).map(|c| (u(c[0]), u(c[1]))).collect(),
        )),
        [0, i, retry, left] if *i >= 1 && (*i as usize) <= limits => Ok(ScriptReply::Refused {
            index: (*i as usize) - 1,
            retry_ms: u(*retry),
            daily_left: u64::try_from(*left).ok(),
        }),
        _ => Err(bad()),
    }
}
