//! A named limit on a store, with a decision timeout and a fail mode.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Store, StoreError, StoreFuture};
use crate::clock::{Clock, MonotonicClock};
use crate::rate::{
    acquire_with, AcquireError, Algorithm, AnyAlgorithm, CostExceedsLimit, Decision, HasDecision,
    Strategy,
};

/// What a limiter answers when its store cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Admit the request: an outage of the limiter's store must not become an outage of
    /// the service. The default.
    #[default]
    Open,
    /// Deny the request: for limits that protect something (login attempts, paid
    /// quotas) where letting everything through is worse than refusing.
    Closed,
}

/// Who made a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionSource {
    /// The store decided.
    Store,
    /// The store failed and the limiter admitted by its fail-open rule.
    FailOpen(Box<StoreError>),
    /// The store failed and the limiter denied by its fail-closed rule.
    FailClosed(Box<StoreError>),
}

/// A limiter's answer: the decision and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The decision. On fail-open it reports a full quota; on fail-closed, a denial with
    /// `retry_after` equal to the limiter's timeout.
    pub decision: Decision,
    /// Whether the store or a fail rule decided.
    pub source: DecisionSource,
}

/// Why a limiter could not admit a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimiterError {
    /// Over the limit (or still over it after waiting): see [`AcquireError`].
    #[error("limiter `{limiter}`: {source}")]
    Limited {
        /// The limiter's name.
        limiter: Arc<str>,
        /// The denial.
        source: AcquireError,
    },
    /// The store failed and the limiter is fail-closed.
    #[error("limiter `{limiter}` denied because its store failed: {source}")]
    StoreUnavailable {
        /// The limiter's name.
        limiter: Arc<str>,
        /// The store's failure.
        source: StoreError,
    },
}

/// Builds a [`Limiter`].
#[derive(Debug)]
pub struct LimiterBuilder {
    name: Arc<str>,
    algorithm: AnyAlgorithm,
    timeout: Duration,
    fail_mode: FailMode,
    strategy: Strategy,
    clock: Arc<dyn Clock>,
}

impl LimiterBuilder {
    /// How long one decision may take before the fail mode applies (default 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer when the store fails (default [`FailMode::Open`]).
    pub fn fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = fail_mode;
        self
    }

    /// What [`KeyedLimiter::acquire`] does over the limit (default [`Strategy::Error`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The clock used for timeouts and waits.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limiter, on `store`.
    pub fn build(self, store: Arc<dyn Store>) -> Limiter {
        Limiter {
            inner: Arc::new(LimiterInner {
                settings: self,
                store,
            }),
        }
    }
}

/// A named limit on a [`Store`]: one definition for every identifier
/// (`limiter.key(ip)`), no per-key objects. Cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<LimiterInner>,
}

struct LimiterInner {
    settings: LimiterBuilder,
    store: Arc<dyn Store>,
}

impl std::ops::Deref for LimiterInner {
    type Target = LimiterBuilder;
    fn deref(&self) -> &LimiterBuilder {
        &self.settings
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Limiter")
            .field("name", &inner.name)
            .field("algorithm", &inner.algorithm)
            .field("timeout", &inner.timeout)
            .field("fail_mode", &inner.fail_mode)
            .field("strategy", &inner.strategy)
            .field("store", &inner.store.name())
            .finish()
    }
}

impl Limiter {
    /// Starts a limiter named `name` (its namespace in the store) using `algorithm`.
    pub fn builder(
        name: impl Into<Arc<str>>,
        algorithm: impl Into<AnyAlgorithm>,
    ) -> LimiterBuilder {
        LimiterBuilder {
            name: name.into(),
            algorithm: algorithm.into(),
            timeout: Duration::from_millis(100),
            fail_mode: FailMode::Open,
            strategy: Strategy::Error,
            clock: Arc::new(MonotonicClock),
        }
    }

    /// The limiter's name.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &AnyAlgorithm {
        &self.inner.algorithm
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The fail mode.
    pub fn fail_mode(&self) -> FailMode {
        self.inner.fail_mode
    }

    /// What the limiter does when a request is over the limit.
    pub fn strategy(&self) -> Strategy {
        self.inner.strategy
    }

    /// How long one decision may take before the fail mode applies.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The clock used for timeouts and waits.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// This limiter applied to one identifier.
    pub fn key<'a>(&'a self, key: &'a str) -> KeyedLimiter<'a> {
        KeyedLimiter { limiter: self, key }
    }

    /// Charges `cost` to `key`, applying the timeout and the fail mode.
    pub async fn check_n(&self, key: &str, cost: u32) -> Result<Verdict, CostExceedsLimit> {
        Ok(match self.begin_check(key, cost)? {
            Ok(verdict) => verdict,
            Err(pending) => self.finish_check(pending).await,
        })
    }

    /// Starts a check: the verdict when the store answered at once (memory), otherwise
    /// the store's pending answer for [`finish_check`](Limiter::finish_check). Keeps
    /// the common, synchronous case free of the timer and of a future.
    fn begin_check<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
    ) -> Result<Result<Verdict, StoreFuture<'a, Decision>>, CostExceedsLimit> {
        let inner = &*self.inner;
        CostExceedsLimit::ensure(cost, inner.algorithm.limit())?;
        let mut decision = inner.store.check(&inner.name, &inner.algorithm, key, cost);
        Ok(match decision.take_ready() {
            Some(result) => Ok(self.verdict(result)),
            None => Err(decision),
        })
    }

    /// Waits for a store's pending answer, at most the limiter's timeout.
    async fn finish_check(&self, pending: StoreFuture<'_, Decision>) -> Verdict {
        let inner = &*self.inner;
        let sleep = inner.clock.sleep(inner.timeout);
        let result = tokio::select! {
            biased;
            result = pending => result,
            () = sleep => Err(StoreError::Timeout {
                store: inner.store.name().to_owned(),
                after: inner.timeout,
            }),
        };
        self.verdict(result)
    }

    fn verdict(&self, result: Result<Decision, StoreError>) -> Verdict {
        match result {
            Ok(decision) => Verdict {
                decision,
                source: DecisionSource::Store,
            },
            Err(err) => self.fallback(err),
        }
    }

    /// The verdict of the fail mode for a store failure.
    pub fn fallback(&self, err: StoreError) -> Verdict {
        let limit = self.inner.algorithm.limit();
        match self.inner.fail_mode {
            FailMode::Open => Verdict {
                decision: Decision::allow(limit, limit, Duration::ZERO),
                source: DecisionSource::FailOpen(Box::new(err)),
            },
            FailMode::Closed => Verdict {
                decision: Decision::deny(limit, 0, Duration::ZERO, self.inner.timeout),
                source: DecisionSource::FailClosed(Box::new(err)),
            },
        }
    }

    /// Admits `cost` for `key` under the limiter's strategy.
    pub async fn acquire_n(&self, key: &str, cost: u32) -> Result<Verdict, LimiterError> {
        let inner = &*self.inner;
        let limited = |source: AcquireError| LimiterError::Limited {
            limiter: Arc::clone(&inner.name),
            source,
        };
        let first = match self.begin_check(key, cost).map_err(|e| limited(e.into()))? {
            Ok(verdict) => verdict,
            Err(pending) => self.finish_check(pending).await,
        };
        if first.decision.allowed {
            return Ok(first);
        }
        let refused = match acquire_with(&*inner.clock, inner.strategy, first, || {
            self.check_n(key, cost)
        })
        .await
        {
            Ok(verdict) => return Ok(verdict),
            Err(refused) => refused,
        };
        let limiter = Arc::clone(&inner.name);
        Err(match refused.last {
            Some(Verdict {
                source: DecisionSource::FailClosed(source),
                ..
            }) => LimiterError::StoreUnavailable {
                limiter,
                source: *source,
            },
            _ => LimiterError::Limited {
                limiter,
                source: refused.error,
            },
        })
    }
}

impl HasDecision for Verdict {
    fn decision(&self) -> &Decision {
        &self.decision
    }
}

/// A [`Limiter`] bound to one identifier.
#[derive(Debug, Clone, Copy)]
pub struct KeyedLimiter<'a> {
    limiter: &'a Limiter,
    key: &'a str,
}

impl KeyedLimiter<'_> {
    /// Charges one cell.
    pub async fn check(&self) -> Result<Verdict, CostExceedsLimit> {
        self.limiter.check_n(self.key, 1).await
    }

    /// Charges `cost` cells.
    pub async fn check_n(&self, cost: u32) -> Result<Verdict, CostExceedsLimit> {
        self.limiter.check_n(self.key, cost).await
    }

    /// Admits one cell under the limiter's strategy.
    pub async fn acquire(&self) -> Result<Verdict, LimiterError> {
        self.limiter.acquire_n(self.key, 1).await
    }

    /// The key's state, charging nothing.
    pub async fn inspect(&self) -> Result<Decision, StoreError> {
        let inner = &*self.limiter.inner;
        inner
            .store
            .inspect(&inner.name, &inner.algorithm, self.key)
            .await
    }

    /// Forgets the key.
    pub async fn reset(&self) -> Result<u64, StoreError> {
        let inner = &*self.limiter.inner;
        inner.store.reset(&inner.name, Some(self.key)).await
    }
}
