//! The sliding windows the trip rules look at.
//!
//! Both windows keep running totals so that recording a call and reading the totals are
//! O(1); the time window pays O(buckets) only when a stretch of idle buckets expires.

use crate::clock::Nanos;

use super::config::Window;

/// Totals over the current window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Totals {
    fn add(&mut self, failure: bool, slow: bool) {
        self.calls = self.calls.saturating_add(1);
        self.failures = self.failures.saturating_add(u32::from(failure));
        self.slow = self.slow.saturating_add(u32::from(slow));
    }

    fn sub(&mut self, other: Totals) {
        self.calls = self.calls.saturating_sub(other.calls);
        self.failures = self.failures.saturating_sub(other.failures);
        self.slow = self.slow.saturating_sub(other.slow);
    }
}

const FAILURE: u8 = 1;
const SLOW: u8 = 2;

/// The last `n` calls, in a ring.
#[derive(Debug)]
struct CountWindow {
    ring: Box<[u8]>,
    next: usize,
    totals: Totals,
}

impl CountWindow {
    fn record(&mut self, failure: bool, slow: bool) {
        let len = self.ring.len();
        let Some(slot) = self.ring.get_mut(self.next) else {
            return;
        };
        if self.totals.calls as usize >= len {
            let old = *slot;
            self.totals.sub(Totals {
                calls: 1,
                failures: u32::from(old & FAILURE != 0),
                slow: u32::from(old & SLOW != 0),
            });
        }
        *slot = (u8::from(failure) * FAILURE) | (u8::from(slow) * SLOW);
        self.totals.add(failure, slow);
        self.next = if self.next + 1 == len {
            0
        } else {
            self.next + 1
        };
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    totals: Totals,
}

/// The calls of the last `buckets * width` nanoseconds, in `buckets` slices.
#[derive(Debug)]
struct TimeWindow {
    width: u64,
    buckets: Box<[Bucket]>,
    /// Index (time / width) of the newest bucket.
    latest: u64,
    totals: Totals,
}

impl TimeWindow {
    /// Expires the buckets that fell out of the window by `now`.
    fn advance(&mut self, now: Nanos) {
        let index = now.as_u64() / self.width;
        if index <= self.latest {
            return;
        }
        let n = self.buckets.len() as u64;
        let stale = (index - self.latest).min(n);
        for step in 1..=stale {
            let slot = ((self.latest + step) % n) as usize;
            if let Some(bucket) = self.buckets.get_mut(slot) {
                self.totals.sub(bucket.totals);
                *bucket = Bucket::default();
            }
        }
        self.latest = index;
    }

    fn record(&mut self, now: Nanos, failure: bool, slow: bool) {
        self.advance(now);
        // A call whose clock reading lost the race for the lock to a later one lands in
        // the newest bucket: it finished "now" as far as the window is concerned.
        let slot = (self.latest % self.buckets.len() as u64) as usize;
        if let Some(bucket) = self.buckets.get_mut(slot) {
            bucket.totals.add(failure, slow);
            self.totals.add(failure, slow);
        }
    }
}

#[derive(Debug)]
enum Kind {
    Count(CountWindow),
    Time(TimeWindow),
}

/// A window of recorded outcomes, count- or time-based.
#[derive(Debug)]
pub(crate) struct OutcomeWindow {
    kind: Kind,
}

impl OutcomeWindow {
    /// An empty window. `window` must have been validated by the config builder.
    pub(crate) fn new(window: Window) -> Self {
        let kind = match window {
            Window::Count(n) => Kind::Count(CountWindow {
                ring: vec![0; n.max(1) as usize].into_boxed_slice(),
                next: 0,
                totals: Totals::default(),
            }),
            Window::Time { duration, buckets } => {
                let buckets = buckets.max(1);
                let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
                Kind::Time(TimeWindow {
                    width: (nanos / u64::from(buckets)).max(1),
                    buckets: vec![Bucket::default(); buckets as usize].into_boxed_slice(),
                    latest: 0,
                    totals: Totals::default(),
                })
            }
        };
        OutcomeWindow { kind }
    }

    /// Adds one call that finished at `now`.
    pub(crate) fn record(&mut self, now: Nanos, failure: bool, slow: bool) {
        match &mut self.kind {
            Kind::Count(w) => w.record(failure, slow),
            Kind::Time(w) => w.record(now, failure, slow),
        }
    }

    /// The totals as of `now`.
    pub(crate) fn totals(&mut self, now: Nanos) -> Totals {
        match &mut self.kind {
            Kind::Count(w) => w.totals,
            Kind::Time(w) => {
                w.advance(now);
                w.totals
            }
        }
    }

    /// Forgets every call.
    pub(crate) fn clear(&mut self) {
        match &mut self.kind {
            Kind::Count(w) => {
                w.ring.fill(0);
                w.next = 0;
                w.totals = Totals::default();
            }
            Kind::Time(w) => {
                w.buckets.fill(Bucket::default());
                w.totals = Totals::default();
            }
        }
    }

    /// True when recording one more plain success cannot change anything: a full count
    /// window holding only fast successes. The lock-free fast path relies on it.
    pub(crate) fn success_is_noop(&self) -> bool {
        match &self.kind {
            Kind::Count(w) => {
                w.totals.failures == 0
                    && w.totals.slow == 0
                    && w.totals.calls as usize == w.ring.len()
            }
            Kind::Time(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn count_window_forgets_the_oldest_call() {
        let mut w = OutcomeWindow::new(Window::Count(3));
        w.record(Nanos::ZERO, true, false);
        w.record(Nanos::ZERO, false, true);
        w.record(Nanos::ZERO, false, false);
        let t = w.totals(Nanos::ZERO);
        assert_eq!((t.calls, t.failures, t.slow), (3, 1, 1));
        w.record(Nanos::ZERO, false, false);
        let t = w.totals(Nanos::ZERO);
        assert_eq!((t.calls, t.failures, t.slow), (3, 0, 1));
        w.record(Nanos::ZERO, false, false);
        assert!(w.success_is_noop());
    }

    #[test]
    fn time_window_expires_whole_buckets() {
        let mut w = OutcomeWindow::new(Window::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        });
        let at = |s: u64| Nanos::from_duration(Duration::from_millis(s));
        w.record(at(500), true, false);
        w.record(at(1_500), true, false);
        assert_eq!(w.totals(at(9_999)).failures, 2);
        assert_eq!(w.totals(at(10_000)).failures, 1, "bucket [0, 1s) expired");
        assert_eq!(w.totals(at(11_000)).failures, 0);
        w.record(at(60_000), false, false);
        assert_eq!(w.totals(at(60_000)).calls, 1);
        assert!(!w.success_is_noop());
    }
}
