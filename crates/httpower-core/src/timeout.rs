//! Bounding how long an operation may take.
//!
//! A call that never answers is worse than one that fails: it holds a connection, a
//! bulkhead slot and the caller's task, and the caller cannot even retry. A timeout turns
//! "no answer" into an error the caller can act on.
//!
//! Two phases are distinguished because they answer different questions. The
//! [`Attempt`](TimeoutPhase::Attempt) timeout bounds one try, so that a stuck attempt is
//! abandoned and the retry policy gets a chance. The [`Total`](TimeoutPhase::Total)
//! timeout bounds the whole call, retries and their waits included, which is the number
//! the caller actually cares about. The error says which one fired.
//!
//! Time comes from an injected [`Clock`]: under a [`ManualClock`](crate::clock::ManualClock)
//! or tokio's paused time, tests cross a thirty-second timeout without waiting. The inner
//! future is polled before the timer, so an operation that completes in the same poll as
//! the deadline still counts as done, and a zero timeout still gives an already-ready
//! future its result.
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::clock::{Clock, TokioClock};
//! use httpower_core::timeout::{timeout, Elapsed, TimeoutPhase};
//!
//! # tokio::runtime::Builder::new_current_thread()
//! #     .enable_time().start_paused(true).build().unwrap().block_on(async {
//! let clock = TokioClock::new();
//! let quick = timeout(&clock, TimeoutPhase::Attempt, Duration::from_secs(1), async { 42 });
//! assert_eq!(quick.await, Ok(42));
//!
//! let stuck = std::future::pending::<()>();
//! let err = timeout(&clock, TimeoutPhase::Total, Duration::from_secs(30), stuck).await;
//! assert_eq!(
//!     err,
//!     Err(Elapsed { phase: TimeoutPhase::Total, after: Duration::from_secs(30) })
//! );
//! assert_eq!(err.unwrap_err().to_string(), "total timeout elapsed after 30s");
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::{Clock, Nanos, Sleep};

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutPhase {
    /// The timeout of a single attempt.
    Attempt,
    /// The timeout of the whole call, retries and waits included.
    Total,
}

impl TimeoutPhase {
    /// `"attempt"` or `"total"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TimeoutPhase::Attempt => "attempt",
            TimeoutPhase::Total => "total",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{phase} timeout elapsed after {after:?}")]
pub struct Elapsed {
    /// Which timeout fired.
    pub phase: TimeoutPhase,
    /// The time the operation was given.
    pub after: Duration,
}

pin_project_lite::pin_project! {
    /// The future returned by [`timeout`], [`timeout_at`] and [`timeout_at_after`].
    ///
    /// It holds the deadline, not a timer: the timer is created (and the clock's sleep
    /// allocated) only the first time the inner future returns `Pending`, so an operation
    /// that is ready at once costs no timer at all.
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<'c, C: ?Sized, F> {
        #[pin]
        future: F,
        clock: &'c C,
        deadline: Nanos,
        sleep: Option<Sleep>,
        elapsed: Elapsed,
    }
}

impl<C: ?Sized, F> fmt::Debug for Timeout<'_, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("phase", &self.elapsed.phase)
            .field("after", &self.elapsed.after)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<C: ?Sized, F> Timeout<'_, C, F> {
    /// Which timeout this is.
    pub fn phase(&self) -> TimeoutPhase {
        self.elapsed.phase
    }

    /// The clock reading at which the timeout fires.
    pub fn deadline(&self) -> Nanos {
        self.deadline
    }

    /// Consumes the timeout, returning the inner future.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<C, F> Future for Timeout<'_, C, F>
where
    C: Clock + ?Sized,
    F: Future,
{
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let clock = *this.clock;
        let deadline = *this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| clock.sleep_until(deadline));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(*this.elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs `future` for at most `duration` of `clock` time, starting now.
///
/// Reads the clock once, for the deadline.
pub fn timeout<C, F>(
    clock: &C,
    phase: TimeoutPhase,
    duration: Duration,
    future: F,
) -> Timeout<'_, C, F>
where
    C: Clock + ?Sized,
    F: Future,
{
    let deadline = clock.now() + duration;
    timeout_at_after(clock, phase, deadline, duration, future)
}

/// Runs `future` until `deadline` (a reading of `clock`) at the latest.
///
/// The error's `after` is the time that was left when the timeout was set up, which
/// costs one clock read; a caller that already knows it should use
/// [`timeout_at_after`].
pub fn timeout_at<C, F>(
    clock: &C,
    phase: TimeoutPhase,
    deadline: Nanos,
    future: F,
) -> Timeout<'_, C, F>
where
    C: Clock + ?Sized,
    F: Future,
{
    let after = deadline.saturating_duration_since(clock.now());
    timeout_at_after(clock, phase, deadline, after, future)
}

/// Runs `future` until `deadline` (a reading of `clock`) at the latest, reporting
/// `after` as the time it was given.
///
/// Does not read the clock: use it when the caller has just computed `deadline` from a
/// duration (`after` is then that duration, or the time left before an outer deadline
/// when that one is earlier). The clock's sleep is created only if `future` returns
/// `Pending`.
pub fn timeout_at_after<C, F>(
    clock: &C,
    phase: TimeoutPhase,
    deadline: Nanos,
    after: Duration,
    future: F,
) -> Timeout<'_, C, F>
where
    C: Clock + ?Sized,
    F: Future,
{
    Timeout {
        future,
        clock,
        deadline,
        sleep: None,
        elapsed: Elapsed { phase, after },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, TokioClock};

    #[tokio::test(start_paused = true)]
    async fn completes_before_the_timeout() {
        let clock = TokioClock::new();
        let work = async {
            clock.sleep(Duration::from_secs(2)).await;
            "done"
        };
        let result = timeout(&clock, TimeoutPhase::Attempt, Duration::from_secs(3), work).await;
        assert_eq!(result, Ok("done"));
        assert_eq!(clock.now(), Nanos::from_duration(Duration::from_secs(2)));
    }

    #[tokio::test(start_paused = true)]
    async fn elapses_with_phase_and_duration() {
        let clock = TokioClock::new();
        let work = clock.sleep(Duration::from_secs(10));
        let result = timeout(&clock, TimeoutPhase::Attempt, Duration::from_secs(3), work).await;
        assert_eq!(
            result,
            Err(Elapsed {
                phase: TimeoutPhase::Attempt,
                after: Duration::from_secs(3)
            })
        );
        assert_eq!(clock.now(), Nanos::from_duration(Duration::from_secs(3)));
        assert_eq!(TimeoutPhase::Attempt.to_string(), "attempt");
        assert_eq!(TimeoutPhase::Total.to_string(), "total");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_timeout_still_returns_a_ready_result() {
        let clock = TokioClock::new();
        let ready = timeout(&clock, TimeoutPhase::Attempt, Duration::ZERO, async { 1 }).await;
        assert_eq!(ready, Ok(1));
        let pending = std::future::pending::<u8>();
        let late = timeout(&clock, TimeoutPhase::Attempt, Duration::ZERO, pending).await;
        assert_eq!(late.map_err(|e| e.after), Err(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_variant_reports_time_left() {
        let clock = TokioClock::new();
        clock.sleep(Duration::from_secs(1)).await;
        let deadline = Nanos::from_duration(Duration::from_secs(5));
        let pending = std::future::pending::<()>();
        let result = timeout_at(&clock, TimeoutPhase::Total, deadline, pending).await;
        assert_eq!(
            result,
            Err(Elapsed {
                phase: TimeoutPhase::Total,
                after: Duration::from_secs(4)
            })
        );
        assert_eq!(clock.now(), deadline);
        // A deadline already passed fires at once, with zero time given.
        let late = timeout_at(
            &clock,
            TimeoutPhase::Total,
            Nanos::ZERO,
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(late.map_err(|e| e.after), Err(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_timeouts_do_not_overflow() {
        let clock = TokioClock::new();
        let result = timeout(&clock, TimeoutPhase::Total, Duration::MAX, async { 5 }).await;
        assert_eq!(result, Ok(5));
        let far = timeout_at(&clock, TimeoutPhase::Total, Nanos::new(u64::MAX), async {
            6
        })
        .await;
        assert_eq!(far, Ok(6));
        // A pending future makes the timer be created and polled: the far deadline must
        // neither overflow nor fire early, even after a year of (paused) time.
        let year = Duration::from_secs(365 * 24 * 3600);
        let mut never = std::pin::pin!(timeout(
            &clock,
            TimeoutPhase::Total,
            Duration::MAX,
            std::future::pending::<()>()
        ));
        let mut never_at = std::pin::pin!(timeout_at(
            &clock,
            TimeoutPhase::Total,
            Nanos::new(u64::MAX),
            std::future::pending::<()>()
        ));
        assert!(poll_once(never.as_mut()).is_pending());
        assert!(poll_once(never_at.as_mut()).is_pending());
        tokio::time::advance(year).await;
        assert!(clock.now().as_duration() >= year);
        assert!(poll_once(never.as_mut()).is_pending());
        assert!(poll_once(never_at.as_mut()).is_pending());
    }

    /// A manual clock that counts how often it is read and asked for a sleep.
    #[derive(Debug, Default)]
    struct CountingClock {
        inner: ManualClock,
        reads: std::sync::atomic::AtomicUsize,
        sleeps: std::sync::atomic::AtomicUsize,
    }

    impl Clock for CountingClock {
        fn now(&self) -> Nanos {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.now()
        }
        fn sleep_until(&self, deadline: Nanos) -> Sleep {
            self.sleeps
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.sleep_until(deadline)
        }
    }

    impl CountingClock {
        fn counts(&self) -> (usize, usize) {
            use std::sync::atomic::Ordering::SeqCst;
            (self.reads.load(SeqCst), self.sleeps.load(SeqCst))
        }
    }

    #[tokio::test]
    async fn ready_futures_cost_no_timer() {
        let clock = CountingClock::default();
        let deadline = Nanos::from_duration(Duration::from_secs(5));
        let after = Duration::from_secs(5);
        let ready = timeout_at_after(&clock, TimeoutPhase::Attempt, deadline, after, async { 1 });
        assert_eq!(ready.deadline(), deadline);
        assert_eq!(ready.await, Ok(1));
        assert_eq!(clock.counts(), (0, 0), "no clock read, no sleep");

        let ready = timeout(&clock, TimeoutPhase::Attempt, after, async { 2 }).await;
        assert_eq!(ready, Ok(2));
        assert_eq!(
            clock.counts(),
            (1, 0),
            "one read for the deadline, no sleep"
        );

        let ready = timeout_at(&clock, TimeoutPhase::Total, deadline, async { 3 }).await;
        assert_eq!(ready, Ok(3));
        assert_eq!(clock.counts(), (2, 0), "one read for `after`, no sleep");
    }

    #[tokio::test]
    async fn the_timer_is_created_once_on_the_first_pending() {
        let clock = CountingClock::default();
        let deadline = Nanos::from_duration(Duration::from_secs(5));
        let after = Duration::from_secs(3);
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let mut fut = std::pin::pin!(timeout_at_after(
            &clock,
            TimeoutPhase::Total,
            deadline,
            after,
            rx
        ));
        for _ in 0..3 {
            assert!(poll_once(fut.as_mut()).is_pending());
        }
        assert_eq!(clock.counts().1, 1, "one sleep for all the polls");
        clock.inner.advance(Duration::from_secs(5));
        let fired = poll_once(fut.as_mut());
        assert_eq!(
            fired,
            Poll::Ready(Err(Elapsed {
                phase: TimeoutPhase::Total,
                after
            }))
        );
        assert_eq!(clock.counts().1, 1);
        drop(tx);
    }

    fn poll_once<Fut: Future>(fut: Pin<&mut Fut>) -> Poll<Fut::Output> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        fut.poll(&mut cx)
    }

    #[tokio::test]
    async fn manual_clock_drives_the_timeout() {
        let clock = ManualClock::new();
        let task = {
            let clock = clock.clone();
            tokio::spawn(async move {
                let pending = std::future::pending::<()>();
                timeout(
                    &clock,
                    TimeoutPhase::Attempt,
                    Duration::from_secs(30),
                    pending,
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(29));
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "fired before its deadline");
        clock.advance(Duration::from_secs(1));
        let result = task.await;
        assert!(
            matches!(result, Ok(Err(Elapsed { phase: TimeoutPhase::Attempt, after })) if after == Duration::from_secs(30)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn manual_clock_lets_work_finish_first() {
        // A tie: the clock reaches the deadline and the work completes before the task
        // runs again. The inner future is polled first, so the work wins.
        let clock = ManualClock::new();
        let deadline = Nanos::from_duration(Duration::from_secs(5));
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let task = {
            let clock = clock.clone();
            tokio::spawn(async move { timeout_at(&clock, TimeoutPhase::Total, deadline, rx).await })
        };
        tokio::task::yield_now().await; // the task polls once and arms its timer
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!task.is_finished(), "fired before its deadline");
        clock.advance(Duration::from_secs(1)); // exactly the deadline: the timer is due
        assert_eq!(clock.now(), deadline);
        assert!(tx.send(9).is_ok());
        let result = task.await;
        assert!(matches!(result, Ok(Ok(Ok(9)))), "{result:?}");
    }
}
