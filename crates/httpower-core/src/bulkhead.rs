//! Capping how many operations run at once.
//!
//! A slow dependency does not fail fast: it holds every request sent to it. Without a cap,
//! the calls waiting on it pile up until they exhaust what the whole process shares
//! (connections, memory, tasks), and one slow dependency takes down the calls to all the
//! others. A bulkhead, named after the watertight walls of a ship's hull, gives each
//! dependency a fixed number of slots: when they are all taken, further calls wait a
//! bounded time (`max_wait`) for one to free up and are then rejected with
//! [`BulkheadFull`], which the caller can shed, queue elsewhere or report.
//!
//! A slot is an RAII [`BulkheadPermit`]: it is returned when the permit is dropped, on
//! every path (success, error, panic unwinding, cancellation), so slots cannot leak.
//! Clones of a [`Bulkhead`] share the same slots. Waiting uses the injected
//! [`Clock`], so tests with paused or manual time never sleep for real.
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::bulkhead::Bulkhead;
//! use httpower_core::clock::TokioClock;
//!
//! # tokio::runtime::Builder::new_current_thread()
//! #     .enable_time().start_paused(true).build().unwrap().block_on(async {
//! let bulkhead = Bulkhead::with_clock(2, Duration::from_millis(50), TokioClock::new())?;
//! let a = bulkhead.acquire().await?;
//! let _b = bulkhead.acquire().await?;
//! assert_eq!(bulkhead.in_flight(), 2);
//!
//! // Full: the third caller waits 50 ms for a slot, then gives up.
//! let full = bulkhead.acquire().await.unwrap_err();
//! assert_eq!(full.waited, Duration::from_millis(50));
//!
//! drop(a); // releasing a permit frees its slot
//! assert!(bulkhead.acquire().await.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::{Clock, MonotonicClock};

/// An invalid [`Bulkhead`] setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BulkheadError {
    /// `max_concurrent` was zero: no call could ever run.
    #[error("max_concurrent must be at least 1")]
    ZeroMaxConcurrent,
    /// `max_concurrent` was above what the underlying semaphore supports.
    #[error("max_concurrent must be at most {limit}, found {found}")]
    TooManyConcurrent {
        /// The largest supported value.
        limit: usize,
        /// The configured value.
        found: usize,
    },
}

impl BulkheadError {
    /// The name of the offending setting: `max_concurrent`.
    pub fn field(&self) -> &'static str {
        "max_concurrent"
    }
}

/// Every slot stayed taken for the whole `max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead full: all {max_concurrent} slots busy, waited {waited:?}")]
pub struct BulkheadFull {
    /// The bulkhead's capacity.
    pub max_concurrent: usize,
    /// How long the caller waited before giving up.
    pub waited: Duration,
}

/// A cap on concurrent operations with a bounded wait for a slot. Clones share slots.
#[derive(Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

struct Inner {
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    max_wait: Duration,
    clock: Box<dyn Clock>,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("max_wait", &self.inner.max_wait)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// A slot in a [`Bulkhead`], given back when dropped.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
}

impl fmt::Debug for BulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit").finish_non_exhaustive()
    }
}

impl Bulkhead {
    /// A bulkhead of `max_concurrent` slots waiting up to `max_wait` (zero: fail at once)
    /// on the process's monotonic clock.
    pub fn new(max_concurrent: usize, max_wait: Duration) -> Result<Self, BulkheadError> {
        Bulkhead::with_clock(max_concurrent, max_wait, MonotonicClock)
    }

    /// A bulkhead that measures its waits on `clock`.
    pub fn with_clock(
        max_concurrent: usize,
        max_wait: Duration,
        clock: impl Clock,
    ) -> Result<Self, BulkheadError> {
        if max_concurrent == 0 {
            return Err(BulkheadError::ZeroMaxConcurrent);
        }
        if max_concurrent > Semaphore::MAX_PERMITS {
            return Err(BulkheadError::TooManyConcurrent {
                limit: Semaphore::MAX_PERMITS,
                found: max_concurrent,
            });
        }
        Ok(Bulkhead {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                max_wait,
                clock: Box::new(clock),
            }),
        })
    }

    /// The number of slots.
    pub fn max_concurrent(&self) -> usize {
        self.inner.max_concurrent
    }

    /// How long [`acquire`](Bulkhead::acquire) waits for a slot.
    pub fn max_wait(&self) -> Duration {
        self.inner.max_wait
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.inner.semaphore.available_permits()
    }

    /// Slots taken right now.
    pub fn in_flight(&self) -> usize {
        self.inner.max_concurrent.saturating_sub(self.available())
    }

    /// A slot if one is free right now, without waiting.
    pub fn try_acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        Arc::clone(&self.inner.semaphore)
            .try_acquire_owned()
            .map(|permit| BulkheadPermit { _permit: permit })
            // `NoPermits`; `Closed` cannot happen (see `acquire`).
            .map_err(|_| self.full(Duration::ZERO))
    }

    /// A slot, waiting up to `max_wait` for one. Waiters are served in arrival order.
    pub async fn acquire(&self) -> Result<BulkheadPermit, BulkheadFull> {
        if let Ok(permit) = self.try_acquire() {
            return Ok(permit);
        }
        if self.inner.max_wait.is_zero() {
            return Err(self.full(Duration::ZERO));
        }
        let clock = &self.inner.clock;
        let start = clock.now();
        let mut deadline = clock.sleep_until(start + self.inner.max_wait);
        let mut slot = pin!(Arc::clone(&self.inner.semaphore).acquire_owned());
        let acquired = poll_fn(|cx| {
            // The slot first: if both are ready, the caller gets to run.
            if let Poll::Ready(result) = slot.as_mut().poll(cx) {
                // `acquire_owned` fails only on a closed semaphore. This one is private
                // to the bulkhead and nothing ever closes it, so `result` is always `Ok`.
                // Were it closed, no slot could ever be had: reporting the bulkhead as
                // full is then accurate, and needs no panic.
                return Poll::Ready(result.ok());
            }
            deadline.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match acquired {
            Some(permit) => Ok(BulkheadPermit { _permit: permit }),
            None => Err(self.full(clock.now().saturating_duration_since(start))),
        }
    }

    fn full(&self, waited: Duration) -> BulkheadFull {
        BulkheadFull {
            max_concurrent: self.inner.max_concurrent,
            waited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, TokioClock};

    const MS: Duration = Duration::from_millis(1);

    fn bulkhead(n: usize, wait: Duration) -> Bulkhead {
        match Bulkhead::with_clock(n, wait, TokioClock::new()) {
            Ok(b) => b,
            Err(e) => unreachable!("valid bulkhead rejected: {e}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn caps_concurrency_and_releases_on_drop() {
        let b = bulkhead(2, Duration::ZERO);
        assert_eq!((b.available(), b.in_flight()), (2, 0));
        let p1 = b.acquire().await;
        let p2 = b.acquire().await;
        assert!(p1.is_ok() && p2.is_ok());
        assert_eq!((b.available(), b.in_flight()), (0, 2));
        assert_eq!(
            b.acquire().await.map(|_| ()),
            Err(BulkheadFull {
                max_concurrent: 2,
                waited: Duration::ZERO
            })
        );
        drop(p1);
        assert_eq!(b.in_flight(), 1);
        assert!(b.try_acquire().is_ok(), "a released slot is reusable");
        drop(p2);
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_at_most_max_wait() {
        let b = bulkhead(1, 100 * MS);
        let clock = TokioClock::new();
        let _held = b.acquire().await;
        let result = b.acquire().await;
        assert_eq!(
            result.map(|_| ()),
            Err(BulkheadFull {
                max_concurrent: 1,
                waited: 100 * MS
            })
        );
        assert_eq!(
            clock
                .now()
                .saturating_duration_since(crate::clock::Nanos::ZERO),
            100 * MS
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_slot_freed_within_max_wait() {
        let b = bulkhead(1, 100 * MS);
        let clock = TokioClock::new();
        let held = b.acquire().await;
        let releaser = tokio::spawn(async move {
            clock.sleep(40 * MS).await;
            drop(held);
        });
        let permit = b.acquire().await;
        assert!(
            permit.is_ok(),
            "slot freed after 40 ms, waited for up to 100 ms"
        );
        assert_eq!(clock.now().as_duration(), 40 * MS);
        assert!(releaser.await.is_ok());
        assert_eq!(b.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_slots_and_cancelled_waits_leak_nothing() {
        let b = bulkhead(3, 10 * MS);
        let clone = b.clone();
        let mut permits: Vec<_> = (0..3).map(|_| clone.try_acquire()).collect();
        assert!(permits.iter().all(Result::is_ok));
        assert!(b.try_acquire().is_err());
        // A waiter dropped before it gets a slot leaves no trace.
        {
            let waiting = b.acquire();
            let mut waiting = pin!(waiting);
            let polled = poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx).is_pending())).await;
            assert!(polled);
        }
        assert_eq!(b.available(), 0);
        // A queued waiter that is handed a released slot, then dropped before it is
        // polled again to take it, gives the slot back.
        {
            let waiting = b.acquire();
            let mut waiting = pin!(waiting);
            let polled = poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx).is_pending())).await;
            assert!(polled, "queued");
            drop(permits.pop());
            assert_eq!(
                b.available(),
                0,
                "the released slot went to the queued waiter"
            );
        }
        assert_eq!(b.available(), 1, "the dropped waiter returned the slot");
        drop(permits);
        assert_eq!((b.available(), clone.in_flight()), (3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_concurrent_under_load() {
        let b = bulkhead(4, Duration::from_secs(60));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clock = TokioClock::new();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (b, peak) = (b.clone(), Arc::clone(&peak));
                tokio::spawn(async move {
                    let _permit = b.acquire().await?;
                    peak.fetch_max(b.in_flight(), std::sync::atomic::Ordering::SeqCst);
                    clock.sleep(MS * (1 + i % 7)).await;
                    Ok::<(), BulkheadFull>(())
                })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await, Ok(Ok(()))));
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test]
    async fn manual_clock_times_the_wait() {
        let clock = ManualClock::new();
        let b = match Bulkhead::with_clock(1, Duration::from_secs(5), clock.clone()) {
            Ok(b) => b,
            Err(e) => unreachable!("{e}"),
        };
        let _held = b.try_acquire();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire().await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(5));
        let result = waiter.await;
        assert_eq!(
            result.ok(),
            Some(Err(BulkheadFull {
                max_concurrent: 1,
                waited: Duration::from_secs(5)
            }))
        );
    }

    #[test]
    fn invalid_capacity_is_typed() {
        let zero = Bulkhead::new(0, Duration::ZERO).map(|_| ());
        assert_eq!(zero, Err(BulkheadError::ZeroMaxConcurrent));
        let huge = Bulkhead::new(usize::MAX, Duration::ZERO).map(|_| ());
        assert!(matches!(
            huge,
            Err(BulkheadError::TooManyConcurrent {
                found: usize::MAX,
                ..
            })
        ));
        assert_eq!(BulkheadError::ZeroMaxConcurrent.field(), "max_concurrent");
    }
}
