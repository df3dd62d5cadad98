//! The two kinds of limit state, as pure functions of an explicit time (nanoseconds since the
//! Unix epoch), so that checking and committing are separate steps:
//!
//! - [`Cell`]: GCRA (generic cell rate algorithm), the same math as `gcra.lua` and the Redis
//!   script: `new_tat = max(tat, now) + T`; the call conforms when `new_tat - now <= T × burst`.
//! - [`DayCount`]: calls per UTC day, keyed by the day number, so the count rolls over exactly
//!   at UTC midnight.
//!
//! `peek` never changes anything; `commit` applies what `peek` found; `undo` gives a reserved
//! call back (used when the Redis tier refuses a call the local tier had reserved).

use mcp_warden_policy::compile::Rate;

/// Nanoseconds per UTC day.
pub(crate) const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// GCRA parameters: emission interval `T` and bucket depth `τ = T × burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds between two calls at the sustained rate.
    pub(crate) emission: i64,
    /// How far ahead of `now` the theoretical arrival time may run.
    pub(crate) tau: i64,
    /// Calls allowed back to back.
    pub(crate) burst: u32,
}

impl Gcra {
    /// The parameters of `rate`, or of `rate` divided among `share` replicas (rate / share,
    /// burst / share, at least 1).
    pub(crate) fn new(rate: Rate, share: u32) -> Self {
        let share = share.max(1);
        let period = i64::try_from(rate.period.as_nanos()).unwrap_or(i64::MAX);
        let emission = (period / i64::from(rate.requests.max(1)))
            .max(1)
            .saturating_mul(i64::from(share));
        let burst = (rate.burst / share).max(1);
        Self {
            emission,
            tau: emission.saturating_mul(i64::from(burst)),
            burst,
        }
    }
}

/// What `peek` found for a conforming call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conform {
    /// The theoretical arrival time after the call.
    pub(crate) new_tat: i64,
    /// Calls that could still go through back to back after this one.
    pub(crate) remaining: u64,
    /// Nanoseconds until the bucket is full again (the whole burst available).
    pub(crate) reset: i64,
}

/// One GCRA state, tagged with the rate it was computed for: a changed definition starts afresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    /// The definition this state belongs to.
    pub(crate) rate: Rate,
    /// Theoretical arrival time, ns since the epoch (a fresh cell has `i64::MIN`).
    pub(crate) tat: i64,
}

impl Cell {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            tat: i64::MIN,
        }
    }

    /// Resets the state when the definition changed.
    pub(crate) fn sync(slot: &mut Option<Self>, rate: Option<Rate>) {
        match (slot.as_ref(), rate) {
            (Some(cell), Some(rate)) if cell.rate == rate => {}
            (_, Some(rate)) => *slot = Some(Self::new(rate)),
            (_, None) => *slot = None,
        }
    }

    /// Whether a call at `now` conforms; `Err(ns to wait)` when it does not.
    pub(crate) fn peek(&self, g: Gcra, now: i64) -> Result<Conform, i64> {
        let new_tat = self.tat.max(now).saturating_add(g.emission);
        let allow_at = new_tat.saturating_sub(g.tau);
        if now < allow_at {
            return Err(allow_at - now);
        }
        Ok(Conform {
            new_tat,
            remaining: u64::try_from((now - allow_at) / g.emission).unwrap_or(0),
            reset: new_tat - now,
        })
    }

    pub(crate) fn commit(&mut self, c: Conform) {
        self.tat = c.new_tat;
    }

    /// Gives back one call committed with `g` (exact while the bucket has not drained since,
    /// which holds for the milliseconds a Redis round trip takes).
    pub(crate) fn undo(&mut self, g: Gcra) {
        self.tat = self.tat.saturating_sub(g.emission);
    }

    /// Whether the cell is as good as fresh at `now` (full bucket), so it can be dropped.
    pub(crate) fn idle(&self, now: i64) -> bool {
        self.tat <= now
    }
}

/// The UTC day number of `now`.
pub(crate) fn day_of(now: i64) -> i64 {
    now.div_euclid(DAY_NS)
}

/// Nanoseconds from `now` to the next UTC midnight.
pub(crate) fn until_midnight(now: i64) -> i64 {
    (day_of(now) + 1) * DAY_NS - now
}

/// Calls counted on one UTC day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct DayCount {
    pub(crate) day: i64,
    pub(crate) count: u64,
}

impl DayCount {
    /// Calls counted on `today` (a count from a later day, after the clock stepped back, is
    /// kept rather than forgotten).
    pub(crate) fn on(&self, today: i64) -> u64 {
        if self.day >= today { self.count } else { 0 }
    }

    /// `Ok(remaining after the call)`, or `Err(())` when the budget is spent.
    pub(crate) fn peek(&self, limit: u64, today: i64) -> Result<u64, ()> {
        let used = self.on(today);
        if used >= limit {
            Err(())
        } else {
            Ok(limit - used - 1)
        }
    }

    pub(crate) fn commit(&mut self, today: i64) {
        let used = self.on(today);
        self.day = self.day.max(today);
        self.count = used + 1;
    }

    /// Gives back one call committed on `day`.
    pub(crate) fn undo(&mut self, day: i64) {
        if self.day == day {
            self.count = self.count.saturating_sub(1);
        }
    }

    pub(crate) fn idle(&self, today: i64) -> bool {
        self.on(today) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: i64 = 1_000_000_000;

    fn rate(requests: u32, secs: u64, burst: u32) -> Rate {
        Rate {
            requests,
            period: Duration::from_secs(secs),
            burst,
        }
    }

    /// Drives a cell like the Lua script does: commit when conforming.
    fn take(cell: &mut Cell, g: Gcra, now: i64) -> Result<Conform, i64> {
        let r = cell.peek(g, now);
        if let Ok(c) = r {
            cell.commit(c);
        }
        r
    }

    #[test]
    fn burst_then_one_per_emission_interval() {
        let r = rate(10, 1, 5); // T = 100 ms, burst 5
        let g = Gcra::new(r, 1);
        assert_eq!(g.emission, S / 10);
        let mut cell = Cell::new(r);
        let t0 = 1_000 * S;
        for left in (0..5).rev() {
            assert_eq!(take(&mut cell, g, t0).map(|c| c.remaining), Ok(left));
        }
        assert_eq!(take(&mut cell, g, t0), Err(S / 10));
        assert_eq!(take(&mut cell, g, t0 + S / 10 - 1), Err(1));
        assert!(take(&mut cell, g, t0 + S / 10).is_ok());
        // A full refill takes burst × T.
        assert_eq!(cell.peek(g, t0 + S / 10).unwrap_err(), S / 10);
        let full = cell.tat;
        assert_eq!(cell.peek(g, full).map(|c| c.remaining), Ok(4));
        assert!(cell.idle(full));
    }

    #[test]
    fn undo_gives_the_call_back() {
        let r = rate(1, 60, 2);
        let g = Gcra::new(r, 1);
        let mut cell = Cell::new(r);
        assert!(take(&mut cell, g, 0).is_ok());
        assert!(take(&mut cell, g, 0).is_ok());
        assert!(take(&mut cell, g, 0).is_err());
        cell.undo(g);
        assert!(take(&mut cell, g, 0).is_ok());
    }

    #[test]
    fn divided_rate_for_local_only_mode() {
        let g = Gcra::new(rate(100, 60, 10), 4);
        assert_eq!(g.emission, 60 * S / 100 * 4);
        assert_eq!(g.burst, 2);
        assert_eq!(Gcra::new(rate(1, 1, 1), 3).burst, 1, "at least one call");
    }

    #[test]
    fn days_roll_over_at_utc_midnight() {
        let midnight = 20_000 * DAY_NS;
        let mut d = DayCount::default();
        let before = midnight - 1;
        assert_eq!(d.peek(2, day_of(before)), Ok(1));
        d.commit(day_of(before));
        d.commit(day_of(before));
        assert_eq!(d.peek(2, day_of(before)), Err(()));
        assert_eq!(until_midnight(before), 1);
        assert_eq!(d.peek(2, day_of(midnight)), Ok(1));
        assert_eq!(until_midnight(midnight), DAY_NS);
        // The clock stepping back a day does not refill the budget.
        d.commit(day_of(midnight));
        assert_eq!(d.on(day_of(before)), 1);
    }
}
