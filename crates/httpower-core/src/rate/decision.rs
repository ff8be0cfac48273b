//! The answer a limiter gives.

use std::time::Duration;

/// What a limiter decided for one request, with everything a caller needs to report it
/// (the `RateLimit` and `Retry-After` headers are built from these fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request was admitted (and its cost consumed).
    pub allowed: bool,
    /// The quota's size: the burst of a token bucket, the limit of a window, the
    /// maximum of a concurrency limiter.
    pub limit: u32,
    /// Cells still available right after this decision, rounded down.
    pub remaining: u32,
    /// How long until the quota is fully available again (all cells back).
    pub reset_after: Duration,
    /// When denied: how long until the same request would be admitted. Zero when allowed.
    pub retry_after: Duration,
}

impl Decision {
    /// An admitted decision.
    pub const fn allow(limit: u32, remaining: u32, reset_after: Duration) -> Decision {
        Decision {
            allowed: true,
            limit,
            remaining,
            reset_after,
            retry_after: Duration::ZERO,
        }
    }

    /// A denied decision.
    pub const fn deny(
        limit: u32,
        remaining: u32,
        reset_after: Duration,
        retry_after: Duration,
    ) -> Decision {
        Decision {
            allowed: false,
            limit,
            remaining,
            reset_after,
            retry_after,
        }
    }
}

/// A request asked for more cells than the quota can ever grant at once.
///
/// This is not a denial: waiting would not help, so it is reported separately instead of
/// as a `retry_after` that never comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a cost of {cost} can never be admitted by a quota of {limit}")]
pub struct CostExceedsLimit {
    /// The cost asked for.
    pub cost: u32,
    /// The largest cost the quota admits.
    pub limit: u32,
}

impl CostExceedsLimit {
    /// `Ok` when `cost` fits a quota of `limit`: the check every algorithm starts with.
    pub(crate) fn ensure(cost: u32, limit: u32) -> Result<(), CostExceedsLimit> {
        if cost > limit {
            Err(CostExceedsLimit { cost, limit })
        } else {
            Ok(())
        }
    }
}
