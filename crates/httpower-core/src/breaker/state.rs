//! The state machine behind the lock, and the atomic word that mirrors it.
//!
//! Every change of state happens in [`Core`], under the breaker's mutex. After each
//! change the breaker publishes a one-word summary ([`pack`]) in an atomic, which the
//! closed-state fast paths read without locking:
//!
//! * `try_acquire` admits immediately when the word says Closed. Closed admits everyone,
//!   so there is nothing to count and nothing to race on.
//! * `record(Success)` returns immediately when the word says "Closed, same epoch, and
//!   the window is a full count window of fast successes": pushing one more fast success
//!   into such a window evicts a fast success, so it would change nothing.
//! * `try_acquire` rejects immediately when the word says "half-open with every probe
//!   slot taken" (the FULL bit), or when `reject_until` holds [`FORCED`].
//!
//! Everything else (open, admitting probes, failures, slow calls, time windows) takes
//! the lock.
//! The epoch increases on every transition; a permit remembers the epoch it was issued
//! in, and its outcome is ignored if the breaker has moved on since (a call admitted
//! while closed that finishes after the breaker opened must not count as a probe).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::clock::Nanos;

use super::config::BreakerConfig;
use super::events::{BreakerSnapshot, BreakerState, StateChange, TransitionReason};
use super::window::{OutcomeWindow, Totals};

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_MASK: u64 = 0b11;
const CLEAN: u64 = 0b100;
const FULL: u64 = 0b1000;
const EPOCH_SHIFT: u32 = 4;

/// What `reject_until` holds while the breaker is forced open: no time ever reaches it.
pub(crate) const FORCED: u64 = u64::MAX;

/// The atomic summary of a breaker: state, "a success is a no-op" flag, "every probe
/// slot is taken" flag, epoch.
pub(crate) fn pack(state: BreakerState, clean: bool, full: bool, epoch: u64) -> u64 {
    let code = match state {
        BreakerState::Closed => CLOSED,
        BreakerState::Open => OPEN,
        BreakerState::HalfOpen => HALF_OPEN,
    };
    (epoch << EPOCH_SHIFT) | (u64::from(clean) * CLEAN) | (u64::from(full) * FULL) | code
}

/// True when the packed word says Closed.
pub(crate) fn is_closed(word: u64) -> bool {
    word & STATE_MASK == CLOSED
}

/// True when the packed word says Open.
pub(crate) fn is_open(word: u64) -> bool {
    word & STATE_MASK == OPEN
}

/// True when the packed word says half-open with every probe slot taken.
pub(crate) fn is_full(word: u64) -> bool {
    word & FULL != 0
}

/// The epoch in a packed word.
pub(crate) fn epoch_of(word: u64) -> u64 {
    word >> EPOCH_SHIFT
}

/// True when `word` is in the permit epoch `epoch` (the word keeps the epoch's low bits).
pub(crate) fn in_epoch(word: u64, epoch: u64) -> bool {
    epoch_of(word) == epoch_of(epoch << EPOCH_SHIFT)
}

/// The word for which a fast success of a permit from `epoch` changes nothing.
pub(crate) fn clean_closed(epoch: u64) -> u64 {
    pack(BreakerState::Closed, true, false, epoch)
}

/// Failure percentage, 0 for an empty window.
pub(crate) fn rate(part: u32, calls: u32) -> f64 {
    if calls == 0 {
        0.0
    } else {
        f64::from(part) * 100.0 / f64::from(calls)
    }
}

/// A seed for the jitter generator. Only a breaker with jitter uses it, and then it is
/// drawn from the thread's generator: seeding from the operating system would cost a
/// system call for every breaker a registry creates.
fn jitter_seed(config: &BreakerConfig) -> u64 {
    if config.timeout_jitter > 0.0 {
        rand::thread_rng().gen()
    } else {
        0
    }
}

/// The mutable state of one breaker.
#[derive(Debug)]
pub(crate) struct Core {
    state: BreakerState,
    forced: bool,
    epoch: u64,
    window: OutcomeWindow,
    consecutive_opens: u32,
    opened_at: Nanos,
    open_until: Nanos,
    /// The window's totals when the breaker last left Closed. While not closed the
    /// window is left alone (a time window would otherwise expire its buckets), and
    /// events and snapshots report these.
    frozen: Totals,
    probes_admitted: u32,
    probe_successes: u32,
    /// `half_open_requests`, the number of probe slots.
    probe_slots: u32,
    rng: SmallRng,
}

impl Core {
    pub(crate) fn new(config: &BreakerConfig) -> Self {
        Core {
            state: BreakerState::Closed,
            forced: false,
            epoch: 0,
            window: OutcomeWindow::new(config.window),
            consecutive_opens: 0,
            opened_at: Nanos::ZERO,
            open_until: Nanos::ZERO,
            frozen: Totals::default(),
            probes_admitted: 0,
            probe_successes: 0,
            probe_slots: config.half_open_requests,
            rng: SmallRng::seed_from_u64(jitter_seed(config)),
        }
    }

    /// The packed summary of the current state.
    pub(crate) fn word(&self) -> u64 {
        let clean = self.state == BreakerState::Closed && self.window.success_is_noop();
        let full = self.state == BreakerState::HalfOpen && self.probes_admitted >= self.probe_slots;
        pack(self.state, clean, full, self.epoch)
    }

    /// What `Shared::reject_until` should hold: `open_until` while open, [`FORCED`]
    /// while forced open, otherwise 0.
    pub(crate) fn reject_until(&self) -> u64 {
        match self.state {
            BreakerState::Open if self.forced => FORCED,
            BreakerState::Open => self.open_until.as_u64(),
            _ => 0,
        }
    }

    /// Admits a call or says how long to wait. `Ok` carries the permit's epoch and
    /// whether it is a half-open probe.
    pub(crate) fn acquire(
        &mut self,
        config: &BreakerConfig,
        now: Nanos,
        event: &mut Option<StateChange>,
    ) -> Result<(u64, bool), Duration> {
        match self.state {
            BreakerState::Closed => Ok((self.epoch, false)),
            BreakerState::Open if self.forced => Err(config.timeout),
            BreakerState::Open => {
                if now < self.open_until {
                    return Err(self.open_until.saturating_duration_since(now));
                }
                // The caller that notices the timeout has passed makes the transition and
                // takes the first probe slot, in the same critical section.
                *event = Some(self.transition(
                    BreakerState::HalfOpen,
                    TransitionReason::TimeoutElapsed,
                    now,
                ));
                self.probes_admitted = 1;
                Ok((self.epoch, true))
            }
            BreakerState::HalfOpen => {
                if self.probes_admitted < config.half_open_requests {
                    self.probes_admitted += 1;
                    Ok((self.epoch, true))
                } else {
                    Err(Duration::ZERO)
                }
            }
        }
    }

    /// Records the outcome of a call (failed or not, slow or not) whose permit was
    /// issued in `epoch`. An ignored outcome is a [`release`](Self::release).
    pub(crate) fn record(
        &mut self,
        config: &BreakerConfig,
        epoch: u64,
        failure: bool,
        slow: bool,
        now: Nanos,
    ) -> Option<StateChange> {
        if epoch != self.epoch {
            return None;
        }
        match self.state {
            BreakerState::Open => None,
            BreakerState::Closed => {
                self.window.record(now, failure, slow);
                let reason = self.trip_reason(config, now)?;
                Some(self.open(config, reason, now))
            }
            BreakerState::HalfOpen => {
                if failure || slow {
                    return Some(self.open(config, TransitionReason::ProbeFailed, now));
                }
                self.probe_successes += 1;
                if self.probe_successes >= config.success_threshold {
                    self.consecutive_opens = 0;
                    self.window.clear();
                    Some(self.transition(
                        BreakerState::Closed,
                        TransitionReason::ProbesSucceeded,
                        now,
                    ))
                } else {
                    None
                }
            }
        }
    }

    /// A probe from `epoch` ended without a counted outcome (dropped, or ignored): it
    /// gives its slot back. Returns whether it did (the word may have changed).
    pub(crate) fn release(&mut self, epoch: u64) -> bool {
        if epoch == self.epoch && self.state == BreakerState::HalfOpen {
            self.probes_admitted = self.probes_admitted.saturating_sub(1);
            true
        } else {
            false
        }
    }

    fn trip_reason(&mut self, config: &BreakerConfig, now: Nanos) -> Option<TransitionReason> {
        let t = self.window.totals(now);
        if t.failures >= config.failure_threshold {
            return Some(TransitionReason::FailureCount);
        }
        if t.calls < config.minimum_calls {
            return None;
        }
        if let Some(percent) = config.failure_threshold_percentage {
            if rate(t.failures, t.calls) >= percent {
                return Some(TransitionReason::FailureRate);
            }
        }
        if let Some(rule) = config.slow_call {
            if rate(t.slow, t.calls) >= rule.rate_threshold {
                return Some(TransitionReason::SlowCallRate);
            }
        }
        None
    }

    /// Opens the breaker on its own (not forced), growing the timeout.
    fn open(
        &mut self,
        config: &BreakerConfig,
        reason: TransitionReason,
        now: Nanos,
    ) -> StateChange {
        self.consecutive_opens = self.consecutive_opens.saturating_add(1);
        let mut timeout = config.grown_timeout(self.consecutive_opens);
        if config.timeout_jitter > 0.0 {
            let cut = config.timeout_jitter * self.rng.gen::<f64>();
            timeout = timeout.mul_f64((1.0 - cut).clamp(0.0, 1.0));
        }
        self.open_until = now + timeout;
        self.transition(BreakerState::Open, reason, now)
    }

    fn transition(
        &mut self,
        to: BreakerState,
        reason: TransitionReason,
        now: Nanos,
    ) -> StateChange {
        let from = self.state;
        let t = if from == BreakerState::Closed || to == BreakerState::Closed {
            // Leaving Closed: freeze the window as it is now. Entering Closed: the
            // window has just been cleared.
            self.window.totals(now)
        } else {
            self.frozen
        };
        if from == BreakerState::Closed && to != BreakerState::Closed {
            self.opened_at = now;
            self.frozen = t;
        }
        self.state = to;
        self.epoch = self.epoch.wrapping_add(1);
        self.probes_admitted = 0;
        self.probe_successes = 0;
        if to != BreakerState::Open {
            self.forced = false;
        }
        StateChange {
            key: None,
            from,
            to,
            failures: t.failures,
            failure_rate: rate(t.failures, t.calls),
            at: now,
            reason,
        }
    }

    /// Opens the breaker until `force_close` or `reset`. An open breaker only becomes
    /// forced: its state does not change, so there is no event.
    pub(crate) fn force_open(&mut self, now: Nanos) -> Option<StateChange> {
        if self.state == BreakerState::Open {
            self.forced = true;
            return None;
        }
        let change = self.transition(BreakerState::Open, TransitionReason::ForcedOpen, now);
        self.forced = true;
        Some(change)
    }

    /// Closes the breaker and empties the window, for `force_close` (`reason`
    /// `ForcedClose`: keeps `consecutive_opens`) or `reset` (`Reset`: forgets them too,
    /// back to a brand-new breaker). On a closed breaker there is no event, but the epoch
    /// still moves on so that permits issued before do not count into the emptied window.
    pub(crate) fn close_manually(
        &mut self,
        reason: TransitionReason,
        now: Nanos,
    ) -> Option<StateChange> {
        if reason == TransitionReason::Reset {
            self.consecutive_opens = 0;
        }
        self.window.clear();
        if self.state == BreakerState::Closed {
            self.epoch = self.epoch.wrapping_add(1);
            return None;
        }
        Some(self.transition(BreakerState::Closed, reason, now))
    }

    pub(crate) fn snapshot(&mut self, now: Nanos) -> BreakerSnapshot {
        let Totals {
            calls,
            failures,
            slow,
        } = if self.state == BreakerState::Closed {
            self.window.totals(now)
        } else {
            // Frozen: the window as it was when the breaker opened.
            self.frozen
        };
        let closed = self.state == BreakerState::Closed;
        BreakerSnapshot {
            state: self.state,
            forced: self.forced,
            failures,
            successes: calls.saturating_sub(failures),
            slow_calls: slow,
            calls,
            failure_rate: rate(failures, calls),
            opened_for: (!closed).then(|| now.saturating_duration_since(self.opened_at)),
            retry_after: match self.state {
                BreakerState::Open if !self.forced => {
                    Some(self.open_until.saturating_duration_since(now))
                }
                _ => None,
            },
            probes_admitted: self.probes_admitted,
            probe_successes: self.probe_successes,
            consecutive_opens: self.consecutive_opens,
        }
    }
}
