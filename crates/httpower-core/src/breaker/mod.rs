//! Circuit breaking: stop calling a dependency that is failing, and find out cheaply
//! when it has recovered.
//!
//! # Why a breaker?
//!
//! Retries help with blips. When a dependency is down for real, every caller still
//! waits for its timeout, retries multiply the load on a service that is already
//! struggling, and threads and sockets pile up behind it. A breaker watches the
//! outcomes of recent calls; once they look bad enough it *opens* and callers fail in
//! nanoseconds with a hint of when to come back ([`BreakerOpen::retry_after`]). After a
//! while it lets a few *probe* calls through; if they succeed the breaker closes again.
//!
//! # The three states
//!
//! * **Closed** — calls pass. Each outcome goes into a sliding [`Window`]: the last `n`
//!   calls (default 10) or the last `duration`, bucketed. The breaker opens when, over the
//!   window, any rule trips:
//!   - the failure count reaches `failure_threshold` (default 5);
//!   - with at least `minimum_calls` recorded, the failure percentage reaches
//!     `failure_threshold_percentage` (optional);
//!   - with at least `minimum_calls` recorded, the share of calls slower than
//!     `slow_call_duration` reaches `slow_call_rate_threshold` (optional). A slow call
//!     counts against the breaker even when it succeeded: a dependency that answers in
//!     thirty seconds is as bad as one that does not answer.
//!
//!   `minimum_calls` applies to both percentage rules, so one slow call out of one is not
//!   "100 % slow".
//! * **Open** — calls fail fast with [`BreakerOpen`], whose `retry_after` is the time left.
//!   After `timeout` (default 60 s) the breaker does *not* flip by itself: there is no
//!   timer task. The first caller to arrive after the timeout turns it half-open, and is
//!   itself the first probe. If the breaker keeps re-opening, the timeout can grow by
//!   `timeout_multiplier` per consecutive opening, up to `max_timeout`, and be shortened
//!   by a random fraction up to `timeout_jitter`, so that many breakers opened together
//!   do not all probe in the same instant.
//! * **HalfOpen** — exactly `half_open_requests` probes (default 1) are admitted, however
//!   many callers race; the rest fail fast with `retry_after` zero. The transition and
//!   the first slot claim happen under one lock, so the caller that makes the transition
//!   is counted (some tools admit one probe too many because it is not).
//!   `success_threshold` successful probes close the breaker (window and
//!   `consecutive_opens` reset). Any failed — or, with the slow rule on, slow — probe
//!   opens it again with the next, possibly longer, timeout. A probe whose permit is
//!   dropped without an outcome (the caller was cancelled), or recorded as
//!   [`CallOutcome::Ignored`], gives its slot back, so a cancelled probe cannot wedge the
//!   breaker half-open.
//!
//! # Permits
//!
//! [`CircuitBreaker::try_acquire`] returns a [`BreakerPermit`]; the caller makes the call
//! and reports the outcome with [`BreakerPermit::record`] (or `success()` / `failure()`).
//! The permit measures the call's duration for the slow rule. An outcome is only counted
//! in the state the permit was issued in: a call admitted while closed that finishes after
//! the breaker opened is not mistaken for a probe.
//!
//! # Manual control
//!
//! [`force_open`](CircuitBreaker::force_open) holds the breaker open until
//! [`force_close`](CircuitBreaker::force_close) or [`reset`](CircuitBreaker::reset) (its
//! `retry_after` is then the configured `timeout`, as a hint). `force_close` closes and
//! empties the window but remembers `consecutive_opens`, so a breaker that keeps flapping
//! after an operator closed it still backs off; `reset` forgets everything.
//! [`state`](CircuitBreaker::state) returns a [`BreakerSnapshot`] for dashboards.
//!
//! # Events
//!
//! [`subscribe`](CircuitBreaker::subscribe) yields a [`StateChange`] for every transition
//! (a `tokio::sync::broadcast` channel; a slow subscriber loses the oldest events, never
//! slows the breaker). Breakers made by a [`BreakerRegistry`] share the registry's
//! channel and fill in [`StateChange::key`].
//!
//! # Cost
//!
//! While closed, `try_acquire` reads one atomic word and hands out a permit; recording a
//! success into a full count window of successes reads the word again and returns. No
//! lock, and no clock read unless the slow-call rule needs the call's start time (on
//! common virtual machines a clock read costs more than the rest of the path). An open
//! breaker rejects with one clock read and two atomic loads; a forced-open breaker, or a
//! half-open one with every probe slot taken, rejects with atomic loads alone.
//! Failures, slow calls, time windows and admitting probes take a short `parking_lot`
//! mutex. No lock is ever held across an `.await` (there is none).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
//! use httpower_core::clock::ManualClock;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = BreakerConfig::builder()
//!     .failure_threshold(2)
//!     .timeout(Duration::from_secs(30))
//!     .build()?;
//! let clock = ManualClock::new();
//! let breaker = CircuitBreaker::with_clock(config, clock.clone());
//!
//! // Two failures open it.
//! breaker.try_acquire()?.failure();
//! breaker.try_acquire()?.failure();
//! let open = breaker.try_acquire().unwrap_err();
//! assert_eq!(open.retry_after, Duration::from_secs(30));
//!
//! // After the timeout the next caller is the probe; its success closes the breaker.
//! clock.advance(Duration::from_secs(30));
//! let probe = breaker.try_acquire()?;
//! assert_eq!(breaker.state().state, BreakerState::HalfOpen);
//! assert!(breaker.try_acquire().is_err(), "only one probe at a time");
//! probe.success();
//! assert_eq!(breaker.state().state, BreakerState::Closed);
//! # Ok(())
//! # }
//! ```

mod config;
mod events;
mod registry;
mod state;
mod window;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::clock::{Clock, MonotonicClock, Nanos};

pub use config::{
    BreakerConfig, BreakerConfigBuilder, BreakerConfigError, SlowCallRule, Window,
    MAX_COUNT_WINDOW, MAX_TIME_BUCKETS,
};
pub use events::{BreakerSnapshot, BreakerState, StateChange, TransitionReason};
pub use registry::{BreakerRegistry, DEFAULT_IDLE_TIMEOUT, DEFAULT_SOFT_CAPACITY};

use state::Core;

/// Capacity of a breaker's (or registry's) event channel.
const EVENT_CAPACITY: usize = 256;

/// The outcome of a call, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The call worked.
    Success,
    /// The call failed in a way that says the dependency is unhealthy.
    Failure,
    /// Counts neither way (a client error, a cancelled call); a probe gives its slot back.
    Ignored,
}

/// The breaker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("circuit breaker is open; retry after {retry_after:?}")]
pub struct BreakerOpen {
    /// Time until the breaker lets probes through. `Duration::ZERO` when it is already
    /// half-open but every probe slot is taken.
    pub retry_after: Duration,
}

#[derive(Debug)]
struct Shared<C> {
    /// The packed state summary (see `state::pack`).
    word: AtomicU64,
    /// While open and not forced: the `open_until` time in nanoseconds; while forced
    /// open: `state::FORCED`; otherwise 0. Lets a rejected caller fail fast without the
    /// lock.
    reject_until: AtomicU64,
    /// Set by `try_acquire`, cleared by the registry's eviction sweep.
    touched: AtomicBool,
    /// True when permits must read the clock when they are granted (slow-call rule).
    timed: bool,
    config: BreakerConfig,
    clock: C,
    core: Mutex<Core>,
    events: broadcast::Sender<StateChange>,
    key: Option<Arc<str>>,
}

impl<C: Clock> Shared<C> {
    /// Publishes the word for the current state, and the event if there is one. Called
    /// with the lock held so that the word and the event order follow the transitions.
    /// Stores only what changed: every store happens under the lock, so a relaxed load
    /// here sees the last one, and an unchanged value keeps its cache line shared.
    fn publish(&self, core: &Core, event: Option<StateChange>) {
        let word = core.word();
        if self.word.load(Ordering::Relaxed) != word {
            self.word.store(word, Ordering::Release);
        }
        let until = core.reject_until();
        if self.reject_until.load(Ordering::Relaxed) != until {
            self.reject_until.store(until, Ordering::Release);
        }
        if let Some(mut change) = event {
            change.key.clone_from(&self.key);
            // No subscribers is not an error.
            let _ = self.events.send(change);
        }
    }

    /// A probe from `epoch` ended without a counted outcome: gives its slot back, unless
    /// the breaker has moved on since (then there is nothing to give back, and the
    /// atomic word says so without the lock).
    fn release(&self, epoch: u64) {
        if !state::in_epoch(self.word.load(Ordering::Acquire), epoch) {
            return;
        }
        let mut core = self.core.lock();
        if core.release(epoch) {
            // Freeing a slot clears the FULL bit.
            self.publish(&core, None);
        }
    }
}

/// A circuit breaker. Cheap to clone: clones share one state.
///
/// See the [module documentation](self) for the states and rules.
#[derive(Debug)]
pub struct CircuitBreaker<C: Clock = MonotonicClock> {
    shared: Arc<Shared<C>>,
}

impl<C: Clock> Clone for CircuitBreaker<C> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl CircuitBreaker<MonotonicClock> {
    /// A breaker on the process's monotonic clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, MonotonicClock)
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// A breaker reading time from `clock`.
    pub fn with_clock(config: BreakerConfig, clock: C) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Self::build(config, clock, events, None)
    }

    pub(crate) fn build(
        config: BreakerConfig,
        clock: C,
        events: broadcast::Sender<StateChange>,
        key: Option<Arc<str>>,
    ) -> Self {
        let core = Core::new(&config);
        CircuitBreaker {
            shared: Arc::new(Shared {
                word: AtomicU64::new(core.word()),
                reject_until: AtomicU64::new(core.reject_until()),
                touched: AtomicBool::new(false),
                timed: config.slow_call.is_some(),
                config,
                clock,
                core: Mutex::new(core),
                events,
                key,
            }),
        }
    }

    /// Asks to make a call. `Ok` carries the permit to report the outcome with; `Err`
    /// says the breaker is open (or half-open with every probe slot taken).
    pub fn try_acquire(&self) -> Result<BreakerPermit<C>, BreakerOpen> {
        let shared = &self.shared;
        // Only a store when the flag changes, so busy breakers keep the line shared.
        if !shared.touched.load(Ordering::Relaxed) {
            shared.touched.store(true, Ordering::Relaxed);
        }
        let word = shared.word.load(Ordering::Acquire);
        if state::is_closed(word) {
            // Reading the clock costs more than the rest of this path, so it is skipped
            // unless the slow-call rule needs the call's start time.
            let acquired_at = shared.timed.then(|| shared.clock.now());
            return Ok(self.permit(state::epoch_of(word), false, acquired_at));
        }
        if state::is_full(word) {
            return Err(BreakerOpen {
                retry_after: Duration::ZERO,
            });
        }
        let until = shared.reject_until.load(Ordering::Acquire);
        if until == state::FORCED {
            return Err(BreakerOpen {
                retry_after: shared.config.timeout,
            });
        }
        let now = shared.clock.now();
        if now.as_u64() < until {
            return Err(BreakerOpen {
                retry_after: Nanos::new(until).saturating_duration_since(now),
            });
        }
        let mut event = None;
        let mut core = shared.core.lock();
        let admitted = core.acquire(&shared.config, now, &mut event);
        // Publishes the transition, or the FULL bit when this took the last probe slot.
        shared.publish(&core, event);
        drop(core);
        match admitted {
            Ok((epoch, probe)) => Ok(self.permit(epoch, probe, Some(now))),
            Err(retry_after) => Err(BreakerOpen { retry_after }),
        }
    }

    fn permit(&self, epoch: u64, probe: bool, acquired_at: Option<Nanos>) -> BreakerPermit<C> {
        BreakerPermit {
            shared: Some(Arc::clone(&self.shared)),
            epoch,
            probe,
            acquired_at,
        }
    }

    /// A snapshot of the state and the window's counts.
    pub fn state(&self) -> BreakerSnapshot {
        let now = self.shared.clock.now();
        self.shared.core.lock().snapshot(now)
    }

    /// Opens the breaker and keeps it open until [`force_close`](Self::force_close) or
    /// [`reset`](Self::reset). Does not count as a consecutive opening. On a breaker that
    /// is already open it only cancels the timeout; the state does not change, so no
    /// event is sent.
    pub fn force_open(&self) {
        self.manual(Core::force_open);
    }

    /// Closes the breaker and empties its window; keeps `consecutive_opens`, so the next
    /// automatic opening still gets a grown timeout.
    pub fn force_close(&self) {
        self.manual(|core, now| core.close_manually(TransitionReason::ForcedClose, now));
    }

    /// Returns the breaker to its initial state: closed, empty window, no opens counted.
    pub fn reset(&self) {
        self.manual(|core, now| core.close_manually(TransitionReason::Reset, now));
    }

    fn manual(&self, op: impl FnOnce(&mut Core, Nanos) -> Option<StateChange>) {
        let mut core = self.shared.core.lock();
        // Read under the lock, so that event timestamps follow the order of the events.
        let now = self.shared.clock.now();
        let event = op(&mut core, now);
        self.shared.publish(&core, event);
    }

    /// State changes from now on. A breaker made by a [`BreakerRegistry`] shares the
    /// registry's channel: its receivers see every key's events.
    pub fn subscribe(&self) -> broadcast::Receiver<StateChange> {
        self.shared.events.subscribe()
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.shared.clock
    }

    /// The registry key, if this breaker belongs to a registry.
    pub fn key(&self) -> Option<&Arc<str>> {
        self.shared.key.as_ref()
    }

    /// Whether `try_acquire` was called since the last call to this method.
    pub(crate) fn take_touched(&self) -> bool {
        self.shared.touched.swap(false, Ordering::Relaxed)
    }

    /// True when the atomic word says Closed.
    pub(crate) fn is_closed(&self) -> bool {
        state::is_closed(self.shared.word.load(Ordering::Acquire))
    }

    /// True when the breaker opened on its own (not forced) and its open timeout ended
    /// at least `idle` before `now` without any caller turning it half-open.
    pub(crate) fn is_abandoned_open(&self, now: Nanos, idle: Duration) -> bool {
        if !state::is_open(self.shared.word.load(Ordering::Acquire)) {
            return false;
        }
        let until = self.shared.reject_until.load(Ordering::Acquire);
        until != state::FORCED && now >= Nanos::new(until) + idle
    }

    /// True when nothing but the caller's handle refers to this breaker (no clones, no
    /// permits in flight).
    pub(crate) fn is_unshared(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
}

/// Permission to make one call. Report its outcome with [`record`](Self::record),
/// [`success`](Self::success) or [`failure`](Self::failure).
///
/// Dropping a permit without reporting records nothing; a half-open probe dropped this
/// way gives its slot back to the next caller.
#[must_use = "report the outcome with record(), success() or failure(); dropping the permit records nothing"]
pub struct BreakerPermit<C: Clock = MonotonicClock> {
    shared: Option<Arc<Shared<C>>>,
    epoch: u64,
    probe: bool,
    acquired_at: Option<Nanos>,
}

impl<C: Clock> fmt::Debug for BreakerPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("epoch", &self.epoch)
            .field("probe", &self.probe)
            .field("acquired_at", &self.acquired_at)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> BreakerPermit<C> {
    /// When the permit was granted, on the breaker's clock.
    ///
    /// `None` for a permit granted on the closed fast path of a breaker without the
    /// slow-call rule: nothing needs the call's start time then, and reading the clock
    /// would cost more than everything else the breaker does for the call.
    pub fn acquired_at(&self) -> Option<Nanos> {
        self.acquired_at
    }

    /// True when this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome. With the slow-call rule on, the call's duration (now
    /// minus [`acquired_at`](Self::acquired_at)) decides whether it was slow.
    pub fn record(mut self, outcome: CallOutcome) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        if outcome == CallOutcome::Ignored {
            // Counts neither way; a probe gives its slot back. No clock needed.
            if self.probe {
                shared.release(self.epoch);
            }
            return;
        }
        // A permit from an earlier epoch counts for nothing: the breaker has changed
        // state since it was issued. The word says so without the clock or the lock.
        let word = shared.word.load(Ordering::Acquire);
        if !state::in_epoch(word, self.epoch) {
            return;
        }
        let config = &shared.config;
        // Only the slow rule needs the clock before deciding whether to take the lock.
        let mut now = None;
        let mut slow = false;
        if let (Some(rule), Some(start)) = (config.slow_call, self.acquired_at) {
            let at = shared.clock.now();
            slow = at.saturating_duration_since(start) > rule.duration;
            now = Some(at);
        }
        let failure = outcome == CallOutcome::Failure;
        if !failure && !slow && word == state::clean_closed(self.epoch) {
            // A fast success into a full window of fast successes changes nothing.
            return;
        }
        let now = now.unwrap_or_else(|| shared.clock.now());
        let mut core = shared.core.lock();
        let event = core.record(config, self.epoch, failure, slow, now);
        shared.publish(&core, event);
    }

    /// Reports a success.
    pub fn success(self) {
        self.record(CallOutcome::Success);
    }

    /// Reports a failure.
    pub fn failure(self) {
        self.record(CallOutcome::Failure);
    }

    /// Reports that the call should count neither way.
    pub fn ignore(self) {
        self.record(CallOutcome::Ignored);
    }
}

impl<C: Clock> Drop for BreakerPermit<C> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            if self.probe {
                shared.release(self.epoch);
            }
        }
    }
}
