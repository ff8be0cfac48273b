//! A retry budget: retries as a bounded fraction of real traffic.
//!
//! # Why a budget, and not only a maximum number of retries?
//!
//! A per-call limit such as "at most 3 retries" is a limit on one caller's patience, not
//! on the load that a caller puts on a dependency. When the dependency is healthy and a
//! few calls fail, the limit is harmless. When the dependency is down, every call fails
//! and every call uses all its retries, so a client with `max_retries = 3` sends four
//! requests for each one it was asked to make: the outage quadruples the traffic hitting
//! a service that is already struggling, and makes its recovery harder. Stack two layers
//! that each retry three times and the factor becomes sixteen.
//!
//! A budget ties the number of retries to the number of original calls instead. Each call
//! deposits into a shared account; each retry must withdraw from it, and is skipped when
//! the account is empty. With a ratio of 0.2, retries can add at most 20% on top of the
//! calls made over the last `ttl`: occasional failures are still retried in full, while a
//! total outage costs the dependency 1.2 times the normal load instead of 4 times.
//!
//! A pure ratio would starve a client that makes one call a minute (it would never have
//! a retry to spend), so the budget also grants a small floor, `min_per_sec` retries per
//! second of the window, regardless of traffic.
//!
//! The floor is granted per window, not as a rate: the whole `min_per_sec * ttl` (100
//! retries with the defaults) is available at once, so it can be spent in a burst, and
//! comes back only as those withdrawals expire, one bucket at a time, `ttl` later. Size
//! it for the burst a dependency can take, not only for the average.
//!
//! The budget is shared by every clone, so all the copies of a client (and all the tasks
//! using them) spend from the same account. Time is read from an injected
//! [`Clock`]; the window is split into ten buckets that expire one
//! by one.
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::clock::ManualClock;
//! use httpower_core::retry::RetryBudget;
//!
//! let clock = ManualClock::new();
//! let budget = RetryBudget::builder()
//!     .ratio(0.5)
//!     .min_per_sec(0)
//!     .ttl(Duration::from_secs(10))
//!     .build(clock.clone())?;
//!
//! for _ in 0..4 {
//!     budget.deposit(); // four calls ...
//! }
//! assert!(budget.try_withdraw()); // ... pay for two retries
//! assert!(budget.try_withdraw());
//! assert!(!budget.try_withdraw());
//!
//! clock.advance(Duration::from_secs(11)); // the deposits expire with the window
//! assert!(!budget.try_withdraw());
//! # Ok::<(), httpower_core::retry::BudgetError>(())
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::clock::{duration_to_nanos, Clock, MonotonicClock, Nanos};

/// Number of buckets the window is split into.
const BUCKETS: usize = 10;
/// Fixed-point scale for the ratio: amounts are in millionths of a retry.
const SCALE: u128 = 1_000_000;

/// An invalid [`RetryBudget`] setting; [`field`](BudgetError::field) names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// `ratio` was negative, not a number, or above 1000.
    #[error("ratio must be a number within [0, 1000], found {ratio}")]
    InvalidRatio {
        /// The configured ratio.
        ratio: f64,
    },
    /// `ttl` was shorter than 10 ms or longer than one hour.
    #[error("ttl must be between 10ms and 1h, found {ttl:?}")]
    InvalidTtl {
        /// The configured window.
        ttl: Duration,
    },
}

impl BudgetError {
    /// The name of the offending setting: `ratio` or `ttl`.
    pub fn field(&self) -> &'static str {
        match self {
            BudgetError::InvalidRatio { .. } => "ratio",
            BudgetError::InvalidTtl { .. } => "ttl",
        }
    }
}

/// Builds a [`RetryBudget`]. Defaults: ratio 0.2, `min_per_sec` 10, ttl 10 s.
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_sec: u32,
    ttl: Duration,
}

impl Default for RetryBudgetBuilder {
    fn default() -> Self {
        RetryBudgetBuilder {
            ratio: 0.2,
            min_per_sec: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

impl RetryBudgetBuilder {
    /// Retries allowed per original call over the window (0.2 = at most 20% extra).
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries per second of the window that are allowed whatever the traffic.
    ///
    /// Granted per window: all `min_per_sec * ttl` of them can be taken at once (see
    /// [`RetryBudget::floor_per_window`]).
    pub fn min_per_sec(mut self, min_per_sec: u32) -> Self {
        self.min_per_sec = min_per_sec;
        self
    }

    /// How long a deposit counts (the sliding window), between 10 ms and 1 h.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The budget, reading time from `clock`.
    pub fn build(self, clock: impl Clock) -> Result<RetryBudget, BudgetError> {
        if !(0.0..=1000.0).contains(&self.ratio) {
            return Err(BudgetError::InvalidRatio { ratio: self.ratio });
        }
        if self.ttl < Duration::from_millis(10) || self.ttl > Duration::from_secs(3600) {
            return Err(BudgetError::InvalidTtl { ttl: self.ttl });
        }
        Ok(self.build_unchecked(Arc::new(clock)))
    }

    fn build_unchecked(self, clock: Arc<dyn Clock>) -> RetryBudget {
        // The ratio is within [0, 1000]: the scaled value fits and stays exact enough.
        let ratio_scaled = (self.ratio * SCALE as f64).round() as u128;
        let floor = u128::from(self.min_per_sec) * self.ttl.as_nanos() / 1_000_000_000;
        RetryBudget {
            inner: Arc::new(Inner {
                clock,
                ratio: self.ratio,
                ratio_scaled,
                min_per_sec: self.min_per_sec,
                floor_retries: u64::try_from(floor).unwrap_or(u64::MAX),
                ttl: self.ttl,
                // `ttl` is at least 10 ms (checked by `build`, and true of the defaults),
                // so a bucket is at least 1 ms wide and never zero.
                bucket_nanos: duration_to_nanos(self.ttl) / BUCKETS as u64,
                current: AtomicU64::new(0),
                deposits: Default::default(),
                window: Mutex::new(Window::default()),
            }),
        }
    }
}

/// A retry budget shared by all its clones. See the [module docs](self).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

/// The window is a ring of [`BUCKETS`] buckets; slot `i % BUCKETS` holds bucket index `i`
/// (time / bucket width) for the `BUCKETS` indexes ending at `current`.
///
/// Deposits happen on every logical call, so they do not take the mutex: when the clock
/// is still in the `current` bucket, a deposit is one relaxed `fetch_add` on that bucket's
/// counter. The mutex is taken only to move `current` forward (rolling the window, which
/// clears the slots of the expired buckets) and by withdrawals, which must read the whole
/// window and spend from it atomically.
///
/// A deposit that races a roll can be counted in a neighbouring bucket. A depositor
/// whose clock read falls in a bucket that another thread has just left takes the lock
/// and deposits into the new current bucket, so its deposit counts up to one bucket width
/// longer than `ttl`. A depositor stalled for a whole `ttl` between reading `current` and
/// adding may add to a slot that the roll has already cleared and reused for a newer
/// bucket (or have its deposit cleared, if it adds first). Either way the error is at most
/// one deposit per racing call, shifted by at most one window; the budget is an
/// approximate guard against retry storms and this does not change what it protects
/// against. A single thread sees exactly the behaviour of a fully locked ring.
struct Inner {
    clock: Arc<dyn Clock>,
    ratio: f64,
    ratio_scaled: u128,
    min_per_sec: u32,
    floor_retries: u64,
    ttl: Duration,
    bucket_nanos: u64,
    /// Index of the newest bucket in the window; written only with `window` locked.
    current: AtomicU64,
    /// Deposits per slot of the ring.
    deposits: [AtomicU64; BUCKETS],
    /// Withdrawals per slot; the lock also serialises rolling the window.
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    withdrawals: [u64; BUCKETS],
}

fn slot(index: u64) -> usize {
    (index % BUCKETS as u64) as usize
}

impl fmt::Debug for RetryBudget {
    /// The settings only: reading the balance would read the clock and roll the window.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.inner.ratio)
            .field("min_per_sec", &self.inner.min_per_sec)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for RetryBudget {
    /// The default budget (ratio 0.2, 10 retries/s floor, 10 s window) on the process's
    /// monotonic clock.
    fn default() -> Self {
        RetryBudget::new(MonotonicClock)
    }
}

impl RetryBudget {
    /// The default budget (ratio 0.2, 10 retries/s floor, 10 s window) on `clock`.
    pub fn new(clock: impl Clock) -> Self {
        RetryBudget::with_shared_clock(Arc::new(clock))
    }

    /// The default budget on a clock that is already shared.
    pub(crate) fn with_shared_clock(clock: Arc<dyn Clock>) -> Self {
        // The defaults are valid, so they skip validation.
        RetryBudgetBuilder::default().build_unchecked(clock)
    }

    /// A builder to choose the ratio, floor and window.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder::default()
    }

    /// Records one original call (not a retry). Call it once per logical call.
    ///
    /// Lock-free while the clock stays in the current bucket; the first deposit in a new
    /// bucket takes the lock to roll the window.
    pub fn deposit(&self) {
        let inner = &*self.inner;
        let now_index = self.index(inner.clock.now());
        if now_index == inner.current.load(Ordering::Acquire) {
            inner.deposits[slot(now_index)].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _window = self.lock_rolled_to(now_index);
        // `current` is only written under the lock, which this thread holds.
        let current = inner.current.load(Ordering::Relaxed);
        inner.deposits[slot(current)].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is spent.
    pub fn try_withdraw(&self) -> bool {
        let mut window = self.lock_rolled();
        if self.allowance(&window) == 0 {
            return false;
        }
        let current = self.inner.current.load(Ordering::Relaxed);
        window.withdrawals[slot(current)] += 1;
        true
    }

    /// How many retries could be withdrawn right now.
    pub fn remaining(&self) -> u64 {
        let window = self.lock_rolled();
        self.allowance(&window)
    }

    /// Retries per original call (the configured ratio).
    pub fn ratio(&self) -> f64 {
        self.inner.ratio
    }

    /// Retries per second allowed whatever the traffic.
    pub fn min_per_sec(&self) -> u32 {
        self.inner.min_per_sec
    }

    /// The sliding window over which deposits count.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The retries the floor alone allows over one window: `min_per_sec * ttl`. They are
    /// all available at once, so they can be spent in a burst.
    pub fn floor_per_window(&self) -> u64 {
        self.inner.floor_retries
    }

    fn lock_rolled(&self) -> MutexGuard<'_, Window> {
        self.lock_rolled_to(self.index(self.inner.clock.now()))
    }

    /// Locks the window and expires the buckets that fell out of it by `now_index`.
    fn lock_rolled_to(&self, now_index: u64) -> MutexGuard<'_, Window> {
        let inner = &*self.inner;
        let mut window = inner.window.lock();
        let current = inner.current.load(Ordering::Relaxed);
        if now_index > current {
            let steps = (now_index - current).min(BUCKETS as u64);
            for step in 1..=steps {
                let expired = slot(current + step);
                inner.deposits[expired].store(0, Ordering::Relaxed);
                window.withdrawals[expired] = 0;
            }
            // Release: a depositor that sees the new index also sees the cleared slots.
            inner.current.store(now_index, Ordering::Release);
        }
        window
    }

    fn index(&self, now: Nanos) -> u64 {
        now.as_u64() / self.inner.bucket_nanos
    }

    /// Whole retries available: `ratio * deposits + floor - withdrawals`, at least 0.
    fn allowance(&self, window: &Window) -> u64 {
        let deposits: u128 = self
            .inner
            .deposits
            .iter()
            .map(|d| u128::from(d.load(Ordering::Relaxed)))
            .sum();
        let withdrawals: u128 = window.withdrawals.iter().copied().map(u128::from).sum();
        let earned = self.inner.ratio_scaled * deposits / SCALE;
        let total = earned + u128::from(self.inner.floor_retries);
        let left = total.saturating_sub(withdrawals);
        u64::try_from(left).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn budget(clock: &ManualClock, ratio: f64, min_per_sec: u32) -> RetryBudget {
        match RetryBudget::builder()
            .ratio(ratio)
            .min_per_sec(min_per_sec)
            .ttl(Duration::from_secs(10))
            .build(clock.clone())
        {
            Ok(b) => b,
            Err(e) => unreachable!("valid budget rejected: {e}"),
        }
    }

    #[test]
    fn ratio_limits_withdrawals() {
        let clock = ManualClock::new();
        let b = budget(&clock, 0.2, 0);
        assert!(!b.try_withdraw(), "nothing deposited, no floor");
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 20);
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn floor_lets_quiet_clients_retry() {
        let clock = ManualClock::new();
        let b = budget(&clock, 0.2, 1);
        assert_eq!(b.floor_per_window(), 10);
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 10);
        // The floor is per window: withdrawals expire too.
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.remaining(), 10);
    }

    #[test]
    fn window_slides_bucket_by_bucket() {
        let clock = ManualClock::new();
        let b = budget(&clock, 1.0, 0);
        for _ in 0..5 {
            b.deposit();
        }
        clock.advance(Duration::from_secs(5));
        for _ in 0..3 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 8);
        clock.advance(Duration::from_secs(5)); // the first five expire
        assert_eq!(b.remaining(), 3);
        clock.advance(Duration::from_secs(5));
        assert_eq!(b.remaining(), 0);
        clock.advance(Duration::from_secs(3600)); // long idle: no stale state
        b.deposit();
        assert_eq!(b.remaining(), 1);
    }

    #[test]
    fn clones_share_one_account() {
        let clock = ManualClock::new();
        let a = budget(&clock, 0.5, 0);
        let b = a.clone();
        a.deposit();
        a.deposit();
        assert!(b.try_withdraw());
        assert!(!a.try_withdraw());
    }

    #[test]
    fn invalid_settings_are_typed() {
        for ratio in [-1.0, f64::NAN, 1e9] {
            let err = RetryBudget::builder()
                .ratio(ratio)
                .build(ManualClock::new());
            assert!(
                matches!(&err, Err(e @ BudgetError::InvalidRatio { .. }) if e.field() == "ratio"),
                "{ratio}: {err:?}"
            );
        }
        for ttl in [Duration::ZERO, Duration::from_secs(7200)] {
            let err = RetryBudget::builder().ttl(ttl).build(ManualClock::new());
            assert!(
                matches!(&err, Err(e @ BudgetError::InvalidTtl { .. }) if e.field() == "ttl"),
                "{ttl:?}: {err:?}"
            );
        }
        let ok = RetryBudget::new(ManualClock::new());
        assert_eq!(ok.ratio(), 0.2);
        assert_eq!(ok.min_per_sec(), 10);
        assert_eq!(ok.ttl(), Duration::from_secs(10));
        assert_eq!(ok.floor_per_window(), 100);
    }

    #[test]
    fn debug_prints_settings_without_rolling() {
        let clock = ManualClock::new();
        let b = budget(&clock, 1.0, 0);
        b.deposit();
        clock.advance(Duration::from_secs(20));
        let printed = format!("{b:?}");
        assert!(printed.contains("ratio: 1.0"), "{printed}");
        assert!(!printed.contains("remaining"), "{printed}");
        // Printing did not roll the window: a deposit still takes the roll path and the
        // old deposit has expired.
        assert_eq!(b.inner.current.load(Ordering::Relaxed), 0);
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.inner.current.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn concurrent_deposits_are_all_counted() {
        let clock = ManualClock::new();
        let b = budget(&clock, 1.0, 0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(b.remaining(), 4_000);
    }

    #[test]
    fn concurrent_deposits_across_rolls_stay_in_the_window() {
        // Time moves by a bucket while others deposit: every deposit lands in some live
        // bucket of the window (at most one bucket off), none is lost and none doubled.
        let clock = ManualClock::new();
        let b = budget(&clock, 1.0, 0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        b.deposit();
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..5 {
                    clock.advance(Duration::from_secs(1));
                    std::thread::yield_now();
                }
            });
        });
        assert_eq!(b.remaining(), 4_000);
        clock.advance(Duration::from_secs(11)); // everything expires
        assert_eq!(b.remaining(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Deposit,
        Withdraw,
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => Just(Op::Deposit),
            3 => Just(Op::Withdraw),
            1 => (0u64..3_000).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// The ring of buckets agrees with a plain list of timestamped events: a retry is
        /// granted exactly when the window still holds `ratio * deposits + floor` unspent.
        #[test]
        fn budget_matches_a_naive_model(
            ratio_tenths in 0u32..30,
            min_per_sec in 0u32..3,
            ops in proptest::collection::vec(op(), 0..300),
        ) {
            let clock = ManualClock::new();
            let ratio = f64::from(ratio_tenths) / 10.0;
            let b = budget(&clock, ratio, min_per_sec);
            let bucket_ms = 1_000u64; // ttl 10 s over 10 buckets
            let mut events: Vec<(u64, bool)> = Vec::new(); // (bucket, is_deposit)
            let mut now_ms = 0u64;
            for op in ops {
                match op {
                    Op::Advance(ms) => {
                        now_ms += ms;
                        clock.advance(Duration::from_millis(ms));
                    }
                    Op::Deposit => {
                        b.deposit();
                        events.push((now_ms / bucket_ms, true));
                    }
                    Op::Withdraw => {
                        let current = now_ms / bucket_ms;
                        let live = events.iter().filter(|(bucket, _)| bucket + 10 > current);
                        let (d, w) = live.fold((0u64, 0u64), |(d, w), (_, dep)| {
                            if *dep { (d + 1, w) } else { (d, w + 1) }
                        });
                        let allowed = u64::from(ratio_tenths) * d / 10 + 10 * u64::from(min_per_sec);
                        let expected = w < allowed;
                        proptest::prop_assert_eq!(b.try_withdraw(), expected, "d={} w={}", d, w);
                        if expected {
                            events.push((current, false));
                        }
                    }
                }
            }
        }
    }
}
