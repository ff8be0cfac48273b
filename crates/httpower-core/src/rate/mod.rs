//! Rate limiting: how many requests a key may make, and when the next one fits.
//!
//! Four algorithms, all keyed (one state per key) and all deterministic under an
//! injected [`Clock`]:
//!
//! | algorithm | state per key | admits | use it for |
//! |---|---|---|---|
//! | [`Gcra`] (token bucket, the default) | one timestamp | `rate` per `period`, bursts up to `burst` | almost everything |
//! | [`SlidingWindow`] | two counters | `limit` per rolling `window` (weighted approximation) | "5 logins per 15 minutes" |
//! | [`FixedWindow`] | one counter | `limit` per aligned `window` | the cheapest quota, where a boundary burst is fine |
//! | [`ConcurrencyLimiter`] | in-flight count | `max_concurrent` at once | bounding parallel work per key |
//!
//! Each module documents its exact arithmetic (burst convention, window alignment,
//! rounding of `remaining`); the same rules are written as test vectors in
//! `testdata/rate_limit_vectors.toml`, which every [`Store`](crate::store::Store)
//! implementation must pass.
//!
//! Every check answers with a [`Decision`] — allowed, limit, remaining, reset_after,
//! retry_after — which is exactly what the `RateLimit` and `Retry-After` headers need.
//! Asking for more cells than the quota can ever grant is a [`CostExceedsLimit`] error,
//! not a denial: waiting would never help.
//!
//! ```
//! use std::num::NonZeroU32;
//! use std::time::Duration;
//! use httpower_core::clock::ManualClock;
//! use httpower_core::rate::{Gcra, Quota, RateLimiter};
//!
//! let clock = ManualClock::new();
//! let quota = Quota::per_second(NonZeroU32::new(2).unwrap());
//! let limiter = RateLimiter::with_clock(Gcra::new(quota), clock.clone());
//!
//! assert!(limiter.check(&"alice").allowed);
//! assert!(limiter.check(&"alice").allowed);
//! let denied = limiter.check(&"alice");
//! assert!(!denied.allowed);
//! assert_eq!(denied.retry_after, Duration::from_millis(500));
//! assert!(limiter.check(&"bob").allowed, "keys are independent");
//!
//! clock.advance(Duration::from_millis(500));
//! assert!(limiter.check(&"alice").allowed);
//! ```

mod concurrency;
mod decision;
mod fixed;
mod gcra;
pub(crate) mod keyed;
mod quota;
mod sliding;

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

pub use self::concurrency::{ConcurrencyLimiter, ConcurrencyPermit};
pub use self::decision::{CostExceedsLimit, Decision};
pub use self::fixed::{FixedWindow, FixedWindowState};
pub use self::gcra::{Gcra, GcraState};
pub use self::keyed::KeyedConfig;
pub use self::quota::{Quota, QuotaError, WindowQuota};
pub use self::sliding::{SlidingWindow, SlidingWindowState};

use self::keyed::{KeyedStates, Reclaim};
use crate::clock::{Clock, MonotonicClock, Nanos};

/// A rate-limiting algorithm: how one key's state answers a request.
///
/// Implementations are pure: given the state, the time and the cost, they decide and
/// update the state. Storage, keys and locking belong to the caller.
pub trait Algorithm: fmt::Debug + Send + Sync + 'static {
    /// The per-key state. `Default` is the state of a key never seen.
    type State: Default + Copy + fmt::Debug + Send + Sync + 'static;

    /// The quota's size (burst or limit): the largest cost ever admitted at once.
    fn limit(&self) -> u32;

    /// Decides on a request of `cost` cells at `now`, updating `state` when admitted.
    /// A cost of zero only reports the state.
    fn check(
        &self,
        state: &mut Self::State,
        now: Nanos,
        cost: u32,
    ) -> Result<Decision, CostExceedsLimit>;

    /// From this instant on, `state` is equivalent to [`Default`] (a full quota), so it
    /// can be forgotten without changing any decision.
    fn expires_at(&self, state: &Self::State) -> Nanos;

    /// A lower bound of the last time `state` admitted a request, derived from the state
    /// alone (keys idle since then can be dropped).
    fn last_active(&self, state: &Self::State) -> Nanos;
}

/// Any of the three counting algorithms, chosen at run time (from configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyAlgorithm {
    /// Token bucket.
    Gcra(Gcra),
    /// Two-counter sliding window.
    SlidingWindow(SlidingWindow),
    /// Fixed window.
    FixedWindow(FixedWindow),
}

/// The state of [`AnyAlgorithm`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AnyState {
    /// No state yet.
    #[default]
    Fresh,
    /// Token bucket state.
    Gcra(GcraState),
    /// Sliding window state.
    SlidingWindow(SlidingWindowState),
    /// Fixed window state.
    FixedWindow(FixedWindowState),
}

impl AnyAlgorithm {
    /// The algorithm's name as used in configuration and metrics.
    pub const fn name(&self) -> &'static str {
        match self {
            AnyAlgorithm::Gcra(_) => "gcra",
            AnyAlgorithm::SlidingWindow(_) => "sliding_window",
            AnyAlgorithm::FixedWindow(_) => "fixed_window",
        }
    }
}

impl Algorithm for AnyAlgorithm {
    type State = AnyState;

    fn limit(&self) -> u32 {
        match self {
            AnyAlgorithm::Gcra(a) => a.limit(),
            AnyAlgorithm::SlidingWindow(a) => a.limit(),
            AnyAlgorithm::FixedWindow(a) => a.limit(),
        }
    }

    fn check(
        &self,
        state: &mut AnyState,
        now: Nanos,
        cost: u32,
    ) -> Result<Decision, CostExceedsLimit> {
        // A state written by another algorithm (the limiter was reconfigured under the
        // same name) starts over rather than being misread.
        macro_rules! run {
            ($alg:expr, $variant:ident) => {{
                let mut inner = match *state {
                    AnyState::$variant(inner) => inner,
                    _ => Default::default(),
                };
                let decision = $alg.check(&mut inner, now, cost)?;
                *state = AnyState::$variant(inner);
                Ok(decision)
            }};
        }
        match self {
            AnyAlgorithm::Gcra(a) => run!(a, Gcra),
            AnyAlgorithm::SlidingWindow(a) => run!(a, SlidingWindow),
            AnyAlgorithm::FixedWindow(a) => run!(a, FixedWindow),
        }
    }

    fn expires_at(&self, state: &AnyState) -> Nanos {
        match (self, state) {
            (AnyAlgorithm::Gcra(a), AnyState::Gcra(s)) => a.expires_at(s),
            (AnyAlgorithm::SlidingWindow(a), AnyState::SlidingWindow(s)) => a.expires_at(s),
            (AnyAlgorithm::FixedWindow(a), AnyState::FixedWindow(s)) => a.expires_at(s),
            _ => Nanos::ZERO,
        }
    }

    fn last_active(&self, state: &AnyState) -> Nanos {
        match (self, state) {
            (AnyAlgorithm::Gcra(a), AnyState::Gcra(s)) => a.last_active(s),
            (AnyAlgorithm::SlidingWindow(a), AnyState::SlidingWindow(s)) => a.last_active(s),
            (AnyAlgorithm::FixedWindow(a), AnyState::FixedWindow(s)) => a.last_active(s),
            _ => Nanos::ZERO,
        }
    }
}

impl From<Gcra> for AnyAlgorithm {
    fn from(a: Gcra) -> Self {
        AnyAlgorithm::Gcra(a)
    }
}
impl From<SlidingWindow> for AnyAlgorithm {
    fn from(a: SlidingWindow) -> Self {
        AnyAlgorithm::SlidingWindow(a)
    }
}
impl From<FixedWindow> for AnyAlgorithm {
    fn from(a: FixedWindow) -> Self {
        AnyAlgorithm::FixedWindow(a)
    }
}

/// Lets a map drop any state whose algorithm says it is back to fresh.
pub(crate) struct ByExpiry<'a, A>(pub(crate) &'a A);

impl<A: Algorithm> Reclaim<A::State> for ByExpiry<'_, A> {
    fn expires_at(&self, state: &A::State) -> Nanos {
        self.0.expires_at(state)
    }
    fn last_active(&self, state: &A::State) -> Nanos {
        self.0.last_active(state)
    }
}

/// What to do when a request is over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Fail at once with [`AcquireError::RateLimited`].
    #[default]
    Error,
    /// Sleep until the request fits, for at most `max_wait` in total. If the first
    /// required wait is already longer than `max_wait`, fail at once
    /// ([`AcquireError::WaitTimeout`] with `waited` zero) instead of sleeping in vain.
    Wait {
        /// The longest time to wait.
        max_wait: Duration,
    },
}

/// Why [`RateLimiter::acquire`] did not admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// Over the limit (strategy [`Strategy::Error`]).
    #[error("rate limited; retry after {:?}", decision.retry_after)]
    RateLimited {
        /// The denial, with `retry_after` and the quota's state.
        decision: Decision,
    },
    /// Still over the limit when the wait budget ran out (strategy [`Strategy::Wait`]).
    #[error("rate limit wait timed out after {waited:?}; retry after {retry_after:?}")]
    WaitTimeout {
        /// How long was spent waiting.
        waited: Duration,
        /// How much longer the request would have had to wait.
        retry_after: Duration,
    },
    /// The cost can never be admitted.
    #[error(transparent)]
    CostExceedsLimit(#[from] CostExceedsLimit),
}

impl AcquireError {
    /// When the request could be tried again, if the limiter knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcquireError::RateLimited { decision } => Some(decision.retry_after),
            AcquireError::WaitTimeout { retry_after, .. } => Some(*retry_after),
            AcquireError::CostExceedsLimit(_) => None,
        }
    }
}

/// Anything that carries a [`Decision`]: a bare decision, or a store verdict that also
/// says who decided.
pub(crate) trait HasDecision {
    fn decision(&self) -> &Decision;
}

impl HasDecision for Decision {
    fn decision(&self) -> &Decision {
        self
    }
}

/// A request [`acquire_with`] did not admit, with the last answer it got (absent when
/// the cost can never fit).
pub(crate) struct Refused<V> {
    pub(crate) error: AcquireError,
    pub(crate) last: Option<V>,
}

/// Applies `strategy` to a first answer: returns it if admitted, refuses at once for
/// [`Strategy::Error`], and for [`Strategy::Wait`] sleeps and asks `check` again, bounded
/// by `max_wait`. Shared by every limiter front end, local or backed by a store. Taking
/// the first answer from the caller keeps the admitted path free of the loop's future.
pub(crate) async fn acquire_with<C, V, F, Fut>(
    clock: &C,
    strategy: Strategy,
    first: V,
    mut check: F,
) -> Result<V, Refused<V>>
where
    C: Clock + ?Sized,
    V: HasDecision,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<V, CostExceedsLimit>>,
{
    // Read the clock only once a wait is on the table: the admitted path stays cheap.
    let mut started = None;
    let mut answer = first;
    loop {
        let decision = *answer.decision();
        if decision.allowed {
            return Ok(answer);
        }
        let refuse = |error| Refused {
            error,
            last: Some(answer),
        };
        let max_wait = match strategy {
            Strategy::Error => return Err(refuse(AcquireError::RateLimited { decision })),
            Strategy::Wait { max_wait } => max_wait,
        };
        let now = clock.now();
        let waited = now.saturating_duration_since(*started.get_or_insert(now));
        if waited + decision.retry_after > max_wait {
            return Err(refuse(AcquireError::WaitTimeout {
                waited,
                retry_after: decision.retry_after,
            }));
        }
        // Another caller may take the slot first; then the loop waits again.
        clock.sleep_until(now + decision.retry_after).await;
        answer = check().await.map_err(|too_big| Refused {
            error: too_big.into(),
            last: None,
        })?;
    }
}

/// A keyed, in-memory rate limiter: one [`Algorithm`] state per key, in a bounded map.
///
/// Cheap to clone; clones share the same state. See the [module docs](self) for an
/// example.
pub struct RateLimiter<K, A: Algorithm, C: Clock = MonotonicClock> {
    inner: Arc<LimiterInner<K, A, C>>,
}

struct LimiterInner<K, A: Algorithm, C> {
    algorithm: A,
    clock: C,
    states: KeyedStates<K, A::State>,
}

impl<K, A: Algorithm, C: Clock> Clone for RateLimiter<K, A, C> {
    fn clone(&self) -> Self {
        RateLimiter {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, A: Algorithm, C: Clock> fmt::Debug for RateLimiter<K, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("algorithm", &self.inner.algorithm)
            .field("clock", &self.inner.clock)
            .field("states", &self.inner.states)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, A: Algorithm> RateLimiter<K, A> {
    /// A limiter on the system's monotonic clock with default sizing.
    pub fn new(algorithm: A) -> Self {
        Self::with_config(algorithm, MonotonicClock, KeyedConfig::default())
    }
}

impl<K, A, C> RateLimiter<K, A, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    A: Algorithm,
    C: Clock,
{
    /// A limiter on `clock` with default sizing.
    pub fn with_clock(algorithm: A, clock: C) -> Self {
        Self::with_config(algorithm, clock, KeyedConfig::default())
    }

    /// A limiter on `clock` with the given key bound and idle eviction.
    pub fn with_config(algorithm: A, clock: C, config: KeyedConfig) -> Self {
        RateLimiter {
            inner: Arc::new(LimiterInner {
                algorithm,
                clock,
                states: KeyedStates::new(config),
            }),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> &A {
        &self.inner.algorithm
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// Decides on one request for `key`, consuming one cell when admitted.
    pub fn check(&self, key: &K) -> Decision {
        match self.check_n(key, 1) {
            Ok(decision) => decision,
            // A quota's limit is at least one, so a cost of one always fits; keep a
            // conservative answer rather than a panic should that ever change.
            Err(err) => Decision::deny(err.limit, 0, Duration::ZERO, Duration::MAX),
        }
    }

    /// Decides on a request of `cost` cells for `key`. A cost of zero only inspects.
    pub fn check_n(&self, key: &K, cost: u32) -> Result<Decision, CostExceedsLimit> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let reclaim = ByExpiry(&inner.algorithm);
        // Gcra and the window algorithms never pin a state, so a slot is always found.
        inner
            .states
            .with_state(key, now, &reclaim, |state| {
                inner.algorithm.check(state, now, cost)
            })
            .unwrap_or(Err(CostExceedsLimit {
                cost,
                limit: inner.algorithm.limit(),
            }))
    }

    /// The state of `key` without consuming anything (a key never seen is reported full).
    pub fn inspect(&self, key: &K) -> Decision {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let mut state = inner.states.peek(key, |s| *s).unwrap_or_default();
        inner
            .algorithm
            .check(&mut state, now, 0)
            .unwrap_or(Decision::allow(inner.algorithm.limit(), 0, Duration::ZERO))
    }

    /// Admits `cost` cells for `key` under `strategy`, sleeping on the limiter's clock
    /// when the strategy says to wait.
    pub async fn acquire(
        &self,
        key: &K,
        cost: u32,
        strategy: Strategy,
    ) -> Result<Decision, AcquireError> {
        let first = self.check_n(key, cost)?;
        if first.allowed {
            return Ok(first);
        }
        acquire_with(&self.inner.clock, strategy, first, || {
            std::future::ready(self.check_n(key, cost))
        })
        .await
        .map_err(|refused| refused.error)
    }

    /// Forgets `key`: its next request sees a full quota.
    pub fn reset(&self, key: &K) -> bool {
        self.inner.states.remove(key)
    }

    /// Forgets every key.
    pub fn reset_all(&self) {
        self.inner.states.remove_where(|_, _| true);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.inner.states.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this limiter will ever hold.
    pub fn capacity(&self) -> usize {
        self.inner.states.capacity()
    }

    /// Bytes used by the key table (keys and states are stored inline; memory a key
    /// points to, such as a `String`'s text, is not counted).
    pub fn memory_usage(&self) -> usize {
        self.inner.states.table_bytes()
    }

    /// Drops every key whose state is back to fresh or that has been idle longer than
    /// the idle timeout; returns how many. Optional: the map also cleans itself.
    pub fn sweep(&self) -> usize {
        let inner = &*self.inner;
        inner
            .states
            .sweep(inner.clock.now(), &ByExpiry(&inner.algorithm))
    }
}
