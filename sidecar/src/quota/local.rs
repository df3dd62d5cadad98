//! The local tier: every applicable limit peeked, then all committed or none, under the
//! client's lock and then the tool shard's lock (always in that order); giving a reservation
//! back; runaway bookkeeping.

use super::{
    LimitKind, LimitStatus, Limited, QuotaOutcome, Quotas, Suspended,
    gcra::{Cell, Conform, DayCount, Gcra, day_of, until_midnight},
    runaway::Change,
    state::{
        Call, ClientSlot, ClientState, Index, ONE_DAY, PRUNE_FLOOR, PairState, TOOL_SHARDS,
        ToolShard, dur, lock,
    },
};
use std::{
    hash::BuildHasher,
    sync::{Arc, Mutex},
    time::Duration,
};

/// How a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every limit at its full definition (no Redis, or Redis checked after).
    Full,
    /// Shared limits divided among `share` replicas, for the outage numbered `epoch`.
    Degraded { share: u32, epoch: u64 },
}

/// What the local tier committed, to give back if Redis refuses.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    day: i64,
    client_rate: Option<Gcra>,
    client_daily: bool,
    pair_rate: Option<Gcra>,
    pair_daily: bool,
    tool_rate: Option<Gcra>,
}

pub(crate) enum Local {
    Done(QuotaOutcome),
    Passed(Vec<LimitStatus>, Reserved),
}

impl Quotas {
    pub(crate) fn tool_shard(&self, tool: &str) -> &Mutex<ToolShard> {
        let h = self.hasher.hash_one(tool);
        &self.tools[(h as usize) % TOOL_SHARDS]
    }

    /// The local tier: peek every limit, commit all or nothing. `defer_allowed` leaves the
    /// runaway bookkeeping of a passing call to the caller (it is not final before Redis).
    pub(crate) fn local(&self, call: &Call<'_>, mode: Mode, defer_allowed: bool) -> Local {
        let now = call.now_ns;
        let today = day_of(now);
        let mut state = call.slot.map(|s| lock(&s.live.state));
        let mut limits: Vec<LimitStatus> = Vec::with_capacity(5);
        let mut worst: Option<(LimitKind, i64, u64, Duration)> = None;
        let mut daily_left: Option<u64> = None;
        let mut refuse = |kind: LimitKind, wait: i64, quota: u64, window: Duration| {
            if worst.is_none_or(|w| wait > w.1) {
                worst = Some((kind, wait, quota, window));
            }
        };
        let mut note_daily = |left: u64| {
            daily_left = Some(daily_left.map_or(left, |d: u64| d.min(left)));
        };
        let share = match mode {
            Mode::Full => 1,
            Mode::Degraded { share, .. } => share,
        };

        // Runaway suspension comes first and consumes nothing.
        if let (Some(slot), Some(st)) = (call.slot, state.as_mut()) {
            if st.runaway.clear_if(slot.cleared_at) {
                self.flag_change(slot.def, Change::Lifted, call.index);
            }
            if let Some(since) = st.runaway.flagged.filter(|_| slot.suspend_on_runaway) {
                return Local::Done(QuotaOutcome::Suspended(Suspended {
                    client: slot.object.clone(),
                    since,
                }));
            }
        }

        // Client limits.
        let mut client_peek: Option<(Conform, Gcra)> = None;
        let mut degraded_peek: Option<(Conform, Gcra)> = None;
        let mut client_daily_ok = false;
        let mut pair_peek: Option<(Conform, Gcra)> = None;
        let mut pair_daily_ok = false;
        let mut pair_at: Option<usize> = None;
        if let (Some(slot), Some(st)) = (call.slot, state.as_deref_mut()) {
            let ClientState {
                rate,
                degraded,
                daily,
                pairs,
                prune_at,
                ..
            } = st;
            Cell::sync(rate, slot.rate);
            if let (Some(cell), Some(r)) = (rate.as_ref(), slot.rate) {
                let g = Gcra::new(r, 1);
                match cell.peek(g, now) {
                    Ok(c) => client_peek = Some((c, g)),
                    Err(wait) => {
                        refuse(LimitKind::ClientRate, wait, u64::from(r.requests), r.period)
                    }
                }
                if let Mode::Degraded { epoch, .. } = mode {
                    if degraded
                        .as_ref()
                        .is_none_or(|(e, c)| *e != epoch || c.rate != r)
                    {
                        *degraded = Some((epoch, Cell::new(r)));
                    }
                    let gd = Gcra::new(r, share);
                    if let Some((_, cell)) = degraded.as_ref() {
                        match cell.peek(gd, now) {
                            Ok(c) => degraded_peek = Some((c, gd)),
                            Err(wait) => refuse(
                                LimitKind::ClientRate,
                                wait,
                                u64::from((r.requests / share).max(1)),
                                r.period,
                            ),
                        }
                    }
                }
            }
            if let Some(limit) = slot.daily {
                let limit = limit / u64::from(share);
                match daily.peek(limit, today) {
                    Ok(left) => {
                        client_daily_ok = true;
                        note_daily(left + 1);
                    }
                    Err(()) => {
                        note_daily(0);
                        refuse(LimitKind::ClientDaily, until_midnight(now), limit, ONE_DAY);
                    }
                }
            }
            // Client × tool limits of the granting policy.
            if let Some(p) = call.policy {
                if !pairs.contains_key(call.tool) {
                    if pairs.len() >= *prune_at {
                        pairs.retain(|_, v| {
                            v.retain(|s| !s.idle(now));
                            !v.is_empty()
                        });
                        *prune_at = (pairs.len() * 2).max(PRUNE_FLOOR);
                    }
                    pairs.insert(call.tool.to_owned(), Vec::with_capacity(1));
                }
                let list = pairs.get_mut(call.tool).expect("inserted above");
                let i = match list
                    .iter()
                    .position(|s| Arc::ptr_eq(&s.policy, &p.object) || *s.policy == *p.object)
                {
                    Some(i) => i,
                    None => {
                        list.push(PairState {
                            policy: p.object.clone(),
                            rate: None,
                            daily: DayCount::default(),
                        });
                        list.len() - 1
                    }
                };
                let ps = &mut list[i];
                Cell::sync(&mut ps.rate, p.rate);
                if let (Some(cell), Some(r)) = (ps.rate.as_ref(), p.rate) {
                    let g = Gcra::new(r, 1);
                    match cell.peek(g, now) {
                        Ok(c) => pair_peek = Some((c, g)),
                        Err(wait) => {
                            refuse(LimitKind::PolicyRate, wait, u64::from(r.requests), r.period)
                        }
                    }
                }
                if let Some(limit) = p.daily {
                    let limit = limit / u64::from(share);
                    match ps.daily.peek(limit, today) {
                        Ok(left) => {
                            pair_daily_ok = true;
                            note_daily(left + 1);
                        }
                        Err(()) => {
                            note_daily(0);
                            refuse(LimitKind::PolicyDaily, until_midnight(now), limit, ONE_DAY);
                        }
                    }
                }
                pair_at = Some(i);
            }
        }

        // The tool, all callers together.
        let mut shard = call.tool_rate.map(|_| lock(self.tool_shard(call.tool)));
        let mut tool_peek: Option<(Conform, Gcra)> = None;
        if let (Some(sh), Some(r)) = (shard.as_deref_mut(), call.tool_rate) {
            if !sh.cells.contains_key(call.tool) {
                if sh.cells.len() >= sh.prune_at {
                    sh.cells.retain(|_, c| !c.idle(now));
                    sh.prune_at = (sh.cells.len() * 2).max(PRUNE_FLOOR);
                }
                sh.cells.insert(call.tool.to_owned(), Cell::new(r));
            }
            let cell = sh.cells.get_mut(call.tool).expect("inserted above");
            if cell.rate != r {
                *cell = Cell::new(r);
            }
            let g = Gcra::new(r, 1);
            match cell.peek(g, now) {
                Ok(c) => tool_peek = Some((c, g)),
                Err(wait) => refuse(LimitKind::ToolRate, wait, u64::from(r.requests), r.period),
            }
        }

        if let Some((kind, wait, quota, window)) = worst {
            drop(shard);
            if let (Some(slot), Some(st)) = (call.slot, state.as_deref_mut()) {
                self.record_locked(slot.def, st, call, kind.is_clients_own());
            }
            return Local::Done(QuotaOutcome::Limited(Limited {
                reason: kind,
                limit: call.limit_object(kind),
                retry_after: dur(wait),
                remaining: daily_left,
                tool: call.tool.to_owned(),
                quota,
                window,
            }));
        }

        // Everything conforms: commit all.
        let mut reserved = Reserved {
            day: today,
            ..Reserved::default()
        };
        if let (Some(slot), Some(st)) = (call.slot, state.as_deref_mut()) {
            if let (Some((c, g)), Some(cell)) = (client_peek, st.rate.as_mut()) {
                cell.commit(c);
                reserved.client_rate = Some(g);
                let shown = degraded_peek.unwrap_or((c, g));
                if let Some(r) = slot.rate {
                    limits.push(LimitStatus {
                        kind: LimitKind::ClientRate,
                        limit: slot.object.clone(),
                        quota: u64::from((r.requests / share).max(1)),
                        window: r.period,
                        remaining: shown.0.remaining,
                        reset: dur(shown.0.reset),
                    });
                }
            }
            if let (Some((c, _)), Some((_, cell))) = (degraded_peek, st.degraded.as_mut()) {
                cell.commit(c);
            }
            if let (true, Some(limit)) = (client_daily_ok, slot.daily) {
                st.daily.commit(today);
                reserved.client_daily = true;
                let limit = limit / u64::from(share);
                limits.push(LimitStatus {
                    kind: LimitKind::ClientDaily,
                    limit: slot.object.clone(),
                    quota: limit,
                    window: ONE_DAY,
                    remaining: limit.saturating_sub(st.daily.on(today)),
                    reset: dur(until_midnight(now)),
                });
            }
        }
        let pair = match (pair_at, state.as_deref_mut()) {
            (Some(i), Some(st)) => st.pairs.get_mut(call.tool).and_then(|l| l.get_mut(i)),
            _ => None,
        };
        if let (Some(ps), Some(p)) = (pair, call.policy) {
            if let (Some((c, g)), Some(cell), Some(r)) = (pair_peek, ps.rate.as_mut(), p.rate) {
                cell.commit(c);
                reserved.pair_rate = Some(g);
                limits.push(LimitStatus {
                    kind: LimitKind::PolicyRate,
                    limit: p.object.clone(),
                    quota: u64::from(r.requests),
                    window: r.period,
                    remaining: c.remaining,
                    reset: dur(c.reset),
                });
            }
            if let (true, Some(limit)) = (pair_daily_ok, p.daily) {
                ps.daily.commit(today);
                reserved.pair_daily = true;
                let limit = limit / u64::from(share);
                limits.push(LimitStatus {
                    kind: LimitKind::PolicyDaily,
                    limit: p.object.clone(),
                    quota: limit,
                    window: ONE_DAY,
                    remaining: limit.saturating_sub(ps.daily.on(today)),
                    reset: dur(until_midnight(now)),
                });
            }
        }
        if let (Some(sh), Some((c, g)), Some(r)) = (shard.as_deref_mut(), tool_peek, call.tool_rate)
        {
            if let Some(cell) = sh.cells.get_mut(call.tool) {
                cell.commit(c);
            }
            reserved.tool_rate = Some(g);
            limits.push(LimitStatus {
                kind: LimitKind::ToolRate,
                limit: call.index.tool.clone(),
                quota: u64::from(r.requests),
                window: r.period,
                remaining: c.remaining,
                reset: dur(c.reset),
            });
        }
        drop(shard);
        if !defer_allowed && let (Some(slot), Some(st)) = (call.slot, state.as_deref_mut()) {
            self.record_locked(slot.def, st, call, false);
        }
        Local::Passed(limits, reserved)
    }

    /// Gives back what the local tier reserved for a call Redis refused or could not check.
    pub(crate) fn undo(&self, call: &Call<'_>, reserved: &Reserved) {
        if let Some(slot) = call.slot {
            let mut st = lock(&slot.live.state);
            if let (Some(g), Some(cell)) = (reserved.client_rate, st.rate.as_mut()) {
                cell.undo(g);
            }
            if reserved.client_daily {
                st.daily.undo(reserved.day);
            }
            if let (Some(p), Some(list)) = (call.policy, st.pairs.get_mut(call.tool))
                && let Some(ps) = list.iter_mut().find(|s| *s.policy == *p.object)
            {
                if let (Some(g), Some(cell)) = (reserved.pair_rate, ps.rate.as_mut()) {
                    cell.undo(g);
                }
                if reserved.pair_daily {
                    ps.daily.undo(reserved.day);
                }
            }
        }
        if let Some(g) = reserved.tool_rate
            && let Some(cell) = lock(self.tool_shard(call.tool)).cells.get_mut(call.tool)
        {
            cell.undo(g);
        }
    }

    /// Runaway bookkeeping for a final outcome decided after the local tier.
    pub(crate) fn record(&self, call: &Call<'_>, refused: bool) {
        if let Some(slot) = call.slot {
            let mut st = lock(&slot.live.state);
            self.record_locked(slot.def, &mut st, call, refused);
        }
    }

    pub(crate) fn record_locked(
        &self,
        slot: &ClientSlot,
        st: &mut ClientState,
        call: &Call<'_>,
        refused: bool,
    ) {
        let change = st.runaway.record(
            &self.cfg.runaway,
            call.now,
            call.now_ns,
            refused,
            slot.suspend_on_runaway,
        );
        if let Some(change) = change {
            self.flag_change(slot, change, call.index);
        }
    }

    pub(crate) fn flag_change(&self, slot: &ClientSlot, change: Change, index: &Index) {
        let mut flags = lock(&self.flags);
        match change {
            Change::Flagged(since) => {
                flags.insert((*slot.object).clone(), since);
                tracing::warn!(
                    client = %slot.object,
                    suspended = slot.suspend_on_runaway,
                    window_s = self.cfg.runaway.window.as_secs_f64(),
                    fraction = self.cfg.runaway.fraction,
                    "RunawayDetected: the client was refused by its limits for most of its calls over a sustained window{}",
                    if slot.suspend_on_runaway { "; it is suspended until a person sets the mcpwarden.io/runaway-cleared-at annotation" } else { "" }
                );
            }
            Change::Lifted => {
                if flags.remove(&*slot.object).is_some() {
                    tracing::info!(client = %slot.object, "runaway flag lifted");
                }
            }
        }
        self.publish_flags(&flags, index);
    }
}
