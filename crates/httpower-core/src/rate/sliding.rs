//! Sliding window: the two-counter weighted approximation.
//!
//! An exact sliding log keeps one timestamp per admitted request (memory O(limit) per
//! key). This approximation keeps two counters — the previous aligned window's total and
//! the current one's — and assumes the previous window's requests were spread evenly, so
//! the part of it still inside the sliding window is proportional to the overlap.
//! Constant memory, no boundary burst of the fixed window's size.
//!
//! # Exact semantics
//!
//! * Windows are aligned as for [`FixedWindow`](super::FixedWindow): window `k` covers
//!   `[k × W, (k + 1) × W)`. At `now`, `e = now − k × W` is the time into the current
//!   window. Moving to window `k + 1` makes the current count the previous one; skipping
//!   further clears both.
//! * The estimate is `prev × (W − e) / W + curr`. A request of `cost` is admitted iff
//!   `prev × (W − e) + (curr + cost) × W ≤ limit × W` — computed exactly in integers,
//!   with no rounding. Then `curr += cost`.
//! * `remaining` = `⌊(limit × W − prev × (W − e) − curr × W) / W⌋` after the decision.
//! * `reset_after`: until the estimate is zero — `2W − e` if `curr > 0`, `W − e` if only
//!   `prev > 0`, zero otherwise.
//! * `retry_after` (denied): the exact earliest time the same request fits, either later
//!   in this window (as `prev` decays) or in the next one (when `curr` becomes `prev`).
//!
//! Bounds: each aligned window admits at most `limit`; any interval of length `W`
//! admits at most `2 × limit` (the approximation's worst case, reached only when the
//! previous window's traffic was bunched at its end).

use std::time::Duration;

use super::{Algorithm, CostExceedsLimit, Decision, WindowQuota};
use crate::clock::Nanos;

/// The two-counter sliding window over a [`WindowQuota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    quota: WindowQuota,
}

/// Per-key sliding-window state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindowState {
    /// Index of the current window.
    pub window: u64,
    /// Cells admitted in the window before it.
    pub previous: u32,
    /// Cells admitted in the current window.
    pub current: u32,
}

impl SlidingWindow {
    /// A sliding-window limiter over `quota`.
    pub const fn new(quota: WindowQuota) -> SlidingWindow {
        SlidingWindow { quota }
    }

    /// The quota.
    pub const fn quota(&self) -> &WindowQuota {
        &self.quota
    }
}

impl Algorithm for SlidingWindow {
    type State = SlidingWindowState;

    fn limit(&self) -> u32 {
        self.quota.limit().get()
    }

    fn check(
        &self,
        state: &mut SlidingWindowState,
        now: Nanos,
        cost: u32,
    ) -> Result<Decision, CostExceedsLimit> {
        let limit = self.limit();
        CostExceedsLimit::ensure(cost, limit)?;
        let w = self.quota.window_nanos();
        let now = now.as_u64();
        let window = now / w;
        if window == state.window.saturating_add(1) {
            *state = SlidingWindowState {
                window,
                previous: state.current,
                current: 0,
            };
        } else if window != state.window {
            *state = SlidingWindowState {
                window,
                previous: 0,
                current: 0,
            };
        }
        let e = now - window * w;
        let (w128, e128) = (u128::from(w), u128::from(e));
        let prev = u128::from(state.previous);
        let curr = u128::from(state.current);
        let cost128 = u128::from(cost);
        let capacity = u128::from(limit) * w128;
        let decayed_prev = prev * (w128 - e128);

        let remaining_with = |curr: u128| -> u32 {
            let used = decayed_prev + curr * w128;
            u32::try_from(capacity.saturating_sub(used) / w128).unwrap_or(limit)
        };
        let reset_after = |curr: u128| -> Duration {
            if curr > 0 {
                Duration::from_nanos(2 * w - e)
            } else if prev > 0 {
                Duration::from_nanos(w - e)
            } else {
                Duration::ZERO
            }
        };

        if decayed_prev + (curr + cost128) * w128 <= capacity {
            state.current += cost;
            let curr = curr + cost128;
            return Ok(Decision::allow(
                limit,
                remaining_with(curr),
                reset_after(curr),
            ));
        }

        let retry_after = if curr + cost128 <= u128::from(limit) {
            // Fits in this window once the previous window has decayed enough:
            // prev × (W − e') ≤ (limit − curr − cost) × W.
            let room = (u128::from(limit) - curr - cost128) * w128;
            // prev > 0 here, or the request would have been admitted.
            let e_fit = w128 - (room / prev.max(1)).min(w128);
            e_fit.saturating_sub(e128)
        } else {
            // Only in the next window, where today's count becomes the decaying one:
            // curr × (W − e'') ≤ (limit − cost) × W, measured from the next window start.
            let room = (u128::from(limit) - cost128) * w128;
            let e_fit = w128 - (room / curr.max(1)).min(w128);
            (w128 - e128) + e_fit
        };
        Ok(Decision::deny(
            limit,
            remaining_with(curr),
            reset_after(curr),
            Duration::from_nanos(u64::try_from(retry_after).unwrap_or(u64::MAX)),
        ))
    }

    fn expires_at(&self, state: &SlidingWindowState) -> Nanos {
        let w = self.quota.window_nanos();
        if state.current > 0 {
            Nanos::new(state.window.saturating_add(2).saturating_mul(w))
        } else if state.previous > 0 {
            Nanos::new(state.window.saturating_add(1).saturating_mul(w))
        } else {
            Nanos::ZERO
        }
    }

    fn last_active(&self, state: &SlidingWindowState) -> Nanos {
        let w = self.quota.window_nanos();
        let window = if state.current > 0 {
            state.window
        } else {
            state.window.saturating_sub(1)
        };
        Nanos::new(window.saturating_mul(w))
    }
}
