//! Concurrency limiting: at most `max_concurrent` requests in flight per key.
//!
//! A slot is held by a [`ConcurrencyPermit`] and given back when the permit is dropped —
//! whatever happens to the request: success, error, panic, cancellation. There is no
//! `release()` to forget.
//!
//! # Exact semantics
//!
//! * Admitted iff `in_flight + 1 ≤ max_concurrent`; the permit then holds one slot.
//! * `remaining` = `max_concurrent − in_flight` after the decision; `reset_after` and
//!   `retry_after` are zero: the limiter cannot know when a holder finishes.
//! * Keys with no slot held use no memory; a key with permits outstanding is never
//!   evicted (that would hand out its slots twice).

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::keyed::{KeyedConfig, KeyedStates, Reclaim};
use super::{AcquireError, Decision};
use crate::clock::{Clock, MonotonicClock, Nanos};

/// A keyed concurrency limiter. Cheap to clone; clones share their slots.
pub struct ConcurrencyLimiter<K, C: Clock = MonotonicClock> {
    inner: Arc<Inner<K, C>>,
}

struct Inner<K, C> {
    max: u32,
    clock: C,
    states: KeyedStates<K, u32>,
    released: Notify,
}

struct InFlight;

impl Reclaim<u32> for InFlight {
    fn expires_at(&self, in_flight: &u32) -> Nanos {
        if *in_flight == 0 {
            Nanos::ZERO
        } else {
            Nanos::new(u64::MAX)
        }
    }
    fn last_active(&self, _in_flight: &u32) -> Nanos {
        Nanos::new(u64::MAX)
    }
    fn pinned(&self, in_flight: &u32) -> bool {
        *in_flight > 0
    }
}

impl<K, C: Clock> Clone for ConcurrencyLimiter<K, C> {
    fn clone(&self) -> Self {
        ConcurrencyLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, C: Clock> fmt::Debug for ConcurrencyLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("max_concurrent", &self.inner.max)
            .field("states", &self.inner.states)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> ConcurrencyLimiter<K> {
    /// At most `max_concurrent` in flight per key.
    pub fn new(max_concurrent: NonZeroU32) -> Self {
        Self::with_config(max_concurrent, MonotonicClock, KeyedConfig::default())
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> ConcurrencyLimiter<K, C> {
    /// At most `max_concurrent` in flight per key, waiting on `clock`, sized by `config`.
    pub fn with_config(max_concurrent: NonZeroU32, clock: C, config: KeyedConfig) -> Self {
        ConcurrencyLimiter {
            inner: Arc::new(Inner {
                max: max_concurrent.get(),
                clock,
                states: KeyedStates::new(config),
                released: Notify::new(),
            }),
        }
    }

    /// Takes a slot for `key` if one is free.
    pub fn try_acquire(&self, key: &K) -> Result<ConcurrencyPermit<K, C>, Decision> {
        let inner = &*self.inner;
        let max = inner.max;
        let decision = inner
            .states
            .with_state(key, inner.clock.now(), &InFlight, |in_flight| {
                if *in_flight < max {
                    *in_flight += 1;
                    Decision::allow(max, max - *in_flight, Duration::ZERO)
                } else {
                    Decision::deny(max, 0, Duration::ZERO, Duration::ZERO)
                }
            })
            // Every key's shard is full of keys holding permits: nothing can be admitted.
            .unwrap_or(Decision::deny(max, 0, Duration::ZERO, Duration::ZERO));
        if decision.allowed {
            Ok(ConcurrencyPermit {
                limiter: self.clone(),
                key: Some(key.clone()),
                decision,
            })
        } else {
            Err(decision)
        }
    }

    /// Takes a slot for `key`, waiting up to `max_wait` for one to be released.
    pub async fn acquire(
        &self,
        key: &K,
        max_wait: Duration,
    ) -> Result<ConcurrencyPermit<K, C>, AcquireError> {
        let started = self.inner.clock.now();
        let deadline = started + max_wait;
        loop {
            // Register interest before trying, so a release between the try and the
            // wait is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let decision = match self.try_acquire(key) {
                Ok(permit) => return Ok(permit),
                Err(decision) => decision,
            };
            let now = self.inner.clock.now();
            if now >= deadline {
                let waited = now.saturating_duration_since(started);
                return Err(if max_wait.is_zero() {
                    AcquireError::RateLimited { decision }
                } else {
                    AcquireError::WaitTimeout {
                        waited,
                        retry_after: Duration::ZERO,
                    }
                });
            }
            let sleep = self.inner.clock.sleep_until(deadline);
            tokio::select! {
                () = &mut released => {}
                () = sleep => {}
            }
        }
    }

    /// Slots in use for `key`.
    pub fn in_flight(&self, key: &K) -> u32 {
        self.inner.states.peek(key, |n| *n).unwrap_or(0)
    }

    /// Keys with at least one slot held (or not yet swept).
    pub fn len(&self) -> usize {
        self.inner.states.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn release(&self, key: &K) {
        // Drop the key as its last slot comes back, so memory follows the in-flight set.
        self.inner.states.update_or_remove(key, |n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
        self.inner.released.notify_waiters();
    }
}

/// One slot of a [`ConcurrencyLimiter`], given back on drop.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct ConcurrencyPermit<
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Clock = MonotonicClock,
> {
    limiter: ConcurrencyLimiter<K, C>,
    key: Option<K>,
    decision: Decision,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> ConcurrencyPermit<K, C> {
    /// The decision that granted this permit (remaining slots at that moment).
    pub fn decision(&self) -> Decision {
        self.decision
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> fmt::Debug
    for ConcurrencyPermit<K, C>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit")
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> Drop for ConcurrencyPermit<K, C> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.limiter.release(&key);
        }
    }
}
