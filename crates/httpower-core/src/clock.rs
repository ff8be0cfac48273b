//! Time, injected.
//!
//! Every policy in this crate reads time through a [`Clock`] instead of calling
//! `Instant::now()` itself. That is what makes the policies testable: a test hands a
//! [`ManualClock`] to a limiter or a breaker and moves time forward with
//! [`ManualClock::advance`], so a one-minute window or a sixty-second open breaker is
//! crossed in a microsecond, deterministically, with no sleeping.
//!
//! Three clocks ship:
//!
//! * [`MonotonicClock`] — the process's monotonic clock (`std::time::Instant`). The default.
//! * [`TokioClock`] — `tokio::time::Instant`, so that under `#[tokio::test(start_paused = true)]`
//!   policies see tokio's paused, auto-advancing time. Use it when the code under test
//!   sleeps (retry backoff, waiting for a rate-limit slot).
//! * [`ManualClock`] — time that moves only when told to.
//!
//! Time is a [`Nanos`]: nanoseconds since the clock's own origin. It is monotonic and
//! only meaningful relative to other readings of the same clock.

use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;

/// A point in time: nanoseconds since the origin of the clock that produced it.
///
/// A `u64` of nanoseconds covers 584 years, so arithmetic saturates instead of wrapping.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

impl Nanos {
    /// The clock's origin.
    pub const ZERO: Nanos = Nanos(0);

    /// A reading of `nanos` nanoseconds after the origin.
    pub const fn new(nanos: u64) -> Self {
        Nanos(nanos)
    }

    /// A reading `duration` after the origin (saturating at `u64::MAX` nanoseconds).
    pub fn from_duration(duration: Duration) -> Self {
        Nanos(duration_to_nanos(duration))
    }

    /// Nanoseconds since the origin.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The time elapsed since the origin, as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// How long after `earlier` this reading is; zero if it is not later.
    pub const fn saturating_duration_since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// This reading moved back by `duration`, stopping at the origin.
    pub fn saturating_sub(self, duration: Duration) -> Nanos {
        Nanos(self.0.saturating_sub(duration_to_nanos(duration)))
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_duration())
    }
}

impl Add<Duration> for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Duration) -> Nanos {
        Nanos(self.0.saturating_add(duration_to_nanos(rhs)))
    }
}

impl AddAssign<Duration> for Nanos {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

/// A `Duration` as whole nanoseconds, saturating at `u64::MAX`.
pub(crate) fn duration_to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A boxed future that completes at a deadline; returned by [`Clock::sleep_until`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of monotonic time, and a way to wait for it.
///
/// Policies take a clock by injection (`with_clock`); the clock is shared, so
/// implementations are cheap to clone (usually an `Arc` inside).
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Nanos;

    /// A future that completes once [`now`](Clock::now) has reached `deadline`.
    ///
    /// Only the slow paths use it (backoff between retries, waiting for a rate-limit
    /// slot), so the allocation it costs does not matter.
    fn sleep_until(&self, deadline: Nanos) -> Sleep;

    /// A future that completes after `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleep_until(self.now() + duration)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Nanos {
        (**self).now()
    }
    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        (**self).sleep_until(deadline)
    }
}

/// The process-wide counter and its reading at the clock's origin.
struct Reference {
    counter: quanta::Clock,
    origin: u64,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let counter = quanta::Clock::new();
        let origin = counter.raw();
        Reference { counter, origin }
    })
}

/// A wait long enough to mean "never" that every platform's `Instant` can still add.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The process's monotonic clock. Sleeps with tokio's timer.
///
/// Read through `quanta`, which uses the CPU's invariant time-stamp counter where the
/// processor has a reliable one and the operating system's monotonic clock otherwise.
/// Every rate-limit decision reads the clock, and on virtual machines the system call
/// path costs about as much as the whole rest of a keyed GCRA check; the counter does
/// not.
/// The first reading in a process calibrates the counter (up to a few hundred
/// milliseconds, once).
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Nanos {
        // A raw counter reading scaled once: no Instant, no Duration on the hot path.
        let reference = reference();
        Nanos(
            reference
                .counter
                .delta_as_nanos(reference.origin, reference.counter.raw()),
        )
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        let wait = deadline.saturating_duration_since(self.now());
        Box::pin(tokio::time::sleep(wait))
    }
}

/// tokio's clock (`tokio::time::Instant`): follows paused and advanced time in tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now. Under paused time, build it inside the runtime.
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Nanos {
        Nanos(duration_to_nanos(self.origin.elapsed()))
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        // A deadline beyond what the platform's Instant can hold is "never": about 30
        // years out is as good as forever for a timer.
        let at = self
            .origin
            .checked_add(deadline.as_duration())
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR_FUTURE);
        Box::pin(tokio::time::sleep_until(at))
    }
}

/// A clock that moves only when a test tells it to.
///
/// Clones share the same time. [`sleep_until`](Clock::sleep_until) returns a future
/// that completes when [`advance`](ManualClock::advance) or [`set`](ManualClock::set)
/// moves the time to or past its deadline.
///
/// ```
/// use std::time::Duration;
/// use httpower_core::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(clock.now().saturating_duration_since(start), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    now: AtomicU64,
    sleepers: Mutex<Vec<Sleeper>>,
    next_sleeper: AtomicU64,
}

/// One pending [`ManualSleep`]: its id (so a re-poll replaces its waker and a drop
/// removes it), its deadline and the waker to call.
#[derive(Debug)]
struct Sleeper {
    id: u64,
    deadline: u64,
    waker: Waker,
}

impl ManualClock {
    /// A clock at its origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock starting at `start`.
    pub fn starting_at(start: Nanos) -> Self {
        let clock = Self::default();
        clock.inner.now.store(start.0, Ordering::SeqCst);
        clock
    }

    /// Moves time forward by `duration` and wakes the sleepers that became due.
    pub fn advance(&self, duration: Duration) {
        let step = duration_to_nanos(duration);
        let mut current = self.inner.now.load(Ordering::SeqCst);
        // Saturate instead of wrapping near the end of time.
        let now = loop {
            let next = current.saturating_add(step);
            match self.inner.now.compare_exchange_weak(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break next,
                Err(seen) => current = seen,
            }
        };
        self.wake_due(now);
    }

    /// Sets the time to `to`. Time never moves backwards: an earlier value is ignored.
    pub fn set(&self, to: Nanos) {
        let now = self.inner.now.fetch_max(to.0, Ordering::SeqCst).max(to.0);
        self.wake_due(now);
    }

    fn wake_due(&self, now: u64) {
        let due: Vec<Waker> = {
            let mut sleepers = self.inner.sleepers.lock();
            let mut due = Vec::new();
            sleepers.retain(|sleeper| {
                if sleeper.deadline <= now {
                    due.push(sleeper.waker.clone());
                    false
                } else {
                    true
                }
            });
            due
        };
        due.into_iter().for_each(Waker::wake);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Nanos {
        Nanos(self.inner.now.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, deadline: Nanos) -> Sleep {
        Box::pin(ManualSleep {
            id: self.inner.next_sleeper.fetch_add(1, Ordering::Relaxed),
            inner: Arc::clone(&self.inner),
            deadline: deadline.0,
        })
    }
}

struct ManualSleep {
    id: u64,
    inner: Arc<ManualInner>,
    deadline: u64,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.now.load(Ordering::SeqCst) >= self.deadline {
            return Poll::Ready(());
        }
        let mut sleepers = self.inner.sleepers.lock();
        // Check again under the lock: `advance` may have run since the first load.
        if self.inner.now.load(Ordering::SeqCst) >= self.deadline {
            return Poll::Ready(());
        }
        match sleepers.iter_mut().find(|s| s.id == self.id) {
            Some(sleeper) => sleeper.waker.clone_from(cx.waker()),
            None => sleepers.push(Sleeper {
                id: self.id,
                deadline: self.deadline,
                waker: cx.waker().clone(),
            }),
        }
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        // A sleep dropped before its deadline (a timeout that did not fire) leaves
        // nothing behind.
        self.inner.sleepers.lock().retain(|s| s.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        assert_eq!(clock.now(), Nanos::ZERO);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), Nanos::new(1_500_000_000));
        clock.set(Nanos::new(10));
        assert_eq!(
            clock.now(),
            Nanos::new(1_500_000_000),
            "time never goes back"
        );
    }

    #[tokio::test]
    async fn manual_sleep_completes_on_advance() {
        let clock = ManualClock::new();
        let sleeper = clock.clone();
        let task = tokio::spawn(async move { sleeper.sleep(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        clock.advance(Duration::from_secs(1));
        assert!(task.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let before = clock.now();
        clock.sleep(Duration::from_secs(30)).await;
        assert_eq!(
            clock.now().saturating_duration_since(before),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn manual_sleepers_are_replaced_on_repoll_and_removed_on_drop() {
        let clock = ManualClock::new();
        let mut sleep = clock.sleep(Duration::from_secs(1));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..100 {
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(clock.inner.sleepers.lock().len(), 1, "one entry per sleep");
        drop(sleep);
        assert!(
            clock.inner.sleepers.lock().is_empty(),
            "a dropped sleep leaves nothing"
        );
    }

    #[test]
    fn manual_advance_saturates_at_the_end_of_time() {
        let clock = ManualClock::starting_at(Nanos::new(u64::MAX - 5));
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), Nanos::new(u64::MAX));
    }

    #[test]
    fn monotonic_clock_never_goes_back_and_moves() {
        let clock = MonotonicClock;
        let first = clock.now();
        let mut last = first;
        for _ in 0..100_000 {
            let now = clock.now();
            assert!(now >= last, "{now:?} after {last:?}");
            last = now;
        }
        assert!(last > first, "100,000 readings took no time at all");
    }

    #[test]
    fn nanos_saturates() {
        let far = Nanos::new(u64::MAX - 1) + Duration::from_secs(1);
        assert_eq!(far.as_u64(), u64::MAX);
        assert_eq!(
            Nanos::ZERO.saturating_sub(Duration::from_secs(1)),
            Nanos::ZERO
        );
    }
}
