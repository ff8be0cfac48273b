//! The policies composed around any async operation.
//!
//! HTTP is only one kind of call that fails. A database query, a queue publish or a call
//! to a payment SDK need the same protection, so the composition lives here, with no
//! knowledge of HTTP. The order is fixed, because each step protects the next:
//!
//! ```text
//! total timeout ┐
//!   rate limit → bulkhead → circuit breaker → retry ┐
//!                                                   attempt timeout → operation
//! ```
//!
//! * **Rate limit first**, so that a request refused locally never counts as a failure
//!   of the dependency (a limiter must not trip the breaker).
//! * **Bulkhead** next: a slot is held for the whole logical call, retries included.
//! * **Circuit breaker** before the retries: one logical call, one outcome recorded, so a
//!   call retried three times does not count as three failures. While the breaker is
//!   open, the call fails fast without touching the operation.
//! * **Retry** around each attempt, each attempt under its own timeout; the retry policy
//!   sees every outcome through the caller's classifier, so a server's hint (such as
//!   `Retry-After`) can be honoured, and no retry starts that would end past the total
//!   deadline.
//!
//! The breaker records the classification of the final outcome: success is a success,
//! a transient failure (what the classifier would retry, or an attempt timeout) is a
//! failure, and a permanent failure (a validation error, a 404) counts neither way — the
//! dependency answered, the request was wrong.
//!
//! ```
//! use std::time::Duration;
//! use httpower_core::pipeline::{Pipeline, PipelineError};
//! use httpower_core::retry::{Classification, RetryPolicy};
//!
//! #[derive(Debug)]
//! enum DbError { Busy, Constraint }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .retry(RetryPolicy::builder().base_delay(Duration::from_millis(10)).build().unwrap())
//!     .attempt_timeout(Duration::from_secs(2))
//!     .build();
//!
//! let classify = |outcome: &Result<u64, DbError>| match outcome {
//!     Ok(_) => Classification::Success,
//!     Err(DbError::Busy) => Classification::retry("busy"),
//!     Err(DbError::Constraint) => Classification::Fail,
//! };
//!
//! // The database is busy twice, then answers.
//! let calls = std::sync::atomic::AtomicU32::new(0);
//! let rows = pipeline
//!     .call(classify, |_attempt| async {
//!         match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
//!             0 | 1 => Err(DbError::Busy),
//!             _ => Ok(42),
//!         }
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(rows, 42);
//!
//! // A constraint violation is returned at once, never retried.
//! let err = pipeline
//!     .call(classify, |_| async { Err::<u64, _>(DbError::Constraint) })
//!     .await
//!     .unwrap_err();
//! assert!(matches!(err, PipelineError::Inner(DbError::Constraint)));
//! # });
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::{CallOutcome, CircuitBreaker};
use crate::bulkhead::{Bulkhead, BulkheadFull};
use crate::clock::{Clock, MonotonicClock, Nanos};
use crate::rate::AcquireError;
use crate::retry::{Classification, RetryPolicy, Step, StopReason};
use crate::store::{Limiter, LimiterError, StoreError};
use crate::timeout::{timeout_at_after, Elapsed, TimeoutPhase};

/// The last outcome of a call that gave up.
#[derive(Debug)]
pub enum LastOutcome<E> {
    /// The operation's error.
    Error(E),
    /// The attempt timed out.
    Timeout(Elapsed),
}

impl<E: fmt::Display> fmt::Display for LastOutcome<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastOutcome::Error(err) => err.fmt(f),
            LastOutcome::Timeout(elapsed) => elapsed.fmt(f),
        }
    }
}

/// Why a call through a [`Pipeline`] failed: the operation's own error, or the policy
/// that stopped it, with what the caller needs to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum PipelineError<E> {
    /// The operation failed with an error not worth retrying.
    Inner(E),
    /// The rate limiter refused the call.
    RateLimited {
        /// The limiter's name.
        limiter: Arc<str>,
        /// When the call would be admitted.
        retry_after: Duration,
    },
    /// The rate limiter still refused after waiting as long as allowed.
    RateLimitWaitTimeout {
        /// The limiter's name.
        limiter: Arc<str>,
        /// Time spent waiting.
        waited: Duration,
        /// How much longer it would have taken.
        retry_after: Duration,
    },
    /// The limiter's store failed and the limiter is fail-closed.
    StoreUnavailable {
        /// The limiter's name.
        limiter: Arc<str>,
        /// The store's failure.
        source: StoreError,
    },
    /// The circuit breaker is open: the call was not made.
    CircuitOpen {
        /// When the breaker lets a probe through.
        retry_after: Duration,
    },
    /// The bulkhead had no free slot within its wait.
    BulkheadFull(BulkheadFull),
    /// The total timeout passed (an attempt timeout that is not retried ends as
    /// [`RetriesExhausted`](PipelineError::RetriesExhausted) instead).
    Timeout(Elapsed),
    /// Every retry allowed was made, or no further retry could be made in time.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Why retrying stopped.
        stop: StopReason,
        /// The last attempt's outcome.
        last: LastOutcome<E>,
        /// The server's last hint (for example a `Retry-After` too long to wait for).
        retry_after: Option<Duration>,
    },
    /// The shared retry budget is spent: retrying would amplify an outage.
    RetryBudgetExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's outcome.
        last: LastOutcome<E>,
    },
}

impl<E> PipelineError<E> {
    /// A stable machine-readable name of the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PipelineError::Inner(_) => "inner",
            PipelineError::RateLimited { .. } => "rate_limited",
            PipelineError::RateLimitWaitTimeout { .. } => "rate_limit_wait_timeout",
            PipelineError::StoreUnavailable { .. } => "store_unavailable",
            PipelineError::CircuitOpen { .. } => "circuit_open",
            PipelineError::BulkheadFull(_) => "bulkhead_full",
            PipelineError::Timeout(_) => "timeout",
            PipelineError::RetriesExhausted { .. } => "retries_exhausted",
            PipelineError::RetryBudgetExhausted { .. } => "retry_budget_exhausted",
        }
    }

    /// When the call could usefully be tried again, when a policy knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PipelineError::RateLimited { retry_after, .. }
            | PipelineError::RateLimitWaitTimeout { retry_after, .. }
            | PipelineError::CircuitOpen { retry_after } => Some(*retry_after),
            PipelineError::RetriesExhausted { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Attempts made, when the operation ran at all.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            PipelineError::RetriesExhausted { attempts, .. }
            | PipelineError::RetryBudgetExhausted { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for PipelineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Inner(err) => write!(f, "operation failed: {err}"),
            PipelineError::RateLimited {
                limiter,
                retry_after,
            } => write!(
                f,
                "rate limited by `{limiter}`; retry after {retry_after:?}"
            ),
            PipelineError::RateLimitWaitTimeout {
                limiter,
                waited,
                retry_after,
            } => write!(
                f,
                "still rate limited by `{limiter}` after waiting {waited:?}; \
                 retry after {retry_after:?}"
            ),
            PipelineError::StoreUnavailable { limiter, source } => {
                write!(
                    f,
                    "limiter `{limiter}` is fail-closed and its store failed: {source}"
                )
            }
            PipelineError::CircuitOpen { retry_after } => {
                write!(f, "circuit breaker open; retry after {retry_after:?}")
            }
            PipelineError::BulkheadFull(full) => full.fmt(f),
            PipelineError::Timeout(elapsed) => elapsed.fmt(f),
            PipelineError::RetriesExhausted {
                attempts,
                stop,
                last,
                ..
            } => write!(f, "{stop} ({attempts} attempts); last outcome: {last}"),
            PipelineError::RetryBudgetExhausted { attempts, last } => write!(
                f,
                "retry budget exhausted after {attempts} attempts; last outcome: {last}"
            ),
        }
    }
}

impl<E: StdError + 'static> StdError for PipelineError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PipelineError::Inner(err)
            | PipelineError::RetriesExhausted {
                last: LastOutcome::Error(err),
                ..
            }
            | PipelineError::RetryBudgetExhausted {
                last: LastOutcome::Error(err),
                ..
            } => Some(err),
            PipelineError::StoreUnavailable { source, .. } => Some(source),
            PipelineError::Timeout(elapsed)
            | PipelineError::RetriesExhausted {
                last: LastOutcome::Timeout(elapsed),
                ..
            }
            | PipelineError::RetryBudgetExhausted {
                last: LastOutcome::Timeout(elapsed),
                ..
            } => Some(elapsed),
            PipelineError::BulkheadFull(full) => Some(full),
            _ => None,
        }
    }
}

/// Builds a [`Pipeline`]. Every policy is optional.
#[derive(Debug)]
pub struct PipelineBuilder<C: Clock = MonotonicClock> {
    limiter: Option<Limiter>,
    bulkhead: Option<Bulkhead>,
    breaker: Option<CircuitBreaker<C>>,
    retry: Option<RetryPolicy>,
    attempt_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    clock: C,
}

impl<C: Clock + Clone> PipelineBuilder<C> {
    /// Rate-limits every call with `limiter` (the key is given per call).
    pub fn rate_limit(mut self, limiter: Limiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// Bounds concurrent calls.
    pub fn bulkhead(mut self, bulkhead: Bulkhead) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// Guards the operation with a circuit breaker (give it the pipeline's clock).
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker<C>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Retries transient outcomes.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Bounds each attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Bounds the whole call: limiter wait, attempts and backoff together.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = Some(timeout);
        self
    }

    /// The pipeline.
    pub fn build(self) -> Pipeline<C> {
        Pipeline {
            inner: Arc::new(self),
        }
    }
}

/// Rate limit → bulkhead → circuit breaker → retry → attempt timeout → operation, under
/// a total timeout. Cheap to clone; clones share every policy's state. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Pipeline<C: Clock = MonotonicClock> {
    inner: Arc<PipelineBuilder<C>>,
}

impl<C: Clock> Clone for Pipeline<C> {
    fn clone(&self) -> Self {
        Pipeline {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Pipeline<MonotonicClock> {
    /// A pipeline with no policy yet, on the monotonic clock.
    pub fn builder() -> PipelineBuilder<MonotonicClock> {
        Self::builder_with_clock(MonotonicClock)
    }
}

impl<C: Clock + Clone> Pipeline<C> {
    /// A pipeline with no policy yet whose timeouts, backoff and deadlines run on
    /// `clock` (give its circuit breaker the same clock).
    pub fn builder_with_clock(clock: C) -> PipelineBuilder<C> {
        PipelineBuilder {
            limiter: None,
            bulkhead: None,
            breaker: None,
            retry: None,
            attempt_timeout: None,
            total_timeout: None,
            clock,
        }
    }
}

type Attempt<T, E> = Result<Result<T, E>, Elapsed>;

impl<C: Clock + Clone> Pipeline<C> {
    /// Runs `op` through every policy, rate-limited under the key `"default"`.
    ///
    /// `op` receives the attempt number (from 1); `classify` says which outcomes are
    /// successes, which are worth retrying (with an optional server hint) and which are
    /// final.
    pub async fn call<T, E, Fut>(
        &self,
        classify: impl Fn(&Result<T, E>) -> Classification,
        op: impl FnMut(u32) -> Fut,
    ) -> Result<T, PipelineError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_keyed("default", classify, op).await
    }

    /// [`call`](Pipeline::call) with the rate limiter applied to `key`.
    pub async fn call_keyed<T, E, Fut>(
        &self,
        key: &str,
        classify: impl Fn(&Result<T, E>) -> Classification,
        op: impl FnMut(u32) -> Fut,
    ) -> Result<T, PipelineError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        match inner.total_timeout {
            None => self.run(key, None, classify, op).await,
            Some(total) => {
                let deadline = inner.clock.now() + total;
                let run = self.run(key, Some(deadline), classify, op);
                match timeout_at_after(&inner.clock, TimeoutPhase::Total, deadline, total, run)
                    .await
                {
                    Ok(result) => result,
                    Err(elapsed) => Err(PipelineError::Timeout(elapsed)),
                }
            }
        }
    }

    async fn run<T, E, Fut>(
        &self,
        key: &str,
        deadline: Option<Nanos>,
        classify: impl Fn(&Result<T, E>) -> Classification,
        mut op: impl FnMut(u32) -> Fut,
    ) -> Result<T, PipelineError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let inner = &*self.inner;
        if let Some(limiter) = &inner.limiter {
            limiter.acquire_n(key, 1).await.map_err(limiter_error)?;
        }
        let _slot = match &inner.bulkhead {
            Some(bulkhead) => Some(
                bulkhead
                    .acquire()
                    .await
                    .map_err(PipelineError::BulkheadFull)?,
            ),
            None => None,
        };
        let permit = match &inner.breaker {
            Some(breaker) => {
                Some(
                    breaker
                        .try_acquire()
                        .map_err(|open| PipelineError::CircuitOpen {
                            retry_after: open.retry_after,
                        })?,
                )
            }
            None => None,
        };

        let classify_attempt = |outcome: &Attempt<T, E>| match outcome {
            Ok(result) => classify(result),
            Err(_) => Classification::retry("attempt_timeout"),
        };
        let mut state = inner.retry.as_ref().map(RetryPolicy::start);
        let mut attempt = 0u32;
        let (outcome, breaker_outcome, stop) = loop {
            attempt = attempt.saturating_add(1);
            let outcome: Attempt<T, E> = match inner.attempt_timeout {
                Some(limit) => {
                    let attempt_deadline = inner.clock.now() + limit;
                    if deadline.is_some_and(|total| attempt_deadline >= total) {
                        // The total timeout ends this attempt first: let it speak
                        // (phase `total`) rather than a second timer.
                        Ok(op(attempt).await)
                    } else {
                        timeout_at_after(
                            &inner.clock,
                            TimeoutPhase::Attempt,
                            attempt_deadline,
                            limit,
                            op(attempt),
                        )
                        .await
                    }
                }
                None => Ok(op(attempt).await),
            };
            let verdict = classify_attempt(&outcome);
            let breaker_outcome = match verdict {
                Classification::Success => CallOutcome::Success,
                Classification::Retry { .. } => CallOutcome::Failure,
                Classification::Fail => CallOutcome::Ignored,
            };
            let Some(state) = state.as_mut() else {
                break (outcome, breaker_outcome, None);
            };
            match state.next_on(verdict, &inner.clock, deadline) {
                Step::Retry(event) => inner.clock.sleep(event.delay).await,
                Step::Stop(stop) => {
                    break (outcome, breaker_outcome, Some((stop, state.last_hint())));
                }
            }
        };

        if let Some(permit) = permit {
            permit.record(breaker_outcome);
        }

        // Without a retry policy the outcome stands as it is.
        let Some((stop, hint)) = stop else {
            return match outcome {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(PipelineError::Inner(err)),
                Err(elapsed) => Err(PipelineError::Timeout(elapsed)),
            };
        };
        let last = match outcome {
            // A value the classifier wanted retried (a 503 response, say) is still the
            // caller's to inspect once retrying stops.
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(err)) => LastOutcome::Error(err),
            Err(elapsed) => LastOutcome::Timeout(elapsed),
        };
        Err(match (stop, last) {
            (StopReason::Succeeded | StopReason::NotRetryable, LastOutcome::Error(err)) => {
                PipelineError::Inner(err)
            }
            (StopReason::BudgetExhausted, last) => PipelineError::RetryBudgetExhausted {
                attempts: attempt,
                last,
            },
            (stop, last) => PipelineError::RetriesExhausted {
                attempts: attempt,
                stop,
                last,
                retry_after: hint,
            },
        })
    }
}

fn limiter_error<E>(err: LimiterError) -> PipelineError<E> {
    match err {
        LimiterError::Limited { limiter, source } => match source {
            AcquireError::RateLimited { decision } => PipelineError::RateLimited {
                limiter,
                retry_after: decision.retry_after,
            },
            AcquireError::WaitTimeout {
                waited,
                retry_after,
            } => PipelineError::RateLimitWaitTimeout {
                limiter,
                waited,
                retry_after,
            },
            // The pipeline asks for one cell, which every quota admits.
            AcquireError::CostExceedsLimit(_) => PipelineError::RateLimited {
                limiter,
                retry_after: Duration::MAX,
            },
        },
        LimiterError::StoreUnavailable { limiter, source } => {
            PipelineError::StoreUnavailable { limiter, source }
        }
    }
}
