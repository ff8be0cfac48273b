//! How long to wait before the next attempt.
//!
//! Waiting a fixed time between retries lines every failed client up on the same beat:
//! when a dependency comes back, all of them hit it in the same instant and knock it over
//! again. Exponential backoff spreads retries out over time (`base_delay * 2^(n-1)` before
//! retry `n`, capped at `max_delay`), and jitter breaks the remaining synchrony between
//! clients that failed together.
//!
//! [`Jitter`] offers the usual shapes. The default, [`Jitter::Proportional`] with a factor
//! of 0.2, keeps every delay within 20% below the exponential value: predictable enough to
//! reason about timeouts, random enough to de-synchronise a fleet. [`Jitter::Full`] and
//! [`Jitter::Decorrelated`] spread load further at the price of sometimes retrying almost
//! at once.
//!
//! Randomness is passed in (`R: rand::Rng`), so tests can use a seeded generator and get
//! the same delays every time.
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::retry::{Backoff, Jitter};
//!
//! let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), Jitter::None)?;
//! assert_eq!(backoff.exponential(1), Duration::from_millis(100));
//! assert_eq!(backoff.exponential(3), Duration::from_millis(400));
//! assert_eq!(backoff.exponential(1000), Duration::from_secs(1));
//!
//! let jittered = backoff.with_jitter(Jitter::Proportional { factor: 0.2 })?;
//! let delay = jittered.delay(3, None, &mut rand::thread_rng());
//! assert!(delay > Duration::from_millis(320) && delay <= Duration::from_millis(400));
//! # Ok::<(), httpower_core::retry::BackoffError>(())
//! ```

use std::time::Duration;

use rand::Rng;

use crate::clock::duration_to_nanos;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// How randomness is applied to the exponential delay `d` of a retry.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `d`. Deterministic; fine for a single client, risky for a fleet.
    None,
    /// Uniform in `[0, d)`: the widest spread, occasionally an immediate retry.
    Full,
    /// `d / 2` plus uniform in `[0, d / 2)`: never less than half the exponential delay.
    Equal,
    /// Uniform in `[base_delay, 3 * previous)`, capped at `max_delay`; grows from the
    /// previous delay rather than from the attempt number.
    Decorrelated,
    /// `d * (1 - factor * r)` with `r` uniform in `[0, 1)`: at most `factor` below `d`.
    Proportional {
        /// How far below the exponential delay the result may fall, in `[0, 1]`.
        factor: f64,
    },
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::Proportional { factor: 0.2 }
    }
}

/// An invalid [`Backoff`] setting; [`field`](BackoffError::field) names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffError {
    /// `base_delay` was zero.
    #[error("base_delay must be greater than zero")]
    ZeroBaseDelay,
    /// `max_delay` was below `base_delay`.
    #[error("max_delay ({max_delay:?}) must be at least base_delay ({base_delay:?})")]
    MaxBelowBase {
        /// The configured base delay.
        base_delay: Duration,
        /// The configured maximum delay.
        max_delay: Duration,
    },
    /// The proportional jitter factor was not a number in `[0, 1]`.
    #[error("jitter factor must be within [0, 1], found {factor}")]
    JitterFactorOutOfRange {
        /// The configured factor.
        factor: f64,
    },
}

impl BackoffError {
    /// The name of the offending setting: `base_delay`, `max_delay` or `jitter_factor`.
    pub fn field(&self) -> &'static str {
        match self {
            BackoffError::ZeroBaseDelay => "base_delay",
            BackoffError::MaxBelowBase { .. } => "max_delay",
            BackoffError::JitterFactorOutOfRange { .. } => "jitter_factor",
        }
    }
}

/// Exponential backoff with a cap and jitter. Defaults: 1 s base, 30 s cap, proportional
/// jitter with factor 0.2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base_delay: Duration,
    max_delay: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: Jitter::default(),
        }
    }
}

impl Backoff {
    /// A validated backoff: `base_delay` non-zero, `max_delay >= base_delay`, and a
    /// proportional jitter factor within `[0, 1]`.
    pub fn new(
        base_delay: Duration,
        max_delay: Duration,
        jitter: Jitter,
    ) -> Result<Self, BackoffError> {
        if base_delay.is_zero() {
            return Err(BackoffError::ZeroBaseDelay);
        }
        if max_delay < base_delay {
            return Err(BackoffError::MaxBelowBase {
                base_delay,
                max_delay,
            });
        }
        if let Jitter::Proportional { factor } = jitter {
            if !(0.0..=1.0).contains(&factor) {
                return Err(BackoffError::JitterFactorOutOfRange { factor });
            }
        }
        Ok(Backoff {
            base_delay,
            max_delay,
            jitter,
        })
    }

    /// The same delays with another jitter (validated like [`new`](Backoff::new)).
    pub fn with_jitter(self, jitter: Jitter) -> Result<Self, BackoffError> {
        Backoff::new(self.base_delay, self.max_delay, jitter)
    }

    /// The delay before the first retry.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// The cap on any delay.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The jitter applied to each delay.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// `base_delay * 2^(retry - 1)` capped at `max_delay`, without jitter. `retry` counts
    /// retries from 1 (0 is treated as 1); any value is safe, there is no overflow.
    pub fn exponential(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1);
        let capped = 2u128
            .checked_pow(doublings)
            .and_then(|factor| self.base_delay.as_nanos().checked_mul(factor))
            .filter(|nanos| *nanos < self.max_delay.as_nanos());
        match capped {
            // Below `max_delay`, so it is a valid `Duration`; it may not fit in u64
            // nanoseconds (when `max_delay` is over 584 years), so it is split into
            // seconds (below `max_delay`'s, so they fit in u64) and sub-second nanos.
            Some(nanos) => Duration::new(
                (nanos / NANOS_PER_SEC) as u64,
                (nanos % NANOS_PER_SEC) as u32,
            ),
            None => self.max_delay,
        }
    }

    /// The jittered delay before retry number `retry` (from 1).
    ///
    /// `previous` is the delay used before the previous retry, if any; only
    /// [`Jitter::Decorrelated`] looks at it. The result never exceeds `max_delay`.
    pub fn delay<R: Rng + ?Sized>(
        &self,
        retry: u32,
        previous: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let nanos = |d: Duration| duration_to_nanos(d);
        let delay = match self.jitter {
            Jitter::None => self.exponential(retry),
            Jitter::Full => {
                let ceiling = nanos(self.exponential(retry));
                Duration::from_nanos(uniform_below(rng, ceiling))
            }
            Jitter::Equal => {
                let ceiling = nanos(self.exponential(retry));
                let half = ceiling / 2;
                Duration::from_nanos(ceiling - half + uniform_below(rng, half))
            }
            Jitter::Proportional { factor } => {
                let exp = nanos(self.exponential(retry));
                let r: f64 = rng.gen();
                // `new` keeps `factor` within [0, 1], so the multiplier is in [0, 1]. `as`
                // saturates, and `exp as f64` can round above `exp`: hence the `min`.
                let scaled = (exp as f64 * (1.0 - factor * r)) as u64;
                Duration::from_nanos(scaled.min(exp))
            }
            Jitter::Decorrelated => {
                let base = nanos(self.base_delay);
                let previous = nanos(previous.unwrap_or(self.base_delay)).max(base);
                let upper = previous.saturating_mul(3);
                Duration::from_nanos(base + uniform_below(rng, upper - base))
            }
        };
        delay.min(self.max_delay)
    }
}

/// Uniform in `[0, ceiling)`, or 0 when `ceiling` is 0.
fn uniform_below<R: Rng + ?Sized>(rng: &mut R, ceiling: u64) -> u64 {
    if ceiling == 0 {
        0
    } else {
        rng.gen_range(0..ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    const MS: Duration = Duration::from_millis(1);

    fn backoff(jitter: Jitter) -> Backoff {
        match Backoff::new(100 * MS, 2_000 * MS, jitter) {
            Ok(b) => b,
            Err(e) => unreachable!("valid backoff rejected: {e}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let b = Backoff::default();
        assert_eq!(b.base_delay(), Duration::from_secs(1));
        assert_eq!(b.max_delay(), Duration::from_secs(30));
        assert_eq!(b.jitter(), Jitter::Proportional { factor: 0.2 });
        assert_eq!(b.exponential(1), Duration::from_secs(1));
        assert_eq!(b.exponential(2), Duration::from_secs(2));
        assert_eq!(b.exponential(3), Duration::from_secs(4));
        assert_eq!(b.exponential(6), Duration::from_secs(30));
    }

    #[test]
    fn exponential_never_overflows() {
        let b = backoff(Jitter::None);
        assert_eq!(b.exponential(0), 100 * MS);
        for retry in [6, 31, 32, 33, 64, 127, 128, 129, 1000, u32::MAX] {
            assert_eq!(b.exponential(retry), 2_000 * MS, "retry {retry}");
        }
        let huge = Backoff::new(Duration::from_secs(1), Duration::MAX, Jitter::None);
        let Ok(huge) = huge else {
            unreachable!("valid backoff rejected: {huge:?}")
        };
        assert_eq!(huge.exponential(1000), Duration::MAX);
        // Below the cap but beyond u64 nanoseconds (about 2^34 s): exact, not saturated.
        assert_eq!(huge.exponential(36), Duration::from_secs(1 << 35));
        assert_eq!(huge.exponential(64), Duration::from_secs(1 << 63));
        // Jitter on a delay too large for u64 nanoseconds works on the saturated value
        // (u64::MAX ns, about 584 years): the default proportional jitter keeps it within
        // 20% below that, finite and capped.
        let jittered = huge.with_jitter(Jitter::default());
        let Ok(huge) = jittered else {
            unreachable!("valid jitter rejected: {jittered:?}")
        };
        let ceiling = Duration::from_nanos(u64::MAX);
        for seed in 0..50 {
            let d = huge.delay(1000, None, &mut SmallRng::seed_from_u64(seed));
            assert!(
                d > ceiling.mul_f64(0.8) && d <= ceiling,
                "seed {seed}: {d:?} vs {ceiling:?}"
            );
        }
    }

    #[test]
    fn each_jitter_stays_in_its_range() {
        let mut rng = SmallRng::seed_from_u64(7);
        for retry in 1..=8 {
            let exp = backoff(Jitter::None).exponential(retry);
            for _ in 0..200 {
                let full = backoff(Jitter::Full).delay(retry, None, &mut rng);
                assert!(full < exp, "full {full:?} vs {exp:?}");
                let equal = backoff(Jitter::Equal).delay(retry, None, &mut rng);
                assert!(
                    equal >= exp / 2 && equal < exp,
                    "equal {equal:?} vs {exp:?}"
                );
                let prop =
                    backoff(Jitter::Proportional { factor: 0.2 }).delay(retry, None, &mut rng);
                assert!(
                    prop > exp.mul_f64(0.8) && prop <= exp,
                    "proportional {prop:?} vs {exp:?}"
                );
            }
        }
        let none = backoff(Jitter::Proportional { factor: 0.0 });
        assert_eq!(none.delay(2, None, &mut rng), 200 * MS);
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay() {
        let b = backoff(Jitter::Decorrelated);
        let mut rng = SmallRng::seed_from_u64(42);
        let mut previous = None;
        for retry in 1..50 {
            let d = b.delay(retry, previous, &mut rng);
            let upper = previous.unwrap_or(100 * MS) * 3;
            assert!(d >= 100 * MS, "below base: {d:?}");
            assert!(d <= 2_000 * MS, "above max: {d:?}");
            assert!(
                d < upper.min(2_000 * MS) || d == 2_000 * MS,
                "{d:?} vs {upper:?}"
            );
            previous = Some(d);
        }
    }

    #[test]
    fn seeded_rng_gives_repeatable_delays() {
        let b = backoff(Jitter::Full);
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (1..6)
                .map(|n| b.delay(n, None, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
    }

    #[test]
    fn invalid_settings_are_typed_and_named() {
        let zero = Backoff::new(Duration::ZERO, MS, Jitter::None);
        assert_eq!(zero, Err(BackoffError::ZeroBaseDelay));
        assert_eq!(BackoffError::ZeroBaseDelay.field(), "base_delay");

        let inverted = Backoff::new(2 * MS, MS, Jitter::None);
        assert_eq!(
            inverted,
            Err(BackoffError::MaxBelowBase {
                base_delay: 2 * MS,
                max_delay: MS
            })
        );
        assert!(matches!(&inverted, Err(e) if e.field() == "max_delay"));

        for factor in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let bad = Backoff::new(MS, MS, Jitter::Proportional { factor });
            assert!(
                matches!(&bad, Err(e @ BackoffError::JitterFactorOutOfRange { .. }) if e.field() == "jitter_factor"),
                "factor {factor} gave {bad:?}"
            );
        }
        assert!(Backoff::new(MS, MS, Jitter::Proportional { factor: 1.0 }).is_ok());
    }
}
