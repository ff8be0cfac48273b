//! GCRA, the generic cell rate algorithm: a token bucket kept as one timestamp.
//!
//! A token bucket of capacity `burst` that refills one cell every emission interval
//! `T = period / rate` can be described by a single number: the *theoretical arrival
//! time* (TAT), the instant at which the bucket would be full again. No background
//! refill, no counter, one `u64` per key — which is why this is the default algorithm,
//! and why the Redis store needs one key per identifier.
//!
//! # Exact semantics
//!
//! All arithmetic is on integer nanoseconds (the Redis store uses microseconds; the shared
//! test vectors use quotas whose interval is whole milliseconds so both agree).
//!
//! * `T` = `period / rate`, rounded up. Capacity `C = burst × T`.
//! * A key never seen has `TAT = 0` (the clock's origin), that is, a full bucket.
//! * A request of `cost` cells at `now`: `base = max(TAT, now)`, `new = base + cost × T`.
//!   It is admitted iff `new − now ≤ C`; then `TAT = new`.
//! * `remaining` = `⌊(C − (TAT − now)) / T⌋` with the TAT after the decision — the cells
//!   that could be spent right now. Rounded down: a partly refilled cell is not offered.
//! * `reset_after` = `TAT − now` (until the bucket is full again), after the decision.
//! * `retry_after` (denied only) = `new − now − C`: the earliest moment the same request
//!   fits.
//! * A cost of zero consumes nothing and reports the current state (an inspection).
//!
//! Bound: over any interval of length `d`, at most `burst + ⌊d / T⌋` cells are admitted.

use std::time::Duration;

use super::{Algorithm, CostExceedsLimit, Decision, Quota};
use crate::clock::Nanos;

/// The GCRA token bucket over a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    quota: Quota,
}

/// Per-key GCRA state: the theoretical arrival time, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcraState {
    /// When the bucket is full again. `0` for a key never seen.
    pub tat: u64,
}

impl Gcra {
    /// A GCRA limiter over `quota`.
    pub const fn new(quota: Quota) -> Gcra {
        Gcra { quota }
    }

    /// The quota.
    pub const fn quota(&self) -> &Quota {
        &self.quota
    }
}

impl Algorithm for Gcra {
    type State = GcraState;

    fn limit(&self) -> u32 {
        self.quota.burst().get()
    }

    fn check(
        &self,
        state: &mut GcraState,
        now: Nanos,
        cost: u32,
    ) -> Result<Decision, CostExceedsLimit> {
        let limit = self.limit();
        CostExceedsLimit::ensure(cost, limit)?;
        let now = now.as_u64();
        let t = self.quota.interval_nanos();
        let capacity = t * u64::from(limit);
        let base = state.tat.max(now);
        // cost ≤ burst and burst × T fits in u64 / 4 (checked by Quota), so no overflow.
        let new_tat = base + t * u64::from(cost);
        let remaining_after = |tat: u64| {
            let used = tat - now;
            u32::try_from(capacity.saturating_sub(used) / t).unwrap_or(limit)
        };
        if new_tat - now <= capacity {
            state.tat = new_tat;
            Ok(Decision::allow(
                limit,
                remaining_after(new_tat),
                Duration::from_nanos(new_tat - now),
            ))
        } else {
            Ok(Decision::deny(
                limit,
                remaining_after(base),
                Duration::from_nanos(base - now),
                Duration::from_nanos(new_tat - now - capacity),
            ))
        }
    }

    fn expires_at(&self, state: &GcraState) -> Nanos {
        Nanos::new(state.tat)
    }

    fn last_active(&self, state: &GcraState) -> Nanos {
        // An admission at `a` leaves TAT ≤ a + burst × T.
        let capacity = self.quota.interval_nanos() * u64::from(self.limit());
        Nanos::new(state.tat.saturating_sub(capacity))
    }
}
