//! Concurrency limits in a store: at most `max` holders of a key at once, across every
//! instance that shares the store.
//!
//! A slot is a lease. The holder gets a [`SlotPermit`] that gives the slot back when it
//! is dropped — on every path, including errors and cancelled futures — and the store
//! expires the lease after `lease` anyway, so a process that crashes while holding a
//! slot cannot keep it forever (slots leaking until a restart is a known failure of
//! web middleware that counts in-flight requests by hand).

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use super::{FailMode, LeaseId, LimiterError, Store, StoreError};
use crate::clock::{Clock, MonotonicClock};
use crate::rate::{AcquireError, Decision};

/// Builds a [`SlotLimiter`].
#[derive(Debug)]
pub struct SlotLimiterBuilder {
    name: Arc<str>,
    max: NonZeroU32,
    lease: Duration,
    timeout: Duration,
    fail_mode: FailMode,
    clock: Arc<dyn Clock>,
}

impl SlotLimiterBuilder {
    /// How long a slot is held at most before the store frees it (default 60 s). Set
    /// it above the longest legitimate hold.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long one acquisition may take before the fail mode applies (default 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer when the store fails (default [`FailMode::Open`]).
    pub fn fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = fail_mode;
        self
    }

    /// The clock used for the timeout.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limiter, on `store`.
    pub fn build(self, store: Arc<dyn Store>) -> SlotLimiter {
        SlotLimiter {
            inner: Arc::new(SlotInner {
                settings: self,
                store,
            }),
        }
    }
}

/// At most `max` concurrent holders per key, counted in a [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SlotLimiter {
    inner: Arc<SlotInner>,
}

struct SlotInner {
    settings: SlotLimiterBuilder,
    store: Arc<dyn Store>,
}

impl fmt::Debug for SlotLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.settings;
        f.debug_struct("SlotLimiter")
            .field("name", &s.name)
            .field("max", &s.max)
            .field("lease", &s.lease)
            .field("fail_mode", &s.fail_mode)
            .field("store", &self.inner.store.name())
            .finish()
    }
}

impl SlotLimiter {
    /// Starts a limiter named `name` allowing `max` concurrent holders per key.
    pub fn builder(name: impl Into<Arc<str>>, max: NonZeroU32) -> SlotLimiterBuilder {
        SlotLimiterBuilder {
            name: name.into(),
            max,
            lease: Duration::from_secs(60),
            timeout: Duration::from_millis(100),
            fail_mode: FailMode::Open,
            clock: Arc::new(MonotonicClock),
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.settings.name
    }

    /// The most concurrent holders per key.
    pub fn max(&self) -> NonZeroU32 {
        self.inner.settings.max
    }

    /// Takes a slot of `key`, or says why not: over the limit (`retry_after` zero — a
    /// slot frees whenever a holder finishes) or, fail-closed, the store failed.
    /// Fail-open admits with a permit that holds nothing in the store.
    pub async fn acquire(&self, key: &str) -> Result<SlotPermit, LimiterError> {
        let s = &self.inner.settings;
        let max = s.max.get();
        let pending = self.inner.store.acquire_slot(&s.name, key, max, s.lease);
        let sleep = s.clock.sleep(s.timeout);
        let result = tokio::select! {
            biased;
            result = pending => result,
            () = sleep => Err(StoreError::Timeout {
                store: self.inner.store.name().to_owned(),
                after: s.timeout,
            }),
        };
        match result {
            Ok(grant) => match grant.lease {
                Some(lease) => Ok(SlotPermit {
                    limiter: self.clone(),
                    key: key.into(),
                    lease: Some(lease),
                    decision: grant.decision,
                }),
                None => Err(LimiterError::Limited {
                    limiter: Arc::clone(&s.name),
                    source: AcquireError::RateLimited {
                        decision: grant.decision,
                    },
                }),
            },
            Err(err) => match s.fail_mode {
                FailMode::Open => Ok(SlotPermit {
                    limiter: self.clone(),
                    key: key.into(),
                    lease: None,
                    decision: Decision::allow(max, max, Duration::ZERO),
                }),
                FailMode::Closed => Err(LimiterError::StoreUnavailable {
                    limiter: Arc::clone(&s.name),
                    source: err,
                }),
            },
        }
    }
}

/// A held slot; dropping it gives the slot back.
///
/// The release is sent on the current tokio runtime in the background. Outside a
/// runtime (or when the store is unreachable) the lease expires on its own.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct SlotPermit {
    limiter: SlotLimiter,
    key: Box<str>,
    lease: Option<LeaseId>,
    decision: Decision,
}

impl fmt::Debug for SlotPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotPermit")
            .field("limiter", self.limiter.name())
            .field("key", &self.key)
            .field("held_in_store", &self.lease.is_some())
            .finish()
    }
}

impl SlotPermit {
    /// The admission: `remaining` is the slots left right after this one was taken.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// Whether the slot is held in the store (false when admitted by fail-open).
    pub fn is_held(&self) -> bool {
        self.lease.is_some()
    }

    /// Gives the slot back now and waits for the store to confirm.
    pub async fn release(mut self) -> Result<(), StoreError> {
        match self.lease.take() {
            Some(lease) => {
                let inner = &self.limiter.inner;
                inner
                    .store
                    .release_slot(&inner.settings.name, &self.key, lease)
                    .await
            }
            None => Ok(()),
        }
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let limiter = self.limiter.clone();
        let key = std::mem::take(&mut self.key);
        let release = async move {
            let inner = &limiter.inner;
            // A failed release is harmless: the lease runs out on its own.
            let _ = inner
                .store
                .release_slot(&inner.settings.name, &key, lease)
                .await;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn limiter(max: u32) -> SlotLimiter {
        SlotLimiter::builder("uploads", NonZeroU32::new(max).unwrap())
            .build(Arc::new(MemoryStore::new()))
    }

    #[tokio::test]
    async fn slots_are_limited_and_given_back_on_drop() {
        let uploads = limiter(2);
        let a = uploads.acquire("u").await.unwrap();
        let b = uploads.acquire("u").await.unwrap();
        assert_eq!(b.decision().remaining, 0);
        let refused = uploads.acquire("u").await.unwrap_err();
        assert!(matches!(refused, LimiterError::Limited { .. }), "{refused}");
        // Another key has its own slots.
        let other = uploads.acquire("v").await.unwrap();
        assert!(other.is_held());
        drop(a);
        // The release runs on the runtime; let it.
        tokio::task::yield_now().await;
        let c = uploads.acquire("u").await.unwrap();
        b.release().await.unwrap();
        c.release().await.unwrap();
        let d = uploads.acquire("u").await.unwrap();
        assert_eq!(d.decision().remaining, 1);
    }
}
