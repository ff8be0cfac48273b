//! Quotas: how much a limiter admits, in types that cannot be built wrong.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::clock::duration_to_nanos;

/// A quota was built from values that cannot describe a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A count or duration that must be positive was zero.
    #[error("`{field}` must be greater than zero")]
    Zero {
        /// The name of the offending field.
        field: &'static str,
    },
    /// The values are individually valid but their product does not fit in time arithmetic.
    #[error("`{field}` is too large: {detail}")]
    Overflow {
        /// The name of the offending field.
        field: &'static str,
        /// What overflowed.
        detail: String,
    },
}

fn non_zero(value: u32, field: &'static str) -> Result<NonZeroU32, QuotaError> {
    NonZeroU32::new(value).ok_or(QuotaError::Zero { field })
}

fn non_zero_duration(value: Duration, field: &'static str) -> Result<u64, QuotaError> {
    match duration_to_nanos(value) {
        0 => Err(QuotaError::Zero { field }),
        nanos => Ok(nanos),
    }
}

/// A token-bucket quota for [`Gcra`](super::Gcra): `rate` cells replenish every `period`,
/// and at most `burst` cells can be spent at once.
///
/// The cell cost is the *emission interval* `period / rate`, rounded **up** to a whole
/// nanosecond so the limiter never admits more than the quota says. `burst` defaults to
/// `rate` ("100 per minute" admits 100 at once after an idle minute).
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use httpower_core::rate::Quota;
///
/// let quota = Quota::per_second(NonZeroU32::new(10).unwrap())
///     .allow_burst(NonZeroU32::new(20).unwrap());
/// assert_eq!(quota.emission_interval(), Duration::from_millis(100));
/// assert_eq!(quota.burst().get(), 20);
///
/// // Zero is not a rate: the error names the field.
/// let err = Quota::new(0, Duration::from_secs(1), 5).unwrap_err();
/// assert_eq!(err.to_string(), "`rate` must be greater than zero");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    rate: NonZeroU32,
    period_nanos: u64,
    burst: NonZeroU32,
    interval_nanos: u64,
}

impl Quota {
    /// `rate` cells per `period`, with a burst of `burst`; every value must be positive.
    pub fn new(rate: u32, period: Duration, burst: u32) -> Result<Quota, QuotaError> {
        let rate = non_zero(rate, "rate")?;
        let burst = non_zero(burst, "burst")?;
        let period_nanos = non_zero_duration(period, "period")?;
        Self::build(rate, period_nanos, burst)
    }

    /// `rate` cells per `period` with a burst equal to `rate`.
    pub fn with_period(rate: NonZeroU32, period: Duration) -> Result<Quota, QuotaError> {
        let period_nanos = non_zero_duration(period, "period")?;
        Self::build(rate, period_nanos, rate)
    }

    fn build(rate: NonZeroU32, period_nanos: u64, burst: NonZeroU32) -> Result<Quota, QuotaError> {
        let interval_nanos = period_nanos.div_ceil(u64::from(rate.get()));
        let capacity = u128::from(interval_nanos) * u128::from(burst.get());
        if capacity > u128::from(u64::MAX / 4) {
            return Err(QuotaError::Overflow {
                field: "burst",
                detail: format!(
                    "a burst of {burst} cells of {interval_nanos} ns each exceeds the time range"
                ),
            });
        }
        Ok(Quota {
            rate,
            period_nanos,
            burst,
            interval_nanos,
        })
    }

    fn fixed(rate: NonZeroU32, period: Duration) -> Quota {
        let period_nanos = duration_to_nanos(period);
        let interval_nanos = period_nanos.div_ceil(u64::from(rate.get()));
        // A burst of `rate` cells spans exactly one period (at most a day), far inside u64.
        Quota {
            rate,
            period_nanos,
            burst: rate,
            interval_nanos,
        }
    }

    /// `rate` cells per second, burst `rate`.
    pub fn per_second(rate: NonZeroU32) -> Quota {
        Self::fixed(rate, Duration::from_secs(1))
    }

    /// `rate` cells per minute, burst `rate`.
    pub fn per_minute(rate: NonZeroU32) -> Quota {
        Self::fixed(rate, Duration::from_secs(60))
    }

    /// `rate` cells per hour, burst `rate`.
    pub fn per_hour(rate: NonZeroU32) -> Quota {
        Self::fixed(rate, Duration::from_secs(3600))
    }

    /// `rate` cells per day, burst `rate`.
    pub fn per_day(rate: NonZeroU32) -> Quota {
        Self::fixed(rate, Duration::from_secs(86_400))
    }

    /// The same rate with a different burst.
    ///
    /// The rate and period were validated already; only an absurd combination (a burst
    /// of billions of day-long cells) can fail, and then the burst is clamped to the
    /// largest representable value.
    #[must_use]
    pub fn allow_burst(self, burst: NonZeroU32) -> Quota {
        let max_burst = (u64::MAX / 4) / self.interval_nanos.max(1);
        let burst = u32::try_from(max_burst)
            .ok()
            .and_then(NonZeroU32::new)
            .map_or(burst, |max| burst.min(max));
        Quota { burst, ..self }
    }

    /// Cells replenished per period.
    pub fn rate(&self) -> NonZeroU32 {
        self.rate
    }

    /// The replenishment period.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_nanos)
    }

    /// The largest number of cells admitted at once.
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }

    /// The time one cell takes to replenish: `period / rate`, rounded up to a nanosecond.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos)
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Quota({} per {:?}, burst {})",
            self.rate,
            self.period(),
            self.burst
        )
    }
}

/// A window quota for [`SlidingWindow`](super::SlidingWindow) and
/// [`FixedWindow`](super::FixedWindow): at most `limit` cells per `window`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowQuota {
    limit: NonZeroU32,
    window_nanos: u64,
}

impl WindowQuota {
    /// `limit` cells per `window`; both must be positive.
    pub fn new(limit: u32, window: Duration) -> Result<WindowQuota, QuotaError> {
        let limit = non_zero(limit, "limit")?;
        let window_nanos = non_zero_duration(window, "window")?;
        // The sliding-window arithmetic multiplies counts by window lengths in u128, so
        // any u32 limit and any u64 window fit; keep windows under ~146 years all the same.
        if window_nanos > u64::MAX / 4 {
            return Err(QuotaError::Overflow {
                field: "window",
                detail: format!("{window:?} exceeds the time range"),
            });
        }
        Ok(WindowQuota {
            limit,
            window_nanos,
        })
    }

    /// The most cells admitted per window.
    pub fn limit(&self) -> NonZeroU32 {
        self.limit
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_nanos)
    }

    pub(crate) fn window_nanos(&self) -> u64 {
        self.window_nanos
    }
}

impl fmt::Debug for WindowQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowQuota({} per {:?})", self.limit, self.window())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn zero_values_are_named() {
        let second = Duration::from_secs(1);
        assert_eq!(
            Quota::new(0, second, 1),
            Err(QuotaError::Zero { field: "rate" })
        );
        assert_eq!(
            Quota::new(1, second, 0),
            Err(QuotaError::Zero { field: "burst" })
        );
        assert_eq!(
            Quota::new(1, Duration::ZERO, 1),
            Err(QuotaError::Zero { field: "period" })
        );
        assert_eq!(
            WindowQuota::new(0, second),
            Err(QuotaError::Zero { field: "limit" })
        );
        assert_eq!(
            WindowQuota::new(1, Duration::ZERO),
            Err(QuotaError::Zero { field: "window" })
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let err = Quota::new(1, Duration::from_secs(86_400 * 365 * 100), u32::MAX).unwrap_err();
        assert!(
            matches!(err, QuotaError::Overflow { field: "burst", .. }),
            "{err}"
        );
        assert!(WindowQuota::new(1, Duration::MAX).is_err());
    }

    #[test]
    fn interval_rounds_up() {
        let q = Quota::per_second(NonZeroU32::new(3).unwrap());
        assert_eq!(q.emission_interval(), Duration::from_nanos(333_333_334));
        assert_eq!(q.burst().get(), 3);
        let q = Quota::per_day(NonZeroU32::new(u32::MAX).unwrap());
        assert_eq!(q.emission_interval(), Duration::from_nanos(20_117));
    }
}
