//! Fixed window: a counter per aligned window. The cheapest algorithm.
//!
//! # Exact semantics
//!
//! * Windows are aligned to multiples of the window length since the clock's origin
//!   (for the Redis store: since the Unix epoch, so every instance agrees). Window `k`
//!   covers `[k × W, (k + 1) × W)`.
//! * A request of `cost` at `now` is admitted iff `count + cost ≤ limit` for the window
//!   containing `now`; then `count += cost`. The count starts at zero in each window.
//! * `remaining` = `limit − count` after the decision.
//! * `reset_after` = time until the window ends; `retry_after` (denied) is the same.
//!
//! The known weakness, stated so nobody is surprised: a client can spend `limit` at the
//! end of one window and `limit` again at the start of the next, `2 × limit` within a
//! short interval. Use [`SlidingWindow`](super::SlidingWindow) or [`Gcra`](super::Gcra)
//! where that matters.

use std::time::Duration;

use super::{Algorithm, CostExceedsLimit, Decision, WindowQuota};
use crate::clock::Nanos;

/// The fixed-window counter over a [`WindowQuota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedWindow {
    quota: WindowQuota,
}

/// Per-key fixed-window state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindowState {
    /// Index of the window `count` belongs to.
    pub window: u64,
    /// Cells admitted in that window.
    pub count: u32,
}

impl FixedWindow {
    /// A fixed-window limiter over `quota`.
    pub const fn new(quota: WindowQuota) -> FixedWindow {
        FixedWindow { quota }
    }

    /// The quota.
    pub const fn quota(&self) -> &WindowQuota {
        &self.quota
    }
}

impl Algorithm for FixedWindow {
    type State = FixedWindowState;

    fn limit(&self) -> u32 {
        self.quota.limit().get()
    }

    fn check(
        &self,
        state: &mut FixedWindowState,
        now: Nanos,
        cost: u32,
    ) -> Result<Decision, CostExceedsLimit> {
        let limit = self.limit();
        CostExceedsLimit::ensure(cost, limit)?;
        let w = self.quota.window_nanos();
        let now = now.as_u64();
        let window = now / w;
        if window != state.window {
            *state = FixedWindowState { window, count: 0 };
        }
        let reset_after = Duration::from_nanos((window + 1).saturating_mul(w).saturating_sub(now));
        if u64::from(state.count) + u64::from(cost) <= u64::from(limit) {
            state.count += cost;
            Ok(Decision::allow(limit, limit - state.count, reset_after))
        } else {
            Ok(Decision::deny(
                limit,
                limit - state.count,
                reset_after,
                reset_after,
            ))
        }
    }

    fn expires_at(&self, state: &FixedWindowState) -> Nanos {
        if state.count == 0 {
            Nanos::ZERO
        } else {
            Nanos::new((state.window + 1).saturating_mul(self.quota.window_nanos()))
        }
    }

    fn last_active(&self, state: &FixedWindowState) -> Nanos {
        Nanos::new(state.window.saturating_mul(self.quota.window_nanos()))
    }
}
